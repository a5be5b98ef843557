"""A trainable whose module does torch math when it is imported (which starts torch's OpenMP pool)."""
from __future__ import annotations

import os

import torch

_A = torch.randn(300, 300)
AT_IMPORT = float((_A @ _A).sum())


def torch_worker(config):
    from tunesmith import tune

    a = torch.randn(300, 300)
    total = float((a @ a).sum())  # a forked worker whose parent ran an OpenMP pool waited here forever
    tune.report({"pid": os.getpid(), "draw": float(torch.rand(1)), "finite": total == total,
                 "omp": os.environ.get("OMP_NUM_THREADS"), "threads": torch.get_num_threads(),
                 "openblas": os.environ.get("OPENBLAS_NUM_THREADS")})
