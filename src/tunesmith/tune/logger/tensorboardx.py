"""TensorBoard logging: scalars per result and hyperparameters at the end of each trial."""
from __future__ import annotations

import logging
import math
import numbers
import os
from typing import Any, TYPE_CHECKING

from tunesmith.tune.logger import _event_file
from tunesmith.tune.logger._util import OpenFiles, TrialFile, flatten
from tunesmith.tune.logger.logger import Logger, _TrialWriterCallback
from tunesmith.tune.result import CONFIG, PID, TIME_TOTAL_S, TIMESTAMP, TIMESTEPS_TOTAL, TRAINING_ITERATION

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

logger = logging.getLogger(__name__)

TAG_PREFIX = "ray/tune/"
# Fields that are not plotted: the config, identifiers, and the x axes themselves.
_EXCLUDE = (CONFIG, PID, TIMESTAMP, TIME_TOTAL_S, TRAINING_ITERATION)
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
        elif kind is bool or not isinstance(value, numbers.Real):
            continue
        else:
            value = float(value)
            if math.isnan(value):
                continue
        out[TAG_PREFIX + str(key)] = value
    return out


class _HideCometML:
    """An import hook under which ``import comet_ml`` fails."""

    def find_spec(self, name, path=None, target=None):
        if name == "comet_ml" or name.startswith("comet_ml."):
            raise ImportError("comet_ml is not imported by tunesmith's TensorBoard logger")
        return None


def _tbx_hparams():
    """``tensorboardX.summary.hparams``, imported without comet_ml.

    tensorboardX imports comet_ml whenever it is installed, for a Comet
    writer this logger never uses; that import takes seconds and patches
    other libraries. It is hidden while tensorboardX is first imported
    (unless comet_ml is already loaded).
    """
    import sys

    if "tensorboardX.summary" in sys.modules or "comet_ml" in sys.modules:
        from tensorboardX.summary import hparams

        return hparams
    hook = _HideCometML()
    sys.meta_path.insert(0, hook)
    try:
        from tensorboardX.summary import hparams
    finally:
        sys.meta_path.remove(hook)
    return hparams


class _TBXWriter:
    """Writes one trial's event file; results are encoded in the logger I/O thread."""

    def __init__(self, logdir: str, owner: OpenFiles | None = None):
        self.file = TrialFile(os.path.join(logdir, _event_file.new_event_file_name()), binary=True,
                              owner=owner, encoder=self._encode)
        self._encoder = _event_file.ScalarEncoder()
        self.file.write(("raw", _event_file.record(self._encoder.file_version_event())))
        self.last_scalars: dict[str, float] = {}

    def write(self, result: dict) -> None:
        self.file.write(("result", dict(result)))

    def write_hparams(self, params: dict) -> None:
        """Queues the HParams plugin summaries for ``params`` against the last scalars."""
        if params:
            self.file.write(("hparams", dict(params)))

    def _encode(self, items: list) -> bytes:
        out = []
        for kind, payload in items:
            if kind == "raw":
                out.append(payload)
            elif kind == "result":
                step = payload.get(TIMESTEPS_TOTAL) or payload.get(TRAINING_ITERATION) or 0
                scalars = _scalars(payload)
                if scalars:
                    summary = self._encoder.summary(scalars)
                    out.append(_event_file.record(_event_file.event(summary, step)))
                    self.last_scalars = scalars
            else:
                out.extend(self._hparams_records(payload))
        return b"".join(out)

    def _hparams_records(self, params: dict) -> list[bytes]:
        if not self.last_scalars:
            return []
        try:
            hparams = _tbx_hparams()
        except ImportError:
            return []
        flat = {k: v for k, v in flatten(params).items() if isinstance(v, _VALID_HPARAM_TYPES)}
        if not flat:
            return []
        try:
            summaries = hparams(hparam_dict=flat, metric_dict=dict(self.last_scalars))
        except Exception as exc:
            logger.warning("Could not log hyperparameters to TensorBoard (%s): %s", self.file.path, exc)
            return []
        return [_event_file.record(_event_file.event(summary.SerializeToString())) for summary in summaries]

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TBXLoggerCallback(_TrialWriterCallback):
    """Logs results to TensorBoard event files in each trial directory.

    Every numeric result field (nested fields joined with ``/``) becomes a
    scalar tagged ``ray/tune/<field>``, at the step ``timesteps_total`` when a
    result has it and ``training_iteration`` otherwise. When a trial ends,
    its sampled hyperparameters and last metrics are logged for TensorBoard's
    HParams view (this part needs tensorboardX). View them with
    ``tensorboard --logdir <experiment dir>``.

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

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        params = getattr(self.trial, "evaluated_params", None) if self.trial is not None else None
        self._writer.write_hparams(params or {})
        self._writer.close()
