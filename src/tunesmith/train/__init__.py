"""tunesmith.train: the Ray Train API (``report``, ``Checkpoint``, ``Result``, configs, trainers)."""
from __future__ import annotations

from typing import Any

from tunesmith._lazy import lazy_getattr

_LAZY = {
    "report": "tunesmith._internal.session:report",
    "get_checkpoint": "tunesmith._internal.session:get_checkpoint",
    "get_context": "tunesmith._internal.session:get_context",
    "get_dataset_shard": "tunesmith._internal.session:get_dataset_shard",
    "Checkpoint": "tunesmith.train._checkpoint:Checkpoint",
    "Result": "tunesmith.train._result:Result",
    "TrainingFailedError": "tunesmith.train._result:TrainingFailedError",
    "RunConfig": "tunesmith.train._config:RunConfig",
    "CheckpointConfig": "tunesmith.train._config:CheckpointConfig",
    "FailureConfig": "tunesmith.train._config:FailureConfig",
    "SyncConfig": "tunesmith.train._config:SyncConfig",
    "ScalingConfig": "tunesmith.train._config:ScalingConfig",
    "DataConfig": "tunesmith.train._config:DataConfig",
    "DataParallelTrainer": "tunesmith.train.data_parallel_trainer:DataParallelTrainer",
    "BaseTrainer": "tunesmith.train.base_trainer:BaseTrainer",
    "BackendConfig": "tunesmith.train.backend:BackendConfig",
    "WorkerGroupError": "tunesmith.train.exceptions:WorkerGroupError",
    "torch": "tunesmith.train.torch:",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)
