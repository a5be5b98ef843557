"""tunesmith: hyperparameter tuning and experiment execution with the Ray Tune API.

``from tunesmith import tune, train`` gives the same names as ``from ray import
tune, train``. Submodules are imported on first use so that ``import
tunesmith`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("tune", "train", "air")


def init(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict | None = None, memory: float | None = None, **kwargs: Any) -> None:
    """Sets the resources local runs hand out to trials, like ``ray.init``.

    Args:
        address: Only ``None`` or ``"local"``: trials run on this machine. Connecting
            to a cluster is not supported yet, so any other address is an error
            rather than being ignored.
        num_cpus: CPUs (default: all cores).
        num_gpus: GPUs (default: those detected).
        resources: Custom resources, e.g. ``{"license": 2}``.
        memory: Bytes of memory.

    Example:
        >>> import tunesmith
        >>> tunesmith.init(address="ray://head:10001")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: tunesmith.init(address='ray://head:10001'): tunesmith does not connect to a cluster yet; ...
    """
    if address not in (None, "local"):
        raise ValueError(
            f"tunesmith.init(address={address!r}): tunesmith does not connect to a cluster yet; "
            "trials run on this machine. Remove the `address` argument (or pass address='local'), "
            "and set what this machine offers with num_cpus=..., num_gpus=..., resources=...."
        )
    from tunesmith._internal.resources import init as _init

    _init(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources, memory=memory, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"tunesmith.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
