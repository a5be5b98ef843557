"""The storage layer: local fast path, a custom pyarrow filesystem end to end, incremental uploads, retries."""
from __future__ import annotations

import json
import os
import tempfile

import pytest

from tunesmith import train, tune
from tunesmith._internal.storage import StorageContext, StorageError, resolve_storage, with_retries


def test_local_paths_resolve_without_a_filesystem(tmp_path):
    assert resolve_storage(str(tmp_path)) == (None, str(tmp_path))
    assert resolve_storage(f"file://{tmp_path}") == (None, str(tmp_path))
    import pyarrow.fs

    assert resolve_storage(str(tmp_path), pyarrow.fs.LocalFileSystem()) == (None, str(tmp_path))
    ctx = StorageContext(str(tmp_path), "exp")
    assert not ctx.is_remote and ctx.experiment_local_path == ctx.experiment_fs_path == str(tmp_path / "exp")
    assert ctx.remote_target() is None and ctx.sync() == 0


def _subtree(root) -> "pyarrow.fs.SubTreeFileSystem":
    import pyarrow.fs

    os.makedirs(root, exist_ok=True)
    return pyarrow.fs.SubTreeFileSystem(str(root), pyarrow.fs.LocalFileSystem())


def test_sync_uploads_only_what_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    fs = _subtree(tmp_path / "store")
    ctx = StorageContext("runs", "exp", fs, sync_config=tune.SyncConfig(sync_period=0))
    assert ctx.is_remote and ctx.experiment_path == "runs/exp"
    local = ctx.experiment_local_path
    os.makedirs(os.path.join(local, "trial_1", "checkpoint_000000"))
    files = {
        "experiment_state.json": "{}", "tuner.pkl": "x", "trial_1/result.json": "{}\n",
        "trial_1/progress.csv": "a\n1\n", "trial_1/artifact.txt": "not synced",
        "trial_1/checkpoint_000000/w": "the worker's upload",
    }
    for rel, text in files.items():
        with open(os.path.join(local, rel), "w") as f:
            f.write(text)
    assert ctx.sync() == 4
    stored = tmp_path / "store" / "runs" / "exp"
    assert sorted(str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file()) == [
        "experiment_state.json", "trial_1/progress.csv", "trial_1/result.json", "tuner.pkl",
    ]
    assert ctx.sync() == 0  # nothing changed
    with open(os.path.join(local, "trial_1", "result.json"), "a") as f:
        f.write("{}\n")
    assert ctx.sync() == 1
    assert (stored / "trial_1" / "result.json").read_text() == "{}\n{}\n"


def test_retries_then_a_loud_error_naming_store_and_path(tmp_path):
    fs = _subtree(tmp_path)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("connection refused")
        return "ok"

    assert with_retries(flaky, "upload to", fs, "b/key", timeout=30) == "ok" and len(calls) == 3

    def broken():
        raise OSError("connection refused")

    with pytest.raises(StorageError) as info:
        with_retries(broken, "upload to", fs, "b/key", timeout=0.5)
    assert "b/key" in str(info.value) and "SubTreeFileSystem" in str(info.value)
    assert "connection refused" in str(info.value) and "sync_timeout" in str(info.value)


def _trainable(config):
    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            step = json.load(open(os.path.join(d, "s.json")))["step"]
    while step < 4:
        step += 1
        with tempfile.TemporaryDirectory() as d:
            json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
            train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(d))
        if step == 2 and config.get("stop_at_2"):
            return


def test_custom_filesystem_end_to_end(tmp_path, monkeypatch):
    """A user storage_filesystem that is not S3 (a pyarrow SubTreeFileSystem): results, checkpoints,
    ExperimentAnalysis and restore all go through it."""
    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    fs = _subtree(tmp_path / "store")
    grid = tune.Tuner(_trainable, param_space={"x": tune.grid_search([1, 2])},
                      run_config=train.RunConfig(name="exp", storage_path="root", storage_filesystem=fs,
                                                 verbose=0)).fit()
    assert not grid.errors
    stored = tmp_path / "store" / "root" / "exp"
    for result in grid:
        assert result.path.startswith("root/exp/") and result.filesystem is fs
        assert result.checkpoint.path == f"{result.path}/checkpoint_000003"
        trial = stored / result.path.rsplit("/", 1)[1]
        assert sorted(p.name for p in trial.iterdir() if p.name.startswith("checkpoint_")) == [
            f"checkpoint_{i:06d}" for i in range(4)]
        assert len((trial / "result.json").read_text().splitlines()) == 4
    analysis = tune.ExperimentAnalysis("root/exp", storage_filesystem=fs)
    assert sorted(t.last_result["step"] for t in analysis.trials) == [4, 4]
    assert tune.Tuner.can_restore("root/exp", storage_filesystem=fs)
    assert not tune.Tuner.can_restore("root/nothing", storage_filesystem=fs)


def _one_report(config):
    tune.report({"score": 1})


def test_a_relative_storage_path_is_where_the_tuner_was_made(tmp_path, monkeypatch):
    """A relative storage_path was taken from the working directory twice: the Tuner wrote its tuner file
    under the directory of its making, fit() the experiment under the directory it ran in, so that
    Tuner.restore of the first found an experiment without trials."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    run_config = tune.RunConfig(storage_path="results", name="rel", verbose=0)
    tuner = tune.Tuner(_one_report, run_config=run_config)
    monkeypatch.chdir(tmp_path / "b")
    grid = tuner.fit()
    assert grid.experiment_path == str(tmp_path / "a" / "results" / "rel")
    assert not (tmp_path / "b" / "results").exists()
    assert run_config.storage_path == "results"  # the user's object is left as it was
    restored = tune.Tuner.restore(str(tmp_path / "a" / "results" / "rel"), _one_report).get_results()
    assert [r.metrics["score"] for r in restored] == [1]


def _fails_until_marked(config):
    if not os.path.exists(config["marker"]):
        raise RuntimeError("not yet")
    tune.report({"score": 1})


def test_a_subtree_experiment_restored_from_its_local_path_goes_on_there(tmp_path):
    """Given the experiment's local path (no storage_filesystem), restore read it through the run's own
    SubTreeFileSystem: get_results() found no state, and fit() went on in a copy nested under the subtree."""
    base = tmp_path / "base"
    marker = tmp_path / "marker"
    tune.Tuner(_fails_until_marked, param_space={"marker": str(marker)}, run_config=tune.RunConfig(
        storage_path="root", storage_filesystem=_subtree(base), name="sub", verbose=0)).fit()
    path = str(base / "root" / "sub")
    assert [r.error is not None for r in tune.Tuner.restore(path, _fails_until_marked).get_results()] == [True]
    marker.touch()
    grid = tune.Tuner.restore(path, _fails_until_marked, resume_errored=True).fit()
    assert [r.metrics.get("score") for r in grid] == [1]
    assert sorted(os.listdir(base)) == ["root"]  # nothing written elsewhere under the subtree
    analysis = tune.ExperimentAnalysis(path)
    assert [t.status for t in analysis.trials] == ["TERMINATED"]


def test_the_state_goes_up_at_once_and_soon_after_new_checkpoints(tmp_path, monkeypatch):
    """The first upload of the experiment state waited 10 s, and later ones as long whatever the trials had
    checkpointed: a driver killed in that time left checkpoints on the store that no state named, and a
    restore started the experiment over."""
    from tunesmith._internal import storage as storage_module

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    now = [1000.0]
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: now[0])
    ctx = StorageContext("runs", "exp", _subtree(tmp_path / "store"))
    assert ctx.sync_due()  # nothing uploaded yet: the first state goes up at once
    ctx.make_dirs()
    ctx.sync()
    now[0] += 2.0
    assert not ctx.sync_due()  # no new checkpoint: the usual period
    ctx.unnamed_checkpoints = True  # a trial's checkpoint reached the store
    assert ctx.sync_due()
    ctx.sync()
    assert not ctx.unnamed_checkpoints and not ctx.sync_due()
    # An upload that took a quarter second: the next one, with new checkpoints at stake, 1.25 s later (not 5 s).
    ctx._last_sync_s = 0.25
    ctx.unnamed_checkpoints = True
    now[0] += 1.0
    assert not ctx.sync_due()
    now[0] += 0.3
    assert ctx.sync_due()


_KILLED_RUN = """
import os, sys, time
import pyarrow.fs
from tunesmith import tune
sys.path.insert(0, sys.argv[2])
from _trainables import report_step, restore_step

def slow_steps(config):
    start = restore_step()
    for step in range(start + 1, 200):
        time.sleep(0.05)
        report_step(step, start=start)

fs = pyarrow.fs.SubTreeFileSystem(sys.argv[1], pyarrow.fs.LocalFileSystem())
tune.Tuner(slow_steps, run_config=tune.RunConfig(storage_path="root", storage_filesystem=fs, name="exp",
                                                 verbose=0)).fit()
"""


def test_a_run_killed_soon_after_its_first_checkpoints_resumes_from_them(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import pyarrow.fs

    base = tmp_path / "store"
    base.mkdir()
    state = base / "root" / "exp" / "experiment_state.json"
    env = dict(os.environ, TUNESMITH_STAGING_DIR=str(tmp_path / "staging"))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(base), os.path.dirname(__file__)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (state.exists() and "checkpoint_00000" in state.read_text()):  # the store's state names one
            assert time.monotonic() < deadline and proc.poll() is None, "no state naming a checkpoint was uploaded"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    fs = pyarrow.fs.SubTreeFileSystem(str(base), pyarrow.fs.LocalFileSystem())
    tuner = tune.Tuner.restore("root/exp", slow_steps, storage_filesystem=fs)
    (result,) = list(tuner.fit())
    assert result.metrics["start"] > 0  # it went on from a checkpoint, not from scratch


def slow_steps(config):  # the killed run's trainable, again: one step from where it was
    from _trainables import report_step, restore_step

    start = restore_step()
    report_step(start + 1, start=start)


def _results_taken_while_down(seen: list, enough: int, timeout: float, also=lambda: True) -> int:
    """How many results the driver took in (``seen`` grows) from now until ``enough`` came and ``also()``
    holds, or ``timeout`` seconds passed."""
    import time

    before, deadline = len(seen), time.monotonic() + timeout
    while not (len(seen) - before >= enough and also()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(seen) - before


def _reports_until_flag(config):
    """Reports a number every 10 ms (no checkpoints) until the file ``config["flag"]`` exists, then 5 more."""
    import time

    i, after = 0, 0
    while after < 5:
        after += os.path.exists(config["flag"])
        tune.report({"i": i})
        i += 1
        time.sleep(0.01)


def test_an_outage_longer_than_sync_timeout_holds_up_no_trial_and_loses_nothing(tmp_path, monkeypatch, caplog):
    """The driver's uploads run beside the run: while the store refuses every write, results keep coming
    in; an upload that failed for sync_timeout is logged and tried again (as on Ray), and the run ends
    with every row on the store once it is back. The driver used to wait in the upload, every trial's
    results with it, and to end the run when it failed."""
    import threading
    import time

    from tunesmith._internal import storage as storage_module

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    down = threading.Event()
    put_file = storage_module.put_file

    def refused_while_down(filesystem, fs_path, data):  # the driver's writes to the store
        if down.is_set():
            raise ConnectionRefusedError("connection refused")
        put_file(filesystem, fs_path, data)

    monkeypatch.setattr(storage_module, "put_file", refused_while_down)
    results = tmp_path / "store" / "runs" / "exp"
    flag = tmp_path / "store-is-back"
    seen: list[int] = []
    during: list[int] = []

    class Counts(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(result["i"])

    def failure_logged() -> bool:
        return any("Uploading the experiment's files" in r.getMessage() for r in caplog.records)

    def outage():
        try:
            deadline = time.monotonic() + 120
            while not any(results.glob("*/result.json")) and time.monotonic() < deadline:
                time.sleep(0.02)
            down.set()
            # Down until an upload has failed for sync_timeout and the driver has taken 50 results meanwhile.
            during.append(_results_taken_while_down(seen, 50, 30, also=failure_logged))
        finally:
            down.clear()
            flag.touch()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        (result,) = tune.Tuner(
            _reports_until_flag, param_space={"flag": str(flag)},
            run_config=train.RunConfig(name="exp", storage_path="runs", storage_filesystem=_subtree(tmp_path / "store"),
                                       sync_config=tune.SyncConfig(sync_period=0.1, sync_timeout=0.5),
                                       callbacks=[Counts()], verbose=0),
        ).fit()
    finally:
        flag.touch()
        thread.join(60)
    assert during and during[0] >= 50 and failure_logged(), during
    assert result.error is None
    (log,) = results.glob("*/result.json")
    rows = [json.loads(line)["i"] for line in log.read_text().splitlines()]
    assert rows == list(range(len(rows))) == seen and result.metrics["i"] == rows[-1]


def _reports_three_times(config):
    import time

    for i in range(3):
        tune.report({"i": i})
        time.sleep(0.05)


def test_uploads_never_overwrite_the_states_that_the_state_on_the_store_names(tmp_path, monkeypatch):
    """The store held an older experiment_state.json naming slot a beside newer searcher files of slot a
    (uploads that died before the state went up, during an outage or a kill): the restore then believed
    every trial had been made and ran 2 of 12. Snapshots now go to the slot the store's state does not
    name."""
    import threading

    from tunesmith._internal import storage as storage_module

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    refuse_state = threading.Event()
    put_file = storage_module.put_file

    def state_refused(filesystem, fs_path, data):
        if refuse_state.is_set() and fs_path.endswith("experiment_state.json"):
            raise ConnectionRefusedError("connection refused")
        put_file(filesystem, fs_path, data)

    monkeypatch.setattr(storage_module, "put_file", state_refused)

    class RefuseAfterTheFirstTrial(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            refuse_state.set()

    fs = _subtree(tmp_path / "store")
    with pytest.raises(StorageError):  # the final upload of the state is refused too
        tune.Tuner(
            _reports_three_times, param_space={"x": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(num_samples=12, max_concurrent_trials=1),
            run_config=train.RunConfig(name="exp", storage_path="runs", storage_filesystem=fs, verbose=0,
                                       sync_config=tune.SyncConfig(sync_period=0.05, sync_timeout=0.2),
                                       callbacks=[RefuseAfterTheFirstTrial()]),
        ).fit()
    refuse_state.clear()
    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "second"))
    grid = tune.Tuner.restore("runs/exp", _reports_three_times, storage_filesystem=fs).fit()
    assert len(grid) == 12 and not grid.errors


def _checkpoints_or_counts(config):
    import time

    from _trainables import report_step

    for step in range(1, 400):
        if config["checkpoints"]:
            report_step(step)
        else:
            tune.report({"step": step})
        time.sleep(0.01)
        if os.path.exists(config["flag"]) and step > 5:
            return


def test_a_delete_that_hangs_on_the_store_holds_up_no_trial(tmp_path, monkeypatch):
    """Checkpoints dropped by num_to_keep were deleted from the store on the driver's thread: while the
    store hung, no trial's results were taken in. They are deleted in the background."""
    import threading

    from tunesmith._internal import storage as storage_module
    from tunesmith.tune.execution import checkpoint_manager

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    hung, release = threading.Event(), threading.Event()
    delete_dir = storage_module.delete_dir

    def hangs(filesystem, fs_path, timeout):  # the store's delete hangs until released
        hung.set()
        release.wait(60)
        delete_dir(filesystem, fs_path, timeout)

    monkeypatch.setattr(storage_module, "delete_dir", hangs)
    monkeypatch.setattr(checkpoint_manager, "_delete", lambda checkpoint: (hung.set(), release.wait(60)))
    flag = tmp_path / "done"
    seen: list[int] = []
    during: list[int] = []

    class Counts(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not trial.config["checkpoints"]:
                seen.append(result["step"])

    def watch():
        try:
            hung.wait(60)
            during.append(_results_taken_while_down(seen, 30, 20))
        finally:
            flag.touch()
            release.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    grid = tune.Tuner(
        _checkpoints_or_counts, param_space={"checkpoints": tune.grid_search([True, False]), "flag": str(flag)},
        run_config=train.RunConfig(name="exp", storage_path="runs", storage_filesystem=_subtree(tmp_path / "store"),
                                   verbose=0, checkpoint_config=train.CheckpointConfig(num_to_keep=1),
                                   sync_config=tune.SyncConfig(sync_period=0.05), callbacks=[Counts()]),
    ).fit()
    thread.join(60)
    assert during and during[0] >= 30, during
    assert not grid.errors
    (with_checkpoints,) = [r for r in grid if r.config["checkpoints"]]
    kept = [n for n in os.listdir(tmp_path / "store" / "runs" / "exp" / os.path.basename(with_checkpoints.path))
            if n.startswith("checkpoint_")]
    assert len(kept) == 1  # the deletes were done in the end


def test_no_upload_writes_the_states_of_the_slot_the_store_names(tmp_path, monkeypatch):
    """States saved while an upload ran went to that upload's slot, and the next upload sent them too,
    after the state naming that slot had reached the store: cut short there, the store again held a state
    beside newer searcher files (a restore then hung). Every put of a slot's states is checked against the
    state on the store at that moment."""
    import time

    from tunesmith._internal import storage as storage_module

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.05")  # snapshots every 50 ms
    put_file = storage_module.put_file
    store_state = tmp_path / "store" / "runs" / "exp" / "experiment_state.json"
    overwritten: list[str] = []

    def checked(filesystem, fs_path, data):
        name = fs_path.rsplit("/", 1)[-1]
        if name == "experiment_state.json":
            time.sleep(0.3)  # a slow store: snapshots are saved while the upload runs
        elif name.endswith(("-a.pkl", "-b.pkl")) and store_state.exists():
            if name.endswith(f"-{storage_module.committed_state_slot(str(store_state.parent))}.pkl"):
                overwritten.append(name)
        put_file(filesystem, fs_path, data)

    monkeypatch.setattr(storage_module, "put_file", checked)
    fs = _subtree(tmp_path / "store")
    grid = tune.Tuner(
        _reports_three_times, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=10, max_concurrent_trials=1),
        run_config=train.RunConfig(name="exp", storage_path="runs", storage_filesystem=fs, verbose=0,
                                   sync_config=tune.SyncConfig(sync_period=0.05)),
    ).fit()
    assert len(grid) == 10 and not grid.errors
    assert overwritten == []


def test_a_store_that_takes_no_deletes_is_not_waited_for_once_per_checkpoint(tmp_path, monkeypatch, caplog):
    """Each dropped checkpoint was retried for sync_timeout, one after the other: at the end of a run the
    driver waited sync_timeout times the number of checkpoints. Once the store refused one, the next ones
    get a single try each (what stays is removed by a restore)."""
    from tunesmith._internal import storage as storage_module

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    tried: list[float] = []

    def refused(filesystem, fs_path, timeout):
        tried.append(timeout)  # how long the delete would be retried
        raise storage_module.StorageError(f"Could not delete {fs_path}: connection refused")

    monkeypatch.setattr(storage_module, "delete_dir", refused)
    (result,) = tune.Tuner(
        _trainable,  # four steps, a checkpoint each
        run_config=train.RunConfig(name="exp", storage_path="runs", storage_filesystem=_subtree(tmp_path / "store"),
                                   verbose=0, checkpoint_config=train.CheckpointConfig(num_to_keep=1),
                                   sync_config=tune.SyncConfig(sync_period=0.05, sync_timeout=0.5)),
    ).fit()
    assert result.error is None and result.metrics["step"] == 4
    assert len(tried) == 3 and sorted(tried) == [0.0, 0.0, 0.5], tried  # only the first waited sync_timeout
    assert "stays there" in caplog.text


def _reports_its_x(config):
    tune.report({"x": config["x"]})


def test_the_last_state_on_the_store_comes_with_its_own_searcher_state(tmp_path, monkeypatch):
    """The last state was saved while an upload ran, so it went to that upload's slot; once that upload
    ended, the final upload held back the slot's searcher files but sent the state naming them: the store
    ended with a state of 20 trials beside a searcher that had made fewer (a restore then made more trials,
    or waited forever for ones it thought running)."""
    import pickle
    import time

    from tunesmith._internal import storage as storage_module

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.02")  # snapshots every 20 ms
    put_file = storage_module.put_file

    def slow_states(filesystem, fs_path, data):
        if fs_path.endswith("/experiment_state.json"):
            time.sleep(0.3)  # a slow store: snapshots are saved while the upload runs
        put_file(filesystem, fs_path, data)

    monkeypatch.setattr(storage_module, "put_file", slow_states)
    grid = tune.Tuner(
        _reports_its_x, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=20, max_concurrent_trials=1),
        run_config=train.RunConfig(name="exp", storage_path="runs", storage_filesystem=_subtree(tmp_path / "store"),
                                   verbose=0, sync_config=tune.SyncConfig(sync_period=0.02)),
    ).fit()
    assert len(grid) == 20 and not grid.errors
    store = tmp_path / "store" / "runs" / "exp"
    slot = storage_module.committed_state_slot(str(store))
    with open(store / "experiment_state.json") as f:
        trials = json.load(f)["trials"]
    with open(store / f"basic-variant-state-tunesmith-{slot}.pkl", "rb") as f:
        searcher = pickle.load(f)
    assert searcher["_counter"] == len(trials) == 20


def test_restore_removes_from_the_store_a_trial_that_left_only_checkpoints(tmp_path, monkeypatch):
    """A trial's workers upload its checkpoints at once and its params.json goes up with the driver's next
    upload: a driver killed between left a directory of checkpoints that no state knew, and every restore
    kept it (with all its checkpoints, whatever num_to_keep said)."""
    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    store = tmp_path / "store"
    marker = tmp_path / "marker"
    tune.Tuner(_fails_until_marked, param_space={"marker": str(marker)}, run_config=tune.RunConfig(
        storage_path="root", storage_filesystem=_subtree(store), name="exp", verbose=0)).fit()
    exp = store / "root" / "exp"
    with open(exp / "experiment_state.json") as f:
        id_prefix = json.load(f)["id_prefix"]
    orphan = exp / f"_fails_until_marked_{id_prefix}_00007_7_x=1"  # a trial the saved state never had
    other = exp / "made_by_the_user"
    for directory in (orphan, other):
        (directory / "checkpoint_000000").mkdir(parents=True)
        (directory / "checkpoint_000000" / "model.pt").write_text("weights")
    marker.touch()
    grid = tune.Tuner.restore("root/exp", _fails_until_marked, storage_filesystem=_subtree(store),
                              resume_errored=True).fit()
    assert [r.metrics.get("score") for r in grid] == [1]
    assert not orphan.exists()
    assert (other / "checkpoint_000000" / "model.pt").exists()  # not a trial of this run: kept
