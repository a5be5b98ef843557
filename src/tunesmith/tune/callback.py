"""The ``Callback`` interface: hooks into the experiment loop of the driver."""
from __future__ import annotations

import logging
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

logger = logging.getLogger(__name__)


class Callback:
    """Base class for hooks the driver calls as the experiment runs.

    Override the hooks you need. Every hook receives keyword arguments, so a
    subclass may take ``**info`` to accept extras added later. ``iteration``
    counts turns of the driver's event loop.

    Example:
        >>> from tunesmith import tune
        >>> class PrintLoss(tune.Callback):
        ...     def on_trial_result(self, iteration, trials, trial, result, **info):
        ...         print(trial, result["loss"])
    """

    def setup(self, stop=None, num_samples: int | None = None, total_num_samples: int | None = None, **info) -> None:
        """Called once before the experiment starts."""

    def on_step_begin(self, iteration: int, trials: list["Trial"], **info) -> None:
        """Called at the start of each turn of the event loop."""

    def on_step_end(self, iteration: int, trials: list["Trial"], **info) -> None:
        """Called at the end of each turn of the event loop."""

    def on_trial_start(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        """Called after a trial's process has started it."""

    def on_trial_restore(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        """Called after a trial has been restored from a checkpoint."""

    def on_trial_save(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        """Called after a trial saved a checkpoint."""

    def on_trial_result(self, iteration: int, trials: list["Trial"], trial: "Trial", result: dict, **info) -> None:
        """Called for each result a trial reports."""

    def on_trial_complete(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        """Called when a trial has finished without error."""

    def on_trial_recover(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        """Called when a trial failed and will be retried."""

    def on_trial_error(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        """Called when a trial has failed for good."""

    def on_checkpoint(self, iteration: int, trials: list["Trial"], trial: "Trial", checkpoint, **info) -> None:
        """Called after a trial's checkpoint has been persisted."""

    def on_experiment_end(self, trials: list["Trial"], **info) -> None:
        """Called once after the experiment has ended."""

    def get_state(self) -> dict | None:
        """Returns the callback's state, saved with the experiment for restore."""
        return None

    def set_state(self, state: dict) -> None:
        """Restores the state returned by :meth:`get_state`."""


def _check_callback(cb: Any) -> None:
    """Refuses, with what to pass instead, the older per-trial ``Logger`` API and callback classes."""
    from tunesmith.tune.logger.logger import Logger

    logger_class = cb if isinstance(cb, type) else type(cb)
    if issubclass(logger_class, Logger):
        raise TypeError(
            f"{logger_class.__name__} is a Logger (the older per-trial logger API), not a callback: pass "
            f"tune.logger.LegacyLoggerCallback([{logger_class.__name__}]) in callbacks=[...] (or "
            "tune.run(loggers=[...])), or use its callback form (JsonLoggerCallback(), CSVLoggerCallback(), "
            "TBXLoggerCallback())."
        )
    if isinstance(cb, type) and issubclass(cb, Callback):
        raise TypeError(f"callbacks=[...] takes callback instances: pass {cb.__name__}(), not the class.")


class CallbackError(RuntimeError):
    """A user callback raised: the message names the callback and the hook."""


# Hooks before which a callback that is not a result logger finds the trial's files written.
_FILE_HOOKS = frozenset(("on_trial_start", "on_trial_restore", "on_trial_complete", "on_trial_error"))


class UnsavedCallback(Callback):
    """Stands in, in a restored run, for a callback that could not be saved with the experiment.

    It keeps the other callbacks in their places, so each gets back its own saved state.
    """

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"UnsavedCallback({self.name!r})"


class CallbackList(Callback):
    """Calls a list of callbacks in order."""

    def __init__(self, callbacks: list[Callback]):
        self._callbacks = list(callbacks)
        for cb in self._callbacks:
            _check_callback(cb)
        # Hooks no callback overrides are skipped entirely: the result hook is hot.
        self._active: dict[str, list[Any]] = {}
        for name in (
            "setup", "on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore",
            "on_trial_save", "on_trial_result", "on_trial_complete", "on_trial_recover",
            "on_trial_error", "on_checkpoint", "on_experiment_end",
        ):
            base = getattr(Callback, name)
            self._active[name] = [
                (cb, getattr(cb, name)) for cb in self._callbacks
                if getattr(type(cb), name, base) is not base or not isinstance(cb, Callback)
                or name in getattr(cb, "__dict__", {})  # a hook set on the instance itself
            ]

    def __iter__(self):
        return iter(self._callbacks)

    def has(self, name: str) -> bool:
        """Whether some callback implements hook ``name`` (the driver skips building its arguments if not)."""
        return bool(self._active.get(name, True))

    def __len__(self) -> int:
        return len(self._callbacks)

    def _call(self, name: str, **kwargs) -> None:
        files = name in _FILE_HOOKS
        active = self._active[name]
        for i, (cb, hook) in enumerate(active):
            if files and not getattr(cb, "_writes_through_io_thread", False):
                from tunesmith.tune.logger._util import wait_for_trial_files

                wait_for_trial_files()  # the trial's directory and files are complete for it
            try:
                hook(**kwargs)
            except BaseException as exc:
                if name == "on_trial_result":
                    self._log_anyway(active[i + 1:], kwargs)
                if isinstance(exc, CallbackError) or not isinstance(exc, Exception):
                    raise  # a KeyboardInterrupt (Ctrl+C, a callback's) stays what it is
                after = ("The experiment did not start; fix the callback and run it again (a new Tuner, "
                         "with the fixed callback)." if name == "setup" else
                         "The experiment was stopped and its state saved; fix the callback and resume with "
                         "Tuner.restore(...).")
                raise CallbackError(
                    f"The callback {type(cb).__name__} raised {type(exc).__name__} in {name}(): {exc}. {after}"
                ) from exc

    @staticmethod
    def _log_anyway(rest: list, kwargs: dict) -> None:
        """Callbacks hear a result in list order, as on Ray (the default loggers come after the user's
        callbacks and log what they added to it); once the driver has taken a result in, its row
        still goes to disk when a callback before the loggers fails or is interrupted."""
        for cb, hook in rest:
            if getattr(cb, "_logs_results", False):
                try:
                    hook(**kwargs)
                except Exception:
                    logger.exception("The logger %s failed too:", type(cb).__name__)

    def rollback_trial(self, trial, rows: int) -> None:
        """Cuts the trial's result logs back to their first ``rows`` rows (it resumes from there)."""
        for cb in self._callbacks:
            rollback = getattr(cb, "_rollback_trial", None)
            if rollback is not None:
                rollback(trial, rows)

    def setup(self, **info):
        self._call("setup", **info)

    def on_step_begin(self, **info):
        self._call("on_step_begin", **info)

    def on_step_end(self, **info):
        self._call("on_step_end", **info)

    def on_trial_start(self, **info):
        self._call("on_trial_start", **info)

    def on_trial_restore(self, **info):
        self._call("on_trial_restore", **info)

    def on_trial_save(self, **info):
        self._call("on_trial_save", **info)

    def on_trial_result(self, **info):
        self._call("on_trial_result", **info)

    def on_trial_complete(self, **info):
        self._call("on_trial_complete", **info)

    def on_trial_recover(self, **info):
        self._call("on_trial_recover", **info)

    def on_trial_error(self, **info):
        self._call("on_trial_error", **info)

    def on_checkpoint(self, **info):
        self._call("on_checkpoint", **info)

    def on_experiment_end(self, **info):
        self._call("on_experiment_end", **info)

    def get_state(self) -> dict:
        """Each callback's state by its position. One whose get_state() raises, or returns what cannot be
        saved, is left out with a warning (once): its restore starts it afresh, and the rest is saved."""
        states = {}
        for i, cb in enumerate(self._callbacks):
            try:
                state = cb.get_state()
                if state is not None:
                    import cloudpickle

                    cloudpickle.dumps(state)
            except Exception as exc:
                unsaved = self.__dict__.setdefault("_unsaved_states", set())
                if i not in unsaved:
                    unsaved.add(i)
                    logger.warning("The state of callback %s cannot be saved with the experiment (%s: %s); a "
                                   "restore starts it afresh.", type(cb).__name__, type(exc).__name__, exc)
                state = None
            states[str(i)] = state
        return states

    def set_state(self, state: dict) -> None:
        for i, cb in enumerate(self._callbacks):
            if state.get(str(i)) is not None:
                cb.set_state(state[str(i)])
