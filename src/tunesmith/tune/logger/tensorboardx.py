"""TensorBoard logging: scalars per result and hyperparameters at the end of each trial."""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, TYPE_CHECKING

from tunesmith.tune.logger import _event_file
from tunesmith.tune.logger._util import OpenFiles, TrialFile, flatten, wait_for_writes
from tunesmith.tune.logger.logger import Logger, _TrialWriterCallback
from tunesmith.tune.result import CONFIG, PID, TIME_TOTAL_S, TIMESTAMP, TIMESTEPS_TOTAL, TRAINING_ITERATION

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

TAG_PREFIX = "ray/tune/"
# Fields that are not plotted: the config, identifiers, and the x axes themselves.
_EXCLUDE = (CONFIG, PID, TIMESTAMP, TIME_TOTAL_S, TRAINING_ITERATION)
_EXCLUDED = frozenset(_EXCLUDE)
_VALID_HPARAM_TYPES = (str, bool, int, float, list, type(None))


def _scalars(result: dict) -> dict[str, float]:
    out = {}
    for key, value in flatten(result, exclude=_EXCLUDE).items():
        kind = type(value)
        if kind is float:
            if value != value:  # NaN
                continue
        elif kind is int:
            pass
        elif kind is bool:
            value = int(value)  # a flag plots as 0 or 1, as on Ray
        elif kind is str or value is None or not isinstance(value, numbers.Real):
            continue
        else:
            value = float(value)
            if math.isnan(value):
                continue
        out[TAG_PREFIX + str(key)] = value
    return out


class _TBXWriter:
    """Writes one trial's event file; results are encoded in the logger I/O thread."""

    def __init__(self, logdir: str, owner: OpenFiles | None = None):
        self.file = TrialFile(os.path.join(logdir, _event_file.new_event_file_name()), binary=True,
                              owner=owner, encoder=self._encode)
        self._encoder = _event_file.ScalarEncoder()
        # The file's first record, queued with the first item: a file with nothing queued is not
        # flushed ahead of the trial's other result files.
        self._header: bytes | None = _event_file.record(self._encoder.file_version_event())
        self._last_plotted: dict | None = None  # the last result with scalars, for the HParams summaries

    def _write_header(self) -> None:
        if self._header is not None:
            self.file.write(("raw", self._header))
            self._header = None

    def write(self, result: dict) -> None:
        if self._header is not None:
            self._write_header()
        self.file.write(("result", dict(result)))

    def write_hparams(self, params: dict) -> None:
        """Queues the HParams plugin summaries for ``params`` against the last scalars."""
        if params:
            self._write_header()
            self.file.write(("hparams", dict(params)))

    def _encode(self, items: list) -> bytes:
        out = []
        for kind, payload in items:
            if kind == "raw":
                out.append(payload)
            elif kind == "result":
                step = payload.get(TIMESTEPS_TOTAL) or payload.get(TRAINING_ITERATION) or 0
                summary = self._encoder.plain_summary(payload, _EXCLUDED, TAG_PREFIX)
                if summary is None:  # nested fields or numpy values
                    summary = self._encoder.summary(_scalars(payload))
                if summary:
                    out.append(_event_file.record(_event_file.event(summary, step)))
                    self._last_plotted = payload
            else:
                out.extend(self._hparams_records(payload))
        return b"".join(out)

    def _hparams_records(self, params: dict) -> list[bytes]:
        if self._last_plotted is None:
            return []
        flat = {}
        for key, value in flatten(params).items():
            if isinstance(value, _VALID_HPARAM_TYPES):
                flat[key] = value
            elif isinstance(value, numbers.Number) and hasattr(value, "item"):
                flat[key] = value.item()  # numpy scalars
        if not flat:
            return []
        summaries = _event_file.hparams_summaries(flat, _scalars(self._last_plotted))
        return [_event_file.record(_event_file.event(summary)) for summary in summaries]

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self._write_header()
        self.file.close()


class TBXLoggerCallback(_TrialWriterCallback):
    """Logs results to TensorBoard event files in each trial directory.

    Every numeric result field (nested fields joined with ``/``) becomes a
    scalar tagged ``ray/tune/<field>``, at the step ``timesteps_total`` when a
    result has it and ``training_iteration`` otherwise. When a trial ends,
    its sampled hyperparameters and last metrics are logged for TensorBoard's
    HParams view. View them with ``tensorboard --logdir <experiment dir>``.
    Neither part imports tensorboardX (or torch).

    Args:
        flush_period_s: Seconds between flushes of the buffered files.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger import TBXLoggerCallback
        >>> run_config = tune.RunConfig(callbacks=[TBXLoggerCallback()])
    """

    def _make_writer(self, trial: "Trial") -> _TBXWriter:
        return _TBXWriter(trial.local_path, self._files)

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        writer = self._writers.get(trial)
        if writer is not None:
            writer.write_hparams(trial.evaluated_params)
        super().log_trial_end(trial, failed=failed)

    def on_experiment_end(self, trials: list["Trial"], **info: Any) -> None:
        for trial, writer in list(self._writers.items()):
            writer.write_hparams(trial.evaluated_params)
        super().on_experiment_end(trials, **info)


class TBXLogger(Logger):
    """Legacy per-trial TensorBoard logger. Prefer :class:`TBXLoggerCallback`.

    Example:
        >>> from tunesmith.tune.logger import LegacyLoggerCallback, TBXLogger
        >>> callback = LegacyLoggerCallback([TBXLogger])
    """

    def _init(self) -> None:
        self._writer = _TBXWriter(self.logdir)

    def on_result(self, result: dict) -> None:
        self._writer.write(result)
        # As the older loggers did, each result is on disk when this returns (a logger_creator's
        # logger may never be closed).
        self._writer.flush()
        wait_for_writes()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        params = getattr(self.trial, "evaluated_params", None) if self.trial is not None else None
        self._writer.write_hparams(params or {})
        self._writer.close()
        wait_for_writes()
