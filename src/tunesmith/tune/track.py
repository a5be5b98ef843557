"""``tune.track``: the oldest function API (``track.log(**metrics)``)."""
from __future__ import annotations

from tunesmith._internal import session as _session


def init(*args, **kwargs) -> None:
    """Kept for compatibility; a trial's session starts on its own."""


def shutdown() -> None:
    """Kept for compatibility."""


def log(**metrics) -> None:
    """Reports ``metrics`` for the current iteration."""
    _session.report(metrics)


def trial_dir() -> str | None:
    """The running trial's directory."""
    return _session.get_trial_dir()


def trial_name() -> str | None:
    """The running trial's name."""
    return _session.get_trial_name()


def trial_id() -> str | None:
    """The running trial's id."""
    return _session.get_trial_id()
