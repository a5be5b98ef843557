"""The outcome of one training run: ``Result`` and ``TrainingFailedError``."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.result import (
    AUTO_RESULT_KEYS,
    CONFIG,
    EXPR_ERROR_FILE,
    EXPR_ERROR_PICKLE_FILE,
    EXPR_PARAM_FILE,
    EXPR_PROGRESS_FILE,
    EXPR_RESULT_FILE,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow.fs

# Bookkeeping fields left out of ``repr(result)`` so the user's metrics stand out.
_REPR_HIDDEN_KEYS = frozenset(AUTO_RESULT_KEYS) | {
    "timesteps_this_iter",
    "episodes_this_iter",
    "episodes_total",
    "experiment_id",
    "should_checkpoint",
}

_UNSET = object()


class TrainingFailedError(RuntimeError):
    """A training run or trial failed; the exception it raised is kept.

    The original exception is available as ``__cause__`` and as
    :attr:`original_error` (None when only its traceback text survived), and
    the message contains the original traceback.

    Args:
        message: The full error message.
        original_error: The exception the training function raised.
        traceback_str: The original traceback as text.

    Example:
        >>> from tunesmith.train import TrainingFailedError
        >>> err = TrainingFailedError.from_exception(ValueError("bad lr"), "Traceback ...\\nValueError: bad lr")
        >>> isinstance(err.original_error, ValueError), "bad lr" in str(err)
        (True, True)
    """

    def __init__(
        self,
        message: str = "Training failed.",
        original_error: BaseException | None = None,
        traceback_str: str | None = None,
    ):
        super().__init__(message)
        self.original_error = original_error
        self.traceback_str = traceback_str
        if original_error is not None:
            self.__cause__ = original_error

    @classmethod
    def from_exception(
        cls,
        error: BaseException | None,
        traceback_str: str | None = None,
        trial_name: str | None = None,
    ) -> "TrainingFailedError":
        """Wraps ``error`` (and/or its traceback text) in a ``TrainingFailedError``."""
        who = f"Trial {trial_name}" if trial_name else "Training"
        if error is not None:
            try:
                detail = str(error)
            except Exception as exc:  # an exception whose __str__ fails still names its type
                detail = f"<str() of the error failed: {type(exc).__name__}>"
            headline = f"{who} failed with {type(error).__name__}" + (f": {detail}" if detail else "")
        else:
            headline = f"{who} failed"
        message = headline + "."
        if traceback_str:
            message += "\n\nOriginal traceback:\n" + traceback_str.rstrip("\n")
        return cls(message, original_error=error, traceback_str=traceback_str)

    def __reduce__(self):
        return (type(self), (str(self), self.original_error, self.traceback_str))


class _NoCheckpointWithMetric(ValueError, RuntimeError):
    """``Result.get_best_checkpoint`` found no checkpoint saved with the metric."""


class Result:
    """The metrics, checkpoints and error of one training run (one trial).

    Returned by ``trainer.fit()``, and one per trial by the ``ResultGrid`` of
    ``Tuner.fit()``. ``Result.from_path`` rebuilds it from the run's directory
    on storage, also after the process that ran it is gone.

    Args:
        metrics: The last reported metrics.
        checkpoint: The last saved checkpoint, if any.
        error: The run's error, a :class:`TrainingFailedError`, if it failed.
        path: The run's directory on storage (a local path, or a path on ``_storage_filesystem``).
        metrics_dataframe: All reported results; read from storage on first access when not given.
        best_checkpoints: ``(checkpoint, metrics)`` of the checkpoints that
            ``CheckpointConfig(num_to_keep=...)`` keeps by its ranking (all of them
            without ``num_to_keep``); a latest checkpoint kept only for restore is
            :attr:`checkpoint`, not one of these.
        _storage_filesystem: The ``pyarrow.fs.FileSystem`` that ``path`` lives on (None: local).
        return_value: What the training function returned, if anything.

    Example:
        >>> from tunesmith.train import Result
        >>> result = Result(metrics={"loss": 0.1}, checkpoint=None, error=None, path="/tmp/run")
        >>> result.metrics["loss"]
        0.1
    """

    def __init__(
        self,
        metrics: dict[str, Any] | None,
        checkpoint: Checkpoint | None,
        error: BaseException | None,
        path: str | os.PathLike | None,
        metrics_dataframe: "pandas.DataFrame | None" = None,
        best_checkpoints: list[tuple[Checkpoint, dict[str, Any]]] | None = None,
        _storage_filesystem: "pyarrow.fs.FileSystem | None" = None,
        return_value: Any | None = None,
    ):
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.error = error
        self.path = os.fspath(path) if path is not None else None
        self.best_checkpoints = best_checkpoints if best_checkpoints is not None else []
        self.return_value = return_value
        self._storage_filesystem = _storage_filesystem
        self._metrics_dataframe = metrics_dataframe if metrics_dataframe is not None else _UNSET
        # Where a missing dataframe is read from: result rows already in memory, or the run directory.
        self._dataframe_rows: list[dict] | None = None
        self._config: dict | None = None
        self._dataframe_filetype = "json"

    # -- construction --------------------------------------------------------
    @classmethod
    def from_path(
        cls, path: str | os.PathLike, storage_filesystem: "pyarrow.fs.FileSystem | None" = None
    ) -> "Result":
        """Rebuilds a result from a run's (trial's) directory.

        Args:
            path: The run directory: a local path, a URI (``s3://bucket/exp/trial``)
                or a path on ``storage_filesystem``.
            storage_filesystem: The ``pyarrow.fs.FileSystem`` that ``path`` is on.

        Returns:
            A ``Result`` with the last metrics, every checkpoint found in the
            directory with the metrics it was saved with, and the error if the
            run failed.

        Raises:
            RuntimeError: If the directory does not exist or holds neither
                ``result.json`` nor ``progress.csv``.
        """
        from tunesmith.tune.analysis import _loading

        storage, fs_path = _loading.Storage.resolve(path, storage_filesystem)
        if not storage.isdir(fs_path):
            raise RuntimeError(f"Result.from_path: the run directory {fs_path!r} does not exist.")

        rows = _loading.read_result_rows(storage, fs_path)
        from_json = rows is not None
        if rows is None:
            if storage.exists(storage.join(fs_path, EXPR_PROGRESS_FILE)):
                rows = _rows_from_csv(storage, fs_path)
            elif any(storage.exists(storage.join(fs_path, name))
                     for name in (EXPR_PARAM_FILE, EXPR_ERROR_FILE, EXPR_ERROR_PICKLE_FILE)):
                # A run that ended (or failed) before its first report: no metrics, and its error if any.
                rows, from_json = [], True
            else:
                raise RuntimeError(
                    f"Result.from_path: neither {EXPR_RESULT_FILE} nor {EXPR_PROGRESS_FILE} "
                    f"exists in {fs_path!r}; is this the directory of a single run (trial)?"
                )
        metrics = dict(rows[-1]) if rows else {}

        ckpt_names = _loading.list_checkpoint_dirs(storage, fs_path)
        ckpt_metrics = _loading.pair_checkpoint_metrics(ckpt_names, rows)
        # A Tune trial's directory: its experiment's saved state knows how the trial ended and which
        # result each checkpoint was taken at (a final checkpoint's row does not name it).
        saved = _loading.saved_trial_state(storage, fs_path)
        if saved is not None:
            known = {str(e.get("path", "")).rstrip("/").rsplit("/", 1)[-1]: e.get("metrics")
                     for e in saved.get("checkpoints") or [] if isinstance(e, dict)}
            ckpt_metrics = [known[n] if isinstance(known.get(n), dict) else m
                            for n, m in zip(ckpt_names, ckpt_metrics)]
            if saved.get("status") in ("TERMINATED", "ERROR"):
                # A finished trial's checkpoints are the ones its state names; another directory is
                # one it could not load and went on without.
                kept = [(n, m) for n, m in zip(ckpt_names, ckpt_metrics) if n in known]
                ckpt_names, ckpt_metrics = [n for n, _ in kept], [m for _, m in kept]
        raw_fs = storage.raw_filesystem
        best_checkpoints = [
            (Checkpoint(storage.join(fs_path, name), raw_fs), m) for name, m in zip(ckpt_names, ckpt_metrics)
        ]
        latest = None
        if ckpt_names:
            indexed = [(_loading.checkpoint_index(n), i) for i, n in enumerate(ckpt_names)]
            numbered = [(idx, i) for idx, i in indexed if idx is not None]
            latest = best_checkpoints[max(numbered)[1] if numbered else -1][0]
            latest_only = _latest_only_checkpoint(storage, fs_path)
            if latest_only is not None:
                # Kept on disk to resume from, not ranked among the best (CheckpointConfig).
                best_checkpoints = [c for c in best_checkpoints if c[0].path.rstrip("/").rsplit("/", 1)[-1]
                                    != latest_only]
            score = saved.get("checkpoint_score") if saved is not None else None
            if isinstance(score, list) and len(score) == 2:
                # Worst to best by the run's checkpoint score, as the run ranked them (not by number).
                from tunesmith.tune.execution.checkpoint_manager import CheckpointManager

                ranking = CheckpointManager()
                ranking.score_attribute, ranking.score_order = score
                best_checkpoints.sort(key=ranking._key)

        # A trial that failed and then ran again to its end keeps its error files, not its error.
        error = None if saved is not None and saved.get("status") != "ERROR" else _loading.read_error(storage, fs_path)
        from tunesmith.tune.experiment.trial import decode_return_value

        result = cls(
            metrics=metrics,
            checkpoint=latest,
            error=error,
            path=fs_path,
            best_checkpoints=best_checkpoints,
            return_value=decode_return_value(saved.get("return_value")) if saved is not None else None,
            _storage_filesystem=raw_fs,
        )
        if from_json:
            result._dataframe_rows = rows
        return result

    @classmethod
    def _from_trial(cls, trial, dataframe_filetype: str = "json", storage_filesystem=None) -> "Result":
        """The result of a ``Trial``, without touching storage unless the trial errored.

        ``storage_filesystem`` is used when the trial does not name its own filesystem.
        """
        from tunesmith.tune.analysis import _loading

        filesystem = getattr(trial, "filesystem", None)
        storage = _loading.Storage(filesystem if filesystem is not None else storage_filesystem)
        path = trial.local_path
        error = None
        if trial.status == "ERROR" and path is not None:
            error = _loading.read_error(
                storage,
                path,
                pickled_error_file=trial.pickled_error_file,
                error_file=trial.error_file,
                error_msg=trial.error_msg,
                trial_name=str(trial),
            )
        result = cls(
            metrics=dict(trial.last_result),
            checkpoint=trial.checkpoint,
            error=error,
            path=path,
            best_checkpoints=list(trial.best_checkpoints),
            _storage_filesystem=storage.raw_filesystem,
            return_value=getattr(trial, "return_value", None),
        )
        result._config = trial.config
        result._dataframe_filetype = dataframe_filetype
        return result

    # -- attributes read on demand -----------------------------------------
    @property
    def metrics_dataframe(self) -> "pandas.DataFrame | None":
        """All reported results as a ``pandas.DataFrame``, one row per result (read once, then cached)."""
        if self._metrics_dataframe is _UNSET:
            self._metrics_dataframe = self._load_dataframe()
        return self._metrics_dataframe

    @metrics_dataframe.setter
    def metrics_dataframe(self, value: "pandas.DataFrame | None") -> None:
        self._metrics_dataframe = value

    def _load_dataframe(self):
        from tunesmith.tune.analysis import _loading

        if self._dataframe_rows is not None:
            return _loading.load_dataframe(None, "", rows=self._dataframe_rows)
        if self.path is None:
            return None
        storage = _loading.Storage(self._storage_filesystem)
        return _loading.load_dataframe(storage, self.path, filetype=self._dataframe_filetype)

    @property
    def filesystem(self) -> "pyarrow.fs.FileSystem":
        """The ``pyarrow.fs.FileSystem`` that :attr:`path` and the checkpoints live on."""
        if self._storage_filesystem is None:
            import pyarrow.fs

            return pyarrow.fs.LocalFileSystem()
        return self._storage_filesystem

    @property
    def config(self) -> dict[str, Any] | None:
        """The configuration of the run (from the metrics, or the run's ``params`` files)."""
        if self.metrics and isinstance(self.metrics.get(CONFIG), dict):
            return self.metrics[CONFIG]
        if self._config is None and self.path is not None:
            from tunesmith.tune.analysis import _loading

            self._config = _loading.read_params(_loading.Storage(self._storage_filesystem), self.path)
        return self._config

    @property
    def log_dir(self):
        """The run directory as a ``pathlib.Path`` (older name of :attr:`path`)."""
        from pathlib import Path

        return Path(self.path) if self.path is not None else None

    # -- queries -------------------------------------------------------------
    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint | None:
        """The kept checkpoint whose saved ``metric`` is best.

        Args:
            metric: Name of a metric reported with the checkpoints (``"a/b"`` for nested ones).
            mode: ``"max"`` or ``"min"``.

        Returns:
            The best checkpoint, or None when the run saved no checkpoint.

        Raises:
            ValueError: If ``mode`` is not ``"max"``/``"min"``.
            ValueError, RuntimeError: No checkpoint was saved with a numeric ``metric``
                (the error is both: Ray raises a RuntimeError there).
        """
        from tunesmith.tune.analysis import _loading

        if mode not in ("max", "min"):
            raise ValueError(f"Result.get_best_checkpoint: mode must be 'max' or 'min', got {mode!r}.")
        if not self.best_checkpoints:
            return None
        scored = []
        for checkpoint, metrics in self.best_checkpoints:
            score = _loading.metric_score(_loading.lookup_metric(metrics, metric, None))
            if score is not None and score == score:
                scored.append((score, checkpoint))
        if not scored:
            available = sorted(
                {k for _, m in self.best_checkpoints for k in (m or {}) if k not in _REPR_HIDDEN_KEYS}
            )
            raise _NoCheckpointWithMetric(
                f"Result.get_best_checkpoint: no checkpoint was saved with a numeric metric {metric!r}. "
                f"Metrics reported with the checkpoints: {available}."
            )
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[0])[1]

    # -- representation ----------------------------------------------------
    def _repr(self, indent: int = 0) -> str:
        fields: dict[str, Any] = {}
        if self.error is not None:
            fields["error"] = type(self.error).__name__
        metrics = self.metrics
        if metrics:
            metrics = {k: v for k, v in metrics.items() if k not in _REPR_HIDDEN_KEYS}
        fields["metrics"] = metrics
        fields["path"] = self.path
        fields["filesystem"] = _filesystem_name(self._storage_filesystem)
        fields["checkpoint"] = self.checkpoint
        pad = " " * indent
        inner = " " * (indent + 2)
        body = ",\n".join(f"{inner}{k}={v!r}" for k, v in fields.items())
        return f"{pad}{type(self).__name__}(\n{body}\n{pad})"

    def __repr__(self) -> str:
        return self._repr()

    def __getstate__(self):
        state = dict(self.__dict__)
        if state.get("_metrics_dataframe") is _UNSET:
            state["_metrics_dataframe"] = None
            state["_lazy_dataframe"] = True
        return state

    def __setstate__(self, state):
        lazy = state.pop("_lazy_dataframe", False)
        self.__dict__.update(state)
        if lazy:
            self._metrics_dataframe = _UNSET


def _filesystem_name(filesystem) -> str:
    if filesystem is None:
        return "local"
    return getattr(filesystem, "type_name", type(filesystem).__name__)


def _rows_from_csv(storage, trial_dir: str) -> list[dict[str, Any]]:
    """Results from ``progress.csv`` when ``result.json`` is missing (flat keys, CSV types)."""
    import csv
    import io

    from tunesmith.tune.analysis._loading import as_score

    text = storage.read_text(storage.join(trial_dir, EXPR_PROGRESS_FILE))
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {}
        for key, value in raw.items():
            if key is None:
                continue
            if value == "":
                row[key] = None
            elif key == "trial_id":
                row[key] = value
            elif value in ("True", "False"):
                row[key] = value == "True"
            else:
                number = as_score(value)
                if number is None:
                    row[key] = value
                elif number.is_integer() and value.lstrip("-").isdigit():
                    row[key] = int(value)
                else:
                    row[key] = number
        rows.append(row)
    return rows


def _latest_only_checkpoint(storage, trial_path: str) -> str | None:
    """The checkpoint the experiment state marks as kept only to resume from, if it says so."""
    import json

    from tunesmith.tune.result import EXPERIMENT_STATE_FILE

    parent, _, dirname = trial_path.rstrip("/").rpartition("/")
    try:
        state = json.loads(storage.read_text(storage.join(parent, EXPERIMENT_STATE_FILE)))
    except (OSError, ValueError):
        return None
    for trial in state.get("trials") or []:
        if isinstance(trial, dict) and trial.get("trial_dirname") == dirname:
            for entry in trial.get("checkpoints") or []:
                if isinstance(entry, dict) and entry.get("latest_only"):
                    return str(entry.get("path", "")).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    return None
