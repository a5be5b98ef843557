"""A trainable whose module takes a while to import in worker processes (a heavy import)."""
from __future__ import annotations

import os
import time

if os.environ.get("TUNESMITH_DRIVER_SYS_PATH") is not None and os.environ.get("SLOW_IMPORT_MARKER"):
    # In a worker: say where we are, then import slowly.
    with open(os.environ["SLOW_IMPORT_MARKER"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(1.0)


def quick(config):
    from tunesmith import tune

    tune.report({"done": True})
