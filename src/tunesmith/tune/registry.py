"""Named trainables and environments: ``register_trainable``, ``register_env``, ``get_trainable_cls``.

A registered name can be passed wherever a trainable is expected
(``Tuner("my_trainable")``, ``tune.run("my_trainable")``).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

TRAINABLE_CLASS = "trainable_class"
ENV_CREATOR = "env_creator"


class _Registry:
    """Objects by category and name, in this process."""

    def __init__(self):
        self._items: dict[str, dict[str, Any]] = {TRAINABLE_CLASS: {}, ENV_CREATOR: {}}

    def register(self, category: str, key: str, value: Any) -> None:
        self._items.setdefault(category, {})[key] = value

    def contains(self, category: str, key: str) -> bool:
        return key in self._items.get(category, {})

    def get(self, category: str, key: str) -> Any:
        return self._items[category][key]

    def names(self, category: str) -> list[str]:
        return sorted(self._items.get(category, {}))

    def unregister(self, category: str, key: str) -> None:
        self._items.get(category, {}).pop(key, None)


_global_registry = _Registry()


def _validate_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what}(name=...) takes a non-empty string, got {name!r}.")


def register_trainable(name: str, trainable: Callable | type, warn: bool = True) -> None:
    """Registers a trainable under a name.

    Args:
        name: Name to refer to the trainable by.
        trainable: A function trainable or a ``tune.Trainable`` subclass.
        warn: Accepted for compatibility.

    Example:
        >>> from tunesmith import tune
        >>> def train_fn(config):
        ...     return {"score": config["x"]}
        >>> tune.register_trainable("my_fn", train_fn)
        >>> from tunesmith.tune.registry import get_trainable_cls
        >>> get_trainable_cls("my_fn") is train_fn
        True
    """
    from tunesmith.tune.trainable.trainable import Trainable

    _validate_name(name, "register_trainable")
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable) and not hasattr(trainable, "as_trainable"):
            raise TypeError(
                f"register_trainable({name!r}, {trainable.__name__}): a class must subclass "
                "tunesmith.tune.Trainable."
            )
    elif not callable(trainable):
        raise TypeError(
            f"register_trainable({name!r}, ...) takes a function or a tune.Trainable subclass, "
            f"got {type(trainable).__name__}."
        )
    _global_registry.register(TRAINABLE_CLASS, name, trainable)


def register_env(name: str, env_creator: Callable[[dict], Any]) -> None:
    """Registers an environment creator ``env_config -> env`` under a name (for RL libraries).

    Example:
        >>> register_env("my_env", lambda env_config: object())
        >>> is_registered("my_env", ENV_CREATOR)
        True
    """
    _validate_name(name, "register_env")
    if not callable(env_creator):
        raise TypeError(
            f"register_env({name!r}, ...) takes a callable env_config -> env, got {type(env_creator).__name__}."
        )
    _global_registry.register(ENV_CREATOR, name, env_creator)


def carried_with(trainable: Any) -> Any:
    """``trainable`` made to bring this process's registered names along when it is pickled.

    Unpickling the result (in a worker) registers them there and gives back ``trainable``
    itself, so that a trial finds what the driver registered (``get_env_creator``,
    ``get_trainable_cls``), as on Ray, whose registry reaches every process. Entries that
    cannot be pickled stay behind.
    """
    from tunesmith._internal.pickling import dumps

    entries = {category: dict(items) for category, items in _global_registry._items.items() if items}
    if not entries:
        return trainable
    try:
        dumps(entries)  # the common case: all of them travel
    except Exception:  # only those that can be pickled go (each tried on its own)
        for items in entries.values():
            for key, value in list(items.items()):
                try:
                    if value is not trainable:
                        dumps(value)
                except Exception:
                    del items[key]
    return _Carrier(trainable, entries)


class _Carrier:
    def __init__(self, trainable: Any, entries: dict[str, dict[str, Any]]):
        self.trainable, self.entries = trainable, entries

    def __reduce__(self):
        return _registered_then, (self.entries, self.trainable)


def _registered_then(entries: dict[str, dict[str, Any]], trainable: Any) -> Any:
    for category, items in entries.items():
        for key, value in items.items():
            _global_registry.register(category, key, value)
    return trainable


def is_registered(name: str, category: str = TRAINABLE_CLASS) -> bool:
    """Whether ``name`` is registered (as a trainable by default)."""
    return _global_registry.contains(category, name)


def get_trainable_cls(name: str) -> Any:
    """Returns the trainable registered under ``name``.

    Raises:
        ValueError: if nothing is registered under that name; the message lists the registered names.
    """
    if not _global_registry.contains(TRAINABLE_CLASS, name):
        known = _global_registry.names(TRAINABLE_CLASS)
        raise ValueError(
            f"No trainable is registered under the name {name!r}; registered names: "
            f"{known or 'none'}. Register one with tune.register_trainable(name, trainable)."
        )
    return _global_registry.get(TRAINABLE_CLASS, name)


def get_env_creator(name: str) -> Callable:
    """Returns the environment creator registered under ``name``."""
    if not _global_registry.contains(ENV_CREATOR, name):
        raise ValueError(
            f"No environment is registered under the name {name!r}; registered names: "
            f"{_global_registry.names(ENV_CREATOR) or 'none'}."
        )
    return _global_registry.get(ENV_CREATOR, name)


def trainable_name(trainable: Any) -> str:
    """A readable name of a trainable for experiment and trial names.

    Example:
        >>> def train_fn(config):
        ...     pass
        >>> trainable_name(train_fn), trainable_name("registered_name")
        ('train_fn', 'registered_name')
    """
    if isinstance(trainable, str):
        return trainable
    while isinstance(trainable, functools.partial):
        trainable = trainable.func
    name = getattr(trainable, "__name__", None)
    if not isinstance(name, str) or not name:
        name = type(trainable).__name__ if trainable is not None else "DEFAULT"
    if name == "<lambda>":
        return "lambda"
    return name.strip("<>") or "DEFAULT"
