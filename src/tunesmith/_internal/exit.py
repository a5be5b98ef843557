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
        except (OSError, ValueError):  # a closed or broken stream must not keep the process alive
            pass
    os._exit(code)
