"""A tracker backend that records into a file and is held back until a gate file appears.

It stands for a tracker that is slower than the experiment; it runs in the
tracker helper process like the real ones.
"""
from __future__ import annotations

import json
import os
import time

from tunesmith.tune.logger._tracker import TrackerBackend, TrackerLoggerCallback


class GatedBackend(TrackerBackend):
    library = "gated"

    def __init__(self, out_path: str, gate_path: str):
        self.out_path = out_path
        self.gate_path = gate_path

    def _write(self, **record) -> None:
        with open(self.out_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def start_trial(self, trial) -> None:
        self._write(event="start", trial=trial.trial_id)

    def log_results(self, trial, results) -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(self.gate_path):
            if time.monotonic() > deadline:
                self._write(event="gate timed out")
                break
            time.sleep(0.01)
        for result in results:
            self._write(event="result", trial=trial.trial_id, iteration=result["training_iteration"])

    def end_trial(self, trial, status) -> None:
        self._write(event="end", trial=trial.trial_id, status=status)


class GatedLoggerCallback(TrackerLoggerCallback):
    def __init__(self, out_path: str, gate_path: str):
        self.out_path = out_path
        self.gate_path = gate_path
        super().__init__(flush_period_s=0.0)

    def _make_backend(self):
        return GatedBackend(self.out_path, self.gate_path)


class FailingBackend(TrackerBackend):
    """A tracker whose set-up fails (``where="setup"``) or whose every trial start fails (``"start"``)."""

    library = "failing"

    def __init__(self, where: str):
        self.where = where

    def setup(self, experiment) -> None:
        if self.where == "setup":
            raise RuntimeError("no server")

    def start_trial(self, trial) -> None:
        if self.where == "start":
            raise RuntimeError("no API key")

    def log_results(self, trial, results) -> None:
        raise AssertionError("results of a trial that never started")

    def end_trial(self, trial, status) -> None:
        raise AssertionError("the end of a trial that never started")


class FailingLoggerCallback(TrackerLoggerCallback):
    def __init__(self, where: str):
        self.where = where
        super().__init__(flush_period_s=0.0)

    def _make_backend(self):
        return FailingBackend(self.where)
