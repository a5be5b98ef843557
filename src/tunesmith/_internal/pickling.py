"""Pickling user code by value with its source file names kept.

cloudpickle (3.1 and later) replaces the file name of every function it
pickles by value with ``"<dynamic-code>"``, so a trial's traceback would
name no file and show no source line. :func:`dumps` keeps the names: the
worker's traceback then points at the user's script, line and code, as in
the driver.
"""
from __future__ import annotations

import collections
import io
import sys
import types
from typing import Any


def _code_with_filename(args: tuple, filename: str) -> types.CodeType:
    return types.CodeType(*args).replace(co_filename=filename)


def _reduce_code(code: types.CodeType):
    from cloudpickle import cloudpickle as _impl

    constructor, args = _impl._code_reduce(code)
    if constructor is not types.CodeType:  # another layout: keep cloudpickle's own
        return constructor, args
    return _code_with_filename, (args, code.co_filename)


_PICKLER: Any = None


def _pickler_class() -> Any:
    """cloudpickle's Pickler with the code reducer above (None where cloudpickle has no such reducer)."""
    global _PICKLER
    if _PICKLER is None:
        import cloudpickle
        from cloudpickle import cloudpickle as _impl

        if not hasattr(_impl, "_code_reduce") or not hasattr(cloudpickle.Pickler, "dispatch_table"):
            _PICKLER = False
        else:
            # The table is read when a pickler is made, so it is set on the class.
            _PICKLER = type("FilenameKeepingPickler", (cloudpickle.Pickler,), {
                "dispatch_table": collections.ChainMap({types.CodeType: _reduce_code},
                                                       cloudpickle.Pickler.dispatch_table),
            })
    return _PICKLER or None


_RAY_PICKLER: tuple[dict, Any] | None = None


def _ray_aware(pickler_class: Any) -> Any:
    """``pickler_class`` with Ray's reducers added, when this process is connected to Ray.

    A Ray object reference (or actor handle) pickled on its own names no owner,
    and ``ray.get`` of it in a trial's actor waits forever; Ray's reducers keep
    the owner, as Ray does for references captured by a task's function.
    """
    global _RAY_PICKLER
    ray = sys.modules.get("ray")
    if ray is None or not getattr(ray, "is_initialized", lambda: False)():
        return pickler_class
    try:
        from ray import cloudpickle as ray_cloudpickle

        # Ray registers its reducers when its serialization context is made (again after each ray.init).
        ray._private.worker.global_worker.get_serialization_context()
        reducers = {k: v for k, v in ray_cloudpickle.CloudPickler.dispatch.items()
                    if (getattr(k, "__module__", "") or "").startswith("ray")}
    except Exception:
        return pickler_class
    if _RAY_PICKLER is None or _RAY_PICKLER[0] != reducers:
        _RAY_PICKLER = (reducers, type("RayAwarePickler", (pickler_class,), {
            "dispatch_table": collections.ChainMap(reducers, pickler_class.dispatch_table),
        }))
    return _RAY_PICKLER[1]


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    """``cloudpickle.dumps(obj)``, with the file names of the code it pickles by value kept.

    Ray's object references and actor handles keep their owner when this process is connected to Ray.
    """
    import cloudpickle

    pickler_class = _pickler_class()
    if pickler_class is None:
        return cloudpickle.dumps(obj, protocol=protocol)
    pickler_class = _ray_aware(pickler_class)
    buffer = io.BytesIO()
    pickler_class(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()
