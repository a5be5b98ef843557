"""One training worker of a group: its session, and the body it runs.

A worker is forked from the process that supervises the group (the trial's
worker process), or started fresh as ``python -m
tunesmith.train._internal.group_worker <fd>``. Either way it runs
:func:`run_worker`: installs a session whose ``report`` sends the metrics to
the supervisor without waiting (``train.report`` is not a barrier), runs the
backend's set-up, the training function and the backend's tear-down, and
sends what the function returned or raised.

Messages to the supervisor (over a socket pair, each pickled with the plain
pickler: ``Connection.send`` would hand torch tensors over through shared
memory, which the receiving processes cannot all open):
    ``(REPORT, metrics, staged)``           one ``train.report``; ``staged``: a checkpoint was staged
    ``(DONE, pickled_return_value, time)``  the function returned (None for None)
    ``(ERROR, traceback, pickled_exception, time)``   the function or the set-up raised
"""
from __future__ import annotations

import io
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Callable

from tunesmith._internal import process_state

REPORT = "r"
DONE = "d"
ERROR = "e"

_TUNESMITH_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_INTERNAL_DIRS = (
    os.path.join(_TUNESMITH_DIR, "_internal") + os.sep,
    os.path.join(_TUNESMITH_DIR, "train", "_internal") + os.sep,
)


@dataclass
class WorkerSpec:
    """All one worker needs to run."""

    fn: Callable
    takes_config: bool
    config: dict
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    trial_info: Any
    checkpoint: Any
    staging_dir: str
    backend: Any
    env: dict[str, str] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    datasets: dict | None = None
    dataset_config: Any = None  # a DataConfig: which datasets are split (None: all)
    gpu_ids: list[str] = field(default_factory=list)
    parent_pid: int = 0
    storage: Any = None  # the run's RemoteTarget (remote storage only)
    cwd: str | None = None  # the trial's working directory (its own directory unless RAY_CHDIR_TO_TRIAL_DIR=0)


def send(conn: Connection, msg: tuple) -> None:
    conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))


def recv(conn: Connection) -> tuple:
    return pickle.loads(conn.recv_bytes())


class WorkerSession:
    """The session inside a training worker: ``report``, ``get_checkpoint``, ``get_context``, shards.

    ``tunesmith.train.report`` and friends find it through the same hook as a
    Tune trial's session.
    """

    def __init__(self, spec: WorkerSpec, conn: Connection):
        from tunesmith._internal.session import TrainContext

        self._spec = spec
        self._conn = conn
        self.trial_info = spec.trial_info
        self.config = spec.config
        self.checkpoint = spec.checkpoint
        self.gpu_ids = list(spec.gpu_ids)
        self.reports = 0
        self.context = TrainContext(
            spec.trial_info,
            world_rank=spec.rank,
            world_size=spec.world_size,
            local_rank=spec.local_rank,
            local_world_size=spec.local_world_size,
            node_rank=spec.node_rank,
            metadata=spec.metadata,
            storage=getattr(spec, "storage", None),
        )
        self._shards: dict[str, Any] = {}
        self._split: list[Any] = []  # the shards that are this worker's part of a dataset

    def is_split_shard(self, data: Any) -> bool:
        """Whether ``data`` is a shard get_dataset_shard() gave, split among the workers."""
        return any(data is part for part in self._split)

    def report(self, metrics: dict, checkpoint=None) -> None:
        from tunesmith.train._checkpoint import Checkpoint
        from tunesmith.train._internal import checkpoints

        if not isinstance(metrics, dict):
            raise TypeError(f"train.report() takes a dict of metrics, got {type(metrics).__name__}.")
        self.reports += 1
        staged = False
        if checkpoint is not None:
            if isinstance(checkpoint, (str, os.PathLike)):
                checkpoint = Checkpoint.from_directory(checkpoint)
            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(
                    f"train.report(checkpoint=...) takes a tunesmith.train.Checkpoint, got "
                    f"{type(checkpoint).__name__}. Create one with Checkpoint.from_directory(path)."
                )
            path = checkpoints.staged_path(self._spec.staging_dir, self.reports, self._spec.rank)
            checkpoints.stage(checkpoint, path, getattr(self._spec.trial_info, "trial_dir", None))
            staged = True
            # As on Ray, get_checkpoint() is now this report's checkpoint: this worker's persisted copy
            # (the trial's checkpoint of the round links the same files once every rank reported).
            self.checkpoint = Checkpoint(path)
        try:
            send(self._conn, (REPORT, _plain_metrics(metrics), staged))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(f"train.report(): the metrics cannot be serialised ({exc}); report numbers, "
                            "strings, lists and dicts of them.") from exc

    def checkpoint_dir(self, step=None):
        raise RuntimeError(
            "tune.checkpoint_dir() does not work inside a trainer's workers; pass "
            "checkpoint=Checkpoint.from_directory(path) to train.report() instead."
        )

    def get_dataset_shard(self, name: str | None = None):
        datasets = self._spec.datasets or {}
        if name is None:
            if len(datasets) != 1:
                raise ValueError(
                    f"get_dataset_shard() needs a dataset name when the trainer has {len(datasets)} "
                    f"datasets ({sorted(datasets)}); pass datasets={{'train': ...}} to the trainer and "
                    "call get_dataset_shard('train')."
                )
            name = next(iter(datasets))
        if name not in datasets:
            raise KeyError(
                f"get_dataset_shard({name!r}): the trainer has no dataset {name!r}; its datasets are "
                f"{sorted(datasets)}. Pass it as datasets={{{name!r}: ...}} to the trainer."
            )
        if name not in self._shards:
            from tunesmith.train._internal.dataset import shard

            config = self._spec.dataset_config
            if config is None or config.splits(name):
                self._shards[name] = shard(datasets[name], self._spec.rank, self._spec.world_size)
                if self._spec.world_size > 1:
                    self._split.append(self._shards[name])
            else:
                self._shards[name] = datasets[name]  # not split (DataConfig): every worker reads it whole
        return self._shards[name]


def _plain_metrics(metrics: dict) -> dict:
    """A copy of the metrics with torch tensors turned into Python numbers (or lists of them).

    The driver need not import torch to read them, and loggers can write them.
    """
    out = dict(metrics)
    for key, value in out.items():
        if isinstance(value, dict):
            out[key] = _plain_metrics(value)
        elif type(value).__module__.startswith("torch") and hasattr(value, "numel"):
            try:
                out[key] = value.item() if value.numel() == 1 else value.tolist()
            except Exception:
                pass
    return out


def format_worker_traceback(exc: BaseException) -> str:
    """The traceback of a worker's error without tunesmith's own frames (all of them with
    ``RAY_AIR_FULL_TRACEBACKS=1``)."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    if os.environ.get("RAY_AIR_FULL_TRACEBACKS", "0") != "1":
        user = [f for f in te.stack if not os.path.abspath(f.filename).startswith(_INTERNAL_DIRS)]
        if user:
            te.stack = traceback.StackSummary.from_list(user)
    return "".join(te.format())


def _pickle_exception(exc: BaseException) -> bytes | None:
    import cloudpickle

    try:
        data = cloudpickle.dumps(exc)
        cloudpickle.loads(data)
        return data
    except Exception:
        return None


class _WholeLines(io.TextIOBase):
    """A worker's ``sys.stdout`` or ``sys.stderr``: each line goes to the stream it shares with
    the other ranks in one write (so lines of different ranks never mix), tagged with the rank."""

    def __init__(self, stream, prefix: str):
        self._fd = stream.fileno()
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._prefix = prefix
        self._partial = ""
        self._at_line_start = True
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return self._encoding

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def _emit(self, text: str) -> None:
        data = text.encode(self._encoding, "backslashreplace")
        while data:
            data = data[os.write(self._fd, data):]

    def write(self, text: str) -> int:
        with self._lock:
            data = self._partial + text
            if "\n" not in data:
                self._partial = data
                return len(text)
            head, _, self._partial = data.rpartition("\n")
            lines = head.split("\n")
            first = (self._prefix if self._at_line_start else "") + lines[0] + "\n"
            self._emit(first + "".join(f"{self._prefix}{line}\n" for line in lines[1:]))
            self._at_line_start = True
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self._emit((self._prefix if self._at_line_start else "") + self._partial)
                self._partial = ""
                self._at_line_start = False


def _tag_output(spec: WorkerSpec) -> None:
    """Routes this worker's prints through :class:`_WholeLines` (once per process)."""
    prefix = f"[rank {spec.rank}] " if spec.world_size > 1 else ""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _WholeLines):
            stream._prefix = prefix
            continue
        try:
            stream.flush()
            stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # not a real file (a test's capture): left alone
        setattr(sys, name, _WholeLines(stream, prefix))


def run_worker(spec: WorkerSpec, conn: Connection) -> int:
    """Runs one worker to the end; returns the process exit code."""
    from tunesmith._internal import session as S
    from tunesmith._internal import trial_hooks

    os.environ.update(spec.env)
    if spec.cwd and os.getcwd() != spec.cwd:
        # A worker that did not start in it (a Ray actor, maybe on another node): as the trial's process.
        try:
            os.makedirs(spec.cwd, exist_ok=True)
            os.chdir(spec.cwd)
        except OSError:
            pass
    process_state.apply_thread_count()  # torch imported before this worker started follows its OMP_NUM_THREADS
    _tag_output(spec)
    sess = WorkerSession(spec, conn)
    S._set_session(sess)
    try:
        spec.backend.on_worker_start(sess.context)
        try:
            try:
                value = spec.fn(spec.config) if spec.takes_config else spec.fn()
            except (StopIteration, SystemExit) as exc:
                if not S.ends_normally(exc):
                    raise
                value = None
        except BaseException:
            # setup_mlflow/setup_wandb runs opened in this worker end with it (the process leaves
            # through os._exit, past the trackers' own exit handlers).
            trial_hooks.run_trial_end_hooks(trial_hooks.FAILED)
            raise
        trial_hooks.run_trial_end_hooks(trial_hooks.FINISHED)
        spec.backend.on_worker_shutdown(sess.context)
        try:
            import cloudpickle

            payload = None if value is None else cloudpickle.dumps(value)
        except Exception as exc:
            raise TypeError(
                f"The training function returned a {type(value).__name__} that cannot be serialised "
                f"({exc}); return something picklable, or nothing."
            ) from exc
        send(conn, (DONE, payload, time.time()))
        return 0
    except BaseException as exc:
        failed_at = time.time()
        try:
            send(conn, (ERROR, format_worker_traceback(exc), _pickle_exception(exc), failed_at))
        except OSError:
            pass
        return 1
    finally:
        S._set_session(None)


def die_with_parent(parent_pid: int) -> None:
    """On Linux, asks the kernel to kill this worker when the supervising process dies."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent_pid and os.getppid() != parent_pid:  # it died before the request took effect
        os._exit(1)


def main() -> None:
    """Entry point of a worker started as a fresh process: reads its spec from the socket."""
    import cloudpickle

    from tunesmith._internal.debug import stacks_on_request
    from tunesmith._internal.exit import leave_stop_signals_to_the_driver

    leave_stop_signals_to_the_driver()
    stacks_on_request()
    conn = Connection(int(sys.argv[1]))
    sys.path[:0] = [p for p in os.environ.get("TUNESMITH_DRIVER_SYS_PATH", "").split(os.pathsep) if p]
    try:
        spec = cloudpickle.loads(conn.recv_bytes())
    except BaseException as exc:
        send(conn, (ERROR, format_worker_traceback(exc), _pickle_exception(exc), time.time()))
        sys.exit(1)
    die_with_parent(spec.parent_pid)
    code = run_worker(spec, conn)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
