"""Result pipelining: short iterations run ahead of the driver's answers; logs and decisions stay exact."""
from __future__ import annotations

import csv
import json
import os

import pytest

from tunesmith import train, tune


def _rows(trial_dir: str) -> tuple[list[int], list[int]]:
    with open(os.path.join(trial_dir, "result.json")) as f:
        lines = [json.loads(line)["training_iteration"] for line in f]
    with open(os.path.join(trial_dir, "progress.csv"), newline="") as f:
        records = [int(r["training_iteration"]) for r in csv.DictReader(f)]
    return lines, records


def counting(config):
    for i in range(config["n"]):
        if config.get("sleep"):
            import time

            time.sleep(config["sleep"])
        with open(config["log"], "a") as f:
            f.write(f"{i + 1}\n")
        ckpt = None
        if config.get("every") and (i + 1) % config["every"] == 0:
            import tempfile

            d = tempfile.mkdtemp()
            ckpt = train.Checkpoint.from_directory(d)
        train.report({"step": i + 1}, checkpoint=ckpt)
        if ckpt is not None:
            os.rmdir(ckpt.path)  # report() copied it


def _fit(tmp_path, stop=None, **config):
    return tune.Tuner(counting, param_space={"log": str(tmp_path / "ran"), **config},
                      run_config=tune.RunConfig(verbose=0, stop=stop, storage_path=str(tmp_path / "s"),
                                                name="p")).fit()


def _ran(tmp_path) -> int:
    return len(open(tmp_path / "ran").read().split())


def test_every_result_of_fast_trials_reaches_disk_in_order(tmp_path):
    grid = tune.Tuner(counting, param_space={"n": 3000, "i": tune.grid_search([0, 1]), "log": os.devnull},
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert not grid.errors
    for result in grid:
        assert result.metrics["step"] == 3000
        assert _rows(result.path) == (list(range(1, 3001)), list(range(1, 3001)))


def test_a_stop_decided_on_a_pipelined_result_ends_the_logs_there(tmp_path):
    # A stop function names no decision point: the trial runs ahead of the decision, by at
    # most the pipelining budget's worth of iterations, and what it sent after it is dropped.
    grid = _fit(tmp_path, stop=lambda trial_id, result: result["training_iteration"] >= 5, n=100000)
    result = grid[0]
    assert result.metrics["training_iteration"] == 5
    assert _rows(result.path) == ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert 5 <= _ran(tmp_path) < 5 + 257


def test_a_stop_criterion_is_a_decision_point_the_trial_does_not_run_past(tmp_path):
    grid = _fit(tmp_path, stop={"training_iteration": 5, "step": 1000}, n=100000)
    assert grid[0].metrics["training_iteration"] == 5
    assert _rows(grid[0].path) == ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert _ran(tmp_path) == 5


def test_slow_iterations_wait_for_each_decision(tmp_path):
    # 20 ms iterations are above the 2 ms budget: the trial never starts an iteration after the stop.
    grid = _fit(tmp_path, stop={"training_iteration": 3}, n=50, sleep=0.02)
    assert grid[0].metrics["training_iteration"] == 3
    assert _ran(tmp_path) == 3


def test_pipelining_off_waits_for_each_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_RESULT_PIPELINE_S", "0")
    grid = _fit(tmp_path, stop={"training_iteration": 5}, n=100000)
    assert _rows(grid[0].path) == ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert _ran(tmp_path) == 5


def test_no_checkpoint_is_written_after_the_stop_was_decided(tmp_path):
    grid = _fit(tmp_path, stop={"training_iteration": 25}, n=100000, every=10)
    assert _rows(grid[0].path)[0] == list(range(1, 26))
    checkpoints = sorted(d for d in os.listdir(grid[0].path) if d.startswith("checkpoint_"))
    assert checkpoints == ["checkpoint_000000", "checkpoint_000001"]  # iterations 10 and 20
    assert grid[0].checkpoint.path.endswith("checkpoint_000001")


def test_a_bad_pipelining_setting_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_RESULT_PIPELINE_S", "fast")
    with pytest.raises(ValueError, match="TUNESMITH_RESULT_PIPELINE_S must be a number of seconds"):
        _fit(tmp_path, n=3)


def _ran_here(config):
    # Counts in the trial's own directory how many iterations the trainable ran.
    for i in range(config["n"]):
        with open("ran.txt", "a") as f:
            f.write(f"{i + 1}\n")
        tune.report({"score": config["q"] * (i + 1)})


def test_asha_stops_pipelined_trials_at_its_rungs_without_running_ahead(tmp_path):
    # Trivial iterations are pipelined, but ASHA decides only at its rungs (1, 4, 16) and at
    # max_t: a trial waits for the answer there, so one stopped at a rung ran no iteration past it.
    from tunesmith.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(max_t=20, grace_period=1, reduction_factor=4)
    grid = tune.Tuner(_ran_here, param_space={"n": 20, "q": tune.uniform(0, 1)},
                      tune_config=tune.TuneConfig(num_samples=24, metric="score", mode="max", scheduler=asha),
                      run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path), name="asha")).fit()
    assert not grid.errors
    last = [r.metrics["training_iteration"] for r in grid]
    assert any(it < 20 for it in last) and set(last) <= {1, 4, 16, 20}
    for result in grid:
        with open(os.path.join(result.path, "ran.txt")) as f:
            ran = len(f.read().split())
        assert ran == result.metrics["training_iteration"], (ran, result.metrics["training_iteration"])
        assert _rows(result.path) == (list(range(1, ran + 1)), list(range(1, ran + 1)))


def test_decision_points_of_asha_and_of_other_schedulers():
    from tunesmith.tune.experiment.trial import Trial
    from tunesmith.tune.schedulers import ASHAScheduler, FIFOScheduler

    trial = Trial("f", {}, trial_id="t1")
    asha = ASHAScheduler(metric="m", mode="max", max_t=100, grace_period=10, reduction_factor=3)
    asha.on_trial_add(None, trial)
    assert asha.decision_points(trial) == ("training_iteration", (10, 30, 90, 100))
    keep = ASHAScheduler(metric="m", mode="max", time_attr="epoch", max_t=9, grace_period=1,
                         reduction_factor=3, stop_last_trials=False)
    keep.on_trial_add(None, trial)
    assert keep.decision_points(trial) == ("epoch", (1, 3, 9))
    assert FIFOScheduler().decision_points(trial) is None

    from tunesmith.tune.schedulers import HyperBandScheduler

    hb = HyperBandScheduler(metric="m", mode="max", max_t=9, reduction_factor=3)
    hb.on_trial_add(None, trial)
    field, (milestone,) = hb.decision_points(trial)
    assert field == "training_iteration" and milestone == hb._trial_info["t1"][0]._cumul_r
    assert hb.on_trial_result(None, trial, {"training_iteration": milestone - 1, "m": 1.0}) == "CONTINUE"
    assert hb.on_trial_result(None, trial, {"training_iteration": milestone, "m": 1.0}) != "CONTINUE"
