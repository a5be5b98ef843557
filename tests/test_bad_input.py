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
    with pytest.raises(ValueError, match="time_budget_s"):
        tune.TuneConfig(time_budget_s=-1)
    # As on Ray, 0 means no budget (a script's `time_budget_s=args.budget or 0`).
    import datetime

    assert tune.TuneConfig(time_budget_s=0).time_budget_s is None
    assert tune.TuneConfig(time_budget_s=datetime.timedelta(0)).time_budget_s is None


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


def test_a_misspelt_checkpoint_score_attribute_is_logged_as_an_error_and_the_run_goes_on(caplog):
    """As on Ray: the metric may come with later checkpoints, so the run is not aborted; the log says which
    name is missing, and checkpoints without it rank last (here all of them: the latest is kept)."""
    config = tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="accuracy", checkpoint_score_order="max")
    with caplog.at_level("ERROR", logger="tunesmith"):
        result = tune.Tuner(_reports_acc_with_checkpoints,
                            run_config=tune.RunConfig(verbose=0, checkpoint_config=config)).fit()[0]
    assert result.error is None
    assert "checkpoint_score_attribute='accuracy'" in caplog.text and "'acc'" in caplog.text
    assert result.best_checkpoints[0][1]["acc"] == 0.2


def _reports_max_acc_with_checkpoints(config):
    import tempfile

    for acc in (0.1, 0.9, 0.2):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "w"), "w").close()
            tune.report({"max-acc": acc}, checkpoint=tune.Checkpoint.from_directory(d))


def test_a_min_max_prefixed_score_attribute_is_a_metric_name_first_then_the_older_spelling():
    """Seed 004's storage example ranks by checkpoint_score_attribute="max-auc": a metric of that very name
    (as on Ray) when the trainable reports one, else "auc", highest first (tune.run's older spelling)."""
    config = tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="max-acc", checkpoint_score_order="min")
    literal = tune.Tuner(_reports_max_acc_with_checkpoints,
                         run_config=tune.RunConfig(verbose=0, checkpoint_config=config)).fit()[0]
    assert [m["max-acc"] for _, m in literal.best_checkpoints] == [0.1]  # the metric itself, lowest (order min)
    config = tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="max-acc")
    prefixed = tune.Tuner(_reports_acc_with_checkpoints,
                          run_config=tune.RunConfig(verbose=0, checkpoint_config=config)).fit()[0]
    assert [m["acc"] for _, m in prefixed.best_checkpoints] == [0.9]


def _needs_three(config, data, labels):
    tune.report({"n": len(data) + len(labels)})


def test_a_function_needing_more_than_the_config_and_one_more_argument_is_refused_up_front():
    with pytest.raises(TypeError, match=r"with_parameters\(_needs_three, data=\.\.\., labels=\.\.\.\)"):
        tune.Tuner(_needs_three)
    grid = tune.Tuner(tune.with_parameters(_needs_three, data=[1, 2], labels=[3]),
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert grid[0].metrics["n"] == 3


def _needs_data(config, data):
    tune.report({"n": len(data)})


def _old_reporter_form(config, reporter):
    reporter(n=1)


def test_a_function_whose_second_argument_is_data_is_refused_up_front():
    """Forgetting tune.with_parameters gave the data argument a reporter, and the trial failed on it."""
    with pytest.raises(TypeError, match=r"with_parameters\(_needs_data, data=\.\.\.\)"):
        tune.Tuner(_needs_data)
    # The older (config, reporter) form still runs.
    assert tune.Tuner(_old_reporter_form, run_config=tune.RunConfig(verbose=0)).fit()[0].metrics["n"] == 1


def _reports_text_tag(config):
    tune.report({"tag": "abc", "loss": 1.0})


def test_a_metric_the_scheduler_ranks_must_be_a_number():
    from tunesmith.tune.schedulers import ASHAScheduler

    with pytest.raises(ValueError, match="'tag' = 'abc', which AsyncHyperBandScheduler compares as a number"):
        tune.Tuner(_reports_text_tag, tune_config=tune.TuneConfig(scheduler=ASHAScheduler(metric="tag", mode="min")),
                   run_config=tune.RunConfig(verbose=0)).fit()


def _loss_goes_missing(config):
    for step in range(1, 6):
        tune.report({"loss": config["later"] if step == 3 else 1.0 / step})


@pytest.mark.parametrize("later", [None, "n/a"])
def test_a_ranked_metric_that_turns_into_text_or_none_later_is_named(later):
    """Only the first result was checked: a later one failed inside the scheduler, naming neither."""
    from tunesmith.tune.schedulers import ASHAScheduler

    with pytest.raises(ValueError, match=f"'loss' = {later!r}, which AsyncHyperBandScheduler compares"):
        tune.Tuner(_loss_goes_missing, param_space={"later": later},
                   tune_config=tune.TuneConfig(scheduler=ASHAScheduler(metric="loss", mode="min", grace_period=1)),
                   run_config=tune.RunConfig(verbose=0)).fit()


def test_a_param_space_holding_a_lock_is_a_clear_error():
    with pytest.raises(TypeError, match="param_space cannot be serialised.*with_parameters"):
        tune.Tuner(ok, param_space={"lock": threading.Lock()})


# -- what user code does wrong, and what the user then sees ----------------------------------------------
def _raises_with_an_undecodable_file_name(config):
    if config["bad"]:
        raise ValueError(f"cannot parse {os.fsdecode(b'donn' + bytes([0xE9]) + b'es.csv')}")
    tune.report({"ok": 1})


def test_an_error_message_with_an_undecodable_file_name_fails_only_its_trial(tmp_path):
    """Its traceback could not be written as UTF-8: fit() raised UnicodeEncodeError and the rest was lost."""
    grid = tune.Tuner(_raises_with_an_undecodable_file_name, param_space={"bad": tune.grid_search([False, True, False])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert [r.error is None for r in grid] == [True, False, True]
    bad = grid[1]
    assert "cannot parse donn" in str(bad.error)
    assert "\\udce9" in open(os.path.join(bad.path, "error.txt"), encoding="utf-8").read()


class _SaveFailsAtTwo(tune.Trainable):
    def step(self):
        return {"it": self.iteration + 1}

    def save_checkpoint(self, checkpoint_dir):
        if self.iteration == 2:
            raise OSError("disk full")
        open(os.path.join(checkpoint_dir, "w"), "w").close()


class _CleanupFails(tune.Trainable):
    def step(self):
        return {"it": self.iteration + 1}

    def cleanup(self):
        raise RuntimeError("could not close the connection")


def test_a_failed_save_keeps_its_steps_result_and_a_failed_cleanup_fails_nothing(tmp_path):
    """As on Ray: the row of the step whose checkpoint failed is kept (no empty checkpoint directory is
    left), and a cleanup() raising after the trial ended does not make it an error (or retry it)."""
    config = tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"training_iteration": 4},
                            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, checkpoint_at_end=False))
    result = tune.Tuner(_SaveFailsAtTwo, run_config=config).fit()[0]
    assert "disk full" in str(result.error)
    assert list(result.metrics_dataframe["it"]) == [1, 2]
    assert sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_")) == ["checkpoint_000000"]

    config = tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"training_iteration": 3},
                            failure_config=tune.FailureConfig(max_failures=2))
    result = tune.Tuner(_CleanupFails, tune_config=tune.TuneConfig(reuse_actors=False), run_config=config).fit()[0]
    assert result.error is None and list(result.metrics_dataframe["it"]) == [1, 2, 3]


def _exits(config):
    import sys

    sys.exit(3)


def test_fail_fast_raise_of_a_trial_that_called_sys_exit_raises_an_error_in_the_driver(tmp_path):
    """SystemExit raised as such in the driver ended the script quietly (exit code 0 or 3)."""
    config = tune.RunConfig(storage_path=str(tmp_path), verbose=0, failure_config=tune.FailureConfig(fail_fast="RAISE"))
    with pytest.raises(RuntimeError, match="SystemExit") as info:
        tune.Tuner(_exits, run_config=config).fit()
    assert isinstance(info.value.__cause__, SystemExit)


async def _async_trainable(config):  # pragma: no cover - never runs
    tune.report({"score": 1})


def test_an_async_trainable_is_refused_with_the_fix(tmp_path):
    """Its body never ran: the trial ended TERMINATED with no result and no word."""
    config = tune.RunConfig(storage_path=str(tmp_path), verbose=0)
    with pytest.raises(TypeError, match="async function.*asyncio.run"):
        tune.Tuner(_async_trainable, run_config=config)
    # Behind a wrapper, the trial fails with the same message.
    grid = tune.Tuner(lambda config: _async_trainable(config), run_config=config).fit()
    assert grid.num_errors == 1 and "asyncio.run" in str(grid[0].error)


class _Unprintable(Exception):
    def __str__(self):
        raise TypeError("no text")


def _raises_unprintable(config):
    raise _Unprintable()


def test_an_exception_whose_str_fails_leaves_the_results_readable(tmp_path):
    grid = tune.Tuner(_raises_unprintable, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 1 and "_Unprintable" in str(grid[0].error) and len(grid.errors) == 1


def test_config_mistakes_are_named():
    with pytest.raises(TypeError, match="trial_dirname_creator must return a non-empty string.*None"):
        tune.Tuner(ok, tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: None),
                   run_config=tune.RunConfig(verbose=0)).fit()
    with pytest.raises(ValueError, match="max_failures=0"):
        tune.FailureConfig(max_failures=3, fail_fast=True)
    assert tune.FailureConfig(fail_fast="RAISE").fail_fast == "raise"
    with pytest.raises(TypeError, match=r"run_config=\.\.\.\) must be a tune.RunConfig, got TuneConfig"):
        tune.Tuner(ok, run_config=tune.TuneConfig())
    with pytest.raises(TypeError, match=r"failure_config=\.\.\.\) must be a tune.FailureConfig, got CheckpointConfig"):
        tune.RunConfig(failure_config=tune.CheckpointConfig())


def _validates_now_and_then(config):
    for step in range(1, 5):
        tune.report({"val_loss": None if step % 2 else 1.0 / step})


def test_a_metric_only_ranked_at_the_end_may_be_none_in_some_results():
    """FIFO and the default searcher compare nothing as results come: None for "not measured this step" is
    fine there, as on Ray (it aborted fit())."""
    grid = tune.Tuner(_validates_now_and_then, tune_config=tune.TuneConfig(metric="val_loss", mode="min"),
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert grid.num_errors == 0 and grid.get_best_result().metrics["training_iteration"] == 4
