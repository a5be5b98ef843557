"""Pickling user code by value with its source file names kept.

cloudpickle (3.1 and later) replaces the file name of every function it
pickles by value with ``"<dynamic-code>"``, so a trial's traceback would
name no file and show no source line. :func:`dumps` keeps the names: the
worker's traceback then points at the user's script, line and code, as in
the driver.
"""
from __future__ import annotations

import io
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
        import collections

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


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    """``cloudpickle.dumps(obj)``, with the file names of the code it pickles by value kept."""
    import cloudpickle

    pickler_class = _pickler_class()
    if pickler_class is None:
        return cloudpickle.dumps(obj, protocol=protocol)
    buffer = io.BytesIO()
    pickler_class(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()
