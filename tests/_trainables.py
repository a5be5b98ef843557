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
