"""A trainable whose module loads numpy's BLAS and scikit-learn's OpenMP library when it is imported."""
from __future__ import annotations

import os

import numpy
import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime scikit-learn ships)
import threadpoolctl


def pool_sizes(config):
    from tunesmith import tune

    sizes: dict[str, list[int]] = {}
    for info in threadpoolctl.threadpool_info():
        sizes.setdefault(info["user_api"], []).append(info["num_threads"])
    a = numpy.ones((64, 64))
    tune.report({"pid": os.getpid(), "cpus": config["cpus"], "omp": os.environ.get("OMP_NUM_THREADS"),
                 "blas": sorted(set(sizes.get("blas", []))), "openmp": sorted(set(sizes.get("openmp", []))),
                 "product": float((a @ a).sum())})


def limits_pools_then_reports(config):
    """Reports the pool sizes it starts with, then leaves every pool at one thread (as a trial calling
    threadpool_limits(1) for its own work would)."""
    from tunesmith import tune

    sizes = sorted({info["num_threads"] for info in threadpoolctl.threadpool_info()})
    threadpoolctl.threadpool_limits(limits=1)
    tune.report({"sizes": sizes, "pid": os.getpid()})
