"""``TuneConfig``: what to tune for and how to search."""
from __future__ import annotations

import datetime
import numbers
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class TuneConfig:
    """Tuning settings of a ``Tuner``.

    Args:
        metric: The metric to optimise; schedulers and searchers take it from here when they have none.
        mode: ``"min"`` or ``"max"``.
        search_alg: A ``Searcher`` or ``SearchAlgorithm`` (default: random and grid search).
        scheduler: A ``TrialScheduler`` (default: FIFO).
        num_samples: Times to sample the param space (each grid point once per sample);
            ``-1`` samples until ``time_budget_s`` runs out.
        max_concurrent_trials: Most trials running at once (default: as many as resources allow).
        time_budget_s: Seconds (or a ``timedelta``) after which the whole experiment stops.
        reuse_actors: Reuse class trainable instances through ``reset_config``.
        trial_name_creator: ``f(trial) -> str`` naming trials.
        trial_dirname_creator: ``f(trial) -> str`` naming trial directories.

    Example:
        >>> from tunesmith import tune
        >>> cfg = tune.TuneConfig(metric="loss", mode="min", num_samples=10)
    """

    metric: str | None = None
    mode: str | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | datetime.timedelta | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Callable | None = None
    trial_dirname_creator: Callable | None = None
    chdir_to_trial_dir: bool | None = None

    def __post_init__(self):
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"TuneConfig(mode={self.mode!r}) must be 'min', 'max' or None.")
        if self.metric is not None and not isinstance(self.metric, str):
            raise TypeError(f"TuneConfig(metric=...) must be a string, got {type(self.metric).__name__}.")
        # numpy integers and floats count as the numbers they are (stored as Python's own).
        self.num_samples = _plain_number(self.num_samples)
        self.max_concurrent_trials = _plain_number(self.max_concurrent_trials)
        self.time_budget_s = _plain_number(self.time_budget_s)
        if self.max_concurrent_trials == 0:
            self.max_concurrent_trials = None  # as Ray: 0 (or None) sets no limit
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool) or (
            self.num_samples < 1 and self.num_samples != -1
        ):
            raise ValueError(
                f"TuneConfig(num_samples={self.num_samples!r}) must be a positive integer, or -1 to sample "
                "until time_budget_s runs out."
            )
        if self.max_concurrent_trials is not None and (
            not isinstance(self.max_concurrent_trials, int) or self.max_concurrent_trials < 1
        ):
            raise ValueError(
                f"TuneConfig(max_concurrent_trials={self.max_concurrent_trials!r}) must be a positive integer, "
                "or None (or 0) for no limit."
            )
        if isinstance(self.time_budget_s, datetime.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()
        if self.time_budget_s == 0 and not isinstance(self.time_budget_s, bool):
            self.time_budget_s = None  # as on Ray: no budget (`time_budget_s=args.budget or 0`)
        if self.time_budget_s is not None and (
            not isinstance(self.time_budget_s, (int, float)) or self.time_budget_s <= 0
        ):
            raise ValueError(f"TuneConfig(time_budget_s={self.time_budget_s!r}) must be a positive number of seconds.")
        for name in ("trial_name_creator", "trial_dirname_creator"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"TuneConfig({name}=...) must be a function of the trial, got {value!r}.")


def _plain_number(value):
    """A numpy (or other ``numbers``) integer as an ``int``, a real as a ``float``; anything else as given."""
    if isinstance(value, bool) or type(value) in (int, float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value
