"""Logger interfaces: the ``LoggerCallback`` base, legacy per-trial ``Logger`` classes, ``pretty_print``."""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, TYPE_CHECKING

from tunesmith.tune.callback import Callback
from tunesmith.tune.logger._util import DEFAULT_FLUSH_PERIOD_S, OpenFiles, note_trial_files_closed, wait_for_writes

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial


class LoggerCallback(Callback):
    """Base class for callbacks that log trial results.

    It turns the driver's callback hooks into five logging methods; override
    those you need. ``log_trial_end`` is called when a trial completes or fails.

    Example:
        >>> import json, os
        >>> from tunesmith.tune.logger import LoggerCallback
        >>> class LossFile(LoggerCallback):
        ...     def __init__(self):
        ...         self._files = {}
        ...
        ...     def log_trial_start(self, trial):
        ...         os.makedirs(trial.local_path, exist_ok=True)
        ...         self._files[trial] = open(os.path.join(trial.local_path, "loss.txt"), "a")
        ...
        ...     def log_trial_result(self, iteration, trial, result):
        ...         self._files[trial].write(f"{result['loss']}\\n")
        ...
        ...     def log_trial_end(self, trial, failed=False):
        ...         self._files.pop(trial).close()
    """

    _logs_results = True  # writes each result even when a callback before it fails (see CallbackList)

    def log_trial_start(self, trial: "Trial") -> None:
        """Called when a trial starts (again, after a pause or a failure)."""

    def log_trial_restore(self, trial: "Trial") -> None:
        """Called when a trial has been restored from a checkpoint."""

    def log_trial_save(self, trial: "Trial") -> None:
        """Called when a trial has saved a checkpoint."""

    def log_trial_result(self, iteration: int, trial: "Trial", result: dict) -> None:
        """Called for every result of a trial."""

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        """Called when a trial has finished; ``failed`` is True if it ended in an error."""

    def on_trial_start(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        self.log_trial_save(trial)

    def on_trial_result(self, iteration: int, trials: list["Trial"], trial: "Trial", result: dict, **info) -> None:
        self.log_trial_result(iteration, trial, result)

    def on_trial_complete(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list["Trial"], trial: "Trial", **info) -> None:
        self.log_trial_end(trial, failed=True)


class _TrialWriterCallback(LoggerCallback):
    """A logger callback that keeps one buffered writer per trial.

    Writers are created at trial start, written on each result without any
    flush, flushed every ``flush_period_s`` seconds at the end of a driver
    step, and closed when the trial ends or the experiment ends.
    """

    # Its files go through the loggers' I/O thread, after the trial's directory: it need not wait
    # for that thread at trial start and end (every other callback does, see CallbackList).
    _writes_through_io_thread = True

    def __init__(self, flush_period_s: float = DEFAULT_FLUSH_PERIOD_S):
        if not isinstance(flush_period_s, (int, float)) or flush_period_s < 0:
            raise ValueError(f"flush_period_s must be a number >= 0, got {flush_period_s!r}.")
        self._files = OpenFiles(flush_period_s)
        self._writers: dict[Any, Any] = {}

    def _make_writer(self, trial: "Trial"):
        raise NotImplementedError

    def _start_writer(self, trial: "Trial"):
        old = self._writers.pop(trial, None)
        if old is not None:
            old.close()
        if trial.local_path is None:
            return None
        writer = self._writers[trial] = self._make_writer(trial)
        return writer

    def log_trial_start(self, trial: "Trial") -> None:
        self._start_writer(trial)

    def log_trial_result(self, iteration: int, trial: "Trial", result: dict) -> None:
        writer = self._writers.get(trial)
        if writer is None:
            writer = self._start_writer(trial)
            if writer is None:
                return
        writer.write(result)

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is not None:
            writer.close()
            # Complete on disk before any other callback hears of the trial's end (CallbackList
            # waits then); the loggers themselves do not wait for it, trial after trial.
            note_trial_files_closed()

    # The file a rollback cuts, and how (None: the format cannot be cut).
    _rollback_file: str | None = None
    _rollback_cut = None

    def _rollback_trial(self, trial: "Trial", rows: int) -> None:
        """Cuts the trial's file back to ``rows`` results; its next writer appends from there."""
        writer = self._writers.pop(trial, None)
        if writer is not None:
            writer.close()
        if self._rollback_file is None or trial.local_path is None:
            return
        import os

        from tunesmith.tune.logger._util import submit

        submit(type(self)._rollback_cut, os.path.join(trial.local_path, self._rollback_file), rows)

    def on_step_end(self, iteration: int, trials: list["Trial"], **info) -> None:
        self._files.maybe_flush()

    def on_experiment_end(self, trials: list["Trial"], **info) -> None:
        for trial in list(self._writers):
            self._writers.pop(trial).close()
        wait_for_writes()

    def flush(self) -> None:
        """Writes every buffered result to disk now."""
        self._files.flush_all()
        wait_for_writes()

    def __getstate__(self) -> dict:
        # Open files are not picklable and belong to this process only.
        state = self.__dict__.copy()
        state["_writers"] = {}
        state["_files"] = OpenFiles(self._files.flush_period_s, self._files.max_open)
        return state


class Logger:
    """Legacy per-trial logger, one instance per trial (prefer :class:`LoggerCallback`).

    Args:
        config: The trial's configuration.
        logdir: The trial's directory.
        trial: The trial, if known.

    Example:
        >>> from tunesmith.tune.logger import Logger, LegacyLoggerCallback
        >>> class PrintLogger(Logger):
        ...     def on_result(self, result):
        ...         print(self.logdir, result.get("loss"))
        >>> callback = LegacyLoggerCallback([PrintLogger])
    """

    def __init__(self, config: dict, logdir: str, trial: "Trial | None" = None):
        self.config = config
        self.logdir = logdir
        self.trial = trial
        self._init()

    def _init(self) -> None:
        pass

    def on_result(self, result: dict) -> None:
        """Called with every result of the trial."""
        raise NotImplementedError

    def update_config(self, config: dict) -> None:
        """Called when the trial's configuration changes."""

    def close(self) -> None:
        """Releases the logger's resources."""

    def flush(self) -> None:
        """Writes buffered data."""


class NoopLogger(Logger):
    """A legacy logger that does nothing."""

    def on_result(self, result: dict) -> None:
        pass


class UnifiedLogger(Logger):
    """A legacy logger that forwards to several loggers (JSON, CSV and TensorBoard by default).

    Args:
        config: The trial's configuration.
        logdir: The trial's directory.
        trial: The trial, if known.
        loggers: Logger classes to use; the default is JSON, CSV and (if
            tensorboardX is installed) TensorBoard.
    """

    def __init__(self, config: dict, logdir: str, trial: "Trial | None" = None,
                 loggers: Iterable[type[Logger]] | None = None):
        if loggers is None:
            from tunesmith.tune.logger import default_logger_classes

            loggers = default_logger_classes()
        self._logger_classes = list(loggers)
        super().__init__(config, logdir, trial)

    def _init(self) -> None:
        self._loggers = [cls(self.config, self.logdir, self.trial) for cls in self._logger_classes]

    def on_result(self, result: dict) -> None:
        for lg in self._loggers:
            lg.on_result(result)

    def update_config(self, config: dict) -> None:
        for lg in self._loggers:
            lg.update_config(config)

    def close(self) -> None:
        for lg in self._loggers:
            lg.close()

    def flush(self) -> None:
        for lg in self._loggers:
            lg.flush()


class LegacyLoggerCallback(LoggerCallback):
    """Runs legacy :class:`Logger` classes as a callback, one instance per trial and class.

    Args:
        logger_classes: The ``Logger`` subclasses to instantiate for each trial.

    Example:
        >>> from tunesmith.tune.logger import CSVLogger, JsonLogger, LegacyLoggerCallback
        >>> callback = LegacyLoggerCallback([JsonLogger, CSVLogger])
    """

    def __init__(self, logger_classes: Iterable[type[Logger]]):
        classes = list(logger_classes)
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Logger)):
                raise TypeError(
                    f"LegacyLoggerCallback takes Logger subclasses, got {cls!r}; "
                    "for a LoggerCallback, pass it to RunConfig(callbacks=[...]) directly."
                )
        self.logger_classes = tuple(classes)
        self._trial_loggers: dict[Any, list[Logger]] = {}

    def log_trial_start(self, trial: "Trial") -> None:
        loggers = self._trial_loggers.get(trial)
        if loggers is None or None in loggers:
            import os

            if trial.local_path is not None:
                os.makedirs(trial.local_path, exist_ok=True)
            for lg in loggers or ():
                if lg is not None:
                    lg.update_config(trial.config)
            self._trial_loggers[trial] = [
                cls(trial.config, trial.local_path, trial) if lg is None else lg
                for lg, cls in zip(loggers or [None] * len(self.logger_classes), self.logger_classes)
            ]
        else:
            for lg in loggers:
                lg.update_config(trial.config)

    def log_trial_result(self, iteration: int, trial: "Trial", result: dict) -> None:
        loggers = self._trial_loggers.get(trial)
        if loggers is None or None in loggers:
            self.log_trial_start(trial)
        for lg in self._trial_loggers[trial]:
            lg.on_result(result)

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        for lg in self._trial_loggers.pop(trial, []):
            if lg is not None:
                lg.close()

    def _rollback_trial(self, trial: "Trial", rows: int) -> None:
        """A retried trial's result.json and progress.csv are cut back to ``rows`` results: the loggers
        that write them start over on the cut files. Other loggers (the user's) go on as they were, one
        per trial for the whole trial, as on Ray."""
        import os

        from tunesmith.tune.logger._util import cut_csv_rows, cut_result_lines, submit
        from tunesmith.tune.logger.csv import CSVLogger
        from tunesmith.tune.logger.json import JsonLogger
        from tunesmith.tune.result import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE

        loggers = self._trial_loggers.get(trial) or []
        for i, lg in enumerate(loggers):
            if isinstance(lg, (JsonLogger, CSVLogger)):
                lg.close()
                loggers[i] = None
        if trial.local_path is not None:
            submit(cut_result_lines, os.path.join(trial.local_path, EXPR_RESULT_FILE), rows)
            submit(cut_csv_rows, os.path.join(trial.local_path, EXPR_PROGRESS_FILE), rows)

    def on_experiment_end(self, trials: list["Trial"], **info) -> None:
        for trial in list(self._trial_loggers):
            self.log_trial_end(trial)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_trial_loggers"] = {}
        return state


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text == "" or text != text.strip() or any(c in text for c in ":#\n'\"{}[],&*!|>%@`") \
            or text.lower() in ("null", "true", "false", "yes", "no", "~"):
        return json.dumps(text)
    try:
        float(text)
        return json.dumps(text)
    except ValueError:
        return text


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            item = value[key]
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(item, indent + 1))
            elif isinstance(item, list) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(item, indent))
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item) if item != {} and item != [] else str(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = _yaml_lines(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def pretty_print(result: dict, exclude: Iterable[str] | None = None) -> str:
    """Formats a result as YAML-style text, without its ``config`` (and ``hist_stats``).

    Args:
        result: A result dict.
        exclude: Top-level keys to leave out.

    Example:
        >>> from tunesmith.tune.logger import pretty_print
        >>> print(pretty_print({"loss": 0.5, "info": {"lr": 0.1}, "config": {"a": 1}}), end="")
        info:
          lr: 0.1
        loss: 0.5
    """
    from tunesmith.tune.utils.serialization import to_jsonable

    skip = {"config", "hist_stats"} | set(exclude or ())
    out = {k: v for k, v in result.items() if v is not None and k not in skip}
    lines = _yaml_lines(to_jsonable(out), 0)
    return "\n".join(lines) + "\n" if lines else ""
