"""What a stuck child process can tell on request: every thread's stack."""
from __future__ import annotations

import faulthandler
import signal


def stacks_on_request() -> None:
    """Makes ``kill -USR2 <pid>`` print every thread's Python stack to this process's stderr.

    Worker processes (trial workers, the fork server and Train group workers) call this when
    they start, so that a trial that hangs can be asked where it is without a debugger; the
    stacks reach the experiment's output like anything else the worker prints. A process
    whose code already handles SIGUSR2 keeps its handler.
    """
    sig = getattr(signal, "SIGUSR2", None)
    if sig is None or signal.getsignal(sig) not in (signal.SIG_DFL, None):
        return
    faulthandler.register(sig, all_threads=True)
