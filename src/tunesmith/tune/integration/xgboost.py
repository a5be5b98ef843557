"""XGBoost: report the evaluation metrics of ``xgboost.train`` to Tune, with checkpoints.

Importing this module imports xgboost (``pip install xgboost``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable

from tunesmith.tune.integration._report import (
    Metrics,
    check_frequency,
    checkpoint_from,
    normalize_metrics,
    report,
    select_metrics,
)

try:
    from xgboost.callback import TrainingCallback as _Base
except ImportError:  # the class still exists, and says what to install when it is used
    _Base = object


def _last(value: Any, keep_pairs: bool = False) -> Any:
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    if isinstance(value, tuple):  # xgboost.cv logs (mean, std) over the folds
        if keep_pairs:
            return tuple(float(v) if hasattr(v, "__float__") else v for v in value)
        value = value[0]
    return float(value) if hasattr(value, "__float__") else value


def _flatten_evals(evals_log: dict, keep_pairs: bool = False) -> dict[str, Any]:
    """``{"eval": {"logloss": [...]}}`` -> ``{"eval-logloss": last value}``.

    ``xgboost.cv``'s ``(mean, std)`` pairs become their mean, or stay pairs with ``keep_pairs``.
    """
    out = {}
    for data_name, metrics in evals_log.items():
        if isinstance(metrics, dict):
            for name, values in metrics.items():
                out[f"{data_name}-{name}"] = _last(values, keep_pairs)
        else:
            out[str(data_name)] = _last(metrics, keep_pairs)
    return out


class TuneReportCheckpointCallback(_Base):
    """An XGBoost callback that reports each boosting round's metrics to Tune, with checkpoints.

    After every round it reports the last value of each evaluation metric,
    named ``<eval set>-<metric>`` (``"eval-logloss"``), or those named in
    ``metrics``. Every ``frequency`` rounds, and at the end of training, the
    booster is saved as ``filename`` in a checkpoint reported with the
    result; :meth:`get_model` loads it back. A scheduler's decision to stop
    the trial ends ``xgboost.train`` at that round.

    Args:
        metrics: Metrics to report: a name (``"eval-logloss"``), a list of
            names, or a dict of reported name -> XGBoost name
            (``{"loss": "eval-logloss"}``). All of them when None.
        filename: The booster's file name in the checkpoint.
        frequency: Checkpoint every this many rounds (0: only at the end).
        checkpoint_at_end: Checkpoint the final booster when training ends.
        results_postprocessing_fn: Called on the dict to report; returns the dict reported. With
            ``xgboost.cv`` each value it gets is the ``(mean, std)`` over the folds.

    Example:
        >>> import numpy as np, xgboost as xgb
        >>> from tunesmith import tune
        >>> from tunesmith.tune.integration.xgboost import TuneReportCheckpointCallback
        >>> def train_fn(config):
        ...     x = np.random.rand(200, 4); y = (x[:, 0] > 0.5).astype(int)
        ...     dtrain = xgb.DMatrix(x[:150], label=y[:150]); dval = xgb.DMatrix(x[150:], label=y[150:])
        ...     xgb.train({"objective": "binary:logistic", "eta": config["eta"]}, dtrain, num_boost_round=10,
        ...               evals=[(dval, "eval")], verbose_eval=False,
        ...               callbacks=[TuneReportCheckpointCallback({"loss": "eval-logloss"}, frequency=5)])
        >>> tuner = tune.Tuner(train_fn, param_space={"eta": tune.loguniform(0.01, 0.3)},
        ...                    tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2))
    """

    CHECKPOINT_NAME = "model.ubj"

    def __init__(
        self,
        metrics: Metrics = None,
        filename: str = CHECKPOINT_NAME,
        frequency: int = 0,
        checkpoint_at_end: bool = True,
        results_postprocessing_fn: Callable[[dict], dict] | None = None,
    ):
        if _Base is object:
            raise ImportError("The XGBoost integration needs xgboost: `pip install xgboost`.")
        owner = type(self).__name__
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{owner}(filename={filename!r}) must be a plain file name such as 'model.ubj'.")
        self._metrics = normalize_metrics(metrics, owner)
        self._filename = filename
        self._frequency = check_frequency(frequency, owner)
        self._checkpoint_at_end = bool(checkpoint_at_end)
        self._results_postprocessing_fn = results_postprocessing_fn
        self._evals_log: dict | None = None
        self._last_checkpoint_iteration: int | None = None

    @classmethod
    def get_model(cls, checkpoint, filename: str = CHECKPOINT_NAME):
        """Loads the booster saved in a checkpoint of this callback.

        Args:
            checkpoint: A :class:`~tunesmith.train.Checkpoint` reported by this callback.
            filename: The booster's file name, as given to the callback.

        Returns:
            An ``xgboost.Booster``.
        """
        import xgboost

        with checkpoint.as_directory() as directory:
            booster = xgboost.Booster()
            booster.load_model(os.path.join(directory, filename))
            return booster

    def _report_dict(self, evals_log: dict) -> dict:
        postprocess = self._results_postprocessing_fn
        # With xgboost.cv the function gets each metric's (mean, std) over the folds, as on Ray;
        # without one the mean is reported.
        metrics = select_metrics(_flatten_evals(evals_log or {}, keep_pairs=postprocess is not None),
                                 self._metrics, type(self).__name__)
        if postprocess is not None:
            metrics = postprocess(metrics)
        return metrics

    def _save(self, model) -> Callable[[str], None]:
        return lambda directory: model.save_model(os.path.join(directory, self._filename))

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        self._evals_log = OrderedDict(evals_log) if evals_log is not None else None
        metrics = self._report_dict(evals_log)
        if self._frequency and (epoch + 1) % self._frequency == 0:
            self._last_checkpoint_iteration = epoch
            with checkpoint_from(self._save(model)) as checkpoint:
                report(metrics, checkpoint=checkpoint)
        else:
            report(metrics)
        return False

    def after_training(self, model):
        if not self._checkpoint_at_end:
            return model
        last = model.num_boosted_rounds() - 1
        if self._last_checkpoint_iteration is not None and self._last_checkpoint_iteration == last:
            return model  # the last round was checkpointed already
        metrics = self._report_dict(self._evals_log) if self._evals_log else {}
        with checkpoint_from(self._save(model)) as checkpoint:
            report(metrics, checkpoint=checkpoint)
        return model


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports XGBoost's evaluation metrics to Tune each round, without checkpoints.

    Args:
        metrics: As for :class:`TuneReportCheckpointCallback`.
        results_postprocessing_fn: Called on the dict to report; returns the dict reported.

    Example:
        >>> from tunesmith.tune.integration.xgboost import TuneReportCallback
        >>> callback = TuneReportCallback({"loss": "eval-logloss"})
    """

    def __init__(self, metrics: Metrics = None, results_postprocessing_fn: Callable[[dict], dict] | None = None):
        super().__init__(metrics=metrics, frequency=0, checkpoint_at_end=False,
                         results_postprocessing_fn=results_postprocessing_fn)


__all__ = ["TuneReportCallback", "TuneReportCheckpointCallback"]
