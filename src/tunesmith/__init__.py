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

# Ray core's functions that Tune scripts call (``import tunesmith as ray``).
from tunesmith import _core  # noqa: E402
from tunesmith._core import (  # noqa: E402,F401
    ObjectRef,
    available_resources,
    cluster_resources,
    get,
    is_initialized,
    put,
    shutdown,
)


def init(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict | None = None, memory: float | None = None, **kwargs: Any) -> None:
    """Chooses where trials run, like ``ray.init``: this machine, or a Ray cluster.

    Without an address (and without ``TUNESMITH_ADDRESS`` / ``RAY_ADDRESS`` in the
    environment) trials run in worker processes on this machine and Ray is never
    imported. With one, ``Tuner.fit()`` runs each trial as a Ray actor on that
    cluster (install Ray with ``pip install 'tunesmith[ray]'``); the script is
    otherwise unchanged. A script that connected to Ray itself
    (``ray.init(address=...)`` before ``Tuner.fit()``, as Ray Tune's distributed
    runs do) runs its trials on that cluster too, unless ``address="local"``.

    Args:
        address: ``None`` (the environment decides, else this machine), ``"local"``
            (this machine, whatever the environment says), ``"auto"`` (the Ray
            cluster this machine belongs to), ``"ray://host:10001"`` (Ray Client)
            or ``"host:port"`` of a Ray head node.
        num_cpus: CPUs local runs hand out (default: all cores).
        num_gpus: GPUs local runs hand out (default: those detected).
        resources: Custom resources of local runs, e.g. ``{"license": 2}``.
        memory: Bytes of memory local runs hand out.

    A cluster's nodes declare their own resources (``ray start --num-cpus ...
    --resources ...``), so ``num_cpus``, ``num_gpus``, ``resources`` and ``memory``
    only apply to local runs.

    Example:
        >>> import tunesmith
        >>> tunesmith.init(num_cpus=2)  # trials run here, on at most 2 CPUs
        >>> tunesmith.init(address="ray://head:10001", num_cpus=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: tunesmith.init(address='ray://head:10001', num_cpus=...): ...
        >>> tunesmith.init()  # back to the default
    """
    from tunesmith._internal.backend import _address

    if address is not None:
        address = _address.check_address(address)
    if address not in (None, _address.LOCAL):
        given = [name for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                                          ("resources", resources), ("memory", memory)) if value is not None]
        if given:
            raise ValueError(
                f"tunesmith.init(address={address!r}, {', '.join(f'{g}=...' for g in given)}): the nodes of a "
                "Ray cluster declare their resources themselves (ray start --num-cpus ... --resources ...); "
                "pass only the address, or drop it to run on this machine with these resources."
            )
    _address.set_address(address)
    from tunesmith._internal.resources import init as _init

    _init(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources, memory=memory, **kwargs)
    _core._mark_initialized()


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"tunesmith.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
