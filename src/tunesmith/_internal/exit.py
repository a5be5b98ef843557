"""Ending a child process at once, with what it printed flushed."""
from __future__ import annotations

import os
import sys
from typing import NoReturn


def flush_and_exit(code: int) -> NoReturn:
    """Flushes stdout and stderr, then ends this process with ``code`` without the interpreter's teardown.

    A forked worker must not run its parent's exit handlers or flush buffers it inherited
    twice; a helper whose libraries hold thousands of objects must not spend seconds tearing
    them down while its parent waits. What it printed still reaches its log.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, broken or None: it must not keep the process alive
            pass
    os._exit(code)



# The process whose SIGTERM the driver handles (see ``leave_stop_signals_to_the_driver``).
_leaving_pid: int | None = None


def _leave_sigterm_to_the_driver(signum, frame) -> None:
    if os.getpid() == _leaving_pid:
        return  # the driver pauses this process's trial itself
    # A process that trainable code forked (a multiprocessing pool's worker, say): the signal does
    # what it would have done, so that Pool.terminate() and the like still end it.
    import signal

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def leave_stop_signals_to_the_driver() -> None:
    """Makes this child process of the driver leave Ctrl+C (SIGINT), SIGTERM and SIGHUP to the driver.

    A terminal's Ctrl+C reaches every process of its foreground group, and a batch system or
    service manager (Slurm, systemd) sends SIGTERM to every process of a job. The driver stops
    its trials itself, pausing them so that a restore resumes them; a worker that died of the
    signal first would count as a failed trial instead. A child still dies with the driver
    (the kernel kills it when its parent exits) and is ended with SIGKILL where the driver
    must. SIGINT is ignored. SIGTERM gets a handler rather than being ignored, because an
    ignored signal stays ignored in the processes that trainable code starts: those (started
    with exec, or forked) still end by SIGTERM as usual. Call it again in each process this
    one forks for the driver.
    """
    import signal

    global _leaving_pid
    _leaving_pid = os.getpid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):  # SIGHUP: a closed terminal, which the driver handles as SIGTERM
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _leave_sigterm_to_the_driver)


def describe_exit(code: int | None) -> str:
    """How a child process ended, for an error message: ``"exited with code 1"``, ``"was killed by ..."``.

    A SIGKILL that tunesmith did not send (it never kills a trial that is still running and
    should go on) usually comes from the kernel's out-of-memory killer; the text says so.
    """
    if code is None or code >= 0:
        return f"exited with code {code}"
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    how = f"was killed by signal {-code} ({name})"
    if -code == getattr(signal, "SIGKILL", None):
        how += (
            "; SIGKILL from outside the experiment most often means the kernel's out-of-memory killer "
            "ended it (see `dmesg`): the process used more memory than the machine or its container allows"
        )
    return how
