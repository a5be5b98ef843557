"""An experiment on Google Cloud Storage, against a GCS emulator (gcp-storage-emulator) on 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from _s3_server import _free_port
from tunesmith import train, tune

pytest.importorskip("gcp_storage_emulator")


@pytest.fixture(scope="module")
def gcs():
    import pyarrow.fs

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    fs = pyarrow.fs.GcsFileSystem(anonymous=True, endpoint_override=f"127.0.0.1:{port}", scheme="http",
                                  project_id="test", retry_time_limit=__import__("datetime").timedelta(seconds=5))
    deadline = time.monotonic() + 60
    while True:  # ready once it answers
        try:
            fs.create_dir("bucket-gcs")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the GCS emulator did not start")
            time.sleep(0.1)
    yield fs
    proc.terminate()
    proc.wait(10)


def test_gs_uri_with_a_storage_filesystem(gcs, tmp_path, monkeypatch):
    import pyarrow.fs

    from test_storage_s3 import my_trainable

    monkeypatch.setenv("TUNESMITH_STAGING_DIR", str(tmp_path / "staging"))
    grid = tune.Tuner(my_trainable, param_space={"lr": 0.1, "iters": 4}, run_config=train.RunConfig(
        name="g", storage_path="gs://bucket-gcs/p", storage_filesystem=gcs, verbose=0,
        checkpoint_config=train.CheckpointConfig(num_to_keep=2))).fit()
    result = grid[0]
    assert result.error is None and result.path.startswith("bucket-gcs/p/g/")
    assert isinstance(result.filesystem, pyarrow.fs.GcsFileSystem)
    files = sorted(i.path[len(result.path) + 1:] for i in gcs.get_file_info(
        pyarrow.fs.FileSelector(result.path, recursive=True)) if i.type == pyarrow.fs.FileType.File)
    assert [f for f in files if f.startswith("checkpoint_")] == [
        "checkpoint_000002/state.json", "checkpoint_000003/state.json"]  # num_to_keep=2 on the store
    assert {"result.json", "progress.csv", "params.json"} <= set(files)
    with result.checkpoint.as_directory() as d:
        assert json.load(open(os.path.join(d, "state.json")))["step"] == 4
    assert train.Result.from_path(result.path, storage_filesystem=gcs).metrics["step"] == 4
    assert tune.Tuner.can_restore("bucket-gcs/p/g", storage_filesystem=gcs)
