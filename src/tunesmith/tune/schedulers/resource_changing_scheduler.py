"""``ResourceChangingScheduler``: changes trial resources while another scheduler decides."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from tunesmith.tune.execution.placement_groups import PlacementGroupFactory, resource_dict_to_pg_factory
from tunesmith.tune.result import TRAINING_ITERATION
from tunesmith.tune.schedulers._state import as_trial_dict, is_finished
from tunesmith.tune.schedulers._util import metric_sign, validate_mode
from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

_FINISHED = ("TERMINATED", "ERROR")


def _total_resources(tune_controller) -> dict[str, float]:
    """The resources the backend can hand out in all."""
    return {k: float(v) for k, v in tune_controller.total_resources.items()}


class DistributeResources:
    """Shares the free resources evenly among the live trials.

    Each trial gets its base resources plus as many extra steps of
    ``increase_by`` (by default the base resources again) as its equal share of
    the total allows, at most ``increase_by_times`` steps (-1: no limit). GPUs
    are shared when the base request has any, else CPUs.

    Args:
        add_bundles: Add each step as a new bundle instead of growing the first one.
        increase_by: The resources of one step, e.g. ``{"CPU": 1}``.
        increase_by_times: Most steps per trial; -1 means unbounded.
        reserve_resources: Resources never handed out, e.g. ``{"CPU": 1}``.

    Example:
        >>> from tunesmith.tune.schedulers.resource_changing_scheduler import DistributeResources
        >>> policy = DistributeResources(add_bundles=False, reserve_resources={"CPU": 1})
    """

    def __init__(
        self,
        add_bundles: bool = False,
        increase_by: dict[str, float] | None = None,
        increase_by_times: int = -1,
        reserve_resources: dict[str, float] | None = None,
    ):
        if not isinstance(increase_by_times, int) or increase_by_times < -1:
            raise ValueError(f"`increase_by_times` must be an integer >= -1, got {increase_by_times!r}.")
        self.add_bundles = add_bundles
        self.increase_by = dict(increase_by or {})
        for key, value in self.increase_by.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`increase_by[{key!r}]` must be a number >= 0, got {value!r}.")
        self.increase_by_times = increase_by_times
        self.reserve_resources = dict(reserve_resources or {})

    # Subclasses decide who gets more.
    def _share(self, tune_controller, trial, live, total, unit_key, base_units, step_units, scheduler) -> float:
        return total / max(len(live), 1)

    def __call__(
        self,
        tune_controller,
        trial: "Trial",
        result: dict,
        scheduler: "ResourceChangingScheduler",
    ) -> PlacementGroupFactory | None:
        if result.get(TRAINING_ITERATION, 0) < 1:
            return None
        base = scheduler.base_resources_of(trial)
        if base is None:
            return None
        base_req = base.required_resources
        unit_key = "GPU" if base_req.get("GPU", 0) > 0 else "CPU"
        step = self.increase_by or {k: v for k, v in base.bundles[0].items() if k in ("CPU", "GPU")}
        step_units = step.get(unit_key, 0)
        if step_units <= 0:
            return None
        total = _total_resources(tune_controller).get(unit_key, 0.0) - self.reserve_resources.get(unit_key, 0.0)
        live = [t for t in tune_controller.get_live_trials() if t.status not in _FINISHED]
        share = self._share(tune_controller, trial, live, total, unit_key, base_req.get(unit_key, 0.0), step_units, scheduler)
        steps = int(math.floor((share - base_req.get(unit_key, 0.0)) / step_units + 1e-9))
        steps = max(steps, 0)
        if self.increase_by_times >= 0:
            steps = min(steps, self.increase_by_times)
        if self.add_bundles:
            bundles = base.bundles + [dict(step) for _ in range(steps)]
        else:
            bundles = base.bundles
            first = dict(bundles[0])
            for key, value in step.items():
                first[key] = first.get(key, 0.0) + value * steps
            bundles[0] = first
        new = PlacementGroupFactory(bundles, strategy=base.strategy)
        if new == trial.placement_group_factory:
            return None
        return new


class DistributeResourcesToTopJob(DistributeResources):
    """Gives the best trial every free resource; the others keep their base resources.

    Args:
        add_bundles, increase_by, increase_by_times, reserve_resources: As for
            :class:`DistributeResources`.
        metric: The metric that ranks trials; the scheduler's when None.
        mode: ``"min"`` or ``"max"``; the scheduler's when None.

    Example:
        >>> from tunesmith.tune.schedulers.resource_changing_scheduler import DistributeResourcesToTopJob
        >>> policy = DistributeResourcesToTopJob(metric="loss", mode="min")
    """

    def __init__(
        self,
        add_bundles: bool = False,
        increase_by: dict[str, float] | None = None,
        increase_by_times: int = -1,
        reserve_resources: dict[str, float] | None = None,
        metric: str | None = None,
        mode: str | None = None,
    ):
        super().__init__(add_bundles, increase_by, increase_by_times, reserve_resources)
        validate_mode(mode, type(self).__name__)
        self.metric = metric
        self.mode = mode

    def _share(self, tune_controller, trial, live, total, unit_key, base_units, step_units, scheduler) -> float:
        metric = self.metric or scheduler.metric
        mode = self.mode or scheduler.mode
        if not metric or not mode:
            raise ValueError(
                "DistributeResourcesToTopJob needs a metric and mode to find the best trial; pass them to it, "
                "to the wrapped scheduler, or to tune.TuneConfig."
            )
        sign = metric_sign(mode)
        best, best_score = None, -math.inf
        for t in live:
            value = t.last_result.get(metric) if t is not trial else None
            if t is trial:
                value = scheduler._current_result.get(metric) if scheduler._current_result else None
            if isinstance(value, (int, float)) and sign * value > best_score:
                best, best_score = t, sign * value
        if best is not trial:
            return base_units
        others = 0.0
        for t in live:
            if t is not trial:
                other_base = scheduler.base_resources_of(t)
                others += (other_base.required_resources if other_base else t.resources).get(unit_key, 0.0)
        return total - others


_DistributeResourcesDefault = DistributeResources(add_bundles=False)


class ResourceChangingScheduler(TrialScheduler):
    """Wraps another scheduler and changes the resources of its trials during the run.

    After every result the base scheduler decides as usual. When it says
    CONTINUE, ``resources_allocation_function`` may return new resources for
    the trial; the trial is then paused (checkpointed), its resources updated,
    and it restarts from the checkpoint with them. A class trainable learns of
    the change through ``Trainable.update_resources`` and ``trial_resources``;
    a function trainable reads ``tune.get_trial_resources()``.

    Args:
        base_scheduler: The scheduler whose decisions are used; FIFO when None.
        resources_allocation_function: ``fn(tune_controller, trial, result, scheduler)``
            returning a ``PlacementGroupFactory`` (or resource dict), or None to
            keep the current resources. Defaults to :class:`DistributeResources`.

    Example:
        >>> from tunesmith.tune.schedulers import ASHAScheduler, ResourceChangingScheduler
        >>> from tunesmith.tune.schedulers.resource_changing_scheduler import DistributeResources
        >>> scheduler = ResourceChangingScheduler(
        ...     base_scheduler=ASHAScheduler(metric="loss", mode="min"),
        ...     resources_allocation_function=DistributeResources(add_bundles=True),
        ... )
    """

    def __init__(
        self,
        base_scheduler: TrialScheduler | None = None,
        resources_allocation_function: Callable[..., Any] | None = _DistributeResourcesDefault,
    ):
        if base_scheduler is not None and not isinstance(base_scheduler, TrialScheduler):
            raise TypeError(
                f"ResourceChangingScheduler: `base_scheduler` must be a TrialScheduler, got {type(base_scheduler).__name__}."
            )
        if isinstance(base_scheduler, ResourceChangingScheduler):
            raise ValueError("ResourceChangingScheduler cannot wrap another ResourceChangingScheduler.")
        if resources_allocation_function is not None and not callable(resources_allocation_function):
            raise TypeError("ResourceChangingScheduler: `resources_allocation_function` must be callable.")
        self._base_scheduler = base_scheduler or FIFOScheduler()
        self._resources_allocation_function = resources_allocation_function
        self._base_by_trial: dict[str, PlacementGroupFactory] = {}
        # As Ray's: the resources of the first trial, which allocation functions start from.
        self._base_trial_resources: PlacementGroupFactory | None = None
        self._trials_to_reallocate: dict[str, tuple["Trial", PlacementGroupFactory]] = {}
        self._reallocated_trial_ids: set[str] = set()
        self._current_result: dict | None = None

    # -- delegation ---------------------------------------------------------------
    @property
    def metric(self) -> str | None:
        return self._base_scheduler.metric

    @property
    def mode(self) -> str | None:
        return self._base_scheduler.mode

    @property
    def base_scheduler(self) -> TrialScheduler:
        return self._base_scheduler

    @property
    def _requires_checkpointing(self) -> bool:  # type: ignore[override]
        return True

    def _supports_search_alg(self, search_alg) -> bool:
        return self._base_scheduler._supports_search_alg(search_alg)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return self._base_scheduler.set_search_properties(metric, mode, **spec)

    @property
    def base_trial_resources(self) -> PlacementGroupFactory | None:
        """The resources of the first trial (as Ray's: an allocation function scales from them)."""
        return self._base_trial_resources

    def base_resources_of(self, trial: "Trial") -> PlacementGroupFactory | None:
        """The resources ``trial`` was created with (trials may differ: a search space can set them)."""
        return self._base_by_trial.get(trial.trial_id)

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        self._base_by_trial.setdefault(trial.trial_id, trial.placement_group_factory)
        if self._base_trial_resources is None:
            self._base_trial_resources = trial.placement_group_factory
        self._base_scheduler.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: "Trial") -> None:
        self._trials_to_reallocate.pop(trial.trial_id, None)
        self._base_scheduler.on_trial_error(tune_controller, trial)

    def on_trial_complete(self, tune_controller, trial: "Trial", result: dict) -> None:
        self._trials_to_reallocate.pop(trial.trial_id, None)
        self._base_scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: "Trial") -> None:
        self._trials_to_reallocate.pop(trial.trial_id, None)
        self._base_scheduler.on_trial_remove(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        decision = self._base_scheduler.on_trial_result(tune_controller, trial, result)
        if decision != TrialScheduler.CONTINUE or self._resources_allocation_function is None:
            return decision
        self._current_result = result
        try:
            new = self._resources_allocation_function(tune_controller, trial, result, self)
        finally:
            self._current_result = None
        if new is None:
            return decision
        if isinstance(new, dict):
            new = resource_dict_to_pg_factory(new)
        if not isinstance(new, PlacementGroupFactory):
            raise TypeError(
                "resources_allocation_function must return a PlacementGroupFactory, a resource dict or None, "
                f"got {type(new).__name__}."
            )
        if new == trial.placement_group_factory:
            return decision
        self._trials_to_reallocate[trial.trial_id] = (trial, new)
        return TrialScheduler.PAUSE

    def _apply_reallocations(self, tune_controller) -> None:
        for tid, (trial, new) in list(self._trials_to_reallocate.items()):
            if trial.status == "RUNNING":
                continue
            del self._trials_to_reallocate[tid]
            if trial.status not in ("PAUSED", "PENDING"):  # PENDING: restored while it was paused
                continue
            if new != trial.placement_group_factory:
                tune_controller.update_trial_resources(trial, new)
                self._reallocated_trial_ids.add(tid)
            tune_controller.resume_trial(trial)

    def choose_trial_to_run(self, tune_controller) -> "Trial | None":
        if self._trials_to_reallocate:
            self._apply_reallocations(tune_controller)
        return self._base_scheduler.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return f"(ResourceChangingScheduler) {self._base_scheduler.debug_string()}"

    # -- state ----------------------------------------------------------------------
    def get_state(self) -> dict:
        """The base scheduler's state, each trial's base resources and pending reallocations."""
        state = super().get_state()
        state["base"] = self._base_scheduler.get_state()
        state["base_trial_resources"] = {tid: _pgf_state(pgf) for tid, pgf in self._base_by_trial.items()}
        first = self._base_trial_resources
        state["first_trial_resources"] = _pgf_state(first) if first is not None else None
        state["trials_to_reallocate"] = {tid: _pgf_state(new) for tid, (_, new) in self._trials_to_reallocate.items()}
        state["reallocated_trial_ids"] = sorted(self._reallocated_trial_ids)
        return state

    def set_state(self, state: dict, trials) -> None:
        """Restores the base scheduler with the same trials, then the resource bookkeeping."""
        super().set_state(state, trials)
        trials = as_trial_dict(trials)
        self._base_scheduler.set_state(state["base"], trials)
        self._base_by_trial = {
            tid: _pgf_from_state(data) for tid, data in state["base_trial_resources"].items() if tid in trials
        }
        first = state.get("first_trial_resources")
        self._base_trial_resources = _pgf_from_state(first) if first is not None else next(
            iter(self._base_by_trial.values()), None)
        self._trials_to_reallocate = {
            tid: (trials[tid], _pgf_from_state(data))
            for tid, data in state["trials_to_reallocate"].items()
            if tid in trials and not is_finished(trials[tid])
        }
        self._reallocated_trial_ids = {tid for tid in state["reallocated_trial_ids"] if tid in trials}
        for tid, trial in trials.items():
            if tid not in self._base_by_trial and not is_finished(trial):
                self._base_by_trial[tid] = trial.placement_group_factory
                if self._base_trial_resources is None:
                    self._base_trial_resources = trial.placement_group_factory


def _pgf_state(pgf: PlacementGroupFactory) -> dict:
    return {"bundles": pgf.bundles, "strategy": pgf.strategy}


def _pgf_from_state(data: dict) -> PlacementGroupFactory:
    return PlacementGroupFactory(data["bundles"], strategy=data["strategy"])


__all__ = ["ResourceChangingScheduler", "DistributeResources", "DistributeResourcesToTopJob"]
