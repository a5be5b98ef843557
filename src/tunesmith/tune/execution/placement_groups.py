"""Resource requests of a trial: ``PlacementGroupFactory`` and its normalisation."""
from __future__ import annotations

from typing import Any

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroupFactory:
    """The resources one trial needs, as a list of bundles.

    The first bundle is the trial's own process; further bundles are for the
    workers it starts (a distributed trainer). On the local backend the trial
    is placed when the sum of all bundles fits in the free resources.

    Args:
        bundles: A list of dicts such as ``{"CPU": 1, "GPU": 0.5}``.
        strategy: ``"PACK"``, ``"SPREAD"``, ``"STRICT_PACK"`` or ``"STRICT_SPREAD"``.

    Example:
        >>> pgf = PlacementGroupFactory([{"CPU": 1}, {"CPU": 2, "GPU": 1}])
        >>> pgf.required_resources
        {'CPU': 3.0, 'GPU': 1.0}
    """

    def __init__(self, bundles: list[dict[str, float]], strategy: str = "PACK", *args, **kwargs):
        if not isinstance(bundles, (list, tuple)) or not bundles:
            raise ValueError(f"PlacementGroupFactory needs a non-empty list of bundles, got {bundles!r}.")
        if strategy not in _STRATEGIES:
            raise ValueError(f"PlacementGroupFactory strategy must be one of {_STRATEGIES}, got {strategy!r}.")
        clean = []
        for bundle in bundles:
            if not isinstance(bundle, dict):
                raise ValueError(f"Each bundle must be a dict of resource amounts, got {bundle!r}.")
            b = {}
            for key, value in bundle.items():
                key = _canonical(key)
                if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):  # (NaN is neither)
                    raise ValueError(f"Resource {key!r} must be a non-negative number, got {value!r}.")
                if value:
                    b[key] = float(value)
            clean.append(b)
        self._bundles = clean
        self._strategy = strategy

    @property
    def bundles(self) -> list[dict[str, float]]:
        return [dict(b) for b in self._bundles]

    @property
    def strategy(self) -> str:
        return self._strategy

    @property
    def head_bundle_is_empty(self) -> bool:
        return not self._bundles[0]

    @property
    def head_cpus(self) -> float:
        """The CPUs of the trial's own process (the first bundle)."""
        return self._bundles[0].get("CPU", 0.0)

    @property
    def required_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self._bundles:
            for key, value in bundle.items():
                total[key] = total.get(key, 0.0) + value
        return total

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PlacementGroupFactory)
            and self._bundles == other._bundles
            and self._strategy == other._strategy
        )

    def __hash__(self) -> int:
        return hash((repr(self._bundles), self._strategy))

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self._bundles!r}, strategy={self._strategy!r})"


_ALIASES = {"cpu": "CPU", "gpu": "GPU", "memory": "memory", "object_store_memory": "object_store_memory"}


def _canonical(key: str) -> str:
    return _ALIASES.get(key, key) if isinstance(key, str) else key


def resource_dict_to_pg_factory(spec: dict[str, Any] | None) -> PlacementGroupFactory:
    """Turns ``{"cpu": 2, "gpu": 1, "custom_resources": {...}}`` into a factory."""
    spec = dict(spec or {})
    custom = spec.pop("custom_resources", None) or {}
    extra_cpu = spec.pop("extra_cpu", 0) or 0
    extra_gpu = spec.pop("extra_gpu", 0) or 0
    bundle: dict[str, float] = {}
    for key, value in spec.items():
        if value is None:
            continue
        bundle[_canonical(key)] = value
    bundle.update(custom)
    if not any(bundle.values()):
        # Nothing asked for ({} or {"gpu": 0}): one CPU. As on Ray, a request that names something
        # else takes no CPU it does not name: {"gpu": 1} runs as many trials at once as there are GPUs.
        bundle = {**bundle, "CPU": 1}
    bundles = [bundle]
    if extra_cpu or extra_gpu:
        bundles.append({"CPU": extra_cpu, "GPU": extra_gpu})
    return PlacementGroupFactory(bundles)


def to_pg_factory(request: Any, config: dict | None = None) -> PlacementGroupFactory:
    """Normalises any resource request a user may give into a ``PlacementGroupFactory``.

    Accepts a factory, a dict, an object with a ``to_placement_group_factory``
    method (``ScalingConfig``), or a callable of the config returning any of these.
    """
    if request is None:
        return PlacementGroupFactory([{"CPU": 1}])
    if isinstance(request, PlacementGroupFactory):
        return request
    if isinstance(request, dict):
        return resource_dict_to_pg_factory(request)
    if hasattr(request, "as_placement_group_factory"):
        return request.as_placement_group_factory()
    if callable(request):
        return to_pg_factory(request(_ConfigSpec(config or {})), config)
    raise TypeError(
        "A resource request must be a dict such as {'cpu': 2, 'gpu': 1}, a PlacementGroupFactory, "
        f"or a callable of the config returning one; got {type(request).__name__}."
    )


class _ConfigSpec(dict):
    """The argument of a resource callable: the config, readable as ``spec.config.x`` or ``spec["x"]``."""

    @property
    def config(self) -> "_ConfigSpec":
        return self

    def __getattr__(self, name: str):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _ConfigSpec(value) if isinstance(value, dict) else value


ResourceRequest = "dict | PlacementGroupFactory | Callable[[dict], dict | PlacementGroupFactory]"
