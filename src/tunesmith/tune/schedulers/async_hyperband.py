"""Asynchronous successive halving: ``AsyncHyperBandScheduler`` and its alias ``ASHAScheduler``."""
from __future__ import annotations

import math
from bisect import insort
from typing import TYPE_CHECKING, Any

from tunesmith.tune.schedulers._state import as_trial_dict, is_finished
from tunesmith.tune.schedulers._util import (
    fill_search_properties,
    metric_sign,
    require_metric_and_mode,
    validate_mode,
)
from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial


class _Rung:
    """The results recorded at one milestone, kept sorted (larger is better)."""

    __slots__ = ("milestone", "values", "trial_ids")

    def __init__(self, milestone: float):
        self.milestone = milestone
        self.values: list[float] = []
        self.trial_ids: set[str] = set()

    def cutoff(self, reduction_factor: float) -> float | None:
        """The ``(1 - 1/η)`` quantile of the recorded values, linearly interpolated."""
        values = self.values
        n = len(values)
        if not n:
            return None
        pos = (1.0 - 1.0 / reduction_factor) * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    def record(self, trial_id: str, value: float) -> None:
        self.trial_ids.add(trial_id)
        if value == value:  # NaN is remembered as "reached" but not ranked
            insort(self.values, value)


class _Bracket:
    """One ASHA bracket: rungs at ``grace_period * η**(k + s)`` below ``max_t``."""

    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int, stop_last_trials: bool):
        self.reduction_factor = reduction_factor
        self.max_t = max_t
        self.stop_last_trials = stop_last_trials
        # The epsilon keeps log(81)/log(3) from truncating to 3.
        num_rungs = int(math.log(max_t / min_t) / math.log(reduction_factor) + 1e-9) - s + 1
        # Largest milestone first: a result is checked against the highest rung it reached.
        self.rungs = [_Rung(min_t * reduction_factor ** (k + s)) for k in reversed(range(max(num_rungs, 0)))]

    def on_result(self, trial_id: str, cur_iter: float, cur_rew: float) -> str:
        action = TrialScheduler.CONTINUE
        rungs = self.rungs
        if rungs and cur_iter < rungs[-1].milestone:
            rungs = ()  # short of the first rung (most results early in a trial): nothing to judge
        for rung in rungs:
            if trial_id in rung.trial_ids and cur_iter >= rung.milestone and not self.stop_last_trials:
                break  # as on Ray: judged at this rung already; a lower rung it skipped judges nothing
            if cur_iter < rung.milestone or trial_id in rung.trial_ids:
                continue
            cutoff = rung.cutoff(self.reduction_factor)
            if cutoff is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            rung.record(trial_id, cur_rew)
            break
        if cur_iter >= self.max_t and self.stop_last_trials:
            action = TrialScheduler.STOP
        return action

    def debug_str(self, sign: float) -> str:
        parts = []
        for rung in self.rungs:
            cutoff = rung.cutoff(self.reduction_factor)
            shown = None if cutoff is None else sign * cutoff
            parts.append(f"Iter {rung.milestone:.3f}: {shown}")
        return "Bracket: " + " | ".join(parts)


class AsyncHyperBandScheduler(FIFOScheduler):
    """Asynchronous successive halving (ASHA) with one or more brackets.

    Each bracket has rungs at ``grace_period * reduction_factor**k`` (``k = s, s+1, ...``)
    up to ``max_t``. When a trial reaches a rung, its result is compared to all results
    recorded at that rung so far: it continues only if it is in the top
    ``1 / reduction_factor`` of them, otherwise it is stopped. No trial ever waits
    for others, so the scheduler needs no checkpoints. Per-result work is a few
    binary searches in the rung's sorted records.

    Args:
        time_attr: The result field that measures training progress; it must increase.
        metric: The result field to optimise. Taken from ``TuneConfig`` when None.
        mode: ``"min"`` or ``"max"``. Taken from ``TuneConfig`` when None.
        max_t: Trials are stopped at this value of ``time_attr``.
        grace_period: No trial is stopped before this value of ``time_attr``.
        reduction_factor: η; the fraction ``1/η`` of trials is kept at each rung.
        brackets: Number of brackets, each starting its rungs one factor of η later.
        stop_last_trials: Stop trials when they reach ``max_t``.

    Example:
        >>> from tunesmith.tune.schedulers import ASHAScheduler
        >>> asha = ASHAScheduler(metric="loss", mode="min", max_t=100, grace_period=10)
        >>> [r.milestone for r in asha._brackets[0].rungs]
        [40, 10]
    """

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ):
        owner = type(self).__name__
        for name, value in (("max_t", max_t), ("grace_period", grace_period)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{owner}: `{name}` must be a number > 0, got {value!r}.")
        if grace_period > max_t:
            raise ValueError(f"{owner}: `grace_period` ({grace_period}) must not exceed `max_t` ({max_t}).")
        if not isinstance(reduction_factor, (int, float)) or reduction_factor <= 1:
            raise ValueError(f"{owner}: `reduction_factor` must be a number > 1, got {reduction_factor!r}.")
        if not isinstance(brackets, int) or isinstance(brackets, bool) or brackets < 1:
            raise ValueError(f"{owner}: `brackets` must be an integer >= 1, got {brackets!r}.")
        validate_mode(mode, owner)
        super().__init__(metric=metric, mode=mode)
        self._time_attr = time_attr
        self._max_t = max_t
        self._grace_period = grace_period
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._brackets = [
            _Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials) for s in range(brackets)
        ]
        self._trial_info: dict[str, _Bracket] = {}
        self._num_stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Takes metric and mode from ``TuneConfig``; raises ValueError if neither sets them."""
        return fill_search_properties(self, metric, mode)

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        require_metric_and_mode(self)
        if len(self._brackets) == 1:
            bracket = self._brackets[0]
        else:
            import numpy as np

            # Brackets with more rungs are preferred, as in the ASHA paper's setup.
            sizes = np.array([len(b.rungs) for b in self._brackets], dtype=float)
            probs = np.exp(sizes - sizes.max())
            bracket = self._brackets[int(np.random.choice(len(self._brackets), p=probs / probs.sum()))]
        self._trial_info[trial.trial_id] = bracket

    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        time_attr = self._time_attr
        if time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        cur_iter = result[time_attr]
        if cur_iter >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            bracket = self._trial_info.get(trial.trial_id)
            if bracket is None:
                return TrialScheduler.CONTINUE
            action = bracket.on_result(trial.trial_id, cur_iter, metric_sign(self._mode) * result[self._metric])
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def decision_points(self, trial: "Trial") -> tuple[str, tuple[float, ...]] | None:
        """The rungs of the trial's bracket and ``max_t``: ASHA decides nowhere else."""
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None:
            return None
        points = {rung.milestone for rung in bracket.rungs}
        if self._stop_last_trials:
            points.add(self._max_t)
        return self._time_attr, tuple(sorted(points))

    def on_trial_complete(self, tune_controller, trial: "Trial", result: dict) -> None:
        bracket = self._trial_info.pop(trial.trial_id, None)
        if bracket is not None and result and self._time_attr in result and self._metric in result:
            bracket.on_result(trial.trial_id, result[self._time_attr], metric_sign(self._mode) * result[self._metric])

    def on_trial_error(self, tune_controller, trial: "Trial") -> None:
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial: "Trial") -> None:
        self._trial_info.pop(trial.trial_id, None)

    # -- state ------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        return {
            **super()._state_settings(),
            "time_attr": self._time_attr,
            "max_t": self._max_t,
            "grace_period": self._grace_period,
            "reduction_factor": self._reduction_factor,
            "brackets": len(self._brackets),
            "stop_last_trials": self._stop_last_trials,
        }

    def get_state(self) -> dict:
        """Rung records per bracket, each live trial's bracket and the stop count (plain data)."""
        state = super().get_state()
        index = {id(b): i for i, b in enumerate(self._brackets)}
        state["brackets"] = [
            [
                {"milestone": rung.milestone, "values": list(rung.values), "trial_ids": sorted(rung.trial_ids)}
                for rung in bracket.rungs
            ]
            for bracket in self._brackets
        ]
        state["trial_brackets"] = {tid: index[id(b)] for tid, b in self._trial_info.items()}
        state["num_stopped"] = self._num_stopped
        return state

    def set_state(self, state: dict, trials) -> None:
        """Restores the rungs (recorded values are kept) and links live trials to their brackets."""
        super().set_state(state, trials)
        trials = as_trial_dict(trials)
        saved = state["brackets"]
        for bracket, rungs in zip(self._brackets, saved):
            if [r["milestone"] for r in rungs] != [r.milestone for r in bracket.rungs]:
                raise ValueError(
                    f"{type(self).__name__}: the saved rungs {[r['milestone'] for r in rungs]} do not match this "
                    f"scheduler's {[r.milestone for r in bracket.rungs]}. Restore with the settings the "
                    "experiment ran with."
                )
            for rung, data in zip(bracket.rungs, rungs):
                rung.values = [float(v) for v in data["values"]]
                rung.trial_ids = {tid for tid in data["trial_ids"] if tid in trials}
        self._trial_info = {}
        for tid, idx in state["trial_brackets"].items():
            trial = trials.get(tid)
            if trial is not None and not is_finished(trial):
                self._trial_info[tid] = self._brackets[idx]
        self._num_stopped = int(state["num_stopped"])
        for tid, trial in trials.items():
            if tid not in self._trial_info and tid not in state["trial_brackets"] and not is_finished(trial):
                self.on_trial_add(None, trial)

    def debug_string(self) -> str:
        sign = metric_sign(self._mode)
        out = f"Using AsyncHyperBand: num_stopped={self._num_stopped}"
        return out + "\n" + "\n".join(b.debug_str(sign) for b in self._brackets)


ASHAScheduler = AsyncHyperBandScheduler

__all__ = ["AsyncHyperBandScheduler", "ASHAScheduler"]
