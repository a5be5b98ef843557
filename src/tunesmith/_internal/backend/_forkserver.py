"""Starting worker processes by forking them from a warm, preloaded process.

A fresh Python interpreter that imports tunesmith and unpickles the trainable
costs a few hundred milliseconds of CPU; with many concurrent trials on a
small machine that start-up dominates. The fork server is one such process,
started once per experiment: it imports tunesmith, loads the trainable (and so
imports the trainable's modules), and then forks a worker per request in about
a millisecond. Each worker is still a separate process with its own socket,
output pipes and ``CUDA_VISIBLE_DEVICES``.

Forking is used only where it is safe: on Linux, and only while the loaded
trainable has started no threads and has not initialised CUDA in the fork
server (see ``worker.fork_unsafe_reason``). Otherwise, or when the fork server
dies, workers are spawned as fresh interpreters, and the reason is logged.
``TUNESMITH_WORKER_START=spawn`` turns the fork server off.
"""
from __future__ import annotations

import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

from tunesmith._internal import worker as W

logger = logging.getLogger(__name__)

WORKER_START_ENV = "TUNESMITH_WORKER_START"


def fork_server_enabled() -> bool:
    """True unless this platform cannot fork safely or ``TUNESMITH_WORKER_START=spawn``."""
    how = os.environ.get(WORKER_START_ENV, "fork").strip().lower()
    if how not in ("fork", "spawn"):
        raise ValueError(f"{WORKER_START_ENV} must be 'fork' or 'spawn', got {how!r}.")
    return how == "fork" and sys.platform.startswith("linux") and hasattr(socket, "send_fds")


class ForkedProcess:
    """A worker forked by the fork server, with the part of ``subprocess.Popen``'s API the executor uses.

    The fork server is its parent and reaps it; its exit status reaches the
    driver as a message from the fork server.
    """

    def __init__(self, server: "ForkServer", pid: int, stdout=None, stderr=None):
        self._server = server
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._server.collect(0)
            self.returncode = self._server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout)
            self._server.collect(left if left is not None else 1.0)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class ForkServer:
    """The driver's side of the fork server: start it, load trainables into it, fork workers."""

    def __init__(self, sys_path: str):
        ctl_parent, ctl_child = socket.socketpair()
        fd_parent, fd_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        env = dict(os.environ)
        env["TUNESMITH_DRIVER_SYS_PATH"] = sys_path
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tunesmith._internal.worker", "--fork-server",
                 str(ctl_child.fileno()), str(fd_child.fileno())],
                pass_fds=(ctl_child.fileno(), fd_child.fileno()), env=env, close_fds=True,
            )
        finally:
            ctl_child.close()
            fd_child.close()
        self._ctl = Connection(ctl_parent.detach())
        self._fd = self._ctl.fileno()
        # One poll object for the control socket: a worker's poll() asks it twice per trial.
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        self._fd_sock = fd_parent
        self._exited: dict[int, int] = {}
        self._loaded: dict[str, str | None] = {}  # key -> why forking is unsafe (None: safe)
        self._loading: set[str] = set()  # sent, not yet answered
        self.dead_reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.dead_reason is None

    def _mark_dead(self, reason: str) -> None:
        if self.dead_reason is None:
            self.dead_reason = reason
            logger.info("Starting workers as fresh processes from now on: %s.", reason)

    def _handle(self, msg: tuple) -> None:
        if msg[0] == W.FS_EXITED:
            self._exited[msg[1]] = msg[2]
        elif msg[0] == W.FS_LOADED:
            self._loaded[msg[1]] = msg[2]
            self._loading.discard(msg[1])

    def collect(self, timeout: float) -> None:
        """Takes in the fork server's messages (exits of workers), waiting up to ``timeout`` s for one."""
        if self.dead_reason is not None:
            return
        try:
            # A kept poll object on the one descriptor: Connection.poll builds a selector per call.
            poll = self._poller.poll
            if poll(math.ceil(max(0.0, timeout) * 1000)):
                self._handle(self._ctl.recv())
                while poll(0):
                    self._handle(self._ctl.recv())
        except (EOFError, OSError):
            self._mark_dead("the fork server exited")

    def exit_code(self, pid: int) -> int | None:
        code = self._exited.get(pid)
        if code is None and self.dead_reason is not None:
            # The fork server is gone, and its children died with it (parent-death signal).
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return -signal.SIGKILL
            except PermissionError:
                return -signal.SIGKILL
        return code

    def _wait_for(self, kind: str) -> tuple:
        while True:
            msg = self._ctl.recv()
            if msg[0] == kind:
                return msg
            self._handle(msg)

    def send_load(self, key: str, payload: bytes) -> None:
        """Starts loading a trainable into the fork server; :meth:`ready` waits for it."""
        if self.dead_reason is not None or key in self._loaded or key in self._loading:
            return
        try:
            self._ctl.send((W.FS_LOAD, key, payload))
            self._loading.add(key)
        except OSError:
            self._mark_dead("the fork server exited before it loaded the trainable")

    def ready(self, key: str, payload: bytes) -> bool:
        """Waits until the trainable is loaded; False (and logged) if its workers cannot be forked."""
        self.send_load(key, payload)
        try:
            while key in self._loading and self.dead_reason is None:
                self._handle(self._ctl.recv())
        except (EOFError, OSError):
            self._mark_dead("the fork server exited while it loaded the trainable")
        if self.dead_reason is not None:
            return False
        if self._loaded[key] is not None:
            self._mark_dead(f"forking is unsafe: {self._loaded[key]}")
            return False
        return True

    def loaded_keys(self) -> list[str]:
        return [k for k, reason in self._loaded.items() if reason is None]

    def fork(self, sock: socket.socket, env_key: str, pipes: tuple[int, int] | None) -> int | None:
        """Forks a worker that talks over ``sock`` (and writes to ``pipes``); returns its pid or None."""
        if self.dead_reason is not None:
            return None
        fds = [sock.fileno()] + (list(pipes) if pipes else [sock.fileno(), sock.fileno()])
        try:
            socket.send_fds(self._fd_sock, [b"f"], fds)
            self._ctl.send((W.FS_FORK, env_key, pipes is not None))
            return self._wait_for(W.FS_FORKED)[1]
        except (EOFError, OSError):
            self._mark_dead("the fork server exited")
            return None

    def close(self) -> None:
        for closer in (self._ctl.close, self._fd_sock.close):
            try:
                closer()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
