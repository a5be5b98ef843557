"""Stoppers: decisions on synthetic results, and create_stopper's handling of every input kind."""
from __future__ import annotations

import datetime
import os
import pickle
import time

import pytest

from tunesmith import tune
from tunesmith.tune.stopper import (
    CombinedStopper,
    DictStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
    create_stopper,
)


def test_stopper_is_reachable_from_tune_namespace():
    assert tune.Stopper is Stopper
    assert tune.stopper.CombinedStopper is CombinedStopper


def test_stopper_base_is_abstract():
    with pytest.raises(TypeError):
        Stopper()

    class Never(Stopper):
        def __call__(self, trial_id, result):
            return False

    assert Never().stop_all() is False


def test_maximum_iteration_counts_per_trial():
    stopper = MaximumIterationStopper(max_iter=3)
    decisions_a = [stopper("a", {"x": i}) for i in range(4)]
    assert decisions_a == [False, False, True, True]
    assert stopper("b", {"x": 0}) is False
    assert stopper.stop_all() is False


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, None])
def test_maximum_iteration_rejects_bad_max_iter(bad):
    with pytest.raises(ValueError, match="max_iter"):
        MaximumIterationStopper(max_iter=bad)


def test_experiment_plateau_stops_when_top_values_agree():
    stopper = ExperimentPlateauStopper("loss", std=0.01, top=3, mode="min")
    assert stopper("a", {"loss": 5.0}) is False
    assert stopper("b", {"loss": 1.0}) is False
    # Top 3 are {1.0, 5.0, 1.0}: spread too large.
    assert stopper("a", {"loss": 1.0}) is False
    # Top 3 become {1.0, 1.0, 1.0}: plateau.
    assert stopper("b", {"loss": 1.0}) is True
    assert stopper.stop_all() is True


def test_experiment_plateau_max_mode_keeps_largest_values():
    stopper = ExperimentPlateauStopper("acc", std=0.001, top=2, mode="max")
    assert stopper("a", {"acc": 0.9}) is False
    assert stopper("a", {"acc": 0.1}) is False  # top 2 = {0.9, 0.1}
    assert stopper("b", {"acc": 0.9}) is True  # top 2 = {0.9, 0.9}


@pytest.mark.parametrize("patience, first_stop", [(0, 2), (1, 2), (2, 3), (3, 4)])
def test_experiment_plateau_patience_counts_the_results_that_find_the_plateau(patience, first_stop):
    # As Ray's: the plateau (two equal top values) is found from the 2nd result on; the
    # experiment stops once `patience` results in a row found it.
    stopper = ExperimentPlateauStopper("loss", top=2, patience=patience)
    decisions = [stopper("a", {"loss": 1.0}) for _ in range(5)]
    assert decisions.index(True) + 1 == first_stop and all(decisions[first_stop - 1:])


def test_experiment_plateau_refuses_results_without_its_metric_and_skips_nan():
    stopper = ExperimentPlateauStopper("loss", top=2)
    with pytest.raises(ValueError, match="without it"):  # as on Ray (a misspelt metric)
        stopper("a", {"other": 1})
    assert stopper("a", {"loss": float("nan")}) is False
    assert stopper.has_plateaued() is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "avg"}, "mode"),
        ({"std": -1}, "std"),
        ({"top": 1}, "top"),
        ({"top": 2.5}, "top"),
        ({"patience": -1}, "patience"),
    ],
)
def test_experiment_plateau_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExperimentPlateauStopper("loss", **kwargs)


def test_trial_plateau_respects_grace_period_and_window():
    stopper = TrialPlateauStopper("loss", std=0.01, num_results=3, grace_period=5)
    values = [1.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    decisions = [stopper("a", {"loss": v}) for v in values]
    # Plateau over the last 3 values from the 4th result on, but grace period is 5 results.
    assert decisions == [False, False, False, False, True, True]


def test_trial_plateau_is_per_trial_and_needs_small_std():
    stopper = TrialPlateauStopper("loss", std=0.01, num_results=2, grace_period=0)
    assert stopper("a", {"loss": 1.0}) is False
    assert stopper("b", {"loss": 1.0}) is False
    assert stopper("a", {"loss": 2.0}) is False  # std 0.5
    assert stopper("b", {"loss": 1.001}) is True  # std 0.0005
    assert stopper.stop_all() is False


def test_trial_plateau_needs_a_spread_strictly_below_std():
    # As Ray's: a spread equal to std is no plateau, so std=0 never stops a trial.
    at_bound = TrialPlateauStopper("loss", std=0.5, num_results=2, grace_period=0)
    assert [at_bound("a", {"loss": v}) for v in (0.0, 1.0, 0.0, 1.0)] == [False] * 4  # population std 0.5
    zero = TrialPlateauStopper("loss", std=0.0, num_results=2, grace_period=0)
    assert [zero("a", {"loss": 1.0}) for _ in range(4)] == [False] * 4


def test_trial_plateau_metric_threshold():
    stopper = TrialPlateauStopper("loss", num_results=2, grace_period=0, metric_threshold=0.5, mode="min")
    assert [stopper("a", {"loss": 0.8}) for _ in range(3)] == [False, False, False]
    assert [stopper("b", {"loss": 0.2}) for _ in range(3)] == [False, True, True]
    stopper = TrialPlateauStopper("acc", num_results=2, grace_period=0, metric_threshold=0.9, mode="max")
    assert [stopper("a", {"acc": 0.5}) for _ in range(3)] == [False, False, False]
    assert [stopper("b", {"acc": 0.95}) for _ in range(2)] == [False, True]


def test_trial_plateau_validates_arguments():
    with pytest.raises(ValueError, match="mode"):
        TrialPlateauStopper("loss", metric_threshold=0.1)
    with pytest.raises(ValueError, match="num_results"):
        TrialPlateauStopper("loss", num_results=0)
    with pytest.raises(ValueError, match="grace_period"):
        TrialPlateauStopper("loss", grace_period=-2)
    with pytest.raises(ValueError, match="mode"):
        TrialPlateauStopper("loss", mode="best")
    with pytest.raises(ValueError, match="std"):
        TrialPlateauStopper("loss", std=-0.1)


def test_timeout_stopper_stops_experiment_after_budget():
    stopper = TimeoutStopper(0.05)
    assert stopper.stop_all() is False
    assert stopper("a", {"x": 1}) is False
    time.sleep(0.1)
    assert stopper.stop_all() is True


def test_timeout_stopper_accepts_timedelta_and_keeps_spent_time_when_pickled():
    stopper = TimeoutStopper(datetime.timedelta(hours=1))
    assert stopper.stop_all() is False
    restored = pickle.loads(pickle.dumps(stopper))
    assert restored.stop_all() is False
    assert restored._budget <= 3600

    short = TimeoutStopper(0.05)
    short.stop_all()
    time.sleep(0.1)
    assert pickle.loads(pickle.dumps(short)).stop_all() is True


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-5, ValueError), ("10", TypeError),
                                        (datetime.timedelta(0), ValueError)])
def test_timeout_stopper_rejects_bad_timeout(bad, error):
    with pytest.raises(error, match="timeout"):
        TimeoutStopper(bad)


def test_combined_stopper_stops_at_the_first_stopper_that_says_so():
    max_iter = MaximumIterationStopper(max_iter=2)
    always = FunctionStopper(lambda trial_id, result: True)
    combined = CombinedStopper(always, max_iter)
    assert combined("a", {}) is True
    assert combined("a", {}) is True
    # As on Ray, the stoppers after the one that decided did not see those results.
    assert max_iter("a", {}) is False
    assert CombinedStopper(max_iter, always)("b", {}) is True and max_iter("a", {}) is True
    assert CombinedStopper(NoopStopper(), TimeoutStopper(1000)).stop_all() is False

    class StopAll(NoopStopper):
        def stop_all(self):
            return True

    assert CombinedStopper(NoopStopper(), StopAll()).stop_all() is True


def test_combined_stopper_rejects_non_stoppers():
    with pytest.raises(TypeError, match="argument 1"):
        CombinedStopper(NoopStopper(), lambda t, r: True)


def test_create_stopper_none_gives_noop():
    stopper = create_stopper(None)
    assert isinstance(stopper, NoopStopper)
    assert stopper("a", {"training_iteration": 10**9}) is False


def test_create_stopper_dict_thresholds():
    stopper = create_stopper({"training_iteration": 10, "mean_accuracy": 0.8})
    assert isinstance(stopper, DictStopper)
    assert stopper("a", {"training_iteration": 9, "mean_accuracy": 0.5}) is False
    assert stopper("a", {"training_iteration": 10, "mean_accuracy": 0.5}) is True
    assert stopper("a", {"training_iteration": 1, "mean_accuracy": 0.8}) is True
    # A missing key is ignored for that result, and reported by missing_keys().
    assert stopper("a", {"training_iteration": 1}) is False
    assert stopper.missing_keys({"training_iteration": 1}) == ["mean_accuracy"]


def test_dict_stopper_nested_keys():
    stopper = create_stopper({"eval/acc": 0.9})
    assert stopper("a", {"eval": {"acc": 0.95}}) is True
    assert stopper("a", {"eval": {"acc": 0.5}}) is False
    assert stopper.missing_keys({"eval": {"acc": 0.5}}) == []


def test_create_stopper_function():
    seen = []

    def stop(trial_id, result):
        seen.append(trial_id)
        return result["loss"] < 0.1

    stopper = create_stopper(stop)
    assert isinstance(stopper, FunctionStopper)
    assert stopper("t1", {"loss": 0.5}) is False
    assert stopper("t2", {"loss": 0.05}) is True
    assert seen == ["t1", "t2"]
    assert stopper.stop_all() is False


def test_create_stopper_passes_stopper_through():
    stopper = MaximumIterationStopper(3)
    assert create_stopper(stopper) is stopper


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (5, TypeError, "got int"),
        ("training_iteration", TypeError, "got str"),
        (MaximumIterationStopper, TypeError, "instance"),
        ({"training_iteration": "ten"}, ValueError, "must be a number"),
        (lambda result: True, TypeError, "two arguments"),
    ],
)
def test_create_stopper_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        create_stopper(bad)


def test_a_list_of_stoppers_and_a_flag_threshold_are_taken_as_on_ray():
    combined = create_stopper([MaximumIterationStopper(2), NoopStopper()])
    assert isinstance(combined, CombinedStopper)
    assert [combined("t", {}) for _ in range(2)] == [False, True]
    flag = create_stopper({"converged": True})
    assert not flag("t", {"converged": False}) and flag("t", {"converged": True})


def _nested_loss(config):
    for i in range(10):
        tune.report({"eval": {"loss": 1.0 / (i + 1)}, "flag": i >= 2})


@pytest.mark.parametrize("metric", [None, "eval/loss"])
def test_a_stop_function_gets_the_result_as_reported(tmp_path, metric):
    """With a "/" metric name anywhere, stop functions got the flattened result (KeyError: 'eval')."""
    (result,) = tune.Tuner(
        _nested_loss,
        tune_config=tune.TuneConfig(metric=metric, mode="min" if metric else None),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  stop=lambda trial_id, r: r["eval"]["loss"] < 0.3),
    ).fit()
    assert result.error is None and result.metrics["training_iteration"] == 4


def test_stop_lists_and_flags_in_a_run(tmp_path):
    grid = tune.Tuner(
        _nested_loss, param_space={"stop": tune.grid_search(["list", "flag"])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  stop=[MaximumIterationStopper(3), NoopStopper()]),
    ).fit()
    assert [r.metrics["training_iteration"] for r in grid] == [3, 3]
    (flagged,) = tune.Tuner(_nested_loss, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, stop={"flag": True})).fit()
    assert flagged.metrics["training_iteration"] == 3


def _accuracy_sometimes(config):
    import numpy as np

    for i in range(6):
        value = {"none": None if i < 2 else i, "array": np.array([i, i])}[config["kind"]]
        tune.report({"acc": value})


def test_a_stop_criterion_on_a_missing_or_vector_value(tmp_path):
    """None under a stop key (not measured at that step) failed fit() with "'>=' not supported", and a
    numpy array with "truth value of an array is ambiguous", neither naming the trial or the key."""
    (result,) = tune.Tuner(_accuracy_sometimes, param_space={"kind": "none"}, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, stop={"acc": 4})).fit()
    assert result.error is None and result.metrics["training_iteration"] == 5
    with pytest.raises(ValueError, match=r"reported 'acc' = array\(\[0, 0\]\).*stop criterion \{'acc': 4\}"):
        tune.Tuner(_accuracy_sometimes, param_space={"kind": "array"}, run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0, stop={"acc": 4})).fit()


def test_a_nested_plateau_metric_and_a_misspelt_one(tmp_path):
    (result,) = tune.Tuner(_nested_loss, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0,
        stop=TrialPlateauStopper("eval/loss", std=0.2, num_results=3, grace_period=3))).fit()
    assert result.metrics["training_iteration"] == 4  # std of (1/2, 1/3, 1/4) is under 0.2
    with pytest.raises(Exception, match="ExperimentPlateauStopper.*'accuracy'"):
        tune.Tuner(_nested_loss, run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0, stop=ExperimentPlateauStopper("accuracy"))).fit()


def _fails_once_at_four(config):
    for i in range(6):
        tune.report({"i": i})
        if i == 3 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("fails once")


def test_restart_errored_starts_the_stoppers_count_over(tmp_path):
    exp = str(tmp_path / "exp")
    kwargs = dict(run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                            stop=MaximumIterationStopper(6)))
    first = tune.Tuner(_fails_once_at_four, param_space={"marker": str(tmp_path / "m")}, **kwargs).fit()
    assert first.num_errors == 1
    (again,) = tune.Tuner.restore(exp, _fails_once_at_four, restart_errored=True).fit()
    assert list(again.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5, 6]


def _runs_on(config):
    for i in range(10_000):
        tune.report({"i": i})


def test_a_trial_the_experiments_end_stopped_is_not_done(tmp_path):
    """As on Ray: done stays False for a trial that did not finish (Result.metrics said True while its
    last row in result.json said False)."""
    import json

    (result,) = tune.Tuner(_runs_on, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, stop=_StopAllAfter(5))).fit()
    with open(os.path.join(result.path, "result.json")) as f:
        last_row = json.loads(f.read().splitlines()[-1])
    assert result.metrics["done"] is False and last_row["done"] is False


class _StopAllAfter(Stopper):
    def __init__(self, n):
        self.n, self.seen = n, 0

    def __call__(self, trial_id, result):
        self.seen += 1
        return False

    def stop_all(self):
        return self.seen >= self.n
