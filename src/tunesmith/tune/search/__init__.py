"""Search algorithms and search spaces (``tunesmith.tune.search``).

Public names load on first access, so importing this package stays cheap.

Example:
    >>> from tunesmith.tune.search import BasicVariantGenerator, ConcurrencyLimiter, create_searcher
    >>> isinstance(create_searcher("random", random_state=0), BasicVariantGenerator)
    True
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from tunesmith._lazy import lazy_getattr

_S = "tunesmith.tune.search"
_LAZY = {
    "SearchAlgorithm": f"{_S}.search_algorithm:SearchAlgorithm",
    "TrialSuggestion": f"{_S}.search_algorithm:TrialSuggestion",
    "Searcher": f"{_S}.searcher:Searcher",
    "UNRESOLVED_SEARCH_SPACE": f"{_S}.searcher:UNRESOLVED_SEARCH_SPACE",
    "UNDEFINED_SEARCH_SPACE": f"{_S}.searcher:UNDEFINED_SEARCH_SPACE",
    "UNDEFINED_METRIC_MODE": f"{_S}.searcher:UNDEFINED_METRIC_MODE",
    "SearchGenerator": f"{_S}.search_generator:SearchGenerator",
    "BasicVariantGenerator": f"{_S}.basic_variant:BasicVariantGenerator",
    "ConcurrencyLimiter": f"{_S}.concurrency_limiter:ConcurrencyLimiter",
    "Repeater": f"{_S}.repeater:Repeater",
    # search space
    "Domain": f"{_S}.sample:Domain",
    "Float": f"{_S}.sample:Float",
    "Integer": f"{_S}.sample:Integer",
    "Categorical": f"{_S}.sample:Categorical",
    "Function": f"{_S}.sample:Function",
    "uniform": f"{_S}.sample:uniform",
    "quniform": f"{_S}.sample:quniform",
    "loguniform": f"{_S}.sample:loguniform",
    "qloguniform": f"{_S}.sample:qloguniform",
    "randn": f"{_S}.sample:randn",
    "qrandn": f"{_S}.sample:qrandn",
    "randint": f"{_S}.sample:randint",
    "qrandint": f"{_S}.sample:qrandint",
    "lograndint": f"{_S}.sample:lograndint",
    "qlograndint": f"{_S}.sample:qlograndint",
    "choice": f"{_S}.sample:choice",
    "sample_from": f"{_S}.sample:sample_from",
    "grid_search": f"{_S}.sample:grid_search",
    # submodules
    "sample": f"{_S}.sample:",
    "variant_generator": f"{_S}.variant_generator:",
    "basic_variant": f"{_S}.basic_variant:",
    # integrations: the subpackage imports nothing until its searcher is built
    "optuna": f"{_S}.optuna:",
    "hyperopt": f"{_S}.hyperopt:",
    "bayesopt": f"{_S}.bayesopt:",
    "bohb": f"{_S}.bohb:",
    "nevergrad": f"{_S}.nevergrad:",
    "zoopt": f"{_S}.zoopt:",
    "ax": f"{_S}.ax:",
    "hebo": f"{_S}.hebo:",
}

# name -> "module:Class"; integrations register here and are imported only when asked for.
SEARCH_ALG_IMPORT: dict[str, str] = {
    "variant_generator": f"{_S}.basic_variant:BasicVariantGenerator",
    "random": f"{_S}.basic_variant:BasicVariantGenerator",
    "ax": f"{_S}.ax.ax_search:AxSearch",
    "hyperopt": f"{_S}.hyperopt.hyperopt_search:HyperOptSearch",
    "bayesopt": f"{_S}.bayesopt.bayesopt_search:BayesOptSearch",
    "bohb": f"{_S}.bohb.bohb_search:TuneBOHB",
    "nevergrad": f"{_S}.nevergrad.nevergrad_search:NevergradSearch",
    "optuna": f"{_S}.optuna.optuna_search:OptunaSearch",
    "zoopt": f"{_S}.zoopt.zoopt_search:ZOOptSearch",
    "hebo": f"{_S}.hebo.hebo_search:HEBOSearch",
}

__all__ = sorted(set(_LAZY) | {"create_searcher", "SEARCH_ALG_IMPORT"})


def create_searcher(search_alg: str, **kwargs: Any) -> Any:
    """Creates a search algorithm from its name.

    Keyword arguments the algorithm's constructor does not accept are
    dropped, so one set of options can be passed to any algorithm.

    Args:
        search_alg: One of the names in ``SEARCH_ALG_IMPORT``
            (``"variant_generator"``, ``"random"``, ...).
        **kwargs: Arguments for the algorithm's constructor.

    Example:
        >>> algo = create_searcher("variant_generator", max_concurrent=2, metric="loss")
        >>> algo.max_concurrent
        2
    """
    if not isinstance(search_alg, str) or search_alg.lower() not in SEARCH_ALG_IMPORT:
        raise ValueError(
            f"Unknown search algorithm {search_alg!r}; `search_alg` must be one of {sorted(SEARCH_ALG_IMPORT)}."
        )
    module_name, _, class_name = SEARCH_ALG_IMPORT[search_alg.lower()].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"Search algorithm {search_alg!r} needs a library that is not installed: {exc}"
        ) from exc
    cls = getattr(module, class_name)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return cls(**kwargs)
    return cls(**{k: v for k, v in kwargs.items() if k in params})


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
