"""The experiment-tracker loggers against the real libraries, in their local or offline modes.

Each test runs a small experiment through ``Tuner.fit()`` (two trials, the
second fails at its third iteration, both report a checkpoint at the first)
and reads back what the library recorded.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile

import pytest

from tunesmith import train, tune


def _trainable(config):
    for i in range(3):
        if config["x"] > 1.5 and i == 2:
            raise RuntimeError("diverged")
        checkpoint = None
        if i == 0:
            directory = tempfile.mkdtemp()
            with open(os.path.join(directory, "weights.txt"), "w") as f:
                f.write(str(config["x"]))
            checkpoint = train.Checkpoint.from_directory(directory)
        tune.report({"loss": config["x"] / (i + 1), "info": {"acc": i / 10}}, checkpoint=checkpoint)
        if checkpoint is not None:
            shutil.rmtree(checkpoint.path)  # report() copied it


def _fit(storage, callback, trainable=_trainable, name="exp"):
    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search([1.0, 2.0]), "opt": {"lr": 0.1}},
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0,
                                  callbacks=[callback] if callback else []),
    )
    results = tuner.fit()
    # trial id -> (trial name, x, trial directory)
    trials = {}
    for result in results:
        trial_id = result.metrics["trial_id"]
        trials[trial_id] = (f"{trainable.__name__}_{trial_id}", result.config["x"], result.path)
    return results, trials


# -- MLflow --------------------------------------------------------------------------------

def test_mlflow_logger_callback_sqlite(storage, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    # Artifacts go where the experiment says (MLflow's default is ./mlruns in the working directory).
    client.create_experiment("tracked", artifact_location=(tmp_path / "artifacts").as_uri())
    callback = MLflowLoggerCallback(tracking_uri=uri, experiment_name="tracked", tags={"team": "search"},
                                    save_artifact=True)
    _, trials = _fit(storage, callback)

    experiment = client.get_experiment_by_name("tracked")
    runs = {r.data.tags["trial_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(trials)
    for trial_id, run in runs.items():
        name, x, _ = trials[trial_id]
        assert run.info.run_name == name
        assert run.data.tags["team"] == "search"
        assert run.data.tags["trial_name"] == name
        assert run.data.params == {"x": str(x), "opt/lr": "0.1"}
        history = client.get_metric_history(run.info.run_id, "loss")
        expected = [(1, x), (2, x / 2), (3, x / 3)] if x < 1.5 else [(1, x), (2, x / 2)]
        assert sorted((m.step, m.value) for m in history) == expected
        acc = client.get_metric_history(run.info.run_id, "info/acc")
        assert sorted(m.step for m in acc) == [s for s, _ in expected]
        assert "pid" not in run.data.metrics and "time_total_s" in run.data.metrics
        assert run.info.status == ("FINISHED" if x < 1.5 else "FAILED")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"checkpoint_000000", "params.json", "progress.csv"} <= artifacts
        weights = client.list_artifacts(run.info.run_id, "checkpoint_000000")
        assert [a.path for a in weights] == ["checkpoint_000000/weights.txt"]
        assert run.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())


def _odd_values_trainable(config):
    values = [1.5, float("nan"), float("inf"), -float("inf"), 2, 0.25]
    for i, v in enumerate(values):
        tune.report({"loss": v, "nested": {"v": -v}, "flag": True, "name": "x"})


def test_mlflow_holds_what_log_batch_would_record(storage, tmp_path):
    # Results reach a SQL store in bulk; what MLflow then holds (histories, latest values,
    # NaN and infinities) must be what its own log_batch records for the same values.
    pytest.importorskip("mlflow")
    import json
    import math

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("odd", artifact_location=(tmp_path / "artifacts").as_uri())
    grid = tune.Tuner(_odd_values_trainable, run_config=tune.RunConfig(
        storage_path=storage, name="odd", verbose=0,
        callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name="odd")])).fit()
    (run,) = client.search_runs([client.get_experiment_by_name("odd").experiment_id])
    rows = [json.loads(line) for line in open(os.path.join(grid[0].path, "result.json"))]
    assert len(rows) == 6

    # The same values through MLflow's own path, into a reference run of the same store.
    skip = {"pid", "timestamp", "done", "should_checkpoint"}  # a flag is a 0/1 metric, as on Ray
    metrics = []
    for row in rows:
        row = {**{k: v for k, v in row.items() if k != "nested"}, "nested/v": row["nested"]["v"]}
        for key, value in row.items():
            if key in skip or not isinstance(value, (int, float)):
                continue
            metrics.append(Metric(key, float(value), int(row["timestamp"] * 1000), int(row["training_iteration"])))
    reference = client.create_run(run.info.experiment_id).info.run_id
    client.log_batch(reference, metrics=metrics)
    expected = client.get_run(reference).data.metrics

    def same(a, b):
        return (math.isnan(a) and math.isnan(b)) or a == b

    assert set(run.data.metrics) == set(expected)
    assert all(same(run.data.metrics[k], expected[k]) for k in expected)
    for key in expected:
        got = sorted((m.step, m.timestamp, str(m.value)) for m in client.get_metric_history(run.info.run_id, key))
        want = sorted((m.step, m.timestamp, str(m.value)) for m in client.get_metric_history(reference, key))
        assert got == want, key
    loss = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [str(m.value) for m in loss][:2] == ["1.5", "nan"] and loss[2].value > 1e308 and loss[3].value < -1e308


def _mlflow_trainable(config):
    from tunesmith.tune.logger.mlflow import setup_mlflow

    mlflow = setup_mlflow(config, tracking_uri=config["uri"], experiment_name="inside",
                          create_experiment_if_not_exists=True, tags={"src": "trial"})
    for i in range(3):
        if config["x"] > 1.5 and i == 2:
            raise RuntimeError("diverged")
        mlflow.log_metric("inner_loss", config["x"] / (i + 1), step=i)
        tune.report({"loss": config["x"] / (i + 1)})


def test_setup_mlflow_in_trials_file_store(storage, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    tuner = tune.Tuner(
        _mlflow_trainable,
        param_space={"x": tune.grid_search([1.0, 2.0]), "uri": uri},
        run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0),
    )
    results = tuner.fit()
    names = {r.metrics["trial_id"]: r.config["x"] for r in results}

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("inside")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["trial_id"] for r in runs} == set(names)
    for run in runs:
        x = names[run.data.tags["trial_id"]]
        assert run.data.tags["src"] == "trial"
        assert run.info.run_name.endswith(run.data.tags["trial_id"])
        assert run.data.params["x"] == str(x) and run.data.params["uri"] == uri
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "inner_loss")]
        assert sorted(steps) == ([0, 1, 2] if x < 1.5 else [0, 1])
        # The worker process outlives the trial: the run is closed with the trial's outcome.
        assert run.info.status == ("FINISHED" if x < 1.5 else "FAILED")


def _flaky(config):
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = int(open(os.path.join(directory, "next")).read())
    for i in range(start, 5):
        if i == 3 and not os.path.exists(config["fixed"]):
            raise RuntimeError("flaky")
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "next"), "w") as f:
                f.write(str(i + 1))
            tune.report({"loss": 1.0 / (i + 1)}, checkpoint=train.Checkpoint.from_directory(directory))


def test_mlflow_run_continues_when_the_experiment_is_restored(storage, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fixed = tmp_path / "fixed"
    tune.Tuner(_flaky, param_space={"fixed": str(fixed)},
               run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0,
                                         callbacks=[MLflowLoggerCallback(tracking_uri=uri)])).fit()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("exp")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]

    fixed.touch()
    results = tune.Tuner.restore(os.path.join(storage, "exp"), _flaky, resume_errored=True).fit()
    assert results.num_errors == 0 and results[0].metrics["training_iteration"] == 5
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(i, 1.0 / i) for i in range(1, 6)]


# -- Weights & Biases ------------------------------------------------------------------------

def test_wandb_logger_callback_offline(storage):
    pytest.importorskip("wandb")
    from _tracker_readers import wandb_run

    from tunesmith.tune.logger.wandb import WandbLoggerCallback

    callback = WandbLoggerCallback(project="proj", group="grp", mode="offline", upload_checkpoints=True,
                                   tags=["nightly"], excludes=["info"])
    _, trials = _fit(storage, callback)
    for trial_id, (name, x, path) in trials.items():
        run = wandb_run(path)
        assert (run["id"], run["name"], run["project"], run["group"]) == (trial_id, name, "proj", "grp")
        assert run["tags"] == ["nightly"]
        assert run["config"]["x"] == x and run["config"]["opt"] == {"lr": 0.1}
        assert run["config"]["trial_id"] == trial_id
        losses = [(row["_step"], row["loss"]) for row in run["history"] if "loss" in row]
        expected = [(1, x), (2, x / 2), (3, x / 3)] if x < 1.5 else [(1, x), (2, x / 2)]
        assert losses == expected
        assert not any("info/acc" in row for row in run["history"])  # excluded
        assert not any("pid" in row for row in run["history"])  # config-like fields stay out of history
        assert run["artifacts"] and run["artifacts"][0]["type"] == "model"
        assert run["artifacts"][0]["files"] == ["weights.txt"]
        assert run["exit_code"] == (0 if x < 1.5 else 1)


def _wandb_trainable(config):
    from tunesmith.tune.logger.wandb import setup_wandb

    run = setup_wandb(config, project="inside", mode="offline")
    for i in range(3):
        if config["x"] > 1.5 and i == 2:
            raise RuntimeError("diverged")
        run.log({"inner": config["x"] * i})
        tune.report({"loss": config["x"] / (i + 1)})


def test_setup_wandb_in_trials_offline(storage):
    pytest.importorskip("wandb")
    from _tracker_readers import wandb_run

    results = tune.Tuner(
        _wandb_trainable,
        param_space={"x": tune.grid_search([1.0, 2.0])},
        run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0),
    ).fit()
    for result in results:
        x = result.config["x"]
        run = wandb_run(result.path)
        assert run["id"] == result.metrics["trial_id"] and run["project"] == "inside" and run["group"] == "exp"
        assert run["config"]["x"] == x
        assert [row["inner"] for row in run["history"] if "inner" in row] == ([0, x, 2 * x] if x < 1.5 else [0, x])
        assert run["exit_code"] == (0 if x < 1.5 else 1)


# -- Aim -----------------------------------------------------------------------------------------

def test_aim_logger_callback_local_repo(storage, tmp_path):
    pytest.importorskip("aim")
    from aim import Repo

    from tunesmith.tune.logger.aim import AimLoggerCallback

    repo_path = str(tmp_path / "aim")
    _, trials = _fit(storage, AimLoggerCallback(repo=repo_path, experiment_name="aimexp"))
    runs = {run["trial_id"]: run for run in Repo.from_path(repo_path).iter_runs()}
    assert set(runs) == set(trials)
    for trial_id, run in runs.items():
        name, x, path = trials[trial_id]
        assert run.name == name and run.experiment == "aimexp"
        assert run["hparams"] == {"x": x, "opt": {"lr": 0.1}}
        assert run["trial_log_dir"] == path
        assert run["trial_status"] == ("FINISHED" if x < 1.5 else "FAILED")
        metrics = {m.name: m for m in run.metrics()}
        assert {"ray/tune/loss", "ray/tune/info/acc"} <= set(metrics)
        assert "ray/tune/pid" not in metrics
        loss = metrics["ray/tune/loss"]
        points = [(step, columns[0]) for step, columns in loss.data.items()]  # (value, epoch, time)
        expected = [(1, x), (2, x / 2), (3, x / 3)] if x < 1.5 else [(1, x), (2, x / 2)]
        assert points == expected


# -- Comet ---------------------------------------------------------------------------------------

def test_comet_logger_callback_offline_archives(storage):
    if importlib.util.find_spec("comet_ml") is None:  # not imported here: comet_ml patches other libraries
        pytest.skip("comet_ml is not installed")
    from _tracker_readers import comet_archives

    from tunesmith.tune.logger.comet import CometLoggerCallback

    callback = CometLoggerCallback(online=False, tags=["nightly"], save_checkpoints=True, project_name="proj")
    _, trials = _fit(storage, callback)
    archives = {a["others"]["trial_id"]: a for a in comet_archives(os.path.join(storage, "exp", "comet"))}
    assert set(archives) == set(trials)
    for trial_id, archive in archives.items():
        name, x, _ = trials[trial_id]
        assert archive["others"]["Name"] == name
        assert archive["meta"]["project_name"] == "proj" and archive["meta"]["tags"] == ["nightly"]
        assert archive["params"]["x"] == x and archive["params"]["opt|lr"] == 0.1
        losses = [(m["step"], m["metricValue"]) for m in archive["metrics"] if m["metricName"] == "loss"]
        expected = [(1, x), (2, x / 2), (3, x / 3)] if x < 1.5 else [(1, x), (2, x / 2)]
        assert losses == expected
        assert "pid" in archive["system"] and "hostname" in archive["system"]
        assert archive["others"]["trial_status"] == ("FINISHED" if x < 1.5 else "FAILED")
        models = [f for f in archive["files"] if f["additional_params"]["type"] == "model-element"]
        assert [m["additional_params"]["groupingName"] for m in models] == ["checkpoint_000000"]
        assert models[0]["file_path"] in archive["zip_names"]


# -- the helper process ------------------------------------------------------------------------

def test_tracker_callbacks_need_their_library(monkeypatch):
    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ImportError, match="pip install mlflow"):
        MLflowLoggerCallback()


def test_import_tunesmith_does_not_import_trackers():
    import subprocess
    import sys

    code = (
        "import sys, tunesmith\nfrom tunesmith import tune\n"
        "from tunesmith.tune.logger.mlflow import MLflowLoggerCallback\n"
        "from tunesmith.tune.logger.wandb import WandbLoggerCallback\n"
        "from tunesmith.tune.logger.aim import AimLoggerCallback\n"
        "from tunesmith.tune.logger.comet import CometLoggerCallback\n"
        "print(sorted(m for m in ('mlflow', 'wandb', 'aim', 'comet_ml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _many_results(config):
    for i in range(200):
        tune.report({"score": i})


def test_a_stuck_tracker_does_not_hold_up_the_experiment(storage, tmp_path):
    """The tracker is held until every trial has finished: the experiment must get there alone."""
    import json

    from _gated_tracker import GatedLoggerCallback

    out, gate = str(tmp_path / "recorded.jsonl"), str(tmp_path / "gate")
    seen_at_release = []

    class OpenGate(tune.Callback):
        def on_experiment_end(self, trials, **info):
            seen_at_release.append(sum(t.last_result.get("training_iteration", 0) for t in trials))
            seen_at_release.append(open(out).read().count('"result"') if os.path.exists(out) else 0)
            open(gate, "w").close()

    results = tune.Tuner(
        _many_results, param_space={"i": tune.grid_search([0, 1, 2])},
        run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0,
                                  callbacks=[OpenGate(), GatedLoggerCallback(out, gate)]),
    ).fit()
    # Every result reached the driver while the tracker had recorded none of them.
    assert seen_at_release == [600, 0]
    # And once released, the tracker recorded all of them, in order, then ended each run.
    records = [json.loads(line) for line in open(out)]
    assert not any(r["event"] == "gate timed out" for r in records)
    for result in results:
        trial_id = result.metrics["trial_id"]
        mine = [r for r in records if r.get("trial") == trial_id]
        assert mine[0]["event"] == "start" and mine[-1] == {"event": "end", "trial": trial_id, "status": "FINISHED"}
        assert [r["iteration"] for r in mine if r["event"] == "result"] == list(range(1, 201))


def test_tensorboard_logger_does_not_pull_in_comet(tmp_path):
    """tensorboardX imports comet_ml (and torch) when installed; the TensorBoard logger imports neither."""
    if importlib.util.find_spec("comet_ml") is None or importlib.util.find_spec("tensorboardX") is None:
        pytest.skip("needs comet_ml and tensorboardX installed")
    import subprocess
    import sys

    code = (
        "import sys\nfrom tunesmith import tune\n"
        "def f(config):\n    tune.report({'loss': config['x']})\n"
        "tune.Tuner(f, param_space={'x': tune.grid_search([1, 2])},"
        " run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0)).fit()\n"
        "print(*(m in sys.modules for m in ('tensorboardX', 'comet_ml', 'torch')))"
    )
    env = dict(os.environ, TUNESMITH_LEDGER_DIR=str(tmp_path / "ledger"))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False"]
    assert len(list(tmp_path.glob("*/f_*/events.out.tfevents.*"))) == 2


def _reports_an_image(config):
    import numpy as np

    for i in range(2):
        tune.report({"loss": config["lr"] * (i + 1), "picture": np.zeros((4, 4, 3), dtype=np.uint8)})


def test_wandb_logs_images_and_the_config_as_ray_does(storage):
    # WandbLoggerCallback(image_kwargs=..., log_config=True): an (H, W, C) array is logged as an
    # image, and the config goes with every result.
    pytest.importorskip("wandb")
    from _tracker_readers import wandb_run

    from tunesmith.tune.logger.wandb import WandbLoggerCallback

    callback = WandbLoggerCallback(project="media", mode="offline", image_kwargs={"caption": "blank"},
                                   log_config=True)
    (result,) = tune.Tuner(_reports_an_image, param_space={"lr": 0.5},
                           run_config=tune.RunConfig(storage_path=storage, name="media", verbose=0,
                                                     callbacks=[callback])).fit()
    assert result.error is None
    rows = [row for row in wandb_run(result.path)["history"] if "loss" in row]
    assert [row["loss"] for row in rows] == [0.5, 1.0]
    assert all(row["picture/_type"] == "image-file" and row["picture/caption"] == "blank" for row in rows)
    assert all(row["config/lr"] == 0.5 for row in rows)


def test_aim_takes_a_repo_object(storage, tmp_path):
    pytest.importorskip("aim")
    from aim import Repo

    from tunesmith.tune.logger.aim import AimLoggerCallback

    repo = Repo(str(tmp_path / "aim"), init=True)
    _, trials = _fit(storage, AimLoggerCallback(repo=repo))
    assert {run["trial_id"] for run in Repo.from_path(str(tmp_path / "aim")).iter_runs()} == set(trials)



@pytest.mark.parametrize("where, expected", [("setup", "could not be set up"), ("start", "start of trial")])
def test_a_tracker_that_fails_says_so_once_and_the_experiment_goes_on(storage, caplog, where, expected):
    import logging

    from _gated_tracker import FailingLoggerCallback

    with caplog.at_level(logging.WARNING):
        grid, _ = _fit(storage, FailingLoggerCallback(where))
    assert all(r.metrics["loss"] for r in grid if r.error is None)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(expected in m for m in messages), messages
    # No crash of the helper, and nothing sent to a tracker for trials it never started.
    assert not any("ended unexpectedly" in m or "AttributeError" in m or "never started" in m for m in messages)


def test_mlflow_logs_params_at_trial_end_when_asked(storage, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, trials = _fit(storage, MLflowLoggerCallback(tracking_uri=uri, experiment_name="late",
                                                   log_params_on_trial_end=True))
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("late").experiment_id])
    assert sorted(r.data.params["x"] for r in runs) == sorted(str(x) for _, x, _ in trials.values())


_USER_CLASSES_SCRIPT = """
import sys
from tunesmith import tune
from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

class SmallNet:
    width = 8

class Info:
    def __init__(self, i):
        self.i = i

def train_fn(config):
    for i in range(3):
        tune.report({"score": float(i * config["model"].width), "val:loss": 1.0 / (i + 1), "info": Info(i)})

tune.Tuner(train_fn, param_space={"model": tune.grid_search([SmallNet])},
           run_config=tune.RunConfig(name="exp", storage_path=sys.argv[1], verbose=0,
                                     callbacks=[MLflowLoggerCallback(tracking_uri=sys.argv[2], experiment_name="cls")])).fit()
"""


def test_mlflow_logs_trials_whose_config_and_results_hold_the_scripts_own_classes(tmp_path):
    """The tracker's helper process could not unpickle a class defined in the user's script (in a
    config or a result) and logged nothing at all."""
    import subprocess
    import sys

    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    script = tmp_path / "script.py"
    script.write_text(_USER_CLASSES_SCRIPT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "results"), uri], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    client = MlflowClient(tracking_uri=uri)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("cls").experiment_id])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["model"] == "SmallNet"
    assert [(m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, "score")] == [
        (1, 0.0), (2, 8.0), (3, 16.0)]
    # MLflow takes ":" in names: "val:loss" is not renamed (it would merge with a "val_loss").
    assert len(client.get_metric_history(mlflow_run.info.run_id, "val:loss")) == 3


def _torch_loop_with_setup_mlflow(config):
    from tunesmith.tune.logger.mlflow import setup_mlflow

    mlflow = setup_mlflow(config, tracking_uri=config["uri"], experiment_name="in_trainer",
                          create_experiment_if_not_exists=True)
    for i in range(3):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        train.report({"loss": 1.0 / (i + 1)})


def test_setup_mlflow_in_a_trainers_worker_ends_its_run(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.train import DataParallelTrainer, ScalingConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = DataParallelTrainer(
        _torch_loop_with_setup_mlflow, train_loop_config={"uri": uri},
        scaling_config=ScalingConfig(num_workers=1),
        run_config=train.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert result.error is None
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("in_trainer").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3


def _logs_its_own_score(config):
    from tunesmith.tune.logger.mlflow import setup_mlflow

    # The callback creates "exp" too, in its own process and maybe later: either may come first.
    mlflow = setup_mlflow(config, tracking_uri=config["uri"], experiment_name="exp",
                          create_experiment_if_not_exists=True)
    for i in range(3):
        mlflow.log_metric("score", -1.0, step=i + 1)
        tune.report({"score": float(i)})


def test_the_callback_and_setup_mlflow_keep_runs_of_their_own(storage, tmp_path):
    """With both on one MLflow experiment, setup_mlflow reopened the callback's run (found by trial id), and
    the two "score" series were mixed in it."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tune.Tuner(_logs_its_own_score, param_space={"uri": uri}, run_config=tune.RunConfig(
        storage_path=storage, name="exp", verbose=0, callbacks=[MLflowLoggerCallback(tracking_uri=uri)])).fit()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    series = sorted(sorted(m.value for m in client.get_metric_history(r.info.run_id, "score")) for r in runs)
    assert series == [[-1.0, -1.0, -1.0], [0.0, 1.0, 2.0]], [r.data.tags for r in runs]


def _every_rank_logs(config):
    import time

    from tunesmith.tune.logger.mlflow import setup_mlflow

    rank = train.get_context().get_world_rank()
    if rank == 1:
        while not os.path.exists(config["rank0_started"]):  # rank 0's run exists before rank 1 asks
            time.sleep(0.05)
    mlflow = setup_mlflow(config, tracking_uri=config["uri"], experiment_name="ranks",
                          create_experiment_if_not_exists=True, rank_zero_only=False, run_name=f"worker{rank}")
    if rank == 0:
        open(config["rank0_started"], "w").close()
    mlflow.log_metric("m", 100 * rank, step=0)
    train.report({"done": 1})


def test_setup_mlflow_on_every_rank_gives_each_worker_its_run(tmp_path):
    """A worker that called setup_mlflow(rank_zero_only=False) after rank 0 wrote into rank 0's run."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.train import DataParallelTrainer, ScalingConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = DataParallelTrainer(
        _every_rank_logs, train_loop_config={"uri": uri, "rank0_started": str(tmp_path / "started")},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert result.error is None
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ranks").experiment_id])
    assert sorted((r.info.run_name, r.data.metrics["m"]) for r in runs) == [("worker0", 0.0), ("worker1", 100.0)]


def _fails_unless_fixed(config):
    for i in range(3):
        if i == 2 and not os.path.exists(config["fixed"]):
            raise RuntimeError("not yet")
        tune.report({"score": 10.0 * (i + 1) + (100 if os.path.exists(config["fixed"]) else 0)})


@pytest.mark.parametrize("how", ["restart_errored", "resume_errored"])
def test_a_trial_restarted_from_scratch_gets_a_new_mlflow_run(storage, tmp_path, how):
    """restart_errored (and resume_errored of a trial without a checkpoint, which runs again from its
    first iteration) appended the new attempt to the failed one's run: two values at each step."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.tune.logger.mlflow import MLflowLoggerCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    callbacks = [MLflowLoggerCallback(tracking_uri=uri)]
    tune.Tuner(_fails_unless_fixed, param_space={"fixed": str(tmp_path / "fixed")}, run_config=tune.RunConfig(
        storage_path=storage, name="exp", verbose=0, callbacks=callbacks)).fit()
    (tmp_path / "fixed").touch()
    tune.Tuner.restore(os.path.join(storage, "exp"), _fails_unless_fixed, **{how: True}).fit()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    got = sorted((r.info.status, [m.value for m in sorted(client.get_metric_history(r.info.run_id, "score"),
                                                         key=lambda m: m.step)]) for r in runs)
    assert got == [("FAILED", [10.0, 20.0]), ("FINISHED", [110.0, 120.0, 130.0])]


def test_setup_mlflow_falls_back_to_the_name_for_an_unknown_experiment_id(tmp_path):
    """As Ray documents: an experiment_id that does not exist gives way to experiment_name (it failed the
    trial with MLflow's raw "No Experiment with id=999 exists")."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from tunesmith.tune.logger.mlflow import setup_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("named")
    mlflow = setup_mlflow({"x": 1}, tracking_uri=uri, experiment_id="999", experiment_name="named")
    try:
        assert mlflow.active_run().info.experiment_id == client.get_experiment_by_name("named").experiment_id
    finally:
        mlflow.end_run()
    with pytest.raises(ValueError, match="no MLflow experiment with experiment_id='999'"):
        setup_mlflow({"x": 1}, tracking_uri=uri, experiment_id="999")


def _reports_the_same_timesteps(config):
    for i in range(1, 5):
        tune.report({"score": i * 10, "timesteps_total": 1000})


def test_wandb_and_comet_log_at_the_training_iteration_as_ray_does(storage):
    """They logged at timesteps_total when reported: W&B merged the rows of one step (three scores
    lost) and Comet logged every score at step 1000. On Ray both use training_iteration."""
    pytest.importorskip("wandb")
    from _tracker_readers import wandb_run

    from tunesmith.tune.logger.wandb import WandbLoggerCallback

    callbacks = [WandbLoggerCallback(project="proj", mode="offline")]
    has_comet = importlib.util.find_spec("comet_ml") is not None
    if has_comet:
        from tunesmith.tune.logger.comet import CometLoggerCallback

        callbacks.append(CometLoggerCallback(online=False))
    (result,) = tune.Tuner(_reports_the_same_timesteps, run_config=tune.RunConfig(
        storage_path=storage, name="steps", verbose=0, callbacks=callbacks)).fit()
    run = wandb_run(result.path)
    assert [(row["_step"], row["score"]) for row in run["history"] if "score" in row] == [
        (1, 10), (2, 20), (3, 30), (4, 40)]
    if has_comet:
        from _tracker_readers import comet_archives

        (archive,) = comet_archives(os.path.join(storage, "steps", "comet"))
        assert [(m["step"], m["metricValue"]) for m in archive["metrics"] if m["metricName"] == "score"] == [
            (1, 10), (2, 20), (3, 30), (4, 40)]
