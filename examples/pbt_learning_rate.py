"""Population based training finds a learning-rate schedule.

A toy training problem whose best learning rate falls as training goes on:
a fixed learning rate is right only for a while, so PBT, which copies the
state of good trials into poor ones and perturbs their learning rate, ends
with a higher accuracy than any trial of the same population left alone.
Run it with ``python examples/pbt_learning_rate.py``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

from tunesmith import train, tune
from tunesmith.tune.schedulers import PopulationBasedTraining

STEPS = 60


def best_lr(step: int) -> float:
    """The learning rate that helps most at ``step``: 0.01 falling to 0.0002."""
    return 0.01 * math.exp(-step / 15)


def train_toy(config):
    state = {"step": 0, "accuracy": 0.0}
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
    while state["step"] < STEPS:
        state["step"] += 1
        # The closer the learning rate is to today's best, the more accuracy grows.
        distance = abs(math.log10(config["lr"]) - math.log10(best_lr(state["step"])))
        state["accuracy"] += max(0.0, 1.0 - distance) * (1.0 - state["accuracy"]) * 0.1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump(state, f)
            train.report({"accuracy": state["accuracy"], "lr": config["lr"]},
                         checkpoint=train.Checkpoint.from_directory(d))


def run(scheduler=None):
    return tune.Tuner(
        train_toy,
        param_space={"lr": tune.grid_search([0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05])},
        tune_config=tune.TuneConfig(metric="accuracy", mode="max", scheduler=scheduler),
        run_config=tune.RunConfig(verbose=0),
    ).fit()


def main() -> None:
    fixed = run().get_best_result()
    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=5,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1)},
    )
    results = run(pbt)
    best = results.get_best_result()
    print(f"Best fixed learning rate {fixed.config['lr']}: accuracy {fixed.metrics['accuracy']:.4f}")
    print(f"PBT:                             accuracy {best.metrics['accuracy']:.4f}")
    lrs = list(best.metrics_dataframe["lr"])
    print("Learning rate of the best PBT trial every 10 steps:", [f"{lr:.5f}" for lr in lrs[::10]])


if __name__ == "__main__":
    main()
