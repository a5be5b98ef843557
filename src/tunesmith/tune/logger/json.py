"""JSON logging: one line per result in ``result.json``, the config in ``params.json``/``params.pkl``."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tunesmith.tune.logger._util import OpenFiles, TrialFile, cut_result_lines, dumps, params_written, wait_for_writes, write_params
from tunesmith.tune.logger.logger import Logger, _TrialWriterCallback
from tunesmith.tune.result import EXPR_RESULT_FILE

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial


def _encode_lines(results: list[dict]) -> str:
    return "".join([dumps(r) + "\n" for r in results])


class _JsonWriter:
    def __init__(self, logdir: str, owner: OpenFiles | None = None):
        self.file = TrialFile(os.path.join(logdir, EXPR_RESULT_FILE), owner=owner, encoder=_encode_lines)

    def write(self, result: dict) -> None:
        # Encoded in the logger I/O thread; a shallow copy keeps later edits of the dict out.
        self.file.write(dict(result))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class JsonLoggerCallback(_TrialWriterCallback):
    """Logs every result of a trial as one JSON line in ``<trial dir>/result.json``.

    At each trial start it also writes the trial's configuration to
    ``params.json`` and (pickled with cloudpickle) ``params.pkl``. Lines are
    appended, so a restored trial continues its file. NaN and infinity are
    written as ``NaN``/``Infinity``, which Python's ``json`` and pandas read.

    Args:
        flush_period_s: Seconds between flushes of the buffered files.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger import JsonLoggerCallback
        >>> run_config = tune.RunConfig(callbacks=[JsonLoggerCallback()])
    """

    _rollback_file = EXPR_RESULT_FILE
    _rollback_cut = staticmethod(cut_result_lines)

    def _make_writer(self, trial: "Trial") -> _JsonWriter:
        return _JsonWriter(trial.local_path, self._files)

    def log_trial_start(self, trial: "Trial") -> None:
        if trial.local_path is not None and not params_written(trial.local_path, trial.config):
            write_params(trial.local_path, trial.config)
        super().log_trial_start(trial)


class JsonLogger(Logger):
    """Legacy per-trial logger writing ``result.json``, ``params.json`` and ``params.pkl``.

    Prefer :class:`JsonLoggerCallback`.

    Example:
        >>> from tunesmith.tune.logger import JsonLogger, LegacyLoggerCallback
        >>> callback = LegacyLoggerCallback([JsonLogger])
    """

    def _init(self) -> None:
        self.update_config(self.config)
        self._writer = _JsonWriter(self.logdir)

    def on_result(self, result: dict) -> None:
        self._writer.write(result)
        # As the older loggers did, each result is on disk when this returns (a logger_creator's
        # logger may never be closed).
        self._writer.flush()
        wait_for_writes()

    def update_config(self, config: dict) -> None:
        self.config = config
        write_params(self.logdir, config)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        """Writes what is buffered and closes the file; it is complete on disk when this returns."""
        self._writer.close()
        wait_for_writes()
