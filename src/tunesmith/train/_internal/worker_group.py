"""The processes of one worker group: started together, watched together, ended together.

On Linux the workers are forked from the supervising process, which has the
training function loaded and (for torch) torch imported, so a worker is ready
in milliseconds. Elsewhere, when ``TUNESMITH_TRAIN_WORKER_START=spawn``, or
when the backend says forking is unsafe (an initialised CUDA context), each
worker is a fresh ``python -m tunesmith.train._internal.group_worker``.
Every worker asks the kernel to kill it when the supervising process dies.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

from tunesmith._internal import process_state
from tunesmith._internal.exit import flush_and_exit, fork_for_the_driver, leave_stop_signals_to_the_driver
from tunesmith.train._internal.group_worker import WorkerSpec, die_with_parent, run_worker


def start_method(backend) -> str:
    """``"fork"`` or ``"spawn"``: how this group's workers are started."""
    wanted = os.environ.get("TUNESMITH_TRAIN_WORKER_START", "").strip().lower()
    if wanted not in ("", "fork", "spawn"):
        raise ValueError(
            f"TUNESMITH_TRAIN_WORKER_START={wanted!r} must be 'fork' or 'spawn' (or unset for the default)."
        )
    if wanted == "spawn" or not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return "spawn"
    return "fork" if backend.can_fork() else "spawn"


class WorkerHandle:
    """One worker process and the supervisor's end of its socket."""

    def __init__(self, rank: int, pid: int, conn: Connection, proc: subprocess.Popen | None = None):
        self.rank = rank
        self.pid = pid
        self.conn = conn
        self.proc = proc
        self.returncode: int | None = None

    def kill(self) -> None:
        if self.returncode is not None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        """Reaps the process; returns its exit code (negative: killed by that signal) or None if it runs on."""
        if self.returncode is not None:
            return self.returncode
        if self.proc is not None:
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            return self.returncode
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class WorkerGroup:
    """Starts one process per :class:`WorkerSpec` and ends them all together.

    Args:
        specs: One spec per rank.
        method: ``"fork"`` or ``"spawn"``.
        inherited_fds: File descriptors of the supervising process that a forked
            worker must close (its connection to the driver), so that a dead
            supervisor is seen at once.
    """

    def __init__(self, specs: list[WorkerSpec], method: str, inherited_fds: tuple[int, ...] = ()):
        self.specs = specs
        self.method = method
        self.inherited_fds = inherited_fds
        self.handles: list[WorkerHandle] = []

    def start(self) -> None:
        try:
            for spec in self.specs:
                self.handles.append(self._fork(spec) if self.method == "fork" else self._spawn(spec))
        except BaseException:
            self.shutdown(kill=True)
            raise

    def _fork(self, spec: WorkerSpec) -> WorkerHandle:
        parent, child = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = fork_for_the_driver()
        if pid == 0:  # the worker
            code = 1
            try:
                parent.close()
                for fd in self.inherited_fds + tuple(h.conn.fileno() for h in self.handles):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                die_with_parent(spec.parent_pid)
                leave_stop_signals_to_the_driver()
                process_state.reseed_all()  # each rank draws its own numbers, as a process of its own would
                code = run_worker(spec, Connection(child.detach()))
            except BaseException:
                try:
                    import traceback

                    traceback.print_exc()
                except BaseException:
                    pass
            finally:
                flush_and_exit(code)
        child.close()
        return WorkerHandle(spec.rank, pid, Connection(parent.detach()))

    def _spawn(self, spec: WorkerSpec) -> WorkerHandle:
        from tunesmith._internal.pickling import dumps

        payload = dumps(spec)
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env.update(spec.env)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tunesmith.train._internal.group_worker", str(child.fileno())],
                pass_fds=(child.fileno(),), env=env, close_fds=True,
            )
        finally:
            child.close()
        conn = Connection(parent.detach())
        conn.send_bytes(payload)
        return WorkerHandle(spec.rank, proc.pid, conn, proc)

    def shutdown(self, kill: bool) -> None:
        """Ends every worker: at once with ``kill``, else after it exits on its own (killed after 5 s)."""
        for handle in self.handles:
            if kill:
                handle.kill()
        for handle in self.handles:
            if handle.wait(None if kill else 5.0) is None:
                handle.kill()
                handle.wait()
            handle.close()
