"""``Repeater``: runs each suggested configuration several times and reports the mean."""
from __future__ import annotations

import copy
import logging
import math
import numbers

from tunesmith.tune.search.searcher import Searcher, _WrappingSearcher

logger = logging.getLogger(__name__)

TRIAL_INDEX = "__trial_index__"


def _sample_what_is_left(config: dict, searcher: Searcher, index: int) -> None:
    """Samples in place the domains left in a suggestion; with a seeded searcher, the same way each run."""
    from tunesmith.tune.search.searcher import leftover_random_state
    from tunesmith.tune.search.variant_generator import resolve_config

    resolve_config(config, random_state=leftover_random_state(searcher, index), allow_pending=True)


class _TrialGroup:
    """The trials that run one suggested configuration."""

    def __init__(self, primary_trial_id: str, config: dict, max_trials: int):
        self.primary_trial_id = primary_trial_id
        self.config = config
        self.max_trials = max_trials
        self.scores: dict[str, float | None] = {primary_trial_id: None}
        self.errors: dict[str, bool] = {}

    def add(self, trial_id: str) -> None:
        self.scores[trial_id] = None

    def full(self) -> bool:
        return len(self.scores) >= self.max_trials

    def report(self, trial_id: str, score: float, error: bool) -> None:
        self.scores[trial_id] = score
        self.errors[trial_id] = error

    def finished_reporting(self) -> bool:
        return self.full() and len(self.errors) == len(self.scores)


class Repeater(_WrappingSearcher):
    """Repeats every configuration of a searcher ``repeat`` times and reports the average.

    Each suggestion runs as ``repeat`` trials. When all of them have ended,
    the wrapped searcher's ``on_trial_complete`` is called once (for the first
    trial of the group) with the mean of ``searcher.metric`` over the
    repeats, ignoring trials that did not report it. ``num_samples`` counts
    every trial, so use a multiple of ``repeat``. Avoid combining with an
    early-stopping scheduler, which skews the averages.

    Args:
        searcher: The searcher to wrap.
        repeat: How many trials run each configuration.
        set_index: Add ``"__trial_index__"`` (0 .. repeat-1) to each config,
            for example to seed each repeat differently.

    Example:
        >>> from tunesmith.tune.search import Repeater, Searcher
        >>> class Fixed(Searcher):
        ...     def suggest(self, trial_id):
        ...         return {"lr": 0.1}
        >>> algo = Repeater(Fixed(metric="loss", mode="min"), repeat=3)
        >>> [algo.suggest(t) for t in ("a", "b", "c")]
        [{'lr': 0.1, '__trial_index__': 0}, {'lr': 0.1, '__trial_index__': 1}, {'lr': 0.1, '__trial_index__': 2}]
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True):
        if not isinstance(searcher, Searcher):
            raise TypeError(f"Repeater: `searcher` must be a tune Searcher, got {type(searcher).__name__}.")
        if not isinstance(repeat, numbers.Integral) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError(f"Repeater: `repeat` must be a positive integer, got {repeat!r}.")
        self.searcher = searcher
        self.repeat = int(repeat)
        self._set_index = bool(set_index)
        self._trial_id_to_group: dict[str, _TrialGroup] = {}
        self._current_group: _TrialGroup | None = None

    def suggest(self, trial_id: str):
        group = self._current_group
        if group is None or group.full():
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            config = copy.deepcopy(config)
            # Domains the suggestion still holds (inside a chosen dict) are sampled once, for the whole group.
            self._groups_made = getattr(self, "_groups_made", 0) + 1
            _sample_what_is_left(config, self.searcher, self._groups_made)
            group = _TrialGroup(trial_id, config, max_trials=self.repeat)
            self._current_group = group
            index = 0
        else:
            index = len(group.scores)
            group.add(trial_id)
        self._trial_id_to_group[trial_id] = group
        config = copy.deepcopy(group.config)
        if self._set_index:
            config[TRIAL_INDEX] = index
        return config

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        # As on Ray: the wrapped searcher would count groups, not trials, so a ConcurrencyLimiter
        # (or max_concurrent_trials) limits the trials itself.
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # As on Ray, the wrapped searcher hears of a group only once, from its mean; the repeats'
        # ids are not ones it suggested.
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group = self._trial_id_to_group.pop(trial_id, None)
        if group is None:
            logger.warning("Repeater: trial %s was not suggested by this searcher; result ignored.", trial_id)
            return
        metric = self.searcher.metric
        score = math.nan
        if result and metric in result:
            try:
                score = float(result[metric])
            except (TypeError, ValueError):
                score = math.nan
        group.report(trial_id, score, error)
        if not group.finished_reporting():
            return
        valid = [s for s in group.scores.values() if not math.isnan(s)]
        mean = sum(valid) / len(valid) if valid else math.nan
        all_failed = all(group.errors.values())
        self.searcher.on_trial_complete(group.primary_trial_id, result={metric: mean}, error=all_failed)
