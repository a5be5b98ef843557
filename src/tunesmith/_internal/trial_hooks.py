"""Work to do in a worker process when the trial it runs ends.

``setup_mlflow`` and ``setup_wandb`` open a run inside the trial; the worker
process outlives the trial (it is reused for the next one), so the run is
closed here, with the trial's outcome, rather than at process exit.
"""
from __future__ import annotations

import logging
from typing import Callable

logger = logging.getLogger(__name__)

#: Outcomes passed to the hooks.
FINISHED, FAILED, PAUSED = "FINISHED", "FAILED", "PAUSED"

_hooks: list[Callable[[str], None]] = []


def add_trial_end_hook(hook: Callable[[str], None]) -> None:
    """Calls ``hook(outcome)`` once when the current trial ends in this process."""
    _hooks.append(hook)


def run_trial_end_hooks(outcome: str) -> None:
    """Runs and forgets the hooks of the trial that just ended (called by the worker)."""
    if not _hooks:
        return
    hooks = _hooks[:]
    _hooks.clear()
    for hook in reversed(hooks):
        try:
            hook(outcome)
        except Exception as exc:  # a tracker's trouble must not fail the next trial
            logger.warning("Closing a tracker run at the end of the trial failed: %r", exc)
