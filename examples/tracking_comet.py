"""Log every trial to Comet, offline: one Comet experiment (an archive) per trial.

``CometLoggerCallback(online=False)`` writes one ``.zip`` per trial to
``<experiment dir>/comet/``; ``comet upload <zip>`` sends one to Comet later.
With ``online=True`` (the default) and an API key the trials go straight to
Comet.

Run it with ``pip install -e ".[comet]" && python examples/tracking_comet.py``.
"""
from __future__ import annotations

import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _objective import bowl_loss  # noqa: E402

from tunesmith import tune  # noqa: E402
from tunesmith.tune.logger.comet import CometLoggerCallback  # noqa: E402


def train_fn(config):
    for step in range(1, 11):
        tune.report({"loss": bowl_loss(config["lr"], config["momentum"], step)})


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="tunesmith-comet-")
    results = tune.Tuner(
        train_fn,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "momentum": tune.uniform(0.5, 0.99)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4),
        run_config=tune.RunConfig(
            name="comet_example", storage_path=workdir, verbose=1,
            callbacks=[CometLoggerCallback(online=False, tags=["example"], project_name="tunesmith-example")],
        ),
    ).fit()
    print("best config:", results.get_best_result().config)
    archives = sorted(glob.glob(os.path.join(workdir, "comet_example", "comet", "*.zip")))
    print(f"{len(archives)} offline Comet experiments; upload one with: comet upload {archives[0]}")


if __name__ == "__main__":
    main()
