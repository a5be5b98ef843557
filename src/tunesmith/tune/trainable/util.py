"""Wrappers around a trainable: ``with_parameters`` (large objects) and ``with_resources``.

Both return a new trainable and leave the one given untouched; they compose
in either order.
"""
from __future__ import annotations

import functools
import inspect
import uuid
import weakref
from typing import Any, Callable

# Attribute names carried by wrapped trainables.
RESOURCES_ATTR = "_tunesmith_resources"
PARAMETERS_ATTR = "_tunesmith_parameters"


# -- with_parameters ------------------------------------------------------------------------------

_live_stores: "weakref.WeakValueDictionary[str, _ParameterStore]" = weakref.WeakValueDictionary()


class _ParameterStore:
    """Objects passed to ``with_parameters``, pickled once.

    Pickling a store copies its ``payload`` bytes, never the objects again; each
    trial unpickles its own objects from them.

    Attributes:
        payload: The pickled keyword arguments.
        names: Their names.
        load_count: How many times this process unpickled the payload (once per trial).
    """

    def __init__(self, params: dict[str, Any]):
        from tunesmith._internal.pickling import dumps

        try:
            self.payload: bytes = dumps(params, protocol=5)
        except Exception as exc:
            raise TypeError(
                f"with_parameters() could not serialise the objects {sorted(params)}: {exc}"
            ) from exc
        self.names = tuple(params)
        self.key = uuid.uuid4().hex
        self.load_count = 0
        self._owner = self
        _live_stores[self.key] = self

    def get(self) -> dict[str, Any]:
        """The keyword arguments, unpickled afresh for each trial (each call).

        As on Ray, every trial gets objects of its own: a trial that changes one
        (trains a model passed in, appends to a list) must not change what the
        next trial in the same worker process receives.
        """
        import cloudpickle

        owner = self._owner
        owner.load_count += 1
        return cloudpickle.loads(owner.payload)

    def __getstate__(self) -> dict[str, Any]:
        return {"payload": self.payload, "names": self.names, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.payload = state["payload"]
        self.names = state["names"]
        self.key = state["key"]
        self.load_count = 0
        # Copies of one store in a process share one payload (and its load count).
        existing = _live_stores.get(self.key)
        if existing is None:
            _live_stores[self.key] = self
            self._owner = self
        else:
            self._owner = existing

    def __len__(self) -> int:
        return len(self.payload)

    def __repr__(self) -> str:
        return f"_ParameterStore(names={list(self.names)}, bytes={len(self.payload)})"


def _accepts(fn: Callable, names: tuple[str, ...]) -> list[str]:
    """Names among ``names`` that ``fn`` cannot take as keyword arguments."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return []
    ok = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return [n for n in names if n not in ok]


def _resolve(trainable: Any, what: str) -> Any:
    if isinstance(trainable, str):
        from tunesmith.tune.registry import get_trainable_cls

        return get_trainable_cls(trainable)
    return trainable


def _is_trainable_class(obj: Any) -> bool:
    from tunesmith.tune.trainable.trainable import Trainable

    return inspect.isclass(obj) and issubclass(obj, Trainable)


def with_parameters(trainable: Callable | type, **kwargs: Any) -> Callable | type:
    """Passes large objects to a trainable without putting them in the config.

    The objects are serialised once, when ``with_parameters`` is called, and
    shipped to each worker process once; each trial receives its own copy of
    them (as on Ray), so a trial that changes one does not change the next's.

    A function trainable receives them as keyword arguments:
    ``def train_fn(config, data=None)``. A class trainable receives them in
    ``setup``: ``def setup(self, config, data=None)``.

    Args:
        trainable: A function trainable or a ``tune.Trainable`` subclass.
        **kwargs: The objects to pass.

    Returns:
        A trainable of the same kind and name.

    Example:
        >>> import numpy as np
        >>> from tunesmith import tune
        >>> def train_fn(config, data=None):
        ...     return {"total": float(data.sum()) * config["scale"]}
        >>> wrapped = tune.with_parameters(train_fn, data=np.ones(1000))
        >>> wrapped({"scale": 2})
        {'total': 2000.0}
    """
    trainable = _resolve(trainable, "with_parameters")
    if not kwargs:
        return trainable  # as on Ray: nothing to pass (a dict of optional objects that is empty)
    if _is_trainable_class(trainable):
        target = trainable.setup
        from tunesmith.tune.trainable.trainable import Trainable

        if trainable.setup is Trainable.setup:
            if trainable._setup is Trainable._setup:
                raise TypeError(
                    f"with_parameters({trainable.__name__}, ...): {trainable.__name__} defines no setup() "
                    "to receive the objects; define setup(self, config, "
                    f"{', '.join(k + '=None' for k in kwargs)})."
                )
            target = trainable._setup
        missing = _accepts(target, tuple(kwargs))
        if missing:
            raise TypeError(
                f"with_parameters({trainable.__name__}, ...): {trainable.__name__}.setup() takes no "
                f"argument named {', '.join(map(repr, missing))}; define it as "
                f"setup(self, config, {', '.join(m + '=None' for m in missing)})."
            )
        return _wrap_class_with_parameters(trainable, _ParameterStore(kwargs))
    if inspect.isclass(trainable) or not callable(trainable):
        raise TypeError(
            "with_parameters() takes a function trainable or a tune.Trainable subclass, "
            f"got {getattr(trainable, '__name__', type(trainable).__name__)}."
        )
    missing = _accepts(trainable, tuple(kwargs))
    if missing:
        name = getattr(trainable, "__name__", repr(trainable))
        raise TypeError(
            f"with_parameters({name}, ...): {name}() takes no argument named "
            f"{', '.join(map(repr, missing))}; add it to the function's parameters."
        )
    return _wrap_function_with_parameters(trainable, _ParameterStore(kwargs))


def _wrap_function_with_parameters(fn: Callable, store: _ParameterStore) -> Callable:
    def inner(*args, **kw):
        return fn(*args, **kw, **store.get())

    functools.update_wrapper(inner, fn)
    try:
        sig = inspect.signature(fn)
        inner.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[p for n, p in sig.parameters.items() if n not in store.names]
        )
    except (TypeError, ValueError):
        pass
    setattr(inner, PARAMETERS_ATTR, store)
    return inner


def _wrap_class_with_parameters(cls: type, store: _ParameterStore) -> type:
    class _WithParameters(cls):  # type: ignore[misc, valid-type]
        def setup(self, config, *args, **kw):
            params = getattr(type(self), PARAMETERS_ATTR).get()
            return super().setup(config, *args, **kw, **params)

    setattr(_WithParameters, PARAMETERS_ATTR, store)
    _WithParameters.__name__ = cls.__name__
    _WithParameters.__qualname__ = cls.__qualname__
    _WithParameters.__doc__ = cls.__doc__
    return _WithParameters


# -- with_resources -------------------------------------------------------------------------------

def _validate_resources(resources: Any, where: str) -> None:
    """Raises a clear error for a resource request that can never work."""
    from tunesmith.tune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory

    if isinstance(resources, PlacementGroupFactory) or hasattr(resources, "as_placement_group_factory"):
        return
    if isinstance(resources, dict):
        for key, value in resources.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: resource names must be strings, got {key!r}.")
            if key == "custom_resources":
                if not isinstance(value, dict):
                    raise TypeError(f"{where}: 'custom_resources' must be a dict, got {type(value).__name__}.")
                continue
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < float("inf")):  # (NaN is neither)
                raise ValueError(
                    f"{where}: resource {key!r} must be a non-negative number, got {value!r}."
                )
        resource_dict_to_pg_factory(resources)
        return
    if callable(resources) and not inspect.isclass(resources):
        return
    raise TypeError(
        f"{where}: resources must be a dict such as {{'cpu': 2, 'gpu': 1}}, a PlacementGroupFactory, "
        f"a ScalingConfig, or a callable config -> one of these; got {type(resources).__name__}."
    )


def with_resources(trainable: Callable | type, resources: Any) -> Callable | type:
    """Attaches the resources each trial of ``trainable`` needs.

    Args:
        trainable: A function trainable or a ``tune.Trainable`` subclass.
        resources: A dict (``{"cpu": 2, "gpu": 1, "memory": 2**30}``), a
            ``PlacementGroupFactory``, a ``ScalingConfig``, or a callable that
            takes the trial's config (readable as ``spec.config.x``) and
            returns one of these.

    Returns:
        A trainable of the same kind and name carrying the request.

    Example:
        >>> from tunesmith import tune
        >>> def train_fn(config):
        ...     return {"score": 1}
        >>> wrapped = tune.with_resources(train_fn, {"cpu": 2})
        >>> from tunesmith.tune.trainable.util import get_resources_request
        >>> get_resources_request(wrapped)
        {'cpu': 2}
    """
    trainable = _resolve(trainable, "with_resources")
    name = getattr(trainable, "__name__", type(trainable).__name__)
    where = f"with_resources({name}, ...)"
    if hasattr(trainable, "as_trainable") and not inspect.isfunction(trainable):
        raise ValueError(
            f"{where}: a Trainer's resources are set with its ScalingConfig, not with tune.with_resources."
        )
    _validate_resources(resources, where)
    if _is_trainable_class(trainable):
        return _wrap_class_with_resources(trainable, resources)
    if inspect.isclass(trainable) or not callable(trainable):
        raise TypeError(
            f"{where}: the trainable must be a function or a tune.Trainable subclass, got {type(trainable).__name__}."
        )

    def inner(*args, **kw):
        return trainable(*args, **kw)

    functools.update_wrapper(inner, trainable)
    setattr(inner, RESOURCES_ATTR, resources)
    return inner


def _wrap_class_with_resources(cls: type, resources: Any) -> type:
    class _WithResources(cls):  # type: ignore[misc, valid-type]
        @classmethod
        def default_resource_request(klass, config):
            from tunesmith.tune.execution.placement_groups import to_pg_factory

            return to_pg_factory(getattr(klass, RESOURCES_ATTR), config)

    setattr(_WithResources, RESOURCES_ATTR, resources)
    _WithResources.__name__ = cls.__name__
    _WithResources.__qualname__ = cls.__qualname__
    _WithResources.__doc__ = cls.__doc__
    return _WithResources


def _legacy_resources_to_dict(obj: Any) -> Any:
    """Converts an object with ``cpu``/``gpu``/... attributes (Ray's older ``Resources``) to a dict."""
    if obj is None or isinstance(obj, dict) or hasattr(obj, "as_placement_group_factory"):
        return obj
    from tunesmith.tune.execution.placement_groups import PlacementGroupFactory

    if isinstance(obj, PlacementGroupFactory):
        return obj
    if hasattr(obj, "_asdict"):
        return {k: v for k, v in obj._asdict().items() if v}
    fields = ("cpu", "gpu", "memory", "object_store_memory", "extra_cpu", "extra_gpu", "custom_resources")
    if any(hasattr(obj, f) for f in fields):
        return {f: getattr(obj, f) for f in fields if getattr(obj, f, None)}
    return obj


def get_resources_request(trainable: Any) -> Any:
    """The resource request attached to a trainable, or None for the default.

    Returns what ``with_resources`` attached or, for a class that overrides
    ``default_resource_request``, a callable of the config that asks it. The
    result can be turned into a ``PlacementGroupFactory`` with
    ``tunesmith.tune.execution.placement_groups.to_pg_factory(request, config)``.
    """
    request = getattr(trainable, RESOURCES_ATTR, None)
    if request is not None:
        return request
    if _is_trainable_class(trainable):
        from tunesmith.tune.trainable.trainable import Trainable

        method = trainable.default_resource_request
        if getattr(method, "__func__", None) is not Trainable.default_resource_request.__func__:
            def request_for(config):
                return _legacy_resources_to_dict(method(dict(config) if config is not None else {}))

            return request_for
    return None
