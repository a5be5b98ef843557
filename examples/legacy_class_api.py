"""The older Ray Tune API, unchanged: a class trainable with ``_setup/_train/_save/_restore``,
``tune.run`` with ``checkpoint_freq`` and an ``ExperimentAnalysis`` to read the results.

Run it with ``python examples/legacy_class_api.py``.
"""
from __future__ import annotations

import json
import os

from tunesmith import tune


class Quadratic(tune.Trainable):
    """Gradient descent on (x - 3)^2 with the learning rate from the config."""

    def _setup(self, config):
        self.x = 0.0
        self.lr = config["lr"]

    def _train(self):
        self.x -= self.lr * 2 * (self.x - 3.0)
        return {"loss": (self.x - 3.0) ** 2, "x": self.x}

    def _save(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, "state.json")
        with open(path, "w") as f:
            json.dump({"x": self.x}, f)
        return path

    def _restore(self, checkpoint_path):
        with open(checkpoint_path) as f:
            self.x = json.load(f)["x"]


def main() -> None:
    analysis = tune.run(
        Quadratic,
        config={"lr": tune.grid_search([0.01, 0.05, 0.1, 0.3])},
        stop={"training_iteration": 20},
        metric="loss",
        mode="min",
        checkpoint_freq=5,
        keep_checkpoints_num=2,
        checkpoint_score_attr="min-loss",
        verbose=1,
    )
    print("Best config:", analysis.best_config)
    print("Best loss:", analysis.best_result["loss"])
    print("Best checkpoint:", analysis.get_best_checkpoint(analysis.best_trial, "loss", "min"))
    print(analysis.dataframe()[["config/lr", "loss", "training_iteration"]].sort_values("loss"))


if __name__ == "__main__":
    main()
