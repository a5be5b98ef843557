"""Log every trial to MLflow: one run per trial, its config as params, its results as metrics.

``MLflowLoggerCallback`` logs from the driver (in a helper process, so it
does not slow the trials); ``setup_mlflow`` gives a trial its own run to log
extra metrics from inside the training function. Both go to a SQLite store
here; look at it with ``mlflow ui --backend-store-uri sqlite:///<path>``.

Run it with ``pip install -e ".[mlflow]" && python examples/tracking_mlflow.py``.
"""
from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _objective import bowl_loss  # noqa: E402

from tunesmith import tune  # noqa: E402
from tunesmith.tune.logger.mlflow import MLflowLoggerCallback, setup_mlflow  # noqa: E402


def train_fn(config):
    # A run of its own for this trial, in another MLflow experiment, for what only the trial knows.
    # The tracking URI comes from MLFLOW_TRACKING_URI, which trials inherit from the driver.
    mlflow = setup_mlflow(config, experiment_name="inside-trials", create_experiment_if_not_exists=True)
    for step in range(1, 11):
        loss = bowl_loss(config["lr"], config["momentum"], step)
        mlflow.log_metric("loss_inside", loss, step=step)
        tune.report({"loss": loss})


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="tunesmith-mlflow-")
    tracking_uri = f"sqlite:///{os.path.join(workdir, 'mlflow.db')}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from mlflow import MlflowClient

    # The runs' artifacts (save_artifact=True) go next to the database, not to ./mlruns.
    client = MlflowClient(tracking_uri=tracking_uri)
    client.create_experiment("tunesmith-example", artifact_location=os.path.join(workdir, "artifacts"))
    results = tune.Tuner(
        train_fn,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "momentum": tune.uniform(0.5, 0.99)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4),
        run_config=tune.RunConfig(
            name="mlflow_example", storage_path=os.path.join(workdir, "results"), verbose=1,
            callbacks=[MLflowLoggerCallback(experiment_name="tunesmith-example",
                                            tags={"example": "tracking_mlflow"}, save_artifact=True)],
        ),
    ).fit()
    print("best config:", results.get_best_result().config)

    experiment = client.get_experiment_by_name("tunesmith-example")
    for run in client.search_runs([experiment.experiment_id], order_by=["metrics.loss ASC"]):
        print(f"  {run.info.run_name}: {run.info.status}, loss={run.data.metrics['loss']:.4f}, "
              f"params={run.data.params}")
    print(f"Browse them with: mlflow ui --backend-store-uri {tracking_uri}")


if __name__ == "__main__":
    main()
