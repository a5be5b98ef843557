"""Re-specified values of a param space on restore.

``Tuner.restore(path, trainable, param_space=...)`` may give the param space
again with new objects in place of ones that do not outlive a session (object
references on a cluster, large models re-created by the script). The space
must keep its structure; the trials of the restored experiment, and those it
has yet to create, then use the new objects:

- a constant takes the new constant;
- a ``grid_search`` or ``tune.choice`` value takes the new entry at the same
  position as the one the trial was given;
- sampled values (``tune.uniform`` and friends, ``tune.sample_from``) stay.

Example:
    >>> from tunesmith import tune
    >>> old = {"model": tune.grid_search(["m1", "m2"]), "lr": tune.uniform(0, 1), "data": "d-old"}
    >>> new = {"model": tune.grid_search(["M1", "M2"]), "lr": tune.uniform(0, 1), "data": "d-new"}
    >>> respecify_config({"model": "m2", "lr": 0.5, "data": "d-old"}, old, new)
    {'model': 'M2', 'lr': 0.5, 'data': 'd-new'}
"""
from __future__ import annotations

from typing import Any

from tunesmith.tune.search.sample import Categorical, Domain, Function, is_grid_search

_NOT_FOUND = object()


def respecify_config(config: dict, old_space: dict, new_space: dict) -> dict:
    """A copy of ``config`` (made from ``old_space``) with ``new_space``'s values where the space fixes them."""
    return _value(config, old_space, new_space)


def _value(value: Any, old: Any, new: Any) -> Any:
    if is_grid_search(new) or isinstance(new, Categorical):
        old_options, new_options = _options(old), _options(new)
        if old_options is None or new_options is None or len(old_options) != len(new_options):
            return value
        index = _position(value, old_options)
        if index is None:
            return value
        return _value(value, old_options[index], new_options[index])
    if isinstance(new, (Domain, Function)) or isinstance(old, (Domain, Function)) or is_grid_search(old):
        return value
    if isinstance(new, dict) and isinstance(old, dict) and isinstance(value, dict):
        out = dict(value)
        for key, sub in new.items():
            if key in out and key in old:
                out[key] = _value(out[key], old[key], sub)
        return out
    if isinstance(new, (list, tuple)) and isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)):
        if len(new) != len(old) or len(value) != len(new):
            return value
        items = [_value(v, o, n) for v, o, n in zip(value, old, new)]
        return type(value)(items) if isinstance(value, list) else tuple(items)
    return new


def _options(space: Any) -> list | None:
    if is_grid_search(space):
        options = space["grid_search"]
        return list(options) if isinstance(options, (list, tuple)) else None
    if isinstance(space, Categorical):
        return list(space.categories)
    return None


def _position(value: Any, options: list) -> int | None:
    """Which of ``options`` the trial's ``value`` is a copy of: the same object, an equal one, or the same pickle."""
    for i, option in enumerate(options):
        if option is value:
            return i
    for i, option in enumerate(options):
        if _equal(option, value):
            return i
    pickled = _pickled(value)
    if pickled is None:
        return None
    for i, option in enumerate(options):
        if _pickled(option) == pickled:
            return i
    return None


def _equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b) or type(a).__eq__ is object.__eq__:
        return False
    try:
        return (a == b) is True
    except Exception:
        return False


def _pickled(value: Any) -> bytes | None:
    from tunesmith._internal.pickling import dumps

    try:
        return dumps(value)
    except Exception:
        return None
