"""Shared pieces of the result loggers: flattening, cheap JSON, per-trial file handles."""
from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import threading
import time
from typing import Any, Callable

from tunesmith._internal.fsutil import ensure_dir
from tunesmith.tune.utils.serialization import to_jsonable

logger = logging.getLogger(__name__)

# Seconds between flushes of the buffered per-trial files, checked at the end of each driver step.
DEFAULT_FLUSH_PERIOD_S = 2.0
# Above this many open per-trial files in one callback, the least recently opened are closed
# (and reopened in append mode when they are written again), to stay below the process's fd limit.
MAX_OPEN_FILES = 256


def max_open_files() -> int:
    """Open files one logger callback may keep: a share of the process's descriptor limit.

    The three default loggers together take at most a third of what is left after
    a reserve; the worker processes' pipes get the rest (``backend.local.worker_limit``).
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return MAX_OPEN_FILES
    if soft == getattr(resource, "RLIM_INFINITY", -1):
        return MAX_OPEN_FILES
    return max(4, min(MAX_OPEN_FILES, (soft - 64) // 3 // 3))

# One encoder, reused: numpy scalars, arrays and checkpoints are turned into JSON by ``default``;
# NaN and infinity are written as Python's json writes them.
_ENCODER = json.JSONEncoder(default=to_jsonable, allow_nan=True)


try:
    # The C encoder made once (``JSONEncoder.encode`` makes one per call), without the
    # circular-reference bookkeeping: a circular result fails with RecursionError instead.
    from json.encoder import c_make_encoder, encode_basestring_ascii

    _C_ENCODE = c_make_encoder(None, to_jsonable, encode_basestring_ascii, None, ": ", ", ", False, False, True)
except (ImportError, TypeError):  # an interpreter without the C accelerator
    _C_ENCODE = None


def dumps(value: Any) -> str:
    """JSON text of ``value``; falls back to a full conversion when the fast path fails."""
    try:
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(value, 0))
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(to_jsonable(value))


def flatten(d: dict, delimiter: str = "/", exclude: tuple = ()) -> dict:
    """Flattens nested dicts, joining keys with ``delimiter``; top-level keys in ``exclude`` are dropped."""
    out: dict = {}
    for key, value in d.items():
        if key in exclude:
            continue
        kind = type(value)
        if kind is dict:
            if value:
                for sub_key, sub_value in flatten(value, delimiter).items():
                    out[f"{key}{delimiter}{sub_key}"] = sub_value
                continue
        elif kind in _LEAF_TYPES:
            pass  # the common values, without an isinstance check each
        elif isinstance(value, dict) and value:
            for sub_key, sub_value in flatten(dict(value), delimiter).items():
                out[f"{key}{delimiter}{sub_key}"] = sub_value
            continue
        out[key] = value
    return out


_LEAF_TYPES = frozenset((float, int, str, bool, type(None), list, tuple))


class WriteScope:
    """One experiment's result writes: its files with rows not yet handed to the I/O thread, and
    the first of its writes that failed.

    Each run of the controller has its own (see :func:`run_scope`), so that experiments run in
    threads of one process neither flush each other's files, nor wait for each other's disk,
    nor fail with each other's errors. Its writes are made in order by its own I/O thread,
    which runs while the experiment does.
    """

    __slots__ = ("dirty", "error", "params", "writer", "ended_unwaited")

    def __init__(self):
        self.dirty: dict[int, "TrialFile"] = {}  # touched by the experiment's driver thread only
        # The config object whose params files each trial directory holds (driver thread), so
        # that a logger at trial start does not write the same files again.
        self.params: dict[str, Any] = {}
        # Set by the I/O thread; the driver ends the run with it rather than carrying on with
        # incomplete logs.
        self.error: BaseException | None = None
        self.writer = _Writer()
        # True while a trial's files were closed (its end logged) and nobody has waited for them yet.
        self.ended_unwaited = False


_LOCAL = threading.local()


def current_scope() -> WriteScope:
    """The write scope of the experiment that runs in this thread."""
    return getattr(_LOCAL, "scope", None) or _PROCESS_SCOPE


class run_scope:
    """Makes ``scope`` this thread's write scope for the duration of a ``with`` block."""

    def __init__(self, scope: WriteScope):
        self._scope = scope

    def __enter__(self) -> WriteScope:
        self._previous = getattr(_LOCAL, "scope", None)
        _LOCAL.scope = self._scope
        return self._scope

    def __exit__(self, *exc_info) -> None:
        _LOCAL.scope = self._previous
        # The run is over: its I/O thread ends once it has written what it was given (a later
        # write, say of a logger used by hand, starts it again).
        self._scope.writer.stop()


# Writers whose thread is running: what a wait outside any experiment waits for.
_LIVE_WRITERS: set["_Writer"] = set()
_LIVE_LOCK = threading.Lock()


class _Writer:
    """A background thread that performs one write scope's file system calls in order.

    Opening, writing, flushing and closing files happen here, so that the
    driver's event loop never waits on the disk; :func:`wait_for_writes`
    blocks until everything submitted so far is on disk (in the OS). A call
    that fails records its error in the scope it was submitted with. The
    thread starts with the first write and ends at :meth:`stop` once its
    queue is empty.
    """

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False  # the thread ends as soon as its queue is empty

    def submit(self, scope: WriteScope | None, fn: Callable, *args: Any) -> None:
        # Under the lock, so that the thread's decision to end (on an empty queue) and this put
        # are ordered: either the thread sees the item, or this sees that no thread runs.
        with self._lock:
            self._queue.put((scope, fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tunesmith-logger-io", daemon=True)
                with _LIVE_LOCK:
                    _LIVE_WRITERS.add(self)
                self._thread.start()

    def stop(self) -> None:
        """Ends the thread as soon as it has performed everything submitted (now or later)."""
        with self._lock:
            if self._thread is not None:
                self._stopping = True
                self._queue.put((None, None, ()))  # wakes it, should it wait for work

    def _run(self) -> None:
        while True:
            scope, fn, args = self._queue.get()
            if fn is not None:
                try:
                    fn(*args)
                except Exception as exc:  # recorded; the driver of its experiment fails the run with it
                    where = getattr(getattr(fn, "__self__", None), "path", None)
                    logger.error("Writing results%s failed: %s", f" to {where}" if where else "", exc)
                    if scope is not None and scope.error is None:
                        scope.error = ResultWriteError(
                            f"Writing results{f' to {where}' if where else ''} failed: {type(exc).__name__}: {exc}"
                        )
            if self._stopping:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        self._stopping = False
                        with _LIVE_LOCK:
                            _LIVE_WRITERS.discard(self)
                        return

    def wait(self) -> None:
        if self._thread is None:
            return
        done = threading.Event()
        self.submit(None, done.set)
        done.wait()


def _forget_writers_in_child() -> None:
    """In a forked child the writers' threads do not exist, and what they had queued is the parent's."""
    global _LIVE_LOCK
    for writer in list(_LIVE_WRITERS):
        writer._thread = None
        writer._stopping = False
        writer._lock = threading.Lock()
        writer._queue = queue.SimpleQueue()
    _LIVE_WRITERS.clear()
    _LIVE_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers_in_child)


class ResultWriteError(OSError):
    """A result row could not be written to its file."""


# Writes made outside a controller run (a logger driven by hand).
_PROCESS_SCOPE = WriteScope()


def wait_for_writes() -> None:
    """Blocks until every result file write submitted so far has been performed.

    In an experiment's thread, its own writes; elsewhere, those of every experiment.
    """
    scope = current_scope()
    scope.ended_unwaited = False
    if scope is not _PROCESS_SCOPE:
        scope.writer.wait()
        return
    with _LIVE_LOCK:
        writers = list(_LIVE_WRITERS)
    for writer in writers:
        writer.wait()


def note_trial_files_closed() -> None:
    """Records that a trial's files were handed to the I/O thread (see :func:`wait_for_trial_files`)."""
    current_scope().ended_unwaited = True


def wait_for_trial_files() -> None:
    """Blocks until the files of trials that started or ended so far are on disk.

    Neither the driver nor the loggers wait for a trial's directory, params files
    or closed result files (with thousands of short trials those waits would
    dominate); the callback list calls this before a callback that is not a result
    logger hears of a trial's start or end, so such a callback finds them complete.
    """
    if current_scope().ended_unwaited:
        wait_for_writes()


def write_error() -> BaseException | None:
    """The first failed result write of the experiment running in this thread, if any."""
    return current_scope().error


def commit_results() -> None:
    """Writes every buffered result row of this thread's experiment to its file, and waits until it is there.

    The driver calls this before it saves the experiment state, so that the
    rows a saved state implies are on storage (the durability contract).

    Raises:
        ResultWriteError: A row of this experiment could not be written.
    """
    scope = current_scope()
    for trial_file in list(scope.dirty.values()):
        trial_file.flush()
    scope.writer.wait()
    if scope.error is not None:
        raise scope.error


def cut_result_lines(path: str, rows: int) -> None:
    """Keeps the first ``rows`` complete JSON lines of ``path`` (a ``result.json``).

    A line cut short by a crash is dropped with everything after it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    kept: list[bytes] = []
    for line in data.split(b"\n"):
        if len(kept) >= rows:
            break
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            break
        kept.append(line + b"\n")
    new = b"".join(kept)
    if new != data:
        write_atomic(path, new)


def cut_csv_rows(path: str, rows: int) -> None:
    """Keeps the header and the first ``rows`` records of ``path`` (a ``progress.csv``)."""
    import csv
    import io

    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        return
    header, body = records[0], records[1:]
    # A record cut short by a crash has fewer fields than the header.
    complete = []
    for record in body:
        if len(record) != len(header):
            break
        complete.append(record)
    kept = complete[:rows]
    if rows == 0:
        new = ""
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(kept)
        new = buffer.getvalue()
    if new != text:
        write_atomic(path, new.encode("utf-8"))


def submit(fn: Callable, *args: Any) -> None:
    """Runs ``fn(*args)`` in the logger I/O thread, after every write submitted before it.

    An error it raises fails the experiment running in this thread.
    """
    scope = current_scope()
    scope.writer.submit(scope, fn, *args)


def write_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp{os.getpid()}"  # the form storage's uploads pass over (storage.is_own_temporary)
    fd = os.open(tmp, _REPLACE, 0o666)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def params_written(logdir: str, config: dict) -> bool:
    """True when ``params.json``/``params.pkl`` in ``logdir`` were written for this very config object."""
    return current_scope().params.get(logdir) is config


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _write_params_files(logdir: str, config: dict) -> None:
    from tunesmith.tune.result import EXPR_PARAM_FILE, EXPR_PARAM_PICKLE_FILE

    text = json.dumps(to_jsonable(config), indent=2, sort_keys=True).encode("utf-8")
    try:
        write_atomic(os.path.join(logdir, EXPR_PARAM_FILE), text)
    except FileNotFoundError:  # the trial's directory is not there yet (its worker makes it too)
        ensure_dir(logdir)
        write_atomic(os.path.join(logdir, EXPR_PARAM_FILE), text)
    try:
        import cloudpickle

        # Plain data pickles the same either way; the standard pickler is quicker to start.
        plain = type(config) is dict and all(type(k) is str and type(v) in _SCALARS for k, v in config.items())
        pickled = pickle.dumps(config, protocol=cloudpickle.DEFAULT_PROTOCOL) if plain else cloudpickle.dumps(config)
    except Exception as exc:  # a config that cannot be pickled still gets its params.json
        logger.warning("Could not pickle the config of the trial in %s: %s", logdir, exc)
        return
    write_atomic(os.path.join(logdir, EXPR_PARAM_PICKLE_FILE), pickled)


def write_params(logdir: str, config: dict) -> None:
    """Writes ``params.json`` and ``params.pkl`` for a trial's configuration, in the I/O thread.

    The config is not copied: the driver replaces a trial's config rather than changing it.
    """
    scope = current_scope()
    scope.params[logdir] = config
    note_trial_files_closed()
    scope.writer.submit(scope, _write_params_files, logdir, config)


class TrialFile:
    """One append-only file of one trial.

    ``write`` only appends to an in-memory list in the driver's thread; the
    list is handed to the logger I/O thread on ``flush`` (every
    ``flush_period_s`` seconds, when it grows large, and at trial end), which
    encodes it, opens the file if needed and writes it.

    Args:
        path: The file's path; its directory is created when the file opens.
        binary: Open in binary mode.
        owner: The :class:`OpenFiles` that flushes this file and caps open handles.
        encoder: Turns a list of written items into the text (or bytes) to append,
            in the I/O thread; by default the items are joined.
    """

    _MAX_PENDING = 4096

    def __init__(self, path: str, binary: bool = False, owner: "OpenFiles | None" = None,
                 encoder: Callable[[list], Any] | None = None):
        self.path = path
        self._binary = binary
        self._owner = owner
        self._encoder = encoder
        self._pending: list = []
        self.fd: int | None = None  # open in the I/O thread
        self.was_empty = True  # whether the file had no bytes when it was opened (I/O thread)
        # The experiment whose files these are: the one running in the thread that made it.
        self._scope = scope = current_scope()
        self._dirty = scope.dirty

    # -- driver thread -------------------------------------------------------------
    def write(self, item) -> None:
        pending = self._pending
        pending.append(item)
        if len(pending) == 1:
            self._dirty[id(self)] = self
            if self._owner is not None:
                self._owner.mark_dirty(self)
        elif len(pending) >= self._MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        self._dirty.pop(id(self), None)
        if self._owner is not None:
            self._owner.clear(self)
        if self._pending:
            items, self._pending = self._pending, []
            self._scope.writer.submit(self._scope, self._write_items, items)

    def close(self) -> None:
        self._dirty.pop(id(self), None)
        if self._owner is not None:
            self._owner.clear(self)
        items, self._pending = self._pending, []
        self._scope.writer.submit(self._scope, self._close, items)

    # -- I/O thread ------------------------------------------------------------------
    # Plain descriptors rather than Python file objects: each call releases the GIL, and opening
    # a file object adds a stat, a terminal check and seeks to the open and the write.
    def open(self) -> int:
        try:
            fd = self._open()
        except FileNotFoundError:  # the trial directory does not exist yet
            ensure_dir(os.path.dirname(self.path) or ".")
            fd = self._open()
        self.fd = fd
        if self._owner is not None:
            self._owner.register(self)
        return fd

    def _open(self) -> int:
        try:
            fd = os.open(self.path, _CREATE_NEW, 0o666)
        except FileExistsError:  # a restored trial's file, or one closed to spare descriptors
            fd = os.open(self.path, _APPEND, 0o666)
            self.was_empty = os.fstat(fd).st_size == 0
        else:
            self.was_empty = True
        return fd

    def _write_items(self, items: list) -> None:
        fd = self.fd if self.fd is not None else self.open()  # first: an encoder may ask was_empty
        if self._encoder is not None:
            data = self._encoder(items)
        else:
            data = (b"" if self._binary else "").join(items)
        _write_all(fd, data if self._binary else data.encode("utf-8"))

    def _close(self, items: list | None = None) -> None:
        if items:
            self._write_items(items)
        if self._owner is not None:
            self._owner.forget(self)
        if self.fd is not None:
            try:
                os.close(self.fd)
            finally:
                self.fd = None


# Bytes as they are (no newline translation where the platform has a text mode).
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _FLAGS
_CREATE_NEW = _APPEND | os.O_EXCL
_REPLACE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _FLAGS


def _write_all(fd: int, data: bytes) -> None:
    """Writes all of ``data`` to the descriptor (a write may take only part of it)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            written = os.write(fd, view)
            if not written:
                raise OSError(f"a write of {len(view)} bytes wrote nothing")
            view = view[written:]


class OpenFiles:
    """A callback's per-trial files: which have unwritten items, periodic flush, a cap on open handles."""

    def __init__(self, flush_period_s: float = DEFAULT_FLUSH_PERIOD_S, max_open: int | None = None):
        self.flush_period_s = flush_period_s
        self.max_open = max_open if max_open is not None else max_open_files()
        self._dirty: dict[int, TrialFile] = {}  # driver thread
        self._open: dict[int, TrialFile] = {}  # I/O thread
        self._last_flush = time.monotonic()

    def mark_dirty(self, trial_file: TrialFile) -> None:
        self._dirty[id(trial_file)] = trial_file

    def clear(self, trial_file: TrialFile) -> None:
        self._dirty.pop(id(trial_file), None)

    def register(self, trial_file: TrialFile) -> None:
        self._open.pop(id(trial_file), None)
        self._open[id(trial_file)] = trial_file
        while len(self._open) > self.max_open:
            next(iter(self._open.values()))._close()

    def forget(self, trial_file: TrialFile) -> None:
        self._open.pop(id(trial_file), None)

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_period_s:
            self.flush_all()

    def flush_all(self) -> None:
        self._last_flush = time.monotonic()
        for trial_file in list(self._dirty.values()):
            trial_file.flush()
