"""``MedianStoppingRule``: stop a trial whose best result is below the median of the others."""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from typing import TYPE_CHECKING, Any

from tunesmith.tune.schedulers._state import as_trial_dict
from tunesmith.tune.schedulers._util import (
    fill_search_properties,
    metric_sign,
    require_metric_and_mode,
    validate_mode,
    validate_positive,
)
from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

# Integer progress counters (training_iteration) may skip at most this many values
# per result before the rule falls back to scanning the trials.
_MAX_BUCKET_GAP = 64


class _TrialRecord:
    __slots__ = ("times", "prefix", "last_time", "best")

    def __init__(self):
        self.times: list[float] = []  # times of results at or past the grace period
        self.prefix: list[float] = [0.0]  # prefix sums of their (signed) metric values
        self.last_time = -math.inf
        self.best = -math.inf

    def mean_until(self, t: float) -> float | None:
        k = bisect_right(self.times, t)
        return self.prefix[k] / k if k else None


class MedianStoppingRule(FIFOScheduler):
    """Stops a trial whose best result so far is worse than the median of the
    running averages of the other trials at the same point in time.

    The running average of a trial at time ``t`` is the mean of its results
    reported between ``grace_period`` and ``t``; the other trials are those
    that have reached ``t``. When fewer than ``min_samples_required`` others
    have, the trial goes on, yielding to waiting trials every
    ``min_time_slice``.

    When the progress measure is an integer counter (``training_iteration``),
    each result costs a few binary searches; for a continuous one
    (``time_total_s``) the trials that reached ``t`` are scanned.

    Args:
        time_attr: The result field that measures training progress.
        metric: The result field to optimise. Taken from ``TuneConfig`` when None.
        mode: ``"min"`` or ``"max"``. Taken from ``TuneConfig`` when None.
        grace_period: Only results at or after this time count, and no trial is
            stopped before it.
        min_samples_required: How many other trials must have reached the time.
        min_time_slice: A trial runs at least this long before yielding to
            waiting trials while there are too few samples.
        hard_stop: If False, pauses the trial instead of stopping it; paused
            trials are resumed FIFO when nothing else waits.

    Example:
        >>> from tunesmith.tune.schedulers import MedianStoppingRule
        >>> msr = MedianStoppingRule(time_attr="training_iteration", metric="acc",
        ...                          mode="max", grace_period=3, min_samples_required=2)
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: float = 0,
        hard_stop: bool = True,
    ):
        owner = type(self).__name__
        validate_mode(mode, owner)
        validate_positive(grace_period, "grace_period", owner, allow_zero=True)
        validate_positive(min_time_slice, "min_time_slice", owner, allow_zero=True)
        if not isinstance(min_samples_required, int) or isinstance(min_samples_required, bool) or min_samples_required < 1:
            raise ValueError(f"{owner}: `min_samples_required` must be an integer >= 1, got {min_samples_required!r}.")
        super().__init__(metric=metric, mode=mode)
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._hard_stop = hard_stop
        self._stopped_trials: set[str] = set()
        self._records: dict[str, _TrialRecord] = {}
        self._last_pause: dict[str, float] = {}
        # time value -> sorted running means of the trials that reached it
        self._buckets: dict[int, list[float]] | None = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Takes metric and mode from ``TuneConfig``; raises ValueError if neither sets them."""
        return fill_search_properties(self, metric, mode)

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        require_metric_and_mode(self)

    # -- bookkeeping ----------------------------------------------------------
    def _record(self, trial_id: str, time: float, value: float) -> _TrialRecord:
        rec = self._records.get(trial_id)
        if rec is None:
            rec = self._records[trial_id] = _TrialRecord()
        if time <= rec.last_time:
            return rec  # the same result seen again (on completion)
        buckets = self._buckets
        if buckets is not None:
            if float(time).is_integer() and (rec.last_time == -math.inf or time - rec.last_time <= _MAX_BUCKET_GAP):
                # Every integer time the trial passed gets its running mean at that time.
                start = int(math.ceil(self._grace_period))
                if rec.last_time != -math.inf:
                    start = max(start, int(rec.last_time) + 1)
                old_mean = rec.prefix[-1] / len(rec.times) if rec.times else None
                if old_mean is not None:
                    for u in range(start, int(time)):
                        insort(buckets.setdefault(u, []), old_mean)
            else:
                self._buckets = buckets = None
        if buckets is not None and not math.isfinite(value):
            self._buckets = buckets = None  # the sorted buckets cannot hold NaN: the general path
        rec.last_time = time
        if value > rec.best:
            rec.best = value
        if time >= self._grace_period:
            rec.times.append(time)
            rec.prefix.append(rec.prefix[-1] + value)
            if buckets is not None:
                insort(buckets.setdefault(int(time), []), rec.prefix[-1] / len(rec.times))
        return rec

    def _others_median(self, trial_id: str, rec: _TrialRecord, time: float) -> tuple[int, float]:
        """(number of other trials that reached ``time``, median of their running means)."""
        if self._buckets is not None:
            values = self._buckets.get(int(time), [])
            own = rec.mean_until(time)
            n = len(values)
            skip = bisect_left(values, own) if own is not None else n
            m = n - 1 if own is not None else n
            if m <= 0:
                return 0, math.nan

            def at(k: int) -> float:
                return values[k] if k < skip else values[k + 1]

            median = at(m // 2) if m % 2 else 0.5 * (at(m // 2 - 1) + at(m // 2))
            return m, median
        means = []
        for tid, other in self._records.items():
            if tid == trial_id or other.last_time < time:
                continue
            mean = other.mean_until(time)
            # A trial without results in [grace_period, time] has no running mean, and a NaN or
            # infinite one is no sample either (as on Ray).
            if mean is not None and math.isfinite(mean):
                means.append(mean)
        if not means:
            return 0, math.nan
        means.sort()
        m = len(means)
        median = means[m // 2] if m % 2 else 0.5 * (means[m // 2 - 1] + means[m // 2])
        return m, median

    # -- driver hooks -----------------------------------------------------------
    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        tid = trial.trial_id
        if tid in self._stopped_trials:
            # Only soft-stopped (paused) trials come back; they run FIFO from here.
            return TrialScheduler.CONTINUE
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        time = result[self._time_attr]
        rec = self._record(tid, time, metric_sign(self._mode) * result[self._metric])
        if time < self._grace_period:
            return TrialScheduler.CONTINUE
        n_others, median = self._others_median(tid, rec, time)
        if n_others < self._min_samples_required:
            return self._on_insufficient_samples(tune_controller, trial, time)
        if rec.best < median:
            self._stopped_trials.add(tid)
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def _on_insufficient_samples(self, tune_controller, trial: "Trial", time: float) -> str:
        if time - self._last_pause.get(trial.trial_id, -math.inf) <= self._min_time_slice:
            return TrialScheduler.CONTINUE
        waiting = tune_controller.first_trial_with_status("PENDING") or tune_controller.first_trial_with_status(
            "PAUSED"
        )
        if waiting is None or waiting is trial:
            return TrialScheduler.CONTINUE
        self._last_pause[trial.trial_id] = time
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller, trial: "Trial", result: dict) -> None:
        if result and self._time_attr in result and self._metric in result:
            self._record(trial.trial_id, result[self._time_attr], metric_sign(self._mode) * result[self._metric])

    # -- state ------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        return {
            **super()._state_settings(),
            "time_attr": self._time_attr,
            "grace_period": self._grace_period,
        }

    def get_state(self) -> dict:
        """Every trial's results since the grace period (as running sums), stops and pauses."""
        state = super().get_state()
        state["records"] = {
            tid: {
                "times": list(rec.times),
                "prefix": list(rec.prefix),
                "last_time": None if rec.last_time == -math.inf else rec.last_time,
                "best": None if rec.best == -math.inf else rec.best,
            }
            for tid, rec in self._records.items()
        }
        state["stopped_trials"] = sorted(self._stopped_trials)
        state["last_pause"] = dict(self._last_pause)
        # Pairs, not a dict: JSON would turn the integer times into strings.
        state["buckets"] = (
            None if self._buckets is None else [[t, list(values)] for t, values in sorted(self._buckets.items())]
        )
        return state

    def set_state(self, state: dict, trials) -> None:
        """Restores the results of every trial still in the experiment (finished ones count too)."""
        super().set_state(state, trials)
        trials = as_trial_dict(trials)
        self._records = {}
        for tid, data in state["records"].items():
            if tid not in trials:
                continue
            rec = _TrialRecord()
            rec.times = list(data["times"])
            rec.prefix = list(data["prefix"])
            rec.last_time = -math.inf if data["last_time"] is None else data["last_time"]
            rec.best = -math.inf if data["best"] is None else data["best"]
            self._records[tid] = rec
        self._stopped_trials = {tid for tid in state["stopped_trials"] if tid in trials}
        self._last_pause = {tid: t for tid, t in state["last_pause"].items() if tid in trials}
        buckets = state["buckets"]
        self._buckets = None if buckets is None else {int(t): list(values) for t, values in buckets}

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped_trials)}."


__all__ = ["MedianStoppingRule"]
