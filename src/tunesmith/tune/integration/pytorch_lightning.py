"""PyTorch Lightning: report a ``Trainer``'s logged metrics to Tune, with checkpoints.

Importing this module imports Lightning (``lightning.pytorch``, or the older
``pytorch_lightning`` package when only that is installed).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from tunesmith.tune.integration._report import Metrics, checkpoint_from, normalize_metrics, report

logger = logging.getLogger(__name__)

try:
    import lightning.pytorch as _pl
except ImportError:
    try:
        import pytorch_lightning as _pl  # type: ignore[no-redef]
    except ImportError:
        _pl = None

_Base: Any = _pl.Callback if _pl is not None else object

# The Trainer events a callback can report on (``on="validation_end"`` -> ``on_validation_end``).
_ALLOWED_HOOKS = (
    "fit_start", "fit_end", "sanity_check_start", "sanity_check_end",
    "train_start", "train_end", "validation_start", "validation_end", "test_start", "test_end",
    "train_epoch_start", "train_epoch_end", "validation_epoch_start", "validation_epoch_end",
    "test_epoch_start", "test_epoch_end", "train_batch_start", "train_batch_end",
    "validation_batch_start", "validation_batch_end", "test_batch_start", "test_batch_end",
    "predict_start", "predict_end", "predict_epoch_start", "predict_epoch_end",
    "predict_batch_start", "predict_batch_end", "before_backward", "after_backward",
    "before_optimizer_step", "before_zero_grad", "load_checkpoint", "save_checkpoint",
    "exception",
)


def _value(tensor: Any) -> Any:
    return tensor.item() if hasattr(tensor, "item") else tensor


class TuneCallback(_Base):
    """Base of the Lightning callbacks: runs :meth:`_handle` on the chosen Trainer events.

    Args:
        on: An event name (``"validation_end"``, ``"train_epoch_end"``, ...) or a list of them.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.integration.pytorch_lightning import TuneCallback
        >>> class ReportEpoch(TuneCallback):
        ...     def _handle(self, trainer, pl_module):
        ...         tune.report({"epoch": trainer.current_epoch})
        >>> callback = ReportEpoch(on="train_epoch_end")
    """

    def __init__(self, on: str | Sequence[str] = "validation_end"):
        if _pl is None:
            raise ImportError("The PyTorch Lightning integration needs Lightning: `pip install lightning`.")
        hooks = [on] if isinstance(on, str) else list(on)
        bad = [h for h in hooks if h not in _ALLOWED_HOOKS]
        if bad or not hooks:
            raise ValueError(
                f"{type(self).__name__}(on={on!r}): {bad or on!r} is not a Trainer event to report on. "
                f"Choose from {list(_ALLOWED_HOOKS)}."
            )
        self._on = set(hooks)

    def _handle(self, trainer: Any, pl_module: Any) -> None:
        raise NotImplementedError

    def _maybe(self, hook: str, trainer: Any, pl_module: Any) -> None:
        if hook in self._on:
            self._handle(trainer, pl_module)

    def on_fit_start(self, trainer, pl_module):
        self._maybe("fit_start", trainer, pl_module)

    def on_fit_end(self, trainer, pl_module):
        self._maybe("fit_end", trainer, pl_module)

    def on_sanity_check_start(self, trainer, pl_module):
        self._maybe("sanity_check_start", trainer, pl_module)

    def on_sanity_check_end(self, trainer, pl_module):
        self._maybe("sanity_check_end", trainer, pl_module)

    def on_train_start(self, trainer, pl_module):
        self._maybe("train_start", trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._maybe("train_end", trainer, pl_module)

    def on_validation_start(self, trainer, pl_module):
        self._maybe("validation_start", trainer, pl_module)

    def on_validation_end(self, trainer, pl_module):
        self._maybe("validation_end", trainer, pl_module)

    def on_test_start(self, trainer, pl_module):
        self._maybe("test_start", trainer, pl_module)

    def on_test_end(self, trainer, pl_module):
        self._maybe("test_end", trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module):
        self._maybe("train_epoch_start", trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._maybe("train_epoch_end", trainer, pl_module)

    def on_validation_epoch_start(self, trainer, pl_module):
        self._maybe("validation_epoch_start", trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._maybe("validation_epoch_end", trainer, pl_module)

    def on_test_epoch_start(self, trainer, pl_module):
        self._maybe("test_epoch_start", trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module):
        self._maybe("test_epoch_end", trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, *args, **kwargs):
        self._maybe("train_batch_start", trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, *args, **kwargs):
        self._maybe("train_batch_end", trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, *args, **kwargs):
        self._maybe("validation_batch_start", trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs):
        self._maybe("validation_batch_end", trainer, pl_module)

    def on_test_batch_start(self, trainer, pl_module, *args, **kwargs):
        self._maybe("test_batch_start", trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, *args, **kwargs):
        self._maybe("test_batch_end", trainer, pl_module)

    def on_predict_start(self, trainer, pl_module):
        self._maybe("predict_start", trainer, pl_module)

    def on_predict_end(self, trainer, pl_module):
        self._maybe("predict_end", trainer, pl_module)

    def on_predict_epoch_start(self, trainer, pl_module):
        self._maybe("predict_epoch_start", trainer, pl_module)

    def on_predict_epoch_end(self, trainer, pl_module):
        self._maybe("predict_epoch_end", trainer, pl_module)

    def on_predict_batch_start(self, trainer, pl_module, *args, **kwargs):
        self._maybe("predict_batch_start", trainer, pl_module)

    def on_predict_batch_end(self, trainer, pl_module, *args, **kwargs):
        self._maybe("predict_batch_end", trainer, pl_module)

    def on_before_backward(self, trainer, pl_module, *args, **kwargs):
        self._maybe("before_backward", trainer, pl_module)

    def on_after_backward(self, trainer, pl_module):
        self._maybe("after_backward", trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, *args, **kwargs):
        self._maybe("before_optimizer_step", trainer, pl_module)

    def on_before_zero_grad(self, trainer, pl_module, *args, **kwargs):
        self._maybe("before_zero_grad", trainer, pl_module)

    def on_load_checkpoint(self, trainer, pl_module, *args, **kwargs):
        self._maybe("load_checkpoint", trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, *args, **kwargs):
        self._maybe("save_checkpoint", trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception):
        self._maybe("exception", trainer, pl_module)


class TuneReportCheckpointCallback(TuneCallback):
    """Reports the Trainer's logged metrics to Tune on the chosen events, with a checkpoint.

    On each ``on`` event (outside the sanity check) it reports the metrics
    in ``trainer.callback_metrics`` (what the module logged with
    ``self.log``), or those named in ``metrics``, and, with
    ``save_checkpoints``, a checkpoint holding ``trainer.save_checkpoint``'s
    file ``filename``. Load the model back with
    ``MyModule.load_from_checkpoint(os.path.join(dir, filename))``. A
    scheduler's decision to stop the trial ends ``trainer.fit`` there.

    Args:
        metrics: Metrics to report: a name, a list of names, or a dict of
            reported name -> logged name (``{"loss": "val_loss"}``). All
            logged metrics when None.
        filename: The checkpoint file's name in the reported checkpoint.
        save_checkpoints: Report a checkpoint with each result.
        on: The Trainer event(s) to report on.

    Example:
        >>> from tunesmith.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
        >>> callback = TuneReportCheckpointCallback(
        ...     metrics={"loss": "val_loss", "acc": "val_acc"}, filename="model.ckpt", on="validation_end")
        >>> # trainer = lightning.pytorch.Trainer(max_epochs=5, callbacks=[callback]); trainer.fit(model, ...)
    """

    def __init__(
        self,
        metrics: Metrics = None,
        filename: str = "checkpoint",
        save_checkpoints: bool = True,
        on: str | Sequence[str] = "validation_end",
    ):
        super().__init__(on=on)
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"{type(self).__name__}(filename={filename!r}) must be a plain file name.")
        self._metrics = normalize_metrics(metrics, type(self).__name__)
        self._filename = filename
        self._save_checkpoints = bool(save_checkpoints)

    def _report_dict(self, trainer: Any) -> dict:
        available = trainer.callback_metrics
        if self._metrics is None:
            return {name: _value(value) for name, value in available.items()}
        pairs = self._metrics.items() if isinstance(self._metrics, dict) else ((m, m) for m in self._metrics)
        out = {}
        for reported, name in pairs:
            if name in available:
                out[reported] = _value(available[name])
            else:
                logger.warning("%s: the metric %r was not logged by the module (it logged %s).",
                               type(self).__name__, name, sorted(available))
        return out

    def _handle(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        metrics = self._report_dict(trainer)
        if not metrics:
            return
        if not self._save_checkpoints:
            report(metrics)
            return
        with checkpoint_from(lambda d: trainer.save_checkpoint(os.path.join(d, self._filename))) as checkpoint:
            report(metrics, checkpoint=checkpoint)


class TuneReportCallback(TuneReportCheckpointCallback):
    """Reports the Trainer's logged metrics to Tune on the chosen events, without checkpoints.

    Args:
        metrics: As for :class:`TuneReportCheckpointCallback`.
        on: The Trainer event(s) to report on.

    Example:
        >>> from tunesmith.tune.integration.pytorch_lightning import TuneReportCallback
        >>> callback = TuneReportCallback({"loss": "val_loss"}, on="validation_end")
    """

    def __init__(self, metrics: Metrics = None, on: str | Sequence[str] = "validation_end"):
        super().__init__(metrics=metrics, save_checkpoints=False, on=on)


__all__ = ["TuneCallback", "TuneReportCallback", "TuneReportCheckpointCallback"]
