"""Result loggers: the files a user reads after (and during) a run."""
from __future__ import annotations

import json
import math
import os
import pickle
import struct

import numpy as np
import pandas as pd
import pytest

from tunesmith.tune.callback import CallbackList
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.logger import (
    CSVLogger,
    CSVLoggerCallback,
    JsonLogger,
    JsonLoggerCallback,
    LegacyLoggerCallback,
    Logger,
    LoggerCallback,
    TBXLoggerCallback,
    default_logger_callbacks,
    pretty_print,
)
from tunesmith.tune.logger._util import wait_for_writes


def make_trial(tmp_path, trial_id="t0001", config=None, params=None):
    config = config if config is not None else {"lr": 0.1, "model": {"layers": 2}}
    return Trial("train_fn", config, trial_id=trial_id, experiment_path=str(tmp_path),
                 evaluated_params=params if params is not None else {"lr": config.get("lr")})


def result(i, trial, **extra):
    out = {"loss": 1.0 / (i + 1), "training_iteration": i + 1, "time_total_s": 0.5 * (i + 1),
           "info": {"grad_norm": float(i)}, "done": False, "trial_id": trial.trial_id, "config": trial.config}
    out.update(extra)
    return out


def run_trial(callbacks, trial, results, error=False):
    cbs = CallbackList(callbacks)
    cbs.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for i, r in enumerate(results):
        cbs.on_trial_result(iteration=i, trials=[trial], trial=trial, result=r)
        cbs.on_step_end(iteration=i, trials=[trial])
    if error:
        cbs.on_trial_error(iteration=len(results), trials=[trial], trial=trial)
    else:
        cbs.on_trial_complete(iteration=len(results), trials=[trial], trial=trial)
    wait_for_writes()  # files are written in the background; a finished trial's are complete
    return cbs


def read_json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_json_logger_writes_params_and_one_line_per_result(tmp_path):
    trial = make_trial(tmp_path)
    run_trial([JsonLoggerCallback()], trial, [result(i, trial) for i in range(3)])
    lines = read_json_lines(os.path.join(trial.local_path, "result.json"))
    assert [r["training_iteration"] for r in lines] == [1, 2, 3]
    assert lines[0]["config"] == {"lr": 0.1, "model": {"layers": 2}}
    assert lines[2]["info"]["grad_norm"] == 2.0
    with open(os.path.join(trial.local_path, "params.json")) as f:
        assert json.load(f) == {"lr": 0.1, "model": {"layers": 2}}
    with open(os.path.join(trial.local_path, "params.pkl"), "rb") as f:
        assert pickle.load(f) == {"lr": 0.1, "model": {"layers": 2}}
    df = pd.read_json(os.path.join(trial.local_path, "result.json"), lines=True)
    assert list(df["loss"]) == pytest.approx([1.0, 0.5, 1 / 3])


def test_json_logger_handles_numpy_nan_and_unserialisable_values(tmp_path):
    trial = make_trial(tmp_path, config={"lr": np.float64(0.1), "fn": len})
    values = {"np_float": np.float32(0.25), "np_int": np.int64(7), "arr": np.arange(3),
              "nan": float("nan"), "inf": float("inf"), "obj": object(), (1, 2): "tuple key"}
    run_trial([JsonLoggerCallback()], trial, [result(0, trial, **{"extra": values})])
    (line,) = read_json_lines(os.path.join(trial.local_path, "result.json"))
    extra = line["extra"]
    assert extra["np_float"] == 0.25 and extra["np_int"] == 7 and extra["arr"] == [0, 1, 2]
    assert math.isnan(extra["nan"]) and extra["inf"] == math.inf
    assert extra["obj"].startswith("<object object")
    assert extra["(1, 2)"] == "tuple key"
    with open(os.path.join(trial.local_path, "params.json")) as f:
        assert json.load(f) == {"lr": 0.1, "fn": "len"}


def test_files_are_flushed_on_complete_and_error(tmp_path):
    ok, bad = make_trial(tmp_path, "ok"), make_trial(tmp_path, "bad")
    callbacks = [JsonLoggerCallback(flush_period_s=3600), CSVLoggerCallback(flush_period_s=3600)]
    cbs = CallbackList(callbacks)
    for trial in (ok, bad):
        cbs.on_trial_start(iteration=0, trials=[ok, bad], trial=trial)
        cbs.on_trial_result(iteration=0, trials=[ok, bad], trial=trial, result=result(0, trial))
    cbs.on_step_end(iteration=0, trials=[ok, bad])
    cbs.on_trial_complete(iteration=1, trials=[ok, bad], trial=ok)
    cbs.on_trial_error(iteration=1, trials=[ok, bad], trial=bad)
    wait_for_writes()
    for trial in (ok, bad):
        assert len(read_json_lines(os.path.join(trial.local_path, "result.json"))) == 1
        assert len(pd.read_csv(os.path.join(trial.local_path, "progress.csv"))) == 1


def test_buffered_results_reach_disk_after_the_flush_period(tmp_path):
    trial = make_trial(tmp_path)
    callback = JsonLoggerCallback(flush_period_s=0)
    cbs = CallbackList([callback])
    cbs.on_trial_start(iteration=0, trials=[trial], trial=trial)
    cbs.on_trial_result(iteration=0, trials=[trial], trial=trial, result=result(0, trial))
    cbs.on_step_end(iteration=0, trials=[trial])
    wait_for_writes()
    # Still running, but the step end flushed what was buffered.
    assert len(read_json_lines(os.path.join(trial.local_path, "result.json"))) == 1


def test_experiment_end_closes_every_open_file(tmp_path):
    trials = [make_trial(tmp_path, f"t{i}") for i in range(3)]
    callback = CSVLoggerCallback(flush_period_s=3600)
    for trial in trials:
        callback.on_trial_start(iteration=0, trials=trials, trial=trial)
        callback.on_trial_result(iteration=0, trials=trials, trial=trial, result=result(0, trial))
    callback.on_experiment_end(trials=trials)
    for trial in trials:
        assert list(pd.read_csv(os.path.join(trial.local_path, "progress.csv"))["loss"]) == [1.0]


def test_csv_header_is_stable_when_later_results_change_keys(tmp_path):
    trial = make_trial(tmp_path)
    results = [
        result(0, trial),
        result(1, trial, new_metric=5),  # a new key is not written
        {k: v for k, v in result(2, trial).items() if k != "loss"},  # a missing key is empty
    ]
    run_trial([CSVLoggerCallback()], trial, results)
    path = os.path.join(trial.local_path, "progress.csv")
    df = pd.read_csv(path)
    assert list(df.columns) == ["loss", "training_iteration", "time_total_s", "info/grad_norm", "done", "trial_id"]
    assert "config" not in df.columns and "new_metric" not in df.columns
    assert list(df["training_iteration"]) == [1, 2, 3]
    assert df["loss"].iloc[0] == 1.0 and math.isnan(df["loss"].iloc[2])
    assert list(df["info/grad_norm"]) == [0.0, 1.0, 2.0]


def test_csv_rows_read_back_as_reported(tmp_path):
    # Flat results of every plain kind, text the csv module must quote among them.
    import csv

    trial = make_trial(tmp_path)
    texts = ["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "", " lead", "é"]
    results = []
    for i, text in enumerate(texts):
        results.append({"n": i, "x": [0.5, float("nan"), float("inf"), -1e-300, 10**30][i % 5],
                        "flag": i % 2 == 0, "none": None, "text": text, "config": trial.config})
    results.append({"text": "only text"})  # the other columns left empty
    run_trial([CSVLoggerCallback()], trial, results)
    with open(os.path.join(trial.local_path, "progress.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["n", "x", "flag", "none", "text"]
    expected = [[str(r["n"]), str(r["x"]), str(r["flag"]), "", r["text"]] for r in results[:-1]]
    assert rows[1:-1] == expected
    assert rows[-1] == ["", "", "", "", "only text"]


def test_tbx_logger_plots_every_number_of_flat_results(tmp_path):
    pytest.importorskip("tensorboardX")
    trial = make_trial(tmp_path)
    results = [{"loss": 0.25 * i, "count": i, "huge": 10**40, "tiny": -1e300, "flag": True, "name": "x",
                "nan": float("nan"), "pid": 7, "training_iteration": i + 1, "config": trial.config}
               for i in range(2)]
    run_trial([TBXLoggerCallback()], trial, results)
    (name,) = [n for n in os.listdir(trial.local_path) if "tfevents" in n]
    scalars = {}
    for ev in _read_events(os.path.join(trial.local_path, name)):
        for value in ev.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((ev.step, value.simple_value))
    assert scalars == {
        "ray/tune/loss": [(1, 0.0), (2, 0.25)],
        "ray/tune/count": [(1, 0.0), (2, 1.0)],
        "ray/tune/huge": [(1, math.inf), (2, math.inf)],  # beyond float32: written as infinity
        "ray/tune/tiny": [(1, -math.inf), (2, -math.inf)],
        "ray/tune/flag": [(1, 1.0), (2, 1.0)],  # a flag plots as 0/1, as on Ray
    }


def test_restored_trial_appends_to_its_files(tmp_path):
    trial = make_trial(tmp_path)
    run_trial([JsonLoggerCallback(), CSVLoggerCallback()], trial, [result(i, trial) for i in range(2)])
    # A new driver (fresh callbacks) continues the same trial.
    later = [result(i, trial) for i in range(2, 4)]
    later[0]["late_key"] = 1
    run_trial([JsonLoggerCallback(), CSVLoggerCallback()], trial, later)
    df = pd.read_csv(os.path.join(trial.local_path, "progress.csv"))
    assert list(df["training_iteration"]) == [1, 2, 3, 4]
    assert "late_key" not in df.columns
    lines = read_json_lines(os.path.join(trial.local_path, "result.json"))
    assert [r["training_iteration"] for r in lines] == [1, 2, 3, 4]


def test_paused_and_resumed_trial_keeps_one_file(tmp_path):
    trial = make_trial(tmp_path)
    callback = CSVLoggerCallback()
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    callback.on_trial_result(iteration=0, trials=[trial], trial=trial, result=result(0, trial))
    callback.on_trial_start(iteration=1, trials=[trial], trial=trial)  # started again after a pause
    callback.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1, trial))
    callback.on_trial_complete(iteration=2, trials=[trial], trial=trial)
    wait_for_writes()
    with open(os.path.join(trial.local_path, "progress.csv")) as f:
        text = f.read()
    assert text.count("training_iteration") == 1
    assert list(pd.read_csv(os.path.join(trial.local_path, "progress.csv"))["training_iteration"]) == [1, 2]


def test_many_open_trials_stay_below_the_open_file_cap(tmp_path):
    from tunesmith.tune.logger import _util

    callback = JsonLoggerCallback()
    callback._files.max_open = 4
    trials = [make_trial(tmp_path, f"t{i}") for i in range(10)]
    for step in range(3):
        for trial in trials:
            callback.on_trial_result(iteration=step, trials=trials, trial=trial, result=result(step, trial))
        wait_for_writes()
        assert len(callback._files._open) <= 4
    callback.on_experiment_end(trials=trials)
    for trial in trials:
        lines = read_json_lines(os.path.join(trial.local_path, "result.json"))
        assert [r["training_iteration"] for r in lines] == [1, 2, 3]
    assert _util.MAX_OPEN_FILES >= 64


def _read_events(path):
    """Reads a TensorBoard event file, checking each record's CRC like TensorBoard does."""
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto.event_pb2 import Event

    def masked(data):
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    with open(path, "rb") as f:
        data = f.read()
    events, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked(data[pos:pos + 8])
        body = data[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked(body)
        events.append(Event.FromString(body))
        pos += 16 + length
    return events


def test_tbx_logger_writes_scalars_and_hparams(tmp_path):
    pytest.importorskip("tensorboardX")
    trial = make_trial(tmp_path)
    results = [result(i, trial, flag=True, name="x", big=np.float64(2.0), nan=float("nan")) for i in range(3)]
    run_trial([TBXLoggerCallback()], trial, results)
    files = [n for n in os.listdir(trial.local_path) if n.startswith("events.out.tfevents")]
    assert len(files) == 1
    events = _read_events(os.path.join(trial.local_path, files[0]))
    assert events[0].file_version == "brain.Event:2"
    scalars = {}
    for ev in events:
        for value in ev.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((ev.step, value.simple_value))
    assert scalars["ray/tune/loss"] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert scalars["ray/tune/info/grad_norm"] == [(1, 0.0), (2, 1.0), (3, 2.0)]
    assert scalars["ray/tune/big"][0] == (1, 2.0)
    assert scalars["ray/tune/flag"] == [(1, 1.0), (2, 1.0), (3, 1.0)]
    # Not plotted: the config, the x axis, strings and NaN.
    assert not any(tag.startswith("ray/tune/config") for tag in scalars)
    for tag in ("training_iteration", "name", "nan"):
        assert f"ray/tune/{tag}" not in scalars
    tags = [v.tag for ev in events for v in ev.summary.value]
    assert "_hparams_/experiment" in tags and "_hparams_/session_start_info" in tags


def test_tbx_logger_uses_timesteps_total_as_step_when_reported(tmp_path):
    pytest.importorskip("tensorboardX")
    trial = make_trial(tmp_path)
    run_trial([TBXLoggerCallback()], trial, [result(i, trial, timesteps_total=100 * (i + 1)) for i in range(2)])
    (name,) = [n for n in os.listdir(trial.local_path) if "tfevents" in n]
    steps = [ev.step for ev in _read_events(os.path.join(trial.local_path, name))
             if any(v.tag == "ray/tune/loss" for v in ev.summary.value)]
    assert steps == [100, 200]


def test_tbx_event_file_grows_with_results(tmp_path):
    trial = make_trial(tmp_path)
    callback = TBXLoggerCallback(flush_period_s=0)
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    sizes = []
    for i in range(3):
        callback.on_trial_result(iteration=i, trials=[trial], trial=trial, result=result(i, trial))
        callback.on_step_end(iteration=i, trials=[trial])
        wait_for_writes()
        (name,) = [n for n in os.listdir(trial.local_path) if "tfevents" in n]
        sizes.append(os.path.getsize(os.path.join(trial.local_path, name)))
    assert sizes[0] < sizes[1] < sizes[2]
    callback.on_experiment_end(trials=[trial])


def test_default_logger_callbacks():
    names = [type(cb).__name__ for cb in default_logger_callbacks()]
    assert names[:2] == ["JsonLoggerCallback", "CSVLoggerCallback"]
    try:
        import tensorboardX  # noqa: F401

        assert names[2:] == ["TBXLoggerCallback"]
    except ImportError:
        assert len(names) == 2
    assert all(isinstance(cb, LoggerCallback) for cb in default_logger_callbacks())


def test_result_hooks_of_loggers_and_their_errors(tmp_path):
    from tunesmith.tune.callback import CallbackError

    trial = make_trial(tmp_path)
    seen = []

    class Logs(LoggerCallback):
        def log_trial_result(self, iteration, trial, result):
            seen.append(("logs", iteration, result["training_iteration"]))

    class Overrides(LoggerCallback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(("overrides", info.get("extra")))

    patched = Logs()
    patched.on_trial_result = lambda **info: seen.append(("patched", info["iteration"]))
    cbs = CallbackList([Logs(), Overrides(), patched])
    cbs.on_trial_result(iteration=3, trials=[trial], trial=trial, result=result(0, trial), extra="x")
    assert seen == [("logs", 3, 1), ("overrides", "x"), ("patched", 3)]

    class Fails(LoggerCallback):
        def log_trial_result(self, iteration, trial, result):
            raise RuntimeError("disk full")

    with pytest.raises(CallbackError, match=r"Fails raised RuntimeError in on_trial_result\(\): disk full"):
        CallbackList([Fails()]).on_trial_result(iteration=0, trials=[trial], trial=trial, result=result(0, trial))


def test_custom_logger_callback_hooks(tmp_path):
    events = []

    class Recorder(LoggerCallback):
        def log_trial_start(self, trial):
            events.append(("start", trial.trial_id))

        def log_trial_result(self, iteration, trial, result):
            events.append(("result", result["training_iteration"]))

        def log_trial_end(self, trial, failed=False):
            events.append(("end", failed))

    trial = make_trial(tmp_path)
    run_trial([Recorder()], trial, [result(0, trial)])
    run_trial([Recorder()], trial, [result(1, trial)], error=True)
    assert events == [("start", "t0001"), ("result", 1), ("end", False),
                      ("start", "t0001"), ("result", 2), ("end", True)]


def test_legacy_logger_classes_through_callback(tmp_path):
    closed = []

    class MyLogger(Logger):
        def _init(self):
            self.results = []

        def on_result(self, result):
            self.results.append(result["training_iteration"])

        def close(self):
            closed.append((self.logdir, self.results, self.config))

    trial = make_trial(tmp_path)
    run_trial([LegacyLoggerCallback([MyLogger, JsonLogger, CSVLogger])], trial,
              [result(i, trial) for i in range(2)])
    assert closed == [(trial.local_path, [1, 2], {"lr": 0.1, "model": {"layers": 2}})]
    assert len(read_json_lines(os.path.join(trial.local_path, "result.json"))) == 2
    assert len(pd.read_csv(os.path.join(trial.local_path, "progress.csv"))) == 2
    with pytest.raises(TypeError, match="Logger subclasses"):
        LegacyLoggerCallback([JsonLoggerCallback])


def test_logger_callbacks_pickle_without_open_files(tmp_path):
    trial = make_trial(tmp_path)
    callback = JsonLoggerCallback()
    callback.on_trial_result(iteration=0, trials=[trial], trial=trial, result=result(0, trial))
    clone = pickle.loads(pickle.dumps(callback))
    assert clone._writers == {}
    callback.on_experiment_end(trials=[trial])


def test_pretty_print_drops_config_and_nests():
    text = pretty_print({"loss": 0.5, "config": {"lr": 1}, "info": {"b": 2, "a": "x"}, "none": None},
                        exclude=["info"])
    assert text == "loss: 0.5\n"
    text = pretty_print({"loss": float("nan"), "info": {"b": 2, "a": "x y"}, "ok": True})
    assert text.splitlines() == ["info:", "  a: x y", "  b: 2", "loss: .nan", "ok: true"]


def _reports_twice(config):
    from tunesmith import tune

    tune.report({"x": config["x"]})
    tune.report({"x": config["x"] + 1})


def test_a_run_keeps_its_logger_bookkeeping_to_itself(tmp_path):
    """What a run's loggers remember (params files written, unwritten rows, a failed write) goes
    with the run: nothing piles up in the process from one fit() to the next."""
    from tunesmith import tune
    from tunesmith.tune.logger import _util

    process = _util._PROCESS_SCOPE  # what loggers driven by hand (outside a run) remember
    before = dict(process.params)
    for name in ("first", "second"):
        grid = tune.Tuner(_reports_twice, param_space={"x": tune.grid_search([1, 2, 3])},
                          run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0)).fit()
        assert sorted(r.metrics["x"] for r in grid) == [2, 3, 4]
        for result in grid:
            with open(os.path.join(result.path, "params.json")) as f:
                assert json.load(f) == result.config
    assert _util.current_scope() is process
    assert process.params == before and process.dirty == {} and process.error is None
    # Each run's I/O thread ended with it: a process that runs fit() again and again keeps none.
    import threading

    for thread in threading.enumerate():
        if thread.name == "tunesmith-logger-io" and thread is not process.writer._thread:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a finished run's logger I/O thread is still running"


def test_a_write_scopes_io_thread_ends_once_stopped_however_often_and_restarts_for_new_writes(tmp_path):
    """A run's I/O thread ends after its last write, also when it is told to stop several times
    (a simulated experiment advanced step by step) or given writes after the stop."""
    import threading

    from tunesmith.tune.logger import _util

    scope = _util.WriteScope()
    written: list[int] = []
    gate = threading.Event()
    scope.writer.submit(scope, gate.wait)
    thread = scope.writer._thread
    for i in range(3):
        scope.writer.submit(scope, written.append, i)
        scope.writer.stop()
    scope.writer.submit(scope, written.append, 3)  # after a stop: still written, then the thread ends
    gate.set()
    thread.join(timeout=60)
    assert not thread.is_alive() and written == [0, 1, 2, 3]
    # A later write starts a thread again, and a wait sees it done.
    with _util.run_scope(scope):
        scope.writer.submit(scope, written.append, 4)
        _util.wait_for_writes()
        assert written == [0, 1, 2, 3, 4]
    # Leaving the scope stopped it again.
    later = scope.writer._thread
    if later is not None:
        later.join(timeout=60)
        assert not later.is_alive()


def test_a_forked_child_writes_through_its_own_io_thread(tmp_path):
    """A process forked while a writer's thread runs (the parent wrote by hand) still writes and waits."""
    import multiprocessing

    from tunesmith.tune.logger import _util

    _util.submit(lambda: None)  # the process scope's thread now runs, here
    assert _util._PROCESS_SCOPE.writer._thread is not None
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_writes_a_file, args=(str(tmp_path / "from_child"),))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0 and (tmp_path / "from_child").read_text() == "written"


def _writes_a_file(path: str) -> None:
    from tunesmith.tune.logger import _util

    _util.submit(_util.write_atomic, path, b"written")
    _util.wait_for_writes()


class _SeedCustomLogger(LoggerCallback):
    """Seed 004's "How to Build Custom Tune Loggers?": a file in the trial's directory, opened at its start."""

    def __init__(self):
        self._files = {}

    def log_trial_start(self, trial):
        self._files[trial] = open(os.path.join(trial.local_path, "log.txt"), "at")

    def log_trial_result(self, iteration, trial, result):
        self._files[trial].write(f"{result['m']}\n")

    def log_trial_end(self, trial, failed=False):
        self._files.pop(trial).close()


def _reports_m(config):
    from tunesmith import tune

    tune.report({"m": config["x"]})


def test_a_custom_logger_finds_the_trial_directory_at_trial_start(tmp_path):
    from tunesmith import tune

    grid = tune.Tuner(_reports_m, param_space={"x": tune.grid_search(list(range(20)))},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[_SeedCustomLogger()],
                                                verbose=0)).fit()
    assert not grid.errors
    assert sorted(int(open(os.path.join(r.path, "log.txt")).read()) for r in grid) == list(range(20))
