"""The ``TrialScheduler`` interface and the default ``FIFOScheduler``.

A scheduler sees each result and decides whether the trial goes on, pauses or
stops; it also picks which pending or paused trial starts when resources free
up. It talks to the driver through a small controller interface:

- ``controller.get_trials()`` / ``controller.get_live_trials()``: all trials / the unfinished ones.
- ``controller.first_trial_with_status(status)``: the first trial with that status (PENDING: the first to
  become PENDING, O(1); PAUSED: the first created, as on Ray).
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

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from tunesmith.tune.schedulers._state import load_state_file

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

# Hooks that, while a state read by ``restore(path)`` waits for its trials, link it first.
_LINKING_HOOKS = (
    "on_trial_result",
    "on_trial_complete",
    "on_trial_error",
    "on_trial_remove",
    "choose_trial_to_run",
    "debug_string",
    "get_state",
)
_PENDING = "_pending_restore"


class TrialScheduler:
    """Decides, per result, whether a trial continues, pauses or stops.

    Subclasses override ``on_trial_result`` and, when they need to choose which
    trial runs next, ``choose_trial_to_run``.

    State for experiment restore: :meth:`get_state` returns the scheduler's
    bookkeeping as plain data (trials by ``trial_id`` only; no ``Trial`` objects,
    no controller, no user callables, which come from the scheduler object the
    user passes again), with the scheduler's class name, a state ``version`` and
    the settings the state depends on. :meth:`set_state` rebuilds the
    bookkeeping from such a state and links the ids to the restored ``Trial``
    objects. Subclasses that keep bookkeeping override both and call ``super()``.

    The contract with the controller on restore:

    1. The controller creates every restored ``Trial`` first (with its restored
       ``status``, ``config``, ``last_result`` and checkpoints).
    2. If a saved scheduler state exists, it calls ``set_state(state, trials)``
       with ``{trial_id: trial}`` of all restored trials, finished ones
       included, and does *not* call ``on_trial_add`` for them. ``set_state``
       counts TERMINATED/ERROR trials as finished (never live), drops per-trial
       bookkeeping of ids missing from ``trials`` (aggregate statistics such as
       ASHA's rung cut-offs stay), and adds unfinished trials the state does not
       know as ``on_trial_add`` would.
    3. Without a saved state it calls ``on_trial_add`` for each restored
       unfinished trial.
    4. Trials created afterwards get ``on_trial_add`` as usual.

    ``save(path)`` writes ``get_state()``; ``restore(path, trials)`` reads it
    and calls ``set_state``. ``restore(path)`` without trials may come before
    the trials exist: the state is kept, the trials then given to
    ``on_trial_add`` are collected, and the state is linked to them at the
    first other call (a result, a choice of trial, ``get_state``, ...).

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
    # Bumped when the layout of get_state() changes, so an old state is detected.
    _STATE_VERSION = 1
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

    def decision_points(self, trial: "Trial") -> "tuple[str, tuple[float, ...]] | None":
        """Where this scheduler may stop or pause ``trial``: ``(result field, increasing values)``.

        A trial whose iterations are short runs ahead of the driver's answers (its
        results are pipelined); a result whose field reaches the next of these values
        waits for the answer instead, so a trial stopped there runs no further
        iteration. None (the default) means any result may be decided on: the trial
        keeps running ahead, and results after a stop are dropped.
        """
        return None

    def on_trial_remove(self, tune_controller, trial: "Trial") -> None:
        """Called when a trial is stopped by someone other than the scheduler."""

    def choose_trial_to_run(self, tune_controller) -> "Trial | None":
        """Returns a PENDING or PAUSED trial to start, or None."""
        raise NotImplementedError

    def debug_string(self) -> str:
        """A one-line summary shown in the progress output."""
        return ""

    # -- state ---------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        """Settings the saved bookkeeping depends on; a state made with other values is refused."""
        return {"metric": self.metric, "mode": self.mode}

    def get_state(self) -> dict:
        """The scheduler's bookkeeping as plain data (trials by id), for experiment restore.

        Returns:
            A dict with ``scheduler`` (the class name), ``version`` and ``settings``;
            subclasses add their bookkeeping.

        Example:
            >>> from tunesmith.tune.schedulers import FIFOScheduler
            >>> FIFOScheduler(metric="loss", mode="min").get_state()["scheduler"]
            'FIFOScheduler'
        """
        return {
            "scheduler": type(self).__name__,
            "version": self._STATE_VERSION,
            "settings": dict(self._state_settings()),
        }

    def set_state(self, state: dict, trials: "Mapping[str, Trial] | Iterable[Trial]") -> None:
        """Rebuilds the bookkeeping from :meth:`get_state`'s output, linked to the restored trials.

        Args:
            state: What :meth:`get_state` returned (possibly after a round trip through a file).
            trials: ``{trial_id: Trial}`` (or an iterable of trials) of every restored trial,
                finished ones included. See the class docstring for the full contract.

        Raises:
            ValueError: When ``state`` was written by another scheduler class, another state
                version, or with settings this scheduler does not have.

        Example:
            >>> from tunesmith.tune.schedulers import FIFOScheduler
            >>> old = FIFOScheduler(metric="loss", mode="min")
            >>> FIFOScheduler(metric="loss", mode="min").set_state(old.get_state(), {})
        """
        if self.__dict__.pop(_PENDING, None) is not None:
            for name in _LINKING_HOOKS + ("on_trial_add",):
                self.__dict__.pop(name, None)
        self._check_state(state)

    def _check_state(self, state: Any) -> None:
        name = type(self).__name__
        if not isinstance(state, dict) or "scheduler" not in state or "version" not in state:
            raise ValueError(
                f"{name}: the given scheduler state is not one written by {name}.get_state()/save() "
                f"(got {type(state).__name__} without 'scheduler' and 'version' keys). States written "
                "before schedulers saved their state explicitly cannot be restored; start the scheduler fresh."
            )
        if state["scheduler"] != name:
            raise ValueError(
                f"{name}: the scheduler state was written by {state['scheduler']}, not {name}. "
                "Restore with the same scheduler class the experiment ran with."
            )
        if state["version"] != self._STATE_VERSION:
            raise ValueError(
                f"{name}: the scheduler state has version {state['version']!r}, this {name} reads "
                f"version {self._STATE_VERSION}. It was written by another tunesmith release; "
                "restore it with that release."
            )
        saved = state.get("settings") or {}
        current = self._state_settings()
        for key, value in saved.items():
            mine = current.get(key)
            if value is not None and mine is not None and _differs(value, mine):
                raise ValueError(
                    f"{name}: the scheduler state was made with {key}={value!r}, but this scheduler has "
                    f"{key}={mine!r}. Restore with the settings the experiment ran with."
                )

    def save(self, checkpoint_path: str) -> None:
        """Writes :meth:`get_state` to ``checkpoint_path`` (atomically), for experiment restore."""
        import cloudpickle

        from tunesmith._internal.storage import write_bytes_atomic

        write_bytes_atomic(checkpoint_path, cloudpickle.dumps(self.get_state()))

    def restore(
        self,
        checkpoint_path: str,
        trials: "Mapping[str, Trial] | Iterable[Trial] | None" = None,
    ) -> None:
        """Reads the state written by :meth:`save`.

        Args:
            checkpoint_path: The file :meth:`save` wrote.
            trials: The restored trials; the state is linked to them at once. Without
                them the state is kept until the trials arrive (see the class docstring).

        Raises:
            ValueError: When the file cannot be read or holds another scheduler's state;
                the message names the file.
        """
        name = type(self).__name__
        state = load_state_file(checkpoint_path, name)
        try:
            self._check_state(state)
        except ValueError as exc:
            raise ValueError(f"{exc} (scheduler state file {checkpoint_path!r})") from None
        if trials is not None:
            self.set_state(state, trials)
            return
        self._defer_restore(state)

    def _defer_restore(self, state: dict) -> None:
        """Keeps ``state`` until the trials are known; see the class docstring."""
        collected: dict[str, "Trial"] = {}
        self.__dict__[_PENDING] = (state, collected)

        def collect(tune_controller, trial: "Trial") -> None:
            collected[trial.trial_id] = trial

        def linking(hook: str):
            def call(*args, **kwargs):
                self._link_pending_restore()
                return getattr(self, hook)(*args, **kwargs)

            return call

        self.__dict__["on_trial_add"] = collect
        for hook in _LINKING_HOOKS:
            self.__dict__[hook] = linking(hook)

    def _link_pending_restore(self) -> None:
        pending = self.__dict__.get(_PENDING)
        if pending is not None:
            state, collected = pending
            self.set_state(state, collected)

    def __getstate__(self) -> dict:
        # A restore waiting for its trials is not part of the scheduler's configuration.
        data = dict(self.__dict__)
        if _PENDING in data:
            del data[_PENDING]
            for name in _LINKING_HOOKS + ("on_trial_add",):
                data.pop(name, None)
        return data


def _differs(saved: Any, current: Any) -> bool:
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        return len(saved) != len(current) or any(_differs(a, b) for a, b in zip(saved, current))
    return saved != current


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
