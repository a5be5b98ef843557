"""Which cluster, if any, trials run on: ``tunesmith.init(address=...)`` and the environment.

Kept apart from the Ray backend so that reading the choice never imports Ray.
"""
from __future__ import annotations

import os

LOCAL = "local"
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


def cluster_address() -> str | None:
    """The Ray address trials run on, or None to run them on this machine.

    ``tunesmith.init(address=...)`` wins; then ``TUNESMITH_ADDRESS``, then ``RAY_ADDRESS``.
    ``"local"`` (from either) means this machine.
    """
    address = _explicit
    if address is None:
        for var in _ENV_VARS:
            value = os.environ.get(var, "").strip()
            if value:
                address = value
                break
    if address is None or address == LOCAL:
        return None
    return address
