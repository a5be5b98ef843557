"""Stop each trial after a fixed number of results."""
from __future__ import annotations

import numbers
from collections import defaultdict
from typing import Any

from tunesmith.tune.stopper.stopper import Stopper


class MaximumIterationStopper(Stopper):
    """Stops each trial after it has reported ``max_iter`` results.

    The count is kept by the stopper, per trial id, so it counts the results
    this stopper has seen.

    Args:
        max_iter: Number of results after which a trial stops (>= 1).

    Example:
        >>> from tunesmith.tune.stopper import MaximumIterationStopper
        >>> stopper = MaximumIterationStopper(max_iter=2)
        >>> [stopper("t1", {}) for _ in range(3)]
        [False, True, True]
    """

    def __init__(self, max_iter: int):
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
            raise ValueError(f"MaximumIterationStopper(max_iter={max_iter!r}): max_iter must be an integer >= 1.")
        self._max_iter = int(max_iter)
        self._iter: defaultdict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self._iter[trial_id] += 1
        return self._iter[trial_id] >= self._max_iter

    def _forget_trial(self, trial_id: str) -> None:
        """A trial restarted from scratch (``Tuner.restore(restart_errored=True)``) counts from 0."""
        self._iter.pop(trial_id, None)

    def stop_all(self) -> bool:
        return False
