"""A function trainable through the class API: ``wrap_function`` and ``FunctionTrainable`` (seed 004, Tune Internals)."""
from __future__ import annotations

import json
import os
import tempfile

import pytest

from tunesmith import train, tune
from tunesmith.tune.trainable.function_trainable import FunctionTrainable, wrap_function
from tunesmith.tune.utils import validate_save_restore


def counting(config):
    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                step = json.load(f)["step"]
    while step < config["n"]:
        step += 1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"step": step}, f)
            train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(d))


def fails_at_two(config):
    train.report({"step": 1})
    raise ValueError("broken at step 2")


def test_train_returns_each_report_then_the_last_one_done_and_save_restore_continue_from_it():
    cls = wrap_function(counting)
    assert cls.__name__ == "counting" and issubclass(cls, FunctionTrainable) and issubclass(cls, tune.Trainable)
    first = cls(config={"n": 5})
    assert [first.train()["step"] for _ in range(3)] == [1, 2, 3]
    path = first.save()
    first.stop()
    second = cls(config={"n": 5})
    second.restore(path)
    results = [second.train() for _ in range(3)]
    assert [r["step"] for r in results] == [4, 5, 5]
    assert [r["done"] for r in results] == [False, False, True]
    second.stop()
    assert validate_save_restore(cls, config={"n": 5})


def test_an_error_of_the_function_is_raised_by_train():
    trainable = wrap_function(fails_at_two)(config={})
    assert trainable.train()["step"] == 1
    with pytest.raises(ValueError, match="broken at step 2"):
        trainable.train()
    trainable.stop()


def test_stop_ends_a_function_waiting_at_a_report():
    trainable = wrap_function(counting)(config={"n": 1000})
    trainable.train()
    thread = trainable._thread
    trainable.stop()
    assert not thread.is_alive()


def test_a_tuner_runs_the_wrapped_class_with_one_row_per_report():
    grid = tune.Tuner(wrap_function(counting), param_space={"n": 4},
                      run_config=tune.RunConfig(verbose=0, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))).fit()
    result = grid[0]
    assert result.error is None
    rows = [json.loads(line) for line in open(os.path.join(result.path, "result.json"))]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert result.metrics["done"] is True and result.metrics["training_iteration"] == 4
    assert [m["step"] for _, m in result.best_checkpoints] == [2, 4]
    with open(os.path.join(result.checkpoint.path, "s.json")) as f:
        assert json.load(f) == {"step": 4}
    # The function's own copies: only the latest stays (save() copies it into the trial's checkpoints).
    assert os.listdir(os.path.join(result.path, ".function_trainable")) == ["checkpoint_000003"]
    # After 3 reports the repeated last result falls on iteration 4, a checkpoint iteration: it saves nothing.
    odd = tune.Tuner(wrap_function(counting), param_space={"n": 3},
                     run_config=tune.RunConfig(verbose=0, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))).fit()[0]
    assert sorted(p for p in os.listdir(odd.path) if p.startswith("checkpoint_")) == ["checkpoint_000000"]
    assert odd.metrics["training_iteration"] == 3 and odd.metrics["done"] is True


def test_wrap_function_needs_a_function():
    with pytest.raises(TypeError, match="function"):
        wrap_function(42)
    with pytest.raises(TypeError, match="wrap_function"):
        FunctionTrainable(config={})


def _reports_from_a_thread(config):
    from _trainables import report_from_a_thread_until_stopped

    report_from_a_thread_until_stopped()


@pytest.mark.timeout(120)
def test_a_trial_whose_reporting_thread_got_the_stop_is_ended_after_the_thread_timeout(tmp_path, monkeypatch):
    """The stop ended the thread that reported; the trial's own code waited for it forever, and so
    did fit(). As on Ray, it gets TUNE_FUNCTION_THREAD_TIMEOUT_S, then its worker is ended."""
    monkeypatch.setenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", "0.5")
    results = tune.Tuner(
        _reports_from_a_thread,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"training_iteration": 3}),
    ).fit()
    assert [r.error for r in results] == [None, None]
    assert [r.metrics["training_iteration"] for r in results] == [3, 3]
    assert {t.status for t in results._experiment_analysis.trials} == {"TERMINATED"}
