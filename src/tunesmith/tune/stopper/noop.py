"""A stopper that never stops anything."""
from __future__ import annotations

from typing import Any

from tunesmith.tune.stopper.stopper import Stopper


class NoopStopper(Stopper):
    """Never stops a trial or the experiment.

    Example:
        >>> from tunesmith.tune.stopper import NoopStopper
        >>> NoopStopper()("t1", {"loss": 0.0})
        False
    """

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False
