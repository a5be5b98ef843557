"""One driver per experiment directory at a time.

Two runs with the same name and storage path would overwrite each other's
experiment state and lose trials. The driver holds an exclusive advisory
lock on a file in the experiment directory for as long as it runs; the lock
goes away with the process, however it ends, so a crashed run never blocks
its own restore. An experiment on a remote store is locked by a file on this
machine that stands for its URI (drivers on other machines are not seen).
"""
from __future__ import annotations

import json
import os
import socket
import time

LOCK_FILE = ".tunesmith.lock"


class ExperimentInUseError(RuntimeError):
    """Another running process owns the experiment directory."""


class ExperimentLock:
    """An exclusive lock on an experiment directory, taken at construction.

    Args:
        directory: The experiment directory (local), or its URI when ``lock_file`` is given.
        lock_file: The file to lock (default: ``.tunesmith.lock`` in ``directory``).

    Raises:
        ExperimentInUseError: Another live process holds the lock; the message names it.
    """

    def __init__(self, directory: str, lock_file: str | None = None):
        self.path = lock_file or os.path.join(directory, LOCK_FILE)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ExperimentInUseError(
                f"The experiment directory {directory} is in use by another run ({holder}). Two runs "
                "writing one experiment would overwrite each other's state: give this run another "
                "RunConfig(name=...), or wait until that run ends and continue it with "
                "Tuner.restore(...)."
            ) from None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except OSError as exc:  # a full disk
            os.close(fd)
            raise type(exc)(exc.errno, f"Could not write {self.path} ({exc.strerror or exc}). What the "
                            "experiment saved before is intact: make room and run it again") from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            # Unlocked first: a process forked from this one meanwhile (a user's fork-based pool)
            # shares the descriptor, and closing ours alone would leave the lock held by it.
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']}, running since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is still running"
