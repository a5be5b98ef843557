"""LightGBM: report the evaluation metrics of ``lightgbm.train`` to Tune, with checkpoints.

Importing this module does not import lightgbm; :meth:`TuneReportCheckpointCallback.get_model` does.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from tunesmith.tune.integration._report import (
    Metrics,
    check_frequency,
    checkpoint_from,
    normalize_metrics,
    report,
    select_metrics,
)


def _eval_results(env: Any) -> dict[str, float]:
    """``[("eval", "binary_logloss", 0.3, False), ...]`` -> ``{"eval-binary_logloss": 0.3}``.

    With ``lightgbm.cv`` each entry also has a standard deviation: ``-mean`` and ``-stdv`` names.
    """
    out = {}
    for entry in env.evaluation_result_list or []:
        data_name, eval_name, value = entry[0], entry[1], entry[2]
        if len(entry) > 4:
            out[f"{data_name}-{eval_name}-mean"] = float(value)
            out[f"{data_name}-{eval_name}-stdv"] = float(entry[4])
        else:
            out[f"{data_name}-{eval_name}"] = float(value)
    return out


class TuneReportCheckpointCallback:
    """A LightGBM callback that reports each boosting round's metrics to Tune, with checkpoints.

    After every round it reports each validation metric, named
    ``<valid set>-<metric>`` (``"eval-binary_logloss"``), or those named in
    ``metrics``. Every ``frequency`` rounds, and at the last round, the model
    is saved as ``filename`` in a checkpoint reported with the result;
    :meth:`get_model` loads it back. A scheduler's decision to stop the
    trial ends ``lightgbm.train`` at that round.

    Args:
        metrics: Metrics to report: a name, a list of names, or a dict of
            reported name -> LightGBM name (``{"loss": "eval-binary_logloss"}``).
            All of them when None.
        filename: The model's file name in the checkpoint.
        frequency: Checkpoint every this many rounds (0: only at the end).
        checkpoint_at_end: Checkpoint the model at the last round.
        results_postprocessing_fn: Called on the dict to report; returns the dict reported.

    Example:
        >>> import numpy as np, lightgbm as lgb
        >>> from tunesmith import tune
        >>> from tunesmith.tune.integration.lightgbm import TuneReportCheckpointCallback
        >>> def train_fn(config):
        ...     x = np.random.rand(200, 4); y = (x[:, 0] > 0.5).astype(int)
        ...     dtrain = lgb.Dataset(x[:150], label=y[:150]); dval = lgb.Dataset(x[150:], label=y[150:])
        ...     lgb.train({"objective": "binary", "learning_rate": config["lr"], "verbose": -1}, dtrain,
        ...               num_boost_round=10, valid_sets=[dval], valid_names=["eval"],
        ...               callbacks=[TuneReportCheckpointCallback({"loss": "eval-binary_logloss"})])
        >>> tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(0.01, 0.3)},
        ...                    tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2))
    """

    CHECKPOINT_NAME = "model.txt"
    # LightGBM runs callbacks by this order, after its own (early stopping is 30).
    order = 40

    def __init__(
        self,
        metrics: Metrics = None,
        filename: str = CHECKPOINT_NAME,
        frequency: int = 0,
        checkpoint_at_end: bool = True,
        results_postprocessing_fn: Callable[[dict], dict] | None = None,
    ):
        owner = type(self).__name__
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{owner}(filename={filename!r}) must be a plain file name such as 'model.txt'.")
        self._metrics = normalize_metrics(metrics, owner)
        self._filename = filename
        self._frequency = check_frequency(frequency, owner)
        self._checkpoint_at_end = bool(checkpoint_at_end)
        self._results_postprocessing_fn = results_postprocessing_fn

    @classmethod
    def get_model(cls, checkpoint, filename: str = CHECKPOINT_NAME):
        """Loads the model saved in a checkpoint of this callback.

        Args:
            checkpoint: A :class:`~tunesmith.train.Checkpoint` reported by this callback.
            filename: The model's file name, as given to the callback.

        Returns:
            A ``lightgbm.Booster``.
        """
        import lightgbm

        with checkpoint.as_directory() as directory:
            return lightgbm.Booster(model_file=os.path.join(directory, filename))

    def __call__(self, env: Any) -> None:
        metrics = select_metrics(_eval_results(env), self._metrics, type(self).__name__)
        if self._results_postprocessing_fn is not None:
            metrics = self._results_postprocessing_fn(metrics)
        last_round = env.iteration == env.end_iteration - 1
        periodic = self._frequency and (env.iteration + 1) % self._frequency == 0
        if periodic or (last_round and self._checkpoint_at_end):
            with checkpoint_from(lambda d: env.model.save_model(os.path.join(d, self._filename))) as checkpoint:
                report(metrics, checkpoint=checkpoint)
        else:
            report(metrics)


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports LightGBM's evaluation metrics to Tune each round, without checkpoints.

    Args:
        metrics: As for :class:`TuneReportCheckpointCallback`.
        results_postprocessing_fn: Called on the dict to report; returns the dict reported.

    Example:
        >>> from tunesmith.tune.integration.lightgbm import TuneReportCallback
        >>> callback = TuneReportCallback({"loss": "eval-binary_logloss"})
    """

    def __init__(self, metrics: Metrics = None, results_postprocessing_fn: Callable[[dict], dict] | None = None):
        super().__init__(metrics=metrics, frequency=0, checkpoint_at_end=False,
                         results_postprocessing_fn=results_postprocessing_fn)


__all__ = ["TuneReportCallback", "TuneReportCheckpointCallback"]
