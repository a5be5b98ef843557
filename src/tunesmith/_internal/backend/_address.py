"""Which cluster, if any, trials run on: ``tunesmith.init(address=...)`` and the environment.

Kept apart from the Ray backend so that reading the choice never imports Ray.
"""
from __future__ import annotations

import os
import sys

LOCAL = "local"
# What the Ray backend gets for a connection this process made itself with ray.init(...): it uses it as it is.
CONNECTED = "auto"
_ENV_VARS = ("TUNESMITH_ADDRESS", "RAY_ADDRESS")

# Set by tunesmith.init(address=...): None means "ask the environment".
_explicit: str | None = None


def check_address(address: str) -> str:
    """Returns ``address`` if it names a cluster or ``"local"``; raises a clear error otherwise."""
    if not isinstance(address, str) or not address.strip():
        raise ValueError(
            f"tunesmith.init(address={address!r}): the address must be 'auto', 'ray://host:port', "
            "'host:port' of a Ray cluster's head, or 'local' for this machine."
        )
    return address.strip()


def set_address(address: str | None) -> None:
    global _explicit
    _explicit = None if address is None else check_address(address)


def cluster_address(adopt_ray: bool = True) -> str | None:
    """The Ray address trials run on, or None to run them on this machine.

    ``tunesmith.init(address=...)`` wins; then ``TUNESMITH_ADDRESS``, then ``RAY_ADDRESS``.
    ``"local"`` (from either) means this machine. Without any of them, a process that connected
    to Ray itself (``ray.init(address=...)`` before ``Tuner.fit()``, as Ray Tune's scripts do for
    a distributed run) runs its trials there, unless ``adopt_ray`` is False.
    """
    address = _explicit
    if address is None:
        for var in _ENV_VARS:
            value = os.environ.get(var, "").strip()
            if value:
                address = value
                break
    if address is None and adopt_ray and _ray_connected():
        return CONNECTED
    if address is None or address == LOCAL:
        return None
    return address


def _ray_connected() -> bool:
    """Whether this process imported Ray and connected it (never imports Ray itself)."""
    ray = sys.modules.get("ray")
    is_initialized = getattr(ray, "is_initialized", None)
    try:
        return bool(is_initialized is not None and is_initialized())
    except Exception:
        return False
