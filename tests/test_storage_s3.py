"""Experiments on S3, against a real S3 server (moto's) on 127.0.0.1.

Each test creates its own bucket and checks what is in it object by object,
then reads the results back from the store.
"""
from __future__ import annotations

import json
import os
import tempfile

import pytest

from _s3_server import S3Server
from _trainables import report_step, restore_step
from tunesmith import train, tune

pytest.importorskip("moto")
pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.close()


@pytest.fixture
def bucket(s3, monkeypatch, tmp_path):
    """A fresh bucket, with the endpoint given the way a user would: AWS_ENDPOINT_URL."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    return s3.create_bucket()


def my_trainable(config):
    """Counts to ``iters``, checkpointing each step; resumes from its checkpoint."""
    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                step = json.load(f)["step"]
    while step < config["iters"]:
        step += 1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step, "lr": config["lr"]}, f)
            train.report({"step": step, "max-auc": config["lr"] * step}, checkpoint=train.Checkpoint.from_directory(d))


def _trial_dirs(keys: list[str], prefix: str) -> set[str]:
    return {k[len(prefix):].split("/")[0] for k in keys if k.count("/") > prefix.count("/")}


def test_seed_cloud_storage_example(s3, bucket, tmp_path):
    """Seed 004's "Running Tune with cloud storage": checkpoints land at s3://bucket/path/my-tune-exp/<trial>/checkpoint_*."""
    tuner = tune.Tuner(
        my_trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2]), "iters": 7},
        run_config=train.RunConfig(
            name="my-tune-exp",
            storage_path=f"s3://{bucket}/path/",
            checkpoint_config=train.CheckpointConfig(
                checkpoint_score_attribute="max-auc",
                checkpoint_score_order="max",
                num_to_keep=5,
            ),
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert not results.errors

    prefix = "path/my-tune-exp/"
    keys = s3.keys(bucket, prefix)
    assert f"{prefix}experiment_state.json" in keys or any(
        k.startswith(f"{prefix}experiment_state") for k in keys)
    assert f"{prefix}tuner.pkl" in keys
    trial_dirs = _trial_dirs(keys, prefix) - {"experiment_state.json", "tuner.pkl"}
    trial_dirs = {d for d in trial_dirs if not d.endswith((".json", ".pkl", ".csv"))}
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        base = f"{prefix}{trial_dir}/"
        for name in ("result.json", "progress.csv", "params.json"):
            assert f"{base}{name}" in keys
        rows = [json.loads(line) for line in s3.read(bucket, f"{base}result.json").decode().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, 8))
        checkpoints = sorted({k[len(base):].split("/")[0] for k in keys
                              if k.startswith(base + "checkpoint_")})
        # num_to_keep=5 by max-auc (which grows each step): the five latest stay.
        assert checkpoints == [f"checkpoint_{i:06d}" for i in range(2, 7)]
        for name in checkpoints:
            assert json.loads(s3.read(bucket, f"{base}{name}/state.json"))["step"] == int(name[-6:]) + 1

    # Results point at the store, and read back from it.
    import pyarrow.fs

    for result in results:
        assert result.path.startswith(f"{bucket}/path/my-tune-exp/")
        assert isinstance(result.filesystem, pyarrow.fs.S3FileSystem)
        assert result.checkpoint.path.startswith(result.path + "/checkpoint_")
        with result.checkpoint.as_directory() as d:
            assert json.load(open(os.path.join(d, "state.json")))["step"] == 7
        assert list(result.metrics_dataframe["step"]) == list(range(1, 8))
        assert len(result.best_checkpoints) == 5
    best = results.get_best_result(metric="max-auc", mode="max")
    assert best.config["lr"] == 0.2
    local = best.checkpoint.to_directory(str(tmp_path / "ckpt"))
    assert json.load(open(os.path.join(local, "state.json"))) == {"step": 7, "lr": 0.2}

    uri = f"s3://{bucket}/path/my-tune-exp"
    assert tune.Tuner.can_restore(uri)
    analysis = tune.ExperimentAnalysis(uri)
    assert len(analysis.trials) == 2
    assert sorted(df["step"].max() for df in analysis.trial_dataframes.values()) == [7, 7]
    from_path = train.Result.from_path(f"s3://{best.path}")
    assert from_path.metrics["step"] == 7 and from_path.config["lr"] == 0.2
    assert from_path.checkpoint.path == best.checkpoint.path


def test_custom_storage_filesystem_with_a_path(s3, bucket):
    """RunConfig(storage_filesystem=S3FileSystem(endpoint_override=...), storage_path="bucket/sub-path")."""
    fs = s3.filesystem()
    tuner = tune.Tuner(
        my_trainable,
        param_space={"lr": 0.5, "iters": 3},
        run_config=train.RunConfig(name="custom-fs", storage_path=f"{bucket}/sub-path",
                                   storage_filesystem=fs, verbose=0),
    )
    result = tuner.fit()[0]
    assert result.error is None
    assert result.path.startswith(f"{bucket}/sub-path/custom-fs/")
    keys = s3.keys(bucket, "sub-path/custom-fs/")
    trial = result.path.rsplit("/", 1)[1]
    assert [k for k in keys if "/checkpoint_" in k] == [
        f"sub-path/custom-fs/{trial}/checkpoint_{i:06d}/state.json" for i in range(3)
    ]
    restored = train.Result.from_path(result.path, storage_filesystem=fs)
    assert restored.metrics["step"] == 3
    assert tune.Tuner.can_restore(f"{bucket}/sub-path/custom-fs", storage_filesystem=fs)


def _driver(s3, storage_path: str, name: str, staging: str, opts: dict, mode: str = "run"):
    import subprocess
    import sys

    env = dict(os.environ, **s3.env(), TUNESMITH_STAGING_DIR=staging)
    script = os.path.join(os.path.dirname(__file__), "_crash_driver.py")
    return subprocess.Popen([sys.executable, script, mode, storage_path, name, json.dumps(opts)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _steps_in_bucket(s3, bucket: str, prefix: str) -> dict[str, list[int]]:
    out = {}
    for key in s3.keys(bucket, prefix):
        if key.endswith("/result.json") and key.count("/") == prefix.count("/") + 1:
            rows = [json.loads(line) for line in s3.read(bucket, key).decode().splitlines() if line.strip()]
            assert len({r["owner"] for r in rows}) <= 1, f"{key} holds rows of another trial"
            out[key.split("/")[-2]] = [r["step"] for r in rows]
    return out


@pytest.mark.parametrize("sync_period, iters", [
    (0.5, 30),
    # The default sync_period (300 s): the state still reaches the bucket within seconds, as on Ray.
    pytest.param(None, 300, marks=pytest.mark.long),
])
def test_driver_sigkill_with_state_only_in_the_bucket_restores_on_an_empty_local_disk(
        s3, bucket, tmp_path, sync_period, iters):
    """The driver is SIGKILLed mid-run; its staging directory is deleted; Tuner.restore(uri) from another
    staging directory finishes the run, and every trial's log in the bucket holds each iteration once."""
    import shutil
    import signal

    from _crash_driver import counting

    first_staging = str(tmp_path / "first")
    opts = {"trials": 3, "iters": iters, "sleep": 0.05, "every": 3, "num_to_keep": 2}
    if sync_period is not None:
        opts["sync_period"] = sync_period
    storage_path = f"s3://{bucket}/runs"
    proc = _driver(s3, storage_path, "killed", first_staging, opts)
    prefix = "runs/killed/"

    def some_progress_synced() -> bool:
        keys = s3.keys(bucket, prefix)
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended before it was killed:\n{proc.stdout.read()}")
        if f"{prefix}experiment_state.json" not in keys:
            return False
        state = json.loads(s3.read(bucket, f"{prefix}experiment_state.json"))
        return any(t["checkpoints"] for t in state["trials"])  # the bucket's state names a checkpoint

    _wait_for(some_progress_synced, 120, "the first checkpoints and state in the bucket")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shutil.rmtree(first_staging)  # nothing of the run is left on local disk

    uri = f"{storage_path}/killed"
    assert tune.Tuner.can_restore(uri)
    tuner = tune.Tuner.restore(uri, trainable=counting, resume_errored=True)
    grid = tuner.fit()
    assert not grid.errors
    assert sorted(r.metrics["step"] for r in grid) == [iters] * 3
    # They resumed from checkpoints fetched from the bucket, not from scratch.
    assert any(r.metrics["iterations_since_restore"] < iters for r in grid)
    steps = _steps_in_bucket(s3, bucket, prefix)
    assert len(steps) == 3
    for trial, logged in steps.items():
        assert logged == list(range(1, iters + 1)), trial
    for result in grid:
        assert result.path.startswith(f"{bucket}/runs/killed/")
        assert list(result.metrics_dataframe["step"]) == list(range(1, iters + 1))
        with result.checkpoint.as_directory() as d:
            assert json.load(open(os.path.join(d, "state.json")))["step"] == iters
    # num_to_keep=2: no more than two checkpoints per trial are left in the bucket.
    for trial in steps:
        names = {k.split("/")[3] for k in s3.keys(bucket, f"{prefix}{trial}/checkpoint_")}
        assert len(names) <= 2 and f"checkpoint_{iters // 3 - 1:06d}" in names, names


def test_server_stopped_mid_run_then_back_loses_nothing(s3, bucket):
    """The S3 server stops answering (SIGSTOP) for a while mid-run: uploads wait and retry, and the
    run ends complete once it is back."""
    import threading
    import time

    fs = s3.filesystem(connect_timeout=1, request_timeout=1)
    prefix = "outage/exp/"
    paused = threading.Event()
    resumed: list[float] = []

    def outage():
        _wait_for(lambda: any("/checkpoint_" in k for k in s3.keys(bucket, prefix)), 120, "a first checkpoint")
        s3.pause()
        paused.set()
        threading.Event().wait(3.0)  # the outage lasts 3 s
        s3.resume()
        resumed.append(time.monotonic())

    from _crash_driver import counting

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        grid = tune.Tuner(
            counting,
            param_space={"id": tune.grid_search([0, 1]), "iters": 30, "sleep": 0.05, "every": 2},
            run_config=train.RunConfig(name="exp", storage_path=f"{bucket}/outage", storage_filesystem=fs,
                                       sync_config=tune.SyncConfig(sync_period=0.2, sync_timeout=60),
                                       verbose=0),
        ).fit()
        ended = time.monotonic()
    finally:
        thread.join(60)
        s3.resume()
    assert paused.is_set() and resumed and ended > resumed[0]  # the run went on through the outage
    assert not grid.errors
    steps = _steps_in_bucket(s3, bucket, prefix)
    assert sorted(steps.values()) == [list(range(1, 31))] * 2
    for result in grid:
        with result.checkpoint.as_directory() as d:
            assert json.load(open(os.path.join(d, "state.json")))["step"] == 30


def test_store_that_stays_down_fails_loudly_and_restore_loses_nothing(s3, bucket, tmp_path, monkeypatch):
    """When uploads keep failing for sync_timeout, the run ends with an error naming the store and
    path; once the store is back, Tuner.restore finishes the run with every iteration once."""
    import threading

    from _crash_driver import counting
    import pyarrow.fs

    from tunesmith._internal.storage import StorageError

    # One try per request: tunesmith's own retries and sync_timeout decide how long an outage is ridden out.
    fs = s3.filesystem(connect_timeout=1, request_timeout=1,
                       retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1))
    prefix = "down/exp/"

    def outage():
        _wait_for(lambda: any("/checkpoint_" in k for k in s3.keys(bucket, prefix)), 120, "a first checkpoint")
        s3.pause()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    space = {"id": tune.grid_search([0, 1]), "iters": 30, "sleep": 0.05, "every": 2}
    try:
        with pytest.raises(StorageError) as info:
            tune.Tuner(
                counting, param_space=space,
                run_config=train.RunConfig(name="exp", storage_path=f"{bucket}/down", storage_filesystem=fs,
                                           sync_config=tune.SyncConfig(sync_period=0.2, sync_timeout=3),
                                           verbose=0),
            ).fit()
    finally:
        thread.join(60)
        s3.resume()
    message = str(info.value)
    assert f"s3://{bucket}/down/exp/" in message and "S3FileSystem" in message and "sync_timeout" in message

    # The server works through the requests that queued up while it was stopped; the user
    # restores once it answers again, with a filesystem of ordinary timeouts.
    def answers() -> bool:
        try:
            return bool(s3.keys(bucket, prefix))
        except Exception:
            return False

    _wait_for(answers, 60, "the server to answer again")
    fs = s3.filesystem()
    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "second"))
    uri = f"{bucket}/down/exp"
    assert tune.Tuner.can_restore(uri, storage_filesystem=fs)
    grid = tune.Tuner.restore(uri, trainable=counting, storage_filesystem=fs, resume_errored=True).fit()
    assert not grid.errors
    assert [r.metrics["step"] for r in grid] == [30, 30]
    steps = _steps_in_bucket(s3, bucket, prefix)
    assert sorted(steps.values()) == [list(range(1, 31))] * 2


class _Counter(tune.Trainable):
    """A class trainable: saves and loads its count; writes an artifact file in its working directory."""

    def setup(self, config):
        self.count = 0

    def step(self):
        self.count += 1
        with open("artifact.txt", "a") as f:
            f.write(f"{self.count}\n")
        for own in ("checkpoint_best", f"checkpoint_{self.count}"):  # the trial's own directories
            os.makedirs(own, exist_ok=True)
            with open(os.path.join(own, "model.txt"), "w") as f:
                f.write(str(self.count))
        print(f"printed {self.count}")
        return {"count": self.count, "done": self.count >= 4}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.txt"), "w") as f:
            f.write(str(self.count))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.txt")) as f:
            self.count = int(f.read())


@pytest.mark.parametrize("sync_artifacts", [False, True])
def test_class_trainable_artifacts_and_log_files(s3, bucket, sync_artifacts):
    """Class checkpoints go to the bucket from the worker; a trial's own files go up only with
    sync_artifacts=True (a directory of them named like a checkpoint's, checkpoint_best or checkpoint_3, was
    never uploaded), while log_to_file outputs always do; ResultGrid dataframes read from the store."""
    grid = tune.Tuner(
        _Counter,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=train.RunConfig(
            name="cls", storage_path=f"s3://{bucket}/c", log_to_file=True, verbose=0,
            sync_config=tune.SyncConfig(sync_artifacts=sync_artifacts),
            checkpoint_config=train.CheckpointConfig(checkpoint_frequency=2),
        ),
    ).fit()
    assert not grid.errors
    keys = s3.keys(bucket, "c/cls/")
    for result in grid:
        trial = result.path.rsplit("/", 1)[1]
        base = f"c/cls/{trial}/"
        assert f"{base}stdout" in keys and "printed 4" in s3.read(bucket, f"{base}stdout").decode()
        assert (f"{base}artifact.txt" in keys) == sync_artifacts
        assert (f"{base}checkpoint_best/model.txt" in keys) == sync_artifacts
        assert (f"{base}checkpoint_3/model.txt" in keys) == sync_artifacts
        if sync_artifacts:
            assert s3.read(bucket, f"{base}artifact.txt").decode().split() == ["1", "2", "3", "4"]
            assert s3.read(bucket, f"{base}checkpoint_best/model.txt") == b"4"
        checkpoint_keys = sorted(k[len(base):] for k in keys if k.startswith(base + "checkpoint_0"))
        assert {k.split("/")[0] for k in checkpoint_keys} == {"checkpoint_000000", "checkpoint_000001"}
        assert s3.read(bucket, f"{base}checkpoint_000001/count.txt") == b"4"
        assert result.checkpoint.path == f"{bucket}/{base}checkpoint_000001"
    df = grid.get_dataframe()
    assert sorted(df["count"]) == [4, 4]
    # A checkpoint on the store restores a class trainable.
    restored = _Counter(config={})
    restored.restore(grid[0].checkpoint)
    assert restored.count == 4


def test_local_storage_uses_no_pyarrow_filesystem(tmp_path):
    """The seed's NFS/local layout: results written in place, without pyarrow.fs or a staging copy."""
    import subprocess
    import sys

    script = f"""
import json, os, sys, tempfile
from tunesmith import train, tune

def trainable(config):
    for step in range(3):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "s.txt"), "w").write(str(step))
            train.report({{"step": step}}, checkpoint=train.Checkpoint.from_directory(d))

tuner = tune.Tuner(trainable, run_config=train.RunConfig(
    name="experiment_name", storage_path={str(tmp_path / "shared" / "storage")!r}, verbose=0))
result = tuner.fit()[0]
print(json.dumps({{"path": result.path, "ckpt": result.checkpoint.path,
                  "fs_modules": sorted(m for m in sys.modules if m.startswith(("pyarrow.fs", "pyarrow._s3fs")))}}))
"""
    env = dict(os.environ, TUNESMITH_STAGING_DIR=str(tmp_path / "staging"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    experiment = str(tmp_path / "shared" / "storage" / "experiment_name")
    assert info["path"].startswith(experiment + os.sep)
    assert info["ckpt"] == os.path.join(info["path"], "checkpoint_000002")
    assert open(os.path.join(info["ckpt"], "s.txt")).read() == "2"
    assert info["fs_modules"] == []
    assert not os.path.exists(tmp_path / "staging")


def _group_loop(config):
    from pathlib import Path

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = json.loads(Path(d, "state.json").read_text())["epoch"] + 1
    for epoch in range(start, 3):
        with tempfile.TemporaryDirectory() as d:
            rank = train.get_context().get_world_rank()
            Path(d, f"rank{rank}.txt").write_text(str(epoch))
            if rank == 0:
                Path(d, "state.json").write_text(json.dumps({"epoch": epoch}))
            train.report({"epoch": epoch}, checkpoint=train.Checkpoint.from_directory(d))


def test_data_parallel_trainer_checkpoints_go_to_the_bucket(s3, bucket):
    """A 2-worker trainer's merged checkpoints are uploaded from its process, and read back."""
    from tunesmith.train import ScalingConfig
    from tunesmith.train.data_parallel_trainer import DataParallelTrainer

    result = DataParallelTrainer(
        _group_loop, scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(name="dp", storage_path=f"s3://{bucket}/t", verbose=0),
    ).fit()
    assert result.error is None and result.metrics["epoch"] == 2
    trial = result.path.rsplit("/", 1)[1]
    keys = s3.keys(bucket, f"t/dp/{trial}/checkpoint_000002/")
    assert [k.rsplit("/", 1)[1] for k in keys] == ["rank0.txt", "rank1.txt", "state.json"]
    assert not [k for k in s3.keys(bucket, "t/dp/") if ".group_staging" in k]
    with result.checkpoint.as_directory() as d:
        assert sorted(os.listdir(d)) == ["rank0.txt", "rank1.txt", "state.json"]


def _old_api(config, checkpoint_dir=None):
    step = 0
    if checkpoint_dir:
        assert os.path.isdir(checkpoint_dir)  # a local copy of the checkpoint in the bucket
        with open(os.path.join(checkpoint_dir, "step")) as f:
            step = int(f.read())
    while step < 3:
        step += 1
        with tune.checkpoint_dir(step=step) as d:
            with open(os.path.join(d, "step"), "w") as f:
                f.write(str(step))
        tune.report(step=step, resumed=bool(checkpoint_dir))
        if step == 2 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("fails once")


def test_checkpoint_dir_api_uploads_and_restores(s3, bucket, tmp_path):
    """The older ``checkpoint_dir`` API: the directory is uploaded at report, and the retried trial
    gets a local copy of its checkpoint from the bucket."""
    grid = tune.Tuner(_old_api, param_space={"marker": str(tmp_path / "failed")}, run_config=train.RunConfig(
        name="old", storage_path=f"s3://{bucket}/o", verbose=0,
        failure_config=train.FailureConfig(max_failures=1))).fit()
    result = grid[0]
    assert result.error is None
    assert result.metrics["step"] == 3 and result.metrics["resumed"] is True
    assert list(result.metrics_dataframe["step"]) == [1, 2, 3]
    trial = result.path.rsplit("/", 1)[1]
    names = sorted({k.split("/")[3] for k in s3.keys(bucket, f"o/old/{trial}/checkpoint_")})
    assert names == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    assert s3.read(bucket, f"o/old/{trial}/checkpoint_000002/step") == b"3"


def _writes_through_its_storage(config):
    storage = train.get_context().get_storage()
    rank = train.get_context().get_world_rank()
    # A user's own file next to the trial's results, written with the storage's filesystem (as on Ray).
    with storage.storage_filesystem.open_output_stream(f"{storage.trial_fs_path}/note_rank{rank}.txt") as f:
        f.write(b"hello")
    train.report({"rank": rank, "trial_fs_path": storage.trial_fs_path, "experiment_fs_path": storage.experiment_fs_path,
                  "storage_path": storage.storage_path, "trial_dir_name": storage.trial_dir_name,
                  "experiment_dir_name": storage.experiment_dir_name})


def test_get_storage_in_trainer_workers_names_the_bucket(s3, bucket):
    from tunesmith.train import ScalingConfig
    from tunesmith.train.data_parallel_trainer import DataParallelTrainer

    result = DataParallelTrainer(
        _writes_through_its_storage, scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(name="st", storage_path=f"s3://{bucket}/t", verbose=0),
    ).fit()
    assert result.error is None
    trial = result.path.rsplit("/", 1)[1]
    m = result.metrics
    assert m["trial_fs_path"] == f"{bucket}/t/st/{trial}"
    assert m["experiment_fs_path"] == f"{bucket}/t/st" and m["storage_path"] == f"{bucket}/t"
    assert m["trial_dir_name"] == trial and m["experiment_dir_name"] == "st"
    keys = s3.keys(bucket, f"t/st/{trial}/")
    assert {f"t/st/{trial}/note_rank0.txt", f"t/st/{trial}/note_rank1.txt"} <= set(keys)


def test_a_bucket_that_does_not_exist_fails_at_once(s3, bucket):
    """It was retried for sync_timeout (30 minutes by default) before the run failed."""
    from tunesmith._internal.storage import StorageError

    with pytest.raises(StorageError, match="(?i)bucket"):
        tune.Tuner(my_trainable, param_space={"iters": 1, "lr": 0.1},
                   run_config=tune.RunConfig(name="x", storage_path="s3://no-such-bucket-here/path", verbose=0)).fit()


def _empty_checkpoint_then_fails_once(config):
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            assert os.listdir(d) == []
        train.report({"resumed": True})
        return
    with tempfile.TemporaryDirectory() as d:
        train.report({"resumed": False}, checkpoint=train.Checkpoint.from_directory(d))
    raise RuntimeError("fails after an empty checkpoint")


def test_an_empty_checkpoint_reads_back_from_the_bucket(s3, bucket):
    (result,) = tune.Tuner(
        _empty_checkpoint_then_fails_once,
        run_config=tune.RunConfig(name="e", storage_path=f"s3://{bucket}/e", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert result.error is None and result.metrics["resumed"] is True
    with tempfile.TemporaryDirectory() as d:
        assert os.listdir(result.checkpoint.to_directory(os.path.join(d, "c"))) == []


def _writes_artifacts(config):
    for name in ("data.tmp", "model.tmpl", "plain.txt"):
        with open(name, "w") as f:
            f.write(name)
    tune.report({"ok": 1})


def test_artifacts_named_like_temporary_files_are_uploaded(s3, bucket):
    (result,) = tune.Tuner(
        _writes_artifacts,
        run_config=tune.RunConfig(name="a", storage_path=f"s3://{bucket}/a", verbose=0,
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),
    ).fit()
    trial = result.path.rsplit("/", 1)[1]
    keys = s3.keys(bucket, f"a/a/{trial}/")
    assert {f"a/a/{trial}/{n}" for n in ("data.tmp", "model.tmpl", "plain.txt")} <= set(keys)


def _fails_first_time(config):
    start = restore_step()
    for i in range(start, 3):
        report_step(i + 1, i=i, start=start)
        if i == 1 and not start and config.get("fail"):
            raise RuntimeError("fails once")


def test_restore_from_the_uri_of_a_run_with_its_own_filesystem(s3, bucket):
    """A run on SubTreeFileSystem(bucket/root) restored from s3://bucket/root/runs/e went on at a
    doubled path (bucket/root/bucket/root/runs/e), from scratch."""
    import pyarrow.fs

    fs = pyarrow.fs.SubTreeFileSystem(f"{bucket}/root", s3.filesystem())
    first = tune.Tuner(_fails_first_time, param_space={"fail": True},
                       run_config=tune.RunConfig(name="e", storage_path="runs", storage_filesystem=fs,
                                                 verbose=0)).fit()
    assert first.num_errors == 1
    again = tune.Tuner.restore(f"s3://{bucket}/root/runs/e", _fails_first_time, resume_errored=True).fit()
    (result,) = again
    assert result.error is None and result.metrics["start"] == 2
    assert not [k for k in s3.keys(bucket) if k.startswith(f"root/{bucket}/")]


def test_restore_from_a_uri_with_the_endpoint_in_its_query(s3, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    uri = f"s3://{bucket}/q?endpoint_override={s3.endpoint.split('://')[1]}&scheme=http"
    tune.Tuner(_fails_first_time, run_config=tune.RunConfig(name="e", storage_path=uri, verbose=0)).fit()
    experiment = f"s3://{bucket}/q/e?endpoint_override={s3.endpoint.split('://')[1]}&scheme=http"
    assert tune.Tuner.can_restore(experiment)
    (result,) = tune.Tuner.restore(experiment, _fails_first_time).fit()
    assert result.metrics["i"] == 2


def _artifact_then_checkpoint(config):
    import time

    import pyarrow.fs

    storage = train.get_context().get_storage()
    waited_out = 0
    for i in range(2):
        with open(f"artifact_{i}.txt", "w") as f:
            f.write(str(i))
        with tempfile.TemporaryDirectory() as d:
            train.report({"i": i, "waited_out": waited_out}, checkpoint=train.Checkpoint.from_directory(d))
        key = f"{storage.trial_fs_path}/artifact_{i}.txt"
        deadline = time.time() + 8  # the driver's periodic upload comes 10 s apart at the soonest
        while (storage.storage_filesystem.get_file_info(key).type == pyarrow.fs.FileType.NotFound
               and time.time() < deadline):
            time.sleep(0.05)
        waited_out += time.time() >= deadline


def test_artifacts_go_up_with_each_checkpoint(s3, bucket):
    """SyncConfig(sync_artifacts_on_checkpoint=True), the default: a killed driver left checkpoints on
    the store whose artifacts were only on the local disk (they waited for the periodic sync)."""
    (result,) = tune.Tuner(
        _artifact_then_checkpoint,
        run_config=tune.RunConfig(name="a", storage_path=f"s3://{bucket}/a", verbose=0,
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),
    ).fit()
    assert result.error is None and result.metrics["waited_out"] == 0


def test_tune_run_resumes_an_experiment_at_a_uri_with_the_endpoint_in_its_query(s3, bucket, monkeypatch):
    """tune.run(storage_path=<uri with ?endpoint_override=...>, name=..., resume=True) joined the name after
    the query ("Invalid S3 connection scheme 'http/exp'")."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    uri = f"s3://{bucket}/q?endpoint_override={s3.endpoint.split('://')[1]}&scheme=http"
    first = tune.run(_fails_first_time, config={"fail": True}, name="exp", storage_path=uri, verbose=0,
                     raise_on_failed_trial=False)
    assert [t.status for t in first.trials] == ["ERROR"]
    analysis = tune.run(_fails_first_time, config={"fail": True}, name="exp", storage_path=uri, verbose=0,
                        resume="ERRORED_ONLY")
    assert [(t.status, t.last_result["i"], t.last_result["start"]) for t in analysis.trials] == [("TERMINATED", 2, 2)]


def test_cli_output_and_reports_go_to_a_uri_they_are_given(s3, bucket, tmp_path, monkeypatch):
    """`ls --output s3://...`, `report -o s3://...` and ResultGrid.report("s3://...") said they had written
    to the bucket and wrote a local folder named "s3:"; file:// went to a folder named "file:"."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    grid = tune.Tuner(my_trainable, param_space={"lr": 0.1, "iters": 2}, run_config=train.RunConfig(
        name="exp", storage_path=f"s3://{bucket}/runs", verbose=0)).fit()
    cli = [sys.executable, "-m", "tunesmith"]
    out = subprocess.run(cli + ["ls", f"s3://{bucket}/runs/exp", "--output", f"s3://{bucket}/out/trials.csv"],
                         capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert f"Output saved at: s3://{bucket}/out/trials.csv" in out.stdout
    out = subprocess.run(cli + ["report", f"s3://{bucket}/runs/exp", "-o", f"s3://{bucket}/out/report.html"],
                         capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert grid.report(f"s3://{bucket}/out/grid.html") == f"s3://{bucket}/out/grid.html"
    assert grid.report() == f"s3://{bucket}/runs/exp/report.html"  # beside the experiment, on its store
    keys = set(s3.keys(bucket, ""))
    assert {"out/trials.csv", "out/report.html", "out/grid.html", "runs/exp/report.html"} <= keys
    assert not os.path.exists(tmp_path / "s3:")
    local = tmp_path / "here" / "trials.csv"
    out = subprocess.run(cli + ["ls", f"s3://{bucket}/runs/exp", "--output", f"file://{local}"],
                         capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert len(local.read_text().splitlines()) == 2  # the header and the one trial
    assert not os.path.exists(tmp_path / "file:")


def _runs_until_released(config):
    import time

    open(config["started"], "w").close()
    while not os.path.exists(config["release"]):
        time.sleep(0.02)
    train.report({"done": 1})


def test_a_second_driver_of_an_experiment_at_a_uri_is_refused_while_the_first_runs(s3, bucket, tmp_path):
    """On remote storage nothing was locked: a second run with the same name (or a restore of the running
    one) ran beside the first, and the experiment's state then named only the second run's trials."""
    import threading

    from tunesmith._internal.experiment_lock import ExperimentInUseError

    space = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release")}
    run_config = train.RunConfig(name="busy", storage_path=f"s3://{bucket}/locks", verbose=0)
    grids = []
    first = threading.Thread(target=lambda: grids.append(
        tune.Tuner(_runs_until_released, param_space=space, run_config=run_config).fit()))
    first.start()
    try:
        _wait_for(lambda: os.path.exists(space["started"]), 120, "the first run's trial")
        with pytest.raises(ExperimentInUseError, match=f"s3://{bucket}/locks/busy is in use by another run"):
            tune.Tuner(_runs_until_released, param_space=space, run_config=run_config).fit()
        with pytest.raises(ExperimentInUseError, match="is in use by another run"):
            tune.Tuner.restore(f"s3://{bucket}/locks/busy", trainable=_runs_until_released).fit()
    finally:
        open(space["release"], "w").close()
        first.join(120)
    (grid,) = grids
    assert not grid.errors and [r.metrics["done"] for r in grid] == [1]
    restored = tune.Tuner.restore(f"s3://{bucket}/locks/busy", trainable=_runs_until_released).get_results()
    assert len(restored) == 1 and restored[0].metrics["done"] == 1
