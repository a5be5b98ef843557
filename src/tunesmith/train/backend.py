"""How a framework wires a group of training workers together: ``BackendConfig`` and ``Backend``.

A ``DataParallelTrainer`` runs its training function on N worker processes.
Its backend prepares them: before the workers start it runs in the process
that supervises the group (:meth:`Backend.on_group_start`, e.g. picking a
free port), then in each worker before and after the training function
(:meth:`Backend.on_worker_start`, :meth:`Backend.on_worker_shutdown`, e.g.
creating and destroying a ``torch.distributed`` process group).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Backend:
    """Hooks that set a framework up for one worker group; the default does nothing.

    Example:
        >>> from tunesmith.train.backend import Backend, BackendConfig
        >>> class PrintBackend(Backend):
        ...     def on_worker_start(self, context):
        ...         print("worker", context.get_world_rank(), "of", context.get_world_size())
        >>> class PrintConfig(BackendConfig):
        ...     @property
        ...     def backend_cls(self):
        ...         return PrintBackend
        >>> PrintConfig().backend_cls.__name__
        'PrintBackend'
    """

    #: Whether every worker sees the GPUs of all workers of the group in ``CUDA_VISIBLE_DEVICES``
    #: (and uses its own by index), rather than only its own GPUs.
    #: ``TRAIN_ENABLE_SHARE_CUDA_VISIBLE_DEVICES=0``/``1`` overrides it.
    share_cuda_visible_devices: bool = False

    def __init__(self, config: "BackendConfig"):
        self.config = config

    def can_fork(self) -> bool:
        """Whether workers may be forked from the supervising process.

        False when that process holds something a forked child cannot use (an
        initialised CUDA context); the workers are then started as fresh processes.
        """
        return True

    def on_group_start(self, group: "GroupInfo") -> dict[str, str]:
        """Runs in the supervising process before any worker starts.

        Args:
            group: The group's size and devices.

        Returns:
            Environment variables every worker gets.
        """
        return {}

    def on_worker_start(self, context: Any) -> None:
        """Runs in each worker before the training function; ``context`` is its ``TrainContext``."""

    def on_worker_shutdown(self, context: Any) -> None:
        """Runs in each worker after the training function returned (not after a failure)."""


@dataclass
class BackendConfig:
    """The configuration of a :class:`Backend`; the base class sets up nothing.

    Example:
        >>> from tunesmith.train.backend import BackendConfig
        >>> BackendConfig().backend_cls.__name__
        'Backend'
    """

    @property
    def backend_cls(self) -> type[Backend]:
        return Backend

    def _make_backend(self) -> Backend:
        return self.backend_cls(self)


@dataclass
class GroupInfo:
    """What a backend knows about the group it prepares.

    Attributes:
        world_size: Number of workers.
        use_gpu: Whether each worker was given GPUs.
        gpu_ids: The GPU ids of each worker, indexed by rank.
        resources_per_worker: The resources of each worker, e.g. ``{"CPU": 1.0}``.
    """

    world_size: int
    use_gpu: bool = False
    gpu_ids: list[list[str]] | None = None
    resources_per_worker: dict[str, float] | None = None
