"""Log every trial to Weights & Biases, offline: one W&B run per trial.

``WandbLoggerCallback`` logs each trial's config and results (and its
checkpoints as artifacts, with ``upload_checkpoints=True``). In offline mode
the runs stay in each trial's directory under ``wandb/``; ``wandb sync
<dir>`` uploads them later. Inside a trial, ``setup_wandb(config, ...)``
returns a run of its own to log anything else.

Run it with ``pip install -e ".[wandb]" && python examples/tracking_wandb.py``.
"""
from __future__ import annotations

import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _objective import bowl_loss  # noqa: E402

from tunesmith import tune  # noqa: E402
from tunesmith.tune.logger.wandb import WandbLoggerCallback  # noqa: E402


def train_fn(config):
    for step in range(1, 11):
        tune.report({"loss": bowl_loss(config["lr"], config["momentum"], step)})


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="tunesmith-wandb-")
    results = tune.Tuner(
        train_fn,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "momentum": tune.uniform(0.5, 0.99)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4),
        run_config=tune.RunConfig(
            name="wandb_example", storage_path=workdir, verbose=1,
            callbacks=[WandbLoggerCallback(project="tunesmith-example", mode="offline", tags=["example"])],
        ),
    ).fit()
    print("best config:", results.get_best_result().config)
    runs = sorted(glob.glob(os.path.join(workdir, "wandb_example", "*", "wandb", "offline-run-*")))
    print(f"{len(runs)} offline W&B runs, e.g. {runs[0]}")
    print(f"Upload them with: wandb sync {os.path.join(workdir, 'wandb_example', '*', 'wandb', 'offline-run-*')}")


if __name__ == "__main__":
    main()
