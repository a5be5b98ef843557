"""Resolving a ``param_space`` into concrete trial configurations.

A param space is a nested structure of dicts and lists whose leaves are
constants, :class:`~tunesmith.tune.search.sample.Domain` objects (sampled
once per trial), ``tune.sample_from`` functions (called once per trial, after
the values they read) and ``tune.grid_search`` markers (expanded into a
cartesian product, the first grid parameter varying fastest).

Example:
    >>> from tunesmith import tune
    >>> space = {"x": tune.grid_search([1, 2]), "y": tune.sample_from(lambda spec: spec.config.x * 10)}
    >>> [config for _, config in generate_variants(space)]
    [{'x': 1, 'y': 10}, {'x': 2, 'y': 20}]
"""
from __future__ import annotations

import math
import numbers
import re
import threading
from collections.abc import Mapping
from typing import Any, Iterator

from tunesmith.tune.search.sample import Domain, Function, LazyRandomState, as_numpy_rng, is_grid_search

Path = tuple

__all__ = [
    "GridPlan",
    "apply_point",
    "assign_value",
    "count_variants",
    "flatten_dict",
    "flatten_resolved_vars",
    "format_vars",
    "generate_variants",
    "get_value",
    "has_unresolved_values",
    "make_experiment_tag",
    "make_spec",
    "parse_spec_vars",
    "resolve_config",
    "unflatten_dict",
]


# ---------------------------------------------------------------------------
# nested structure helpers


def flatten_dict(dt: dict, delimiter: str = "/", prevent_delimiter: bool = False) -> dict:
    """Flattens nested dicts into one level, joining keys with ``delimiter``.

    Example:
        >>> flatten_dict({"a": {"b": 1}, "c": 2})
        {'a/b': 1, 'c': 2}
    """
    out: dict = {}

    def walk(d: dict, prefix: str) -> None:
        for key, value in d.items():
            key = str(key)
            if prevent_delimiter and delimiter in key:
                raise ValueError(f"Found delimiter {delimiter!r} in key {key!r} while flattening; rename the key.")
            name = f"{prefix}{delimiter}{key}" if prefix else key
            if isinstance(value, dict) and value:
                walk(value, name)
            else:
                out[name] = value

    walk(dt, "")
    return out


def unflatten_dict(dt: dict, delimiter: str = "/") -> dict:
    """Inverse of :func:`flatten_dict`.

    Example:
        >>> unflatten_dict({"a/b": 1, "c": 2})
        {'a': {'b': 1}, 'c': 2}
    """
    out: dict = {}
    for key, value in dt.items():
        parts = str(key).split(delimiter) if isinstance(key, str) else [key]
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"Cannot unflatten {key!r}: {part!r} is both a value and a parent key.")
            node = child
        node[parts[-1]] = value
    return out


def get_value(config: Any, path: Path) -> Any:
    node = config
    for part in path:
        node = node[part]
    return node


def assign_value(config: Any, path: Path, value: Any) -> None:
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


class _Tuple(list):
    """A tuple of a space that holds domains, as a list while its values are sampled (see ``_retuple``)."""


def _copy_structure(value: Any) -> Any:
    """Copies the dicts and lists of a space; leaves (domains, objects) are shared."""
    if isinstance(value, dict):
        return {k: _copy_structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return (_Tuple if type(value) is _Tuple else list)(_copy_structure(v) for v in value)
    if type(value) is tuple and has_unresolved_values(value):
        return _Tuple(_copy_structure(v) for v in value)
    return value


def _retuple(value: Any) -> Any:
    """``value`` with the sampled ``_Tuple`` lists made tuples again (in place for dicts and lists)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                value[k] = _retuple(v)
        return value
    if isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (dict, list)):
                value[i] = _retuple(v)
        return tuple(value) if type(value) is _Tuple else value
    return value


def _copy_space(value: Any) -> Any:
    """Like ``_copy_structure``, but a grid is not copied: each variant replaces it with one value.

    (Copying a grid of N values for each of its N variants would cost O(N^2).)
    """
    if isinstance(value, dict):
        if is_grid_search(value):
            return value
        return {k: _copy_space(v) for k, v in value.items()}
    if isinstance(value, list):
        return (_Tuple if type(value) is _Tuple else list)(_copy_space(v) for v in value)
    if type(value) is tuple and has_unresolved_values(value):
        return _Tuple(_copy_space(v) for v in value)
    return value


def _walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, str, Any]]:
    """Yields ``(path, kind, value)`` for every grid, domain and function leaf."""
    if is_grid_search(value):
        yield path, "grid", value["grid_search"]
    elif isinstance(value, Domain) and value.is_grid():  # Categorical([...]).grid(): every value, as a grid
        yield path, "grid", list(value.categories)
    elif isinstance(value, Domain):
        yield path, "function" if value.is_function() else "domain", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, path + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, path + (i,))


def _walk_constants(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if is_grid_search(value) or isinstance(value, Domain):
        return
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _walk_constants(v, path + (k,))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _walk_constants(v, path + (i,))
    else:
        yield path, value


def parse_spec_vars(space: dict) -> tuple[list, list, list]:
    """Splits a space into ``(resolved_vars, domain_vars, grid_vars)``.

    Each is a list of ``(path, value)`` with ``path`` a tuple of keys (list
    indices for lists). ``domain_vars`` holds the domains (sample_from
    functions included); ``grid_vars`` the grid value lists.

    Example:
        >>> from tunesmith import tune
        >>> parse_spec_vars({"a": 1, "b": tune.grid_search([1, 2])})
        ([(('a',), 1)], [], [(('b',), [1, 2])])
    """
    resolved = list(_walk_constants(space))
    domains: list = []
    grids: list = []
    for path, kind, value in _walk(space):
        (grids if kind == "grid" else domains).append((path, value))
    grids.sort(key=lambda item: _path_key(item[0]))
    return resolved, domains, grids


def _path_key(path: Path) -> tuple:
    """Sorts paths as Ray does (key by key), list indices before names where both occur."""
    return tuple((isinstance(part, str), part) for part in path)


def has_unresolved_values(space: Any) -> bool:
    """Whether ``space`` holds any domain, sample_from function or grid_search."""
    return next(_walk(space), None) is not None


# ---------------------------------------------------------------------------
# sample_from's ``spec`` argument


class _UnresolvedDependency(Exception):
    def __init__(self, path: Path):
        super().__init__(path)
        self.path = path


class _Unassigned:
    """Stands in for a grid value not chosen yet."""

    def __repr__(self) -> str:
        return "<unassigned grid value>"


_UNASSIGNED = _Unassigned()


def _is_unresolved(value: Any) -> bool:
    return value is _UNASSIGNED or isinstance(value, Domain) or is_grid_search(value)


# The path of the sample_from function being called (per thread): reading its own unresolved value
# (a loop over spec.config.items() that skips it) gives the function itself, as on Ray, not a cycle.
_calling = threading.local()


def _view(value: Any, path: Path) -> Any:
    if _is_unresolved(value):
        if path == getattr(_calling, "path", None):
            return value
        raise _UnresolvedDependency(path)
    if isinstance(value, dict):
        return _ConfigView(value, path)
    if type(value) is _Tuple:  # a tuple of the space, being sampled: read as the tuple it becomes
        return tuple(_ListView(value, path))
    if isinstance(value, list):
        return _ListView(value, path)
    return value


class _ConfigView(dict):
    """Read access to a partly resolved config, by key or attribute."""

    def __init__(self, data: dict, path: Path):
        super().__init__(data)
        object.__setattr__(self, "_path", path)

    def __getitem__(self, key):
        return _view(dict.__getitem__(self, key), self._path + (key,))

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        if not dict.__contains__(self, key):
            where = "/".join(map(str, self._path)) or "config"
            raise AttributeError(f"{where} has no key {key!r}; its keys are {sorted(map(str, dict.keys(self)))}.")
        return self[key]

    def get(self, key, default=None):
        return self[key] if dict.__contains__(self, key) else default

    def values(self):
        return [self[k] for k in dict.keys(self)]

    def items(self):
        return [(k, self[k]) for k in dict.keys(self)]


class _ListView(list):
    def __init__(self, data: list, path: Path):
        super().__init__(data)
        self._path = path

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        return _view(list.__getitem__(self, index), self._path + (index,))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class _Spec(Mapping):
    """The argument a sample_from function receives.

    It reads as the trial's config (``config["x"]``, ``config.x``), as current
    Ray passes it, and as the older ``spec`` (``spec.config.x``,
    ``spec["config"]["x"]``). A config key named ``config`` wins over the
    older form.
    """

    def __init__(self, config: dict):
        self._config = config

    def _view(self) -> _ConfigView:
        # A fresh view each time: the config fills in as the other functions resolve.
        return _ConfigView(self._config, ())

    @property
    def config(self) -> _ConfigView:
        if "config" in self._config:
            return self._view()["config"]
        return self._view()

    def __getitem__(self, key: Any) -> Any:
        if key == "config" and key not in self._config:
            return self._view()
        return self._view()[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return getattr(self._view(), key)

    def __iter__(self):
        return iter(self._config)

    def __len__(self) -> int:
        return len(self._config)

    def __contains__(self, key: object) -> bool:
        return key in self._config

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self._config or key == "config" else default

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config!r})"


def make_spec(config: dict) -> _Spec:
    """Wraps ``config`` as the ``spec`` argument of a sample_from function."""
    return _Spec(config)


# ---------------------------------------------------------------------------
# resolving one configuration


def _path_str(path: Path) -> str:
    return "/".join(map(str, path))


def resolve_config(
    config: dict, random_state: Any = None, allow_pending: bool = False, keep_grids: bool = False
) -> dict[Path, Any]:
    """Samples every domain and sample_from function of ``config`` in place.

    Plain domains are sampled first, in the order they appear; sample_from
    functions are then called in dependency order (a function reading a value
    that is not resolved yet is retried after the others).

    Args:
        config: A space with grid values already chosen; modified in place.
        random_state: Seed, numpy Generator or RandomState for the domains.
        allow_pending: Leave functions that wait on unassigned values
            unresolved instead of raising.
        keep_grids: Leave a ``grid_search`` that a sampled value brought in
            (a ``tune.choice`` option holding one) in place, for the caller to
            expand, instead of raising.

    Returns:
        ``{path: value}`` of every value that was sampled.

    Raises:
        ValueError: If sample_from functions depend on each other in a cycle.
    """
    resolved, complete = _resolve(config, random_state, allow_pending, keep_grids)
    if complete:
        _retuple(config)
    return resolved


def _resolve(
    config: dict, random_state: Any, allow_pending: bool, keep_grids: bool = False
) -> tuple[dict[Path, Any], bool]:
    """``resolve_config``'s work: ``(resolved, complete)``, ``complete`` False when functions still wait."""
    leaves = list(_walk(config))
    resolved: dict[Path, Any] = {}
    if not leaves:
        return resolved, True  # nothing to sample: numpy is not needed
    rng = as_numpy_rng(random_state)
    functions: list[tuple[Path, Function]] = []
    while leaves:
        nested: list[tuple[Path, str, Any]] = []
        for path, kind, value in leaves:
            if kind == "grid":
                if keep_grids:
                    continue
                raise ValueError(
                    f"A tune.grid_search at {_path_str(path)!r} sits inside a value that is sampled (a tune.choice "
                    "option): a grid is expanded before sampling, so it cannot depend on a sampled choice. Put "
                    "the grid_search at the top of the space, or list the combinations as choice options."
                )
            if kind == "function":
                functions.append((path, value))
                continue
            sampled = value.sample(random_state=rng)
            if isinstance(sampled, (dict, list, tuple, Domain)):
                inner = list(_walk(sampled, path))
                if inner:
                    # A sampled value with domains of its own (a tune.choice of dicts of domains, of
                    # domains, of tuples holding some): they are sampled too, in a copy, so the
                    # choice keeps its domains.
                    sampled = _copy_structure(sampled)
                    nested.extend(inner)
            assign_value(config, path, sampled)
            resolved[path] = sampled
        leaves = nested
    if not functions:
        return resolved, True
    spec = _Spec(config)
    pending = functions
    while pending:
        blocked: list[tuple[Path, Function]] = []
        waits: dict[Path, Path] = {}
        for path, func in pending:
            _calling.path = path
            try:
                value = func.sample(spec=spec, random_state=rng)
            except _UnresolvedDependency as exc:
                blocked.append((path, func))
                waits[path] = exc.path
                continue
            finally:
                _calling.path = None
            if isinstance(value, Domain) and not value.is_function():
                value = value.sample(random_state=rng)  # a function that picks a domain (as on Ray)
            assign_value(config, path, value)
            resolved[path] = value
        if len(blocked) == len(pending):
            if allow_pending:
                return resolved, False
            detail = ", ".join(f"{_path_str(p)!r} needs {_path_str(waits[p])!r}" for p, _ in blocked)
            raise ValueError(
                f"Could not resolve tune.sample_from values: {detail}. These functions depend on each "
                "other in a cycle; break the cycle so that one of them does not read the others."
            )
        pending = blocked
    return resolved, True


class GridPlan:
    """The grid of a space: its grid parameters and how to build variant ``i``.

    Args:
        space: A param space (not modified).

    Example:
        >>> from tunesmith import tune
        >>> plan = GridPlan({"x": tune.grid_search([1, 2]), "y": tune.grid_search(["a", "b"])})
        >>> plan.size, plan.variant(1)[1]
        (4, {'x': 2, 'y': 'a'})
    """

    def __init__(self, space: dict):
        if not isinstance(space, dict):
            raise ValueError(f"`param_space` must be a dict, got {type(space).__name__}.")
        self.space = space
        # Ordered by path, as Ray orders them: the first one varies fastest, so trial N has Ray's values.
        self.grid_vars: list[tuple[Path, list]] = sorted(
            ((path, _expand_options(values, path)) for path, kind, values in _walk(space) if kind == "grid"),
            key=lambda item: _path_key(item[0]),
        )
        self.size = math.prod(len(options) for _, options in self.grid_vars)

    def _choices(self, index: int) -> list[tuple[Path, Any]]:
        out = []
        for path, options in self.grid_vars:
            index, pick = divmod(index, len(options))
            out.append((path, options[pick]))
        return out

    def constants(self, random_state: Any = None) -> dict[Path, Any]:
        """Samples the values that do not depend on the grid (``constant_grid_search``)."""
        config = _copy_space(self.space)
        for path, _ in self.grid_vars:
            if not path:
                return {}  # a grid of whole configs: nothing lies outside it
            assign_value(config, path, _UNASSIGNED)
        return resolve_config(config, random_state, allow_pending=True)

    def variant(
        self, index: int, random_state: Any = None, constants: dict[Path, Any] | None = None
    ) -> tuple[dict[Path, Any], dict]:
        """Returns ``(resolved_vars, config)`` for grid point ``index``."""
        config = _copy_space(self.space)
        resolved: dict[Path, Any] = {}
        for path, value in self._choices(index):
            value = _copy_structure(value)
            if not path:  # param_space=tune.grid_search([{...}, {...}]): each option is a whole config
                if not isinstance(value, dict):
                    raise ValueError(f"A grid_search as the whole param_space needs dicts as its values, got {value!r}.")
                config = value
                continue
            assign_value(config, path, value)
            resolved[path] = value
        for path, value in (constants or {}).items():
            assign_value(config, path, value)
            resolved[path] = value
        # (a sample_from reading a grid_search that a sampled value brought in waits for its expansion)
        resolved.update(resolve_config(config, random_state, allow_pending=True, keep_grids=True))
        return resolved, config

    def variants(
        self, index: int, random_state: Any = None, constants: dict[Path, Any] | None = None
    ) -> list[tuple[dict[Path, Any], dict]]:
        """The configurations of grid point ``index``: one, or, where a sampled value brought in
        a ``grid_search`` (a ``tune.choice`` option holding one), one per point of that grid, as
        Ray expands it."""
        return _expand_sampled_grids(*self.variant(index, random_state, constants), random_state)


def _expand_sampled_grids(
    resolved: dict[Path, Any], config: dict, random_state: Any
) -> list[tuple[dict[Path, Any], dict]]:
    if not any(kind == "grid" for _, kind, _ in _walk(config)):
        resolved.update(resolve_config(config, random_state))  # what waited (a real cycle raises here)
        return [(resolved, config)]
    plan = GridPlan(config)
    if plan.size == 0:
        raise ValueError("A tune.choice option holds a grid_search with no values.")
    out = []
    for index in range(plan.size):
        for inner_resolved, inner_config in plan.variants(index, random_state):
            merged = {path: get_value(inner_config, path) for path in resolved}
            merged.update(inner_resolved)
            out.append((merged, inner_config))
    return out


def _expand_options(values: list, path: Path) -> list:
    """Grid options, with grid searches nested inside an option expanded into more options."""
    options: list = []
    for value in values:
        if any(kind == "grid" for _, kind, _ in _walk(value)):
            if not isinstance(value, (dict, list)):
                raise ValueError(f"Invalid nested grid_search at {_path_str(path)!r}.")
            wrapper = {"v": value}
            inner = GridPlan(wrapper)
            for i in range(inner.size):
                config = _copy_structure(wrapper)
                for p, v in inner._choices(i):
                    assign_value(config, p, _copy_structure(v))
                options.append(config["v"])
        else:
            options.append(value)
    return options


def count_variants(space: dict, num_samples: int = 1) -> int:
    """How many configurations ``num_samples`` repetitions of ``space``'s grid give.

    Example:
        >>> from tunesmith import tune
        >>> count_variants({"x": tune.grid_search([1, 2, 3]), "y": tune.grid_search([1, 2, 3])}, 5)
        45
    """
    return GridPlan(space).size * num_samples


def generate_variants(
    space: dict, constant_grid_search: bool = False, random_state: Any = None
) -> Iterator[tuple[dict[Path, Any], dict]]:
    """Yields ``(resolved_vars, config)`` for every point of the grid, once.

    Args:
        space: The param space.
        constant_grid_search: Sample the non-grid values once and keep them
            for every grid point.
        random_state: Seed, numpy Generator or RandomState.
    """
    rng = LazyRandomState(random_state)
    plan = GridPlan(space)
    constants = plan.constants(rng) if constant_grid_search else None
    for index in range(plan.size):
        yield from plan.variants(index, rng, constants)


# ---------------------------------------------------------------------------
# points to evaluate


def apply_point(space: dict, point: dict) -> tuple[dict, dict[Path, Any]]:
    """Returns a copy of ``space`` with the values of the (partial) ``point`` filled in.

    Keys may be nested dicts or ``"a/b"`` paths. A value for a searched
    parameter outside its domain is kept with a warning.

    Returns:
        ``(space, preset_vars)``: the new space and ``{path: value}`` of the
        searched parameters the point set.

    Raises:
        ValueError: If the point names a key the space does not have.
    """
    import logging

    if not isinstance(point, dict):
        raise ValueError(f"Each entry of `points_to_evaluate` must be a dict, got {type(point).__name__} {point!r}.")
    space = _copy_structure(space)
    preset: dict[Path, Any] = {}

    def update(node: dict, values: dict, prefix: Path) -> None:
        for key, value in values.items():
            if key not in node and isinstance(key, str) and "/" in key:
                update(node, unflatten_dict({key: value}), prefix)
                continue
            path = prefix + (key,)
            if key not in node:
                raise ValueError(
                    f"`points_to_evaluate` sets {_path_str(path)!r}, which is not a key of the param space "
                    f"(keys here: {sorted(map(str, node))}). Add it to `param_space` or remove it from the point."
                )
            target = node[key]
            if isinstance(value, dict) and isinstance(target, dict) and not is_grid_search(target):
                update(target, value, path)
                continue
            if is_grid_search(target):
                valid = any(value is v or _eq(value, v) for v in target["grid_search"])
                preset[path] = value
            elif isinstance(target, Domain):
                valid = target.is_valid(value)
                preset[path] = value
            else:
                valid = True
            if not valid:
                logging.getLogger(__name__).warning(
                    "points_to_evaluate value %r for %r is outside its search space %s.",
                    value, _path_str(path), target["grid_search"] if is_grid_search(target) else target.domain_str,
                )
            node[key] = value

    update(space, point, ())
    return space, preset


def _eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


# ---------------------------------------------------------------------------
# tags


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]+")


def _clean_value(value: Any) -> str:
    kind = type(value)
    if kind is float:  # the common cases first, without the abstract-class checks
        return f"{value:.5}"
    if kind is int or kind is bool:
        return str(value)  # digits, "-", "True", "False": nothing to clean
    if kind is str:
        return _clean_str(value)
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.5}"
    return _UNSAFE.sub("_", str(value)).strip("_")


def _clean_str(value: str) -> str:
    cleaned = _CLEAN_STR_CACHE.get(value)
    if cleaned is None:
        cleaned = _UNSAFE.sub("_", value).strip("_")
        if len(_CLEAN_STR_CACHE) < 4096:  # key names and categories repeat from trial to trial
            _CLEAN_STR_CACHE[value] = cleaned
    return cleaned


_CLEAN_STR_CACHE: dict[str, str] = {}


def _key_tuple(key: Any) -> tuple:
    return tuple(str(p) for p in key) if isinstance(key, tuple) else tuple(str(key).split("/"))


def format_vars(resolved_vars: dict) -> str:
    """Formats sampled values as ``"k=v,k2=v2"`` (leaf key names, sorted by path).

    Example:
        >>> format_vars({("model", "width"): 13.88512, ("activation",): "tanh"})
        'activation=tanh,width=13.885'
    """
    items = sorted(((_key_tuple(k), v) for k, v in resolved_vars.items()), key=_first)
    return ",".join(f"{_clean_value(path[-1])}={_clean_value(v)}" for path, v in items)


def _first(item: tuple) -> Any:
    return item[0]


def make_experiment_tag(index: int, resolved_vars: dict) -> str:
    """Returns ``"<index>_<k>=<v>,..."``, or ``"<index>"`` with nothing sampled."""
    formatted = format_vars(resolved_vars)
    return f"{index}_{formatted}" if formatted else str(index)


def flatten_resolved_vars(resolved_vars: dict[Path, Any]) -> dict[str, Any]:
    """``{("a", "b"): 1}`` -> ``{"a/b": 1}``."""
    return {_path_str(path): value for path, value in resolved_vars.items()}
