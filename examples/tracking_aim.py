"""Log every trial to an Aim repository: one Aim run per trial.

``AimLoggerCallback`` tracks each numeric result field as ``ray/tune/<field>``
and keeps the trial's config under ``hparams``. The repository is the
experiment directory unless ``repo=`` says otherwise; browse it with
``aim up --repo <dir>``.

Run it with ``pip install -e ".[aim]" && python examples/tracking_aim.py``.
"""
from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _objective import bowl_loss  # noqa: E402

from tunesmith import tune  # noqa: E402
from tunesmith.tune.logger.aim import AimLoggerCallback  # noqa: E402


def train_fn(config):
    for step in range(1, 11):
        tune.report({"loss": bowl_loss(config["lr"], config["momentum"], step)})


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="tunesmith-aim-")
    repo = os.path.join(workdir, "aim")
    results = tune.Tuner(
        train_fn,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "momentum": tune.uniform(0.5, 0.99)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4),
        run_config=tune.RunConfig(name="aim_example", storage_path=workdir, verbose=1,
                                  callbacks=[AimLoggerCallback(repo=repo, experiment_name="tunesmith-example")]),
    ).fit()
    print("best config:", results.get_best_result().config)

    from aim import Repo

    for run in Repo.from_path(repo).iter_runs():
        loss = next(m for m in run.metrics() if m.name == "ray/tune/loss")
        print(f"  {run.name}: {run['trial_status']}, {len(loss.values.values_list())} loss values, "
              f"hparams={run['hparams']}")
    print(f"Browse them with: aim up --repo {repo}")


if __name__ == "__main__":
    main()
