"""``ConcurrencyLimiter``: caps how many suggested trials run at once."""
from __future__ import annotations

import numbers

from tunesmith.tune.search.searcher import Searcher, _WrappingSearcher


class ConcurrencyLimiter(_WrappingSearcher):
    """Wraps a searcher so that at most ``max_concurrent`` of its trials run at once.

    Useful for algorithms that learn little from many parallel trials (for
    example sequential Bayesian optimisation). If the wrapped searcher limits
    concurrency itself (its ``set_max_concurrency`` returns True) the limiter
    just passes calls through.

    Args:
        searcher: The searcher to wrap.
        max_concurrent: Maximum number of running trials (> 0).
        batch: If True, wait until the whole batch of ``max_concurrent``
            trials has completed, then report them all to the searcher and
            start the next batch.

    Example:
        >>> from tunesmith.tune.search import ConcurrencyLimiter, Searcher
        >>> class Counting(Searcher):
        ...     def suggest(self, trial_id):
        ...         return {"x": 1}
        >>> algo = ConcurrencyLimiter(Counting(), max_concurrent=2)
        >>> [algo.suggest(t) is not None for t in ("a", "b", "c")]
        [True, True, False]
        >>> algo.on_trial_complete("a", {"x": 1})
        >>> algo.suggest("c") is not None
        True
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False):
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"ConcurrencyLimiter: `searcher` must be a tune Searcher, got {type(searcher).__name__}."
            )
        _check_max_concurrent(max_concurrent)
        self.searcher = searcher
        self.max_concurrent = int(max_concurrent)
        self.batch = bool(batch)
        self.live_trials: set[str] = set()
        self.num_unfinished_live_trials = 0
        self.cached_results: dict[str, tuple[dict | None, bool]] = {}
        # A searcher that limits concurrency itself makes this wrapper a pass-through (not in
        # batch mode, where results are held back for whole batches).
        self._limit_concurrency = self.batch or not self.searcher.set_max_concurrency(self.max_concurrent)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        _check_max_concurrent(max_concurrent)
        self.max_concurrent = int(max_concurrent)
        self._limit_concurrency = self.batch or not self.searcher.set_max_concurrency(self.max_concurrent)
        return True

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # A searcher that limits itself makes this wrapper a pass-through, unless results
        # must be held back for whole batches.
        self._limit_concurrency = self.batch or not self.searcher.set_max_concurrency(self.max_concurrent)
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if len(self.live_trials) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is not None and suggestion != Searcher.FINISHED:
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._limit_concurrency:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if trial_id not in self.live_trials:
            return
        if not self.batch:
            # The trial's slot is free even if the searcher fails on its result (the state saved
            # then must not count it as running: a restore would wait for it forever).
            self.live_trials.discard(trial_id)
            self.num_unfinished_live_trials -= 1
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        if trial_id in self.cached_results:
            return
        self.cached_results[trial_id] = (result, error)
        self.num_unfinished_live_trials -= 1
        if self.num_unfinished_live_trials <= 0:
            cached, self.cached_results = self.cached_results, {}
            self.live_trials.difference_update(cached)
            self.num_unfinished_live_trials = 0
            # In suggestion order (trial ids count up), so a seeded searcher sees the same sequence every
            # run; each is told even if the searcher fails on an earlier one (the first failure is raised).
            failure = None
            for tid, (res, err) in sorted(cached.items()):
                try:
                    self.searcher.on_trial_complete(tid, result=res, error=err)
                except Exception as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure


def _check_max_concurrent(value) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`max_concurrent` must be a positive integer, got {value!r}.")
