"""``Resources``: the older way a trainable states what one trial needs.

``Trainable.default_resource_request`` may return a :class:`Resources` (as in
older Ray releases), a dict or a ``PlacementGroupFactory``. The trial itself
gets ``cpu``/``gpu``/``memory`` and the custom resources; the ``extra_*``
amounts are for the workers the trial starts, and form a second bundle.
"""
from __future__ import annotations

import numbers
from collections import namedtuple
from typing import Any

_FIELDS = (
    "cpu",
    "gpu",
    "memory",
    "object_store_memory",
    "extra_cpu",
    "extra_gpu",
    "extra_memory",
    "extra_object_store_memory",
    "custom_resources",
    "extra_custom_resources",
    "has_placement_group",
)


class Resources(namedtuple("Resources", _FIELDS)):
    """The resources of one trial: its own, plus extra ones for the workers it starts.

    Args:
        cpu: CPUs of the trial's own process.
        gpu: GPUs of the trial's own process.
        memory: Bytes of memory of the trial's own process.
        object_store_memory: Accepted for compatibility; a local run has no object store.
        extra_cpu: CPUs for the workers the trial starts.
        extra_gpu: GPUs for the workers the trial starts.
        extra_memory: Bytes of memory for those workers.
        extra_object_store_memory: Accepted for compatibility.
        custom_resources: Custom resources of the trial's own process, e.g. ``{"license": 1}``.
        extra_custom_resources: Custom resources for its workers.
        has_placement_group: Accepted for compatibility.

    Example:
        >>> from tunesmith.tune.resources import Resources
        >>> r = Resources(cpu=1, gpu=0, extra_cpu=3)
        >>> r.cpu_total(), r.gpu_total()
        (4, 0)
        >>> r.as_placement_group_factory().bundles
        [{'CPU': 1.0}, {'CPU': 3.0}]
    """

    __slots__ = ()

    def __new__(
        cls,
        cpu: float,
        gpu: float,
        memory: float = 0,
        object_store_memory: float = 0.0,
        extra_cpu: float = 0,
        extra_gpu: float = 0,
        extra_memory: float = 0,
        extra_object_store_memory: float = 0.0,
        custom_resources: dict[str, float] | None = None,
        extra_custom_resources: dict[str, float] | None = None,
        has_placement_group: bool = False,
    ) -> "Resources":
        custom_resources = dict(custom_resources or {})
        extra_custom_resources = dict(extra_custom_resources or {})
        amounts = {
            "cpu": cpu, "gpu": gpu, "memory": memory, "object_store_memory": object_store_memory,
            "extra_cpu": extra_cpu, "extra_gpu": extra_gpu, "extra_memory": extra_memory,
            "extra_object_store_memory": extra_object_store_memory,
        }
        amounts.update({f"custom_resources[{k!r}]": v for k, v in custom_resources.items()})
        amounts.update({f"extra_custom_resources[{k!r}]": v for k, v in extra_custom_resources.items()})
        for name, value in amounts.items():
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Resources({name}={value!r}): each amount must be a number >= 0.")
        return super().__new__(
            cls, cpu, gpu, memory, object_store_memory, extra_cpu, extra_gpu, extra_memory,
            extra_object_store_memory, custom_resources, extra_custom_resources, has_placement_group,
        )

    # -- totals ---------------------------------------------------------------------------------
    def cpu_total(self) -> float:
        """CPUs of the trial and its workers together."""
        return self.cpu + self.extra_cpu

    def gpu_total(self) -> float:
        """GPUs of the trial and its workers together."""
        return self.gpu + self.extra_gpu

    def memory_total(self) -> float:
        """Bytes of memory of the trial and its workers together."""
        return self.memory + self.extra_memory

    def object_store_memory_total(self) -> float:
        return self.object_store_memory + self.extra_object_store_memory

    def get_res_total(self, key: str) -> float:
        """Total of one custom resource, the trial's and its workers' together."""
        return self.custom_resources.get(key, 0) + self.extra_custom_resources.get(key, 0)

    def get(self, key: str) -> float:
        """The trial's own amount of one custom resource."""
        return self.custom_resources.get(key, 0)

    def is_nonnegative(self) -> bool:
        return True  # checked when the object is made

    def summary_string(self) -> str:
        """A short description such as ``"4 CPUs, 0 GPUs, 1 license"``."""
        parts = [f"{self.cpu_total():g} CPUs", f"{self.gpu_total():g} GPUs"]
        if self.memory_total():
            parts.append(f"{self.memory_total() / 2 ** 30:.2f} GiB heap")
        keys = sorted(set(self.custom_resources) | set(self.extra_custom_resources))
        parts += [f"{self.get_res_total(k):g} {k}" for k in keys]
        return ", ".join(parts)

    # -- conversion ----------------------------------------------------------------------------
    def as_placement_group_factory(self):
        """The request as a ``PlacementGroupFactory``: the trial's bundle, then its workers' bundle."""
        from tunesmith.tune.execution.placement_groups import PlacementGroupFactory

        head = {"CPU": self.cpu, "GPU": self.gpu, "memory": self.memory, **self.custom_resources}
        bundles = [head]
        extra = {"CPU": self.extra_cpu, "GPU": self.extra_gpu, "memory": self.extra_memory,
                 **self.extra_custom_resources}
        if any(extra.values()):
            bundles.append(extra)
        return PlacementGroupFactory(bundles)

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Resources":
        return cls(**data)
