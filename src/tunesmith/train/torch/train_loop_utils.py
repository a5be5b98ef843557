"""Helpers for the training function of a ``TorchTrainer``: devices, model and data loader wrapping."""
from __future__ import annotations

import logging
import os
import random
from typing import Any

_PARALLEL_STRATEGIES = ("ddp", "fsdp", None)

logger = logging.getLogger(__name__)


def _worker_session():
    from tunesmith._internal import session as S

    return S._get_session()


def _world() -> tuple[int, int]:
    from tunesmith._internal.session import get_context

    ctx = get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def _device_indices(visible: list[str], own: list[str]) -> list[int]:
    """The CUDA device indices of a worker's own GPUs among those it sees.

    Example:
        >>> _device_indices(["0", "1", "2", "3"], ["2"])
        [2]
        >>> _device_indices(["2", "3"], ["2"])
        [0]
        >>> _device_indices(["5"], ["5"])
        [0]
    """
    indices = [visible.index(g) for g in own if g in visible]
    return indices or [0]


def get_devices() -> list:
    """The ``torch.device`` objects of this worker: its GPUs with ``use_gpu``, else ``[cpu]``.

    With ``ScalingConfig(use_gpu=True)`` the workers of a ``TorchTrainer`` see
    every GPU of the group in ``CUDA_VISIBLE_DEVICES`` and use their own by
    index, so worker ``r`` with one GPU each gets ``cuda:r``.

    Example:
        >>> from tunesmith.train.torch import get_devices
        >>> get_devices()  # outside a GPU worker
        [device(type='cpu')]
    """
    import torch

    sess = _worker_session()
    own = list(getattr(sess, "gpu_ids", []) or [])
    if own and torch.cuda.is_available():
        visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
        return [torch.device("cuda", i) for i in _device_indices(visible, own)]
    return [torch.device("cpu")]


def get_device():
    """The ``torch.device`` this worker trains on (its first GPU with ``use_gpu``, else the CPU).

    Example:
        >>> from tunesmith.train.torch import get_device
        >>> get_device()
        device(type='cpu')
    """
    return get_devices()[0]


def prepare_model(
    model,
    move_to_device: Any = True,
    parallel_strategy: str | None = "ddp",
    parallel_strategy_kwargs: dict[str, Any] | None = None,
):
    """Moves a model to this worker's device and wraps it for data-parallel training.

    With more than one worker the model is wrapped in
    ``DistributedDataParallel`` (``parallel_strategy="ddp"``) or
    ``FullyShardedDataParallel`` (``"fsdp"``), so that gradients are averaged
    across workers at every ``backward()``.

    Args:
        model: A ``torch.nn.Module``.
        move_to_device: True to move it to :func:`get_device`, False to leave
            it, or a ``torch.device`` to move it to.
        parallel_strategy: ``"ddp"``, ``"fsdp"`` or None (no wrapping).
        parallel_strategy_kwargs: Keyword arguments for the wrapper.

    Returns:
        The moved (and wrapped) model.

    Example:
        >>> import torch
        >>> from tunesmith.train.torch import prepare_model
        >>> model = prepare_model(torch.nn.Linear(2, 1))  # one worker: moved, not wrapped
        >>> type(model).__name__
        'Linear'
    """
    import torch

    if parallel_strategy not in _PARALLEL_STRATEGIES:
        raise ValueError(
            f"prepare_model(parallel_strategy={parallel_strategy!r}) must be 'ddp', 'fsdp' or None."
        )
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"prepare_model() takes a torch.nn.Module, got {type(model).__name__}.")
    device = get_device()
    if isinstance(move_to_device, (torch.device, str)):
        device = torch.device(move_to_device)
        model = model.to(device)
    elif move_to_device:
        model = model.to(device)
    _, world_size = _world()
    if world_size <= 1 or parallel_strategy is None:
        return model
    kwargs = dict(parallel_strategy_kwargs or {})
    if parallel_strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            kwargs.setdefault("device_ids", [device])
            kwargs.setdefault("output_device", device)
        return DistributedDataParallel(model, **kwargs)
    from torch.distributed.fsdp import FullyShardedDataParallel

    if device.type == "cuda":
        kwargs.setdefault("device_id", device)
    return FullyShardedDataParallel(model, **kwargs)


def prepare_data_loader(data_loader, add_dist_sampler: bool = True, move_to_device: bool = True,
                        auto_transfer: bool = True):
    """Gives each worker its own part of a ``DataLoader``'s data, on its device.

    With more than one worker the loader is rebuilt with a
    ``DistributedSampler`` (shuffling if the original shuffled), so that each
    worker sees a different ``1/num_workers`` of the dataset every epoch; call
    ``loader.sampler.set_epoch(epoch)`` to reshuffle per epoch. On a GPU, each
    batch is moved to the worker's device.

    Args:
        data_loader: A ``torch.utils.data.DataLoader``.
        add_dist_sampler: Whether to add the ``DistributedSampler``.
        move_to_device: Whether to move batches to :func:`get_device` (a no-op on the CPU).
        auto_transfer: Accepted for compatibility; batches are moved as they are read.

    Returns:
        A ``DataLoader`` (or, on a GPU, a wrapper that reads like one).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from tunesmith.train.torch import prepare_data_loader
        >>> loader = prepare_data_loader(DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4))
        >>> len(loader)
        2
    """
    from torch.utils.data import (
        BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler,
    )

    if not isinstance(data_loader, DataLoader):
        raise TypeError(f"prepare_data_loader() takes a torch DataLoader, got {type(data_loader).__name__}.")
    from tunesmith._internal import session as S

    rank, world_size = _world()
    is_split_shard = getattr(S._get_session(), "is_split_shard", None)
    if (
        add_dist_sampler
        and world_size > 1
        and not isinstance(data_loader.dataset, IterableDataset)
        and not isinstance(data_loader.sampler, DistributedSampler)
        # get_dataset_shard() gave this worker its part already: sharding it again dropped most of it
        and not (is_split_shard is not None and is_split_shard(data_loader.dataset))
    ):
        batch_size, drop_last, original = data_loader.batch_size, data_loader.drop_last, data_loader.sampler
        given = data_loader.batch_sampler
        if batch_size is None and isinstance(given, BatchSampler):
            # A loader made with batch_sampler=BatchSampler(sampler, n, drop_last): batches of n again.
            batch_size, drop_last, original = given.batch_size, given.drop_last, given.sampler
        # As Ray: anything but a sequential order is shuffled (the DistributedSampler takes the sampler's place).
        shuffle = not isinstance(original, SequentialSampler)
        if not isinstance(original, (SequentialSampler, RandomSampler)) and rank == 0:
            logger.warning("prepare_data_loader: the loader's %s is replaced by a DistributedSampler (shuffle=%s) "
                           "that gives each worker its share; pass add_dist_sampler=False to keep it.",
                           type(original).__name__, shuffle)
        sampler = DistributedSampler(data_loader.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle)
        kwargs = dict(
            batch_size=batch_size,
            sampler=sampler,
            num_workers=data_loader.num_workers,
            collate_fn=data_loader.collate_fn,
            pin_memory=data_loader.pin_memory,
            drop_last=drop_last,
            timeout=data_loader.timeout,
            worker_init_fn=data_loader.worker_init_fn,
            generator=data_loader.generator,
            persistent_workers=data_loader.persistent_workers,
        )
        if data_loader.num_workers > 0:
            kwargs["prefetch_factor"] = data_loader.prefetch_factor
            kwargs["multiprocessing_context"] = data_loader.multiprocessing_context
        data_loader = DataLoader(data_loader.dataset, **kwargs)
    if move_to_device:
        device = get_device()
        if device.type != "cpu":
            return _DeviceDataLoader(data_loader, device)
    return data_loader


class _DeviceDataLoader:
    """A data loader whose batches are moved to a device as they are read."""

    def __init__(self, loader, device):
        self._loader = loader
        self._device = device

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self):
        for batch in self._loader:
            yield _to_device(batch, self._device)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


def _to_device(batch, device):
    if hasattr(batch, "to"):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def enable_reproducibility(seed: int = 0) -> None:
    """Seeds Python, numpy and torch and asks torch for deterministic algorithms.

    Call it at the start of the training function. Deterministic algorithms
    can be slower.

    Args:
        seed: The seed for every generator.
    """
    import torch

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
