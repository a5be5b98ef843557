"""A function trainable seen through the class API: ``FunctionTrainable`` and ``wrap_function``.

Tuners run function trainables directly in their worker processes; these
classes are for code that wants one as a :class:`~tunesmith.tune.Trainable`
(``train()``, ``save()``, ``restore()``, ``stop()``), as Ray's internals
offer. The function runs in a thread of the calling process; each
``train()`` lets it run to its next ``report()`` and returns that result.

Example:
    >>> from tunesmith import tune
    >>> from tunesmith.tune.trainable.function_trainable import wrap_function
    >>> def objective(config):
    ...     for step in range(3):
    ...         tune.report({"score": config["x"] * step})
    >>> trainable = wrap_function(objective)(config={"x": 2})
    >>> [trainable.train()["score"] for _ in range(3)]
    [0, 2, 4]
    >>> trainable.train()["done"]  # the function returned: its last result, marked done
    True
    >>> trainable.stop()
"""
from __future__ import annotations

import os
import queue
import shutil
import threading
from typing import Any, Callable

from tunesmith._internal.fsutil import copy_tree
from tunesmith.tune.result import RESULT_DUPLICATE
from tunesmith.tune.trainable.trainable import Trainable

# Fields the session fills in that Trainable.train() fills in again for the class API.
_SESSION_FIELDS = ("training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
                   "iterations_since_restore", "timestamp", "timesteps_since_restore")


def _thread_timeout_s() -> float:
    """``TUNE_FUNCTION_THREAD_TIMEOUT_S``: how long stop() waits for the function's thread (default 2 s)."""
    try:
        return max(0.0, float(os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S", "2")))
    except ValueError:
        raise ValueError("TUNE_FUNCTION_THREAD_TIMEOUT_S must be a number of seconds, got "
                         f"{os.environ['TUNE_FUNCTION_THREAD_TIMEOUT_S']!r}.") from None


class _ThreadPipe:
    """The function's end of a driver/worker connection, within one process (``send``/``recv``/``poll``)."""

    def __init__(self, to_trainable: queue.Queue, to_function: queue.Queue):
        self._out = to_trainable
        self._in = to_function

    def send(self, message: Any) -> None:
        self._out.put(message)

    def recv(self) -> Any:
        return self._in.get()

    def poll(self, timeout: float = 0.0) -> bool:
        return not self._in.empty()


class FunctionTrainable(Trainable):
    """A function trainable as a :class:`Trainable`; made by :func:`wrap_function`.

    ``train()`` returns the function's next reported result, or, once the
    function has returned, its last result with ``done=True``. ``save()``
    copies the checkpoint the function reported last; ``restore()`` makes the
    function start again from that checkpoint (``train.get_checkpoint()``).
    """

    _function: Callable | None = None
    _name = "func"

    def setup(self, config: dict) -> None:
        if self._function is None:
            raise TypeError("FunctionTrainable runs a function: make the class with wrap_function(fn).")
        self._thread: threading.Thread | None = None
        self._from_function: queue.Queue = queue.Queue()
        self._to_function: queue.Queue = queue.Queue()
        self._restore_from = None  # the checkpoint the function starts from
        self._reported_checkpoint = None  # the checkpoint the function reported last
        self._last_metrics: dict = {}
        self._waiting = False  # the function waits for an answer to its last report
        self._finished = False

    # -- the function's thread ---------------------------------------------------------------------
    def _inner_dir(self) -> str:
        # The function's own checkpoints go to a directory of their own: the class API's save()
        # names the trial's checkpoint directories.
        return os.path.join(self.logdir, ".function_trainable")

    def _start(self) -> None:
        from tunesmith._internal import protocol as P
        from tunesmith._internal import session as S
        from tunesmith.tune.trainable._trial_info import TrialInfo

        info = self._trial_info
        inner_dir = self._inner_dir()
        inner = TrialInfo(
            trial_id=self.trial_id, trial_name=self.trial_name, trial_dir=inner_dir,
            experiment_name=getattr(info, "experiment_name", ""), experiment_path=getattr(info, "experiment_path", ""),
            experiment_tag=getattr(info, "experiment_tag", ""), resources=getattr(info, "resources", None),
            experiment_id=getattr(info, "experiment_id", ""),
        )
        spec = P.TrialSpec(trainable_key="", config=self.config, trial_info=inner, result_buffer_length=1)
        pipe = _ThreadPipe(self._from_function, self._to_function)
        session = S._Session(pipe, spec, inner, self._restore_from)
        session._pipeline_s = 0.0  # each train() waits for exactly one report
        fn = self._function

        def run() -> None:
            from tunesmith._internal.worker import _call_function

            S._set_session(session)
            try:
                value = _call_function(fn, self.config, self._restore_from)
                if isinstance(value, dict) and value:  # an empty dict adds no result (as on Ray)
                    session.report(value)
                pipe.send(("done", None))
            except S.TrialStopped:
                pipe.send(("done", None))
            except BaseException as exc:  # raised again by train() in the caller's thread
                pipe.send(("error", exc))
            finally:
                S._set_session(None)

        self._thread = threading.Thread(target=run, name=f"tunesmith-{self._name}", daemon=True)
        self._thread.start()

    def step(self) -> dict:
        if self._finished:
            return self._final()
        if self._thread is None:
            self._start()
        elif self._waiting:
            self._waiting = False
            self._to_function.put("c")  # go on to the next report
        message = self._from_function.get()
        if message[0] == "r":
            _, result, checkpoint_name = message
            self._waiting = True
            if checkpoint_name:
                from tunesmith.train._checkpoint import Checkpoint

                previous = self._reported_checkpoint
                self._reported_checkpoint = Checkpoint(os.path.join(self._inner_dir(), checkpoint_name))
                if previous is not None and os.path.dirname(previous.path) == self._inner_dir():
                    # Only the latest is needed (save() copies it), and the function reads only that.
                    shutil.rmtree(previous.path, ignore_errors=True)
            metrics = {k: v for k, v in result.items() if k not in _SESSION_FIELDS}
            self._last_metrics = metrics
            return dict(metrics)
        self._finished = True
        self._thread.join()
        if message[0] == "error":
            raise message[1]
        return self._final()

    def _final(self) -> dict:
        # The last result again, done; a Tuner adds no row for it (RESULT_DUPLICATE).
        return {**self._last_metrics, "done": True, RESULT_DUPLICATE: True}

    def _end_function(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._waiting:
            self._waiting = False
            self._to_function.put("s")  # report() raises TrialStopped in the function's thread
        thread.join(timeout=_thread_timeout_s())
        self._from_function = queue.Queue()
        self._to_function = queue.Queue()

    # -- checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint_dir: str) -> None:
        checkpoint = self._reported_checkpoint
        if checkpoint is None:
            return
        with checkpoint.as_directory() as source:
            copy_tree(source, checkpoint_dir, dirs_exist_ok=True)

    def load_checkpoint(self, checkpoint: Any) -> None:
        from tunesmith.train._checkpoint import Checkpoint

        path = checkpoint if isinstance(checkpoint, str) else getattr(checkpoint, "path", None)
        self._end_function()  # a running function starts again, from the checkpoint
        self._finished = False
        self._restore_from = Checkpoint(path) if path else None
        self._reported_checkpoint = self._restore_from

    def cleanup(self) -> None:
        self._end_function()

    def reset_config(self, new_config: dict) -> bool:
        return False


def wrap_function(train_func: Callable, name: str | None = None) -> type[FunctionTrainable]:
    """A :class:`FunctionTrainable` class that runs ``train_func`` (in any of its accepted forms).

    Args:
        train_func: The function trainable: ``fn(config)``, ``fn(config, checkpoint_dir)``,
            ``fn(config, reporter)`` or a generator.
        name: The class's name (default: the function's).
    """
    if not callable(train_func):
        raise TypeError(f"wrap_function() takes a function, got {train_func!r}.")
    class_name = name or getattr(train_func, "__name__", "func")
    return type(class_name, (FunctionTrainable,), {"_function": staticmethod(train_func), "_name": class_name})


__all__ = ["FunctionTrainable", "wrap_function"]
