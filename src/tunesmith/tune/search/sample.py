"""Search space primitives: domains, samplers and the ``tune.*`` sampling functions.

A *domain* describes the values a hyperparameter may take (a float or integer
range, a list of categories, or a user function); a *sampler* describes how
values are drawn from it (uniformly, log-uniformly, normally, quantized).
Search algorithms read both to translate a Tune search space into their own.

Example:
    >>> from tunesmith import tune
    >>> space = {
    ...     "lr": tune.loguniform(1e-4, 1e-1),
    ...     "layers": tune.randint(1, 5),
    ...     "act": tune.choice(["relu", "tanh"]),
    ...     "batch": tune.grid_search([32, 64]),
    ... }
    >>> 1 <= space["layers"].sample(random_state=0) < 5
    True
"""
from __future__ import annotations

import copy as _copy
import inspect
import math
import numbers
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Domain",
    "Float",
    "Integer",
    "Categorical",
    "Function",
    "Sampler",
    "BaseSampler",
    "Uniform",
    "LogUniform",
    "Normal",
    "Grid",
    "Quantized",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "randn",
    "qrandn",
    "randint",
    "qrandint",
    "lograndint",
    "qlograndint",
    "choice",
    "sample_from",
    "grid_search",
    "is_grid_search",
]

RandomState = Any  # int, numpy Generator, numpy RandomState or None


# ---------------------------------------------------------------------------
# random number generators


class LazyRandomState:
    """A random source made on first use, so that a space of grid values alone never imports numpy.

    ``as_numpy_rng`` accepts it like the ``random_state`` it wraps; the source
    it makes is kept, so a seeded stream continues across calls.
    """

    def __init__(self, random_state: RandomState = None):
        seed_like = isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
        if random_state is not None and not seed_like:
            as_numpy_rng(random_state)  # raises now for a bad seed
        self.random_state = random_state
        self._rng: Any = None

    def get(self) -> Any:
        if self._rng is None:
            self._rng = as_numpy_rng(self.random_state)
        return self._rng


def as_numpy_rng(random_state: RandomState = None) -> Any:
    """Returns a numpy random source for ``random_state``.

    ``None`` uses numpy's global state (so ``np.random.seed`` makes sampling
    reproducible), an int seeds a new ``numpy.random.Generator``, and a
    ``Generator`` or ``RandomState`` is used as given.
    """
    if isinstance(random_state, LazyRandomState):
        return random_state.get()
    import numpy as np  # imported when sampling, not with tunesmith.tune

    if random_state is None or random_state is np.random:
        return np.random
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state))
    raise ValueError(
        "`random_state` must be None, an int seed, a numpy.random.Generator or a "
        f"numpy.random.RandomState; got {random_state!r}."
    )


def _integers(rng: Any, low: int, high: int, size: int) -> Any:
    """Integers in ``[low, high)`` from either numpy random API (a list or an array of ``size``)."""
    import numpy as np  # imported when sampling, not with tunesmith.tune

    # One value is drawn as a scalar: the same draw from the stream, without an array (numpy's
    # sized integer draw costs several times the scalar one; a trial's config samples one).
    if isinstance(rng, np.random.Generator):
        return [rng.integers(low, high)] if size == 1 else rng.integers(low, high, size=size)
    return [rng.randint(low, high)] if size == 1 else rng.randint(low, high, size=size)


# ---------------------------------------------------------------------------
# validation helpers


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_number(func: str, name: str, value: Any) -> float:
    if not _is_number(value) or math.isnan(value):
        raise ValueError(f"{func}: `{name}` must be a number, got {value!r}.")
    return value


def _check_int(func: str, name: str, value: Any) -> int:
    if _is_int(value):
        return int(value)
    if _is_number(value) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{func}: `{name}` must be an integer, got {value!r}.")


def _check_log_lower(name: str, lower: float) -> None:
    if not lower > 0:
        raise ValueError(f"{name}: `lower` must be > 0 for log sampling, got {lower!r}.")


def _check_bounds(func: str, lower: float, upper: float) -> None:
    if not lower < upper:
        raise ValueError(f"{func}: `lower` must be less than `upper`, got lower={lower!r}, upper={upper!r}.")


def _check_base(func: str, base: Any) -> float:
    _check_number(func, "base", base)
    if base <= 0 or base == 1:
        raise ValueError(f"{func}: `base` must be > 0 and != 1, got {base!r}.")
    return base


def _decimals(q: float) -> int:
    """Decimal places of ``q`` as written, to strip float noise from multiples of it."""
    exponent = Decimal(repr(float(q))).normalize().as_tuple().exponent
    return max(0, min(-int(exponent), 17))


# ---------------------------------------------------------------------------
# samplers


class Sampler:
    """Draws values from a :class:`Domain`."""

    def sample(self, domain: "Domain", spec: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
        raise NotImplementedError


class BaseSampler(Sampler):
    """A sampler that draws from the domain directly (not a wrapper)."""

    def __str__(self) -> str:
        return type(self).__name__


class Uniform(BaseSampler):
    """Uniform sampling over a range or over the categories."""

    def sample(self, domain, spec=None, size=1, random_state=None):
        rng = as_numpy_rng(random_state)
        if isinstance(domain, Categorical):
            idx = _integers(rng, 0, len(domain.categories), size)
            return [domain.categories[int(i)] for i in idx]
        if isinstance(domain, Integer):
            return _integers(rng, domain.lower, domain.upper, size)
        if size == 1:
            return [rng.uniform(domain.lower, domain.upper)]
        return rng.uniform(domain.lower, domain.upper, size=size)


class LogUniform(BaseSampler):
    """Uniform sampling in log space with the given ``base``."""

    def __init__(self, base: float = 10):
        self.base = base

    def _draw(self, lower, upper, size, rng):
        import numpy as np  # imported when sampling, not with tunesmith.tune


        log_base = math.log(self.base)
        low, high = math.log(lower) / log_base, math.log(upper) / log_base
        return np.power(self.base, rng.uniform(low, high, size=size))

    def sample(self, domain, spec=None, size=1, random_state=None):
        import numpy as np  # imported when sampling, not with tunesmith.tune


        rng = as_numpy_rng(random_state)
        values = self._draw(domain.lower, domain.upper, size, rng)
        if isinstance(domain, Integer):
            # upper is exclusive for integers
            return np.clip(np.floor(values), domain.lower, domain.upper - 1).astype(np.int64)
        return np.clip(values, domain.lower, domain.upper)

    def __str__(self) -> str:
        return f"LogUniform(base={self.base})"


class Normal(BaseSampler):
    """Normal sampling with ``mean`` and standard deviation ``sd``."""

    def __init__(self, mean: float = 0.0, sd: float = 1.0):
        self.mean = mean
        self.sd = sd

    def sample(self, domain, spec=None, size=1, random_state=None):
        rng = as_numpy_rng(random_state)
        return rng.normal(self.mean, self.sd, size=size)

    def __str__(self) -> str:
        return f"Normal(mean={self.mean}, sd={self.sd})"


class Grid(Sampler):
    """Marks a categorical domain as a grid: every value is tried, none is sampled."""

    def sample(self, domain, spec=None, size=1, random_state=None):
        return Uniform().sample(domain, spec, size, random_state)

    def __str__(self) -> str:
        return "Grid"


def quantized_steps(lower: float, upper: float, q: float) -> tuple[float, float]:
    """The first and the last ``k`` with ``k * q`` in ``[lower, upper]`` (infinite for an open end).

    A bound that is a multiple of ``q`` up to floating-point error is one (``0.7 / 0.1`` is
    ``6.999...``): it can be sampled, as on Ray.

    Example:
        >>> quantized_steps(0.1, 0.7, 0.1), quantized_steps(0.05, 0.33, 0.1)
        ((1, 7), (1, 3))
    """
    def step(bound: float, rounding) -> float:
        if not math.isfinite(bound):
            return bound
        ratio = bound / q
        nearest = round(ratio)
        return nearest if math.isclose(ratio, nearest, rel_tol=1e-9, abs_tol=1e-9) else rounding(ratio)

    return step(lower, math.ceil), step(upper, math.floor)


class Quantized(Sampler):
    """Rounds the values of ``sampler`` to multiples of ``q``.

    Values stay within the multiples of ``q`` that lie in the domain's bounds,
    and for integer domains the upper bound becomes inclusive.
    """

    def __init__(self, sampler: Sampler, q: float):
        self.sampler = sampler
        self.q = q

    def get_sampler(self) -> Sampler:
        return self.sampler

    def _bounds(self, domain) -> tuple[float, float]:
        return quantized_steps(domain.lower, domain.upper, self.q)

    def sample(self, domain, spec=None, size=1, random_state=None):
        import numpy as np  # imported when sampling, not with tunesmith.tune


        rng = as_numpy_rng(random_state)
        q = self.q
        low, high = self._bounds(domain)
        if isinstance(domain, Integer) and isinstance(self.sampler, Uniform):
            # Every multiple of q in [lower, upper] equally likely.
            return [int(k) * int(q) for k in _integers(rng, int(low), int(high) + 1, size)]
        if isinstance(domain, Integer) and isinstance(self.sampler, LogUniform) and low > 0:
            # Log-uniform over the multiples' indices (as Ray): each multiple is less likely than the one below.
            top = high + (0 if q == 1 else 1)
            ks = np.floor(np.exp(rng.uniform(math.log(low), math.log(top), size=size)))
            return (np.clip(ks, low, high) * int(q)).astype(np.int64)
        if isinstance(self.sampler, LogUniform):
            values = self.sampler._draw(domain.lower, domain.upper, size, rng)
        else:
            values = self.sampler.sample(domain, spec, size, rng)
        ks = np.clip(np.round(np.asarray(values, dtype=float) / q), low, high)
        if isinstance(domain, Integer):
            return (ks * int(q)).astype(np.int64)
        return np.round(ks * q, _decimals(q))

    def __str__(self) -> str:
        return f"Quantized({self.sampler}, q={self.q})"


# ---------------------------------------------------------------------------
# domains


class Domain:
    """Base class of a hyperparameter's set of values.

    A domain holds a sampler; :meth:`sample` draws values with it. Builder
    methods (``uniform()``, ``loguniform()``, ``quantized(q)``, ...) set the
    sampler and return the domain, so ``Float(0, 1).uniform().quantized(0.1)``
    reads like ``tune.quniform(0, 1, 0.1)``.

    Example:
        >>> Float(0.0, 1.0).uniform().sample(random_state=1) < 1.0
        True
    """

    sampler: Sampler | None = None
    default_sampler_cls: type | None = None

    def cast(self, value: Any) -> Any:
        return value

    def set_sampler(self, sampler: Sampler, allow_override: bool = False) -> "Domain":
        if self.sampler is not None and not allow_override:
            raise ValueError(
                f"You can only choose one sampler for a parameter domain; {self} already uses "
                f"{self.sampler} and was asked to use {sampler}."
            )
        self.sampler = sampler
        return self

    def get_sampler(self) -> Sampler:
        sampler = self.sampler
        if sampler is None:
            sampler = self.default_sampler_cls()
        return sampler

    def sample(self, config: Any = None, size: int = 1, random_state: RandomState = None, *,
               spec: Any = None) -> Any:
        """Draws ``size`` values (one value, not a list, when ``size`` is 1).

        Args:
            config: The trial's other, already resolved values (what a ``tune.sample_from``
                function reads); a plain dict or the spec the variant generator passes.
            size: How many values.
            random_state: Seed, numpy Generator or RandomState.
            spec: The older name of ``config``.
        """
        if not _is_int(size) or size < 1:
            raise ValueError(f"`size` must be a positive integer, got {size!r}.")
        if spec is None:
            spec = config
        values = self.get_sampler().sample(self, spec=spec, size=size, random_state=random_state)
        items = [self.cast(v) for v in values]
        return items[0] if size == 1 else items

    def is_grid(self) -> bool:
        return isinstance(self.sampler, Grid)

    def is_function(self) -> bool:
        return False

    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` lies in this domain."""
        raise NotImplementedError

    @property
    def domain_str(self) -> str:
        return "(unknown)"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.domain_str}, sampler={self.get_sampler()})"


class Float(Domain):
    """Real values in ``[lower, upper]`` (``None`` for an unbounded side).

    Args:
        lower: Lower bound, or None for no bound.
        upper: Upper bound, or None for no bound.

    Example:
        >>> Float(1e-4, 1e-1).loguniform().sample(random_state=0) > 0
        True
    """

    default_sampler_cls = Uniform

    def __init__(self, lower: float | None, upper: float | None):
        self.lower = -math.inf if lower is None else _check_number("Float", "lower", lower)
        self.upper = math.inf if upper is None else _check_number("Float", "upper", upper)
        if lower is not None and upper is not None:
            _check_bounds("Float", self.lower, self.upper)

    def cast(self, value):
        return float(value)

    def uniform(self) -> "Float":
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(
                f"uniform: needs finite `lower` and `upper` bounds, got lower={self.lower}, upper={self.upper}."
            )
        return _copy.copy(self).set_sampler(Uniform())

    def loguniform(self, base: float = 10) -> "Float":
        _check_base("loguniform", base)
        _check_log_lower("loguniform", self.lower)
        if not math.isfinite(self.upper):
            raise ValueError(f"loguniform: `upper` must be finite, got {self.upper!r}.")
        return _copy.copy(self).set_sampler(LogUniform(base))

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> "Float":
        _check_number("randn", "mean", mean)
        _check_number("randn", "sd", sd)
        if not sd > 0:
            raise ValueError(f"randn: `sd` must be > 0, got {sd!r}.")
        if math.isfinite(self.lower) or math.isfinite(self.upper):
            raise ValueError("randn: normal sampling does not allow `lower`/`upper` bounds; use Float(None, None).")
        return _copy.copy(self).set_sampler(Normal(mean, sd))

    def quantized(self, q: float) -> "Float":
        _check_number("quantized", "q", q)
        if not q > 0:
            raise ValueError(f"quantized: `q` must be > 0, got {q!r}.")
        # As Ray does: a bound that is not a multiple of q could be rounded out of the domain.
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            if math.isfinite(bound) and not math.isclose(bound / q, round(bound / q)):
                raise ValueError(
                    f"quantized: the {name} bound {bound!r} is not divisible by the quantization "
                    f"factor q={q!r}. Choose bounds that are multiples of q."
                )
        inner = self.get_sampler()
        return _copy.copy(self).set_sampler(Quantized(inner, q), allow_override=True)

    def is_valid(self, value) -> bool:
        return _is_number(value) and self.lower <= value <= self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    """Integers in ``[lower, upper)`` (quantized sampling makes ``upper`` inclusive).

    Args:
        lower: Lower bound, inclusive.
        upper: Upper bound, exclusive.

    Example:
        >>> Integer(0, 10).uniform().sample(random_state=0) in range(10)
        True
    """

    default_sampler_cls = Uniform

    def __init__(self, lower: int, upper: int):
        self.lower = _check_int("Integer", "lower", lower)
        self.upper = _check_int("Integer", "upper", upper)
        _check_bounds("Integer", self.lower, self.upper)

    def cast(self, value):
        return int(value)

    def uniform(self) -> "Integer":
        return _copy.copy(self).set_sampler(Uniform())

    def loguniform(self, base: float = 10) -> "Integer":
        _check_base("lograndint", base)
        _check_log_lower("lograndint", self.lower)
        return _copy.copy(self).set_sampler(LogUniform(base))

    def quantized(self, q: int) -> "Integer":
        if not _is_int(q) or q <= 0:
            raise ValueError(f"quantized: `q` must be a positive integer for an integer domain, got {q!r}.")
        if math.ceil(self.lower / q) > math.floor(self.upper / q):
            raise ValueError(
                f"quantized: no multiple of `q`={q!r} lies in [lower={self.lower!r}, upper={self.upper!r}]."
            )
        inner = self.get_sampler()
        return _copy.copy(self).set_sampler(Quantized(inner, int(q)), allow_override=True)

    def is_valid(self, value) -> bool:
        if not _is_number(value) or not float(value).is_integer():
            return False
        upper_ok = value <= self.upper if isinstance(self.sampler, Quantized) else value < self.upper
        return self.lower <= value and upper_ok

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Categorical(Domain):
    """One of a list of values.

    Args:
        categories: The values; any objects, kept as given.

    Example:
        >>> Categorical(["a", "b"]).uniform().sample(random_state=0) in ("a", "b")
        True
    """

    default_sampler_cls = Uniform

    def __init__(self, categories: Sequence):
        if isinstance(categories, (str, bytes, dict)) or not hasattr(categories, "__iter__"):
            raise ValueError(
                f"choice: `categories` must be a list of values, got {type(categories).__name__} {categories!r}."
            )
        self.categories = list(categories)
        if not self.categories:
            raise ValueError("choice: `categories` must not be empty.")

    def uniform(self) -> "Categorical":
        return _copy.copy(self).set_sampler(Uniform())

    def grid(self) -> "Categorical":
        return _copy.copy(self).set_sampler(Grid())

    def __len__(self) -> int:
        return len(self.categories)

    def __getitem__(self, index: int) -> Any:
        return self.categories[index]

    def is_valid(self, value) -> bool:
        return any(value is c or _safe_eq(value, c) for c in self.categories)

    @property
    def domain_str(self) -> str:
        return f"{self.categories}"


def _safe_eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


class _FunctionSampler(BaseSampler):
    def sample(self, domain, spec=None, size=1, random_state=None):
        if spec is None or isinstance(spec, dict):
            from tunesmith.tune.search.variant_generator import make_spec

            spec = make_spec(spec if spec is not None else {})
        call = domain.func
        return [call(spec) if domain.pass_spec else call() for _ in range(size)]


class Function(Domain):
    """Values computed by a user function, called once per trial.

    The function takes either no argument or one argument that gives
    (attribute or item) access to the trial's other, already resolved values:
    directly (``config["x"]``, ``config.x``) or through the older
    ``spec.config.x``.

    Args:
        func: The function.

    Example:
        >>> Function(lambda spec: 3).sample()
        3
    """

    default_sampler_cls = _FunctionSampler

    def __init__(self, func: Callable):
        if not callable(func):
            raise ValueError(f"sample_from: `func` must be callable, got {type(func).__name__} {func!r}.")
        self.func = func
        self.pass_spec = self._takes_spec(func)

    @staticmethod
    def _takes_spec(func: Callable) -> bool:
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            return True
        try:
            sig.bind(None)
            return True
        except TypeError:
            pass
        try:
            sig.bind()
            return False
        except TypeError:
            raise ValueError(
                f"sample_from: `func` must accept no argument or one `spec` argument; {func!r} has signature {sig}."
            ) from None

    def is_function(self) -> bool:
        return True

    def is_valid(self, value) -> bool:
        return True

    @property
    def domain_str(self) -> str:
        return f"{getattr(self.func, '__qualname__', self.func)}()"


# ---------------------------------------------------------------------------
# the tune.* functions


def uniform(lower: float, upper: float) -> Float:
    """A float sampled uniformly between ``lower`` and ``upper``.

    Example:
        >>> -5 <= uniform(-5, -1).sample(random_state=0) <= -1
        True
    """
    lower = _check_number("uniform", "lower", lower)
    upper = _check_number("uniform", "upper", upper)
    _check_bounds("uniform", lower, upper)
    return Float(lower, upper).uniform()


def quniform(lower: float, upper: float, q: float) -> Float:
    """A float sampled uniformly between ``lower`` and ``upper``, rounded to a multiple of ``q``.

    Example:
        >>> round(quniform(3.2, 5.4, 0.2).sample(random_state=0) / 0.2, 9).is_integer()
        True
    """
    lower = _check_number("quniform", "lower", lower)
    upper = _check_number("quniform", "upper", upper)
    _check_bounds("quniform", lower, upper)
    _check_q("quniform", q)
    return Float(lower, upper).uniform().quantized(q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float sampled uniformly in log space between ``lower`` (> 0) and ``upper``.

    Example:
        >>> 1e-4 <= loguniform(1e-4, 1e-2).sample(random_state=0) <= 1e-2
        True
    """
    lower = _check_number("loguniform", "lower", lower)
    upper = _check_number("loguniform", "upper", upper)
    _check_log_lower("loguniform", lower)
    _check_bounds("loguniform", lower, upper)
    return Float(lower, upper).loguniform(base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """Like :func:`loguniform`, rounded to a multiple of ``q``.

    Example:
        >>> qloguniform(1e-4, 1e-1, 5e-5).sample(random_state=0) >= 1e-4
        True
    """
    lower = _check_number("qloguniform", "lower", lower)
    upper = _check_number("qloguniform", "upper", upper)
    _check_log_lower("qloguniform", lower)
    _check_bounds("qloguniform", lower, upper)
    _check_q("qloguniform", q)
    return Float(lower, upper).loguniform(base).quantized(q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float sampled from a normal distribution.

    Example:
        >>> isinstance(randn(10, 2).sample(random_state=0), float)
        True
    """
    return Float(None, None).normal(mean, sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """Like :func:`randn`, rounded to a multiple of ``q``.

    Example:
        >>> round(qrandn(10, 2, 0.5).sample(random_state=0) / 0.5, 9).is_integer()
        True
    """
    _check_q("qrandn", q)
    return Float(None, None).normal(mean, sd).quantized(q)


def randint(lower: int, upper: int) -> Integer:
    """An integer sampled uniformly from ``lower`` (inclusive) to ``upper`` (exclusive).

    Example:
        >>> randint(-9, 15).sample(random_state=0) in range(-9, 15)
        True
    """
    lower = _check_int("randint", "lower", lower)
    upper = _check_int("randint", "upper", upper)
    _check_bounds("randint", lower, upper)
    return Integer(lower, upper).uniform()


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A multiple of ``q`` sampled uniformly from ``lower`` to ``upper``, both inclusive.

    With ``q=1`` this is :func:`randint` (``upper`` exclusive).

    Example:
        >>> qrandint(-21, 12, 3).sample(random_state=0) % 3
        0
    """
    lower = _check_int("qrandint", "lower", lower)
    upper = _check_int("qrandint", "upper", upper)
    _check_bounds("qrandint", lower, upper)
    q = _check_int_q("qrandint", q)
    if q == 1:
        return Integer(lower, upper).uniform()
    return Integer(lower, upper).uniform().quantized(q)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An integer sampled in log space from ``lower`` (inclusive, > 0) to ``upper`` (exclusive).

    Example:
        >>> lograndint(1, 10).sample(random_state=0) in range(1, 10)
        True
    """
    lower = _check_int("lograndint", "lower", lower)
    upper = _check_int("lograndint", "upper", upper)
    _check_log_lower("lograndint", lower)
    _check_bounds("lograndint", lower, upper)
    return Integer(lower, upper).loguniform(base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """A multiple of ``q`` sampled in log space from ``lower`` to ``upper``, both inclusive.

    With ``q=1`` this is :func:`lograndint` (``upper`` exclusive).

    Example:
        >>> qlograndint(1, 10, 2).sample(random_state=0) % 2
        0
    """
    lower = _check_int("qlograndint", "lower", lower)
    upper = _check_int("qlograndint", "upper", upper)
    _check_log_lower("qlograndint", lower)
    _check_bounds("qlograndint", lower, upper)
    q = _check_int_q("qlograndint", q)
    if q == 1:
        return Integer(lower, upper).loguniform(base)
    return Integer(lower, upper).loguniform(base).quantized(q)


def choice(categories: Sequence) -> Categorical:
    """One of ``categories``, sampled uniformly.

    Example:
        >>> choice(["a", "b", "c"]).sample(random_state=0) in ("a", "b", "c")
        True
    """
    return Categorical(categories).uniform()


def sample_from(func: Callable) -> Function:
    """A value computed by ``func(config)`` for every trial.

    The argument holds the trial's other values, so one parameter can depend
    on another; it reads as the config (``config["a"]``) and as the older
    ``spec`` (``spec.config.a``).

    Example:
        >>> space = {
        ...     "a": uniform(0, 1),
        ...     "b": sample_from(lambda config: config["a"] * 2),
        ...     "c": sample_from(lambda spec: spec.config.a * 3),
        ... }
    """
    return Function(func)


def grid_search(values: Sequence) -> dict:
    """Marks ``values`` to be tried one by one: every trial grid is repeated ``num_samples`` times.

    Example:
        >>> grid_search([32, 64, 128])
        {'grid_search': [32, 64, 128]}
    """
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise ValueError(f"grid_search: `values` must be a list of values, got {type(values).__name__} {values!r}.")
    if not isinstance(values, list):
        values = list(values)
    if not values:
        raise ValueError("grid_search: `values` must not be empty.")
    return {"grid_search": values}


def is_grid_search(value: Any) -> bool:
    """Whether ``value`` is a ``grid_search`` marker dict."""
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def _check_q(func: str, q: Any) -> None:
    _check_number(func, "q", q)
    if not q > 0:
        raise ValueError(f"{func}: `q` must be > 0, got {q!r}.")


def _check_int_q(func: str, q: Any) -> int:
    if not _is_int(q) or q <= 0:
        raise ValueError(f"{func}: `q` must be a positive integer, got {q!r}.")
    return int(q)
