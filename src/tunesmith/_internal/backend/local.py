"""The local backend: a pool of worker processes on this machine."""
from __future__ import annotations

import logging
import math
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from tunesmith._internal import protocol as P
from tunesmith._internal.backend._forkserver import ForkedProcess, ForkServer, fork_server_enabled
from tunesmith._internal.backend._leftovers import (
    DriverSentinel,
    LeftoverReaper,
    groups_still_ours,
    groups_with_members,
    start_time,
)
from tunesmith._internal.backend._output import OutputForwarder
from tunesmith._internal.backend.base import ExecutorBackend, TrialEvent
from tunesmith._internal.fsutil import wait_readable
from tunesmith._internal.machine_ledger import MachineLedger, WakePoller
from tunesmith._internal.resources import detect_resources, machine_resources

logger = logging.getLogger(__name__)

_EPS = 1e-9
# How long an idle worker ended to free its GPUs may take to exit before it is killed (seconds).
_GPU_WORKER_EXIT_S = 10.0
# The reply to nearly every result: pickled once.
_CONTINUE_BYTES = pickle.dumps(P.CONTINUE)


def _forward_output() -> bool:
    """Worker output goes through the driver unless TUNESMITH_FORWARD_WORKER_OUTPUT=0."""
    return os.environ.get("TUNESMITH_FORWARD_WORKER_OUTPUT", "1") != "0"


# Descriptors the driver keeps per worker process: its socket and its stdout and stderr pipes.
_FDS_PER_WORKER = 3
# Descriptors left for everything else: result files (capped separately), state files, imports.
_FDS_RESERVED = 64


def raise_fd_limit() -> int:
    """Raises this process's soft limit on open files to the hard limit; returns the soft limit."""
    try:
        import resource
    except ImportError:
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


def worker_limit() -> int:
    """How many worker processes may run at once within the file-descriptor limit.

    A third of what is left after a reserve goes to the loggers' open result
    files (see ``logger._util.max_open_files``); the rest to workers.
    """
    limit = raise_fd_limit()
    return max(1, (limit - _FDS_RESERVED - (limit - _FDS_RESERVED) // 3) // _FDS_PER_WORKER)


def _open_ledger(total: dict[str, float]) -> MachineLedger | None:
    """This experiment's entry in the machine ledger, unless sharing is off or impossible here."""
    if os.environ.get("TUNESMITH_SHARE_MACHINE", "1") == "0":
        return None
    try:
        return MachineLedger(total=total, wakeable=True, machine=machine_resources())
    except OSError as exc:  # no writable or no private ledger directory: run without sharing
        logger.warning("Running without sharing the machine with other experiments: %s", exc)
        return None


# A trial's last message from its worker.
_ENDING = frozenset((P.DONE, P.PAUSED, P.ERROR))


def _worker_sys_path() -> str:
    """The driver's ``sys.path`` for its workers: ``''`` (the working directory, in notebooks and
    ``python -c``) as the directory it is now, and the one tunesmith was imported in after it."""
    from tunesmith._core import IMPORT_CWD

    now = os.getcwd()
    paths = [p or now for p in sys.path]
    if "" in sys.path and IMPORT_CWD and IMPORT_CWD not in paths:
        paths.append(IMPORT_CWD)
    return os.pathsep.join(dict.fromkeys(paths))


# How often the groups of workers that are gone are looked at (see LocalBackend._forget_ended_groups).
_GROUP_CHECK_S = 5.0

class _WorkerHandle:
    __slots__ = ("proc", "conn", "loaded", "env_key", "trial", "pid", "fd", "label", "ready",
                 "rbuf", "owed", "expect", "ended")

    def __init__(self, proc: subprocess.Popen, conn: Connection, env_key: str):
        self.proc = proc
        self.conn = conn
        self.loaded: set[str] = set()
        self.env_key = env_key
        self.trial = None
        self.pid = proc.pid
        self.fd = conn.fileno()
        self.label = f"pid={proc.pid}"
        self.ready = False  # set when the process starts running its first trial
        self.rbuf = bytearray()  # bytes read from the socket that do not make a whole message yet
        self.owed = 0  # CONTINUE answers decided but not sent yet (sent as one message)
        self.expect = 0  # results of this worker handed to the driver in the last wait()
        # The trial's last message (DONE, PAUSED, ERROR) has arrived: the worker reads nothing
        # more for this trial, so answers to its results are not sent.
        self.ended = False

    def read_messages(self, block: bool = False) -> list:
        """The messages that arrived, read with as few system calls as possible.

        The framing is ``multiprocessing.connection``'s (the worker sends with
        ``Connection.send``): a 4-byte big-endian length (or -1 and an 8-byte one),
        then the pickle. One ``read`` takes whatever is there, which with a pipelined
        worker is many results at once.

        Raises:
            EOFError: The worker closed its end (it exited) and no whole message is left.
        """
        buf = self.rbuf  # a bytearray: a large message grows it in place (bytes were copied per read)
        messages: list = []
        while True:
            pos, end, missing = 0, len(buf), 0
            while end - pos >= 4:
                size = _HEADER.unpack_from(buf, pos)[0]
                start = pos + 4
                if size == -1:
                    if end - pos < 12:
                        break
                    size = _HEADER_LONG.unpack_from(buf, start)[0]
                    start += 8
                if end - start < size:
                    missing = size - (end - start)
                    break
                messages.append(pickle.loads(buf[start:start + size]))
                pos = start + size
            if pos:
                del buf[:pos]
            if messages or (not block and pos == 0 and buf and not self._readable()):
                return messages
            data = os.read(self.fd, max(1 << 16, min(missing, 1 << 20)))
            if not data:
                raise EOFError
            buf += data
            block = block or not messages

    def _readable(self) -> bool:
        return bool(wait_readable([self.fd], 0))


# How often the workers running trials are checked for an exit that their socket does not show.
_LIVENESS_CHECK_S = 1.0

_HEADER = struct.Struct("!i")
_HEADER_LONG = struct.Struct("!Q")


class LocalExecutor(ExecutorBackend):
    """Runs trials in worker processes on this machine, within its CPUs, GPUs and memory.

    Workers are started on demand and kept for later trials; a trial that needs
    GPUs gets them through ``CUDA_VISIBLE_DEVICES`` (empty for trials that ask
    for none), and a worker is only reused by a trial with the same devices.
    """

    def __init__(self, total_resources: dict[str, float] | None = None, gpu_ids: list[str] | None = None):
        detected, detected_gpus = detect_resources()
        self.total = dict(total_resources) if total_resources is not None else detected
        self.gpu_ids = list(gpu_ids) if gpu_ids is not None else detected_gpus
        self.available = dict(self.total)
        self._gpu_free = {g: 1.0 for g in self.gpu_ids}
        # GPUs picked by has_resources() for the trial start_trial() takes next: (id, share) pairs.
        self._picked: list[tuple[str, float]] | None = None
        self._idle: dict[str, list[_WorkerHandle]] = {}
        self._by_trial: dict[Any, _WorkerHandle] = {}
        self._by_conn: dict[Connection, _WorkerHandle] = {}
        self._assigned_gpus: dict[Any, list[tuple[str, float]]] = {}
        self._held: dict[Any, dict[str, float]] = {}
        # Busy workers' sockets stay registered in one poll object; a selector per wait
        # would cost more than handling the result itself.
        self._poller = select.poll()
        self._by_fd: dict[int, _WorkerHandle] = {}
        self._output = OutputForwarder(self._poller) if _forward_output() else None
        self._ledger = _open_ledger(self.total)
        self._ledger_dirty = False
        self._owing: set[_WorkerHandle] = set()  # workers owed CONTINUE answers
        self._next_liveness_check = 0.0  # see _notice_silent_deaths
        self._contended = False
        self._contended_until = 0.0
        self._sys_path = _worker_sys_path()
        self._leftovers = LeftoverReaper()  # what dead workers' trials left running
        # Every worker started (each leads its process group), with its start time: a group is swept at
        # shutdown only while its number is not another process's.
        self._worker_groups: dict[int, int | None] = {}
        self._sentinel = DriverSentinel()  # ends them should the driver be killed
        self._next_group_check = 0.0  # see _forget_ended_groups
        self.max_workers = worker_limit()
        P.result_pipeline_s()  # a bad TUNESMITH_RESULT_PIPELINE_S fails here, before any trial
        # Workers are forked from a preloaded process where that is safe (see _forkserver);
        # None: not started yet, False: workers are spawned.
        self._fork_server: ForkServer | None | bool = None
        self._retired_servers: list[ForkServer] = []

    # -- resources -------------------------------------------------------------------
    def can_ever_fit(self, resources: dict[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + _EPS >= v for k, v in resources.items() if v > 0)

    def has_resources(self, resources: dict[str, float]) -> bool:
        if len(self._by_trial) >= self.max_workers:
            return False  # each worker holds descriptors in this process: stay within the limit
        avail = self.available
        ledger = self._ledger
        for key, value in resources.items():
            if value > 0 and avail.get(key, 0.0) + _EPS < value:
                if ledger is not None:
                    ledger.stop_waiting()  # our own trials hold what it needs: we wait for no one
                return False
        gpus = resources.get("GPU", 0.0)
        self._picked = None
        if ledger is not None:
            # Our entry shows the trial, and the devices it will take, before we look for others:
            # a newcomer that reads it after we found ourselves alone counts the trial and keeps
            # off those devices.
            picked = self._pick_gpus(gpus) if gpus else []
            if picked is None:
                return False
            held = {k: self.total[k] - avail.get(k, 0.0) + resources.get(k, 0.0) for k in self.total}
            devices = {g: 1.0 - free for g, free in self._gpu_free.items()}
            for g, amount in picked:
                devices[g] = devices.get(g, 0.0) + amount
            ledger.update(held, devices)
            if not ledger.alone():
                return self._reserve_shared(resources)
            self._picked = picked
            return True
        if gpus:
            self._picked = self._pick_gpus(gpus)
            if self._picked is None:
                return False
        return True

    def _reserve_shared(self, resources: dict[str, float]) -> bool:
        """With other experiments on this machine: the ledger's rule decides (see machine_ledger)."""
        own = {k: self.total.get(k, 0.0) - self.available.get(k, 0.0) for k in self.total}
        gpus = resources.get("GPU", 0.0)

        def place() -> dict[str, float] | None:
            picked = self._picked = self._pick_gpus(gpus)
            if picked is None:
                return None
            after = {g: 1.0 - free for g, free in self._gpu_free.items()}
            for g, amount in picked:
                after[g] = after.get(g, 0.0) + amount
            return after

        if self._ledger.wake_fd is not None and not isinstance(self._poller, WakePoller):
            # From now on a wait for results also ends when another experiment frees resources.
            self._poller = WakePoller(self._poller, self._ledger)
        return self._ledger.try_start(resources, own, place)

    def contended(self) -> bool:
        """True when other experiments share this machine (their usage changes without our events).

        Looked up at most every 0.1 s: the driver asks once per turn of its loop.
        """
        if self._ledger is None:
            return False
        now = time.monotonic()
        if now >= self._contended_until:
            was, self._contended = self._contended, not self._ledger.alone()
            self._contended_until = now + 0.1
            if was and not self._contended:
                # The last other experiment has just left (its exit woke this driver): what it held
                # is free, and the driver looks for trials to start once more.
                return True
        return self._contended

    def sharing_summary(self) -> str:
        """What the other tunesmith experiments on this machine hold and wait for, in one sentence."""
        if self._ledger is None:
            if os.environ.get("TUNESMITH_SHARE_MACHINE", "1") == "0":
                return "Machine sharing is off (TUNESMITH_SHARE_MACHINE=0)."
            return "This experiment does not share the machine (the ledger could not be used)."
        return self._ledger.summary()

    def _gpu_free_now(self) -> dict[str, float]:
        if self._ledger is None or self._ledger.alone():
            return self._gpu_free
        _, others = self._ledger.held_by_others()
        return {g: free - others.get(g, 0.0) for g, free in self._gpu_free.items()}

    def _pick_gpus(self, amount: float) -> list[tuple[str, float]] | None:
        gpu_free = self._gpu_free_now()
        if amount >= 1:
            whole = [g for g, free in gpu_free.items() if free >= 1 - _EPS]
            n = int(round(amount))
            return [(g, 1.0) for g in whole[:n]] if len(whole) >= n else None
        for g, free in gpu_free.items():
            if free + _EPS >= amount:
                return [(g, amount)]
        return None

    def _report_usage(self) -> None:
        if self._ledger is not None:
            held = {k: self.total[k] - self.available.get(k, 0.0) for k in self.total}
            self._ledger.update(held, {g: 1.0 - free for g, free in self._gpu_free.items()})

    def _acquire(self, trial, resources: dict[str, float]) -> str:
        for key, value in resources.items():
            self.available[key] = self.available.get(key, 0.0) - value
        self._held[trial] = dict(resources)
        gpus = resources.get("GPU", 0.0)
        # The devices has_resources() picked (and, sharing the machine, announced in the ledger).
        picked, self._picked = self._picked, None
        if picked is not None and abs(sum(amount for _, amount in picked) - gpus) > _EPS:
            picked = None  # picked for another request
        if gpus and picked is None:
            picked = self._pick_gpus(gpus)
        for g, amount in picked or []:
            self._gpu_free[g] -= amount
        self._assigned_gpus[trial] = picked or []
        self._report_usage()
        return ",".join(g for g, _ in picked or [])

    def _release_resources(self, trial) -> None:
        for key, value in self._held.pop(trial, {}).items():
            self.available[key] = self.available.get(key, 0.0) + value
        for g, amount in self._assigned_gpus.pop(trial, []):
            self._gpu_free[g] += amount
        # Written before the next wait: a trial that starts in the same turn in the freed
        # resources leaves the entry as it was, and nothing is written at all.
        self._ledger_dirty = self._ledger is not None

    # -- workers -------------------------------------------------------------------------
    def _fork_server_for(self, trainable_key: str | None, payload: bytes | None) -> ForkServer | None:
        """The fork server, started on first use, with the trainable loaded; None where workers are spawned."""
        server = self._fork_server
        if server is False:
            return None
        if server is None:
            if not fork_server_enabled():
                self._fork_server = False
                return None
            server = self._fork_server = ForkServer(self._sys_path)
        if trainable_key is not None and not server.ready(trainable_key, payload):
            self._fork_server = False
            self._retired_servers.append(server)
            return None
        return server if server.usable else None

    def _fork(self, server: ForkServer, env_key: str) -> _WorkerHandle | None:
        parent, child = socket.socketpair()
        pipes = (os.pipe(), os.pipe()) if self._output is not None else None
        try:
            pid = server.fork(child, env_key, (pipes[0][1], pipes[1][1]) if pipes else None)
        finally:
            child.close()
            if pipes:
                os.close(pipes[0][1])
                os.close(pipes[1][1])
        if pid is None:
            parent.close()
            if pipes:
                os.close(pipes[0][0])
                os.close(pipes[1][0])
            self._fork_server = False
            self._retired_servers.append(server)
            return None
        out = open(pipes[0][0], "rb", buffering=0) if pipes else None
        err = open(pipes[1][0], "rb", buffering=0) if pipes else None
        return self._register(ForkedProcess(server, pid, out, err), Connection(parent.detach()), env_key)

    def _spawn(self, env_key: str, trainable_key: str | None = None, payload: bytes | None = None) -> _WorkerHandle:
        server = self._fork_server_for(trainable_key, payload)
        if server is not None:
            handle = self._fork(server, env_key)
            if handle is not None:
                handle.loaded.update(server.loaded_keys())
                return handle
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["TUNESMITH_DRIVER_SYS_PATH"] = self._sys_path
        env["CUDA_VISIBLE_DEVICES"] = env_key
        pipe = subprocess.PIPE if self._output is not None else None
        if pipe is not None:
            env["PYTHONUNBUFFERED"] = "1"  # a user's print reaches the console when it happens
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tunesmith._internal.worker", str(child.fileno())],
                pass_fds=(child.fileno(),), env=env, close_fds=True, stdout=pipe, stderr=pipe,
            )
        finally:
            child.close()
        return self._register(proc, Connection(parent.detach()), env_key)

    def _register(self, proc, conn: Connection, env_key: str) -> _WorkerHandle:
        handle = _WorkerHandle(proc, conn, env_key)
        self._worker_groups[handle.pid] = start_time(handle.pid)
        self._sentinel.watch(handle.pid, self._worker_groups[handle.pid])
        self._by_conn[conn] = handle
        if self._output is not None:
            label = lambda: handle.label  # noqa: E731
            self._output.add(proc.stdout, False, label)
            self._output.add(proc.stderr, True, label)
        return handle

    def prestart(self, count: int, trainable_key: str | None = None, payload: bytes | None = None,
                 resources=None) -> None:
        """Starts ``count`` CPU workers now, so that they boot while the driver sets up.

        With a trainable, it is sent along and loaded before the first trial arrives.
        """
        if trainable_key is not None and self._fork_server is None and fork_server_enabled():
            # One process boots and loads the trainable; workers are forked from it on demand.
            self._fork_server = ForkServer(self._sys_path)
        if isinstance(self._fork_server, ForkServer):
            self._fork_server.send_load(trainable_key, payload)
            return
        for _ in range(max(0, count) - sum(len(v) for v in self._idle.values())):
            handle = self._spawn("")
            if trainable_key is not None:
                try:
                    handle.conn.send((P.LOAD, trainable_key, payload))
                    handle.loaded.add(trainable_key)
                except OSError:
                    pass
            self._idle.setdefault("", []).append(handle)

    def _checkout(self, env_key: str, trainable_key: str | None = None, payload: bytes | None = None) -> _WorkerHandle:
        if env_key:
            self._end_idle_on_gpus(env_key)
        idle = self._idle.get(env_key)
        while idle:
            handle = idle.pop()
            if handle.proc.poll() is None:
                return handle
            self._forget(handle)
        if len(self._by_conn) >= self.max_workers:
            # At the descriptor budget: an idle worker of other devices makes room.
            for handles in self._idle.values():
                if handles:
                    self._stop_worker(handles.pop())
                    break
        return self._spawn(env_key, trainable_key, payload)

    def _end_idle_on_gpus(self, env_key: str) -> None:
        """Ends idle workers that ran on any of these GPUs, keeping one of exactly these for reuse.

        An idle worker may still hold the memory an earlier trial took on its GPUs (the CUDA
        context, a framework's cache); the trial about to start there gets the device to itself,
        as on Ray, where a cached actor keeps its GPUs until it is ended.
        """
        mine = set(env_key.split(","))
        ended = []
        for key, handles in self._idle.items():
            if not key or not mine.intersection(key.split(",")):
                continue
            keep = 1 if key == env_key else 0
            while len(handles) > keep:
                handle = handles.pop(0)
                self._stop_worker(handle)
                ended.append(handle)
        for handle in ended:  # gone (and its device memory free) before the trial starts
            try:
                handle.proc.wait(timeout=_GPU_WORKER_EXIT_S)
            except subprocess.TimeoutExpired:
                handle.proc.kill()

    def _unpoll(self, handle: _WorkerHandle) -> None:
        if self._by_fd.pop(handle.fd, None) is not None:
            try:
                self._poller.unregister(handle.fd)
            except (KeyError, ValueError):
                pass

    def _forget(self, handle: _WorkerHandle) -> None:
        self._unpoll(handle)
        self._by_conn.pop(handle.conn, None)
        try:
            handle.conn.close()
        except OSError:
            pass

    def worker_pid(self, trial) -> int | None:
        handle = self._by_trial.get(trial)
        return handle.pid if handle else None

    # -- trials ----------------------------------------------------------------------------
    def start_trial(self, trial, spec: P.TrialSpec, trainable_key: str, payload: bytes) -> None:
        env_key = self._acquire(trial, trial.placement_group_factory.required_resources)
        spec.env["CUDA_VISIBLE_DEVICES"] = env_key
        handle = self._checkout(env_key, trainable_key, payload)
        handle.trial = trial
        handle.ended = False
        handle.label = f"{trial.trainable_name} pid={handle.pid}"
        self._by_trial[trial] = handle
        self._by_fd[handle.fd] = handle
        self._poller.register(handle.fd, select.POLLIN)
        try:
            if trainable_key not in handle.loaded:
                handle.conn.send((P.LOAD, trainable_key, payload))
                handle.loaded.add(trainable_key)
            handle.conn.send((P.START, P.spec_to_send(spec)))
        except OSError:
            # The worker died while idle; the driver sees the EOF as this trial's failure.
            pass

    def send(self, trial, message: Any) -> None:
        handle = self._by_trial.get(trial)
        if handle is None or handle.ended:
            # An ended trial's worker is back in its loop: an answer would only wake it up (a
            # pipelined trial's last results usually arrive together with its DONE).
            return
        if message is P.CONTINUE:
            # A pipelined worker's results come several at a time: their answers go back as
            # one message once the driver has answered all of them (or at the next wait).
            handle.owed += 1
            if handle.owed >= handle.expect:
                self._pay(handle)
            else:
                self._owing.add(handle)
            return
        if handle.owed:
            self._pay(handle)
        try:
            handle.conn.send(message)
        except OSError:
            pass

    def _pay(self, handle: _WorkerHandle) -> None:
        """Sends the CONTINUE answers owed to a worker, as one message."""
        owed, handle.owed = handle.owed, 0
        self._owing.discard(handle)
        try:
            if owed == 1:
                handle.conn.send_bytes(_CONTINUE_BYTES)
            elif owed > 1:
                handle.conn.send((P.CONTINUE, owed))
        except OSError:
            pass

    def release_trial(self, trial, reuse: bool = True) -> None:
        """Frees the trial's resources; its worker goes back to the pool (or exits)."""
        self._release_resources(trial)
        handle = self._by_trial.pop(trial, None)
        if handle is None:
            return
        self._unpoll(handle)
        handle.trial = None
        handle.owed = handle.expect = 0  # the trial is over: nothing is waiting for these
        self._owing.discard(handle)
        if reuse and handle.proc.poll() is None and handle.conn in self._by_conn:
            self._idle.setdefault(handle.env_key, []).append(handle)
        else:
            self._stop_worker(handle)

    def _stop_worker(self, handle: _WorkerHandle) -> None:
        try:
            handle.conn.send((P.EXIT,))
        except OSError:
            pass
        self._forget(handle)

    def call(self, trial, message: Any) -> Any:
        """Sends a message to a trial's worker and waits for its reply (the worker must be waiting)."""
        handle = self._by_trial[trial]
        if handle.owed:
            self._pay(handle)
        handle.conn.send(message)
        return handle.read_messages(block=True)[0]

    def kill_trial_worker(self, trial) -> None:
        handle = self._by_trial.get(trial)
        if handle is not None and handle.proc.poll() is None:
            handle.proc.kill()
            self._leftovers.end_group(handle.pid, f"trial {trial}")

    def wait(self, timeout: float | None) -> list[TrialEvent]:
        if self._ledger_dirty:
            self._ledger_dirty = False
            self._report_usage()
        for handle in list(self._owing):
            self._pay(handle)
        if self._leftovers.pending:
            self._leftovers.escalate()
            if self._leftovers.pending:
                due = self._leftovers.seconds_to_next()
                timeout = due if timeout is None else min(timeout, due)
        if len(self._worker_groups) > len(self._by_conn) and time.monotonic() >= self._next_group_check:
            self._forget_ended_groups()
        # With no trial running this still blocks (on workers' output and the ledger's wake
        # FIFO, if any) until the controller's next timer, so the controller never spins.
        ready = self._poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
        events: list[TrialEvent] = []
        for fd, _ in ready:
            if self._output is not None and fd in self._output:
                self._output.read(fd)
                continue
            handle = self._by_fd.get(fd)
            if handle is None or handle.trial is None:
                continue
            try:
                messages = handle.read_messages()
            except (EOFError, OSError):
                self._worker_died(handle, events)
                continue
            self._take(handle, messages, events)
        if self._by_trial and time.monotonic() >= self._next_liveness_check:
            self._next_liveness_check = time.monotonic() + _LIVENESS_CHECK_S
            self._notice_silent_deaths(events)
        return events

    def _take(self, handle: _WorkerHandle, messages: list, events: list[TrialEvent]) -> None:
        trial = handle.trial
        results = 0
        for msg in messages:
            kind = msg[0]
            if kind == P.RESULT:
                results += 1
            elif kind == P.READY:
                handle.ready = True
                continue
            elif kind in _ENDING:
                handle.ended = True
            events.append(TrialEvent(trial, msg))
        handle.expect = results

    def _forget_ended_groups(self) -> None:
        """Forgets the groups of workers that are gone and whose group is empty: once empty, a group's
        number may be taken by an unrelated process (say, a shell pipeline), which the sweep at shutdown
        (or the sentinel's) must then spare. Checked every few seconds: the numbers wrap far slower."""
        self._next_group_check = time.monotonic() + _GROUP_CHECK_S
        live = {handle.pid for handle in self._by_conn.values()}
        gone, taken = set(), set()
        for pid, started in self._worker_groups.items():
            if pid not in live:
                now = start_time(pid)
                if now is None:
                    gone.add(pid)
                elif now != started:
                    taken.add(pid)  # another process has the number: the group was empty by then
        gone -= self._leftovers.pending_groups()  # still being ended
        for pid in taken | (gone - groups_with_members(gone)):
            del self._worker_groups[pid]
            self._sentinel.forget(pid)

    def _worker_died(self, handle: _WorkerHandle, events: list[TrialEvent]) -> None:
        msg = (P.ERROR, self._death_message(handle), None)
        if not handle.ready:
            msg += (P.STARTUP_PHASE,)
        trial = handle.trial
        handle.ended = True
        self._forget(handle)
        self._leftovers.end_group(handle.pid, f"trial {trial}")
        events.append(TrialEvent(trial, msg))

    def _notice_silent_deaths(self, events: list[TrialEvent]) -> None:
        """A worker whose trial forked a process (a ``multiprocessing`` Manager or Pool) and then died
        (an out-of-memory kill) leaves its socket open in that process, so no end of file says so:
        its exit is noticed here. What it sent before it died is taken first."""
        seen = {event.trial for event in events}
        for trial, handle in list(self._by_trial.items()):
            if trial in seen or handle.trial is None or handle.ended or handle.proc.poll() is None:
                continue
            try:
                messages = handle.read_messages() if handle._readable() else []
            except (EOFError, OSError):
                messages = []
            self._take(handle, messages, events)
            if not handle.ended:
                self._worker_died(handle, events)

    def _death_message(self, handle: _WorkerHandle) -> str:
        try:
            code = handle.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            code = handle.proc.wait()
        from tunesmith._internal.exit import describe_exit

        how = describe_exit(code)
        return (
            f"The worker process (pid {handle.pid}) running trial {handle.trial} {how} "
            "before the trial finished.\n"
        )

    def shutdown(self) -> None:
        handles = list(self._by_conn.values())
        for handle in handles:
            if handle.trial is not None and handle.proc.poll() is None:
                handle.proc.kill()  # still inside user code: it cannot hear EXIT
                self._leftovers.end_group(handle.pid, f"trial {handle.trial}")
                continue
            try:
                handle.conn.send((P.EXIT,))
            except OSError:
                pass
        for handle in handles:
            try:
                handle.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                handle.proc.kill()
                handle.proc.wait()
            self._forget(handle)
        servers = self._retired_servers + ([self._fork_server] if isinstance(self._fork_server, ForkServer) else [])
        for server in servers:
            server.close()
        self._retired_servers = []
        if isinstance(self._fork_server, ForkServer):
            self._fork_server = None
        try:
            # A worker that was ended (or died with the fork server) before it ended what its trials
            # had started leaves them in its group: nothing a trial started outlives the experiment.
            self._forget_ended_groups()
            self._leftovers.end_group(groups_still_ours(self._worker_groups), "trials")
            self._worker_groups.clear()
            self._leftovers.close()
            self._sentinel.close()
            if self._output is not None:
                self._output.drain()
        finally:  # the machine's CPUs go back to the other experiments whatever happened
            if self._ledger is not None:
                self._ledger.close()
            self._idle.clear()
            self._by_trial.clear()
