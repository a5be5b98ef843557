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
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"step": step, "lr": config["lr"]}, f)
        train.report({"step": step, "max-auc": config["lr"] * step}, checkpoint=train.Checkpoint.from_directory(d))


def _trial_dirs(keys: list[str], prefix: str) -> set[str]:
    return {k[len(prefix):].split("/")[0] for k in keys if k.count("/") > prefix.count("/")}


def test_seed_cloud_storage_example(s3, bucket):
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
    local = best.checkpoint.to_directory(os.path.join(tempfile.mkdtemp(), "ckpt"))
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
