"""The session a trainable runs in: ``report``, ``get_checkpoint``, ``get_context``.

Inside a trial, a worker process installs a session; ``tune.report``,
``train.report`` and ``session.report`` all land here. ``report`` sends the
result to the driver and waits for its answer (go on, stop or pause), as Ray
Tune's function API does.
"""
from __future__ import annotations

import contextlib
import functools
import numbers
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from typing import Any, Iterator

from tunesmith._internal.fsutil import copy_tree, trial_files_ignore
from tunesmith._internal.protocol import message_bytes, plain_metrics, result_pipeline_s
from tunesmith.tune.result import CHECKPOINT_DIR_FORMAT
from tunesmith.train._checkpoint import Checkpoint

_session: "_Session | None" = None

# At most this many results of one trial are unanswered while it is pipelined.
_MAX_IN_FLIGHT = 256


def ends_normally(exc: BaseException) -> bool:
    """Whether ``exc``, raised out of a training function, ends it as a return would (as on Ray): a
    ``StopIteration``, or ``sys.exit()`` with status 0, as scripts written for torchrun often end."""
    if isinstance(exc, TrialStopped):
        return False
    return isinstance(exc, StopIteration) or (isinstance(exc, SystemExit) and exc.code in (0, None))


class TrialStopped(BaseException):
    """Raised inside a function trainable when the driver stops or pauses its trial.

    It derives from BaseException so that a user's ``except Exception`` does not swallow it.
    """

    def __init__(self, pause: bool = False):
        super().__init__("pause" if pause else "stop")
        self.pause = pause


class TrainContext:
    """What a training function may ask about the run it is part of.

    Example:
        >>> from tunesmith import train
        >>> ctx = train.get_context()
        >>> ctx.get_world_rank(), ctx.get_world_size()
        (0, 1)
    """

    def __init__(self, trial_info=None, world_rank: int = 0, world_size: int = 1,
                 local_rank: int = 0, local_world_size: int = 1, node_rank: int = 0, metadata=None,
                 storage=None):
        self._trial_info = trial_info
        self._storage = storage  # the run's RemoteTarget (remote storage only)
        self._world_rank = world_rank
        self._world_size = world_size
        self._local_rank = local_rank
        self._local_world_size = local_world_size
        self._node_rank = node_rank
        self._metadata = metadata or {}

    def get_world_rank(self) -> int:
        return self._world_rank

    def get_world_size(self) -> int:
        return self._world_size

    def get_local_rank(self) -> int:
        return self._local_rank

    def get_local_world_size(self) -> int:
        return self._local_world_size

    def get_node_rank(self) -> int:
        return self._node_rank

    def get_trial_name(self) -> str | None:
        return self._trial_info.trial_name if self._trial_info else None

    def get_trial_id(self) -> str | None:
        return self._trial_info.trial_id if self._trial_info else None

    def get_trial_dir(self) -> str | None:
        return self._trial_info.trial_dir if self._trial_info else None

    def get_experiment_name(self) -> str | None:
        return self._trial_info.experiment_name if self._trial_info else None

    def get_trial_resources(self):
        return self._trial_info.resources if self._trial_info else None

    def get_metadata(self) -> dict:
        return dict(self._metadata)

    def get_storage(self) -> "TrialStorage | None":
        """Where the trial's files go (see :class:`TrialStorage`)."""
        return TrialStorage(self._trial_info, self._storage) if self._trial_info else None


class TrialStorage:
    """Where a trial's files go, as ``get_context().get_storage()`` describes them.

    The fields of Ray's storage context: ``storage_path``, ``storage_filesystem``
    (a ``pyarrow.fs.FileSystem``; the local one for local storage),
    ``experiment_dir_name``, ``experiment_fs_path``, ``trial_dir_name``,
    ``trial_fs_path`` (paths on ``storage_filesystem``) and
    ``trial_working_directory``; besides them ``trial_dir`` and
    ``experiment_path``, the local directories the trial writes into (the same
    as the ``*_fs_path`` ones for local storage).
    """

    def __init__(self, trial_info, remote=None):
        self._trial_info = trial_info
        self._remote = remote

    @property
    def trial_dir(self) -> str:
        return self._trial_info.trial_dir

    @property
    def experiment_path(self) -> str:
        return self._trial_info.experiment_path

    @property
    def trial_dir_name(self) -> str:
        return os.path.basename(self.trial_dir.rstrip(os.sep))

    @property
    def experiment_dir_name(self) -> str:
        return self._trial_info.experiment_name

    @property
    def trial_working_directory(self) -> str:
        return self.trial_dir

    @property
    def experiment_fs_path(self) -> str:
        return self._remote.experiment_path if self._remote is not None else self.experiment_path

    @property
    def trial_fs_path(self) -> str:
        return self._remote.trial_path(self.trial_dir_name) if self._remote is not None else self.trial_dir

    @property
    def storage_path(self) -> str:
        if self._remote is not None:
            return self.experiment_fs_path.rstrip("/").rsplit("/", 1)[0]
        return os.path.dirname(self.experiment_path.rstrip(os.sep))

    @property
    def storage_filesystem(self):
        if self._remote is not None:
            return self._remote.filesystem
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem()

    def __repr__(self) -> str:
        return f"TrialStorage(trial_fs_path={self.trial_fs_path!r})"


class _Session:
    """A trial's session in the worker process that runs it."""

    def __init__(self, conn, spec, trial_info, checkpoint: Checkpoint | None, context: TrainContext | None = None):
        self._conn = conn
        self.trial_info = trial_info
        self.config = spec.config
        self.iteration = spec.start_iteration
        self.iterations_since_restore = 0
        # Counters carry over a restore (as the class API's do); *_since_restore start again.
        self.timesteps_total: float | None = getattr(spec, "start_timesteps_total", None)
        self.episodes_total: float | None = getattr(spec, "start_episodes_total", None)
        self.timesteps_since_restore = 0
        self._time_offset = spec.start_time_total
        # What a trainable's own time_this_iter_s values added to (or took from) the clock's.
        self._time_given = 0.0
        self._start = self._last = time.time()
        self.checkpoint = checkpoint
        self.checkpoint_index = spec.checkpoint_index
        self._pending_checkpoint_dir: str | None = None
        self._buffer_length = max(1, spec.result_buffer_length)
        self._unanswered = 0
        # Pipelining (see ``_pipeline_budget``): iteration times of the unanswered results.
        self._pipeline_s = result_pipeline_s()
        self._in_flight: deque = deque()
        self._in_flight_s = 0.0
        self._poller = None
        # A thread of the trainable may report while its trial's own code returns: reports and the
        # trial's end take turns on the connection, and none is sent once the trial has ended.
        self._turn = threading.Lock()
        self._ended = False
        self._stopped = False  # the driver said stop or pause: later reports are dropped
        self._stop_pauses = False  # what it said was pause
        # Where the trial may be stopped or paused (``TrialSpec.decision_points``): a pipelined
        # result that reaches the next point of a field waits for the driver's answer.
        self._points = {field: [tuple(values), 0]
                        for field, values in (getattr(spec, "decision_points", None) or {}).items() if values}
        self.context = context or TrainContext(trial_info)
        # Remote storage: checkpoints are uploaded from here, never through the driver.
        self.remote = getattr(spec, "storage", None)
        self.storage_filesystem = self.remote.filesystem if self.remote is not None else None
        if self.context._storage is None:
            self.context._storage = self.remote

    # -- checkpoints ------------------------------------------------------------
    def _next_checkpoint_dir(self) -> str:
        return os.path.join(self.trial_info.trial_dir, CHECKPOINT_DIR_FORMAT.format(self.checkpoint_index))

    def _persist(self, checkpoint: Checkpoint) -> str:
        """Copies a reported checkpoint into the trial directory; returns its directory name."""
        if not isinstance(checkpoint, Checkpoint):
            if isinstance(checkpoint, (str, os.PathLike)):
                checkpoint = Checkpoint.from_directory(checkpoint)
            else:
                raise TypeError(
                    f"report(checkpoint=...) takes a tunesmith.train.Checkpoint, got {type(checkpoint).__name__}. "
                    "Create one with Checkpoint.from_directory(path)."
                )
        target = self._next_checkpoint_dir()
        ignore = trial_files_ignore(checkpoint.path, self.trial_info.trial_dir) if checkpoint._local else None
        if self.remote is not None:
            name = os.path.basename(target)
            if ignore is not None:  # the trial's own directory: its files, without tunesmith's
                with tempfile.TemporaryDirectory() as scratch:
                    local = os.path.join(scratch, name)
                    copy_tree(checkpoint.path, local, ignore=ignore)
                    self.checkpoint = upload_checkpoint(self.remote, self.trial_info, local, name)
            else:
                with checkpoint.as_directory() as local:
                    self.checkpoint = upload_checkpoint(self.remote, self.trial_info, local, name)
            self.checkpoint_index += 1
            return name
        if os.path.abspath(checkpoint.path) != target:
            # A directory left by a run that died before the driver saw it is stale.
            shutil.rmtree(target, ignore_errors=True)
            tmp = target + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                if checkpoint._local:
                    copy_tree(checkpoint.path, tmp, ignore=ignore)
                else:
                    checkpoint.to_directory(tmp)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # no half copy is left, and the index is not used up
                raise
        self.checkpoint_index += 1
        self.checkpoint = Checkpoint(target)
        return os.path.basename(target)

    def _commit_pending_checkpoint(self) -> str:
        """Stores the directory the last ``checkpoint_dir()`` block wrote; returns its name."""
        pending = self._pending_checkpoint_dir
        name = os.path.basename(pending)
        if self.remote is not None:
            self.checkpoint = upload_checkpoint(self.remote, self.trial_info, pending, name)
            shutil.rmtree(pending, ignore_errors=True)
        else:
            self.checkpoint = Checkpoint(pending)
        self.checkpoint_index += 1
        self._pending_checkpoint_dir = None
        return name

    def final_checkpoint(self) -> str | None:
        """The checkpoint a ``checkpoint_dir()`` block wrote after the function's last report (the older
        API saves one as the function ends), stored now; its name, or None when there is none."""
        with self._turn:
            if self._pending_checkpoint_dir is None:
                return None
            if self._unanswered:
                self._drain()
            return self._commit_pending_checkpoint()

    @contextlib.contextmanager
    def checkpoint_dir(self, step: int | None = None) -> Iterator[str]:
        path = self._next_checkpoint_dir()
        # What is there was never stored (an attempt that failed inside its block, before the driver
        # saw it): as on Ray, the block starts from an empty directory.
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
        yield path
        self._pending_checkpoint_dir = path

    # -- results ------------------------------------------------------------------
    def end(self) -> None:
        """Marks the trial ended (before the worker sends its end): a later report from another
        thread is dropped instead of being sent after it (where it would take the next trial's
        messages)."""
        with self._turn:
            self._ended = True

    def report(self, metrics: dict, checkpoint: Checkpoint | None = None) -> None:
        with self._turn:
            if self._ended:
                return
            if self._stopped:
                # A report in a ``finally`` block, after the report that said stop: as on Ray, where
                # the session has ended, it returns at once and is dropped (the driver, done with
                # the trial, answers no more).
                if self._stopped is True:
                    self._stopped = "warned"
                    warnings.warn("This trial was told to stop; report() after that is ignored.",
                                  RuntimeWarning, stacklevel=3)
                return
            self._report(metrics, checkpoint)

    def _report(self, metrics: dict, checkpoint: Checkpoint | None = None) -> None:
        now = time.time()
        if self._unanswered and (checkpoint is not None or self._pending_checkpoint_dir is not None):
            # A checkpoint is persisted only after the driver answered every earlier result:
            # none is written after a stop or pause was decided.
            self._drain()
        checkpoint_dir_name = None
        if checkpoint is not None or self._pending_checkpoint_dir is not None:
            # Metrics that cannot be sent fail the report before its checkpoint is stored (a
            # checkpoint the driver never hears of would be neither used nor deleted).
            message_bytes(metrics)
        counters = (self.iteration, self.iterations_since_restore, self.timesteps_total,
                    self.timesteps_since_restore, self.episodes_total, self._time_given)
        if checkpoint is not None:
            checkpoint_dir_name = self._persist(checkpoint)
        elif self._pending_checkpoint_dir is not None:
            checkpoint_dir_name = self._commit_pending_checkpoint()
        self.iteration += 1
        self.iterations_since_restore += 1
        result = dict(metrics)
        # As in the class API: a user's training_iteration and totals are kept, and the
        # *_this_iter counts add up into timesteps_total / episodes_total.
        if "training_iteration" not in result:
            result["training_iteration"] = self.iteration
        steps = result.get("timesteps_this_iter")
        if steps is not None:
            self.timesteps_total = (self.timesteps_total or 0) + steps
            self.timesteps_since_restore += steps
        if self.timesteps_total is not None and "timesteps_total" not in result:
            result["timesteps_total"] = self.timesteps_total
        episodes = result.get("episodes_this_iter")
        if episodes is not None:
            self.episodes_total = (self.episodes_total or 0) + episodes
        if self.episodes_total is not None and "episodes_total" not in result:
            result["episodes_total"] = self.episodes_total
        result["timesteps_since_restore"] = self.timesteps_since_restore
        took = now - self._last
        given = result.get("time_this_iter_s")
        if isinstance(given, (int, float)) and not isinstance(given, bool):
            # The trainable's own iteration time replaces the clock's, in the totals too (as Ray's).
            self._time_given += given - took
        else:
            result["time_this_iter_s"] = took
        result["time_since_restore"] = now - self._start + self._time_given
        result["time_total_s"] = self._time_offset + result["time_since_restore"]
        result["iterations_since_restore"] = self.iterations_since_restore
        result["timestamp"] = int(now)
        if "torch" in sys.modules:
            plain_metrics(result)
        conn = self._conn
        try:
            conn.send(("r", result, checkpoint_dir_name))
        except BaseException:
            # Not sent (metrics that cannot be pickled): a caught error leaves no gap in the iterations.
            (self.iteration, self.iterations_since_restore, self.timesteps_total,
             self.timesteps_since_restore, self.episodes_total, self._time_given) = counters
            raise
        self._unanswered += 1
        pipeline = self._pipeline_s
        if (pipeline > 0 and not (self._points and self._at_decision_point(result))
                and checkpoint_dir_name is None and took < pipeline):
            # A short iteration: go on while the unanswered results took less than the budget
            # together (and not too many are unanswered); take the answers that arrived.
            self._in_flight.append(took)
            self._in_flight_s += took
            while self._unanswered and (self._in_flight_s >= pipeline or self._unanswered >= _MAX_IN_FLIGHT
                                        or self._answer_waiting()):
                self._answer(conn.recv())
        elif pipeline > 0:
            self._in_flight.append(took)
            self._in_flight_s += took
            self._drain()  # a long iteration (or a checkpoint): wait for the decision, as without pipelining
        else:
            # Wait for the driver's answer; with result buffering, go on while fewer than
            # ``result_buffer_length`` results are unanswered and take the answers that arrived.
            while self._unanswered >= self._buffer_length or (self._unanswered and conn.poll(0)):
                self._answer(conn.recv())
        self._last = time.time()

    def _at_decision_point(self, result: dict) -> bool:
        """Whether ``result`` reaches the next decision point of a field (and moves past it)."""
        reached = False
        for field, entry in self._points.items():
            values, i = entry
            if i >= len(values):
                continue
            value = result.get(field)
            try:
                if value is None or value < values[i]:
                    continue
                while i < len(values) and value >= values[i]:
                    i += 1
            except TypeError:  # not a number: nothing can be decided on it either
                continue
            entry[1] = i
            reached = True
        return reached

    def _answer_waiting(self) -> bool:
        """Whether an answer from the driver can be read now (``Connection.poll`` builds a selector per call)."""
        poller = self._poller
        if poller is None:
            import select

            poller = self._poller = select.poll()
            poller.register(self._conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _drain(self) -> None:
        """Waits for the driver's answers to every result sent so far."""
        conn = self._conn
        while self._unanswered:
            self._answer(conn.recv())

    def _answered(self, count: int) -> None:
        self._unanswered -= count
        in_flight = self._in_flight
        for _ in range(min(count, len(in_flight))):
            self._in_flight_s -= in_flight.popleft()
        if not in_flight:
            self._in_flight_s = 0.0

    def _answer(self, reply) -> None:
        if reply == "c":
            self._answered(1)
            return
        if type(reply) is tuple and reply[0] == "c":  # answers to several results at once
            self._answered(reply[1])
            return
        if reply == "s" or (type(reply) is tuple and reply[0] == "s"):
            self._stopped = True
            raise TrialStopped(pause=False)
        if reply == "p":
            self._stopped = self._stop_pauses = True
            raise TrialStopped(pause=True)
        raise RuntimeError(f"Unexpected message from the driver: {reply!r}")


def upload_checkpoint(remote, trial_info, local_dir: str, name: str) -> Checkpoint:
    """Uploads a checkpoint directory from this process straight to the experiment's store.

    The upload is complete before the checkpoint is reported, so no saved state
    ever names a checkpoint the store does not hold. Files left under the same
    name by a run that died before reporting it are removed first.

    Raises:
        StorageError: The store kept refusing the upload for ``sync_timeout`` seconds.
    """
    from tunesmith._internal.storage import delete_dir, upload_dir

    dirname = os.path.basename(os.path.normpath(trial_info.trial_dir))
    target = f"{remote.trial_path(dirname)}/{name}"
    delete_dir(remote.filesystem, target, remote.timeout)
    upload_dir(local_dir, remote.filesystem, target, remote.timeout)
    return Checkpoint(target, remote.filesystem)


def _get_session() -> "_Session | None":
    return _session


def _set_session(session: "_Session | None") -> None:
    global _session
    _session = session
    if session is not None and _any_leftover:
        _forget_idle_leftovers()


_warned_outside = False
# The class of the Trainable this worker process runs a trial of (None otherwise): report() from
# its step() would be lost, so it is refused there.
class_trial: "type | None" = None

# Threads that were running when a trial of this process ended. A report from one of them
# during a later trial (one the earlier trial started and left running) is not that trial's.
_leftover_threads: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()
_any_leftover = False  # a plain flag: report() checks it on every call, the set only when it is set
_warned_leftover = False


def note_threads_at_trial_end() -> None:
    """Records the threads still running the trial's code as it ends (see :func:`report`).

    A thread that only waits in the standard library (an idle thread of a pool the
    trainable keeps at module level) runs none of the ended trial's code: work that a
    later trial hands it reports for that trial.
    """
    global _any_leftover
    current = threading.current_thread()
    frames = sys._current_frames()
    try:
        for thread in threading.enumerate():
            if thread is current or thread.name.startswith("tunesmith-"):
                continue
            frame = frames.get(thread.ident)
            if frame is not None and _only_standard_library(frame):
                continue
            _leftover_threads.add(thread)
            _any_leftover = True
    finally:
        # The frames include this one: kept in its own locals, it would keep the trial's frames below
        # it (and the trainable copy they hold) alive until a garbage collection.
        frame = frames = None


def _forget_idle_leftovers() -> None:
    """As a trial starts: a thread left running by an earlier trial that has since gone idle (a pool
    thread that finished that trial's work) may report for this trial when it hands it work."""
    global _any_leftover
    frames = sys._current_frames()
    try:
        for thread in list(_leftover_threads):
            frame = frames.get(thread.ident)
            if frame is None or _only_standard_library(frame):
                _leftover_threads.discard(thread)
    finally:
        frame = frames = None  # (see note_threads_at_trial_end)
    _any_leftover = bool(_leftover_threads)


@functools.lru_cache(maxsize=1)
def _standard_library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(standard library directories, site-packages directories)`` (the latter may lie inside the former)."""
    import sysconfig

    paths = sysconfig.get_paths()

    def dirs(*keys):
        return tuple({os.path.join(os.path.realpath(paths[k]), "") for k in keys if paths.get(k)})

    return dirs("stdlib", "platstdlib"), dirs("purelib", "platlib")


def _only_standard_library(frame) -> bool:
    """Whether every frame of a thread's stack is the standard library's."""
    stdlib, site = _standard_library_dirs()
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<frozen"):
            real = os.path.realpath(filename)
            if not real.startswith(stdlib) or real.startswith(site):
                return False
        frame = frame.f_back
    return True


def report(metrics: dict | float | None = None, *, checkpoint: Checkpoint | None = None,
           checkpoint_dir_name: str | None = None, **kwargs: Any) -> None:
    """Reports metrics (and optionally a checkpoint) for the current iteration.

    Accepts both forms Ray has used: ``report({"loss": 0.1}, checkpoint=ckpt)``
    and the older keyword form ``report(loss=0.1)``.

    Args:
        metrics: A dict of metrics (a bare number is reported as ``_metric``).
        checkpoint: A :class:`~tunesmith.train.Checkpoint` to persist with this result.
        checkpoint_dir_name: Accepted for Ray's signature; checkpoints keep tunesmith's
            ``checkpoint_NNNNNN`` names (the order of a trial's checkpoints rests on them).

    Raises:
        TypeError: Metrics given both as a dict and as keywords (a misspelled ``checkpoint=``).
    """
    if checkpoint_dir_name is not None:
        warnings.warn("report(checkpoint_dir_name=...) is ignored: checkpoints are named checkpoint_NNNNNN.",
                      stacklevel=2)
    if metrics is not None and kwargs:
        raise TypeError(
            f"report() got unexpected keyword argument(s) {', '.join(map(repr, kwargs))}: with a dict of "
            "metrics, the only keywords are checkpoint= (and checkpoint_dir_name=). Put metrics in the dict."
        )
    if metrics is None:
        metrics = kwargs
    elif not isinstance(metrics, dict):
        if isinstance(metrics, (str, bytes)) or not isinstance(metrics, numbers.Number):
            raise TypeError(
                f"report() takes a dict of metrics, such as report({{'loss': 0.1}}), or a single number; "
                f"got {type(metrics).__name__} {metrics!r}."
            )
        metrics = {"_metric": metrics}
    session = _session
    if _any_leftover and threading.current_thread() in _leftover_threads:
        global _warned_leftover
        if not _warned_leftover:
            _warned_leftover = True
            warnings.warn(
                "report() was called from a thread that an earlier trial in this worker process started "
                "and left running; its metrics are ignored rather than given to the trial running now. "
                "End a trial's threads before it returns.",
                stacklevel=2,
            )
        return
    if session is None:
        if class_trial is not None:
            raise RuntimeError(
                f"report() was called in a trial of {class_trial.__name__}, a tune.Trainable class: a class "
                "trainable's metrics are the dict its step() returns, and its checkpoints are what "
                "save_checkpoint() writes (return {'should_checkpoint': True, ...} to save one now). "
                "report() is for function trainables."
            )
        global _warned_outside
        if not _warned_outside:
            warnings.warn(
                "report() was called outside of a tunesmith trial; the metrics are ignored. "
                "Run the function with tune.Tuner(...).fit() or a trainer.",
                stacklevel=2,
            )
            _warned_outside = True
        return
    session.report(metrics, checkpoint=checkpoint)


def get_checkpoint() -> Checkpoint | None:
    """Returns the checkpoint to resume from: the latest reported one, or the one the trial was restored with."""
    return _session.checkpoint if _session is not None else None


def get_context() -> TrainContext:
    """Returns the :class:`TrainContext` of the running trial (ranks are 0 of 1 in a Tune trial)."""
    return _session.context if _session is not None else TrainContext()


def get_trial_resources():
    """Returns the ``PlacementGroupFactory`` of the running trial."""
    return get_context().get_trial_resources()


def get_trial_dir() -> str | None:
    return get_context().get_trial_dir()


def get_trial_name() -> str | None:
    return get_context().get_trial_name()


def get_trial_id() -> str | None:
    return get_context().get_trial_id()


def get_experiment_name() -> str | None:
    return get_context().get_experiment_name()


def get_world_rank() -> int:
    return get_context().get_world_rank()


def get_world_size() -> int:
    return get_context().get_world_size()


def get_local_rank() -> int:
    return get_context().get_local_rank()


def get_dataset_shard(name: str | None = None):
    """This worker's share of a trainer's ``datasets[name]``; a Tune trial has none."""
    shard = getattr(_session, "get_dataset_shard", None)
    if shard is not None:
        return shard(name)
    raise RuntimeError(
        "get_dataset_shard() works in the workers of a trainer given datasets={...} "
        "(DataParallelTrainer, TorchTrainer); pass data to a Tune function with tune.with_parameters(...)."
    )


@contextlib.contextmanager
def checkpoint_dir(step: int | None = None) -> Iterator[str]:
    """Older API: yields a directory to write a checkpoint into; it is attached to the next report."""
    if _session is None:
        raise RuntimeError("tune.checkpoint_dir() must be used inside a trial's function.")
    with _session.checkpoint_dir(step) as path:
        yield path


class ReporterStopped(TrialStopped, StopIteration):
    """What a ``reporter(...)`` call raises once the trial is stopped: a ``StopIteration`` (seed 003),
    so an ``except StopIteration`` block of the trainable runs its clean-up."""


class StatusReporter:
    """The ``reporter`` handed to ``def trainable(config, reporter)`` functions (older API).

    Calling it reports metrics: ``reporter(mean_loss=0.1)``.

    Raises:
        StopIteration: The trial has been signalled to stop (or to pause).
    """

    def __call__(self, _metric=None, **kwargs) -> None:
        if _metric is not None:
            kwargs["_metric"] = _metric
        try:
            report(kwargs)
        except ReporterStopped:
            raise
        except TrialStopped as stopped:
            raise ReporterStopped(stopped.pause) from None

    @property
    def logdir(self) -> str | None:
        return get_trial_dir()

    @property
    def trial_name(self) -> str | None:
        return get_trial_name()

    @property
    def trial_id(self) -> str | None:
        return get_trial_id()

    @property
    def trial_resources(self):
        return get_trial_resources()
