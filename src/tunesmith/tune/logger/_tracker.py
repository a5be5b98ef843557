"""Experiment trackers (MLflow, W&B, Aim, Comet) as logger callbacks, run off the driver's loop.

A tracker library is slow next to the driver: a call may write a database
row, a file per metric or a network request, and its import alone takes a
second. So a :class:`TrackerLoggerCallback` does nothing in the driver but
append each event to a list; every ``flush_period_s`` the list is handed to a
sender thread, which pickles it and writes it to a helper process (``python -m
tunesmith.tune.logger._tracker``). That process imports the library and sets
it up (for MLflow's default SQLite store, creating the database takes seconds)
at the driver's priority, then lowers its own (niceness 10,
``TUNESMITH_TRACKER_NICENESS`` to change it) and replays the events in order
through a :class:`TrackerBackend`, batching the results of each trial. When the
experiment ends, the driver waits until the helper has recorded everything,
so that what ``Tuner.fit()`` returns is also in the tracker.

A helper process rather than a thread: the libraries' Python work would
otherwise take the interpreter lock from the driver, and some keep
process-wide state (Comet's current experiment, W&B's run registry) that
must not leak into the user's own process.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import numbers
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Iterable, TYPE_CHECKING

from tunesmith.tune.logger.logger import LoggerCallback
from tunesmith.tune.result import TIMESTEPS_TOTAL, TRAINING_ITERATION

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

logger = logging.getLogger(__name__)

# The helper yields the CPU to the experiment: it catches up when trials wait.
_NICENESS = int(os.environ.get("TUNESMITH_TRACKER_NICENESS", "10"))
# Seconds after which a driver waiting for the helper at the end says so.
_WAIT_NOTICE_S = 3.0

# How a trial's run ends in a tracker.
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


@dataclasses.dataclass
class TrialRecord:
    """What a tracker backend knows of a trial (plain data, sent to the helper process)."""

    trial_id: str
    trial_name: str
    config: dict
    evaluated_params: dict
    local_path: str | None
    experiment_path: str | None
    experiment_name: str | None
    experiment_tag: str = ""
    restarted: bool = False  # started over from scratch (Tuner.restore(restart_errored=True))


@dataclasses.dataclass
class ExperimentRecord:
    """The experiment a tracker backend logs (its directory and name)."""

    path: str | None
    name: str | None


class TrackerBackend:
    """Talks to one tracking library for every trial of an experiment, in the helper process.

    The driver builds it (its constructor must not import the library) and
    pickles it to the helper, which calls :meth:`setup` once and then the
    trial methods in the order the events happened.
    """

    #: The library's name in messages.
    library = "tracker"

    def setup(self, experiment: ExperimentRecord) -> None:
        """Imports the library and connects to it."""

    def start_trial(self, trial: TrialRecord) -> None:
        """Creates (or resumes) the trial's run and logs its config."""

    def update_trial(self, trial: TrialRecord) -> None:
        """Called when a started trial starts again (after a pause), maybe with a new config."""

    def log_results(self, trial: TrialRecord, results: list[dict]) -> None:
        """Logs a trial's results, oldest first (each without its ``config``)."""

    def log_checkpoint(self, trial: TrialRecord, path: str, iteration: int | None) -> None:
        """Called when a checkpoint of the trial has been persisted at ``path``."""

    def end_trial(self, trial: TrialRecord, status: str) -> None:
        """Ends the trial's run; ``status`` is ``FINISHED``, ``FAILED`` or ``KILLED``."""

    def close(self) -> None:
        """Called once at the end, after every trial has been ended."""


# -- helpers shared by the backends ------------------------------------------------------

def result_step(result: dict, prefer_timesteps: bool = True) -> int:
    """The step a result is logged at: ``timesteps_total`` when reported (and preferred), else
    ``training_iteration``. As on Ray, MLflow and Aim prefer it, W&B and Comet do not."""
    step = (prefer_timesteps and result.get(TIMESTEPS_TOTAL)) or result.get(TRAINING_ITERATION) or 0
    try:
        return int(step)
    except (TypeError, ValueError):
        return 0


def flatten_dict(d: dict, delimiter: str = "/", prefix: str = "") -> dict:
    """Nested dicts flattened to ``a/b`` keys."""
    out: dict = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_dict(value, delimiter, name + delimiter))
        else:
            out[name] = value
    return out


def numeric_items(d: dict, exclude: Iterable[str] = (), finite_only: bool = False) -> dict[str, float]:
    """The numeric fields of a flattened dict, as floats or ints (a flag as 0 or 1)."""
    skip = set(exclude)
    out: dict[str, float] = {}
    for key, value in flatten_dict(d).items():
        kind = type(value)
        if kind is float or kind is int:  # the common cases, without the abstract-class check
            if key in skip or (finite_only and kind is float and not math.isfinite(value)):
                continue
            out[key] = value
            continue
        if key in skip or not isinstance(value, numbers.Real):
            continue
        if isinstance(value, bool):
            value = int(value)
        elif not isinstance(value, (int, float)):
            value = float(value)
        if finite_only and not math.isfinite(value):
            continue
        out[key] = value
    return out


def plain_config(config: dict) -> dict:
    """A trial config as JSON-safe data, without Ray's reserved ``callbacks`` entry."""
    from tunesmith.tune.utils.serialization import to_jsonable

    return to_jsonable({k: v for k, v in config.items() if k != "callbacks"})


# -- the driver side ------------------------------------------------------------------------

class TrackerLoggerCallback(LoggerCallback):
    """Base of the tracker logger callbacks: queues events for the helper process.

    Subclasses implement :meth:`_make_backend`. The callback is cheap in the
    driver (a list append per result); the helper process starts with the
    first trial.

    Args:
        flush_period_s: Seconds between hand-overs of queued events to the helper.
    """

    #: Name of the tracker in messages, and the module to check for.
    _library = "tracker"
    _module = ""
    _install = ""
    _MAX_QUEUED = 4096

    def __init__(self, flush_period_s: float = 0.25):
        if not isinstance(flush_period_s, (int, float)) or isinstance(flush_period_s, bool) or flush_period_s < 0:
            raise ValueError(f"flush_period_s must be a number of seconds >= 0, got {flush_period_s!r}.")
        self.flush_period_s = float(flush_period_s)
        self._check_installed()
        self._reset_runtime()

    @classmethod
    def _check_installed(cls) -> None:
        import importlib.util

        if cls._module and importlib.util.find_spec(cls._module) is None:
            raise ImportError(
                f"{cls.__name__} needs {cls._library}, which is not installed. Install it with "
                f"`pip install {cls._install or cls._module}` (or the matching tunesmith extra)."
            )

    def _make_backend(self) -> TrackerBackend:
        raise NotImplementedError

    # -- runtime state (not pickled) --------------------------------------------------------
    def _reset_runtime(self) -> None:
        self._outbox: list[tuple] = []
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._sendq: queue.SimpleQueue | None = None
        self._sender: threading.Thread | None = None
        self._dead = False
        self._closed = False  # the helper said it has recorded everything
        self._initialized = False
        self._last_flush = time.monotonic()
        self._open: dict[str, Any] = {}  # trial id -> trial, for runs not ended yet

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_outbox", "_proc", "_conn", "_sendq", "_sender", "_dead", "_closed", "_initialized",
                    "_last_flush", "_open"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_runtime()

    # -- events -------------------------------------------------------------------------------
    @staticmethod
    def _record(trial: "Trial") -> TrialRecord:
        return TrialRecord(
            trial_id=trial.trial_id,
            trial_name=str(trial),
            config=plain_config(trial.config),
            evaluated_params=plain_config(trial.evaluated_params or {}),
            local_path=trial.local_path,
            experiment_path=trial.experiment_path,
            experiment_name=getattr(trial, "experiment_dir_name", None)
            or (os.path.basename(trial.experiment_path) if trial.experiment_path else None),
            experiment_tag=trial.experiment_tag,
            restarted=bool(getattr(trial, "restarted_from_scratch", False)),
        )

    def setup(self, stop=None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info) -> None:
        # Start the helper now: it imports the library (seconds for some) while the first trials start.
        if self._proc is None and not self._dead:
            self._start_helper()

    def log_trial_start(self, trial: "Trial") -> None:
        if self._dead:
            return
        if self._proc is None:
            self._start_helper()
        if not self._initialized:
            self._initialized = True
            experiment = ExperimentRecord(
                path=trial.experiment_path,
                name=getattr(trial, "experiment_dir_name", None)
                or (os.path.basename(trial.experiment_path) if trial.experiment_path else None),
            )
            self._outbox.append(("init", self._make_backend(), experiment))
        self._open[trial.trial_id] = trial
        self._outbox.append(("start", self._record(trial)))

    def log_trial_result(self, iteration: int, trial: "Trial", result: dict) -> None:
        if self._dead:
            return
        if trial.trial_id not in self._open:
            self.log_trial_start(trial)
        # The result itself: the driver does not change a result once reported. Its config
        # (one object per trial) is pickled once per batch and dropped in the helper.
        outbox = self._outbox
        outbox.append(("result", trial.trial_id, result))
        if len(outbox) >= self._MAX_QUEUED:
            self._flush()

    def on_checkpoint(self, iteration: int, trials: list["Trial"], trial: "Trial", checkpoint, **info) -> None:
        if self._dead or trial.trial_id not in self._open:
            return
        self._outbox.append(("checkpoint", trial.trial_id, checkpoint.path,
                             (trial.last_result or {}).get(TRAINING_ITERATION)))

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        if self._dead or self._open.pop(trial.trial_id, None) is None:
            return
        self._outbox.append(("end", trial.trial_id, FAILED if failed else FINISHED))

    def on_step_end(self, iteration: int, trials: list["Trial"], **info) -> None:
        if self._outbox and time.monotonic() - self._last_flush >= self.flush_period_s:
            self._flush()

    def on_experiment_end(self, trials: list["Trial"], **info) -> None:
        if self._proc is None:
            return
        for trial_id in list(self._open):
            self._outbox.append(("end", trial_id, KILLED))
        self._open.clear()
        self._outbox.append(("close",))
        self._flush()
        self._wait_for_helper()

    # -- the helper process ---------------------------------------------------------------------
    def _start_helper(self) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["TUNESMITH_DRIVER_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tunesmith.tune.logger._tracker", str(child.fileno())],
                pass_fds=(child.fileno(),), env=env, close_fds=True,
            )
        except OSError as exc:
            parent.close()
            self._give_up(f"could not start its helper process: {exc}")
            return
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self._sendq = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name=f"tunesmith-{self._library}-sender",
                                        daemon=True)
        self._sender.start()
        if self._module:
            self._outbox.append(("preload", self._module))
            self._flush()

    def _send_loop(self) -> None:
        # Pickling happens here, largely while the driver waits for its workers.
        sendq, conn = self._sendq, self._conn
        while True:
            ops = sendq.get()
            if ops is None:
                return
            try:
                data = pickle.dumps(ops, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                data = pickle.dumps([_picklable(op) for op in ops], protocol=pickle.HIGHEST_PROTOCOL)
            try:
                conn.send_bytes(data)
            except OSError:
                return  # the helper died; the driver notices when it reads

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._outbox:
            return
        ops, self._outbox = self._outbox, []
        if self._sendq is None:
            return
        self._sendq.put(ops)
        self._read_messages()

    def _read_messages(self, timeout: float = 0.0) -> bool:
        """Logs the helper's warnings; True once it said it has finished."""
        conn = self._conn
        if conn is None or self._closed:
            return True
        try:
            while conn.poll(timeout):
                kind, text = conn.recv()
                if kind == "closed":
                    # Kept: a flush may read this before _wait_for_helper does, and the helper then exits.
                    self._closed = True
                    return True
                logger.warning("%s", text)
                timeout = 0.0
        except (EOFError, OSError):
            self._give_up("its helper process ended unexpectedly; later results are not logged")
            return True
        return False

    def _give_up(self, why: str) -> None:
        if not self._dead:
            logger.warning("%s stopped logging: %s.", type(self).__name__, why)
        self._dead = True
        self._outbox = []
        if self._sendq is not None:
            self._sendq.put(None)

    def _wait_for_helper(self) -> None:
        start = time.monotonic()
        # The trials are over: the helper no longer yields the CPU to them. Its niceness goes
        # back to the driver's where the system allows it (raising a priority may need privileges);
        # otherwise, on a busy machine, the driver would wait on a helper starved by other processes.
        try:
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, os.getpriority(os.PRIO_PROCESS, 0))
        except (AttributeError, OSError):
            pass
        noticed = False
        try:
            while not self._dead:
                if self._read_messages(timeout=0.5):
                    break
                if not noticed and time.monotonic() - start > _WAIT_NOTICE_S:
                    noticed = True
                    print(f"Waiting for {self._library} to record the rest of the experiment's results...",
                          flush=True)
                if self._proc.poll() is not None:
                    self._read_messages()
                    if not self._dead and self._proc.returncode != 0:
                        self._give_up(f"its helper process exited with code {self._proc.returncode}")
                    break
        except KeyboardInterrupt:
            logger.warning("Interrupted while %s was recording results; some may be missing.", self._library)
            self._proc.kill()
        finally:
            if self._sendq is not None:
                self._sendq.put(None)
            if self._sender is not None:
                self._sender.join(timeout=5)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._conn is not None:
                self._conn.close()
            self._reset_runtime()


class _TolerantUnpickler(pickle.Unpickler):
    """Unpickles what the driver sent even where it refers to a class this process cannot import
    (one defined in the user's script, in a config or a result): a stand-in of the same name takes
    its place, so the value is logged as its text, as on Ray, instead of the helper dying."""

    _stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (AttributeError, ImportError):
            key = (module, name)
            if key not in self._stand_ins:
                self._stand_ins[key] = type(name, (), {"__module__": module, "__setstate__": lambda self, state: None,
                                                       "__init__": lambda self, *a, **k: None})
            return self._stand_ins[key]


def _loads_tolerantly(data: bytes) -> Any:
    import io

    return _TolerantUnpickler(io.BytesIO(data)).load()


def _picklable(op: tuple) -> tuple:
    """``op`` with a result that pickle refused (an exotic value) turned into plain data."""
    if op[0] == "result":
        from tunesmith.tune.utils.serialization import to_jsonable

        return (op[0], op[1], to_jsonable({k: v for k, v in op[2].items() if k != "config"}))
    try:
        pickle.dumps(op)
        return op
    except Exception as exc:
        if op[0] == "start" and isinstance(op[1], TrialRecord):  # a config holding objects: as JSON shows them
            from tunesmith.tune.utils.serialization import to_jsonable

            record = dataclasses.replace(op[1], config=to_jsonable(op[1].config),
                                         evaluated_params=to_jsonable(op[1].evaluated_params))
            return (op[0], record, *op[2:])
        if op[0] == "init":  # the tracker's own settings: nothing can be logged without them
            return ("unsent", f"{type(op[1]).library} logging is off: the callback's arguments cannot be sent "
                              f"to its helper process ({exc!r}); pass plain values (paths, strings, numbers).")
        return ("skipped",)


# -- the helper process ---------------------------------------------------------------------

class _Helper:
    """Replays the driver's events on a backend; reports trouble back as warnings."""

    _MAX_WARNINGS = 5

    def __init__(self, conn: Connection):
        self.conn = conn
        self.backend: TrackerBackend | None = None
        self.trials: dict[str, TrialRecord] = {}
        self.started: set[str] = set()
        self.pending: dict[str, list[dict]] = {}
        self.failures = 0

    def warn(self, text: str) -> None:
        try:
            self.conn.send(("warning", text))
        except OSError:
            pass

    def call(self, what: str, method: str, *args) -> bool:
        """Calls the backend's ``method``; False (with a warning) if it raised or there is no backend."""
        backend = self.backend
        if backend is None:
            return False
        try:
            getattr(backend, method)(*args)
            return True
        except Exception as exc:
            self.failures += 1
            if self.failures <= self._MAX_WARNINGS:
                self.warn(f"{backend.library} logging failed ({what}): {exc!r}\n{traceback.format_exc()}")
            return False

    def flush(self, trial_id: str) -> None:
        results = self.pending.pop(trial_id, None)
        if results and trial_id in self.started:
            self.call(f"results of trial {trial_id}", "log_results", self.trials[trial_id], results)

    def flush_all(self) -> None:
        for trial_id in list(self.pending):
            self.flush(trial_id)

    def handle(self, op: tuple) -> bool:
        kind = op[0]
        if kind == "result":
            result = op[2]
            if "config" in result:
                result = {k: v for k, v in result.items() if k != "config"}
            self.pending.setdefault(op[1], []).append(result)
            return False
        if kind == "preload":
            try:
                importlib.import_module(op[1])
            except Exception:
                pass  # setup reports it
        elif kind == "init":
            self.backend = op[1]
            try:
                self.backend.setup(op[2])
            except Exception as exc:
                self.warn(f"{self.backend.library} could not be set up, so nothing is logged to it: {exc!r}\n"
                          f"{traceback.format_exc()}")
                self.backend = None
            _lower_priority()
        elif kind == "unsent":
            self.warn(op[1])
        elif kind == "start":
            record: TrialRecord = op[1]
            self.flush(record.trial_id)
            self.trials[record.trial_id] = record
            if record.trial_id in self.started:
                self.call(f"restart of trial {record.trial_id}", "update_trial", record)
            elif self.call(f"start of trial {record.trial_id}", "start_trial", record):
                # A trial whose start failed gets no results or end (they could only fail too).
                self.started.add(record.trial_id)
        elif kind == "checkpoint":
            self.flush(op[1])
            if op[1] in self.started:
                self.call(f"checkpoint of trial {op[1]}", "log_checkpoint", self.trials[op[1]], op[2], op[3])
        elif kind == "end":
            self.flush(op[1])
            if op[1] in self.started:
                self.started.discard(op[1])
                self.call(f"end of trial {op[1]}", "end_trial", self.trials[op[1]], op[2])
        elif kind == "close":
            self.flush_all()
            self.end_open(KILLED)
            self.call("close", "close")
            if self.failures > self._MAX_WARNINGS and self.backend is not None:
                self.warn(f"{self.backend.library} logging failed {self.failures} times in all.")
            return True
        return False

    def end_open(self, status: str) -> None:
        for trial_id in list(self.started):
            self.started.discard(trial_id)
            self.call(f"end of trial {trial_id}", "end_trial", self.trials[trial_id], status)

    def serve(self) -> None:
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                # The driver is gone: end the runs so that the tracker does not show them running.
                self.flush_all()
                self.end_open(KILLED)
                self.call("close", "close")
                return
            for op in _loads_tolerantly(data):
                if self.handle(op):
                    try:
                        self.conn.send(("closed", None))
                    except OSError:
                        pass
                    return
            self.flush_all()


def _lower_priority() -> None:
    """Yields the CPU to the trials once the library is set up (its import and store are a fixed cost,
    paid fastest at once; the results' replay is what can wait for the trials)."""
    try:
        os.nice(_NICENESS)
    except (AttributeError, OSError):
        pass


def main() -> None:
    from tunesmith._internal.exit import leave_stop_signals_to_the_driver

    leave_stop_signals_to_the_driver()  # the driver ends this helper once every result is recorded
    sys.path[:0] = [p for p in os.environ.get("TUNESMITH_DRIVER_SYS_PATH", "").split(os.pathsep) if p]
    _Helper(Connection(int(sys.argv[1]))).serve()
    # Everything is recorded. The libraries' exit handlers run, but not the interpreter's teardown of
    # their thousands of modules and objects (seconds for MLflow's), which the driver would wait for.
    import atexit

    from tunesmith._internal.exit import flush_and_exit

    atexit._run_exitfuncs()
    flush_and_exit(0)


if __name__ == "__main__":
    main()
