"""``DataParallelTrainer``: one training function run on N worker processes at once."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from tunesmith.train._config import DataConfig, RunConfig, ScalingConfig
from tunesmith.train.backend import BackendConfig
from tunesmith.train.base_trainer import BaseTrainer


class DataParallelTrainer(BaseTrainer):
    """Runs ``train_loop_per_worker`` on ``scaling_config.num_workers`` processes at once.

    Every worker calls ``train.report(metrics, checkpoint=...)``; each round of
    calls is one training iteration, recorded with rank 0's metrics, and the
    checkpoints the workers pass in that round are merged into one. A worker
    that raises or dies ends the whole group; ``RunConfig(failure_config=
    FailureConfig(max_failures=N))`` restarts it from the latest checkpoint.

    Inside the function, ``train.get_context()`` gives the worker's rank and
    the group's size, ``train.get_checkpoint()`` the checkpoint to resume from,
    and ``train.get_dataset_shard(name)`` the worker's share of ``datasets``.

    Args:
        train_loop_per_worker: The training function, taking no argument or the config dict.
        train_loop_config: The config passed to it (a ``Tuner``'s
            ``param_space={"train_loop_config": {...}}`` overrides entries).
        backend_config: How the workers are wired together (``TorchConfig``
            for torch.distributed); the default wires nothing.
        scaling_config: Number of workers and their resources.
        run_config: Name, storage, checkpoint and failure settings.
        datasets: Datasets by name; each worker gets every ``num_workers``-th
            item from its rank on (equal shares), through ``train.get_dataset_shard(name)``.
        dataset_config: A :class:`~tunesmith.train.DataConfig`: which datasets are split
            (the default: all); the others reach every worker whole.
        resume_from_checkpoint: A checkpoint to start from (``train.get_checkpoint()`` returns it on
            every worker); the run's iterations count from 1, as on Ray.
        metadata: A JSON-serialisable dict for ``get_context().get_metadata()``,
            also stored with every checkpoint.

    Example:
        >>> from tunesmith import train
        >>> from tunesmith.train import DataParallelTrainer, ScalingConfig
        >>> def train_loop(config):
        ...     ctx = train.get_context()
        ...     for step in range(config["steps"]):
        ...         train.report({"step": step, "rank": ctx.get_world_rank()})
        ...     return ctx.get_world_size()
        >>> trainer = DataParallelTrainer(
        ...     train_loop, train_loop_config={"steps": 3},
        ...     scaling_config=ScalingConfig(num_workers=2),
        ...     run_config=train.RunConfig(verbose=0),
        ... )
        >>> result = trainer.fit()  # doctest: +SKIP
        >>> result.metrics["training_iteration"], result.return_value  # doctest: +SKIP
        (3, 2)
    """

    def __init__(
        self,
        train_loop_per_worker: Callable[..., Any],
        *,
        train_loop_config: dict | None = None,
        backend_config: BackendConfig | None = None,
        scaling_config: ScalingConfig | None = None,
        run_config: RunConfig | None = None,
        datasets: dict[str, Any] | None = None,
        dataset_config: DataConfig | None = None,
        resume_from_checkpoint: Any = None,
        metadata: dict[str, Any] | None = None,
    ):
        if dataset_config is not None and not isinstance(dataset_config, DataConfig):
            raise TypeError(f"{type(self).__name__}(dataset_config=...) must be a tunesmith.train.DataConfig, "
                            f"got {type(dataset_config).__name__}.")
        self.dataset_config = dataset_config if dataset_config is not None else DataConfig()
        super().__init__(
            scaling_config=scaling_config, run_config=run_config, datasets=datasets,
            metadata=metadata, resume_from_checkpoint=resume_from_checkpoint,
        )
        name = type(self).__name__
        if not callable(train_loop_per_worker):
            raise TypeError(
                f"{name}(train_loop_per_worker=...) must be a function, got {type(train_loop_per_worker).__name__}."
            )
        self._takes_config = _takes_config(train_loop_per_worker, name)
        if train_loop_config is not None and not isinstance(train_loop_config, dict):
            raise TypeError(f"{name}(train_loop_config=...) must be a dict, got {type(train_loop_config).__name__}.")
        if backend_config is None:
            backend_config = BackendConfig()
        if not isinstance(backend_config, BackendConfig):
            raise TypeError(
                f"{name}(backend_config=...) must be a tunesmith.train.backend.BackendConfig, "
                f"got {type(backend_config).__name__}."
            )
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self._backend_config = backend_config

    @classmethod
    def restore(cls, path, train_loop_per_worker: Callable[..., Any] | None = None,
                train_loop_config: dict | None = None, **kwargs: Any):
        """A trainer that continues the interrupted run in ``path`` (see :meth:`BaseTrainer.restore`).

        Args:
            path: The run's experiment directory.
            train_loop_per_worker: The training function again, if the saved one cannot be used.
            train_loop_config: Its config again (same keys), if the saved one cannot be used.
            **kwargs: ``storage_filesystem``, ``datasets``, ``scaling_config`` and other arguments.
        """
        return super().restore(path, train_loop_per_worker=train_loop_per_worker,
                               train_loop_config=train_loop_config, **kwargs)


def _takes_config(fn: Callable, who: str) -> bool:
    """Whether the training function takes the config (one argument) or nothing."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 1:
        raise ValueError(
            f"{who}: train_loop_per_worker must take no argument or one (the config dict); "
            f"{getattr(fn, '__name__', fn)} takes {len(required)}: {[p.name for p in required]}."
        )
    return bool(positional) or any(p.kind == p.VAR_POSITIONAL for p in params)
