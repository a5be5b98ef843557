"""ExperimentAnalysis over an experiment directory, read from a path alone."""
from __future__ import annotations

import json
import math
import os
import shutil
import traceback

import cloudpickle
import pyarrow.fs
import pytest

from tunesmith.train import Checkpoint, TrainingFailedError
from tunesmith.tune import ExperimentAnalysis
from tunesmith.tune.experiment.trial import Trial

# name -> (config, losses, iterations that save a checkpoint, status, error)
TRIALS = {
    "00000": ({"lr": 0.1, "net": {"width": 8}}, [5.0, 3.0, 2.0, 4.0], (2, 4), Trial.TERMINATED, None),
    "00001": ({"lr": 0.01, "net": {"width": 16}}, [6.0, 1.0, 3.5, 3.0], (1, 2, 3), Trial.TERMINATED, None),
    "00002": ({"lr": 0.5, "net": {"width": 4}}, [9.0, 8.0], (), Trial.ERROR, ValueError("diverged")),
}


def write_experiment(root, trials=TRIALS, metric="loss", mode="min", name="my_exp"):
    """Writes an experiment directory as a run leaves it, and returns it with its trials."""
    exp_dir = os.path.join(str(root), name)
    os.makedirs(exp_dir)
    live = []
    for trial_id, (config, losses, ckpt_at, status, error) in trials.items():
        trial = Trial("train_fn", config=config, trial_id=trial_id, experiment_tag=f"{trial_id[-1]}_lr={config['lr']}",
                      experiment_path=exp_dir)
        trial_dir = trial.local_path
        os.makedirs(trial_dir)
        n_ckpt = 0
        lines, csv_lines = [], []
        for i, loss in enumerate(losses, start=1):
            ckpt_name = None
            if i in ckpt_at:
                ckpt_name = f"checkpoint_{n_ckpt:06d}"
                n_ckpt += 1
                os.makedirs(os.path.join(trial_dir, ckpt_name))
                with open(os.path.join(trial_dir, ckpt_name, "state.json"), "w") as f:
                    json.dump({"iteration": i}, f)
            result = {"loss": loss, "extra": {"score": -loss}, "training_iteration": i,
                      "trial_id": trial_id, "done": i == len(losses), "checkpoint_dir_name": ckpt_name,
                      "config": config}
            lines.append(json.dumps(result))
            csv_lines.append(f"{loss},{-loss},{i},{trial_id},{ckpt_name or ''}")
            trial.update_last_result(result)
            if ckpt_name:
                trial.checkpoint_manager.register(Checkpoint(os.path.join(trial_dir, ckpt_name)), result)
        with open(os.path.join(trial_dir, "result.json"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(trial_dir, "progress.csv"), "w") as f:
            f.write("loss,extra/score,training_iteration,trial_id,checkpoint_dir_name\n" + "\n".join(csv_lines) + "\n")
        with open(os.path.join(trial_dir, "params.json"), "w") as f:
            json.dump(config, f)
        if error is not None:
            try:
                raise error
            except Exception as exc:  # noqa: BLE001
                tb = traceback.format_exc()
                pickled = cloudpickle.dumps(exc)
            trial.error_file = os.path.join(trial_dir, "error.txt")
            trial.pickled_error_file = os.path.join(trial_dir, "error.pkl")
            trial.error_msg = tb
            with open(trial.error_file, "w") as f:
                f.write(tb)
            with open(trial.pickled_error_file, "wb") as f:
                f.write(pickled)
            trial.num_failures = 1
        trial.set_status(status)
        live.append(trial)
    state = {"version": 1, "experiment_name": name, "timestamp": 1700000000.0, "trainable_name": "train_fn",
             "metric": metric, "mode": mode, "trials": [t.get_json_state() for t in live]}
    with open(os.path.join(exp_dir, "experiment_state.json"), "w") as f:
        json.dump(state, f)
    return exp_dir, live


@pytest.fixture
def experiment(tmp_path):
    return write_experiment(tmp_path)


def test_loads_trials_from_the_experiment_dir(experiment):
    exp_dir, live = experiment
    analysis = ExperimentAnalysis(exp_dir)
    assert [t.trial_id for t in analysis.trials] == ["00000", "00001", "00002"]
    assert [t.status for t in analysis.trials] == ["TERMINATED", "TERMINATED", "ERROR"]
    assert analysis.trials[1].config == {"lr": 0.01, "net": {"width": 16}}
    assert analysis.trials[0].last_result["loss"] == 4.0
    assert analysis.experiment_path == exp_dir
    assert analysis.trials[0].local_path == live[0].local_path
    # metric and mode come from the state file
    assert (analysis.default_metric, analysis.default_mode) == ("loss", "min")


def test_path_to_the_state_file_works_too(experiment):
    exp_dir, _ = experiment
    analysis = ExperimentAnalysis(os.path.join(exp_dir, "experiment_state.json"))
    assert analysis.experiment_path == exp_dir
    assert len(analysis.trials) == 3


def test_missing_state_file_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="experiment_state.json"):
        ExperimentAnalysis(str(tmp_path))


def test_best_properties_use_default_metric_and_mode(experiment):
    exp_dir, _ = experiment
    analysis = ExperimentAnalysis(exp_dir)
    # last losses: 4.0, 3.0, 8.0
    assert analysis.best_trial.trial_id == "00001"
    assert analysis.best_config == {"lr": 0.01, "net": {"width": 16}}
    assert analysis.best_result["loss"] == 3.0
    assert analysis.best_logdir == analysis.trials[1].local_path
    assert analysis.best_path == analysis.best_logdir
    # best checkpoint of trial 00001 by loss (min): saved at iteration 2 with loss 1.0
    assert os.path.basename(analysis.best_checkpoint.path) == "checkpoint_000001"
    assert list(analysis.best_dataframe["loss"]) == [6.0, 1.0, 3.5, 3.0]
    df = analysis.best_result_df
    assert list(df.index) == ["00001"]
    assert df.loc["00001", "extra/score"] == -3.0


def test_best_properties_without_defaults_raise_clearly(experiment):
    exp_dir, live = experiment
    analysis = ExperimentAnalysis(exp_dir, trials=live)
    assert analysis.default_metric is None
    for name in ("best_trial", "best_config", "best_checkpoint", "best_result", "best_dataframe", "best_logdir"):
        with pytest.raises(ValueError, match=f"To fetch `{name}`, pass `metric` and `mode`"):
            getattr(analysis, name)
    with pytest.raises(ValueError, match="No `metric` was passed"):
        analysis.get_best_trial(mode="min")
    with pytest.raises(ValueError, match="No `mode` was passed"):
        analysis.get_best_trial(metric="loss")
    with pytest.raises(ValueError, match="'minimum'"):
        analysis.get_best_trial(metric="loss", mode="minimum")
    with pytest.raises(ValueError, match="`scope` must be one of"):
        analysis.get_best_trial(metric="loss", mode="min", scope="first")
    with pytest.raises(ValueError, match="default_mode"):
        ExperimentAnalysis(exp_dir, default_mode="lowest")


@pytest.mark.parametrize(
    "scope,mode,expected",
    [
        ("last", "min", "00001"),  # 4.0, 3.0, 8.0
        ("last", "max", "00002"),
        ("avg", "min", "00001"),  # 3.5, 3.375, 8.5
        ("all", "min", "00001"),  # min 2.0, 1.0, 8.0
        ("all", "max", "00002"),  # max 5.0, 6.0, 9.0
        ("last-5-avg", "max", "00002"),
        ("last-10-avg", "min", "00001"),
    ],
)
def test_get_best_trial_scopes(experiment, scope, mode, expected):
    analysis = ExperimentAnalysis(experiment[0])
    assert analysis.get_best_trial("loss", mode, scope=scope).trial_id == expected
    assert analysis.get_best_config("loss", mode, scope=scope) == analysis.get_best_trial("loss", mode, scope).config


def test_get_best_trial_unknown_metric_is_none(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    assert analysis.get_best_trial("accuracy", "max") is None
    assert analysis.get_best_config("accuracy", "max") is None


def test_nested_metric_on_last_scope(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    assert analysis.get_best_trial("extra/score", "max").trial_id == "00001"


def test_checkpoint_queries(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    trial = analysis.trials[1]
    paths = analysis.get_trial_checkpoints_paths(trial, "loss")
    assert [(os.path.basename(p), v) for p, v in paths] == [
        ("checkpoint_000000", 6.0), ("checkpoint_000001", 1.0), ("checkpoint_000002", 3.5)]
    # default metric is training_iteration when none was set for the analysis
    plain = ExperimentAnalysis(experiment[0], trials=analysis.trials)
    assert [v for _, v in plain.get_trial_checkpoints_paths(trial)] == [1, 2, 3]
    assert os.path.basename(analysis.get_best_checkpoint(trial, "loss", "max").path) == "checkpoint_000000"
    assert os.path.basename(analysis.get_best_checkpoint(trial.local_path).path) == "checkpoint_000001"
    assert os.path.basename(analysis.get_last_checkpoint(trial).path) == "checkpoint_000002"
    # without a trial, the best trial by training_iteration (max) is used: 00000 and 00001 tie at 4
    assert os.path.basename(analysis.get_last_checkpoint().path) == "checkpoint_000001"
    assert analysis.get_best_checkpoint(analysis.trials[2], "loss", "min") is None
    with open(os.path.join(analysis.get_last_checkpoint(trial).path, "state.json")) as f:
        assert json.load(f) == {"iteration": 3}


def test_results_and_configs(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    assert {k: v["loss"] for k, v in analysis.results.items()} == {"00000": 4.0, "00001": 3.0, "00002": 8.0}
    df = analysis.results_df
    assert list(df.index) == ["00000", "00001", "00002"]
    assert list(df["loss"]) == [4.0, 3.0, 8.0]
    assert "config/lr" in df.columns
    configs = analysis.get_all_configs()
    # keyed by trial id (Ray >= 2.7); the trial's path is accepted as a key too
    assert set(configs) == {"00000", "00001", "00002"}
    assert configs["00000"] == {"lr": 0.1, "net": {"width": 8}}
    assert configs[analysis.trials[0].local_path] == {"lr": 0.1, "net": {"width": 8}}
    prefixed = analysis.get_all_configs(prefix=True)
    assert prefixed["00000"] == {"config/lr": 0.1, "config/net/width": 8}


def test_trial_dataframes_and_dataframe(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    frames = analysis.trial_dataframes
    assert set(frames) == {"00000", "00001", "00002"}
    assert list(frames["00000"]["loss"]) == [5.0, 3.0, 2.0, 4.0]
    # a trial's path is accepted as a key too
    assert list(frames[analysis.trials[2].local_path]["loss"]) == [9.0, 8.0]

    last = analysis.dataframe()
    assert list(last["loss"]) == [4.0, 3.0, 8.0]
    assert list(last["logdir"]) == [t.local_path for t in analysis.trials]
    assert list(last["config/net/width"]) == [8, 16, 4]
    best = analysis.dataframe(metric="loss", mode="min")
    assert list(best["loss"]) == [2.0, 1.0, 8.0]
    assert list(best["training_iteration"]) == [3, 2, 2]
    worst = analysis.dataframe(metric="loss", mode="max")
    assert list(worst["loss"]) == [5.0, 6.0, 9.0]
    with pytest.raises(ValueError, match="without a `metric`"):
        analysis.dataframe(mode="min")


def test_set_filetype_reads_progress_csv(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    analysis.set_filetype("csv")
    frame = analysis.trial_dataframes[analysis.trials[1].local_path]
    assert list(frame["extra/score"]) == [-6.0, -1.0, -3.5, -3.0]
    assert frame["trial_id"].tolist() == ["00001"] * 4
    with pytest.raises(ValueError, match="'xml'"):
        analysis.set_filetype("xml")


def test_fetch_trial_dataframes_rereads_files(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    assert len(analysis.trial_dataframes["00000"]) == 4
    path = os.path.join(analysis.trials[0].local_path, "result.json")
    with open(path, "a") as f:
        f.write(json.dumps({"loss": 0.5, "training_iteration": 5, "trial_id": "00000"}) + "\n")
    assert len(analysis.trial_dataframes["00000"]) == 4
    assert len(analysis.fetch_trial_dataframes()["00000"]) == 5


def test_stats_and_runner_data(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    assert analysis.stats()["timestamp"] == 1700000000.0
    assert analysis.stats()["num_trials"] == 3
    data = analysis.runner_data()
    assert data["experiment_name"] == "my_exp" and data["metric"] == "loss"
    assert "trials" not in data


def test_moved_experiment_is_read_from_its_new_place(experiment, tmp_path):
    exp_dir, _ = experiment
    moved = str(tmp_path / "elsewhere" / "renamed_exp")
    shutil.move(exp_dir, moved)
    analysis = ExperimentAnalysis(moved)
    trial = analysis.trials[1]
    assert trial.local_path.startswith(moved)
    assert all(c.path.startswith(trial.local_path) for c, _ in trial.best_checkpoints)
    ckpt = analysis.best_checkpoint
    assert ckpt.path == os.path.join(moved, os.path.basename(trial.local_path), "checkpoint_000001")
    with open(os.path.join(ckpt.path, "state.json")) as f:
        assert json.load(f) == {"iteration": 2}
    assert list(analysis.best_dataframe["loss"]) == [6.0, 1.0, 3.5, 3.0]
    errored = analysis.trials[2]
    assert errored.pickled_error_file == os.path.join(moved, os.path.basename(errored.local_path), "error.pkl")


def test_explicit_local_filesystem_and_file_uri(experiment):
    exp_dir, _ = experiment
    for analysis in (
        ExperimentAnalysis(exp_dir, storage_filesystem=pyarrow.fs.LocalFileSystem()),
        ExperimentAnalysis("file://" + exp_dir),
    ):
        assert analysis.experiment_path == exp_dir
        assert isinstance(analysis.filesystem, pyarrow.fs.LocalFileSystem)
        assert analysis.best_trial.trial_id == "00001"
        assert os.path.basename(analysis.best_checkpoint.path) == "checkpoint_000001"
        assert list(analysis.best_dataframe["loss"]) == [6.0, 1.0, 3.5, 3.0]


def test_remote_style_filesystem(experiment):
    # Read only through the pyarrow API, the way S3 is read.
    exp_dir, _ = experiment
    fs = pyarrow.fs.SubTreeFileSystem(os.path.dirname(exp_dir), pyarrow.fs.LocalFileSystem())
    analysis = ExperimentAnalysis("my_exp", storage_filesystem=fs)
    assert analysis.experiment_path == "my_exp"
    assert analysis.filesystem is fs
    trial = analysis.best_trial
    assert trial.local_path == "my_exp/" + os.path.basename(trial.local_path)
    ckpt = analysis.best_checkpoint
    assert ckpt.path == trial.local_path + "/checkpoint_000001"
    with ckpt.as_directory() as d:
        with open(os.path.join(d, "state.json")) as f:
            assert json.load(f) == {"iteration": 2}
    assert list(analysis.trial_dataframes["00001"]["loss"]) == [6.0, 1.0, 3.5, 3.0]


def test_nan_scores_are_skipped_unless_asked(tmp_path):
    trials = {
        "00000": ({"lr": 1}, [1.0, float("nan")], (), Trial.TERMINATED, None),
        "00001": ({"lr": 2}, [3.0, 2.0], (), Trial.TERMINATED, None),
        "00002": ({"lr": 3}, [3.0, float("inf")], (), Trial.TERMINATED, None),
    }
    exp_dir, _ = write_experiment(tmp_path, trials=trials)
    analysis = ExperimentAnalysis(exp_dir)
    assert math.isnan(analysis.trials[0].last_result["loss"])
    assert analysis.get_best_trial("loss", "max").trial_id == "00001"
    assert analysis.get_best_trial("loss", "max", filter_nan_and_inf=False).trial_id == "00002"


def test_errored_trial_error_files(experiment):
    analysis = ExperimentAnalysis(experiment[0])
    trial = analysis.trials[2]
    assert "ValueError: diverged" in trial.error_msg
    from tunesmith.tune.result_grid import ResultGrid

    error = ResultGrid(analysis)[2].error
    assert isinstance(error, TrainingFailedError)
    assert isinstance(error.__cause__, ValueError)


def _fails_before_reporting_when_two(config):
    from tunesmith import tune as _tune

    if config["x"] == 2:
        raise RuntimeError("failed before its first report")
    _tune.report({"loss": config["x"]})


def test_a_trial_that_reported_nothing_has_no_row(tmp_path):
    from tunesmith import tune as _tune

    grid = _tune.Tuner(_fails_before_reporting_when_two, param_space={"x": _tune.grid_search([1, 2, 3])},
                       run_config=_tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    for frame in (grid.get_dataframe(), grid.get_dataframe(filter_metric="loss", filter_mode="min")):
        assert sorted(frame["config/x"]) == [1, 3]
        assert frame["training_iteration"].dtype.kind == "i"


# -- read back from a real run -------------------------------------------------------------------------
from tunesmith import train as _train  # noqa: E402
from tunesmith import tune as _tune  # noqa: E402


class _Net:
    def __init__(self, width):
        self.width = width


def _reports_partly(config):
    _tune.report({"loss": 2.0, "acc": 0.5, "flag": False})
    _tune.report({"loss": 1.0, "flag": config["x"] == 2})


def test_a_run_read_back_keeps_configs_columns_and_flags(tmp_path):
    import numpy as np

    space = {"x": _tune.grid_search([1, 2]), "net": _Net(3), "shape": (2, 3), "w": np.arange(3), "extra": {}}
    _tune.Tuner(_reports_partly, param_space=space,
                run_config=_tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    analysis = ExperimentAnalysis(str(tmp_path / "exp"))
    for trial in analysis.trials:
        # Objects, tuples and arrays are what the trial ran with, not their text.
        assert isinstance(trial.config["net"], _Net) and trial.config["shape"] == (2, 3)
        assert isinstance(trial.config["w"], np.ndarray)
    restored = _tune.Tuner.restore(str(tmp_path / "exp"), _reports_partly).get_results()
    assert all(isinstance(r.config["net"], _Net) for r in restored)
    frame = analysis.dataframe()
    assert "acc" in frame.columns and frame["acc"].isna().all()  # reported only in an earlier result
    assert not [c for c in frame.columns if c == "config/extra"]  # an empty dict is no column
    # A flag is a metric (as on Ray).
    assert analysis.get_best_trial("flag", "max").config["x"] == 2


def test_a_single_trial_is_the_best_without_a_metric(tmp_path):
    _tune.Tuner(lambda config: {"loss": 1.0}, param_space={"lr": 0.1},
                run_config=_tune.RunConfig(name="one", storage_path=str(tmp_path), verbose=0)).fit()
    analysis = ExperimentAnalysis(str(tmp_path / "one"))
    assert analysis.get_best_trial().config == {"lr": 0.1}
    assert analysis.get_best_config() == {"lr": 0.1}


def test_the_result_delimiter_names_every_column_and_filters_take_slash_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_RESULT_DELIM", ".")

    def nested(config):
        for v in (1.0, 3.0, 2.0):
            _tune.report({"m": {"a": v}})

    grid = _tune.Tuner(nested, param_space={"opt": {"x": 1}},
                       run_config=_tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    frame = grid.get_dataframe(filter_metric="m/a", filter_mode="max")
    assert "config.opt.x" in frame.columns and "config/opt/x" not in frame.columns
    assert list(frame["m.a"]) == [3.0]


class _SavesEveryOther(_tune.Trainable):
    def setup(self, config):
        self.i = 0

    def step(self):
        self.i += 1
        return {"loss": -self.i}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i"), "w") as f:
            f.write(str(self.i))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i")) as f:
            self.i = int(f.read())


def test_from_path_pairs_a_final_checkpoint_with_its_result(tmp_path):
    from tunesmith.train import Result

    (result,) = _tune.Tuner(
        _SavesEveryOther,
        run_config=_tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"training_iteration": 5},
                                   checkpoint_config=_tune.CheckpointConfig(checkpoint_frequency=2,
                                                                            checkpoint_at_end=True)),
    ).fit()
    read = Result.from_path(result.path)
    assert [(os.path.basename(c.path), m["training_iteration"]) for c, m in read.best_checkpoints] == [
        ("checkpoint_000000", 2), ("checkpoint_000001", 4), ("checkpoint_000002", 5)]
    assert os.path.basename(read.get_best_checkpoint("loss", "min").path) == "checkpoint_000002"


def _fails_once(config):
    if not os.path.exists(config["marker"]):
        open(config["marker"], "w").close()
        raise RuntimeError("first run fails")
    _tune.report({"loss": 1.0})


def test_from_path_of_a_trial_that_failed_and_then_finished_has_no_error(tmp_path):
    from tunesmith.train import Result

    kwargs = dict(run_config=_tune.RunConfig(name="exp", storage_path=str(tmp_path / "r"), verbose=0))
    first = _tune.Tuner(_fails_once, param_space={"marker": str(tmp_path / "m")}, **kwargs).fit()
    assert first.num_errors == 1
    again = _tune.Tuner.restore(str(tmp_path / "r" / "exp"), _fails_once, resume_errored=True).fit()
    assert again.num_errors == 0
    assert Result.from_path(again[0].path).error is None
