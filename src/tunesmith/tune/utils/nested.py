"""Reading nested result fields by their ``"a/b"`` names."""
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
