"""A stopper made from a dict of thresholds, as ``RunConfig(stop={...})`` accepts."""
from __future__ import annotations

import numbers
from typing import Any

from tunesmith.tune.stopper.stopper import Stopper
from tunesmith.tune.utils.nested import lookup as _lookup


class DictStopper(Stopper):
    """Stops a trial once any ``result[key] >= threshold``.

    The metrics are assumed to increase. Keys may be any result field,
    auto-filled ones such as ``training_iteration`` or ``time_total_s``
    included; nested fields are named with ``/`` (``"eval/acc"``). A key that
    a result lacks is ignored for that result; :meth:`missing_keys` lets the
    caller check that the keys are reported at all.

    Args:
        criteria: Mapping of result field to numeric threshold.

    Example:
        >>> from tunesmith.tune.stopper.dict_stopper import DictStopper
        >>> stopper = DictStopper({"training_iteration": 10, "mean_accuracy": 0.8})
        >>> stopper("t1", {"training_iteration": 3, "mean_accuracy": 0.85})
        True
    """

    def __init__(self, criteria: dict[str, float]):
        if not isinstance(criteria, dict):
            raise TypeError(f"DictStopper needs a dict of thresholds, got {type(criteria).__name__}.")
        for key, value in criteria.items():
            if not isinstance(key, str):
                raise TypeError(f"stop={{{key!r}: ...}}: each stop key must be a result field name (str).")
            if not isinstance(value, numbers.Real):  # a flag (True) is one, as on Ray
                raise ValueError(
                    f"stop={{{key!r}: {value!r}}}: each stop threshold must be a number, "
                    f"got {type(value).__name__}."
                )
        self._criteria = dict(criteria)
        self._items = tuple(self._criteria.items())

    @property
    def criteria(self) -> dict[str, float]:
        return dict(self._criteria)

    @property
    def keys(self) -> list[str]:
        return list(self._criteria)

    def missing_keys(self, result: dict[str, Any]) -> list[str]:
        """The stop keys that ``result`` does not contain."""
        return [key for key in self._criteria if _lookup(result, key) is None]

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        for key, threshold in self._items:
            value = result.get(key)
            if value is None and "/" in key:
                value = _lookup(result, key)
            if value is None:
                continue
            try:
                if value >= threshold:
                    return True
            except TypeError:
                continue
        return False
