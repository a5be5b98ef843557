"""What the library searchers share: space conversion, metric and mode, warm starts, ordering.

Each integration (``optuna/``, ``hyperopt/``, ...) subclasses
:class:`LibrarySearcher` and implements a handful of hooks that talk to its
library (``_build``, ``_ask``, ``_tell``, ``_observe``). Everything Tune-side
is done here once: a Tune ``param_space`` becomes a list of :class:`Param`,
library values come back through :meth:`Param.decode` (so quantized and log
domains round-trip exactly), errors name the parameter, the domain and the
searcher, and results reach the library in suggestion order when a seeded run
must be reproducible.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from tunesmith.tune.search.sample import (
    Categorical,
    Domain,
    Float,
    Integer,
    LogUniform,
    Normal,
    Quantized,
    _decimals,
    quantized_steps,
)
from tunesmith.tune.search.searcher import (
    UNDEFINED_METRIC_MODE,
    UNDEFINED_SEARCH_SPACE,
    Searcher,
)
from tunesmith.tune.search.variant_generator import (
    _walk,
    flatten_dict,
    has_unresolved_values,
    unflatten_dict,
)
from tunesmith.tune.utils.nested import deep_update

logger = logging.getLogger(__name__)

_PRIMITIVES = (str, int, float, bool)
_TRAINING_ITERATION = "training_iteration"  # tunesmith.tune.result.TRAINING_ITERATION, without importing it per result


def import_library(module: str, searcher: str, extra: str, pip_name: str, hint: str = "") -> Any:
    """Imports ``module`` or raises an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = hint or f"`pip install 'tunesmith[{extra}]'` (or `pip install {pip_name}`)"
        raise ImportError(
            f"{searcher} needs the `{pip_name}` library, which could not be imported ({exc}). Install it with {how}."
        ) from exc


# ---------------------------------------------------------------------------
# the converted search space


@dataclass
class Param:
    """One searchable parameter of a Tune search space, as the libraries see it.

    Attributes:
        name: The flattened name (``"model/lr"`` for ``{"model": {"lr": ...}}``).
        domain: The Tune domain it came from.
        kind: ``"float"``, ``"int"`` or ``"categorical"``.
        low: The smallest value the library may propose (inclusive).
        high: The largest value the library may propose (inclusive).
        log: Whether the library should search in log space.
        q: The quantization step, or None.
        mean: Mean of a normal (``randn``) domain.
        sd: Standard deviation of a normal domain.
        categories: The values of a categorical domain.
    """

    name: str
    domain: Domain
    kind: str
    path: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    base: float = 10.0
    q: float | None = None
    mean: float | None = None
    sd: float | None = None
    categories: list = field(default_factory=list)

    @property
    def is_normal(self) -> bool:
        return self.mean is not None

    @property
    def _plain_float(self) -> bool:
        plain = self.__dict__.get("_plain")
        if plain is None:  # computed once; the fields do not change after parsing
            plain = self.__dict__["_plain"] = (
                self.kind == "float" and self.q is None and self.low is not None and self.high is not None
            )
        return plain

    def __post_init__(self) -> None:
        values = self.categories
        native = all(type(c) in _PRIMITIVES for c in values) and len(set(values)) == len(values)
        types = {type(c) for c in values}
        # True == 1 == 1.0 would be merged by a library: such mixes are held as indices.
        self.native_choices = native and not (bool in types and len(types) > 1)

    def choices(self) -> list:
        """The categories as the library holds them: the values, or their indices."""
        return list(self.categories) if self.native_choices else list(range(len(self.categories)))

    def decode(self, raw: Any) -> Any:
        """Turns a value the library proposed into the Tune value (quantized, cast, in bounds)."""
        if self._plain_float:  # the common case first: a bounded float without quantization
            value = float(raw)
            return self.low if value < self.low else self.high if value > self.high else value
        if self.kind == "categorical":
            if self.native_choices:
                for c in self.categories:
                    if c == raw and type(c) is type(raw):
                        return c
                for c in self.categories:
                    if c == raw:
                        return c
                raise ValueError(f"Parameter {self.name!r}: the library proposed {raw!r}, not one of {self.categories}.")
            return self.categories[int(raw)]
        value = float(raw)
        if self.q is not None:
            q = self.q
            k = round(value / q)
            k_low, k_high = quantized_steps(self.domain.lower, self.domain.upper, q)
            k = min(max(k, k_low), k_high)
            if self.kind == "int":
                return int(k) * int(q)
            return float(round(k * q, _decimals(q)))  # a float even when the step is a whole number
        if self.kind == "int":
            return int(min(max(round(value), self.low), self.high))
        if self.low is not None:
            value = min(max(value, self.low), self.high)
        return float(value)

    def encode(self, value: Any) -> Any:
        """Turns a Tune value into the library's representation (see :meth:`choices`)."""
        if self.kind == "categorical":
            for i, c in enumerate(self.categories):
                if c is value or (type(c) is type(value) and c == value):
                    return c if self.native_choices else i
            for i, c in enumerate(self.categories):
                try:
                    if c == value:
                        return c if self.native_choices else i
                except Exception:  # noqa: BLE001 - objects with odd __eq__
                    continue
            raise ValueError(f"{value!r} is not one of {self.categories}")
        return int(value) if self.kind == "int" else float(value)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this parameter can take."""
        if self.kind == "categorical":
            try:
                self.encode(value)
                return True
            except ValueError:
                return False
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None and not (self.low - 1e-12 * abs(self.low) <= value <= self.high + 1e-12 * abs(self.high)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return True


def describe_domain(domain: Any) -> str:
    """``Float(0.0, 1.0, sampler=Uniform)``-like text for error messages."""
    if isinstance(domain, dict) and "grid_search" in domain:
        return f"tune.grid_search({domain['grid_search']!r})"
    if isinstance(domain, Domain) and domain.is_function():
        return "tune.sample_from(...)"
    return repr(domain)


def unsupported(searcher: str, name: str, domain: Any, why: str, fix: str = "") -> ValueError:
    return ValueError(
        f"{searcher} cannot search parameter {name!r} with domain {describe_domain(domain)}: {why}."
        + (f" {fix}" if fix else "")
    )


def parse_space(
    space: dict,
    searcher: str,
    *,
    allow_normal: bool = False,
    allow_object_choices: bool = True,
) -> list[Param]:
    """Converts a Tune search space into a list of :class:`Param`.

    Constants are left out (the Tuner merges them back). Raises ValueError,
    naming the parameter, its domain and the searcher, for a domain the
    library cannot take: ``grid_search``, ``sample_from``, a domain inside a
    list, a normal domain where ``allow_normal`` is False.
    """
    params: list[Param] = []
    for path, kind, value in _walk(space):
        name = "/".join(str(p) for p in path)
        if kind == "grid":
            raise unsupported(
                searcher, name, {"grid_search": value}, "grid search is only done by the default search algorithm",
                "Use tune.choice(...) instead, or leave `search_alg` unset.",
            )
        if kind == "function":
            raise unsupported(
                searcher, name, value, "a function-valued parameter cannot be searched by a model",
                "Replace it with a tune.uniform/randint/choice domain, or compute it inside the trainable.",
            )
        if any(not isinstance(p, str) for p in path):
            if _inside_a_list(space, path):
                raise unsupported(searcher, name, value, "search domains inside lists are not supported",
                                  "Put the parameter in a dict instead of a list.")
            raise unsupported(searcher, name, value, "keys of searched parameters must be strings",
                              f"Use a text key (e.g. {str(next(p for p in path if not isinstance(p, str)))!r}).")
        if "/" in "".join(str(p) for p in path):
            raise unsupported(searcher, name, value, "keys of searched parameters must not contain '/'",
                              "Rename the key.")
        param = param_from_domain(name, value, searcher, allow_normal=allow_normal,
                                  allow_object_choices=allow_object_choices)
        param.path = tuple(path)
        params.append(param)
    return params


def _inside_a_list(space: Any, path: tuple) -> bool:
    node = space
    for part in path:
        if isinstance(node, (list, tuple)):
            return True
        node = node[part]
    return False


def _constants_of(space: Any, params: list[Param]) -> dict:
    """The fixed values of a Tune space (or of a converted space: its entries that are no parameter),
    nested as in the space."""
    out: dict = {}
    if not isinstance(space, dict):
        return out
    if getattr(space, _CONVERTED_ATTR, None) is not None:
        names = {p.name for p in params}
        return unflatten_dict({k: copy.deepcopy(v) for k, v in space.items() if k not in names})

    def walk(node: dict, into: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and has_unresolved_values(value):
                walk(value, into.setdefault(key, {}))
                if not into[key]:
                    del into[key]
            elif not has_unresolved_values(value):
                into[key] = copy.deepcopy(value)

    walk(space, out)
    return out


def param_from_domain(
    name: str, domain: Domain, searcher: str, *, allow_normal: bool = False, allow_object_choices: bool = True
) -> Param:
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q = sampler.q
        sampler = sampler.get_sampler()
    if isinstance(domain, Categorical):
        param = Param(name, domain, "categorical", categories=list(domain.categories))
        if not allow_object_choices and not param.native_choices:
            raise unsupported(
                searcher, name, domain, "its categories must be distinct strings, numbers or booleans",
                "Choose among names (e.g. tune.choice(['small', 'large'])) and map them to objects in the trainable.",
            )
        return param
    if isinstance(domain, (Float, Integer)):
        kind = "int" if isinstance(domain, Integer) else "float"
        if isinstance(sampler, Normal):
            if not allow_normal:
                raise unsupported(
                    searcher, name, domain, "normal (randn) domains are not supported by this library",
                    "Use tune.uniform or tune.loguniform with bounds.",
                )
            return Param(name, domain, kind, q=q, mean=float(sampler.mean), sd=float(sampler.sd))
        log = isinstance(sampler, LogUniform)
        base = float(sampler.base) if log else 10.0
        if q is not None:
            k_low, k_high = quantized_steps(domain.lower, domain.upper, q)
            if kind == "int":
                low, high = int(k_low * q), int(k_high * q)
            else:
                low, high = round(k_low * q, _decimals(q)), round(k_high * q, _decimals(q))
        elif kind == "int":
            low, high = int(domain.lower), int(domain.upper) - 1
        else:
            low, high = float(domain.lower), float(domain.upper)
        return Param(name, domain, kind, low=low, high=high, log=log, base=base, q=q)
    raise unsupported(searcher, name, domain, f"unknown domain type {type(domain).__name__}")


# ---------------------------------------------------------------------------
# the shared searcher


class _Live:
    """A suggested trial that has not completed yet (one is made per trial: a plain class with slots)."""

    __slots__ = ("index", "handle", "params", "intermediate")

    def __init__(self, index: int, handle: Any, params: dict, intermediate: list | None = None):
        self.index = index
        self.handle = handle
        self.params = params  # flat library values (encoded), for observing a point the library did not propose
        self.intermediate = [] if intermediate is None else intermediate  # (step, value)


def _finite_number(value: Any) -> bool:
    if type(value) is float:  # the common case, without the slower abstract-class check
        return math.isfinite(value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


_CONVERTED_ATTR = "_tunesmith_params"


class _ConvertedDict(dict):
    """A converter's dict output, marked with the Tune parameters it came from."""

    def _unchanged(self) -> bool:
        made = self._made
        return self.keys() == made.keys() and all(self[k] is v for k, v in made.items())


class _ConvertedList(list):
    """A converter's list output, marked with the Tune parameters it came from."""

    def _unchanged(self) -> bool:
        made = self._made
        return len(self) == len(made) and all(a is b for a, b in zip(self, made))


def converted_params(space: Any) -> list[Param] | None:
    """The Tune parameters a ``convert_search_space`` result was made from; None for any other
    space, and for one the user changed since (searched then as the library's own space)."""
    params = getattr(space, _CONVERTED_ATTR, None)
    if params is None:
        return None
    unchanged = getattr(space, "_unchanged", None)
    if unchanged is not None and not unchanged():
        return None
    return list(params)


def mark_converted(space: Any, params: list[Param]) -> Any:
    """``space`` (a ``convert_search_space`` result) marked with the ``params`` it was made from.

    A searcher given it back as its ``space`` searches the Tune space it came from, so its
    values are decoded (log scales, integers, quantization, categories) as for that space;
    unmarked, the library's encoding (log-space bounds, category indices) would reach trials.
    """
    if type(space) is dict:
        space = _ConvertedDict(space)
        space._made = dict(space)
    elif type(space) is list:
        space = _ConvertedList(space)
        space._made = list(space)
    try:
        setattr(space, _CONVERTED_ATTR, tuple(params))
    except (AttributeError, TypeError):
        pass  # an object that takes no attributes: used as the library's own space
    return space


class LibrarySearcher(Searcher):
    """Base of the searchers that wrap an optimisation library.

    Subclasses set ``_extra`` and ``_pip_name`` (what an ImportError tells the
    user to install) and implement the hooks below (``_build``, ``_ask``,
    ``_tell``, ``_observe``; the space hooks for the library's own format). The base class converts the Tune
    space, checks metric and mode, feeds ``points_to_evaluate``,
    ``evaluated_rewards`` and warm-start points, limits concurrency, and in a
    seeded run with a known concurrency tells the library the results in
    suggestion order, so the same seed gives the same configurations.

    Args:
        space: A Tune search space, the library's own space, or None to take
            ``param_space`` from the Tuner.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        evaluated_rewards: The metric values of ``points_to_evaluate`` if they
            were already evaluated (then they are not run again).
        seed: Seeds the library.
        max_concurrent: Most trials running at once (0: no limit).
    """

    _extra: str = ""
    _pip_name: str = ""
    #: The constructor argument that takes the search space (named in the error when none was given).
    _space_argument: str = "space"
    #: How to install the library, where ``pip install 'tunesmith[<extra>]'`` is not enough.
    _install_hint: str = ""
    #: Whether the library can sample normal (``tune.randn``) domains.
    _allow_normal = False
    #: Whether categories may be arbitrary objects (the library then holds indices).
    _allow_object_choices = True
    #: Whether ``metric``/``mode`` may be lists (multi-objective).
    _multi_objective = False
    #: Whether ``_tell``/``_observe`` read a trial's intermediate results (else they are not kept).
    _uses_intermediate = False
    # Set with the space (class-level defaults for searchers saved before they existed):
    # whether parameter names hold "/", and (name, low, high) when all are bounded top-level floats.
    _nested = True
    _float_bounds: tuple | None = None

    def __init__(
        self,
        space: Any = None,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        evaluated_rewards: Sequence[Any] | None = None,
        seed: int | None = None,
        max_concurrent: int = 0,
    ):
        self._validate_metric_mode(metric, mode)
        self._metric = list(metric) if isinstance(metric, (list, tuple)) else metric
        self._mode = list(mode) if isinstance(mode, (list, tuple)) else mode
        if points_to_evaluate is not None and (
            not isinstance(points_to_evaluate, (list, tuple)) or not all(isinstance(p, dict) for p in points_to_evaluate)
        ):
            raise TypeError(
                f"{self._name}: `points_to_evaluate` must be a list of dicts, got {points_to_evaluate!r}."
            )
        self._points_to_evaluate: list[dict] = copy.deepcopy(list(points_to_evaluate or []))
        if evaluated_rewards is not None:
            evaluated_rewards = list(evaluated_rewards)
            if len(evaluated_rewards) != len(self._points_to_evaluate):
                raise ValueError(
                    f"{self._name}: `evaluated_rewards` has {len(evaluated_rewards)} values but "
                    f"`points_to_evaluate` has {len(self._points_to_evaluate)} points; give one reward per point."
                )
        self._evaluated_rewards = evaluated_rewards
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
            raise TypeError(f"{self._name}: the seed must be an integer or None, got {seed!r}.")
        self._seed = None if seed is None else int(seed)
        if not isinstance(max_concurrent, numbers.Integral) or isinstance(max_concurrent, bool) or max_concurrent < 0:
            raise ValueError(f"{self._name}: `max_concurrent` must be an integer >= 0, got {max_concurrent!r}.")
        self._max_concurrent = int(max_concurrent)

        self._params: list[Param] | None = None  # set when the space is a Tune space
        self._constants: dict | None = None  # the fixed values of that space, given with each suggestion
        self._native_space: Any = None  # set when the space is the library's own
        self._ready = False
        self._live: dict[str, _Live] = {}
        self._num_suggested = 0
        self._num_told = 0
        self._finished_buffer: dict[int, tuple[str, _Live, dict | None, bool]] = {}
        self._pending_evaluations: list[tuple] = []
        self._last_suggested = False
        if space is not None:
            self._take_space(space)

    # -- names and validation ------------------------------------------------
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _validate_metric_mode(self, metric: Any, mode: Any) -> None:
        if isinstance(metric, (list, tuple)) or isinstance(mode, (list, tuple)):
            if not self._multi_objective:
                raise ValueError(
                    f"{self._name} optimises one metric: `metric` must be a string and `mode` 'min' or 'max', "
                    f"got metric={metric!r}, mode={mode!r}. Multi-objective search is available with OptunaSearch."
                )
            metrics = list(metric) if isinstance(metric, (list, tuple)) else [metric]
            modes = list(mode) if isinstance(mode, (list, tuple)) else [mode]
            if metric is not None and mode is not None and len(metrics) != len(modes):
                raise ValueError(
                    f"{self._name}: `metric` and `mode` must be lists of the same length for multi-objective "
                    f"search, got metric={metric!r}, mode={mode!r}."
                )
            for m in modes:
                if m is not None and m not in ("min", "max"):
                    raise ValueError(f"{self._name}: every `mode` must be 'min' or 'max', got {mode!r}.")
            return
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"{self._name}: `mode` must be 'min' or 'max', got {mode!r}.")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"{self._name}: `metric` must be a string, got {metric!r}.")

    def _take_space(self, space: Any) -> None:
        converted = converted_params(space)
        tune_space = converted is not None or (isinstance(space, dict) and (has_unresolved_values(space) or not space))
        if not tune_space and isinstance(space, dict) and not self._is_native_space(space):
            tune_space = True  # a param_space of constants only: nothing to search, said below
        if tune_space:
            # A Tune space, or what convert_search_space made of one: searched (and decoded) as the Tune space.
            self._params = converted if converted is not None else parse_space(
                space, self._name, allow_normal=self._allow_normal, allow_object_choices=self._allow_object_choices
            )
            if not self._params:
                raise ValueError(
                    f"{self._name}: the search space {space!r} has no parameter to search. Give the Tuner a "
                    "`param_space` with tune.uniform/randint/choice/... domains, or pass a `space` to the searcher."
                )
            self._check_params(self._params)
            self._constants = _constants_of(space, self._params) or None
            self._nested = any(len(p.path) != 1 for p in self._params)
            self._float_bounds = (
                None if self._nested or not all(p._plain_float for p in self._params)
                else tuple((p.name, p.low, p.high) for p in self._params)
            )
        elif self._is_native_space(space):
            self._native_space = self._check_native_space(space)
        else:
            raise TypeError(
                f"{self._name}: `space` must be a Tune search space (a dict of tune.uniform/choice/... domains) "
                f"or {self._native_space_description()}, got {type(space).__name__} {space!r}."
            )

    @property
    def _has_space(self) -> bool:
        return self._params is not None or self._native_space is not None

    # -- hooks for the integrations ----------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        """Whether ``space`` is a search space in the library's own format."""
        return False

    def _native_space_description(self) -> str:
        return "a search space of the library"

    def _check_native_space(self, space: Any) -> Any:
        """Validates (and may convert) a native space; returns what to keep."""
        return space

    def _check_params(self, params: list[Param]) -> None:
        """Rejects parameters the library cannot take (raise ``unsupported(...)``)."""

    def _build(self) -> None:
        """Creates the library's optimiser from ``self._params`` or ``self._native_space``."""
        raise NotImplementedError

    def _ask(self, trial_id: str) -> tuple[Any, dict] | None:
        """Asks the library for a configuration: ``(handle, {name: library value})``, or None for not now."""
        raise NotImplementedError

    def _ask_point(self, trial_id: str, point: dict) -> Any:
        """Starts a given point (``points_to_evaluate``); returns a handle, or None to observe it at the end."""
        return None

    def _tell(self, trial_id: str, handle: Any, params: dict, value: Any, error: bool, intermediate: list) -> None:
        """Reports a trial's final value to the library.

        ``value`` is None when the trial failed (``error``) or ended without
        reporting the metric; ``intermediate`` lists its ``(step, value)`` results.
        """
        raise NotImplementedError

    def _observe(self, params: dict, value: Any, error: bool, pruned: bool, intermediate: list) -> None:
        """Adds a point evaluated elsewhere (warm start) to the library."""
        raise NotImplementedError(f"{self._name} cannot add evaluated points.")

    # -- searcher API -----------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        """Takes metric, mode and (if the searcher has no space yet) the Tuner's ``param_space``.

        Raises ValueError when the searcher and ``TuneConfig`` name different
        metrics or modes.
        """
        self._validate_metric_mode(metric, mode)
        self._last_suggested = False  # a new run asks for configurations again
        for what, mine, theirs in (("metric", self._metric, metric), ("mode", self._mode, mode)):
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(
                    f"{self._name} was created with {what}={mine!r}, but TuneConfig has {what}={theirs!r}. "
                    f"Set `{what}` in one place only (on the searcher or in tune.TuneConfig)."
                )
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        if self._params is not None and isinstance(config, dict) and has_unresolved_values(config):
            # The searcher already has this very space (given to it as well, or restored from a
            # checkpoint): taking it again is fine.
            if self._same_space(config):
                self._maybe_build()
                return True
        if self._ready and self._has_space:
            return False
        if self._has_space:
            self._maybe_build()
            return False
        if not isinstance(config, dict):
            return False
        self._take_space(config)
        self._maybe_build()
        return True

    def _same_space(self, config: dict) -> bool:
        try:
            other = parse_space(config, self._name, allow_normal=self._allow_normal,
                                allow_object_choices=self._allow_object_choices)
        except ValueError:
            return False
        return [(p.name, repr(p.domain)) for p in other] == [(p.name, repr(p.domain)) for p in self._params]

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """The searcher limits concurrency itself (and, when seeded, orders results by it)."""
        self._max_concurrent = int(max_concurrent)
        return True

    def _maybe_build(self) -> None:
        if self._ready or not self._has_space:
            return
        if self._metric is None and self._mode is not None:
            from tunesmith.tune.result import DEFAULT_METRIC

            self._metric = DEFAULT_METRIC
        if self._metric is None or self._mode is None:
            return
        self._build()
        self._ready = True
        if self._evaluated_rewards is not None:
            points, rewards = self._points_to_evaluate, self._evaluated_rewards
            self._points_to_evaluate, self._evaluated_rewards = [], None
            for point, reward in zip(points, rewards):
                self.add_evaluated_point(point, reward)
        pending, self._pending_evaluations = self._pending_evaluations, []
        for args in pending:
            self._add_point(*args)

    @property
    def _deterministic(self) -> bool:
        return self._seed is not None and self._max_concurrent > 0 and not self._last_suggested

    def _on_last_suggestion(self) -> None:
        """No configuration will be asked for in this run: results need not wait for their turn."""
        self._last_suggested = True
        self._flush_all()

    def suggest(self, trial_id: str) -> dict | None:
        if not self._ready:
            if not self._has_space:
                raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=self._name, space=self._space_argument))
            self._maybe_build()
            if self._metric is None or self._mode is None:
                raise RuntimeError(UNDEFINED_METRIC_MODE.format(cls=self._name, metric=self._metric, mode=self._mode))
        if trial_id in self._live:
            return self._suggestion_of(self._live[trial_id])
        if self._max_concurrent and len(self._live) >= self._max_concurrent:
            return None
        deterministic = self._deterministic
        if deterministic:
            # Suggestion k sees exactly the results of trials 0 .. k - max_concurrent - 1.
            needed = self._num_suggested - self._max_concurrent
            if needed > self._num_told:
                if any(i not in self._finished_buffer for i in range(self._num_told, needed)):
                    return None
                self._flush(needed)
        if self._points_to_evaluate:
            point = self._points_to_evaluate[0]
            encoded = self._encode_point(point, "points_to_evaluate")
            handle = self._ask_point(trial_id, encoded)
            self._points_to_evaluate.pop(0)
            live = _Live(self._num_suggested, handle, encoded)
        else:
            asked = self._ask(trial_id)
            while asked is None and deterministic and self._num_told < self._num_suggested:
                # The library waits for results: hand it the next one in suggestion order, when it is in.
                if self._num_told not in self._finished_buffer:
                    return None
                self._flush(self._num_told + 1)
                asked = self._ask(trial_id)
            if asked is None or isinstance(asked, str):
                return asked  # not now, or Searcher.FINISHED
            handle, raw = asked
            live = _Live(self._num_suggested, handle, dict(raw))
        self._num_suggested += 1
        self._live[trial_id] = live
        return self._suggestion_of(live)

    def _suggestion_of(self, live: _Live) -> dict:
        values = self._searched_values(live)
        if self._constants:
            # The fixed values of the searcher's own space come with each suggestion (as on Ray's
            # HyperOptSearch): a trainable run with no param_space finds them in its config.
            values = deep_update(copy.deepcopy(self._constants), values)
        return values

    def _searched_values(self, live: _Live) -> dict:
        params = self._params
        if params is None:
            return unflatten_dict(copy.deepcopy(live.params))
        raw = live.params
        bounds = self._float_bounds
        if bounds is not None and len(raw) == len(bounds):
            # Every parameter a bounded float at the top level: Param.decode, inlined (once a trial).
            values = {}
            for name, low, high in bounds:
                value = float(raw[name])
                values[name] = low if value < low else high if value > high else value
            return values
        values = {p.name: p.decode(raw[p.name]) for p in params if p.name in raw}
        # Names hold "/" only for nested spaces; a flat one needs no unflattening.
        return unflatten_dict(values) if self._nested else values

    def _encode_point(self, point: dict, what: str) -> dict:
        """A point of Tune values (nested or flattened with ``/``) as flat library values.

        Only the searched parameters are read; constants are ignored.
        """
        if self._params is None:
            return flatten_dict(point)
        out = {}
        missing = object()
        for p in self._params:
            value = point.get(p.name, missing)
            if value is missing:
                node: Any = point
                for part in p.path:
                    node = node.get(part, missing) if isinstance(node, dict) else missing
                    if node is missing:
                        break
                value = node
            if value is missing:
                raise ValueError(f"{self._name}: a point in `{what}` has no value for parameter {p.name!r}: {point!r}.")
            if not p.contains(value):
                raise ValueError(
                    f"{self._name}: the value {value!r} of parameter {p.name!r} in `{what}` is outside its "
                    f"domain {describe_domain(p.domain)}."
                )
            out[p.name] = p.encode(value)
        return out

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._uses_intermediate:
            return
        live = self._live.get(trial_id)
        if live is not None:
            self._note_intermediate(live, result, final=False)

    def _note_intermediate(self, live: _Live, result: dict, final: bool) -> None:
        if isinstance(self._metric, list):
            return
        value = result.get(self._metric)
        if _finite_number(value):
            step = int(result.get(_TRAINING_ITERATION, len(live.intermediate) + 1))
            if not final or not live.intermediate or live.intermediate[-1][0] < step:
                live.intermediate.append((step, float(value)))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        live = self._live.pop(trial_id, None)
        if live is None:
            self._complete_unknown(result, error)
            return
        if self._uses_intermediate and result and not error:
            # The result a trial ended at comes here only (not to on_trial_result): it is the last step.
            self._note_intermediate(live, result, final=True)
        if self._deterministic:
            self._finished_buffer[live.index] = (trial_id, live, result, error)
            return
        self._tell_live(trial_id, live, result, error)

    def _complete_unknown(self, result: dict | None, error: bool) -> None:
        # A trial restarted after a restore, or one this searcher did not suggest: keep its result.
        if not result or error or not isinstance(result.get("config"), dict) or not self._ready:
            return
        value = self._value_of(result)
        if value is None:
            return
        try:
            self.add_evaluated_point(result["config"], value)
        except Exception as exc:  # noqa: BLE001 - a foreign config must not stop the run
            logger.debug("%s: could not add the result of an unknown trial: %s", self._name, exc)

    def _flush_all(self) -> None:
        """Tells the library every held-back result, in suggestion order."""
        for index in sorted(self._finished_buffer):
            trial_id, live, result, error = self._finished_buffer.pop(index)
            self._tell_live(trial_id, live, result, error)
        self._num_told = self._num_suggested

    def _flush(self, upto: int) -> None:
        while self._num_told < upto and self._num_told in self._finished_buffer:
            trial_id, live, result, error = self._finished_buffer.pop(self._num_told)
            self._num_told += 1
            self._tell_live(trial_id, live, result, error)

    def _value_of(self, result: dict | None) -> Any:
        if not result:
            return None
        if isinstance(self._metric, list):
            values = [result.get(m) for m in self._metric]
            return values if all(_finite_number(v) for v in values) else None
        value = result.get(self._metric)
        return float(value) if _finite_number(value) else None

    def _tell_live(self, trial_id: str, live: _Live, result: dict | None, error: bool) -> None:
        value = None if error else self._value_of(result)
        if live.handle is None:
            if value is not None:
                self._observe(live.params, value, False, False, live.intermediate)
            return
        self._tell(trial_id, live.handle, live.params, value, error, live.intermediate)

    # -- warm start ---------------------------------------------------------------
    def add_evaluated_point(
        self,
        parameters: dict,
        value: Any,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Tells the searcher about a configuration evaluated elsewhere.

        Points given before the search space is known (before ``Tuner.fit()``
        passes ``param_space``) are kept and added when it is. Only the
        searched parameters are read from ``parameters``; constants are ignored.

        Args:
            parameters: The configuration (nested or flattened with ``/``).
            value: Its metric value (a list for multi-objective search).
            error: Whether the evaluation failed.
            pruned: Whether it was stopped early.
            intermediate_values: Its metric per iteration, if known.
        """
        if not isinstance(parameters, dict):
            raise TypeError(f"{self._name}.add_evaluated_point: `parameters` must be a dict, got {parameters!r}.")
        args = (copy.deepcopy(parameters), value, bool(error), bool(pruned), list(intermediate_values or []))
        if not self._ready:
            self._pending_evaluations.append(args)
            return
        self._add_point(*args)

    def _add_point(self, flat: dict, value: Any, error: bool, pruned: bool, intermediate: list) -> bool:
        try:
            encoded = self._encode_point(flat, "add_evaluated_point")
        except ValueError as exc:
            logger.warning("%s: skipping an evaluated point that does not fit the search space: %s", self._name, exc)
            return False
        if not error and value is None:
            error = True
        if value is not None and not error:
            if isinstance(self._metric, list):
                value = [float(v) for v in value]
            else:
                value = float(value)
        steps = [(i + 1, float(v)) for i, v in enumerate(intermediate)]
        self._observe(encoded, value, error, pruned, steps)
        return True

    # -- helpers for subclasses --------------------------------------------------
    def _sign(self, mode: str | None = None) -> float:
        """+1 for "min" and -1 for "max": multiply to get a value to minimise."""
        return -1.0 if (mode or self._mode) == "max" else 1.0

    def _require(self, module: str) -> Any:
        return import_library(module, self._name, self._extra, self._pip_name, self._install_hint)


class GlobalRandomState:
    """Seeds the global ``numpy.random`` (and ``random``) generators for a library that uses them.

    Some libraries (ZOOpt, HpBandSter, parts of HEBO) draw from the global
    generators. With a seed, every call into such a library is preceded by
    :meth:`reseed`, which seeds the global generators from the searcher's
    seed and a counter, so the library repeats itself run after run whatever
    else used the global generators in between. The counter moves on only
    through :meth:`advance`, which the searcher calls once a call did its
    work (a suggestion was made): how often the driver asks while the library
    has nothing to give (it depends on when results arrive) does not change
    what it later suggests. The counter travels with the searcher's saved
    state. Without a seed it does nothing.

    (Saving and restoring the global state around each call instead would
    cost more than the whole step of the fast libraries: ~80 us against ~3 us
    for ``numpy.random.seed``.)

    Args:
        seed: The searcher's seed, or None.

    Example:
        >>> import random
        >>> a, b = GlobalRandomState(0), GlobalRandomState(0)
        >>> with a.active():
        ...     x = random.random()
        >>> with b.active():
        ...     y = random.random()
        >>> x == y
        True
    """

    def __init__(self, seed: int | None = None):
        self._seed = seed
        self._count = 0

    def reseed(self) -> None:
        """Seeds the global generators for the next call (the same value until :meth:`advance`)."""
        if self._seed is None:
            return
        # Distinct per (seed, count); MT19937's seeding scrambles the bits.
        value = (self._seed * 0x9E3779B1 + self._count * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
        import random

        import numpy as np

        np.random.seed(value)
        random.seed(value)

    def advance(self) -> None:
        """Moves to the next value: the last call into the library did its work."""
        self._count += 1

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Reseeds, then advances: for calls that always do their work."""
        self.reseed()
        self._count += 1
        yield


_NUMPY_VIEWS: dict = {}


def private_numpy_random(package: str) -> Any:
    """A copy of the ``numpy`` module namespace that the modules of ``package`` use as ``np``.

    Its ``random`` attribute is ``numpy.random`` until a searcher sets it to its
    own ``numpy.random.RandomState`` for the length of a call into the library
    (and back in a ``finally``): a library written against the global
    generator (``np.random.uniform(...)``) then draws from the searcher's
    private one, so a seeded search repeats itself whatever else uses the
    global generator, the user's global state is left alone, and a call costs
    two attribute assignments instead of a reseed. Modules of ``package``
    imported since the last call are switched over too.

    Example:
        >>> import numpy as np
        >>> view = private_numpy_random("json")  # a package with no `np`: nothing to switch
        >>> view.random is np.random and view.pi == np.pi
        True
    """
    import sys
    import types

    import numpy as np

    view = _NUMPY_VIEWS.get(package)
    if view is None:
        view = types.ModuleType(np.__name__)
        view.__dict__.update(np.__dict__)
        view.global_random = np.random
        _NUMPY_VIEWS[package] = view
    prefix = package + "."
    for name, module in list(sys.modules.items()):
        if (name == package or name.startswith(prefix)) and getattr(module, "np", None) is np:
            module.np = view
    return view


def call_with_supported_kwargs(func: Callable, **kwargs: Any) -> Any:
    """Calls ``func`` with the keyword arguments its signature accepts."""
    import inspect

    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return func(**kwargs)
    return func(**{k: v for k, v in kwargs.items() if k in params})
