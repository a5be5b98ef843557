"""Analysis of finished (or running) experiments: ``ExperimentAnalysis``."""
from __future__ import annotations

from typing import Any

from tunesmith._lazy import lazy_getattr

_LAZY = {
    "ExperimentAnalysis": "tunesmith.tune.analysis.experiment_analysis:ExperimentAnalysis",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)
