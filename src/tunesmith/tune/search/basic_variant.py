"""``BasicVariantGenerator``: random and grid search, the default search algorithm."""
from __future__ import annotations

import logging
import numbers
import os
from typing import Any

from tunesmith.tune.search._respecify import respecify_config
from tunesmith.tune.search.sample import LazyRandomState
from tunesmith.tune.search.search_algorithm import SearchAlgorithm, TrialSuggestion, as_experiments, new_trial_id
from tunesmith.tune.search.searcher import _atomic_dump, _load, _newest
from tunesmith.tune.search.variant_generator import (
    GridPlan,
    apply_point,
    flatten_resolved_vars,
    make_experiment_tag,
)

logger = logging.getLogger(__name__)


class _VariantStream:
    """The configurations of one param space, produced one at a time.

    Its position (which repetition, which grid point) is plain data, so a
    pickled stream resumes exactly where it stopped.
    """

    def __init__(self, space: dict, num_samples: int | None, points: list[dict], constant_grid_search: bool):
        self.base_plan = GridPlan(space)
        if self.base_plan.size == 0:
            raise ValueError("`param_space` has a grid_search with no values.")
        self.point_plans: list[tuple[GridPlan, dict]] = []
        for point in points:
            point_space, preset = apply_point(space, point)
            self.point_plans.append((GridPlan(point_space), preset))
        self.num_samples = num_samples
        self.repeats = None if num_samples is None else max(num_samples, len(points))
        self.constant_grid_search = constant_grid_search
        self.sample_index = 0
        self.grid_index = 0
        self.constants: dict | None = None
        # The further configurations of the last grid point, where a sampled tune.choice option
        # held a grid_search of its own.
        self.expanded: list[tuple[dict, dict]] = []

    @property
    def total(self) -> int | None:
        if self.num_samples is None:
            return None
        from_points = sum(plan.size for plan, _ in self.point_plans)
        return from_points + max(self.num_samples - len(self.point_plans), 0) * self.base_plan.size

    def exhausted(self) -> bool:
        if getattr(self, "expanded", None):
            return False
        return self.repeats is not None and self.sample_index >= self.repeats

    def _plan(self) -> tuple[GridPlan, dict]:
        if self.sample_index < len(self.point_plans):
            return self.point_plans[self.sample_index]
        return self.base_plan, {}

    def next(self, rng: Any) -> tuple[dict, dict] | None:
        expanded = getattr(self, "expanded", None)  # absent in a stream saved before it existed
        if expanded:
            return expanded.pop(0)
        while not self.exhausted():
            plan, preset = self._plan()
            if self.grid_index >= plan.size:
                self.sample_index += 1
                self.grid_index = 0
                self.constants = None
                continue
            if self.constant_grid_search and self.constants is None:
                self.constants = plan.constants(rng)
            variants = [({**preset, **resolved}, config)
                        for resolved, config in plan.variants(self.grid_index, rng, self.constants)]
            self.grid_index += 1
            if self.grid_index >= plan.size:
                self.sample_index += 1
                self.grid_index = 0
                self.constants = None
            self.expanded = variants[1:]
            return variants[0]
        return None


class BasicVariantGenerator(SearchAlgorithm):
    """Random and grid search over a ``param_space``; the default search algorithm.

    Every sampled value is drawn independently, and every ``grid_search`` is
    expanded into a cartesian product; ``num_samples`` repeats the whole grid
    (``num_samples=-1`` repeats it until the experiment is stopped).

    Args:
        points_to_evaluate: Configurations (possibly partial dicts) to run
            first; the missing values come from the space. Each point counts
            as one of the ``num_samples`` samples.
        max_concurrent: At most this many trials run at once (0: no limit).
        constant_grid_search: Sample the random values once per sample and
            keep them for every grid point, instead of resampling per point.
        random_state: Seed (int), numpy Generator or RandomState, for
            reproducible configurations.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search import BasicVariantGenerator
        >>> algo = BasicVariantGenerator(random_state=0)
        >>> algo.add_configurations({"x": tune.grid_search([1, 2]), "y": tune.uniform(0, 1)}, num_samples=2)
        >>> algo.total_samples
        4
        >>> algo.next_trial("t0").experiment_tag.startswith("0_x=1,y=")
        True
    """

    CKPT_FILE_TMPL = "basic-variant-state-{}.pkl"

    def __init__(
        self,
        points_to_evaluate: list[dict] | None = None,
        max_concurrent: int = 0,
        constant_grid_search: bool = False,
        random_state: Any = None,
    ):
        if points_to_evaluate is None:
            points_to_evaluate = []
        if not isinstance(points_to_evaluate, (list, tuple)) or not all(
            isinstance(p, dict) for p in points_to_evaluate
        ):
            raise ValueError(
                f"`points_to_evaluate` must be a list of dicts, got {type(points_to_evaluate).__name__} "
                f"{points_to_evaluate!r}."
            )
        if not isinstance(max_concurrent, numbers.Integral) or isinstance(max_concurrent, bool) or max_concurrent < 0:
            raise ValueError(f"`max_concurrent` must be an integer >= 0 (0 means no limit), got {max_concurrent!r}.")
        self._points_to_evaluate = [dict(p) for p in points_to_evaluate]
        self.max_concurrent = int(max_concurrent)
        self._constant_grid_search = bool(constant_grid_search)
        self._rng = LazyRandomState(random_state)
        self._streams: list[_VariantStream] = []
        self._counter = 0
        self._total_samples: int | None = 0
        self._live_trials: set[str] = set()
        self._finished = False
        self._restored = False

    @property
    def total_samples(self) -> int | None:
        """Trials this generator creates in all; None when ``num_samples=-1``."""
        return self._total_samples

    def add_configurations(self, param_space: dict, num_samples: int = 1, **spec: Any) -> None:
        """Adds ``param_space``, sampled ``num_samples`` times (``-1``: without end).

        ``param_space`` may also be an ``Experiment`` or a list of them: each
        adds its ``config``, sampled its ``num_samples`` times.
        """
        experiments = as_experiments(param_space)
        if experiments is not None:
            for experiment in experiments:
                self.add_configurations(experiment.config, num_samples=experiment.num_samples)
            return
        if self._restored and self._streams:
            # The restored state already holds this experiment and its progress.
            return
        if param_space is None:
            param_space = {}
        if not isinstance(param_space, dict):
            raise ValueError(f"`param_space` must be a dict, got {type(param_space).__name__}.")
        if (
            not isinstance(num_samples, numbers.Integral)
            or isinstance(num_samples, bool)
            or (num_samples < 1 and num_samples != -1)
        ):
            raise ValueError(f"`num_samples` must be a positive integer or -1 (no limit), got {num_samples!r}.")
        stream = _VariantStream(
            param_space,
            None if num_samples == -1 else int(num_samples),
            self._points_to_evaluate,
            self._constant_grid_search,
        )
        self._streams.append(stream)
        total = stream.total
        self._total_samples = None if total is None or self._total_samples is None else self._total_samples + total
        self._finished = False

    def next_trial(self, trial_id: str | None = None) -> TrialSuggestion | None:
        if self.max_concurrent and len(self._live_trials) >= self.max_concurrent:
            return None
        if trial_id is None:
            trial_id = new_trial_id()
        for stream in self._streams:
            if stream.exhausted():
                continue
            item = stream.next(self._rng)
            if item is None:
                continue
            resolved, config = item
            respecified = self.__dict__.get("_respecified")
            if respecified is not None:
                config = respecify_config(config, *respecified)
            suggestion = TrialSuggestion(
                config=config,
                evaluated_params=flatten_resolved_vars(resolved),
                experiment_tag=make_experiment_tag(self._counter, resolved),
                trial_id=trial_id,
            )
            self._counter += 1
            self._live_trials.add(trial_id)
            if all(s.exhausted() for s in self._streams):
                self._finished = True
            return suggestion
        self._finished = True
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._live_trials.discard(trial_id)

    def respecify(self, old_space: dict, new_space: dict) -> None:
        """Trials created from now on take ``new_space``'s values where the restored space fixes them.

        ``Tuner.restore(param_space=...)`` calls this after :meth:`restore_from_dir`; see
        :func:`~tunesmith.tune.search._respecify.respecify_config`.
        """
        self._respecified = (old_space, new_space)

    def get_state(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_restored", "_respecified")}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)
        self._restored = True
        # A run stopped early (a Stopper's stop_all, Ctrl+C) had set_finished() called; restored, it
        # goes on with the variants left.
        self._finished = bool(self._streams) and all(s.exhausted() for s in self._streams)

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        """Writes ``basic-variant-state-<session_str>.pkl`` into ``dirpath``."""
        _atomic_dump(self.get_state(), os.path.join(dirpath, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, dirpath: str) -> None:
        """Restores the newest state in ``dirpath``; ``add_configurations`` may come before or after."""
        path = _newest(dirpath, self.CKPT_FILE_TMPL.format("*"))
        if path is None:
            raise RuntimeError(f"BasicVariantGenerator found no saved state in {dirpath!r}.")
        self.set_state(_load(path))

    def has_checkpoint(self, dirpath: str) -> bool:
        return _newest(dirpath, self.CKPT_FILE_TMPL.format("*")) is not None
