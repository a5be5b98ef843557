"""Stop the whole experiment after a wall-clock budget."""
from __future__ import annotations

import datetime
import numbers
import time
from typing import Any

from tunesmith.tune.stopper.stopper import Stopper


class TimeoutStopper(Stopper):
    """Stops the experiment once ``timeout`` has passed.

    The clock starts at the first time the driver consults the stopper. When
    the experiment is saved and restored, the time already spent counts
    against the budget.

    Args:
        timeout: Seconds (a number > 0) or a ``datetime.timedelta``.

    Example:
        >>> import datetime
        >>> from tunesmith.tune.stopper import TimeoutStopper
        >>> stopper = TimeoutStopper(datetime.timedelta(minutes=30))
        >>> stopper.stop_all()
        False
    """

    def __init__(self, timeout: float | datetime.timedelta):
        if isinstance(timeout, datetime.timedelta):
            seconds = timeout.total_seconds()
        elif isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
            seconds = float(timeout)
        else:
            raise TypeError(
                f"TimeoutStopper(timeout={timeout!r}): timeout must be a number of seconds or a "
                f"datetime.timedelta, got {type(timeout).__name__}."
            )
        if not seconds > 0:
            raise ValueError(f"TimeoutStopper(timeout={timeout!r}): timeout must be greater than 0 seconds.")
        self._timeout_seconds = seconds
        self._budget = seconds
        self._start: float | None = None

    def _check(self) -> bool:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        return now - self._start >= self._budget

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self._check()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._start is not None:
            state["_budget"] = max(0.0, self._budget - (time.monotonic() - self._start))
        state["_start"] = None
        return state
