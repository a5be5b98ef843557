"""``TorchTrainer``: data-parallel PyTorch training (DistributedDataParallel) on N worker processes."""
from __future__ import annotations

from typing import Any, Callable

from tunesmith.train._config import RunConfig, ScalingConfig
from tunesmith.train.data_parallel_trainer import DataParallelTrainer
from tunesmith.train.torch.config import TorchConfig


class TorchTrainer(DataParallelTrainer):
    """A :class:`~tunesmith.train.DataParallelTrainer` whose workers form a ``torch.distributed`` group.

    Before ``train_loop_per_worker`` runs, every worker has joined the process
    group (``gloo`` on CPU, ``nccl`` with ``use_gpu``), so
    :func:`~tunesmith.train.torch.prepare_model` can wrap the model in
    ``DistributedDataParallel`` and collectives work; the group is destroyed
    after the function returns.

    Args:
        train_loop_per_worker: The training function, taking no argument or the config dict.
        train_loop_config: The config passed to it.
        torch_config: A :class:`TorchConfig` (backend, init method, timeout).
        scaling_config: Number of workers and their resources.
        run_config: Name, storage, checkpoint and failure settings.
        datasets: Datasets by name, split among the workers (``train.get_dataset_shard``).
        resume_from_checkpoint: A checkpoint to start from.
        metadata: A JSON-serialisable dict for ``get_context().get_metadata()``.

    Example:
        >>> import torch
        >>> from tunesmith import train
        >>> from tunesmith.train.torch import TorchTrainer, prepare_model
        >>> def train_loop(config):
        ...     model = prepare_model(torch.nn.Linear(1, 1))
        ...     opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
        ...     x = torch.randn(64, 1)
        ...     for epoch in range(3):
        ...         loss = ((model(x) - 2 * x) ** 2).mean()
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...         train.report({"loss": loss.item()})
        >>> trainer = TorchTrainer(
        ...     train_loop, train_loop_config={"lr": 0.1},
        ...     scaling_config=train.ScalingConfig(num_workers=2),
        ...     run_config=train.RunConfig(verbose=0),
        ... )
        >>> trainer.fit().metrics["training_iteration"]  # doctest: +SKIP
        3
    """

    def __init__(
        self,
        train_loop_per_worker: Callable[..., Any],
        *,
        train_loop_config: dict | None = None,
        torch_config: TorchConfig | None = None,
        scaling_config: ScalingConfig | None = None,
        run_config: RunConfig | None = None,
        datasets: dict[str, Any] | None = None,
        dataset_config: Any = None,
        resume_from_checkpoint: Any = None,
        metadata: dict[str, Any] | None = None,
    ):
        if torch_config is None:
            torch_config = TorchConfig()
        if not isinstance(torch_config, TorchConfig):
            raise TypeError(
                f"TorchTrainer(torch_config=...) must be a tunesmith.train.torch.TorchConfig, "
                f"got {type(torch_config).__name__}."
            )
        super().__init__(
            train_loop_per_worker,
            train_loop_config=train_loop_config,
            backend_config=torch_config,
            scaling_config=scaling_config,
            run_config=run_config,
            datasets=datasets,
            dataset_config=dataset_config,
            resume_from_checkpoint=resume_from_checkpoint,
            metadata=metadata,
        )
