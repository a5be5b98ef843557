"""The ``TrialScheduler`` interface and the default ``FIFOScheduler``.

A scheduler sees each result and decides whether the trial goes on, pauses or
stops; it also picks which pending or paused trial starts when resources free
up. It talks to the driver through a small controller interface:

- ``controller.get_trials()`` / ``controller.get_live_trials()``: all trials / the unfinished ones.
- ``controller.first_trial_with_status(status)``: the earliest-added trial with that status, O(1).
- ``controller.pause_trial(trial, should_checkpoint=True)``: saves (if asked) and pauses; the
  trial later resumes from ``trial.restore_checkpoint``.
- ``controller.stop_trial(trial)``: ends the trial (TERMINATED).
- ``controller.resume_trial(trial)``: marks a PAUSED trial PENDING so it is started again.
- ``controller.save_trial(trial) -> Checkpoint | None``: persists a checkpoint of a trial whose
  result is being processed now (a function trainable returns its latest reported one).
- ``controller.update_trial_resources(trial, placement_group_factory)``.
- ``controller.experiment_path``: the experiment directory (for policy logs and state).
- ``controller.total_resources``: what the backend can hand out in all.
- ``controller.search_alg``: the experiment's search algorithm.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial


class TrialScheduler:
    """Decides, per result, whether a trial continues, pauses or stops.

    Subclasses override ``on_trial_result`` and, when they need to choose which
    trial runs next, ``choose_trial_to_run``.

    Example:
        >>> from tunesmith.tune.schedulers import FIFOScheduler, TrialScheduler
        >>> class StopBelow(FIFOScheduler):
        ...     def on_trial_result(self, tune_controller, trial, result):
        ...         return TrialScheduler.STOP if result["acc"] < 0.1 else TrialScheduler.CONTINUE
        >>> StopBelow().on_trial_result(None, None, {"acc": 0.05})
        'STOP'
    """

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    _metric: str | None = None
    _mode: str | None = None
    _supports_buffered_results = True
    # Whether the scheduler pauses trials and restarts them from checkpoints
    # (the "Need Checkpointing?" column of the compatibility matrix).
    _requires_checkpointing = False

    def _supports_search_alg(self, search_alg) -> bool:
        """Whether this scheduler may be combined with ``search_alg`` (None: the default generator)."""
        return True

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Fills metric and mode from ``TuneConfig`` when the scheduler has none.

        Returns False if the scheduler already has a different metric or mode.
        """
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        """Called when a trial is added to the experiment."""

    def on_trial_error(self, tune_controller, trial: "Trial") -> None:
        """Called when a trial has failed."""

    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        """Returns CONTINUE, PAUSE, STOP or NOOP for a trial's new result."""
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial: "Trial", result: dict) -> None:
        """Called when a trial has finished (its last result is ``result``)."""

    def on_trial_remove(self, tune_controller, trial: "Trial") -> None:
        """Called when a trial is stopped by someone other than the scheduler."""

    def choose_trial_to_run(self, tune_controller) -> "Trial | None":
        """Returns a PENDING or PAUSED trial to start, or None."""
        raise NotImplementedError

    def debug_string(self) -> str:
        """A one-line summary shown in the progress output."""
        return ""

    def save(self, checkpoint_path: str) -> None:
        """Saves the scheduler's state to a file (for experiment restore)."""
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        """Restores the state written by :meth:`save`."""
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added and lets each run to its end.

    Example:
        >>> from tunesmith.tune.schedulers import FIFOScheduler
        >>> FIFOScheduler().on_trial_result(None, None, {"loss": 1.0})
        'CONTINUE'
    """

    def __init__(self, metric: str | None = None, mode: str | None = None):
        self._metric = metric
        self._mode = mode

    def choose_trial_to_run(self, tune_controller) -> "Trial | None":
        return tune_controller.first_trial_with_status(
            "PENDING"
        ) or tune_controller.first_trial_with_status("PAUSED")

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."
