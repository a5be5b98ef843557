"""Experiments and trials: ``Experiment`` (the older experiment description) and ``Trial``.

Example:
    >>> from tunesmith.tune.experiment import Experiment, Trial
    >>> Trial("my_trainable", config={"lr": 0.1}, trial_id="abc_00000").config
    {'lr': 0.1}
"""
from __future__ import annotations

from typing import Any

from tunesmith._lazy import lazy_getattr

_LAZY = {
    "Experiment": "tunesmith.tune.experiment.experiment:Experiment",
    "Trial": "tunesmith.tune.experiment.trial:Trial",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
