"""Sharing one machine between experiments that run at the same time.

Each experiment process on a machine keeps a small file in a directory shared
by the user's tunesmith processes, saying which resources its trials hold and
whether it has trials waiting for resources. Before it starts a trial, an
experiment subtracts what the others hold; while another experiment waits, it
does not grow beyond an equal share, so that freed cores go to the one that
waits. Files of processes that have died are ignored and removed.

Cost when an experiment runs alone: one ``stat`` of the directory per check
(its modification time changes when another experiment appears or leaves)
and one ``pwrite`` of a fixed-size record when its usage changes. When others
are present, checking and reserving happen under a file lock, so two
experiments cannot take the same cores at the same moment.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from typing import Callable, Iterator

_EPS = 1e-9


def ledger_dir() -> str:
    """The directory the ledger files live in (per user)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.environ.get("TUNESMITH_LEDGER_DIR") or os.path.join(tempfile.gettempdir(), f"tunesmith-{uid}")


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started, or None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return -1.0  # exists but cannot be inspected: assume it is the one that wrote the entry


def _alive(entry: dict) -> bool:
    """True if the process that wrote ``entry`` still runs (a reused pid does not count)."""
    started = _process_start(int(entry.get("pid", -1)))
    if started is None:
        return False
    return started < 0 or abs(started - float(entry.get("started", started))) < 1.0


_RECORD = 512  # bytes; an entry is rewritten in place with one pwrite, padded with spaces


class MachineLedger:
    """This experiment's entry in the machine-wide ledger, and a view of the others'.

    Args:
        directory: Where the ledger files live (default: :func:`ledger_dir`).
    """

    def __init__(self, directory: str | None = None):
        self.directory = directory or ledger_dir()
        os.makedirs(self.directory, exist_ok=True)
        self._path = os.path.join(self.directory, f"exp-{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self._fd: int | None = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        self._held: dict[str, float] = {}
        self._gpus: dict[str, float] = {}
        self._waiting = False
        self._seen_mtime = -1
        self._others: list[dict] = []
        self._started = _process_start(os.getpid())
        self._write()

    # -- our entry --------------------------------------------------------------
    def _write(self) -> None:
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "started": self._started, "held": self._held,
                           "gpus": self._gpus, "waiting": self._waiting})
        size = -(-len(data) // _RECORD) * _RECORD
        try:
            os.pwrite(self._fd, data.ljust(size).encode(), 0)
        except OSError:
            pass

    def update(self, held: dict[str, float], gpus: dict[str, float]) -> None:
        """Records what our trials hold now."""
        held = {k: v for k, v in held.items() if v > _EPS}
        gpus = {g: v for g, v in gpus.items() if v > _EPS}
        if held != self._held or gpus != self._gpus:
            self._held, self._gpus = held, gpus
            self._write()

    def set_waiting(self, waiting: bool) -> None:
        if waiting != self._waiting:
            self._waiting = waiting
            self._write()

    def try_reserve(self, fits: Callable[[dict[str, float], dict[str, float]], bool],
                    held_after: dict[str, float], gpus_after: dict[str, float]) -> bool:
        """Atomically checks ``fits(others_held, others_gpus)`` and, if true, records the new usage."""
        with self._locked():
            self.refresh()
            others_held, others_gpus = self.held_by_others()
            if not fits(others_held, others_gpus):
                self.set_waiting(True)
                return False
            self._waiting = False
            self._held = {k: v for k, v in held_after.items() if v > _EPS}
            self._gpus = {g: v for g, v in gpus_after.items() if v > _EPS}
            self._write()
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: best effort
            yield
            return
        with open(os.path.join(self.directory, "ledger.lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self._path)
        except OSError:
            pass

    # -- the others ---------------------------------------------------------------
    def refresh(self) -> None:
        """Makes the next read of the others' entries go to the files."""
        self._seen_mtime = -1

    def others(self) -> list[dict]:
        """The entries of the other live experiments on this machine.

        The list of experiments is read again when the directory changed; their
        usage is read again under the lock before a reservation.
        """
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            mtime = -2
        if mtime == self._seen_mtime:
            return self._others
        self._seen_mtime = mtime
        entries = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            names = []
        own = os.path.basename(self._path)
        for name in names:
            if not name.startswith("exp-") or not name.endswith(".json") or name == own:
                continue
            path = os.path.join(self.directory, name)
            try:
                with open(path) as f:
                    entry = json.loads(f.read() or "null")
            except (OSError, ValueError):
                continue
            if not isinstance(entry, dict) or not _alive(entry):
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            entries.append(entry)
        self._others = entries
        return entries
    def held_by_others(self) -> tuple[dict[str, float], dict[str, float]]:
        """Resources and GPU shares the other experiments hold."""
        held: dict[str, float] = {}
        gpus: dict[str, float] = {}
        for entry in self.others():
            for key, value in entry.get("held", {}).items():
                held[key] = held.get(key, 0.0) + float(value)
            for gpu, value in entry.get("gpus", {}).items():
                gpus[gpu] = gpus.get(gpu, 0.0) + float(value)
        return held, gpus

    def fair_share_exceeded(self, total: dict[str, float], own_held: dict[str, float],
                            request: dict[str, float]) -> bool:
        """True when another experiment waits and starting ``request`` would take us past an equal share.

        An experiment that holds nothing may always start a trial, so no one starves.
        """
        others = self.others()
        if not own_held or not any(e.get("waiting") for e in others):
            return False
        active = 1 + sum(1 for e in others if e.get("held") or e.get("waiting"))
        for key, value in request.items():
            if value <= 0 or key == "memory":
                continue
            share = total.get(key, 0.0) / active
            if own_held.get(key, 0.0) + value > share + _EPS:
                return True
        return False
