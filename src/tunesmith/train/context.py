"""``ray.train.context``'s import path for :class:`TrainContext`, what ``train.get_context()`` returns."""
from __future__ import annotations

from tunesmith._internal.session import TrainContext

__all__ = ["TrainContext"]
