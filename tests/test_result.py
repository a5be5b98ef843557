"""Result.from_path and the attributes of a Result, read back from a run directory."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import traceback

import cloudpickle
import pyarrow.fs
import pytest

from tunesmith.train import Checkpoint, Result, TrainingFailedError


def _raise_and_capture(exc: BaseException) -> tuple[BaseException, str]:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - capturing whatever was raised
        return caught, traceback.format_exc()


def write_run(
    path,
    results,
    checkpoint_at=(),
    config=None,
    error=None,
    with_dir_name=True,
    write_json=True,
    write_csv=True,
):
    """Writes a trial directory the way a run leaves it on storage."""
    os.makedirs(path, exist_ok=True)
    config = config or {"lr": 0.1, "model": {"layers": 2}}
    lines, csv_rows = [], []
    n_ckpt = 0
    for i, metrics in enumerate(results, start=1):
        row = {"training_iteration": i, "trial_id": "abc_00000", "time_total_s": 0.1 * i, "done": False}
        row.update(metrics)
        ckpt_name = None
        if i in checkpoint_at:
            ckpt_name = f"checkpoint_{n_ckpt:06d}"
            n_ckpt += 1
            os.makedirs(os.path.join(path, ckpt_name))
            with open(os.path.join(path, ckpt_name, "model.txt"), "w") as f:
                f.write(f"weights at {i}")
        if with_dir_name:
            row["checkpoint_dir_name"] = ckpt_name
        lines.append(json.dumps({**row, "config": config}))
        csv_rows.append(row)
    if write_json:
        with open(os.path.join(path, "result.json"), "w") as f:
            f.write("\n".join(lines) + "\n")
    if write_csv:
        keys = list(dict.fromkeys(k for r in csv_rows for k in r))
        with open(os.path.join(path, "progress.csv"), "w") as f:
            f.write(",".join(keys) + "\n")
            for r in csv_rows:
                f.write(",".join("" if r.get(k) is None else str(r.get(k)) for k in keys) + "\n")
    with open(os.path.join(path, "params.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "params.pkl"), "wb") as f:
        cloudpickle.dump(config, f)
    if error is not None:
        exc, tb = _raise_and_capture(error)
        with open(os.path.join(path, "error.txt"), "w") as f:
            f.write(tb)
        with open(os.path.join(path, "error.pkl"), "wb") as f:
            cloudpickle.dump(exc, f)
    return str(path)


LOSSES = [0.9, 0.4, 0.6, 0.5]


@pytest.fixture
def run_dir(tmp_path):
    results = [{"loss": loss, "acc": 1 - loss} for loss in LOSSES]
    return write_run(tmp_path / "exp" / "train_abc_00000", results, checkpoint_at=(2, 3, 4))


def test_from_path_reads_last_metrics_config_and_path(run_dir):
    result = Result.from_path(run_dir)
    assert result.metrics["loss"] == 0.5
    assert result.metrics["training_iteration"] == 4
    assert result.metrics["config"] == {"lr": 0.1, "model": {"layers": 2}}
    assert result.config == {"lr": 0.1, "model": {"layers": 2}}
    assert result.path == run_dir
    assert isinstance(result.filesystem, pyarrow.fs.LocalFileSystem)
    assert result.error is None
    assert result.return_value is None


def test_from_path_checkpoints_are_paired_with_their_metrics(run_dir):
    result = Result.from_path(run_dir)
    assert result.checkpoint.path == os.path.join(run_dir, "checkpoint_000002")
    with result.checkpoint.as_directory() as d:
        assert open(os.path.join(d, "model.txt")).read() == "weights at 4"
    paths = [os.path.basename(c.path) for c, _ in result.best_checkpoints]
    assert paths == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    assert [m["loss"] for _, m in result.best_checkpoints] == [0.4, 0.6, 0.5]
    assert [m["training_iteration"] for _, m in result.best_checkpoints] == [2, 3, 4]


def test_a_checkpoint_still_being_written_when_the_run_stopped_is_not_listed(run_dir):
    """A class trainable saves into checkpoint_NNNNNN.tmp first; a driver killed meanwhile left one, and
    best_checkpoints offered it (with empty metrics)."""
    os.makedirs(os.path.join(run_dir, "checkpoint_000003.tmp"))
    open(os.path.join(run_dir, "checkpoint_000003.tmp", "partial"), "w").close()
    result = Result.from_path(run_dir)
    paths = [os.path.basename(c.path) for c, _ in result.best_checkpoints]
    assert paths == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]


def test_checkpoints_fall_back_to_training_iteration_when_results_do_not_name_them(tmp_path):
    results = [{"loss": loss} for loss in LOSSES]
    # Without checkpoint_dir_name, checkpoint_00000N pairs with training_iteration N.
    path = write_run(tmp_path / "t", results, checkpoint_at=(2, 3), with_dir_name=False)
    result = Result.from_path(path)
    assert [m.get("training_iteration") for _, m in result.best_checkpoints] == [None, 1]
    assert result.best_checkpoints[1][1]["loss"] == 0.9


def test_get_best_checkpoint(run_dir):
    result = Result.from_path(run_dir)
    assert os.path.basename(result.get_best_checkpoint("loss", "min").path) == "checkpoint_000000"
    assert os.path.basename(result.get_best_checkpoint("loss", "max").path) == "checkpoint_000001"


def test_get_best_checkpoint_nested_metric(tmp_path):
    results = [{"eval": {"loss": 3.0}}, {"eval": {"loss": 1.0}}, {"eval": {"loss": 2.0}}]
    result = Result.from_path(write_run(tmp_path / "t", results, checkpoint_at=(1, 2, 3)))
    assert os.path.basename(result.get_best_checkpoint("eval/loss", "min").path) == "checkpoint_000001"


def test_get_best_checkpoint_errors(run_dir, tmp_path):
    result = Result.from_path(run_dir)
    with pytest.raises(ValueError, match="'accuracy'"):
        result.get_best_checkpoint("accuracy", "max")
    with pytest.raises(RuntimeError, match="'accuracy'"):  # what Ray raises there
        result.get_best_checkpoint("accuracy", "max")
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', got 'best'"):
        result.get_best_checkpoint("loss", "best")
    no_ckpt = Result.from_path(write_run(tmp_path / "n", [{"loss": 1.0}]))
    assert no_ckpt.checkpoint is None
    assert no_ckpt.best_checkpoints == []
    assert no_ckpt.get_best_checkpoint("loss", "min") is None


def test_metrics_dataframe(run_dir):
    df = Result.from_path(run_dir).metrics_dataframe
    assert list(df["loss"]) == LOSSES
    assert list(df["training_iteration"]) == [1, 2, 3, 4]
    assert "config/lr" in df.columns and "config/model/layers" in df.columns
    assert list(df["checkpoint_dir_name"].fillna("-")) == ["-", "checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]


def test_metrics_dataframe_from_progress_csv(tmp_path):
    path = write_run(tmp_path / "t", [{"loss": loss} for loss in LOSSES], checkpoint_at=(4,), write_json=False)
    result = Result.from_path(path)
    assert result.metrics["loss"] == 0.5
    assert result.metrics["trial_id"] == "abc_00000"
    assert result.best_checkpoints[0][1]["training_iteration"] == 4
    assert list(result.metrics_dataframe["loss"]) == LOSSES
    # params.pkl still gives the config
    assert result.config == {"lr": 0.1, "model": {"layers": 2}}


def test_metrics_dataframe_is_read_only_when_asked_for(run_dir):
    code = (
        "import sys\n"
        "from tunesmith.train import Result\n"
        f"r = Result.from_path({run_dir!r})\n"
        "repr(r); r.metrics; r.checkpoint; r.best_checkpoints\n"
        "print('pandas' in sys.modules)\n"
        "print(len(r.metrics_dataframe))\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "4", "True"]


def test_metrics_dataframe_is_cached(run_dir):
    result = Result.from_path(run_dir)
    first = result.metrics_dataframe
    os.remove(os.path.join(run_dir, "result.json"))
    assert result.metrics_dataframe is first


def test_error_is_training_failed_error_wrapping_the_original(tmp_path):
    path = write_run(tmp_path / "t", [{"loss": 1.0}], error=ValueError("learning rate too high"))
    result = Result.from_path(path)
    assert isinstance(result.error, TrainingFailedError)
    assert isinstance(result.error, RuntimeError)
    assert isinstance(result.error.__cause__, ValueError)
    assert result.error.original_error.args == ("learning rate too high",)
    message = str(result.error)
    assert "ValueError: learning rate too high" in message
    assert "Traceback (most recent call last)" in message
    assert "_raise_and_capture" in message


def test_error_from_text_only_and_from_unloadable_pickle(tmp_path):
    path = write_run(tmp_path / "t", [{"loss": 1.0}], error=KeyError("missing"))
    os.remove(os.path.join(path, "error.pkl"))
    result = Result.from_path(path)
    assert isinstance(result.error, TrainingFailedError)
    assert result.error.original_error is None
    assert "KeyError: 'missing'" in str(result.error)

    with open(os.path.join(path, "error.pkl"), "wb") as f:
        f.write(b"not a pickle")
    result = Result.from_path(path)
    assert "KeyError: 'missing'" in str(result.error)


def test_training_failed_error_pickles():
    err = TrainingFailedError.from_exception(ValueError("x"), "Traceback...\nValueError: x")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    assert isinstance(copy.original_error, ValueError)
    assert copy.traceback_str == "Traceback...\nValueError: x"


def test_from_path_errors(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist"):
        Result.from_path(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="neither result.json nor progress.csv"):
        Result.from_path(tmp_path / "empty")


def test_from_path_with_explicit_local_filesystem_and_file_uri(run_dir):
    fs = pyarrow.fs.LocalFileSystem()
    for result in (Result.from_path(run_dir, storage_filesystem=fs), Result.from_path("file://" + run_dir)):
        assert result.path == run_dir
        assert result.metrics["loss"] == 0.5
        assert os.path.basename(result.checkpoint.path) == "checkpoint_000002"
        assert list(result.metrics_dataframe["loss"]) == LOSSES


def test_from_path_through_a_non_local_filesystem(run_dir):
    # A SubTreeFileSystem is read only through the pyarrow API, as S3 would be.
    root = os.path.dirname(run_dir)
    fs = pyarrow.fs.SubTreeFileSystem(root, pyarrow.fs.LocalFileSystem())
    result = Result.from_path("train_abc_00000", storage_filesystem=fs)
    assert result.path == "train_abc_00000"
    assert result.filesystem is fs
    assert result.metrics["loss"] == 0.5
    assert [m["loss"] for _, m in result.best_checkpoints] == [0.4, 0.6, 0.5]
    assert list(result.metrics_dataframe["acc"]) == pytest.approx([0.1, 0.6, 0.4, 0.5])
    with result.get_best_checkpoint("loss", "min").as_directory() as d:
        assert open(os.path.join(d, "model.txt")).read() == "weights at 2"


def test_repr_shows_user_metrics_only(run_dir):
    text = repr(Result.from_path(run_dir))
    assert text.startswith("Result(\n")
    assert "'loss': 0.5" in text and "'acc': 0.5" in text
    assert "training_iteration" not in text and "config" not in text and "trial_id" not in text
    assert "filesystem='local'" in text
    assert f"path={run_dir!r}" in text
    assert "error" not in text


def test_constructed_result_keeps_given_values(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"loss": [1.0, 0.5]})
    ckpt = Checkpoint.from_directory(tmp_path)
    result = Result(
        metrics={"loss": 0.5},
        checkpoint=ckpt,
        error=None,
        path=str(tmp_path),
        metrics_dataframe=frame,
        best_checkpoints=[(ckpt, {"loss": 0.5})],
        return_value=42,
    )
    assert result.metrics_dataframe is frame
    assert result.return_value == 42
    assert result.get_best_checkpoint("loss", "min") == ckpt
    assert pickle.loads(pickle.dumps(result)).metrics == {"loss": 0.5}


def _fails_before_reporting(config):
    raise KeyError("no data yet")


def test_from_path_reads_a_run_that_failed_before_its_first_report():
    from tunesmith import tune

    grid = tune.Tuner(_fails_before_reporting, run_config=tune.RunConfig(verbose=0)).fit()
    path = grid[0].path
    assert not os.path.exists(os.path.join(path, "result.json"))
    result = Result.from_path(path)
    assert isinstance(result.error, TrainingFailedError) and "no data yet" in str(result.error)
    assert result.metrics == {} and result.checkpoint is None and result.best_checkpoints == []
    assert len(result.metrics_dataframe) == 0
