"""Trainables for the fork server tests; each import of this module leaves a line in a file."""
from __future__ import annotations

import os
import threading

if os.environ.get("FORK_TEST_IMPORTS"):
    with open(os.environ["FORK_TEST_IMPORTS"], "a") as f:
        f.write(f"{os.getpid()}\n")

if os.environ.get("FORK_TEST_START_THREAD") and os.environ.get("TUNESMITH_DRIVER_SYS_PATH") is not None:
    # In a tunesmith process: a thread started at import makes forking from it unsafe.
    threading.Thread(target=threading.Event().wait, name="import-time-thread", daemon=True).start()


def where(config):
    import random

    from tunesmith import tune

    tune.report({"pid": os.getpid(), "ppid": os.getppid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                 "draw": random.random(), "i": config.get("i", 0)})
