"""``SearchGenerator``: runs a :class:`Searcher` as the driver's search algorithm."""
from __future__ import annotations

import logging
import numbers
import os
import warnings
from typing import Any

from tunesmith.tune.search.search_algorithm import SearchAlgorithm, TrialSuggestion, as_experiments, new_trial_id
from tunesmith.tune.search.searcher import Searcher, _atomic_dump, _load, _newest, leftover_random_state
from tunesmith.tune.search.variant_generator import (
    _copy_structure,
    _walk,
    flatten_dict,
    has_unresolved_values,
    make_experiment_tag,
    resolve_config,
    unflatten_dict,
)
from tunesmith.tune.search.sample import Domain, is_grid_search

logger = logging.getLogger(__name__)


def _merge(base: Any, update: dict) -> Any:
    """Deep-merges ``update`` into ``base`` (a structure copy), returning ``base``."""
    for key, value in update.items():
        if key not in base and isinstance(key, str) and "/" in key:
            _merge(base, unflatten_dict({key: value}))
            continue
        target = base.get(key) if isinstance(base, dict) else None
        if isinstance(value, dict) and isinstance(target, dict) and not is_grid_search(target):
            _merge(target, value)
        else:
            base[key] = value
    return base


class SearchGenerator(SearchAlgorithm):
    """Adapts a :class:`~tunesmith.tune.search.Searcher` to the driver.

    The searcher receives the ``param_space`` through
    ``set_search_properties``; each suggestion is merged into the space
    (constants and nesting kept, any value the searcher left out sampled
    from the space), until ``num_samples`` trials were created or the
    searcher returns ``Searcher.FINISHED``.

    Args:
        searcher: The searcher to run.

    Example:
        >>> from tunesmith.tune.search import Searcher, SearchGenerator
        >>> class Const(Searcher):
        ...     def suggest(self, trial_id):
        ...         return {"lr": 0.1}
        >>> gen = SearchGenerator(Const())
        >>> gen.add_configurations({"lr": 0.5, "epochs": 3}, num_samples=2)
        >>> gen.next_trial("t1").config
        {'lr': 0.1, 'epochs': 3}
    """

    CKPT_FILE_TMPL = "search_gen_state-{}.pkl"

    def __init__(self, searcher: Searcher):
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"SearchGenerator: `searcher` must be a tune Searcher, got {type(searcher).__name__}."
            )
        self.searcher = searcher
        self._space: dict = {}
        self._total_samples: int | None = 0
        self._counter = 0
        self._finished = False
        self._space_taken: bool | None = None
        self._restored = False

    @property
    def metric(self) -> str | None:
        return self.searcher.metric

    @property
    def mode(self) -> str | None:
        return self.searcher.mode

    @property
    def total_samples(self) -> int | None:
        return self._total_samples

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Passes metric, mode and the param space to the searcher; returns whether it took the space."""
        _check_no_grid(config, self.searcher)
        self._space_taken = bool(self.searcher.set_search_properties(metric, mode, config, **spec))
        return self._space_taken

    def add_configurations(self, param_space: dict, num_samples: int = 1, **spec: Any) -> None:
        experiments = as_experiments(param_space)
        if experiments is not None:
            if len(experiments) != 1:
                raise ValueError(
                    f"SearchGenerator runs one experiment at a time; got {len(experiments)} Experiments."
                )
            param_space, num_samples = experiments[0].config, experiments[0].num_samples
        if param_space is None:
            param_space = {}
        if not isinstance(param_space, dict):
            raise ValueError(f"`param_space` must be a dict, got {type(param_space).__name__}.")
        _check_no_grid(param_space, self.searcher)
        if self._space_taken is False and has_unresolved_values(param_space):
            raise ValueError(
                f"`param_space` contains search space definitions, but {type(self.searcher).__name__} "
                "was created with its own search space and did not take it. Define the space in one "
                "place only: either pass it to the search algorithm or as `param_space`."
            )
        self._space = param_space
        # "a/b" names of the space's domains: a suggestion that sets all of them leaves nothing to sample.
        self._searched = {"/".join(map(str, path)) for path, _, _ in _walk(param_space)}
        if self._restored:
            # Counter and totals come from the restored state.
            return
        if (
            not isinstance(num_samples, numbers.Integral)
            or isinstance(num_samples, bool)
            or (num_samples < 1 and num_samples != -1)
        ):
            raise ValueError(f"`num_samples` must be a positive integer or -1 (no limit), got {num_samples!r}.")
        self._total_samples = None if num_samples == -1 else int(num_samples)
        repeat = getattr(self.searcher, "repeat", None)
        if type(self.searcher).__name__ == "Repeater" and self._total_samples and self._total_samples % repeat:
            warnings.warn(
                f"num_samples={num_samples} is not a multiple of Repeater's repeat={repeat}: `num_samples` "
                "counts every trial including repeats (for 3 configurations repeated 5 times use "
                "num_samples=15), so the last configuration runs fewer times.",
                stacklevel=2,
            )

    def is_finished(self) -> bool:
        return self._finished or (self._total_samples is not None and self._counter >= self._total_samples)

    def next_trial(self, trial_id: str | None = None) -> TrialSuggestion | None:
        if self.is_finished():
            return None
        if trial_id is None:
            trial_id = new_trial_id()
        suggestion = self.searcher.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            self._finished = True
            return None
        if suggestion is None:
            return None
        if not isinstance(suggestion, dict):
            inner = self.searcher
            while isinstance(getattr(inner, "searcher", None), Searcher):  # ConcurrencyLimiter, Repeater
                inner = inner.searcher
            raise TypeError(
                f"{type(inner).__name__}.suggest() must return a dict, None or Searcher.FINISHED; "
                f"got {type(suggestion).__name__}."
            )
        config = _merge(_copy_structure(self._space), _copy_structure(suggestion))
        evaluated = flatten_dict(suggestion)
        searched = self.__dict__.get("_searched")
        if (
            searched is None
            or not searched <= evaluated.keys()
            or any(isinstance(v, (Domain, list, tuple, dict)) for v in evaluated.values())
        ):
            # The searcher left part of the space to sample (or returned domains, such as a choice of
            # dicts of domains): a seeded searcher's trials sample it the same way in every run.
            resolve_config(config, random_state=self._rest_random_state())
        self._counter += 1
        if self.is_finished():
            _tell_last_suggestion(self.searcher)
        return TrialSuggestion(
            config=config,
            evaluated_params=evaluated,
            experiment_tag=make_experiment_tag(self._counter, flatten_dict(config)),
            trial_id=trial_id,
        )

    def _rest_random_state(self) -> Any:
        """A generator for the values a seeded searcher leaves to sample, one per trial (None: unseeded)."""
        return leftover_random_state(self.searcher, self._counter)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("searcher", "_space", "_searched", "_restored")}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)
        self._restored = True
        self._finished = False  # a run stopped early goes on; a searcher that is done says FINISHED again

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        """Saves the searcher (``searcher-state-*.pkl``) and the trial count (``search_gen_state-*.pkl``)."""
        self.searcher.save_to_dir(dirpath, session_str)
        _atomic_dump(self.get_state(), os.path.join(dirpath, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, dirpath: str) -> None:
        self.searcher.restore_from_dir(dirpath)
        path = _newest(dirpath, self.CKPT_FILE_TMPL.format("*"))
        if path is None:
            raise RuntimeError(f"SearchGenerator found no saved state in {dirpath!r}.")
        self.set_state(_load(path))

    def has_checkpoint(self, dirpath: str) -> bool:
        return _newest(dirpath, self.CKPT_FILE_TMPL.format("*")) is not None and self.searcher.has_checkpoint(dirpath)


def _tell_last_suggestion(searcher: Searcher) -> None:
    """Lets a searcher (inside any wrappers) know that no more configurations will be asked for."""
    for _ in range(8):
        hook = getattr(searcher, "_on_last_suggestion", None)
        if hook is not None:
            hook()
        inner = getattr(searcher, "searcher", None)
        if inner is None or inner is searcher:
            return
        searcher = inner


def _check_no_grid(space: Any, searcher: Searcher) -> None:
    if not isinstance(space, dict):
        return
    for path, kind, _ in _walk(space):
        if kind == "grid":
            raise ValueError(
                f"`param_space` has a tune.grid_search at {'/'.join(map(str, path))!r}, which "
                f"{type(searcher).__name__} cannot use: grid search is only supported by the default "
                "search algorithm (BasicVariantGenerator). Use tune.choice(...) instead, or drop `search_alg`."
            )
