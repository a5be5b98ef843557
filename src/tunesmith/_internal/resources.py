"""What this machine offers: CPUs, GPUs, memory and custom resources."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

_overrides: dict[str, float] = {}


def init(num_cpus: float | None = None, num_gpus: float | None = None, resources: dict | None = None,
         memory: float | None = None, **kwargs) -> None:
    """Sets the resources local runs may use, like ``ray.init(num_cpus=..., num_gpus=..., resources=...)``.

    Args:
        num_cpus: CPUs to hand out to trials (default: all cores of this machine).
        num_gpus: GPUs to hand out (default: those ``nvidia-smi`` lists, or ``CUDA_VISIBLE_DEVICES``).
        resources: Custom resources, e.g. ``{"license": 2}``.
        memory: Bytes of memory to hand out (default: the machine's total).
    """
    _overrides.clear()
    if num_cpus is not None:
        _overrides["CPU"] = float(num_cpus)
    if num_gpus is not None:
        _overrides["GPU"] = float(num_gpus)
    if memory is not None:
        _overrides["memory"] = float(memory)
    for key, value in (resources or {}).items():
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"Custom resource {key!r} must be a non-negative number, got {value!r}.")
        _overrides[key] = float(value)


def _visible_ids() -> list[str] | None:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` names (None when it is not set)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]


def _physical_gpu_ids() -> list[str]:
    """The NVIDIA GPUs of this machine: the driver's list, or ``nvidia-smi``'s."""
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        pass
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


_said_no_gpu = False


def detect_gpu_ids() -> list[str]:
    """The GPUs trials may be given: those ``CUDA_VISIBLE_DEVICES`` names, or all of the machine's.

    As on Ray, the variable narrows what the machine has: on a machine with no GPU, it makes none.
    """
    visible = _visible_ids()
    physical = _physical_gpu_ids()
    if visible is None:
        return physical
    if visible and not physical:
        global _said_no_gpu
        if _said_no_gpu:
            return []
        _said_no_gpu = True
        import logging

        logging.getLogger(__name__).warning(
            "CUDA_VISIBLE_DEVICES=%r names GPUs, but this machine shows none (no NVIDIA driver lists any): "
            "trials get no GPU. tunesmith.init(num_gpus=...) hands them out anyway.",
            os.environ.get("CUDA_VISIBLE_DEVICES"))
        return []
    return visible


def _cpus_and_memory() -> dict[str, float]:
    """The CPUs this process may run on and the machine's memory."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except AttributeError:
        cpus = float(os.cpu_count() or 1)
    found = {"CPU": cpus}
    try:
        import psutil

        found["memory"] = float(psutil.virtual_memory().total)
    except Exception:
        pass
    return found


def _declared_machine() -> dict[str, float]:
    """What the JSON object ``TUNESMITH_RESOURCES`` says the machine has."""
    env = os.environ.get("TUNESMITH_RESOURCES")
    return {k: float(v) for k, v in json.loads(env).items()} if env else {}


def machine_resources() -> dict[str, float]:
    """What this machine has (CPUs this process may run on, GPUs, memory, or what the JSON object
    ``TUNESMITH_RESOURCES`` says it has), whatever ``init`` declared for one experiment."""
    return {**_cpus_and_memory(), "GPU": float(len(detect_gpu_ids())), **_declared_machine()}


def detect_resources() -> tuple[dict[str, float], list[str]]:
    """Returns the resource totals and the GPU ids trials may use."""
    # A number of GPUs given to init() with CUDA_VISIBLE_DEVICES set takes the GPUs it names (below).
    gpu_ids = [] if "GPU" in _overrides and _visible_ids() is not None else detect_gpu_ids()
    total = {**_cpus_and_memory(), "GPU": float(len(gpu_ids)), **_declared_machine()}
    total.update(_overrides)
    if "GPU" in _overrides:
        n = int(_overrides["GPU"])
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            gpu_ids = _visible_ids() or []  # what the user asked for, whatever the machine shows
        if visible is not None and n > len(gpu_ids):
            # As on Ray: the GPUs a process may use are the ones the variable names; more cannot be given out.
            raise ValueError(
                f"num_gpus={n}, but CUDA_VISIBLE_DEVICES={visible!r} makes {len(gpu_ids)} GPU(s) visible. "
                "Ask for at most that many, or widen CUDA_VISIBLE_DEVICES."
            )
        gpu_ids = (gpu_ids + [str(i) for i in range(n) if str(i) not in gpu_ids])[:n]
    return total, gpu_ids
