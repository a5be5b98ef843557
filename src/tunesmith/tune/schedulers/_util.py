"""Validation and compatibility helpers shared by the schedulers."""
from __future__ import annotations

from typing import Any

from tunesmith.tune.schedulers.trial_scheduler import TrialScheduler

_MODES = ("min", "max")

# Searchers that stand for "no search algorithm": the default variant generator.
_DEFAULT_SEARCHERS = ("BasicVariantGenerator",)


def validate_mode(mode: str | None, owner: str) -> None:
    """Raises ValueError unless ``mode`` is None, ``"min"`` or ``"max"``."""
    if mode is not None and mode not in _MODES:
        raise ValueError(f"{owner}: `mode` must be one of {list(_MODES)}, got {mode!r}.")


def validate_positive(value: Any, name: str, owner: str, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: `{name}` must be a number {bound}, got {value!r}.")


def missing_metric_error(scheduler: Any) -> ValueError:
    name = type(scheduler).__name__
    return ValueError(
        f"{name} has no `metric` ({scheduler.metric!r}) or `mode` ({scheduler.mode!r}). "
        f"Pass them when creating the scheduler, e.g. {name}(metric='loss', mode='min'), "
        "or to tune.TuneConfig(metric=..., mode=...)."
    )


def require_metric_and_mode(scheduler: Any) -> None:
    """Raises the missing-metric error when either of metric and mode is unset."""
    if not scheduler.metric or not scheduler.mode:
        raise missing_metric_error(scheduler)


def fill_search_properties(scheduler: Any, metric: str | None, mode: str | None) -> bool:
    """Fills metric and mode from ``TuneConfig``; False when they disagree with the scheduler's.

    Raises ValueError when, afterwards, the scheduler still has no metric or mode.
    """
    validate_mode(mode, type(scheduler).__name__)
    if not TrialScheduler.set_search_properties(scheduler, metric, mode):
        return False
    require_metric_and_mode(scheduler)
    return True


def unwrap_searcher(search_alg: Any) -> Any:
    """Follows wrappers (``SearchGenerator``, ``ConcurrencyLimiter``, ``Repeater``) to the searcher."""
    seen = 0
    while search_alg is not None and seen < 8:
        inner = getattr(search_alg, "searcher", None) or getattr(search_alg, "_searcher", None)
        if inner is None or inner is search_alg:
            break
        search_alg = inner
        seen += 1
    return search_alg


def class_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def is_default_searcher(search_alg: Any) -> bool:
    if search_alg is None:
        return True
    return bool(class_names(unwrap_searcher(search_alg)) & set(_DEFAULT_SEARCHERS)) or bool(
        class_names(search_alg) & set(_DEFAULT_SEARCHERS)
    )


def metric_sign(mode: str | None) -> float:
    """+1 when larger is better, -1 when smaller is better."""
    return 1.0 if mode == "max" else -1.0
