"""Stop the whole experiment when the best results stop changing."""
from __future__ import annotations

import bisect
import math
import numbers
from typing import Any

from tunesmith.tune.stopper.stopper import Stopper
from tunesmith.tune.utils.nested import lookup

_MISSING = object()


def _pstdev(values: list[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / n)


class ExperimentPlateauStopper(Stopper):
    """Stops the experiment once the ``top`` best results have plateaued.

    The stopper keeps the ``top`` best values of ``metric`` over all results of
    all trials. The experiment has plateaued when it holds ``top`` values whose
    standard deviation is at most ``std``; it stops once ``patience`` results
    in a row found it so (at the first such result for ``patience`` 0 or 1).

    Args:
        metric: The metric to watch.
        std: Largest standard deviation of the top values that counts as a plateau.
        top: How many best values to consider (>= 2).
        mode: ``"min"`` or ``"max"``; which values are best.
        patience: How many results in a row must find the plateau.

    Example:
        >>> from tunesmith.tune.stopper import ExperimentPlateauStopper
        >>> stopper = ExperimentPlateauStopper("loss", top=3, mode="min")
        >>> [stopper("t1", {"loss": 1.0}) for _ in range(3)]
        [False, False, True]
    """

    def __init__(self, metric: str, std: float = 0.001, top: int = 10, mode: str = "min", patience: int = 0):
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"ExperimentPlateauStopper(metric={metric!r}): metric must be a non-empty string.")
        if mode not in ("min", "max"):
            raise ValueError(f"ExperimentPlateauStopper(mode={mode!r}): mode must be 'min' or 'max'.")
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or std < 0:
            raise ValueError(f"ExperimentPlateauStopper(std={std!r}): std must be a number >= 0.")
        if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 2:
            raise ValueError(f"ExperimentPlateauStopper(top={top!r}): top must be an integer >= 2.")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"ExperimentPlateauStopper(patience={patience!r}): patience must be an integer >= 0.")
        self._metric = metric
        self._mode = mode
        self._std = float(std)
        self._top = int(top)
        self._patience = int(patience)
        # Kept sorted best-first; values are negated in max mode so "smaller is better" always.
        self._top_values: list[float] = []
        self._iterations = 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = lookup(result, self._metric, _MISSING)  # "a/b" names a nested metric
        if value is _MISSING:
            # As on Ray, a metric no result has (a misspelt name) is an error, not a plateau never seen.
            reported = sorted(str(k) for k in result if k != "config")
            raise ValueError(
                f"ExperimentPlateauStopper(metric={self._metric!r}): trial {trial_id} reported a result "
                f"without it. The result had: {reported}."
            )
        if value is not None and not isinstance(value, bool):
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = None
        if value is not None and not math.isnan(value):
            key = value if self._mode == "min" else -value
            top = self._top_values
            if len(top) < self._top or key < top[-1]:
                bisect.insort(top, key)
                if len(top) > self._top:
                    top.pop()
            if self.has_plateaued():
                self._iterations += 1
            else:
                self._iterations = 0
        return self.stop_all()

    def has_plateaued(self) -> bool:
        """True if the ``top`` best values' standard deviation is at most ``std``."""
        return len(self._top_values) == self._top and _pstdev(self._top_values) <= self._std

    def stop_all(self) -> bool:
        return self.has_plateaued() and self._iterations >= self._patience
