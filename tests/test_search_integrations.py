"""The eight search library integrations, each through ``Tuner.fit()`` with the real library.

Every integration gets the same checks: every domain type converts and comes
back exactly, unsupported domains fail before any trial, ``points_to_evaluate``
run first, a seed reproduces the configurations with two trials at once, an
interrupted search continues after ``Tuner.restore`` without repeating a
configuration or losing an observation, a warm start from an earlier
experiment steers the search, failed trials and ``ConcurrencyLimiter(batch=True)``
do not stop it, and a missing library names the extra to install. Ax and
HEBO fit a model per suggestion and run under the ``slow_search`` marker.
"""
from __future__ import annotations

import math
import os
import statistics
import sys

import pytest

from tunesmith import tune
from tunesmith.tune.search import ConcurrencyLimiter, create_searcher
from tunesmith.tune.search.sample import Quantized

SLOW = {"ax", "hebo"}
ALL = ["optuna", "hyperopt", "bayesopt", "nevergrad", "zoopt", "bohb", "ax", "hebo"]
MODULES = {
    "optuna": "optuna",
    "hyperopt": "hyperopt",
    "bayesopt": "bayes_opt",
    "nevergrad": "nevergrad",
    "zoopt": "zoopt",
    "bohb": "hpbandster",
    "ax": "ax",
    "hebo": "hebo",
}


def _params(names=ALL):
    return [pytest.param(n, marks=[pytest.mark.slow_search] if n in SLOW else []) for n in names]


def make(name: str, seed: int | None = None, **kwargs):
    """A searcher of the integration ``name``, seeded under the argument name it uses."""
    seed_arg = {"hyperopt": "random_state_seed", "bayesopt": "random_state", "hebo": "random_state_seed"}.get(
        name, "seed"
    )
    extra = {"zoopt": {"budget": 60}, "hyperopt": {"n_initial_points": 4}, "bayesopt": {"random_search_steps": 4}}
    args = {**extra.get(name, {}), **kwargs}
    if seed is not None:
        args[seed_arg] = seed
    return create_searcher(name, **args)


def observations(searcher) -> int:
    """How many finished evaluations the searcher holds: told to the library or waiting for their turn.

    A seeded searcher that knows its concurrency hands results to the library in suggestion
    order; the ones still waiting are part of its saved state.
    """
    return _told(searcher) + len(searcher._finished_buffer)


def _told(searcher) -> int:
    name = type(searcher).__name__
    if name == "OptunaSearch":
        return sum(1 for t in searcher._study.trials if t.state.name == "COMPLETE")
    if name == "HyperOptSearch":
        return sum(1 for d in searcher._trials.trials if d["state"] == 2)  # JOB_STATE_DONE
    if name == "BayesOptSearch":
        return len(searcher._optimizer.space)
    if name == "NevergradSearch":
        return searcher._opt.num_tell
    if name == "ZOOptSearch":
        return searcher._optimizer.complete_num
    if name == "TuneBOHB":
        return sum(len(v) for v in searcher._bohber.losses.values())
    if name == "AxSearch":
        return sum(1 for t in searcher._client().experiment.trials.values() if t.status.is_completed)
    if name == "HEBOSearch":
        return int(searcher._opt.y.shape[0])
    raise AssertionError(name)


def run_config(tmp_path, name, **kwargs):
    return tune.RunConfig(name=name, storage_path=str(tmp_path / "storage"), verbose=0, **kwargs)


# ---------------------------------------------------------------------------------- every domain

SPACE = {
    "opt": {
        "lr": tune.qloguniform(1e-4, 1e-1, 5e-5),
        "wd": tune.loguniform(1e-6, 1e-2),
        "momentum": tune.uniform(0.5, 0.99),
        "frac": tune.quniform(0.0, 1.0, 0.25),
        "epochs": tune.quniform(1, 10, 1),  # a float domain with a whole step: floats, not ints
    },
    "layers": tune.randint(1, 4),
    "width": tune.qrandint(16, 128, 16),
    "batch": tune.lograndint(8, 257),
    "heads": tune.qlograndint(2, 32, 2),
    "act": tune.choice(["relu", "tanh"]),
    "arch": tune.choice([{"depth": 2}, {"depth": 3}]),
    "flag": tune.choice([True, False]),
    "seed": 7,
    "nested": {"const": "x"},
}
POINT = {
    "opt": {"lr": 0.00125, "wd": 1e-4, "momentum": 0.9, "frac": 0.5, "epochs": 4.0},
    "layers": 2,
    "width": 64,
    "batch": 32,
    "heads": 8,
    "act": "tanh",
    "arch": {"depth": 3},
    "flag": False,
}


def score(config):
    return {
        "loss": (config["opt"]["momentum"] - 0.9) ** 2 + config["layers"] + config["opt"]["frac"]
        + (config["act"] == "relu") + config["arch"]["depth"] * 0.1 + math.log(config["batch"]) * 0.01
    }


def _check_value(path, domain, value):
    assert domain.is_valid(value), (path, domain, value)
    sampler = domain.get_sampler()
    if isinstance(sampler, Quantized):
        k = value / sampler.q
        assert abs(k - round(k)) < 1e-9, (path, value, sampler.q)
    if isinstance(domain, tune.search.Integer):
        assert type(value) is int, (path, value)
    if isinstance(domain, tune.search.Float):
        assert type(value) is float, (path, value)


def check_config(config):
    for key in ("lr", "wd", "momentum", "frac", "epochs"):
        _check_value(("opt", key), SPACE["opt"][key], config["opt"][key])
    for key in ("layers", "width", "batch", "heads", "act", "arch", "flag"):
        _check_value((key,), SPACE[key], config[key])
    assert config["seed"] == 7 and config["nested"] == {"const": "x"}


@pytest.mark.parametrize("name", _params())
def test_every_domain_type_round_trips_and_points_run_first(tmp_path, name):
    searcher = make(name, seed=1, points_to_evaluate=[POINT])
    grid = tune.Tuner(
        score, param_space=SPACE,
        tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=5),
        run_config=run_config(tmp_path, "domains"),
    ).fit()
    assert len(grid) == 5 and grid.num_errors == 0
    results = sorted(grid, key=lambda r: r.metrics["trial_id"])
    first = results[0].config
    assert {k: first[k] for k in POINT} == POINT
    for result in results:
        check_config(result.config)
    # Many more suggestions straight from the searcher: every one is in its domain.
    for i in range(12):
        config = searcher.suggest(f"extra_{i}")
        if not isinstance(config, dict):
            break
        merged = {**config, "seed": 7, "nested": {"const": "x"}}
        check_config(merged)
        searcher.on_trial_complete(f"extra_{i}", {"loss": score(merged)["loss"], "config": merged})


@pytest.mark.parametrize("name", _params())
def test_a_param_space_of_constants_only_is_named_as_nothing_to_search(tmp_path, name):
    """It was refused as a `space` argument of the wrong type, which the user never passed."""
    with pytest.raises(ValueError, match="has no parameter to search"):
        tune.Tuner(score, param_space={"layers": 1, "opt": {"lr": 0.1}},
                   tune_config=tune.TuneConfig(search_alg=make(name, seed=0), metric="loss", mode="min"),
                   run_config=run_config(tmp_path, "constants")).fit()


def _space_with(domain):
    return {"x": tune.uniform(0, 1), "bad": domain}


@pytest.mark.parametrize("name", _params())
def test_unsupported_domains_fail_before_any_trial(tmp_path, name):
    def never(config):  # pragma: no cover - must not run
        raise AssertionError("no trial may start")

    cases = [
        (tune.grid_search([1, 2]), "grid_search"),
        (tune.sample_from(lambda spec: 1), "sample_from"),
    ]
    if name != "hyperopt":
        cases.append((tune.randn(0, 1), "normal"))
    searcher_cls = type(make(name, seed=0)).__name__
    for domain, what in cases:
        with pytest.raises(ValueError) as info:
            tune.Tuner(
                never, param_space={"model": _space_with(domain)},
                tune_config=tune.TuneConfig(search_alg=make(name, seed=0), metric="loss", mode="min", num_samples=2),
                run_config=run_config(tmp_path, f"bad_{what}"),
            ).fit()
        message = str(info.value)
        assert "model/bad" in message and searcher_cls in message, message
        assert what in message.replace("grid search", "grid_search").replace("randn", "normal"), message
    started = [d for _, dirs, _ in os.walk(tmp_path) for d in dirs if d.startswith("never_")]
    assert started == []  # no trial directory was made


# ------------------------------------------------------------------------------ reproducibility

def quadratic(config):
    return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2 + 0.1 * config["k"]}


SMALL_SPACE = {"x": tune.uniform(0, 1), "y": tune.quniform(0, 1, 0.05), "k": tune.randint(0, 3), "c": 1}


def _configs(grid):
    return [
        {k: r.config[k] for k in ("x", "y", "k")} for r in sorted(grid, key=lambda r: r.metrics["trial_id"])
    ]


@pytest.mark.parametrize("name", _params())
def test_same_seed_same_configs_with_two_trials_at_once(tmp_path, name):
    runs = []
    for attempt in range(2):
        grid = tune.Tuner(
            quadratic, param_space=SMALL_SPACE,
            tune_config=tune.TuneConfig(search_alg=make(name, seed=3), metric="loss", mode="min", num_samples=8,
                                        max_concurrent_trials=2),
            run_config=run_config(tmp_path, f"repro_{attempt}"),
        ).fit()
        assert len(grid) == 8 and grid.num_errors == 0
        runs.append(_configs(grid))
    assert runs[0] == runs[1]
    assert len({tuple(sorted(c.items())) for c in runs[0]}) > 1


def _drive(searcher, schedule_seed: int, n: int = 8, concurrency: int = 2) -> list:
    """Runs ``searcher`` like the driver does with ``concurrency`` trials at once, results arriving in an
    order, and with extra asks while trials run, that ``schedule_seed`` picks; returns the configurations."""
    import random

    import numpy as np

    schedule = random.Random(schedule_seed)
    searcher.set_search_properties("loss", "min", dict(SMALL_SPACE))
    searcher.set_max_concurrency(concurrency)
    live, configs = [], []
    while len(configs) < n or live:
        if len(configs) < n and len(live) < concurrency:
            config = searcher.suggest(f"t{len(configs)}")
            if isinstance(config, dict):
                live.append((f"t{len(configs)}", config))
                configs.append(config)
                continue
        if len(configs) < n and schedule.random() < 0.5:
            searcher.suggest(f"t{len(configs)}")  # the driver asks again while the library waits
        if not live:
            break
        trial_id, config = live.pop(schedule.randrange(len(live)))
        np.random.seed(schedule.randrange(2**16))  # other code uses the global generators in between
        random.seed(schedule.randrange(2**16))
        result = quadratic(config)
        searcher.on_trial_result(trial_id, {**result, "training_iteration": 1})
        searcher.on_trial_complete(trial_id, {**result, "training_iteration": 1, "config": config})
    return configs


@pytest.mark.parametrize("name", [n for n in ALL if n not in SLOW])
def test_same_seed_same_configs_whatever_order_results_arrive_in(name):
    # The arrival order of results, the driver's extra asks and other users of the global
    # generators change with the machine's load; none of them may change a seeded search.
    runs = [_drive(make(name, seed=3), schedule_seed) for schedule_seed in range(4)]
    assert all(len(r) == 8 for r in runs)
    assert all(r == runs[0] for r in runs[1:])


# -------------------------------------------------------------------------------- save / restore

class InterruptAfter(tune.Callback):
    """Acts like Ctrl+C once ``count`` trials have completed (only the first time)."""

    def __init__(self, count: int, marker: str):
        self.count = count
        self.marker = marker
        self.completed = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed >= self.count and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", _params())
def test_interrupted_search_continues_after_tuner_restore(tmp_path, name):
    searcher = make(name, seed=5)
    marker = str(tmp_path / "interrupted")
    tune.Tuner(
        quadratic, param_space=SMALL_SPACE,
        tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=9),
        run_config=run_config(tmp_path, "resumable", callbacks=[InterruptAfter(4, marker)]),
    ).fit()
    path = str(tmp_path / "storage" / "resumable")
    assert os.path.exists(marker)
    # The searcher's state is in the experiment directory.
    saved = make(name)
    saved.restore_from_dir(path)
    assert 4 <= observations(saved) < 9
    grid = tune.Tuner.restore(path, trainable=quadratic).fit()
    assert len(grid) == 9 and grid.num_errors == 0
    configs = _configs(grid)
    assert len({tuple(sorted(c.items())) for c in configs}) == 9, "a configuration was suggested twice"
    final = make(name)
    final.restore_from_dir(path)
    assert observations(final) == 9, "an observation was lost or counted twice"


@pytest.mark.parametrize("name", _params())
def test_save_and_restore_continue_the_same_sequence(tmp_path, name):
    searcher = make(name, seed=2)
    searcher.set_search_properties("loss", "min", SMALL_SPACE)
    for i in range(5):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", quadratic({**config, "c": 1}))
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)
    restored = make(name)
    restored.restore(path)
    assert observations(restored) == observations(searcher) == 5
    if name in ("optuna", "hyperopt", "nevergrad", "bayesopt", "zoopt", "hebo"):
        # The library's random state travelled with it: the next suggestions are the same.
        assert restored.suggest("t5") == searcher.suggest("t5")


# ------------------------------------------------------------------------------------ warm start

FAR_SPACE = {"x": tune.uniform(0, 100), "y": tune.uniform(0, 100)}


def far(config):
    return {"loss": (config["x"] - 15) ** 2 + (config["y"] - 80) ** 2}


@pytest.fixture(scope="module")
def earlier_experiment(tmp_path_factory):
    """A finished random search over FAR_SPACE, as a user would have it on disk."""
    storage = tmp_path_factory.mktemp("earlier")
    tune.Tuner(
        far, param_space=FAR_SPACE,
        tune_config=tune.TuneConfig(search_alg=tune.search.BasicVariantGenerator(random_state=0), num_samples=30),
        run_config=tune.RunConfig(name="random", storage_path=str(storage), verbose=0),
    ).fit()
    return str(storage / "random")


@pytest.mark.parametrize("name", _params())
def test_warm_start_from_an_earlier_experiment(tmp_path, name, earlier_experiment):
    earlier = tune.ExperimentAnalysis(earlier_experiment)
    earlier_losses = [t.last_result["loss"] for t in earlier.trials]
    searcher = make(name, seed=0)
    searcher.add_evaluated_trials(earlier_experiment, metric="loss")  # a path; ResultGrid and analysis work too
    grid = tune.Tuner(
        far, param_space=FAR_SPACE,
        tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=6,
                                    max_concurrent_trials=2),  # seeded and ordered: the same every run
        run_config=run_config(tmp_path, "warm"),
    ).fit()
    assert observations(searcher) == 30 + 6
    new_losses = [r.metrics["loss"] for r in grid]
    # Starting from the earlier results, the search looks where they were good.
    assert statistics.median(new_losses) < statistics.median(earlier_losses)


# ------------------------------------------------------------------ failures and batch limiting

def sometimes_fails(config):
    if config["k"] == 1:
        raise RuntimeError("this configuration fails")
    return quadratic(config)


@pytest.mark.parametrize("name", _params())
def test_failed_trials_and_batch_concurrency_limiter(tmp_path, name):
    searcher = make(name, seed=4)
    limited = ConcurrencyLimiter(searcher, max_concurrent=2, batch=True)
    grid = tune.Tuner(
        sometimes_fails, param_space=SMALL_SPACE,
        tune_config=tune.TuneConfig(search_alg=limited, metric="loss", mode="min", num_samples=8),
        run_config=run_config(tmp_path, "failing"),
    ).fit()
    assert len(grid) == 8
    failed = [r for r in grid if r.error is not None]
    assert all(r.config["k"] == 1 for r in failed)
    assert grid.num_terminated == 8 - len(failed)
    # Finished trials reached the library; failed ones are not counted as results.
    assert observations(searcher) >= grid.num_terminated - (1 if name == "bohb" else 0)


# ------------------------------------------------------------------------ names, errors, imports

def test_create_searcher_knows_every_name():
    from tunesmith.tune.search import SEARCH_ALG_IMPORT

    assert set(SEARCH_ALG_IMPORT) == {
        "variant_generator", "random", "ax", "hyperopt", "bayesopt", "bohb", "nevergrad", "optuna", "zoopt", "hebo",
    }
    expected = {
        "optuna": "OptunaSearch", "hyperopt": "HyperOptSearch", "bayesopt": "BayesOptSearch", "bohb": "TuneBOHB",
        "nevergrad": "NevergradSearch", "zoopt": "ZOOptSearch", "ax": "AxSearch", "hebo": "HEBOSearch",
    }
    for key, cls in expected.items():
        searcher = create_searcher(key, metric="loss", mode="min", budget=10)
        assert type(searcher).__name__ == cls
        assert type(searcher).__module__.startswith(f"tunesmith.tune.search.{key}")


def test_importing_tunesmith_imports_no_search_library():
    import subprocess

    code = (
        "import sys, tunesmith\nfrom tunesmith import tune\nimport tunesmith.tune.search.optuna, "
        "tunesmith.tune.search.ax, tunesmith.tune.search.hebo\n"
        "print(sorted(m for m in ('optuna','hyperopt','bayes_opt','nevergrad','zoopt','hpbandster','ax','hebo',"
        "'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ALL)
def test_a_missing_library_names_the_extra_to_install(monkeypatch, name):
    monkeypatch.setitem(sys.modules, MODULES[name], None)
    if name == "bohb":
        monkeypatch.setitem(sys.modules, "hpbandster.optimizers.config_generators.bohb", None)
    if name == "ax":
        monkeypatch.setitem(sys.modules, "ax.service.ax_client", None)
    if name == "hebo":
        monkeypatch.setitem(sys.modules, "hebo.optimizers.hebo", None)
    with pytest.raises(ImportError, match=rf"tunesmith\[{name}\]"):
        create_searcher(name, metric="loss", mode="min", budget=10)


@pytest.mark.parametrize("name", _params(["optuna", "hyperopt", "nevergrad"]))
def test_metric_and_mode_from_tune_config_or_searcher_and_a_clash_is_an_error(tmp_path, name):
    with pytest.raises(ValueError, match="metric='acc'.*metric='loss'|Set `metric` in one place"):
        tune.Tuner(
            quadratic, param_space=SMALL_SPACE,
            tune_config=tune.TuneConfig(search_alg=make(name, metric="acc", mode="max"), metric="loss", mode="min"),
            run_config=run_config(tmp_path, "clash"),
        ).fit()
    # Set on the searcher only: the Tuner runs with it.
    grid = tune.Tuner(
        quadratic, param_space=SMALL_SPACE,
        tune_config=tune.TuneConfig(search_alg=make(name, seed=0, metric="loss", mode="min"), num_samples=3),
        run_config=run_config(tmp_path, "searcher_metric"),
    ).fit()
    assert grid.get_best_result(metric="loss", mode="min").metrics["loss"] == min(r.metrics["loss"] for r in grid)


# ----------------------------------------------------------------------------- library quirks

def test_nevergrad_ngopt_keeps_going_once_it_switches_to_its_meta_model(tmp_path):
    # NGOpt with a budget of 200 on two parameters switches to a meta-model after about a dozen
    # trials; nevergrad 1.0.12's meta-model calls float() on a one-element array, which NumPy 2.4
    # refuses. The searcher must run all trials through it.
    from tunesmith.tune.search.nevergrad import NevergradSearch

    searcher = NevergradSearch(optimizer_kwargs={"budget": 200}, seed=0)
    grid = tune.Tuner(
        lambda config: {"loss": (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2},
        param_space={"x": tune.uniform(0, 1), "y": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=24),
        run_config=run_config(tmp_path, "ngopt"),
    ).fit()
    assert len(grid) == 24 and grid.num_errors == 0
    assert "MetaModel" in searcher._opt.optim.name  # the meta-model was in use, not a fallback
    assert grid.get_best_result().metrics["loss"] < 0.05


def test_a_restored_zoopt_search_suggests_in_a_fresh_process(tmp_path):
    pytest.importorskip("zoopt")
    from zoopt.utils.zoo_global import gl

    searcher = make("zoopt", seed=3)
    searcher.set_search_properties("loss", "min", SMALL_SPACE)
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", quadratic({**config, "c": 1}))
    path = str(tmp_path / "zoopt.pkl")
    searcher.save(path)
    # ZOOpt keeps its dimensions' precisions in a process-wide global: in a new process it is empty.
    gl.float_precisions = []
    restored = make("zoopt")
    restored.restore(path)
    for i in range(3, 6):
        config = restored.suggest(f"t{i}")
        assert set(config) >= {"x"}
        restored.on_trial_complete(f"t{i}", quadratic({**config, "c": 1}))
    assert observations(restored) == 6


# -- the integrations' own options, as Ray documents them ---------------------------------------------------
def _fit_with(alg, space, tmp_path, num_samples, **tune_kwargs):
    return tune.Tuner(
        lambda config: tune.report({"loss": sum(v for v in config.values() if isinstance(v, (int, float)))}),
        param_space=space, tune_config=tune.TuneConfig(search_alg=alg, num_samples=num_samples, **tune_kwargs),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()


def test_hyperopt_points_of_a_hyperopt_space_give_category_values(tmp_path):
    """As Ray (since 1.2): {"layers": 2} for hp.choice("layers", [1, 2, 3]) runs layers=2, not the option at index 2."""
    from hyperopt import hp

    from tunesmith.tune.search.hyperopt import HyperOptSearch

    space = {"layers": hp.choice("layers", [1, 2, 3]), "act": hp.choice("act", ["relu", "tanh"]), "lr": hp.uniform("lr", 0, 1)}
    alg = HyperOptSearch(space, metric="loss", mode="min", points_to_evaluate=[{"layers": 2, "act": "tanh", "lr": 0.5}])
    grid = _fit_with(alg, None, tmp_path, 1)
    assert grid[0].config == {"layers": 2, "act": "tanh", "lr": 0.5}
    with pytest.raises(ValueError, match="none of its options"):
        HyperOptSearch(space, metric="loss", mode="min", points_to_evaluate=[{"layers": 7, "act": "x", "lr": 0.5}]).suggest("t")


def _nine_steps(config):
    for i in range(9):
        tune.report({"loss": (config["width"] - 5) ** 2 / (i + 1)})


@pytest.mark.parametrize("limit", ["tune_config", "limiter"])
def test_bohb_halves_its_brackets_with_few_trials_at_a_time(tmp_path, limit):
    """With 2 trials at a time, rungs were halved before their bracket filled (11 of 12 trials ran to the end);
    Ray's numbers: 6 stopped at 1 iteration, 3 at 3, 3 ran all 9."""
    from tunesmith.tune.schedulers import HyperBandForBOHB
    from tunesmith.tune.search.bohb import TuneBOHB

    alg = TuneBOHB(seed=1) if limit == "tune_config" else ConcurrencyLimiter(TuneBOHB(seed=1), max_concurrent=2)
    extra = {"max_concurrent_trials": 2} if limit == "tune_config" else {}
    grid = tune.Tuner(_nine_steps, param_space={"width": tune.uniform(0, 20)}, tune_config=tune.TuneConfig(
        search_alg=alg, scheduler=HyperBandForBOHB(time_attr="training_iteration", max_t=9, reduction_factor=3),
        num_samples=12, metric="loss", mode="min", **extra),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(r.metrics["training_iteration"] for r in grid) == [1] * 6 + [3] * 3 + [9] * 3


@pytest.mark.slow_search
def test_ax_options_as_ray_documents_them(tmp_path):
    """outcome_constraints' metrics reach Ax (every trial was marked FAILED), an AxClient's experiment gives the
    metric and mode, and extra keyword arguments go to the AxClient."""
    from ax.service.ax_client import AxClient
    from ax.service.utils.instantiation import ObjectiveProperties

    from tunesmith.tune.search.ax import AxSearch

    def loss_and_norm(config):
        tune.report({"loss": (config["x1"] - 0.2) ** 2 + config["x2"], "l2norm": (config["x1"] ** 2 + config["x2"] ** 2) ** 0.5})

    space = {"x1": tune.uniform(0, 1), "x2": tune.uniform(0, 1)}
    alg = AxSearch(metric="loss", mode="min", outcome_constraints=["l2norm <= 1.25"], enforce_sequential_optimization=False)
    tune.Tuner(loss_and_norm, param_space=space, tune_config=tune.TuneConfig(search_alg=alg, num_samples=3, max_concurrent_trials=1),
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert [t.status.name for t in alg._ax.experiment.trials.values()] == ["COMPLETED"] * 3
    assert set(alg._ax.experiment.fetch_data().df["metric_name"]) == {"loss", "l2norm"}

    client = AxClient(random_seed=0, verbose_logging=False)
    client.create_experiment(parameters=[{"name": "x1", "type": "range", "bounds": [0.0, 1.0]}],
                             objectives={"score": ObjectiveProperties(minimize=False)})
    alg = AxSearch(ax_client=client)
    assert (alg.metric, alg.mode) == ("score", "max")


def test_nevergrad_optimizer_instance_with_the_names_of_its_values(tmp_path):
    import nevergrad as ng

    from tunesmith.tune.search.nevergrad import NevergradSearch

    alg = NevergradSearch(optimizer=ng.optimizers.OnePlusOne(parametrization=2), space=["height", "width"],
                          metric="loss", mode="min", points_to_evaluate=[{"height": 0.5, "width": -0.5}])
    grid = _fit_with(alg, None, tmp_path, 3)
    assert sorted(grid[0].config) == ["height", "width"]
    assert {"height": 0.5, "width": -0.5} in [r.config for r in grid]
    with pytest.raises(ValueError, match="has 2 values"):
        NevergradSearch(optimizer=ng.optimizers.OnePlusOne(parametrization=2), space=["a"], metric="loss", mode="min")


def test_bayesopt_takes_repeat_float_precision():
    from tunesmith.tune.search.bayesopt import BayesOptSearch

    alg = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", repeat_float_precision=2)
    assert 0 <= alg.suggest("t0")["x"] <= 1
    with pytest.raises(ValueError, match="repeat_float_precision"):
        BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", repeat_float_precision=-1)


class _LockedSearcher(tune.search.Searcher):
    """A searcher holding a lock: neither it nor the TuneConfig holding it can be pickled."""

    def __init__(self):
        import threading

        super().__init__(metric="loss", mode="min")
        self.lock = threading.Lock()
        self.n = 0

    def suggest(self, trial_id):
        self.n += 1
        return {"x": float(self.n)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def test_a_run_whose_searcher_cannot_be_saved_restores_with_a_warning_and_no_stray_files(tmp_path, caplog):
    grid = tune.Tuner(lambda config: tune.report({"loss": config["x"]}), tune_config=tune.TuneConfig(
        search_alg=_LockedSearcher(), num_samples=3, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="locked", verbose=0)).fit()
    assert len(grid) == 3
    path = tmp_path / "locked"
    assert not [f for root, _, files in os.walk(path) for f in files if ".tmp" in f or ".inner-" in f]
    with caplog.at_level("WARNING"):
        restored = tune.Tuner.restore(str(path), trainable=lambda config: tune.report({"loss": config["x"]}))
    assert "tune_config.search_alg" in caplog.text and "cannot pickle" in caplog.text
    assert restored._local_tuner._input.tune_config.num_samples == 3  # the rest of TuneConfig is kept


@pytest.mark.parametrize("library", ["hyperopt", "optuna"])
def test_repeats_of_a_configuration_share_the_values_sampled_inside_a_chosen_dict(tmp_path, library):
    """Repeater ran three different configs as the "same" one: the domains inside the tune.choice option a
    searcher picked were sampled again for each repeat, and their mean went back as one config's score."""
    from tunesmith.tune.search import Repeater

    if library == "hyperopt":
        pytest.importorskip("hyperopt")
        from tunesmith.tune.search.hyperopt import HyperOptSearch

        searcher = HyperOptSearch(random_state_seed=0)
    else:
        pytest.importorskip("optuna")
        from tunesmith.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(seed=0)
    space = {"x": tune.uniform(0, 1), "opt": tune.choice([
        {"name": "sgd", "lr": tune.loguniform(1e-4, 1e-1)},
        {"name": "adam", "beta": tune.uniform(0.8, 0.99)},
    ])}
    grid = tune.Tuner(
        lambda config: tune.report({"loss": config["x"]}), param_space=space,
        tune_config=tune.TuneConfig(search_alg=Repeater(searcher, repeat=3), num_samples=6, metric="loss",
                                    mode="min", max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    configs = [{k: v for k, v in r.config.items() if k != "__trial_index__"}
               for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]
    assert len(configs) == 6
    assert configs[0] == configs[1] == configs[2] and configs[3] == configs[4] == configs[5]
    assert configs[0] != configs[3]


def test_optuna_with_its_own_distributions_completes_a_partial_point_to_evaluate(tmp_path):
    """The trial of points_to_evaluate=[{"x": 0.5}] ran with {"x": 0.5} only (KeyError: 'y' in the
    trainable), while Optuna was told a result for the y it had drawn."""
    optuna = pytest.importorskip("optuna")
    from tunesmith.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1),
                                   "y": optuna.distributions.IntDistribution(1, 5)},
                            points_to_evaluate=[{"x": 0.5}], metric="loss", mode="min", seed=1)
    grid = tune.Tuner(lambda config: tune.report({"loss": config["x"] + config["y"]}),
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert not grid.errors
    first = min(grid, key=lambda r: r.metrics["trial_id"])
    assert first.config["x"] == 0.5 and 1 <= first.config["y"] <= 5
    study_trial = searcher._study.trials[0]
    assert study_trial.params == {"x": 0.5, "y": first.config["y"]}
