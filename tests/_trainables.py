"""Pieces of trainables shared by the end-to-end tests."""
from __future__ import annotations

import json
import os
import tempfile

from tunesmith import train

STATE_FILE = "state.json"


def restore_step() -> int:
    """The step saved in the trial's checkpoint, or 0 when the trial starts fresh."""
    checkpoint = train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, STATE_FILE)) as f:
            return json.load(f)["step"]


def report_step(step: int, **metrics) -> None:
    """Reports ``step`` and ``metrics`` with a checkpoint that holds the step."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, STATE_FILE), "w") as f:
            json.dump({"step": step}, f)
        train.report({"step": step, **metrics}, checkpoint=train.Checkpoint.from_directory(d))


def report_each_with_a_checkpoint(metric: str, values) -> None:
    """Reports each of ``values`` under ``metric``, each with a checkpoint holding the value."""
    for value in values:
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, metric), "w") as f:
                f.write(str(value))
            train.report({metric: value}, checkpoint=train.Checkpoint.from_directory(d))


def report_from_a_thread_until_stopped() -> None:
    """Reports from a thread of its own and waits for it; once the stop ends that thread, the wait
    never ends (the trial is then ended by force after TUNE_FUNCTION_THREAD_TIMEOUT_S)."""
    import threading
    import time

    from tunesmith import tune

    finished = threading.Event()

    def loop():
        for i in range(1000):
            tune.report({"score": i})
            time.sleep(0.01)
        finished.set()

    threading.Thread(target=loop, daemon=True).start()
    finished.wait()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting to be reaped does not), read from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
