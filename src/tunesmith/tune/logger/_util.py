"""Shared pieces of the result loggers: flattening, cheap JSON, per-trial file handles."""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any

from tunesmith.tune.utils.serialization import to_jsonable

logger = logging.getLogger(__name__)

# Seconds between flushes of the buffered per-trial files, checked at the end of each driver step.
DEFAULT_FLUSH_PERIOD_S = 2.0
# Above this many open per-trial files in one callback, the least recently opened are closed
# (and reopened in append mode when they are written again), to stay below the process's fd limit.
MAX_OPEN_FILES = 256

# One encoder, reused: numpy scalars, arrays and checkpoints are turned into JSON by ``default``;
# NaN and infinity are written as Python's json writes them.
_ENCODER = json.JSONEncoder(default=to_jsonable, allow_nan=True)


def dumps(value: Any) -> str:
    """JSON text of ``value``; falls back to a full conversion when the fast path fails."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):
        return json.dumps(to_jsonable(value))


def flatten(d: dict, delimiter: str = "/", exclude: tuple = ()) -> dict:
    """Flattens nested dicts, joining keys with ``delimiter``; top-level keys in ``exclude`` are dropped."""
    out: dict = {}
    for key, value in d.items():
        if key in exclude:
            continue
        if type(value) is dict and value:
            for sub_key, sub_value in flatten(value, delimiter).items():
                out[f"{key}{delimiter}{sub_key}"] = sub_value
        elif isinstance(value, dict) and value:
            for sub_key, sub_value in flatten(dict(value), delimiter).items():
                out[f"{key}{delimiter}{sub_key}"] = sub_value
        else:
            out[key] = value
    return out


def write_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_params(logdir: str, config: dict) -> None:
    """Writes ``params.json`` and ``params.pkl`` for a trial's configuration."""
    from tunesmith.tune.result import EXPR_PARAM_FILE, EXPR_PARAM_PICKLE_FILE

    os.makedirs(logdir, exist_ok=True)
    text = json.dumps(to_jsonable(config), indent=2, sort_keys=True)
    write_atomic(os.path.join(logdir, EXPR_PARAM_FILE), text.encode("utf-8"))
    try:
        import cloudpickle

        data = cloudpickle.dumps(config)
    except Exception as exc:  # a config that cannot be pickled still gets its params.json
        logger.warning("Could not pickle the config of the trial in %s: %s", logdir, exc)
        return
    write_atomic(os.path.join(logdir, EXPR_PARAM_PICKLE_FILE), data)


class TrialFile:
    """One append-only file of one trial, opened on first write and buffered by Python.

    Args:
        path: The file's path; its directory is created when the file opens.
        binary: Open in binary mode.
        owner: The :class:`OpenFiles` that flushes this file and caps open handles.
    """

    def __init__(self, path: str, binary: bool = False, owner: "OpenFiles | None" = None):
        self.path = path
        self._mode = "ab" if binary else "a"
        self._owner = owner
        self.fh = None
        self.dirty = False

    def open(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if self._mode == "a":
            self.fh = open(self.path, "a", encoding="utf-8", newline="", buffering=1 << 16)
        else:
            self.fh = open(self.path, "ab", buffering=1 << 16)
        if self._owner is not None:
            self._owner.register(self)
        return self.fh

    def write(self, data) -> None:
        fh = self.fh or self.open()
        fh.write(data)
        self.dirty = True

    def flush(self) -> None:
        if self.fh is not None and self.dirty:
            self.fh.flush()
        self.dirty = False

    def close(self) -> None:
        if self._owner is not None:
            self._owner.forget(self)
        if self.fh is not None:
            try:
                self.fh.close()
            finally:
                self.fh = None
        self.dirty = False


class OpenFiles:
    """Tracks a callback's open per-trial files: periodic flush and a cap on open handles."""

    def __init__(self, flush_period_s: float = DEFAULT_FLUSH_PERIOD_S, max_open: int = MAX_OPEN_FILES):
        self.flush_period_s = flush_period_s
        self.max_open = max_open
        self._open: dict[int, TrialFile] = {}
        self._last_flush = time.monotonic()

    def register(self, trial_file: TrialFile) -> None:
        self._open.pop(id(trial_file), None)
        self._open[id(trial_file)] = trial_file
        while len(self._open) > self.max_open:
            next(iter(self._open.values())).close()

    def forget(self, trial_file: TrialFile) -> None:
        self._open.pop(id(trial_file), None)

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_period_s:
            self.flush_all()

    def flush_all(self) -> None:
        self._last_flush = time.monotonic()
        for trial_file in list(self._open.values()):
            if trial_file.dirty:
                try:
                    trial_file.flush()
                except OSError as exc:
                    logger.warning("Could not flush %s: %s", trial_file.path, exc)
