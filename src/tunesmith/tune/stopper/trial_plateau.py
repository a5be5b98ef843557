"""Stop a trial when its metric stops changing."""
from __future__ import annotations

import math
import numbers
from collections import defaultdict, deque
from typing import Any

from tunesmith.tune.stopper.stopper import Stopper
from tunesmith.tune.utils.nested import lookup


class TrialPlateauStopper(Stopper):
    """Stops a trial once its last ``num_results`` values of ``metric`` have plateaued.

    A trial has plateaued when the standard deviation of its last
    ``num_results`` values is below ``std``. No trial stops before it has
    reported ``grace_period`` results. With ``metric_threshold`` set, a trial
    only stops on a plateau that is at least as good as the threshold (below
    it for ``mode="min"``, above it for ``mode="max"``).

    Args:
        metric: The metric to watch.
        std: The standard deviation below which the values count as a plateau.
        num_results: How many of the latest results to consider (>= 1).
        grace_period: Smallest number of results before a trial may stop.
        metric_threshold: Optional level the plateau must reach.
        mode: ``"min"`` or ``"max"``; required with ``metric_threshold``.

    Example:
        >>> from tunesmith.tune.stopper import TrialPlateauStopper
        >>> stopper = TrialPlateauStopper("loss", num_results=3, grace_period=3)
        >>> [stopper("t1", {"loss": 0.5}) for _ in range(4)]
        [False, False, True, True]
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: float | None = None,
        mode: str | None = None,
    ):
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"TrialPlateauStopper(metric={metric!r}): metric must be a non-empty string.")
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or std < 0:
            raise ValueError(f"TrialPlateauStopper(std={std!r}): std must be a number >= 0.")
        if isinstance(num_results, bool) or not isinstance(num_results, numbers.Integral) or num_results < 1:
            raise ValueError(
                f"TrialPlateauStopper(num_results={num_results!r}): num_results must be an integer >= 1."
            )
        if isinstance(grace_period, bool) or not isinstance(grace_period, numbers.Integral) or grace_period < 0:
            raise ValueError(
                f"TrialPlateauStopper(grace_period={grace_period!r}): grace_period must be an integer >= 0."
            )
        if mode not in (None, "min", "max"):
            raise ValueError(f"TrialPlateauStopper(mode={mode!r}): mode must be 'min', 'max' or None.")
        if metric_threshold is not None:
            if isinstance(metric_threshold, bool) or not isinstance(metric_threshold, numbers.Real):
                raise ValueError(
                    f"TrialPlateauStopper(metric_threshold={metric_threshold!r}): the threshold must be a number."
                )
            if mode is None:
                raise ValueError(
                    "TrialPlateauStopper(metric_threshold=...) needs mode='min' or mode='max' to know "
                    "on which side of the threshold a plateau counts."
                )
        self._metric = metric
        self._std = float(std)
        self._num_results = int(num_results)
        self._grace_period = int(grace_period)
        self._metric_threshold = metric_threshold
        self._mode = mode
        self._iter: defaultdict[str, int] = defaultdict(int)
        self._trial_results: dict[str, deque] = {}

    def _forget_trial(self, trial_id: str) -> None:
        """A trial restarted from scratch (``Tuner.restore(restart_errored=True)``) starts over."""
        self._iter.pop(trial_id, None)
        self._trial_results.pop(trial_id, None)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = lookup(result, self._metric)  # "a/b" names a nested metric
        if value is None or isinstance(value, bool):
            return False
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
        window = self._trial_results.get(trial_id)
        if window is None:
            window = self._trial_results[trial_id] = deque(maxlen=self._num_results)
        window.append(value)
        self._iter[trial_id] += 1

        if self._iter[trial_id] < self._grace_period or len(window) < self._num_results:
            return False
        if self._metric_threshold is not None:
            if self._mode == "min" and value > self._metric_threshold:
                return False
            if self._mode == "max" and value < self._metric_threshold:
                return False
        mean = sum(window) / len(window)
        std = math.sqrt(sum((v - mean) ** 2 for v in window) / len(window))
        return std < self._std

    def stop_all(self) -> bool:
        return False
