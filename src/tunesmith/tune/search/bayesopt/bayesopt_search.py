"""``BayesOptSearch``: Gaussian-process Bayesian optimisation (``bayesian-optimization``) as a Tune searcher."""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from tunesmith.tune.search._library import LibrarySearcher, Param, mark_converted, parse_space
from tunesmith.tune.search.searcher import Searcher

logger = logging.getLogger(__name__)


def _bounds(p: Param) -> tuple[float, float]:
    """The continuous interval the GP searches for ``p``."""
    if p.kind == "categorical":
        return -0.5, len(p.categories) - 0.5
    low, high = float(p.low), float(p.high)
    if p.log:
        low, high = math.log(low), math.log(high)
    if p.kind == "int" or p.q is not None:
        # Widen by half a step so the end values are as likely as the inner ones.
        step = 1.0 if p.q is None else float(p.q)
        if not p.log:
            low, high = low - step / 2, high + step / 2
    return low, high


class BayesOptSearch(LibrarySearcher):
    """Searches with `BayesianOptimization <https://github.com/bayesian-optimization/BayesianOptimization>`_.

    A Gaussian process models the metric over a box; the Tune space is
    mapped onto it: log domains are searched in log space, integers,
    quantized values and ``choice`` indices are rounded when they come back.
    A dict of ``(lower, upper)`` bounds (the library's own space) is accepted too.
    The first ``random_search_steps`` configurations are random.

    Args:
        space: A Tune search space or a dict ``{name: (lower, upper)}``. None
            takes the Tuner's ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        utility_kwargs: The acquisition function: ``{"kind": "ucb", "kappa":
            2.576, "xi": 0.0}`` by default (``kind`` one of ucb, ei, poi).
        random_state: Seeds the optimiser.
        random_search_steps: Random configurations before the GP is used.
        verbose: The library's verbosity.
        patience: Stop the search after the same configuration was
            suggested this many times.
        repeat_float_precision: Digits to which float values are rounded when
            suggestions are compared for repeats (``patience``, ``skip_duplicate``).
        skip_duplicate: Replace a suggestion that repeats a running or
            finished configuration by a random one.
        analysis: Results of an earlier run (``ExperimentAnalysis``,
            ``ResultGrid`` or its path) to start from.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.bayesopt import BayesOptSearch
        >>> algo = BayesOptSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", random_state=0)
        >>> 0 <= algo.suggest("t1")["x"] <= 1
        True
    """

    _extra = "bayesopt"
    _pip_name = "bayesian-optimization"

    def __init__(
        self,
        space: dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        utility_kwargs: dict | None = None,
        random_state: int = 42,
        random_search_steps: int = 10,
        verbose: int = 0,
        patience: int = 5,
        skip_duplicate: bool = True,
        analysis: Any = None,
        repeat_float_precision: int = 5,
    ):
        self._require("bayes_opt")
        if isinstance(repeat_float_precision, bool) or not isinstance(repeat_float_precision, int) \
                or repeat_float_precision < 0:
            raise ValueError(f"BayesOptSearch: `repeat_float_precision` must be a non-negative integer, "
                             f"got {repeat_float_precision!r}.")
        self._precision = repeat_float_precision
        utility_kwargs = dict(utility_kwargs or {})
        unknown = set(utility_kwargs) - {"kind", "kappa", "xi", "kappa_decay", "kappa_decay_delay"}
        if unknown:
            raise ValueError(f"BayesOptSearch: unknown `utility_kwargs` {sorted(unknown)}; use kind, kappa, xi.")
        if utility_kwargs.get("kind", "ucb") not in ("ucb", "ei", "poi"):
            raise ValueError(f"BayesOptSearch: utility kind must be 'ucb', 'ei' or 'poi', got {utility_kwargs['kind']!r}.")
        self._utility_kwargs = {"kind": "ucb", "kappa": 2.576, "xi": 0.0, **utility_kwargs}
        if not isinstance(random_search_steps, int) or random_search_steps < 0:
            raise ValueError(f"BayesOptSearch: `random_search_steps` must be an integer >= 0, got {random_search_steps!r}.")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"BayesOptSearch: `patience` must be a positive integer, got {patience!r}.")
        self._random_search_steps = random_search_steps
        self._verbose = verbose
        self._patience = patience
        self._skip_duplicate = bool(skip_duplicate)
        self._analysis = analysis
        self._optimizer = None
        self._utility = None
        self._seen: dict[tuple, int] = {}
        super().__init__(
            space=space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=random_state
        )

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        return isinstance(space, dict) and bool(space) and all(
            isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(b, (int, float)) for b in v)
            for v in space.values()
        )

    def _native_space_description(self) -> str:
        return "a dict {name: (lower, upper)}"

    def _check_native_space(self, space: Any) -> Any:
        for name, (low, high) in space.items():
            if not low < high:
                raise ValueError(f"BayesOptSearch: the bounds of {name!r} must have lower < upper, got {(low, high)}.")
        return {k: (float(v[0]), float(v[1])) for k, v in space.items()}

    @staticmethod
    def convert_search_space(spec: dict) -> dict:
        """Converts a Tune search space into the box ``{name: (lower, upper)}`` the GP searches.

        Example:
            >>> from tunesmith import tune
            >>> BayesOptSearch.convert_search_space({"a": {"x": tune.uniform(0, 2)}})
            {'a/x': (0.0, 2.0)}
        """
        params = parse_space(spec, "BayesOptSearch")
        return mark_converted({p.name: _bounds(p) for p in params}, params)

    # -- library ----------------------------------------------------------------------
    def _build(self) -> None:
        from bayes_opt import BayesianOptimization, UtilityFunction

        if self._params is not None:
            pbounds = {p.name: _bounds(p) for p in self._params}
        else:
            pbounds = dict(self._native_space)
        self._optimizer = BayesianOptimization(
            f=None, pbounds=pbounds, random_state=self._seed, verbose=self._verbose, allow_duplicate_points=True
        )
        self._utility = UtilityFunction(**self._utility_kwargs)
        if self._analysis is not None:
            analysis, self._analysis = self._analysis, None
            self.add_evaluated_trials(analysis, self._metric)

    def _from_box(self, x: dict) -> dict:
        """GP coordinates to the values ``Param.decode`` takes."""
        if self._params is None:
            return {k: float(v) for k, v in x.items()}
        out = {}
        for p in self._params:
            v = float(x[p.name])
            if p.kind == "categorical":
                out[p.name] = p.choices()[min(max(int(round(v)), 0), len(p.categories) - 1)]
            else:
                out[p.name] = math.exp(v) if p.log else v
        return out

    def _to_box(self, params: dict) -> dict:
        if self._params is None:
            return {k: float(v) for k, v in params.items()}
        out = {}
        for p in self._params:
            v = p.encode(p.decode(params[p.name]))  # the value the trial ran with
            if p.kind == "categorical":
                out[p.name] = float(p.choices().index(v))
            else:
                out[p.name] = math.log(v) if p.log else float(v)
        return out

    def _key(self, values: dict) -> tuple:
        """What makes two suggestions the same: floats rounded to ``repeat_float_precision`` digits."""
        def rounded(value):
            return round(value, getattr(self, "_precision", 5)) if isinstance(value, float) else value

        if self._params is None:
            return tuple(rounded(values[k]) for k in sorted(values))
        return tuple(repr(rounded(p.decode(values[p.name]))) for p in self._params)

    def _random_box(self) -> dict:
        space = self._optimizer.space
        return space.array_to_params(space.random_sample())

    def _ask(self, trial_id: str):
        optimizer = self._optimizer
        if len(optimizer.space) < self._random_search_steps or len(optimizer.space) == 0:
            x = self._random_box()
        else:
            x = optimizer.suggest(self._utility)
        values = self._from_box(x)
        key = self._key(values)
        self._seen[key] = self._seen.get(key, 0) + 1
        if self._seen[key] > self._patience:
            logger.info("BayesOptSearch: the same configuration was suggested %d times; the search ends.", self._patience)
            return None
        if self._seen[key] > 1 and self._skip_duplicate:
            values = self._from_box(self._random_box())
            key = self._key(values)
            self._seen[key] = self._seen.get(key, 0) + 1
        return None, values

    def suggest(self, trial_id: str):
        suggestion = super().suggest(trial_id)
        if suggestion is None and self._ready and self._seen and max(self._seen.values()) > self._patience:
            return Searcher.FINISHED
        return suggestion

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        # Handles are None: every finished point is registered through _observe.
        pass

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        if error or value is None:
            return  # a failed trial carries no information for the GP
        self._optimizer.register(params=self._to_box(params), target=-self._sign() * value)
