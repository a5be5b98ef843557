"""Turning results and configs into JSON-safe data."""
from __future__ import annotations

import math
import numbers
from typing import Any


# Values JSON takes as they are (exact types: subclasses go the long way, as before).
_PLAIN = frozenset((str, int, float, bool, type(None)))


def to_jsonable(value: Any) -> Any:
    """Returns ``value`` with every part JSON serialisable.

    Numpy scalars and arrays become Python numbers and lists; NaN and infinity
    stay floats (Python's json writes them as ``NaN``/``Infinity``); anything
    else unknown becomes its ``repr``.
    """
    # Results, configs and checkpoint metrics are plain dicts of plain values: those are
    # copied without a call per value (experiment-state snapshots convert thousands of them).
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {(k if type(k) is str else str(k)): (v if type(v) in _PLAIN else to_jsonable(v))
                for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else to_jsonable(v) for v in value]
    return _other_to_jsonable(value)


def is_json_exact(value: Any) -> bool:
    """Whether ``value`` reads back from JSON as it is (dicts with text keys, lists, plain values).

    Example:
        >>> is_json_exact({"lr": 0.1, "layers": [32, 64]}), is_json_exact({"shape": (1, 2)})
        (True, False)
    """
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is dict:
        return all(type(k) is str and is_json_exact(v) for k, v in value.items())
    if kind is list:
        return all(is_json_exact(v) for v in value)
    return False


def with_objects_from(saved: Any, pickled: Any) -> Any:
    """The config ``saved`` (its JSON form, as an experiment state holds it), with the values JSON
    keeps only as text (objects, arrays, tuples) taken from ``pickled`` (the config as the trial's
    ``params.pkl`` holds it).

    The pickle is written when a trial starts, so it can be newer than the state (a trial that PBT
    gave a new config after the state was saved): plain values (numbers, text) come from the state.

    Example:
        >>> with_objects_from({"lr": 0.1, "shape": [1, 2]}, {"lr": 1.0, "shape": (1, 2)})
        {'lr': 0.1, 'shape': (1, 2)}
    """
    if type(pickled) in _PLAIN:
        return saved
    if type(saved) is dict and isinstance(pickled, dict):
        by_text = {(k if type(k) is str else str(k)): k for k in pickled}
        return {(by_text.get(k, k)): with_objects_from(v, pickled[by_text[k]]) if k in by_text else v
                for k, v in saved.items()}
    if to_jsonable(pickled) == saved:
        return pickled  # an array, a tuple... as it was
    if type(saved) is list and isinstance(pickled, (list, tuple)) and len(saved) == len(pickled):
        merged = [with_objects_from(a, b) for a, b in zip(saved, pickled)]
        return tuple(merged) if isinstance(pickled, tuple) else merged
    if type(saved) is str and not is_json_exact(pickled):
        return pickled  # an object the state holds as its text (its repr differs once unpickled)
    return saved


def _other_to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if hasattr(value, "path") and type(value).__name__ == "Checkpoint":
        return value.path
    if callable(value):
        return getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or repr(value)
    return repr(value)


def is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
