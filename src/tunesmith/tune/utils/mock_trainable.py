"""``MyTrainableClass``: the toy Trainable of the seeds' scheduler examples (no real training)."""
from __future__ import annotations

import json
import math
import os

from tunesmith.tune.trainable.trainable import Trainable


class MyTrainableClass(Trainable):
    """A trainable whose reward climbs with each step towards ``config["height"]``, the more slowly
    the larger ``config["width"]``: ``episode_reward_mean = tanh(step / width) * height``.

    Its checkpoints hold the step reached, so schedulers that pause, resume and exploit
    (HyperBand, PBT) can be tried on it in seconds.

    Example:
        >>> trainable = MyTrainableClass(config={"width": 10, "height": 100})
        >>> round(trainable.train()["episode_reward_mean"], 2)
        9.97
        >>> trainable.stop()
    """

    def setup(self, config: dict) -> None:
        self.timestep = 0

    def step(self) -> dict:
        self.timestep += 1
        width = float(self.config.get("width", 1)) or 1.0
        reward = math.tanh(self.timestep / width) * float(self.config.get("height", 1))
        return {"episode_reward_mean": reward, "timesteps_this_iter": 1}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"timestep": self.timestep}, f)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.timestep = json.load(f)["timestep"]
