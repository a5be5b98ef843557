"""Verbosity levels of Tune's console output (``RunConfig(verbose=...)``), as ``ray.tune.utils.log``."""
from __future__ import annotations

from enum import IntEnum


class Verbosity(IntEnum):
    """The ``verbose`` levels: 0 silent, 1 status tables, 2 plus trial starts/ends, 3 plus every result.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.utils.log import Verbosity
        >>> tune.RunConfig(verbose=Verbosity.V1_EXPERIMENT).verbose == 1
        True
    """

    V0_MINIMAL = 0
    V1_EXPERIMENT = 1
    V2_TRIAL_NORM = 2
    V3_TRIAL_DETAILS = 3

    def __int__(self) -> int:
        return self.value


_level = Verbosity.V3_TRIAL_DETAILS


def set_verbosity(level: int | Verbosity) -> None:
    """Sets the verbosity ``has_verbosity`` compares with (a Tuner's run uses its RunConfig's ``verbose``)."""
    global _level
    _level = Verbosity(int(level))


def has_verbosity(level: int | Verbosity) -> bool:
    """Whether the verbosity set with :func:`set_verbosity` is at least ``level``."""
    return int(_level) >= int(level)


__all__ = ["Verbosity", "has_verbosity", "set_verbosity"]
