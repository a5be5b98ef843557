"""ResultGrid over the trials of an experiment, from live trials and from storage."""
from __future__ import annotations

import json
import os
import shutil
import traceback

import cloudpickle
import pyarrow.fs
import pytest

from tunesmith.train import CheckpointConfig, Checkpoint, Result, TrainingFailedError
from tunesmith import tune
from tunesmith.tune import ExperimentAnalysis, ResultGrid
from tunesmith.tune.execution.checkpoint_manager import delete_checkpoints
from tunesmith.tune.experiment.trial import Trial

NAN = float("nan")

# trial id -> (config, scores, iterations with a checkpoint, status, error)
TRIALS = {
    "00000": ({"x": 1}, [1.0, 9.0, 2.0], (1, 2, 3), Trial.TERMINATED, None),
    "00001": ({"x": 2}, [3.0, 4.0, 5.0], (3,), Trial.TERMINATED, None),
    "00002": ({"x": 3}, [2.0, 2.0, NAN], (), Trial.TERMINATED, None),
    "00003": ({"x": 4}, [0.5], (), Trial.ERROR, RuntimeError("out of memory")),
}


def build(root, trials=TRIALS, checkpoint_config=None, name="exp"):
    """Writes an experiment directory and returns ``(experiment dir, live trials)``."""
    exp_dir = os.path.join(str(root), name)
    live = []
    for trial_id, (config, scores, ckpt_at, status, error) in trials.items():
        trial = Trial("fn", config=config, trial_id=trial_id, experiment_path=exp_dir,
                      checkpoint_config=checkpoint_config)
        os.makedirs(trial.local_path)
        lines = []
        for i, score in enumerate(scores, start=1):
            ckpt_name = f"checkpoint_{ckpt_at.index(i):06d}" if i in ckpt_at else None
            result = {"score": score, "training_iteration": i, "trial_id": trial_id,
                      "checkpoint_dir_name": ckpt_name, "config": config}
            if ckpt_name:
                os.makedirs(os.path.join(trial.local_path, ckpt_name))
                removed = trial.checkpoint_manager.register(
                    Checkpoint(os.path.join(trial.local_path, ckpt_name)), result
                )
                delete_checkpoints(removed)
            trial.update_last_result(result)
            lines.append(json.dumps(result))
        with open(os.path.join(trial.local_path, "result.json"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if error is not None:
            try:
                raise error
            except Exception as exc:  # noqa: BLE001
                trial.error_msg = traceback.format_exc()
                data = cloudpickle.dumps(exc)
            trial.error_file = os.path.join(trial.local_path, "error.txt")
            trial.pickled_error_file = os.path.join(trial.local_path, "error.pkl")
            with open(trial.error_file, "w") as f:
                f.write(trial.error_msg)
            with open(trial.pickled_error_file, "wb") as f:
                f.write(data)
        trial.set_status(status)
        live.append(trial)
    state = {"version": 1, "experiment_name": name, "timestamp": 1.0, "trainable_name": "fn",
             "metric": None, "mode": None, "trials": [t.get_json_state() for t in live]}
    with open(os.path.join(exp_dir, "experiment_state.json"), "w") as f:
        json.dump(state, f)
    return exp_dir, live


@pytest.fixture
def grid(tmp_path):
    exp_dir, trials = build(tmp_path)
    return ResultGrid(ExperimentAnalysis(exp_dir, trials=trials))


def test_one_result_per_trial_in_order(grid):
    assert len(grid) == 4
    results = list(grid)
    assert all(isinstance(r, Result) for r in results)
    assert [r.config for r in results] == [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]
    assert [r.metrics["score"] for r in results[:2]] == [2.0, 5.0]
    assert grid[-1].config == {"x": 4}
    assert [r.config["x"] for r in grid[1:3]] == [2, 3]
    assert grid[0] is grid[0]


def test_result_of_a_trial(grid):
    result = grid[0]
    assert result.path == os.path.join(grid.experiment_path, "fn_00000")
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000002"
    assert [m["score"] for _, m in result.best_checkpoints] == [1.0, 9.0, 2.0]
    assert os.path.basename(result.get_best_checkpoint("score", "max").path) == "checkpoint_000001"
    assert list(result.metrics_dataframe["score"]) == [1.0, 9.0, 2.0]
    assert result.error is None


def test_best_checkpoints_follow_the_checkpoint_config(tmp_path):
    config = CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="max")
    exp_dir, trials = build(tmp_path, trials={"00000": TRIALS["00000"]}, checkpoint_config=config)
    result = ResultGrid(ExperimentAnalysis(exp_dir, trials=trials))[0]
    # num_to_keep=2 keeps the best (9.0) and the latest (2.0); ordered worst to best
    assert [m["score"] for _, m in result.best_checkpoints] == [2.0, 9.0]
    assert not os.path.exists(os.path.join(exp_dir, "fn_00000", "checkpoint_000000"))
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000002"


@pytest.mark.parametrize(
    "scope,mode,expected_x",
    [
        ("last", "max", 2),  # 2.0, 5.0, nan (skipped), 0.5
        ("last", "min", 4),
        ("all", "max", 1),  # max 9.0
        ("all", "min", 4),  # min 0.5
        ("avg", "max", 1),  # 4.0, 4.0, nan, 0.5 -> first of the tie
        ("last-5-avg", "min", 4),
        ("last-10-avg", "max", 1),
    ],
)
def test_get_best_result_scopes(grid, scope, mode, expected_x):
    assert grid.get_best_result("score", mode, scope=scope).config["x"] == expected_x


def test_nan_is_kept_only_when_asked(tmp_path):
    trials = {"00000": ({"x": 1}, [1.0, NAN], (), Trial.TERMINATED, None),
              "00001": ({"x": 2}, [NAN], (), Trial.TERMINATED, None)}
    exp_dir, live = build(tmp_path, trials=trials)
    grid = ResultGrid(ExperimentAnalysis(exp_dir, trials=live))
    with pytest.raises(RuntimeError, match="'score'.*NaN.*filter_nan_and_inf=False"):
        grid.get_best_result("score", "max")
    assert grid.get_best_result("score", "max", filter_nan_and_inf=False).config["x"] == 1
    assert grid.get_best_result("score", "max", scope="all").config["x"] == 1


def test_get_best_result_uses_defaults(tmp_path):
    exp_dir, trials = build(tmp_path)
    grid = ResultGrid(ExperimentAnalysis(exp_dir, trials=trials, default_metric="score", default_mode="min"))
    assert grid.get_best_result().config == {"x": 4}
    assert grid.get_best_result(mode="max").config == {"x": 2}


def test_get_best_result_errors(grid):
    with pytest.raises(ValueError, match="No metric was given.*TuneConfig"):
        grid.get_best_result(mode="max")
    with pytest.raises(ValueError, match="No mode was given.*TuneConfig"):
        grid.get_best_result(metric="score")
    with pytest.raises(RuntimeError, match="'accuracy': no trial reported this metric"):
        grid.get_best_result("accuracy", "max")
    with pytest.raises(ValueError, match="'best'"):
        grid.get_best_result("score", "best")
    with pytest.raises(ValueError, match="scope"):
        grid.get_best_result("score", "max", scope="first")


def test_get_dataframe(grid):
    df = grid.get_dataframe()
    assert len(df) == 4
    assert {"score", "training_iteration", "trial_id", "config/x", "logdir"} <= set(df.columns)
    assert list(df["config/x"]) == [1, 2, 3, 4]
    assert list(df["trial_id"]) == ["00000", "00001", "00002", "00003"]
    assert list(df["logdir"]) == [r.path for r in grid]
    assert list(df["score"].fillna(-1)) == [2.0, 5.0, -1, 0.5]

    best = grid.get_dataframe(filter_metric="score", filter_mode="max")
    assert list(best["score"]) == [9.0, 5.0, 2.0, 0.5]
    assert list(best["training_iteration"]) == [2, 3, 1, 1]
    lowest = grid.get_dataframe(filter_metric="score", filter_mode="min")
    assert list(lowest["score"]) == [1.0, 3.0, 2.0, 0.5]


def test_errors_and_counts(grid):
    assert grid.num_errors == 1
    assert grid.num_terminated == 3
    (error,) = grid.errors
    assert isinstance(error, TrainingFailedError)
    assert isinstance(error.__cause__, RuntimeError) and str(error.__cause__) == "out of memory"
    assert "RuntimeError: out of memory" in str(error)
    assert grid[3].error is error


def test_error_text_when_pickle_is_missing(tmp_path):
    exp_dir, trials = build(tmp_path)
    os.remove(trials[3].pickled_error_file)
    os.remove(trials[3].error_file)
    error = ResultGrid(ExperimentAnalysis(exp_dir, trials=trials))[3].error
    # nothing on storage: the traceback the driver kept is used
    assert isinstance(error, TrainingFailedError)
    assert "RuntimeError: out of memory" in str(error)


def test_paths_filesystem_and_repr(grid):
    assert grid.experiment_path.endswith(os.sep + "exp")
    assert isinstance(grid.filesystem, pyarrow.fs.LocalFileSystem)
    text = repr(grid)
    assert text.startswith("ResultGrid<[\n  Result(\n")
    assert text.count("Result(") == 4
    assert "error='TrainingFailedError'" in text
    assert "metrics={'score': 2.0}" in text
    assert text.endswith("\n]>")


def test_grid_from_storage_after_the_experiment_moved(tmp_path):
    exp_dir, _ = build(tmp_path / "a")
    moved = str(tmp_path / "b" / "exp_copy")
    shutil.move(exp_dir, moved)
    grid = ResultGrid(ExperimentAnalysis(moved))
    assert grid.experiment_path == moved
    assert len(grid) == 4
    best = grid.get_best_result("score", "max", scope="all")
    assert best.path == os.path.join(moved, "fn_00000")
    assert best.checkpoint.path == os.path.join(moved, "fn_00000", "checkpoint_000002")
    assert os.path.isdir(best.get_best_checkpoint("score", "max").path)
    assert list(best.metrics_dataframe["score"]) == [1.0, 9.0, 2.0]
    assert isinstance(grid[3].error.__cause__, RuntimeError)
    assert grid.num_errors == 1


def test_grid_through_a_file_uri(tmp_path):
    exp_dir, _ = build(tmp_path)
    grid = ResultGrid(ExperimentAnalysis("file://" + exp_dir))
    assert grid.experiment_path == exp_dir
    assert grid.get_best_result("score", "max").config == {"x": 2}


def test_single_trial_grid(tmp_path):
    exp_dir, trials = build(tmp_path, trials={"00000": TRIALS["00000"]})
    grid = ResultGrid(ExperimentAnalysis(exp_dir, trials=trials))
    assert grid.get_best_result("score", "min").config == {"x": 1}


def test_empty_grid(tmp_path):
    grid = ResultGrid(ExperimentAnalysis(str(tmp_path), trials=[]))
    assert len(grid) == 0
    assert list(grid) == []
    assert repr(grid) == "ResultGrid<[]>"
    assert grid.get_dataframe().empty


def test_grid_through_a_remote_style_filesystem(tmp_path):
    # Read only through the pyarrow API, the way S3 is read.
    build(tmp_path)
    fs = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())
    grid = ResultGrid(ExperimentAnalysis("exp", storage_filesystem=fs))
    assert grid.filesystem is fs
    best = grid.get_best_result("score", "max", scope="all")
    assert best.path == "exp/fn_00000"
    assert best.filesystem is fs
    assert best.checkpoint.path == "exp/fn_00000/checkpoint_000002"
    assert list(best.metrics_dataframe["score"]) == [1.0, 9.0, 2.0]
    assert "filesystem='subtree'" in repr(best)
    assert isinstance(grid[3].error.__cause__, RuntimeError)
    assert "RuntimeError: out of memory" in str(grid.errors[0])


def _reports_values(config):
    from tunesmith import tune as _tune

    for value in config["values"]:
        _tune.report({"score": value})


def test_windowed_scopes_pick_the_same_trial_after_the_experiment_is_read_back(tmp_path):
    from tunesmith import tune as _tune

    space = {"values": _tune.grid_search([[1, 9, 9, 9], [5, 5, 5, 5], [8, 8, 0, 10]])}
    grid = _tune.Tuner(_reports_values, param_space=space,
                       run_config=_tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    read_back = _tune.Tuner.restore(str(tmp_path / "exp"), _reports_values).get_results()
    for scope in ("last-5-avg", "last-10-avg", "avg", "last", "all"):
        expected = grid.get_best_result("score", "max", scope=scope).config["values"]
        assert read_back.get_best_result("score", "max", scope=scope).config["values"] == expected, scope
    assert grid.get_best_result("score", "max", scope="last-5-avg").config["values"] == [1, 9, 9, 9]


def test_a_nan_first_value_does_not_hide_the_best_of_the_later_ones(tmp_path):
    from tunesmith import tune as _tune

    space = {"values": _tune.grid_search([[float("nan"), 0.1, 0.5], [1.0, 1.0, 1.0]])}
    grid = _tune.Tuner(_reports_values, param_space=space,
                       run_config=_tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    # As on Ray: the NaN step (no validation run) is skipped by max and min.
    assert grid.get_best_result("score", "min", scope="all").config["values"][1] == 0.1


def _scores_out_of_order(config):
    from _trainables import report_each_with_a_checkpoint

    report_each_with_a_checkpoint("acc", (0.9, 0.5, 0.7))


def test_best_checkpoints_keep_their_ranking_when_read_back(tmp_path):
    """Read back (Tuner.restore().get_results(), Result.from_path), best_checkpoints came oldest first instead
    of worst to best by the checkpoint score, so best_checkpoints[-1] named another checkpoint."""
    from tunesmith import train, tune

    run_config = tune.RunConfig(storage_path=str(tmp_path), name="e", verbose=0, checkpoint_config=tune.CheckpointConfig(
        checkpoint_score_attribute="acc", checkpoint_score_order="max"))
    (result,) = list(tune.Tuner(_scores_out_of_order, run_config=run_config).fit())
    (restored,) = list(tune.Tuner.restore(str(tmp_path / "e"), _scores_out_of_order).get_results())
    for r in (result, restored, train.Result.from_path(result.path)):
        assert [m["acc"] for _, m in r.best_checkpoints] == [0.5, 0.7, 0.9]


def _reports_text_or_numbers(config):
    for i in range(3):
        acc = 0.5 + 0.1 * i
        tune.report({"acc": f"{acc + 0.2:.2f}" if config["text"] else acc})


@pytest.mark.parametrize("scope", ["last", "avg", "all", "last-5-avg"])
def test_a_metric_reported_as_text_is_not_ranked(tmp_path, scope):
    """"0.90" counted as 0.9 for scope="last" only, so the best trial depended on the scope (Ray never
    ranks text)."""
    grid = tune.Tuner(_reports_text_or_numbers, param_space={"text": tune.grid_search([True, False])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.get_best_result(metric="acc", mode="max", scope=scope).config["text"] is False


def _checkpoints_a_flag(config):
    import tempfile

    import numpy as np

    for solved in (False, True, False):
        solved = np.bool_(solved) if config["numpy"] else solved
        with tempfile.TemporaryDirectory() as d:
            tune.report({"solved": solved}, checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.parametrize("numpy", [False, True])
def test_the_best_checkpoint_by_a_flag_metric(tmp_path, numpy):
    """A bool metric was no score: Result.get_best_checkpoint raised and ExperimentAnalysis's returned None
    (Ray picks the checkpoint reported with True)."""
    (result,) = tune.Tuner(_checkpoints_a_flag, param_space={"numpy": numpy}, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, checkpoint_config=tune.CheckpointConfig(num_to_keep=None))).fit()
    assert result.get_best_checkpoint("solved", "max").path.endswith("checkpoint_000001")
    analysis = tune.ExperimentAnalysis(os.path.dirname(result.path))
    assert analysis.get_best_checkpoint(analysis.trials[0], "solved", "max").path.endswith("checkpoint_000001")
