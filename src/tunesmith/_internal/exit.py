"""Ending a child process at once, with what it printed flushed."""
from __future__ import annotations

import os
import sys
from _thread import get_ident
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



# The process whose Ctrl+C and SIGTERM the driver handles (see ``leave_stop_signals_to_the_driver``).
_leaving_pid: int | None = None
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: a closed terminal, which the driver handles as SIGTERM
_fork_hooks_registered = False
_forking_for_the_driver: int | None = None  # the thread whose child leaves the signals to the driver itself
# Each forking thread's signal mask from before its fork, restored after it (threads fork at once, and
# a forked child's only thread is the one that forked it).
_masks_before_fork: dict[int, set] = {}


def _stop_signals() -> set:
    import signal

    return {getattr(signal, name) for name in _STOP_SIGNALS if hasattr(signal, name)}


def _default_action(signum: int):
    """What a Python program does on ``signum`` unless told otherwise."""
    import signal

    return signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL


def _leave_to_the_driver(signum, frame) -> None:
    if os.getpid() == _leaving_pid:
        return  # the driver pauses this process's trial itself
    # A process forked without the hooks below (by C code): the signal does what it would have done.
    import signal

    signal.signal(signum, _default_action(signum))
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    os.kill(os.getpid(), signum)


def _block_stop_signals_before_fork() -> None:
    if os.getpid() == _leaving_pid:
        import signal

        _masks_before_fork[get_ident()] = signal.pthread_sigmask(signal.SIG_BLOCK, _stop_signals())


def _unblock_stop_signals_in_parent() -> None:
    mask = _masks_before_fork.pop(get_ident(), None)
    if mask is not None:
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _default_stop_signals_in_child() -> None:
    """A child that trainable code forked (a multiprocessing pool's worker, say) ends by SIGTERM and
    Ctrl+C as any Python process does, so that ``Pool.terminate()`` and the like still end it.

    The signals stay blocked from before the fork until their default action is back: the interpreter
    drops the signals that reach a forked child before it has set itself up, and a pool worker whose
    SIGTERM was dropped that way lived on while ``Pool.terminate()`` waited for it.
    """
    mask = _masks_before_fork.pop(get_ident(), None)
    _masks_before_fork.clear()  # other threads' forks: not this process's
    if mask is None:
        return  # not forked by the process that leaves the signals to the driver
    if _forking_for_the_driver == get_ident():  # its handlers stay; it unblocks the signals itself
        _masks_before_fork[get_ident()] = mask
        return
    import signal

    for signum in _stop_signals():
        if signal.getsignal(signum) is _leave_to_the_driver:
            signal.signal(signum, _default_action(signum))
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGTERM sent meanwhile ends this process now


def fork_for_the_driver() -> int:
    """``os.fork()`` for a child of the driver's that calls ``leave_stop_signals_to_the_driver()`` first
    thing: SIGINT, SIGTERM and SIGHUP stay blocked in it until then, so none ends it before it can leave them."""
    global _forking_for_the_driver
    _forking_for_the_driver = get_ident()
    try:
        return os.fork()
    finally:
        _forking_for_the_driver = None


def leave_stop_signals_to_the_driver() -> None:
    """Makes this child process of the driver leave Ctrl+C (SIGINT), SIGTERM and SIGHUP to the driver.

    A terminal's Ctrl+C reaches every process of its foreground group, and a batch system or
    service manager (Slurm, systemd) sends SIGTERM to every process of a job. The driver stops
    its trials itself, pausing them so that a restore resumes them; a worker that died of the
    signal first would count as a failed trial instead. A child still dies with the driver
    (the kernel kills it when its parent exits) and is ended with SIGKILL where the driver
    must. The signals get a handler that does nothing here rather than being ignored, because an
    ignored signal stays ignored in the processes that trainable code starts: those (started
    with exec, or forked) still end by SIGTERM and Ctrl+C as usual. Call it again in each
    process this one forks for the driver (with ``fork_for_the_driver``).
    """
    import signal

    global _leaving_pid, _fork_hooks_registered
    _leaving_pid = os.getpid()
    for signum in _stop_signals():
        signal.signal(signum, _leave_to_the_driver)
    if not _fork_hooks_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_block_stop_signals_before_fork,
                            after_in_parent=_unblock_stop_signals_in_parent,
                            after_in_child=_default_stop_signals_in_child)
        _fork_hooks_registered = True
    mask = _masks_before_fork.pop(get_ident(), None)
    if mask is not None:  # forked by fork_for_the_driver(): the signals were blocked until now
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


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
