"""The few Ray core functions that Tune scripts call: ``put``/``get``, ``is_initialized``,
``shutdown`` and ``cluster_resources``, so that ``import tunesmith as ray`` keeps such a script
running.

On this machine an object reference holds its value and travels with what it is part of
(a config, ``tune.with_parameters``), pickled by value; a trial gets the value back with
:func:`get`. With a cluster address (``tunesmith.init(address=...)``) they are Ray's own
functions on that cluster.
"""
from __future__ import annotations

import os
from typing import Any

_initialized = False


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed
        return None


# The working directory when tunesmith was imported. Worker processes can import modules from it
# even after the script or notebook changes directory (Ray's workers see the directory of ray.init).
IMPORT_CWD = _cwd()


class ObjectRef:
    """A value put with :func:`put` on this machine; :func:`get` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: Any):
        self._value = value

    def __reduce__(self):
        return ObjectRef, (self._value,)

    def __repr__(self) -> str:
        return f"ObjectRef({type(self._value).__name__})"


def _cluster():
    """Ray, connected to the cluster tunesmith runs on; None when trials run on this machine."""
    from tunesmith._internal.backend._address import cluster_address

    address = cluster_address()
    if address is None:
        return None
    from tunesmith._internal.backend.ray_backend import connect

    connect(address)
    import ray

    return ray


def put(value: Any) -> Any:
    """Stores ``value`` once and returns a reference to it (``ray.put``).

    Example:
        >>> import tunesmith
        >>> ref = tunesmith.put({"weights": [1, 2, 3]})
        >>> tunesmith.get(ref)
        {'weights': [1, 2, 3]}
    """
    ray = _cluster()
    if ray is not None:
        return ray.put(value)
    return ObjectRef(value)


def get(refs: Any, *, timeout: float | None = None) -> Any:
    """The value of a reference from :func:`put`, or a list of values for a list of references (``ray.get``).

    Raises:
        TypeError: ``refs`` is neither a reference nor a list of them.
    """
    if isinstance(refs, ObjectRef):
        return refs._value
    if isinstance(refs, (list, tuple)):
        if all(isinstance(r, ObjectRef) for r in refs):
            return [r._value for r in refs]
    if _is_ray_object(refs) or (isinstance(refs, (list, tuple)) and any(_is_ray_object(r) for r in refs)):
        import ray

        return ray.get(refs, timeout=timeout)
    raise TypeError(f"tunesmith.get() takes what tunesmith.put() returned (or a list of them), got {refs!r}.")


def _is_ray_object(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module == "ray" or module.startswith("ray.")  # ray.ObjectRef's module is "ray"


def is_initialized() -> bool:
    """Whether :func:`tunesmith.init` was called (and :func:`shutdown` not since), as ``ray.is_initialized``."""
    return _initialized


def shutdown() -> None:
    """Undoes :func:`tunesmith.init`: later runs use this machine's defaults (``ray.shutdown``).

    A connection to a Ray cluster that tunesmith made is closed.
    """
    global _initialized
    from tunesmith._internal import resources
    from tunesmith._internal.backend._address import set_address

    set_address(None)
    resources._overrides.clear()
    _initialized = False
    import sys

    backend = sys.modules.get("tunesmith._internal.backend.ray_backend")
    if backend is not None and backend.made_connection:  # not a connection the user's ray.init made
        backend.made_connection = False
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def cluster_resources() -> dict[str, float]:
    """The resources trials may use: this machine's (after ``tunesmith.init``), or the cluster's.

    Example:
        >>> import tunesmith
        >>> tunesmith.init(num_cpus=2, resources={"license": 1})
        >>> {k: v for k, v in tunesmith.cluster_resources().items() if k in ("CPU", "license")}
        {'CPU': 2.0, 'license': 1.0}
        >>> tunesmith.shutdown()
    """
    ray = _cluster()
    if ray is not None:
        return dict(ray.cluster_resources())
    from tunesmith._internal.resources import detect_resources

    total, _ = detect_resources()
    return {k: v for k, v in total.items() if v}


def available_resources() -> dict[str, float]:
    """The resources free now (``ray.available_resources``): on a cluster, Ray's figure; on this
    machine, outside ``fit()``, the same as :func:`cluster_resources` (other tunesmith experiments
    running here share them as each trial starts).

    Example:
        >>> import tunesmith
        >>> tunesmith.init(num_cpus=2)
        >>> tunesmith.available_resources()["CPU"]
        2.0
        >>> tunesmith.shutdown()
    """
    ray = _cluster()
    if ray is not None:
        return dict(ray.available_resources())
    return cluster_resources()


def _mark_initialized() -> None:
    global _initialized
    _initialized = True
