"""``ray.train.trainer``'s import path for :class:`BaseTrainer` (seed 000 names ``ray.train.trainer.BaseTrainer.fit``)."""
from __future__ import annotations

from tunesmith.train._result import TrainingFailedError
from tunesmith.train.base_trainer import BaseTrainer

__all__ = ["BaseTrainer", "TrainingFailedError"]
