"""Mistakes a user can make up front get a clear error before any trial runs."""
from __future__ import annotations

import os
import threading

import pytest

from tunesmith import tune


def ok(config):
    tune.report({"score": 1})


def test_non_callable_trainable():
    with pytest.raises(TypeError, match="trainable"):
        tune.Tuner(42)


def test_class_that_is_not_a_trainable():
    class NotTrainable:
        pass

    with pytest.raises(TypeError, match="Trainable"):
        tune.Tuner(NotTrainable)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        tune.TuneConfig(metric="score", mode="maximum")


def test_metric_and_mode_disagree_with_scheduler():
    from tunesmith.tune.schedulers import ASHAScheduler

    with pytest.raises(ValueError, match="differs"):
        tune.Tuner(
            ok,
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=ASHAScheduler(metric="loss", mode="min")),
            run_config=tune.RunConfig(verbose=0),
        ).fit()


def test_invalid_domain():
    with pytest.raises(ValueError, match="lower"):
        tune.loguniform(0, 1)
    with pytest.raises(ValueError):
        tune.choice([])


def test_unpicklable_trainable():
    lock = threading.Lock()

    def uses_a_lock(config):
        with lock:
            tune.report({"score": 1})

    with pytest.raises(TypeError, match="serialis"):
        tune.Tuner(uses_a_lock)


def test_bad_num_samples_and_time_budget():
    with pytest.raises(ValueError, match="num_samples"):
        tune.TuneConfig(num_samples=0)
    with pytest.raises(ValueError, match="time_budget_s"):
        tune.Tuner(ok, tune_config=tune.TuneConfig(num_samples=-1)).fit()


class _StopsAfterFive(tune.Stopper):
    def __init__(self):
        self.seen = 0

    def __call__(self, trial_id, result):
        self.seen += 1
        return False

    def stop_all(self):
        return self.seen >= 5


def test_num_samples_minus_one_runs_until_a_stopper_ends_the_experiment():
    grid = tune.Tuner(ok, tune_config=tune.TuneConfig(num_samples=-1, max_concurrent_trials=1),
                      run_config=tune.RunConfig(verbose=0, stop=_StopsAfterFive())).fit()
    assert 5 <= len(grid) <= 7 and grid.errors == []


def test_checkpoint_frequency_on_function_trainable():
    with pytest.raises(ValueError, match="class trainables"):
        tune.Tuner(ok, run_config=tune.RunConfig(
            verbose=0, checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()


def test_bad_stop_value():
    with pytest.raises(ValueError, match="stop"):
        tune.Tuner(ok, run_config=tune.RunConfig(verbose=0, stop={"score": "high"})).fit()


def test_bad_log_to_file():
    with pytest.raises(ValueError, match="log_to_file"):
        tune.Tuner(ok, run_config=tune.RunConfig(verbose=0, log_to_file=123)).fit()


def test_shared_config_classes():
    from tunesmith import train

    assert tune.RunConfig is train.RunConfig
    assert tune.CheckpointConfig is train.CheckpointConfig
    assert tune.Checkpoint is train.Checkpoint


def _reports_a_tuple_key(config):
    tune.report({"loss": 1.0})
    tune.report({"loss": 0.5, (1, 2): 5})


def test_a_result_key_json_cannot_name_does_not_break_the_experiment_state():
    grid = tune.Tuner(_reports_a_tuple_key, param_space={"x": tune.grid_search([1, 2])},
                      tune_config=tune.TuneConfig(metric="loss", mode="min"),
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert grid.errors == [] and all(r.metrics[(1, 2)] == 5 for r in grid)
    restored = tune.Tuner.restore(grid.experiment_path, trainable=_reports_a_tuple_key).get_results()
    assert all(r.metrics["loss"] == 0.5 for r in restored)


def _reports_acc_with_checkpoints(config):
    import tempfile

    for acc in (0.1, 0.9, 0.2):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "w"), "w").close()
            tune.report({"acc": acc}, checkpoint=tune.Checkpoint.from_directory(d))


def test_a_misspelt_checkpoint_score_attribute_is_an_error_not_a_deleted_best_checkpoint(monkeypatch):
    config = tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="accuracy", checkpoint_score_order="max")
    with pytest.raises(ValueError, match="checkpoint_score_attribute='accuracy'.*'acc'"):
        tune.Tuner(_reports_acc_with_checkpoints,
                   run_config=tune.RunConfig(verbose=0, checkpoint_config=config)).fit()
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    result = tune.Tuner(_reports_acc_with_checkpoints,
                        run_config=tune.RunConfig(verbose=0, checkpoint_config=config)).fit()[0]
    assert result.error is None  # allowed, with a warning: the checkpoints rank by recency


def _needs_three(config, data, labels):
    tune.report({"n": len(data) + len(labels)})


def test_a_function_needing_more_than_the_config_and_one_more_argument_is_refused_up_front():
    with pytest.raises(TypeError, match=r"with_parameters\(_needs_three, data=\.\.\., labels=\.\.\.\)"):
        tune.Tuner(_needs_three)
    grid = tune.Tuner(tune.with_parameters(_needs_three, data=[1, 2], labels=[3]),
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert grid[0].metrics["n"] == 3


def _reports_text_tag(config):
    tune.report({"tag": "abc", "loss": 1.0})


def test_a_metric_the_scheduler_ranks_must_be_a_number():
    from tunesmith.tune.schedulers import ASHAScheduler

    with pytest.raises(ValueError, match="'tag' = 'abc', which AsyncHyperBandScheduler compares as a number"):
        tune.Tuner(_reports_text_tag, tune_config=tune.TuneConfig(scheduler=ASHAScheduler(metric="tag", mode="min")),
                   run_config=tune.RunConfig(verbose=0)).fit()


def test_a_param_space_holding_a_lock_is_a_clear_error():
    with pytest.raises(TypeError, match="param_space cannot be serialised.*with_parameters"):
        tune.Tuner(ok, param_space={"lock": threading.Lock()})
