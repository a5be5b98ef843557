"""A worker that dies is noticed at once, and a retried trial resumes from its checkpoint."""
from __future__ import annotations

import os
import signal
import time

from _trainables import report_step, restore_step

from tunesmith import train, tune


def dies_once(config):
    step = restore_step()
    resumed = train.get_checkpoint() is not None
    while step < 6:
        step += 1
        report_step(step, resumed=resumed)
        marker = os.path.join(config["dir"], "killed")
        if step == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path):
    start = time.time()
    grid = tune.Tuner(
        dies_once, param_space={"dir": str(tmp_path)},
        run_config=tune.RunConfig(verbose=0, failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert time.time() - start < 30  # noticed at once, not after a timeout
    result = grid[0]
    assert result.error is None
    assert result.metrics["step"] == 6 and result.metrics["training_iteration"] == 6
    assert result.metrics["resumed"] is True
    with open(os.path.join(result.path, "error.txt")) as f:
        assert "killed by signal 9" in f.read()


def test_killed_worker_without_retries_is_an_error(tmp_path):
    grid = tune.Tuner(
        dies_once, param_space={"dir": str(tmp_path), "i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(verbose=0),
    ).fit()
    # The first trial's worker was killed; the second ran on a fresh worker and finished.
    assert grid.num_errors == 1 and grid.num_terminated == 1
    failed = [r for r in grid if r.error][0]
    assert "killed by signal 9" in str(failed.error)
    assert failed.metrics["step"] == 3


class Unpicklable(Exception):
    def __init__(self, lock):
        super().__init__("an error holding a lock")
        self.lock = lock


def raises_unpicklable(config):
    import threading

    tune.report({"x": 1})
    raise Unpicklable(threading.Lock())


def test_error_that_cannot_be_pickled_keeps_its_traceback():
    grid = tune.Tuner(raises_unpicklable, run_config=tune.RunConfig(verbose=0)).fit()
    assert grid.num_errors == 1
    assert "an error holding a lock" in str(grid[0].error)
