"""Reading experiment and trial directories back from storage.

Storage is local disk or any ``pyarrow.fs`` filesystem. Local paths are read
with plain ``os`` calls (the common case, and the fastest); everything else
goes through the filesystem object, so S3 and GCS work unchanged.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import posixpath
import re
from typing import Any, Iterable

from tunesmith.tune.result import (
    CHECKPOINT_DIR_NAME,
    EXPERIMENT_STATE_FILE,
    EXPR_ERROR_FILE,
    EXPR_ERROR_PICKLE_FILE,
    EXPR_PARAM_FILE,
    EXPR_PARAM_PICKLE_FILE,
    EXPR_PROGRESS_FILE,
    EXPR_RESULT_FILE,
    TRAINING_ITERATION,
)

logger = logging.getLogger(__name__)

_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
_UNFINISHED_CHECKPOINT_DIR = re.compile(r"^checkpoint_\d+\.tmp$")  # being written when its trial stopped
_STATE_FILE = re.compile(r"^experiment_state(-.*)?\.json$")


def result_delimiter() -> str:
    """Delimiter of nested keys in flattened results (``TUNE_RESULT_DELIM``)."""
    return os.environ.get("TUNE_RESULT_DELIM", "/")


def _is_local_filesystem(filesystem) -> bool:
    if filesystem is None:
        return True
    import pyarrow.fs

    return isinstance(filesystem, pyarrow.fs.LocalFileSystem)


class Storage:
    """Read access to one filesystem: local (``filesystem=None``) or a ``pyarrow.fs`` one.

    Args:
        filesystem: A ``pyarrow.fs.FileSystem``; ``None`` or a local one reads with ``os``.
    """

    def __init__(self, filesystem=None):
        self._filesystem = None if _is_local_filesystem(filesystem) else filesystem
        self.local = self._filesystem is None

    @classmethod
    def resolve(cls, path: str | os.PathLike, filesystem=None) -> tuple["Storage", str]:
        """Returns the storage and the path on it for a local path, a URI or a path on ``filesystem``."""
        from tunesmith._internal.storage import resolve_storage

        filesystem, path = resolve_storage(path, filesystem)
        storage = cls(filesystem)
        if storage.local:
            path = os.path.abspath(os.path.expanduser(path))
        else:
            path = path.rstrip("/") or path
        return storage, path

    @property
    def filesystem(self):
        """The ``pyarrow.fs.FileSystem`` (a ``LocalFileSystem`` for local storage)."""
        if self._filesystem is None:
            import pyarrow.fs

            return pyarrow.fs.LocalFileSystem()
        return self._filesystem

    @property
    def raw_filesystem(self):
        """The filesystem to hand to a ``Checkpoint``: ``None`` for local storage."""
        return self._filesystem

    def join(self, *parts: str) -> str:
        return os.path.join(*parts) if self.local else posixpath.join(*parts)

    def basename(self, path: str) -> str:
        return os.path.basename(path) if self.local else posixpath.basename(path.rstrip("/"))

    def dirname(self, path: str) -> str:
        return os.path.dirname(path) if self.local else posixpath.dirname(path.rstrip("/"))

    def _info(self, path: str):
        return self._filesystem.get_file_info(path)

    def exists(self, path: str) -> bool:
        if self.local:
            return os.path.exists(path)
        import pyarrow.fs

        return self._info(path).type != pyarrow.fs.FileType.NotFound

    def isdir(self, path: str) -> bool:
        if self.local:
            return os.path.isdir(path)
        import pyarrow.fs

        return self._info(path).type == pyarrow.fs.FileType.Directory

    def isfile(self, path: str) -> bool:
        if self.local:
            return os.path.isfile(path)
        import pyarrow.fs

        return self._info(path).type == pyarrow.fs.FileType.File

    def listdir(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is_directory)`` for each entry directly under ``path``."""
        if self.local:
            with os.scandir(path) as entries:
                return [(e.name, e.is_dir()) for e in entries]
        import pyarrow.fs

        infos = self._filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return [(info.base_name, info.type == pyarrow.fs.FileType.Directory) for info in infos]

    def read_bytes(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        with self._filesystem.open_input_stream(path) as f:
            return f.read()

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")


# -- experiment state ------------------------------------------------------


def find_experiment_state_file(storage: Storage, experiment_dir: str) -> str | None:
    """The experiment state file in ``experiment_dir`` (newest if there are several), or None."""
    path = storage.join(experiment_dir, EXPERIMENT_STATE_FILE)
    if storage.isfile(path):
        return path
    if not storage.isdir(experiment_dir):
        return None
    names = [name for name, is_dir in storage.listdir(experiment_dir) if not is_dir and _STATE_FILE.match(name)]
    if not names:
        return None
    return storage.join(experiment_dir, max(names))


def read_json(storage: Storage, path: str) -> Any:
    return json.loads(storage.read_text(path))


def _rebase(path: str | None, trial_dir: str, trial_dirname: str, storage: Storage) -> str | None:
    """Moves ``path`` under ``trial_dir`` when it names a file directly in the trial's directory."""
    if not path:
        return path
    parent = path.rstrip("/\\")
    name = posixpath.basename(parent.replace("\\", "/"))
    parent_name = posixpath.basename(posixpath.dirname(parent.replace("\\", "/")))
    if parent_name != trial_dirname:
        return path
    return storage.join(trial_dir, name)


def rebase_trial_state(state: dict[str, Any], experiment_dir: str, storage: Storage) -> dict[str, Any]:
    """Returns a copy of a trial's JSON state with its file paths under ``experiment_dir``.

    The experiment directory may have been moved or downloaded since the state
    was written; checkpoints and error files always live directly in the
    trial's directory, so their paths are rebuilt from it.
    """
    state = dict(state)
    dirname = state.get("trial_dirname") or ""
    trial_dir = storage.join(experiment_dir, dirname)
    state["checkpoints"] = [
        {**entry, "path": _rebase(entry.get("path"), trial_dir, dirname, storage)}
        for entry in state.get("checkpoints") or []
    ]
    for key in ("restore_checkpoint", "error_file", "pickled_error_file"):
        state[key] = _rebase(state.get(key), trial_dir, dirname, storage)
    return state


def saved_trial_state(storage: Storage, trial_dir: str) -> dict | None:
    """The saved state of the trial in ``trial_dir``, from its experiment's ``experiment_state.json``
    in the directory above (None where there is none, or it does not name this directory)."""
    experiment_dir = storage.dirname(trial_dir.rstrip("/"))
    dirname = storage.basename(trial_dir.rstrip("/"))
    try:
        state_file = find_experiment_state_file(storage, experiment_dir)
        if state_file is None or not storage.isfile(state_file):
            return None
        state = read_json(storage, state_file)
    except Exception:
        return None
    for trial in state.get("trials") or [] if isinstance(state, dict) else []:
        if isinstance(trial, dict) and trial.get("trial_dirname") == dirname:
            return trial
    return None


def pickled_config(storage: Storage, trial_dir: str) -> dict | None:
    """The trial's config as it was (``params.pkl``), or None when it cannot be read here (a class
    its module is not importable for, a missing file)."""
    import cloudpickle

    try:
        config = cloudpickle.loads(storage.read_bytes(storage.join(trial_dir, EXPR_PARAM_PICKLE_FILE)))
    except Exception as exc:
        logger.debug("Could not read the pickled config of %s: %s", trial_dir, exc)
        return None
    return config if isinstance(config, dict) else None


# -- trial directory ---------------------------------------------------------


def parse_result_lines(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # A line cut short by a crash mid-write; everything before it is intact.
            continue
    return rows


def read_result_rows(storage: Storage, trial_dir: str) -> list[dict[str, Any]] | None:
    """All results from ``result.json``, or None when the file does not exist."""
    path = storage.join(trial_dir, EXPR_RESULT_FILE)
    try:
        return parse_result_lines(storage.read_text(path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        if storage.local or storage.exists(path):
            raise
        return None


def checkpoint_index(name: str) -> int | None:
    match = _CHECKPOINT_DIR.match(name)
    return int(match.group(1)) if match else None


def list_checkpoint_dirs(storage: Storage, trial_dir: str) -> list[str]:
    """Names of the ``checkpoint_*`` directories of a trial, oldest first."""
    names = [
        name for name, is_dir in storage.listdir(trial_dir)
        if is_dir and name.startswith("checkpoint_") and not _UNFINISHED_CHECKPOINT_DIR.match(name)
    ]

    def key(name: str):
        index = checkpoint_index(name)
        return (0, index, name) if index is not None else (1, 0, name)

    return sorted(names, key=key)


def pair_checkpoint_metrics(names: Iterable[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The result each checkpoint was saved with.

    A result names its checkpoint in ``checkpoint_dir_name``; results written
    without that field are matched on ``training_iteration`` equal to the
    checkpoint's index.
    """
    by_name: dict[str, dict] = {}
    by_iteration: dict[Any, dict] = {}
    for row in rows:
        name = row.get(CHECKPOINT_DIR_NAME)
        if name:
            by_name[name] = row
        if TRAINING_ITERATION in row:
            by_iteration[row[TRAINING_ITERATION]] = row
    paired = []
    for name in names:
        row = by_name.get(name)
        if row is None:
            index = checkpoint_index(name)
            row = by_iteration.get(index) if index is not None else None
        paired.append(dict(row) if row is not None else {})
    return paired


def read_params(storage: Storage, trial_dir: str) -> dict[str, Any] | None:
    """The trial's config from ``params.pkl`` (exact objects) or ``params.json``."""
    pkl = storage.join(trial_dir, EXPR_PARAM_PICKLE_FILE)
    try:
        data = storage.read_bytes(pkl)
    except OSError:
        data = None
    if data is not None:
        try:
            return _unpickle(data)
        except Exception:
            pass
    try:
        return read_json(storage, storage.join(trial_dir, EXPR_PARAM_FILE))
    except (OSError, ValueError):
        return None


def _unpickle(data: bytes) -> Any:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle is a dependency
        return pickle.loads(data)
    return cloudpickle.loads(data)


def read_error(
    storage: Storage,
    trial_dir: str,
    pickled_error_file: str | None = None,
    error_file: str | None = None,
    error_msg: str | None = None,
    trial_name: str | None = None,
):
    """The trial's error as a ``TrainingFailedError``, or None when it has none.

    The pickled exception is preferred (it keeps the original type); its
    traceback text comes from ``error.txt``. When the exception cannot be
    unpickled (its class is not importable here) the text alone is used.
    """
    from tunesmith.train._result import TrainingFailedError

    def candidates(given: str | None, name: str) -> list[str]:
        default = storage.join(trial_dir, name)
        return [p for p in (given, default) if p] if given != default else [default]

    text = None
    for path in candidates(error_file, EXPR_ERROR_FILE):
        try:
            text = storage.read_text(path)
            break
        except OSError:
            continue
    exc = None
    for path in candidates(pickled_error_file, EXPR_ERROR_PICKLE_FILE):
        try:
            data = storage.read_bytes(path)
        except OSError:
            continue
        try:
            exc = _unpickle(data)
        except Exception:
            exc = None
        break
    if isinstance(exc, TrainingFailedError):
        return exc
    if exc is not None and not isinstance(exc, BaseException):
        exc = None
    if exc is None and text is None:
        if error_msg:
            return TrainingFailedError.from_exception(None, traceback_str=error_msg, trial_name=trial_name)
        return None
    return TrainingFailedError.from_exception(exc, traceback_str=text, trial_name=trial_name)


def load_dataframe(storage: Storage, trial_dir: str, filetype: str = "json", rows: list[dict] | None = None):
    """A trial's results as a ``pandas.DataFrame`` (one row per result).

    ``result.json`` is preferred (it keeps types); ``progress.csv`` is the
    fallback, or the first choice with ``filetype="csv"``. A trial without
    either file gives an empty frame.
    """
    import pandas as pd

    if rows is not None:
        return _rows_to_frame(rows)
    readers = ("json", "csv") if filetype == "json" else ("csv", "json")
    for kind in readers:
        if kind == "json":
            loaded = read_result_rows(storage, trial_dir)
            if loaded is not None:
                return _rows_to_frame(loaded)
        else:
            path = storage.join(trial_dir, EXPR_PROGRESS_FILE)
            try:
                text = storage.read_text(path)
            except OSError:
                continue
            import io

            if not text.strip():
                return pd.DataFrame()
            return pd.read_csv(io.StringIO(text), dtype={"trial_id": str})
    if not storage.isdir(trial_dir):
        logger.warning(
            "The trial directory %s no longer exists, so its results cannot be read: the dataframe is "
            "empty. Results are read from the experiment's files when first asked for; read them before "
            "the directory is deleted (a TemporaryDirectory as storage_path is deleted when its block ends).",
            trial_dir,
        )
    return pd.DataFrame()


def _rows_to_frame(rows: list[dict]):
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    return pd.json_normalize(rows, sep=result_delimiter())


# -- flattening and lookups ------------------------------------------------


def flatten_dict(data: dict[str, Any], delimiter: str = "/", prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``; empty nested dicts are kept as values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{delimiter}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_dict(value, delimiter, name))
        else:
            out[name] = value
    return out


_MISSING = object()


def lookup_metric(metrics: dict[str, Any] | None, metric: str, default: Any = _MISSING) -> Any:
    """``metrics[metric]``, also for a nested metric given as ``"a/b/c"``."""
    if metrics is None:
        if default is _MISSING:
            raise KeyError(metric)
        return default
    if metric in metrics:
        return metrics[metric]
    value: Any = metrics
    for part in metric.split("/"):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            if default is _MISSING:
                raise KeyError(metric)
            return default
    return value


def as_score(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def metric_score(value: Any) -> float | None:
    """A reported metric's value as a score to rank by: numbers, and flags (True counts as 1, as Ray
    compares them); None for anything else, text that looks like a number included (as on Ray)."""
    import numbers

    if isinstance(value, numbers.Number) or (type(value).__module__ == "numpy" and type(value).__name__ in (
            "bool_", "bool")):  # (numpy's flag type, named bool from numpy 2 on)
        try:
            return float(value)
        except (TypeError, ValueError):  # complex
            return None
    return None


def is_nan_or_inf(value: float) -> bool:
    return math.isnan(value) or math.isinf(value)

