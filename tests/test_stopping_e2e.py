"""Stopping criteria through Tuner.fit()."""
from __future__ import annotations

import os
import time

import pytest

from tunesmith import tune
from tunesmith.tune.stopper import MaximumIterationStopper, Stopper


def forever(config):
    i = 0
    while True:
        i += 1
        tune.report({"i": i, "score": config.get("rate", 1) * i})
        time.sleep(config.get("sleep", 0))


def _fit(trainable, param_space=None, stop=None, tune_kwargs=None, failure_config=None):
    return tune.Tuner(
        trainable, param_space=param_space or {}, tune_config=tune.TuneConfig(**(tune_kwargs or {})),
        run_config=tune.RunConfig(verbose=0, stop=stop, failure_config=failure_config),
    ).fit()


def test_dict_stop_on_user_and_auto_filled_fields():
    grid = _fit(forever, stop={"training_iteration": 7})
    assert grid[0].metrics["i"] == 7
    grid = _fit(forever, {"rate": 10}, stop={"score": 35})
    assert grid[0].metrics["score"] == 40


def test_function_stop():
    grid = _fit(forever, stop=lambda trial_id, result: result["i"] >= 3)
    assert grid[0].metrics["i"] == 3


def test_stopper_object_and_stop_all():
    class StopAllAfter(Stopper):
        def __init__(self):
            self.count = 0

        def __call__(self, trial_id, result):
            self.count += 1
            return False

        def stop_all(self):
            return self.count >= 20

    grid = _fit(forever, {"rate": tune.grid_search([1, 2])}, stop=StopAllAfter())
    assert grid.num_terminated == 2
    assert all(r.metrics.get("i", 0) < 100 for r in grid)
    assert sum(r.metrics.get("i", 0) for r in grid) >= 20


def test_maximum_iteration_stopper():
    grid = _fit(forever, stop=MaximumIterationStopper(max_iter=4))
    assert grid[0].metrics["training_iteration"] == 4


def test_time_budget_stops_the_experiment():
    start = time.time()
    grid = _fit(forever, {"sleep": 0.05}, tune_kwargs={"time_budget_s": 1.0, "num_samples": -1})
    assert time.time() - start < 30
    assert len(grid) >= 1
    assert all(r.metrics.get("i", 0) >= 1 for r in grid if r.metrics)


def broken(config):
    tune.report({"x": 1})
    if config["i"] == 0:
        raise ValueError("first trial breaks")
    time.sleep(2)
    tune.report({"x": 2})


def test_fail_fast_stops_everything():
    from tunesmith.tune import FailureConfig

    grid = _fit(broken, {"i": tune.grid_search([0, 1, 2, 3])},
                tune_kwargs={"max_concurrent_trials": 1}, failure_config=FailureConfig(fail_fast=True))
    assert grid.num_errors == 1
    # The experiment stopped: later trials never got to their second report.
    assert all(r.metrics.get("x") != 2 for r in grid)


def test_fail_fast_raise_reraises_the_error():
    from tunesmith.tune import FailureConfig

    with pytest.raises(ValueError, match="first trial breaks"):
        _fit(broken, {"i": 0}, failure_config=FailureConfig(fail_fast="raise"))


flaky_marker = {"calls": 0}


def flaky(config):
    import os

    path = os.path.join(config["dir"], "attempts")
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        attempts = len(f.read())
    tune.report({"attempts": attempts})
    if attempts < 3:
        raise RuntimeError("flaky")


def test_max_failures_retries_the_trial(tmp_path):
    from tunesmith.tune import FailureConfig

    grid = _fit(flaky, {"dir": str(tmp_path)}, failure_config=FailureConfig(max_failures=2))
    assert grid.num_errors == 0
    assert grid[0].metrics["attempts"] == 3


def never_reports(config):
    time.sleep(600)


def test_trial_that_never_reports_is_terminated_after_the_grace_period(monkeypatch):
    monkeypatch.setenv("TUNE_FORCE_TRIAL_CLEANUP_S", "1")
    start = time.time()
    grid = _fit(never_reports, tune_kwargs={"time_budget_s": 0.5})
    assert time.time() - start < 20
    assert grid.num_terminated == 1 and grid.num_errors == 0


def test_result_buffering_keeps_decisions_exact(monkeypatch):
    monkeypatch.setenv("TUNE_RESULT_BUFFER_LENGTH", "8")
    grid = _fit(forever, {"rate": tune.grid_search([1, 2])}, stop={"training_iteration": 50})
    for result in grid:
        # The trial ran on ahead while results were in flight, but what the driver kept stops
        # exactly at the stopping result.
        assert result.metrics["training_iteration"] == 50
        assert list(result.metrics_dataframe["i"]) == list(range(1, 51))


def _reports_once_then_hangs(config):
    tune.report({"a": 1})
    time.sleep(1000)


def test_a_function_trial_stuck_in_its_code_does_not_hold_up_the_end_of_the_experiment(monkeypatch):
    # As on Ray: when the time budget ends the experiment, a function trial gets
    # TUNE_FUNCTION_THREAD_TIMEOUT_S (2 s) to reach its next report, not TUNE_FORCE_TRIAL_CLEANUP_S.
    monkeypatch.setenv("TUNE_FORCE_TRIAL_CLEANUP_S", "200")
    start = time.monotonic()
    grid = tune.Tuner(_reports_once_then_hangs, param_space={"x": tune.grid_search([1, 2])},
                      tune_config=tune.TuneConfig(time_budget_s=1),
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert time.monotonic() - start < 100  # far below the 200 s of TUNE_FORCE_TRIAL_CLEANUP_S
    assert [r.metrics["a"] for r in grid] == [1, 1] and grid.num_errors == 0


def _checkpoints_every_step(config):
    import tempfile
    import time

    from tunesmith import train

    for i in range(1000):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "step"), "w").write(str(i))
            train.report({"i": i}, checkpoint=train.Checkpoint.from_directory(d))
        time.sleep(0.2)


def test_a_time_budget_leaves_no_checkpoint_the_results_do_not_name(tmp_path):
    """The checkpoint of the result a trial sent after the budget ran out was dropped with the result but
    stayed on disk, named by nothing."""
    from tunesmith import tune

    grid = tune.Tuner(_checkpoints_every_step, tune_config=tune.TuneConfig(time_budget_s=1.5),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="budget", verbose=0)).fit()
    (result,) = list(grid)
    on_disk = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))
    named = sorted(os.path.basename(c.path) for c, _ in result.best_checkpoints)
    assert on_disk == named and os.path.basename(result.checkpoint.path) == on_disk[-1]


def _counts_on(config):
    for i in range(100):
        tune.report({"i": i})


def test_a_slow_turn_of_the_driver_does_not_end_a_trial_that_had_confirmed(monkeypatch, caplog):
    """A turn of the driver longer than the stop grace period (a slow callback, a scheduler's long step) ended a
    trial "by force" whose confirmation had arrived but was not read yet, with a warning blaming its threads."""
    import logging

    monkeypatch.setenv("TUNE_FORCE_TRIAL_CLEANUP_S", "1")

    class Slow(tune.Callback):
        stopping = False

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.stopping = self.stopping or result["training_iteration"] == 3

        def on_step_end(self, iteration, trials, **info):
            if self.stopping:  # the turn in which the trial was told to stop: it confirms meanwhile
                self.stopping = None
                time.sleep(2.0)

    with caplog.at_level(logging.WARNING):
        grid = tune.Tuner(_counts_on, run_config=tune.RunConfig(
            verbose=0, stop={"training_iteration": 3}, callbacks=[Slow()])).fit()
    assert grid[0].metrics["training_iteration"] == 3 and grid.num_errors == 0
    assert "ended by force" not in caplog.text


def _checkpoints_each_step(config):
    import tempfile

    from tunesmith import train

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(open(os.path.join(d, "it")).read())
    for i in range(start, 6):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "it"), "w") as f:
                f.write(str(i + 1))
            train.report({"step": i + 1}, checkpoint=train.Checkpoint.from_directory(d))


def test_a_stopper_that_fails_leaves_no_gap_in_the_rows_after_a_restore(tmp_path):
    """The failing result's checkpoint was kept as the trial's latest but its row never written: the
    restored trial resumed after it, and that iteration was missing from its logs for good."""
    import json

    flag = tmp_path / "fail"
    flag.touch()

    def stop(trial_id, result):
        if result["training_iteration"] == 4 and flag.exists():
            raise RuntimeError("the stop function failed")
        return False

    with pytest.raises(RuntimeError, match="stop function failed"):
        tune.Tuner(_checkpoints_each_step, run_config=tune.RunConfig(
            name="exp", storage_path=str(tmp_path), stop=stop, verbose=0)).fit()
    flag.unlink()
    (result,) = tune.Tuner.restore(str(tmp_path / "exp"), _checkpoints_each_step).fit()
    with open(os.path.join(result.path, "result.json")) as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4, 5, 6]
    assert list(result.metrics_dataframe["step"]) == [1, 2, 3, 4, 5, 6]


class _StopsTheRunAfterTwoResults(Stopper):
    def __init__(self):
        self.seen = 0

    def __call__(self, trial_id, result):
        self.seen += 1
        return False

    def stop_all(self):
        return self.seen >= 2


def _three_reports(config):
    for i in range(3):
        tune.report({"loss": config["x"] + i})


def test_restoring_a_run_its_stopper_ended_starts_no_trial(tmp_path):
    """The restored stopper was first asked after the first turn of the loop, which had added and started
    a trial: the restored run gained an empty trial that used up a grid point (Ray starts none)."""
    grid = tune.Tuner(_three_reports, param_space={"x": tune.grid_search([0, 1, 2, 3])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1),
                      run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                                stop=_StopsTheRunAfterTwoResults())).fit()
    assert len(grid) == 1
    restored = tune.Tuner.restore(str(tmp_path / "exp"), _three_reports).fit()
    assert len(restored) == 1 and restored[0].config["x"] == 0
    assert len([d for d in os.listdir(tmp_path / "exp") if d.startswith("_three_reports")]) == 1
