"""Nested dicts: reading fields by their ``"a/b"`` names, merging one dict into another."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lookup(d: Mapping, key: str, default: Any = None) -> Any:
    """``d[key]``, or the nested value for a ``"a/b"`` key; ``default`` when absent.

    Example:
        >>> lookup({"info": {"loss": 0.5}}, "info/loss")
        0.5
    """
    if key in d:
        return d[key]
    if "/" not in key:
        return default
    node: Any = d
    for part in key.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def deep_update(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s values; nested dicts are merged, not replaced (as on Ray).

    Neither argument is changed.

    Example:
        >>> deep_update({"opt": {"lr": 1.0, "momentum": 0.9}, "epochs": 3}, {"opt": {"lr": 0.1}})
        {'opt': {'lr': 0.1, 'momentum': 0.9}, 'epochs': 3}
    """
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out
