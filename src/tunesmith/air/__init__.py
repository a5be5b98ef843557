"""tunesmith.air: the older Ray AIR names (``session``, configs, ``Checkpoint``, ``Result``)."""
from __future__ import annotations

from typing import Any

from tunesmith._lazy import lazy_getattr

_LAZY = {
    "session": "tunesmith.air.session:",
    "Checkpoint": "tunesmith.train._checkpoint:Checkpoint",
    "Result": "tunesmith.train._result:Result",
    "RunConfig": "tunesmith.train._config:RunConfig",
    "CheckpointConfig": "tunesmith.train._config:CheckpointConfig",
    "FailureConfig": "tunesmith.train._config:FailureConfig",
    "ScalingConfig": "tunesmith.train._config:ScalingConfig",
}


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)
