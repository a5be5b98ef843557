"""Lazy attribute access for the public namespaces, so that ``import tunesmith.tune`` stays cheap."""
from __future__ import annotations

import importlib
from typing import Any


def lazy_getattr(module_globals: dict, table: dict[str, str], name: str) -> Any:
    """Resolves ``name`` from ``table`` (name -> "module:attribute") and caches it."""
    target = table.get(name)
    if target is None:
        raise AttributeError(f"module {module_globals['__name__']!r} has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    module_globals[name] = value
    return value
