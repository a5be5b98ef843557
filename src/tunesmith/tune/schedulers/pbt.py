"""Population Based Training: ``PopulationBasedTraining`` and ``PopulationBasedTrainingReplay``."""
from __future__ import annotations

import copy
import heapq
import itertools
import json
import logging
import math
import os
import random
from bisect import bisect_left, insort
from typing import TYPE_CHECKING, Any, Callable

from tunesmith.tune.search.sample import Integer
from tunesmith.tune.result import TRAINING_ITERATION
from tunesmith.tune.schedulers._state import CheckpointResolver, as_trial_dict, checkpoint_ref, is_finished
from tunesmith.tune.schedulers._util import (
    fill_search_properties,
    is_default_searcher,
    metric_sign,
    require_metric_and_mode,
    validate_mode,
    validate_positive,
)
from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

logger = logging.getLogger(__name__)

_PENDING, _PAUSED = "PENDING", "PAUSED"


# -- search space helpers -----------------------------------------------------------
def _is_domain(value: Any) -> bool:
    """A search-space object such as ``tune.uniform(0, 1)`` (anything with ``sample``)."""
    return hasattr(value, "sample") and callable(getattr(value, "sample")) and not isinstance(value, type)


def _categories(value: Any) -> list | None:
    cats = getattr(value, "categories", None)
    return list(cats) if isinstance(cats, (list, tuple)) else None


def _sample_domain(domain: Any) -> Any:
    value = domain.sample()
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _deleted(checkpoint: Any) -> bool:
    from tunesmith._internal.storage import checkpoint_missing

    try:
        return checkpoint_missing(checkpoint)
    except Exception:  # the store cannot be asked now: try the checkpoint as recorded
        return False


def _clip_to_domain(domain: Any, value: Any, old: Any = None) -> Any:
    """``value`` moved into ``domain``'s bounds (and onto its grid of multiples of ``q``, if quantized).

    A perturbation of ``old`` that the grid would snap back onto ``old`` moves one step of ``q``
    in its direction instead (tune.qrandint(2, 32, 2) at 4 goes to 2 or 6, never stays at 4).
    """
    lower, upper = getattr(domain, "lower", None), getattr(domain, "upper", None)
    # The domain's kind decides, not its bounds: tune.uniform(0, 1) is a float domain.
    is_int = isinstance(domain, Integer)
    cast = int if is_int else float
    q = getattr(getattr(domain, "sampler", None), "q", None)
    if isinstance(q, (int, float)) and q > 0 and isinstance(value, (int, float)):
        # Quantized domains hold both bounds (tune.qrandint(1, 10, 2) reaches 10).
        snapped = round(value / q) * q
        if isinstance(old, (int, float)) and value != old and abs(snapped - old) < q / 2:
            snapped = old + (q if value > old else -q)
        value = snapped
        if isinstance(upper, (int, float)) and value > upper:
            value = math.floor(upper / q) * q
        if isinstance(lower, (int, float)) and value < lower:
            value = math.ceil(lower / q) * q
        return cast(round(value)) if is_int else cast(value)
    if isinstance(upper, (int, float)):
        top = upper - 1 if is_int else upper
        if value > top:
            value = cast(top)
    if isinstance(lower, (int, float)) and value < lower:
        value = cast(lower)
    return value


def _validate_mutations(mutations: dict, owner: str, prefix: str = "") -> None:
    for key, spec in mutations.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            _validate_mutations(spec, owner, prefix=f"{name}/")
        elif _is_domain(spec) and spec.is_function():
            raise ValueError(
                f"{owner}: `hyperparam_mutations[{name!r}]` is a tune.sample_from, which a mutation cannot "
                "resample (it may read other config values). Pass a function of no arguments, e.g. "
                "lambda: random.uniform(0, 1), a list of values, or a domain such as tune.uniform(0, 1)."
            )
        elif isinstance(spec, (list, tuple)):
            if not spec:
                raise ValueError(f"{owner}: `hyperparam_mutations[{name!r}]` is an empty list.")
        elif not (callable(spec) or _is_domain(spec)):
            raise TypeError(
                f"{owner}: `hyperparam_mutations[{name!r}]` must be a list or tuple of values, a dict, "
                f"a callable or a search space such as tune.uniform(0, 1); got {type(spec).__name__}."
            )


def _sample_spec(spec: Any) -> Any:
    if isinstance(spec, (list, tuple)):
        return random.choice(list(spec))
    cats = _categories(spec)
    if cats is not None:
        return random.choice(cats)
    if _is_domain(spec):
        return _sample_domain(spec)
    return spec()


def _fill_config(config: dict, key: str, spec: Any) -> None:
    """Adds ``key`` to ``config`` by sampling ``spec`` (recursively for dicts)."""
    if isinstance(spec, dict):
        sub = config.setdefault(key, {})
        for k, v in spec.items():
            if k not in sub:
                _fill_config(sub, k, v)
        return
    config[key] = _sample_spec(spec)


def explore(
    config: dict,
    mutations: dict,
    resample_probability: float,
    perturbation_factors: tuple = (1.2, 0.8),
    custom_explore_fn: Callable[[dict], dict] | None = None,
) -> dict:
    """Returns a perturbed copy of ``config``.

    For each mutated key: a list value moves to a neighbouring entry (or is
    resampled with ``resample_probability``, or when the current value is not in
    the list); a search-space domain or callable is resampled with
    ``resample_probability``, otherwise the value is multiplied by one of
    ``perturbation_factors`` (kept inside the domain's bounds, integers stay
    integers). ``custom_explore_fn`` then post-processes the new config.
    """
    new_config = copy.deepcopy(config)
    for key, spec in mutations.items():
        if isinstance(spec, dict):
            new_config[key] = explore(config.get(key, {}), spec, resample_probability, perturbation_factors, None)
            continue
        cats = list(spec) if isinstance(spec, (list, tuple)) else _categories(spec)
        if key not in config:
            new_config[key] = _sample_spec(spec)
        elif cats is not None:
            if random.random() < resample_probability or config[key] not in cats:
                new_config[key] = random.choice(cats)
            else:
                idx = cats.index(config[key]) + random.choice([-1, 1])
                new_config[key] = cats[min(max(idx, 0), len(cats) - 1)]
        else:
            old = config[key]
            if random.random() < resample_probability:
                value = _sample_spec(spec)
            else:
                value = old * random.choice(list(perturbation_factors))
                if _is_domain(spec):
                    value = _clip_to_domain(spec, value, old)
            # As on Ray, a value keeps the kind it started as: a flag stays a flag (a resample may
            # flip it), an integer stays an integer (3 * 1.2 is 4, not 3; a resampled 6.3 is 6).
            if isinstance(old, bool):
                value = bool(value)
            elif isinstance(old, int) and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = int(round(value))
            new_config[key] = value
    if custom_explore_fn is not None:
        new_config = custom_explore_fn(new_config)
        if not isinstance(new_config, dict):
            raise ValueError(
                f"custom_explore_fn must return the new config dict, got {type(new_config).__name__}."
            )
    return new_config


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _flatten(config: dict, mutations: dict, prefix: str = "") -> dict:
    out = {}
    for key, spec in mutations.items():
        if key not in config:
            continue
        if isinstance(spec, dict) and isinstance(config[key], dict):
            out.update(_flatten(config[key], spec, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = config[key]
    return out


def make_experiment_tag(orig_tag: str, config: dict, mutations: dict) -> str:
    """``"<orig_tag>@perturbed[lr=0.001,alpha=0.5]"``."""
    params = ",".join(f"{k}={_format_value(v)}" for k, v in _flatten(config, mutations).items())
    return f"{orig_tag}@perturbed[{params}]"



def _iteration_of(trial: "Trial", checkpoint, default: int) -> int:
    """The iteration ``checkpoint`` was taken at (a function trainable's latest checkpoint may be older
    than its last result); ``default`` when the trial's own checkpoints do not know it."""
    if checkpoint is not None:
        started_from = getattr(trial, "started_from", None)
        if started_from is not None and started_from.path == checkpoint.path:
            return getattr(trial, "started_from_iteration", default)  # a copy of another trial's
        for own, metrics in trial.checkpoint_manager.checkpoints:
            if own.path == checkpoint.path and isinstance(metrics, dict) and TRAINING_ITERATION in metrics:
                return metrics[TRAINING_ITERATION]
    return default

class _PBTTrialState:
    __slots__ = (
        "orig_tag",
        "last_score",
        "last_checkpoint",
        "last_checkpoint_iter",
        "last_perturbation_time",
        "last_train_time",
        "last_result",
        "rank_key",
        "finished",
        "synced_at",
    )

    def __init__(self, trial: "Trial"):
        self.orig_tag = trial.experiment_tag
        self.last_score: float | None = None
        self.last_checkpoint = None
        self.last_checkpoint_iter = 0
        self.last_perturbation_time = 0.0
        self.last_train_time = 0.0
        self.last_result: dict | None = None
        self.rank_key: tuple[float, int] | None = None
        self.finished = False
        self.synced_at: float | None = None


class PopulationBasedTraining(FIFOScheduler):
    """Population Based Training (Jaderberg et al., 2017).

    Every ``perturbation_interval`` units of ``time_attr``, a trial is ranked
    against the population by its latest result. A trial in the top
    ``quantile_fraction`` saves a checkpoint; a trial in the bottom quantile
    copies ("exploits") the checkpoint and config of a random top trial, then
    perturbs ("explores") the config by ``hyperparam_mutations`` and restarts
    from the copied checkpoint. The trainable must save and restore checkpoints.

    With ``synch=True`` every trial waits at the perturbation point until the
    whole population has reached it, then all are ranked and perturbed at once.

    Each exploit is appended to ``pbt_global.txt`` and to the receiving trial's
    ``pbt_policy_<trial_id>.txt`` in the experiment directory (when
    ``log_config``); :class:`PopulationBasedTrainingReplay` replays the latter.

    Ranking keeps the population sorted, so deciding a trial's quantile costs
    a binary search, not a pass over the population.

    Args:
        time_attr: The result field that measures training progress; it must increase.
        metric: The result field to optimise. Taken from ``TuneConfig`` when None.
        mode: ``"min"`` or ``"max"``. Taken from ``TuneConfig`` when None.
        perturbation_interval: How much ``time_attr`` passes between perturbations.
        burn_in_period: No perturbation before this much ``time_attr``.
        hyperparam_mutations: Per hyperparameter, a list of allowed values, a
            search-space domain (``tune.uniform(...)``), a callable returning a
            value, or a dict of these for nested configs.
        quantile_fraction: The fraction of the population in the top and bottom
            quantiles, between 0 and 0.5.
        resample_probability: Probability that a value is drawn anew instead of
            perturbed.
        perturbation_factors: Factors a continuous value is multiplied by.
        custom_explore_fn: ``fn(config) -> config`` applied after the perturbation.
        log_config: Write the policy logs.
        require_attrs: Raise if a result lacks ``time_attr`` or ``metric``.
        synch: Synchronous PBT.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.schedulers import PopulationBasedTraining
        >>> pbt = PopulationBasedTraining(
        ...     time_attr="training_iteration", metric="loss", mode="min",
        ...     perturbation_interval=2,
        ...     hyperparam_mutations={"lr": [1e-3, 5e-4, 1e-4], "momentum": lambda: 0.9},
        ... )
    """

    _requires_checkpointing = True
    # Set by set_state when the restored population all waits at the sync point.
    _perturb_on_next_choice = False

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: dict | None = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: tuple[float, float] = (1.2, 0.8),
        custom_explore_fn: Callable[[dict], dict] | None = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
    ):
        owner = type(self).__name__
        hyperparam_mutations = hyperparam_mutations or {}
        if not isinstance(hyperparam_mutations, dict):
            raise TypeError(f"{owner}: `hyperparam_mutations` must be a dict, got {type(hyperparam_mutations).__name__}.")
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError(f"{owner}: give `hyperparam_mutations` or `custom_explore_fn` (or both); got neither.")
        _validate_mutations(hyperparam_mutations, owner)
        if not isinstance(quantile_fraction, (int, float)) or not 0 <= quantile_fraction <= 0.5:
            raise ValueError(f"{owner}: `quantile_fraction` must be between 0 and 0.5, got {quantile_fraction!r}.")
        if not isinstance(resample_probability, (int, float)) or not 0 <= resample_probability <= 1:
            raise ValueError(
                f"{owner}: `resample_probability` must be between 0 and 1, got {resample_probability!r}."
            )
        validate_positive(perturbation_interval, "perturbation_interval", owner)
        validate_positive(burn_in_period, "burn_in_period", owner, allow_zero=True)
        factors = tuple(perturbation_factors) if isinstance(perturbation_factors, (list, tuple)) else ()
        if not factors or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in factors):
            raise ValueError(
                f"{owner}: `perturbation_factors` must be a non-empty tuple of numbers, got {perturbation_factors!r}."
            )
        if custom_explore_fn is not None and not callable(custom_explore_fn):
            raise TypeError(f"{owner}: `custom_explore_fn` must be callable, got {type(custom_explore_fn).__name__}.")
        validate_mode(mode, owner)
        super().__init__(metric=metric, mode=mode)
        self._time_attr = time_attr
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = factors
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._next_perturbation_sync = max(perturbation_interval, burn_in_period)
        self._trial_state: dict[str, _PBTTrialState] = {}
        self._trials: dict[str, "Trial"] = {}
        # Population ranked by last score, ascending: (score, seq) keys.
        self._ranked: list[tuple[float, int]] = []
        self._rank_owner: dict[int, str] = {}
        self._seq = itertools.count()
        # Trials waiting to run, by least training time first (entries go stale lazily).
        self._run_queue: list[tuple[float, int, str]] = []
        # Each trial's current entry in the run queue (by its sequence number): an older entry is
        # stale even when its time matches again (an exploited trial takes its donor's time).
        self._queued_seq: dict[str, int] = {}
        self._num_checkpoints = 0
        self._num_perturbations = 0
        # Synchronous mode: live trials, and how many of them reached the sync point.
        self._num_live = 0
        self._num_at_sync = 0

    # -- setup -------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Takes metric and mode from ``TuneConfig``; raises ValueError if neither sets them."""
        return fill_search_properties(self, metric, mode)

    def _supports_search_alg(self, search_alg) -> bool:
        return is_default_searcher(search_alg)

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        require_metric_and_mode(self)
        self._trial_state[trial.trial_id] = _PBTTrialState(trial)
        self._trials[trial.trial_id] = trial
        self._num_live += 1
        self._fill_missing(trial)
        self._enqueue(trial)

    def _fill_missing(self, trial: "Trial") -> None:
        for key, spec in self._hyperparam_mutations.items():
            if key not in trial.config or isinstance(spec, dict):
                _fill_config(trial.config, key, spec)
                if not isinstance(spec, dict):
                    trial.evaluated_params[key] = trial.config[key]

    # -- ranking -------------------------------------------------------------
    def _set_score(self, trial_id: str, state: _PBTTrialState, score: float) -> None:
        if state.rank_key is not None:
            self._unrank(state)
        if score != score:  # NaN never ranks
            state.last_score = None
            return
        # Among equal scores the latest update ranks lowest, so a stalled trial is the one replaced.
        seq = next(self._seq)
        key = (score, -seq)
        insort(self._ranked, key)
        self._rank_owner[seq] = trial_id
        state.rank_key = key
        state.last_score = score

    def _unrank(self, state: _PBTTrialState) -> None:
        key = state.rank_key
        if key is None:
            return
        idx = bisect_left(self._ranked, key)
        if idx < len(self._ranked) and self._ranked[idx] == key:
            del self._ranked[idx]
        self._rank_owner.pop(-key[1], None)
        state.rank_key = None

    def _quantile_size(self) -> int:
        n = len(self._ranked)
        if n <= 1:
            return 0
        k = int(math.ceil(n * self._quantile_fraction))
        if k > n / 2:
            k = int(math.floor(n / 2))
        return k

    def _quantile_of(self, state: _PBTTrialState, k: int) -> int:
        """-1 for the bottom quantile, 1 for the top, 0 otherwise."""
        if state.rank_key is None or k == 0:
            return 0
        rank = bisect_left(self._ranked, state.rank_key)
        if rank < k:
            return -1
        if rank >= len(self._ranked) - k:
            return 1
        return 0

    def _random_top_trial(self, k: int) -> "Trial":
        n = len(self._ranked)
        key = self._ranked[random.randrange(n - k, n)]
        return self._trials[self._rank_owner[-key[1]]]

    # -- results ---------------------------------------------------------------
    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        for attr in (self._time_attr, self._metric):
            if attr not in result:
                if self._require_attrs:
                    raise RuntimeError(
                        f"PopulationBasedTraining cannot find {attr!r} in the result of trial {trial}: "
                        f"{sorted(result)}. Report it from your trainable, or pass require_attrs=False "
                        "to skip such results."
                    )
                return TrialScheduler.CONTINUE
        state = self._trial_state.get(trial.trial_id)
        if state is None:
            return TrialScheduler.CONTINUE
        if state.finished:  # a failed trial that is retried
            state.finished = False
            self._num_live += 1
        time = result[self._time_attr]
        if time < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if time - state.last_perturbation_time < self._perturbation_interval:
            return TrialScheduler.CONTINUE
        state.last_result = result
        state.last_train_time = time
        score = metric_sign(self._mode) * result[self._metric]
        self._set_score(trial.trial_id, state, score)
        self._record_result(trial, time, score)

        if not self._synch:
            state.last_perturbation_time = time
            k = self._quantile_size()
            decision = TrialScheduler.CONTINUE
            waiting = tune_controller.first_trial_with_status(_PENDING) or tune_controller.first_trial_with_status(
                _PAUSED
            )
            if waiting is not None and waiting is not trial:
                decision = TrialScheduler.PAUSE
            if self._checkpoint_or_exploit(tune_controller, trial, state, k, current=trial):
                return TrialScheduler.NOOP
            if decision == TrialScheduler.PAUSE:
                self._enqueue(trial)
            return decision

        # Synchronous mode: wait until every live trial has reached the sync point.
        if time < self._next_perturbation_sync:
            return TrialScheduler.CONTINUE
        self._mark_synced(state)
        if self._num_at_sync < self._num_live:
            # Checkpoint now, so that the population can be ranked and cloned while it waits.
            checkpoint = tune_controller.save_trial(trial) or trial.checkpoint
            state.last_checkpoint = checkpoint
            state.last_checkpoint_iter = _iteration_of(trial, checkpoint, result.get(TRAINING_ITERATION, 0))
            self._enqueue(trial)
            if checkpoint is None:
                return TrialScheduler.PAUSE
            tune_controller.pause_trial(trial, should_checkpoint=False)
            trial.restore_checkpoint = checkpoint
            return TrialScheduler.NOOP
        if self._perturb_population(tune_controller, trial, time):
            return TrialScheduler.NOOP
        return TrialScheduler.CONTINUE

    def _mark_synced(self, state: _PBTTrialState) -> None:
        sync = self._next_perturbation_sync
        if not state.finished and state.last_train_time >= sync and state.synced_at != sync:
            state.synced_at = sync
            self._num_at_sync += 1

    def _perturb_population(self, tune_controller, current: "Trial | None", time: float) -> bool:
        """Ranks and perturbs the whole population; True if ``current`` was exploited."""
        k = self._quantile_size()
        top, middle, bottom = [], [], []
        for tid, state in self._trial_state.items():
            if state.finished:
                continue
            q = self._quantile_of(state, k)
            (top if q == 1 else bottom if q == -1 else middle).append(tid)
        # Strong trials checkpoint before weak ones copy them.
        exploited_current = False
        for tid in top + middle + bottom:
            state = self._trial_state[tid]
            state.last_perturbation_time = state.last_train_time
            trial = self._trials[tid]
            if self._checkpoint_or_exploit(tune_controller, trial, state, k, current=current) and trial is current:
                exploited_current = True
        live = [s for s in self._trial_state.values() if not s.finished]
        self._next_perturbation_sync = max(
            self._next_perturbation_sync + self._perturbation_interval,
            max((s.last_train_time for s in live), default=0),
        )
        self._num_at_sync = 0
        for state in live:
            self._mark_synced(state)
        return exploited_current

    def _checkpoint_or_exploit(self, tune_controller, trial: "Trial", state: _PBTTrialState, k: int, current) -> bool:
        """Checkpoints a top trial or makes a bottom trial copy a top one; True if it copied."""
        quantile = self._quantile_of(state, k)
        if quantile == 1:
            if trial is current:
                state.last_checkpoint = tune_controller.save_trial(trial) or trial.checkpoint
                state.last_checkpoint_iter = _iteration_of(
                    trial, state.last_checkpoint, (state.last_result or {}).get(TRAINING_ITERATION, 0))
            elif state.last_checkpoint is None:
                # Waiting in synchronous mode: its checkpoint was taken when it arrived.
                state.last_checkpoint = trial.restore_checkpoint or trial.checkpoint
                state.last_checkpoint_iter = _iteration_of(
                    trial, state.last_checkpoint, (state.last_result or {}).get(TRAINING_ITERATION, 0))
            self._num_checkpoints += 1
        elif not self._synch:
            state.last_checkpoint = None
        if quantile != -1:
            return False
        donor = self._random_top_trial(k)
        donor_state = self._trial_state[donor.trial_id]
        checkpoint = donor_state.last_checkpoint
        donor_iter = donor_state.last_checkpoint_iter
        if checkpoint is not None and checkpoint is not donor.checkpoint and _deleted(checkpoint):
            # Dropped since (CheckpointConfig(num_to_keep)): the donor's latest is always kept.
            checkpoint = None
        if checkpoint is None:
            # The checkpoint holding the donor's progress: its latest own one, or, if it saved none since
            # it copied another trial, that copy (an older own one would pair old weights with the
            # config it was given since).
            checkpoint = donor.resume_checkpoint()
            donor_iter = _iteration_of(donor, checkpoint, donor.last_result.get(TRAINING_ITERATION, 0))
        if checkpoint is None:
            logger.info(
                "PopulationBasedTraining: trial %s has no checkpoint yet, so trial %s does not copy it now "
                "(a function trainable must report them: train.report(..., checkpoint=...)).",
                donor,
                trial,
            )
            return False
        self._exploit(tune_controller, trial, state, donor, donor_state, checkpoint, donor_iter)
        return True

    def _exploit(self, tune_controller, trial, state, donor, donor_state, checkpoint, donor_iter) -> None:
        new_config = self._explore_config(trial, donor, donor_state)
        logger.info(
            "[exploit] trial %s copies trial %s; [explore] %s -> %s",
            trial,
            donor,
            _flatten(donor.config, self._hyperparam_mutations),
            _flatten(new_config, self._hyperparam_mutations),
        )
        if self._log_config:
            self._log_policy(tune_controller, trial, state, donor, donor_state, new_config, donor_iter)
        new_tag = make_experiment_tag(state.orig_tag, new_config, self._hyperparam_mutations)
        if trial.status == "RUNNING":
            # A trial that waits in synchronous mode was already paused this way.
            tune_controller.pause_trial(trial, should_checkpoint=False)
        # What the trial was, should it end without a result from the donor's checkpoint (it was at
        # its last iteration): then nothing ran with the new config (see TrialLifecycle._on_done).
        trial._before_exploit = (trial.config, trial.experiment_tag, trial.num_results)
        trial.set_experiment_tag(new_tag)
        trial.set_config(new_config)
        trial.restore_checkpoint = checkpoint
        state.last_checkpoint = None
        self._num_perturbations += 1
        state.last_perturbation_time = donor_state.last_perturbation_time
        state.last_train_time = donor_state.last_train_time
        self._unrank(state)
        state.last_score = None
        self._enqueue(trial)

    def _explore_config(self, trial: "Trial", donor: "Trial", donor_state: _PBTTrialState) -> dict:
        """The recipient's new config: the donor's, perturbed."""
        return explore(
            donor.config,
            self._hyperparam_mutations,
            self._resample_probability,
            self._perturbation_factors,
            self._custom_explore_fn,
        )

    def _record_result(self, trial: "Trial", time: float, score: float) -> None:
        """Called with each result that reaches a perturbation point (PB2 keeps them)."""

    def _log_policy(self, tune_controller, trial, state, donor, donor_state, new_config, donor_iter) -> None:
        from tunesmith.tune.utils.serialization import to_jsonable

        exp_dir = trial.experiment_path or getattr(tune_controller, "experiment_path", None)
        if not exp_dir or "://" in str(exp_dir):
            return
        trial_iter = (state.last_result or trial.last_result or {}).get(TRAINING_ITERATION, 0)
        policy = [state.orig_tag, donor_state.orig_tag, trial_iter, donor_iter, donor.config, new_config]
        line = json.dumps(to_jsonable(policy)) + "\n"
        os.makedirs(exp_dir, exist_ok=True)
        with open(os.path.join(exp_dir, "pbt_global.txt"), "a") as f:
            f.write(line)
        donor_path = os.path.join(exp_dir, f"pbt_policy_{donor.trial_id}.txt")
        history = ""
        if os.path.exists(donor_path):
            with open(donor_path) as f:
                history = f.read()
        # The receiving trial's lineage becomes the donor's lineage plus this exploit.
        tmp = os.path.join(exp_dir, f".pbt_policy_{trial.trial_id}.txt.tmp{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(history + line)
        os.replace(tmp, os.path.join(exp_dir, f"pbt_policy_{trial.trial_id}.txt"))

    # -- scheduling ---------------------------------------------------------------
    def _enqueue(self, trial: "Trial") -> None:
        state = self._trial_state.get(trial.trial_id)
        if state is not None:
            seq = next(self._seq)
            self._queued_seq[trial.trial_id] = seq
            heapq.heappush(self._run_queue, (state.last_train_time, seq, trial.trial_id))

    def choose_trial_to_run(self, tune_controller) -> "Trial | None":
        """The waiting trial with the least training time (in sync mode: behind the sync point)."""
        if self._perturb_on_next_choice:
            self._perturb_on_next_choice = False
            if self._synch and self._num_live and self._num_at_sync >= self._num_live:
                self._perturb_population(tune_controller, None, self._next_perturbation_sync)
        queue = self._run_queue
        pausing = []  # entries of trials whose pause is still in flight
        chosen = None
        while queue:
            entry = queue[0]
            train_time, seq, tid = entry
            trial = self._trials.get(tid)
            state = self._trial_state.get(tid)
            if (trial is None or state is None or state.finished or train_time != state.last_train_time
                    or self._queued_seq.get(tid) != seq):
                heapq.heappop(queue)
                continue
            if trial.status == "RUNNING":
                pausing.append(heapq.heappop(queue))
                continue
            if trial.status not in (_PENDING, _PAUSED):
                heapq.heappop(queue)
                continue
            if self._synch and state.last_train_time >= self._next_perturbation_sync:
                break
            chosen = trial
            break
        for entry in pausing:
            heapq.heappush(queue, entry)
        if chosen is not None:
            return chosen
        pending = tune_controller.first_trial_with_status(_PENDING)
        if pending is not None and not self._waits_at_sync(pending):
            return pending
        paused = tune_controller.first_trial_with_status(_PAUSED)
        if paused is not None and not self._synch:
            return paused
        return None

    def _waits_at_sync(self, trial: "Trial") -> bool:
        """In synchronous mode: whether the trial has reached the sync point (a restored
        trial waits there as PENDING, not PAUSED)."""
        if not self._synch:
            return False
        state = self._trial_state.get(trial.trial_id)
        return state is not None and not state.finished and state.last_train_time >= self._next_perturbation_sync

    def _forget(self, tune_controller, trial: "Trial") -> None:
        """A finished trial leaves the ranking and no longer holds back the population."""
        state = self._trial_state.get(trial.trial_id)
        if state is None or state.finished:
            return
        self._unrank(state)
        state.finished = True
        self._num_live -= 1
        if state.synced_at == self._next_perturbation_sync:
            self._num_at_sync -= 1
        if self._synch and self._num_live and self._num_at_sync >= self._num_live:
            # Everyone left is waiting at the sync point: perturb them now.
            self._perturb_population(tune_controller, None, self._next_perturbation_sync)

    def on_trial_complete(self, tune_controller, trial: "Trial", result: dict) -> None:
        self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: "Trial") -> None:
        self._forget(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: "Trial") -> None:
        self._forget(tune_controller, trial)

    # -- state ----------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        return {**super()._state_settings(), "time_attr": self._time_attr, "synch": self._synch}

    def _experiment_path(self) -> str | None:
        for trial in self._trials.values():
            if trial.experiment_path:
                return trial.experiment_path
        return None

    def get_state(self) -> dict:
        """Per trial: original tag, last score, rank, checkpoint (by path), perturbation times;
        plus the run queue, counters and the synchronous-mode sync point. Plain data."""
        state = super().get_state()
        exp_dir = self._experiment_path()
        trials = {}
        for tid, st in self._trial_state.items():
            trials[tid] = {
                "orig_tag": st.orig_tag,
                "last_score": st.last_score,
                "last_checkpoint": checkpoint_ref(st.last_checkpoint, exp_dir),
                "last_checkpoint_iter": st.last_checkpoint_iter,
                "last_perturbation_time": st.last_perturbation_time,
                "last_train_time": st.last_train_time,
                "last_result": st.last_result,
                "rank_seq": None if st.rank_key is None else -st.rank_key[1],
                "finished": st.finished,
                "synced_at": st.synced_at,
            }
        state["trials"] = trials
        state["run_queue"] = [[t, seq, tid] for t, seq, tid in self._run_queue]
        state["next_perturbation_sync"] = self._next_perturbation_sync
        state["num_checkpoints"] = self._num_checkpoints
        state["num_perturbations"] = self._num_perturbations
        return state

    def set_state(self, state: dict, trials) -> None:
        """Rebuilds the population over the restored trials.

        A trial counts as live exactly when its restored status is unfinished, so
        trials that ended before the restore neither rank nor hold back a
        synchronous sync point. Remembered checkpoints are found among the
        restored trials' checkpoints by their path in the experiment.
        """
        super().set_state(state, trials)
        trials = as_trial_dict(trials)
        resolver = CheckpointResolver(trials)
        self._trial_state = {}
        self._trials = {}
        self._ranked = []
        self._rank_owner = {}
        used = [-1]
        for tid, data in state["trials"].items():
            trial = trials.get(tid)
            if trial is None:
                continue
            st = _PBTTrialState(trial)
            st.orig_tag = data["orig_tag"]
            st.last_score = data["last_score"]
            st.last_checkpoint = resolver.resolve(data["last_checkpoint"])
            st.last_checkpoint_iter = data["last_checkpoint_iter"]
            st.last_perturbation_time = data["last_perturbation_time"]
            st.last_train_time = data["last_train_time"]
            st.last_result = data["last_result"]
            st.synced_at = data["synced_at"]
            st.finished = is_finished(trial)
            seq = data["rank_seq"]
            if seq is not None:
                used.append(seq)
                if not st.finished and st.last_score is not None:
                    st.rank_key = (st.last_score, -seq)
                    self._ranked.append(st.rank_key)
                    self._rank_owner[seq] = tid
            self._trial_state[tid] = st
            self._trials[tid] = trial
        self._ranked.sort()
        queue = []
        for train_time, seq, tid in state["run_queue"]:
            used.append(seq)
            if tid in self._trial_state:
                queue.append((train_time, seq, tid))
        self._seq = itertools.count(max(used) + 1)
        self._run_queue = queue
        heapq.heapify(self._run_queue)
        self._next_perturbation_sync = state["next_perturbation_sync"]
        self._num_checkpoints = int(state["num_checkpoints"])
        self._num_perturbations = int(state["num_perturbations"])
        live = [st for st in self._trial_state.values() if not st.finished]
        self._num_live = len(live)
        self._num_at_sync = sum(1 for st in live if st.synced_at == self._next_perturbation_sync)
        # Restored trials may all be PENDING: each live one needs a current entry in the queue.
        self._queued_seq = {}
        for t, seq, tid in sorted(self._run_queue, key=lambda e: e[1]):
            if t == self._trial_state[tid].last_train_time:
                self._queued_seq[tid] = seq  # the newest entry at its time is its current one
        queued = set(self._queued_seq)
        for tid, st in self._trial_state.items():
            if not st.finished and tid not in queued:
                self._enqueue(self._trials[tid])
        for tid, trial in trials.items():
            if tid not in self._trial_state and not is_finished(trial):
                self.on_trial_add(None, trial)
        # Everyone still live may already wait at the sync point (the others ended).
        self._perturb_on_next_choice = bool(self._synch and self._num_live and self._num_at_sync >= self._num_live)

    def debug_string(self) -> str:
        return "PopulationBasedTraining: {} checkpoints, {} perturbs".format(
            self._num_checkpoints, self._num_perturbations
        )


def _read_policy(policy_file: str) -> list[list]:
    rows = []
    with open(policy_file) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"Could not read PBT policy file {policy_file!r}: line {lineno} is not JSON.") from None
            if not isinstance(row, list) or len(row) != 6:
                raise ValueError(
                    f"Could not read PBT policy file {policy_file!r}: line {lineno} is not a policy row "
                    "[tag, donor_tag, iteration, donor_iteration, donor_config, new_config]."
                )
            rows.append(row)
    return rows


def _policy_chain(rows: list) -> tuple[dict, list[tuple[int, dict]]]:
    """The config a replay starts from, and its ``(iteration, config)`` changes, from a trial's policy rows
    ``[tag, donor tag, iteration, donor iteration, donor config, new config]``.

    A row continues the one before it when that one's trial is this row's donor. Ray's PBT appends a row
    to a file that holds a former lineage when the trial's new donor has none of its own: the rows before
    the break were overwritten by the later exploit, and are not replayed.
    """
    policy, start, after = [], None, None
    for row in reversed(rows):
        if after is not None and row[0] != after[1]:
            break
        policy.append((int(row[3]), row[5]))
        start, after = row[4], row
    return start, policy[::-1]


class PopulationBasedTrainingReplay(FIFOScheduler):
    """Replays the hyperparameter schedule that one trial of a PBT run followed.

    Reads the trial's ``pbt_policy_<trial_id>.txt``: the trial starts with the
    config of its earliest ancestor and, at each recorded training iteration,
    switches to the config that PBT gave it there (restarting from its own
    checkpoint of that moment). The scheduler accepts exactly one trial.

    Args:
        policy_file: Path of a ``pbt_policy_<trial_id>.txt`` file.
        experiment_dir: Alternatively, the PBT experiment directory ...
        trial_id: ... and the id of the trial to replay.

    Example:
        >>> from tunesmith.tune.schedulers import PopulationBasedTrainingReplay
        >>> replay = PopulationBasedTrainingReplay(  # doctest: +SKIP
        ...     experiment_dir="~/tunesmith_results/pbt_experiment", trial_id="3a6f1_00001")
    """

    _requires_checkpointing = True

    def __init__(self, policy_file: str | None = None, experiment_dir: str | None = None, trial_id: str | None = None):
        super().__init__()
        if policy_file is None:
            if not experiment_dir or not trial_id:
                raise ValueError(
                    "PopulationBasedTrainingReplay needs `policy_file`, or both `experiment_dir` and `trial_id`; "
                    f"got policy_file={policy_file!r}, experiment_dir={experiment_dir!r}, trial_id={trial_id!r}."
                )
            policy_file = os.path.join(os.path.expanduser(experiment_dir), f"pbt_policy_{trial_id}.txt")
        policy_file = os.path.expanduser(policy_file)
        if not os.path.exists(policy_file):
            raise ValueError(f"PopulationBasedTrainingReplay: policy file {policy_file!r} does not exist.")
        rows = _read_policy(policy_file)
        if not rows:
            raise ValueError(f"PopulationBasedTrainingReplay: policy file {policy_file!r} has no entries.")
        self._policy_file = policy_file
        self.experiment_tag = rows[-1][0]
        self.config, self._policy = _policy_chain(rows)
        self._policy_iter = iter(self._policy)
        self._next_policy = next(self._policy_iter, None)
        self._trial: "Trial | None" = None
        self._num_perturbations = 0

    def _supports_search_alg(self, search_alg) -> bool:
        return is_default_searcher(search_alg)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        if self._trial is not None and self._trial is not trial:
            raise ValueError(
                "PopulationBasedTrainingReplay replays one trial, but a second one was added "
                f"({trial}). Run it with num_samples=1 and no grid search."
            )
        self._trial = trial
        trial.set_config(copy.deepcopy(self.config))
        trial.set_experiment_tag(self.experiment_tag)

    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        if TRAINING_ITERATION not in result or self._next_policy is None:
            return TrialScheduler.CONTINUE
        step = result[TRAINING_ITERATION]
        change_at, new_config = self._next_policy
        if step < change_at:
            return TrialScheduler.CONTINUE
        checkpoint = tune_controller.save_trial(trial)
        new_tag = make_experiment_tag(self.experiment_tag, new_config, new_config)
        tune_controller.pause_trial(trial, should_checkpoint=False)
        trial.set_experiment_tag(new_tag)
        trial.set_config(copy.deepcopy(new_config))
        trial.restore_checkpoint = checkpoint
        self._num_perturbations += 1
        self._next_policy = next(self._policy_iter, None)
        return TrialScheduler.NOOP

    # -- state ----------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        return {**super()._state_settings(), "policy_length": len(self._policy)}

    def get_state(self) -> dict:
        """How many policy changes were applied, and the replayed trial's id."""
        state = super().get_state()
        state["num_perturbations"] = self._num_perturbations
        state["trial_id"] = self._trial.trial_id if self._trial is not None else None
        return state

    def set_state(self, state: dict, trials) -> None:
        """Goes on with the next policy change; the restored trial keeps its current config."""
        super().set_state(state, trials)
        trials = as_trial_dict(trials)
        done = int(state["num_perturbations"])
        self._num_perturbations = done
        self._policy_iter = iter(self._policy[done:])
        self._next_policy = next(self._policy_iter, None)
        self._trial = trials.get(state["trial_id"]) if state["trial_id"] is not None else None
        if self._trial is None:
            for trial in trials.values():
                if not is_finished(trial):
                    self.on_trial_add(None, trial)

    def debug_string(self) -> str:
        return f"PopulationBasedTraining replay: step {self._num_perturbations} of {len(self._policy)}"


__all__ = ["PopulationBasedTraining", "PopulationBasedTrainingReplay", "explore"]
