"""``TorchConfig``: how the workers of a ``TorchTrainer`` form a ``torch.distributed`` process group."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from tunesmith.train.backend import Backend, BackendConfig, GroupInfo

_INIT_METHODS = ("env", "tcp")


@dataclass
class TorchConfig(BackendConfig):
    """The ``torch.distributed`` set-up of a ``TorchTrainer``'s workers.

    Before the training function runs, every worker joins one process group
    (rank 0 listens on a free port of 127.0.0.1); after it returns, the group
    is destroyed.

    Args:
        backend: ``"gloo"``, ``"nccl"``, ... (default: ``"nccl"`` with
            ``ScalingConfig(use_gpu=True)``, else ``"gloo"``).
        init_method: ``"env"`` (``MASTER_ADDR``/``MASTER_PORT`` environment
            variables) or ``"tcp"`` (a ``tcp://`` address).
        timeout_s: Seconds a collective operation may wait before it fails.

    Example:
        >>> from tunesmith.train.torch import TorchConfig
        >>> TorchConfig(backend="gloo", timeout_s=600).timeout_s
        600
        >>> TorchConfig(init_method="file")
        Traceback (most recent call last):
        ...
        ValueError: TorchConfig(init_method='file') must be 'env' or 'tcp'.
    """

    backend: str | None = None
    init_method: str = "env"
    timeout_s: int = 1800

    def __post_init__(self):
        if self.init_method not in _INIT_METHODS:
            raise ValueError(f"TorchConfig(init_method={self.init_method!r}) must be 'env' or 'tcp'.")
        if self.backend is not None and (not isinstance(self.backend, str) or not self.backend):
            raise ValueError(f"TorchConfig(backend={self.backend!r}) must be None or a backend name such as 'gloo'.")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ValueError(f"TorchConfig(timeout_s={self.timeout_s!r}) must be a positive number of seconds.")

    @property
    def backend_cls(self) -> type[Backend]:
        return TorchBackend


# Groups this process has started (it runs one trial at a time).
_groups_started = 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TorchBackend(Backend):
    """Creates and destroys the process group of a ``TorchTrainer``'s workers."""

    share_cuda_visible_devices = True

    def __init__(self, config: TorchConfig):
        super().__init__(config)
        self.dist_backend = "gloo"
        self.port = 0
        self.use_gpu = False
        self.threads = 1

    def can_fork(self) -> bool:
        import torch

        # A CUDA context of the supervising process cannot be used by a forked child.
        return not torch.cuda.is_initialized()

    def on_group_start(self, group: GroupInfo) -> dict[str, str]:
        global _groups_started
        # Imported here, before the workers are forked, so that each worker has it already.
        try:
            import torch.distributed  # noqa: F401
            import torch.nn.parallel  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"TorchTrainer needs PyTorch ({exc}); install it with pip install 'tunesmith[torch]'."
            ) from exc

        if group.world_size > 1 and _groups_started:
            # DistributedDataParallel imports torch._dynamo when it is first built (seconds). The
            # first group's workers import it themselves, in parallel, as torch.multiprocessing
            # workers would; this process imports it once for every later group (a Tuner's trials).
            import torch._dynamo  # noqa: F401
        _groups_started += 1

        self.use_gpu = group.use_gpu
        self.dist_backend = self.config.backend or ("nccl" if group.use_gpu else "gloo")
        self.port = _free_port()
        cpus = (group.resources_per_worker or {}).get("CPU", 1) or 1
        self.threads = max(1, int(cpus))
        return {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(self.port),
            "WORLD_SIZE": str(group.world_size),
            "LOCAL_WORLD_SIZE": str(group.world_size),
            "NODE_RANK": "0",
        }

    def on_worker_start(self, context) -> None:
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        rank = context.get_world_rank()
        os.environ["RANK"] = str(rank)
        os.environ["LOCAL_RANK"] = str(context.get_local_rank())
        if "OMP_NUM_THREADS" not in os.environ:
            # As Ray does: a worker uses as many threads as it has CPUs, so that the
            # workers of a group do not oversubscribe the machine.
            torch.set_num_threads(self.threads)
        if self.use_gpu and torch.cuda.is_available():
            from tunesmith.train.torch.train_loop_utils import get_device

            torch.cuda.set_device(get_device())
        if self.config.init_method == "env":
            init_method = "env://"
        else:
            # MASTER_ADDR/MASTER_PORT: rank 0's node on a cluster, this machine otherwise.
            init_method = f"tcp://{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', self.port)}"
        dist.init_process_group(
            backend=self.dist_backend,
            init_method=init_method,
            rank=rank,
            world_size=context.get_world_size(),
            timeout=timedelta(seconds=self.config.timeout_s),
        )

    def on_worker_shutdown(self, context) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
