"""Callbacks and loggers as Ray Tune scripts use them: hook order, older logger forms, odd results."""
from __future__ import annotations

import json
import os

import pytest

from tunesmith import tune
from tunesmith.tune.callback import CallbackError
from tunesmith.tune.logger import CSVLogger, JsonLogger, LegacyLoggerCallback, Logger, UnifiedLogger


def _three_checkpoints(config):
    from _trainables import report_each_with_a_checkpoint

    report_each_with_a_checkpoint("score", (1, 9, 3))


class _Trace(tune.Callback):
    def __init__(self):
        self.trace = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trace.append(f"result{result['training_iteration']}")

    def on_trial_save(self, iteration, trials, trial, **info):
        self.trace.append("save")

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.trace.append(os.path.basename(checkpoint.path))


def test_a_result_with_a_checkpoint_is_heard_before_its_checkpoint(tmp_path):
    """Ray's order: on_trial_result, then on_trial_save and on_checkpoint; a callback that decides on a
    result ("a new best") and keeps the checkpoint it came with kept the previous one."""
    trace = _Trace()
    tune.Tuner(_three_checkpoints, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                                             callbacks=[trace])).fit()
    assert trace.trace == ["result1", "save", "checkpoint_000000", "result2", "save", "checkpoint_000001",
                           "result3", "save", "checkpoint_000002"]


def test_a_hook_set_on_the_instance_is_called(tmp_path):
    seen = []
    callback = tune.Callback()
    callback.on_trial_result = lambda iteration, trials, trial, result, **info: seen.append(result["score"])
    tune.Tuner(_three_checkpoints, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                                             callbacks=[callback])).fit()
    assert seen == [1, 9, 3]


def _per_class(config):
    tune.report({"acc": 0.85, "per_class_acc": {0: 0.9, 1: 0.8}})


def test_a_nested_metric_keyed_by_numbers(tmp_path):
    """fit() failed while saving the experiment state ("can only concatenate str (not int)")."""
    (result,) = tune.Tuner(_per_class, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert result.error is None and result.metrics["per_class_acc"] == {0: 0.9, 1: 0.8}
    assert list(result.metrics_dataframe["per_class_acc/0"]) == [0.9]


def _three_results(config):
    for i in range(3):
        tune.report({"i": i})


def _rows(trial_dir):
    with open(os.path.join(trial_dir, "result.json")) as f:
        return [json.loads(line)["training_iteration"] for line in f]


def test_legacy_loggers_in_a_callback_are_not_doubled_by_the_defaults(tmp_path):
    (result,) = tune.Tuner(_three_results, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, callbacks=[LegacyLoggerCallback([JsonLogger, CSVLogger])])).fit()
    assert _rows(result.path) == [1, 2, 3]
    with open(os.path.join(result.path, "progress.csv")) as f:
        assert len(f.read().splitlines()) == 4  # a header and three rows


class _OpensItsFileOnce(Logger):
    """Written the older way: its file is opened (and emptied) when the logger is made."""

    def _init(self):
        self.file = open(os.path.join(self.logdir, "mine.txt"), "w")
        self.file.write("init\n")

    def on_result(self, result):
        self.file.write(f"r{result['training_iteration']}\n")
        self.file.flush()

    def close(self):
        self.file.write("close\n")
        self.file.close()


def _fails_once_after_a_checkpoint(config):
    import tempfile

    checkpoint = tune.get_checkpoint()
    start = json.load(open(os.path.join(checkpoint.path, "s.json")))["k"] + 1 if checkpoint else 0
    for k in range(start, 5):
        if k == 4 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("fails once")
        with tempfile.TemporaryDirectory() as d:
            json.dump({"k": k}, open(os.path.join(d, "s.json"), "w"))
            tune.report({"k": k}, checkpoint=tune.Checkpoint.from_directory(d) if k % 2 == 0 else None)


def test_a_legacy_logger_of_the_users_lives_as_long_as_its_trial_through_a_retry(tmp_path):
    """The retry's cut of result.json made a new logger of every class: the user's reopened its file and what
    it had logged before the failure was lost. As on Ray, it is one logger for the whole trial."""
    (result,) = tune.Tuner(_fails_once_after_a_checkpoint, param_space={"marker": str(tmp_path / "failed")},
                           run_config=tune.RunConfig(
                               storage_path=str(tmp_path), verbose=0, failure_config=tune.FailureConfig(max_failures=1),
                               callbacks=[LegacyLoggerCallback([JsonLogger, CSVLogger, _OpensItsFileOnce])])).fit()
    assert result.error is None
    with open(os.path.join(result.path, "mine.txt")) as f:
        assert f.read().split() == ["init", "r1", "r2", "r3", "r4", "r4", "r5", "close"]
    assert _rows(result.path) == [1, 2, 3, 4, 5]  # the retried iteration once in result.json


class _LinesLogger(Logger):
    def _init(self):
        with open(os.path.join(self.logdir, "mylog.txt"), "a") as f:
            f.write("start\n")

    def on_result(self, result):
        with open(os.path.join(self.logdir, "mylog.txt"), "a") as f:
            f.write(f"{result['training_iteration']}\n")


def test_tune_run_loggers_runs_the_older_logger_classes(tmp_path):
    analysis = tune.run(_three_results, loggers=[_LinesLogger], storage_path=str(tmp_path), verbose=0)
    (trial,) = analysis.trials
    with open(os.path.join(trial.path, "mylog.txt")) as f:
        assert f.read().split() == ["start", "1", "2", "3"]
    assert _rows(trial.path) == [1, 2, 3]  # the default files are still written


class _Steps(tune.Trainable):
    def step(self):
        return {"loss": 1.0 / (self.iteration + 1)}


def test_a_unified_logger_as_logger_creator_writes_each_result_at_once(tmp_path):
    """Results stayed in memory until close(): a Trainable never stopped left no result.json."""
    logdir = str(tmp_path / "logs")
    trainable = _Steps(config={"lr": 0.1}, logger_creator=lambda cfg: UnifiedLogger(cfg, logdir))
    for _ in range(3):
        trainable.train()
    assert _rows(logdir) == [1, 2, 3]
    with open(os.path.join(logdir, "progress.csv")) as f:
        assert len(f.read().splitlines()) == 4
    trainable.stop()


class _FailsInSetup(tune.Callback):
    def setup(self, **info):
        raise RuntimeError("no tracker server")


def test_a_callback_failing_in_setup_says_the_experiment_did_not_start(tmp_path):
    with pytest.raises(CallbackError, match="did not start") as info:
        tune.Tuner(_three_results, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                                             callbacks=[_FailsInSetup()])).fit()
    assert "state saved" not in str(info.value)


def _three_scores(config):
    for score in (3, 1, 5):
        tune.report({"m": score})


class _BestSoFar(tune.Callback):
    """Adds the best score so far to each result, as a callback that augments results does."""

    def __init__(self):
        self.best = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.best = result["m"] if self.best is None else max(self.best, result["m"])
        result["best_m"] = self.best


def test_what_a_callback_adds_to_a_result_is_logged(tmp_path):
    """As on Ray, callbacks hear a result in list order and the default loggers come after the user's: a
    metric a callback adds is in result.json, progress.csv and the dataframe (the loggers used to hear
    every result first, and logged it without)."""
    (result,) = tune.Tuner(_three_scores, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="best", verbose=0, callbacks=[_BestSoFar()])).fit()
    assert list(result.metrics_dataframe["best_m"]) == [3, 3, 5]
    with open(os.path.join(result.path, "result.json")) as f:
        assert [json.loads(line)["best_m"] for line in f] == [3, 3, 5]
    with open(os.path.join(result.path, "progress.csv")) as f:
        assert "best_m" in f.readline().strip().split(",")


class _FailsOnTheSecondResult(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 2:
            raise RuntimeError("callback bug")


def test_a_result_a_callback_fails_on_is_still_logged(tmp_path):
    """The driver took the result in before the callback failed: its row is on disk for the restore."""
    with pytest.raises(CallbackError, match="callback bug"):
        tune.Tuner(_three_scores, run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="fails", verbose=0, callbacks=[_FailsOnTheSecondResult()])).fit()
    (trial_dir,) = [p for p in (tmp_path / "fails").iterdir() if p.is_dir()]
    with open(trial_dir / "result.json") as f:
        assert [json.loads(line)["m"] for line in f][:2] == [3, 1]


def test_a_logger_class_among_the_callbacks_says_what_to_pass(tmp_path):
    """It failed with a bare AttributeError (type object 'JsonLogger' has no attribute 'setup')."""
    for wrong in (JsonLogger, _LinesLogger, _LinesLogger({}, str(tmp_path))):
        with pytest.raises(TypeError, match=r"LegacyLoggerCallback\(\[") as info:
            tune.Tuner(_three_results, run_config=tune.RunConfig(
                storage_path=str(tmp_path), verbose=0, callbacks=[wrong])).fit()
        assert type(wrong).__name__ in str(info.value) or wrong.__name__ in str(info.value)
    with pytest.raises(TypeError, match=r"pass _BestSoFar\(\), not the class"):
        tune.Tuner(_three_results, run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0, callbacks=[_BestSoFar])).fit()
