"""PB2: GP-UCB exploration stays inside the bounds and follows the data."""
from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest

from tunesmith._internal.backend.simulated import SimulatedExperiment
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import PB2
from tunesmith.tune.schedulers import pb2 as pb2_module


def _accumulate(config, state, it):
    # Reward grows fastest for lr near 0.03.
    state["r"] = state.get("r", 0.0) + 1.0 - abs(np.log10(config["lr"]) - np.log10(0.03))
    return {"reward": state["r"]}


@pytest.mark.parametrize("backend", ["sklearn", "gpy"])
def test_select_config_prefers_the_region_that_improved_most(backend):
    if backend == "gpy" and importlib.util.find_spec("GPy") is None:
        pytest.skip("GPy is not installed")
    random.seed(0)
    rng = np.random.default_rng(0)
    hp = rng.random((40, 1))
    ctx = rng.random((40, 2))
    X = np.hstack([ctx, hp])
    y = hp[:, 0] * 2.0 + rng.normal(0, 0.05, 40)
    x = pb2_module.select_config(X, y, newpoint=[0.5, 0.5], num_fixed=2, backend=backend, rng=rng)
    assert x.shape == (1,) and 0.0 <= x[0] <= 1.0
    assert x[0] > 0.7


def test_pb2_run_picks_configs_inside_the_bounds():
    random.seed(1)
    np.random.seed(1)
    bounds = {"lr": [1e-1, 1e-4], "layers": [1, 4]}
    pb2 = PB2(time_attr="training_iteration", metric="reward", mode="max", perturbation_interval=2,
              hyperparam_bounds=bounds)
    # 10 iterations: a trial that takes a donor's checkpoint passes perturbation points again, and
    # each perturbation fits a GP (seven here).
    sim = SimulatedExperiment(pb2, _accumulate, max_concurrent=4, max_iterations=10)
    trials = [sim.add_trial({"lr": lr}) for lr in (1e-4, 1e-3, 0.05, 0.09)]
    # "layers" was missing: sampled as an integer inside its bounds.
    assert all(isinstance(t.config["layers"], int) and 1 <= t.config["layers"] <= 4 for t in trials)
    sim.run()
    assert pb2._num_perturbations > 0
    explored = [d for e, tid, d in sim.events if e == "restore"]
    assert explored
    for t in trials:
        assert 1e-4 <= t.config["lr"] <= 1e-1
        assert isinstance(t.config["layers"], int) and 1 <= t.config["layers"] <= 4


def test_bounds_are_validated():
    with pytest.raises(ValueError, match="hyperparam_bounds"):
        PB2(metric="r", mode="max")
    with pytest.raises(ValueError, match="lr"):
        PB2(metric="r", mode="max", hyperparam_bounds={"lr": [0.1]})
    with pytest.raises(ValueError, match="lr"):
        PB2(metric="r", mode="max", hyperparam_bounds={"lr": ["a", "b"]})


def test_missing_dependencies_name_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        pb2_module.importlib.util, "find_spec", lambda name, *a: None if name in ("GPy", "sklearn") else real(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install "tunesmith\[pb2\]"'):
        PB2(metric="r", mode="max", hyperparam_bounds={"lr": [1e-4, 1e-1]})


def test_pb2_is_not_compatible_with_search_algorithms():
    class OptunaSearch:
        pass

    pb2 = PB2(metric="r", mode="max", hyperparam_bounds={"lr": [1e-4, 1e-1]})
    assert not pb2._supports_search_alg(OptunaSearch())
    assert pb2._supports_search_alg(None)
    assert PB2._requires_checkpointing
    t = Trial("t", {"lr": 0.5})
    pb2.on_trial_add(None, t)
    assert t.config["lr"] == 0.5  # given values are kept


def _alpha_near_a_third(config, state, it):
    state["r"] = state.get("r", 0.0) + 1.0 - abs(config["alpha"] - 0.33) - config["opt"]["lr"]
    return {"reward": state["r"]}


def test_values_keep_their_type_and_nested_bounds_work():
    """Bounds written [0, 1] snapped a float hyperparameter to 0 or 1 (as on Ray it stays a float), and
    nested bounds ({"opt": {"lr": [...]}}, as Ray documents) were rejected."""
    random.seed(2)
    np.random.seed(2)
    pb2 = PB2(time_attr="training_iteration", metric="reward", mode="max", perturbation_interval=2,
              hyperparam_bounds={"alpha": [0, 1], "opt": {"lr": [0.0, 0.5]}})
    sim = SimulatedExperiment(pb2, _alpha_near_a_third, max_concurrent=4, max_iterations=10)
    trials = [sim.add_trial({"alpha": a, "opt": {"lr": 0.1 * (i + 1)}}) for i, a in enumerate((0.2, 0.4, 0.6, 0.8))]
    sim.run()
    assert pb2._num_perturbations > 0
    for t in trials:
        assert isinstance(t.config["alpha"], float) and 0.0 <= t.config["alpha"] <= 1.0
        assert isinstance(t.config["opt"]["lr"], float) and 0.0 <= t.config["opt"]["lr"] <= 0.5
    assert any(t.config["alpha"] not in (0.0, 1.0, 0.2, 0.4, 0.6, 0.8) for t in trials)
