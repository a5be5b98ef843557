"""Synchronous HyperBand: ``HyperBandScheduler``."""
from __future__ import annotations

import collections
import logging
import math
from typing import TYPE_CHECKING, Any

from tunesmith.tune.schedulers._state import as_trial_dict, is_finished
from tunesmith.tune.schedulers._util import (
    fill_search_properties,
    metric_sign,
    require_metric_and_mode,
    validate_mode,
)
from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

_PENDING, _RUNNING, _PAUSED = "PENDING", "RUNNING", "PAUSED"


class _Bracket:
    """One successive-halving bracket: ``n0`` trials start with budget ``r0``.

    At each rung the live trials wait (paused) until every one of them has
    reached the rung's budget; then the best ``ceil(n/η)`` go on with ``η``
    times the budget and the rest are stopped.
    """

    def __init__(
        self,
        time_attr: str,
        max_trials: int,
        init_t: float,
        max_t: float,
        eta: float,
        s: int,
        stop_last_trials: bool = True,
    ):
        self._time_attr = time_attr
        self._n = self._n0 = max_trials
        self._r = self._r0 = init_t
        self._max_t = max_t
        self._cumul_r = init_t
        self._eta = eta
        self._halves = s
        self._s = s
        self.stop_last_trials = stop_last_trials
        self._live: dict[str, "Trial"] = {}
        self._all: list[str] = []  # ids of every trial ever added
        self._last_time: dict[str, float] = {}
        self._last_score: dict[str, float] = {}
        # Live trials still short of the current rung; empty means the rung is done.
        self._behind: set[str] = set()
        self._runnable: collections.deque["Trial"] = collections.deque()
        # Kept trials whose pause was still in flight when the rung completed.
        self._to_unpause: set[str] = set()
        self._completed_progress = 0.0
        self._total_work = self._calculate_total_work()

    # -- sizes ------------------------------------------------------------
    @property
    def n0(self) -> int:
        return self._n0

    @property
    def r0(self) -> float:
        return self._r0

    def rung_sizes(self) -> list[tuple[int, float]]:
        """``(trials, budget)`` at each rung of this bracket, as the paper lays them out."""
        out = []
        n, r = self._n0, self._r0
        for _ in range(self._s + 1):
            out.append((n, r))
            n = int(math.ceil(n / self._eta))
            r = min(r * self._eta, self._max_t)
        return out

    def _calculate_total_work(self) -> float:
        work, prev = 0.0, 0.0
        for n, r in self.rung_sizes():
            work += n * (r - prev)
            prev = r
        return work or 1.0

    # -- membership -------------------------------------------------------
    def add_trial(self, trial: "Trial") -> None:
        self._live[trial.trial_id] = trial
        self._all.append(trial.trial_id)
        self._behind.add(trial.trial_id)
        self._runnable.append(trial)

    def filled(self) -> bool:
        # Every trial ever added counts (on Ray, only live ones: there, a trial that ended leaves room, and
        # with trials made one at a time, as max_concurrent_trials=1 makes them, all go to one bracket).
        return len(self._all) >= self._n0

    def current_trials(self) -> list["Trial"]:
        return list(self._live.values())

    def has_trial(self, trial: "Trial") -> bool:
        return trial.trial_id in self._live

    def cleanup_trial(self, trial: "Trial") -> None:
        self._live.pop(trial.trial_id, None)
        self._behind.discard(trial.trial_id)
        self._to_unpause.discard(trial.trial_id)

    # -- progress -----------------------------------------------------------
    def update_trial_stats(self, trial: "Trial", time: float, score: float | None) -> None:
        tid = trial.trial_id
        prev = self._last_time.get(tid, 0.0)
        self._completed_progress += max(0.0, min(time, self._cumul_r) - min(prev, self._cumul_r))
        self._last_time[tid] = time
        if score is not None:
            self._last_score[tid] = score
        if time >= self._cumul_r:
            self._behind.discard(tid)

    def continue_trial(self, trial: "Trial") -> bool:
        if not self.stop_last_trials and self._halves == 0:
            return True
        return self._last_time.get(trial.trial_id, 0.0) < self._cumul_r

    def cur_iter_done(self) -> bool:
        return not self._behind

    def finished(self) -> bool:
        if not self.stop_last_trials:
            return False
        return self._halves == 0 and self.cur_iter_done()

    def completion_percentage(self) -> float:
        return self._completed_progress / self._total_work

    def successive_halving(self) -> tuple[list["Trial"], list["Trial"]]:
        """Advances to the next rung; returns (kept, dropped) live trials."""
        if self._halves == 0 and not self.stop_last_trials:
            return list(self._live.values()), []
        self._halves -= 1
        self._n = int(math.ceil(self._n / self._eta))
        self._r = min(self._r * self._eta, self._max_t)
        self._cumul_r = self._r
        scores = self._last_score
        ranked = sorted(self._live.values(), key=lambda t: scores.get(t.trial_id, -math.inf), reverse=True)
        good, bad = ranked[: self._n], ranked[self._n :]
        for t in bad:
            self.cleanup_trial(t)
        self._behind = {t.trial_id for t in good if self._last_time.get(t.trial_id, 0.0) < self._cumul_r}
        return good, bad

    def mark_runnable(self, trial: "Trial", pausing: bool = False) -> None:
        if pausing:
            self._to_unpause.add(trial.trial_id)
        self._runnable.append(trial)

    def on_started(self, trial: "Trial") -> None:
        self._to_unpause.discard(trial.trial_id)

    def next_pending(self) -> "Trial | None":
        """The next trial of this bracket to start: pending, or paused and due to resume."""
        queue = self._runnable
        waiting = 0
        while waiting < len(queue):
            trial = queue[waiting]
            tid = trial.trial_id
            if tid in self._live:
                if trial.status == _PENDING or (trial.status == _PAUSED and tid in self._to_unpause):
                    return trial
                if trial.status == _RUNNING and tid in self._to_unpause:
                    waiting += 1  # its pause has not completed yet
                    continue
            del queue[waiting]
        return None

    # -- state -----------------------------------------------------------------
    def get_state(self) -> dict:
        return {
            "s": self._s,
            "n": self._n,
            "r": self._r,
            "cumul_r": self._cumul_r,
            "halves": self._halves,
            "live": list(self._live),
            "all": list(self._all),
            "last_time": dict(self._last_time),
            "last_score": dict(self._last_score),
            "behind": sorted(self._behind),
            "runnable": [t.trial_id for t in self._runnable],
            "to_unpause": sorted(self._to_unpause),
            "completed_progress": self._completed_progress,
        }

    def set_state(self, state: dict, trials: dict[str, "Trial"]) -> bool:
        """Restores the bracket over ``trials``; True when a live trial left it (it needs processing)."""
        self._n, self._r, self._cumul_r = state["n"], state["r"], state["cumul_r"]
        self._halves = state["halves"]
        self._all = list(state["all"])
        self._last_time = {k: v for k, v in state["last_time"].items() if k in trials}
        self._last_score = {k: v for k, v in state["last_score"].items() if k in trials}
        self._completed_progress = state["completed_progress"]
        self._live = {}
        left = False
        for tid in state["live"]:
            trial = trials.get(tid)
            if trial is None or is_finished(trial):
                left = True
            else:
                self._live[tid] = trial
        self._behind = {tid for tid in state["behind"] if tid in self._live}
        self._to_unpause = {tid for tid in state["to_unpause"] if tid in self._live}
        # A restored trial may be PENDING where it was RUNNING or PAUSED: only trials that
        # are short of the current rung (or due to resume) may be started.
        self._runnable = collections.deque()
        queued = set()
        for tid in list(state["runnable"]) + list(self._live):
            trial = self._live.get(tid)
            if trial is None or tid in queued:
                continue
            if tid in self._to_unpause or self.continue_trial(trial):
                self._runnable.append(trial)
                queued.add(tid)
        return left

    def __repr__(self) -> str:
        status: dict[str, int] = {}
        for t in self._live.values():
            status[t.status] = status.get(t.status, 0) + 1
        return (
            f"Bracket(Max Size (n)={self._n}, Milestone (r)={self._cumul_r}, "
            f"completed={100 * self.completion_percentage():.1f}%): {status}"
        )


class HyperBandScheduler(FIFOScheduler):
    """Synchronous HyperBand, as in Li et al. (2016).

    With ``R = max_t`` and ``η = reduction_factor``, ``s_max = floor(log_η R)``
    and a band holds ``s_max + 1`` brackets; bracket ``s`` takes
    ``n_0 = ceil((s_max + 1) / (s + 1) · η^s)`` trials starting with budget
    ``r_0 = R · η^-s``. New trials fill the bracket with the fewest halvings
    (``s = 0``) first, so a small experiment stops few trials early. At a rung,
    trials are paused (checkpointed) until the whole bracket reaches it; then
    the best ``1/η`` are resumed from their checkpoints and the others are
    stopped. The trainable must be able to save and restore checkpoints.

    Args:
        time_attr: The result field that measures training progress; it must increase.
        metric: The result field to optimise. Taken from ``TuneConfig`` when None.
        mode: ``"min"`` or ``"max"``. Taken from ``TuneConfig`` when None.
        max_t: ``R``: the largest budget a trial gets.
        reduction_factor: ``η``.
        stop_last_trials: Stop trials when they reach ``max_t``.

    Example:
        >>> from tunesmith.tune.schedulers import HyperBandScheduler
        >>> hb = HyperBandScheduler(metric="loss", mode="min", max_t=81, reduction_factor=3)
        >>> [hb.bracket_layout(s)[0] for s in range(5)]
        [(5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]
    """

    _requires_checkpointing = True
    # Brackets that restored trials left, processed at the next choose_trial_to_run.
    _to_process: "list[_Bracket] | tuple" = ()

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ):
        owner = type(self).__name__
        if not isinstance(max_t, (int, float)) or isinstance(max_t, bool) or max_t <= 0:
            raise ValueError(f"{owner}: `max_t` must be a number > 0, got {max_t!r}.")
        if not isinstance(reduction_factor, (int, float)) or reduction_factor <= 1:
            raise ValueError(f"{owner}: `reduction_factor` must be a number > 1, got {reduction_factor!r}.")
        validate_mode(mode, owner)
        super().__init__(metric=metric, mode=mode)
        self._time_attr = time_attr
        self._eta = reduction_factor
        self._max_t_attr = max_t
        # s_max + 1 brackets, as on Ray: log(max_t) in base η, rounded (max_t=8, η=3: 3 brackets, the
        # last of them too small to make, and skipped).
        self._s_max_1 = max(1, int(round(math.log(max_t) / math.log(reduction_factor))) + 1)
        self._stop_last_trials = stop_last_trials
        self._hyperbands: list[list[_Bracket | None]] = [[]]
        self._state: dict = {"bracket": None, "band_idx": 0}
        self._trial_info: dict[str, tuple[_Bracket, int]] = {}
        self._num_stopped = 0
        self._to_process: list[_Bracket] = []
        self._warned_no_time = False

    # -- layout -------------------------------------------------------------
    def _get_n0(self, s: int) -> int:
        return int(math.ceil(self._s_max_1 / (s + 1) * self._eta**s))

    def _get_r0(self, s: int) -> float:
        """The first budget of bracket ``s``, a whole number as on Ray (0: the bracket is skipped); the
        first bracket's is ``max_t`` itself."""
        if s == 0:
            return self._max_t_attr
        return int(self._max_t_attr * self._eta ** (-s) + 1e-9)  # 81 / 3**4 is 1, not 0.999...

    def bracket_layout(self, s: int) -> list[tuple[int, float]]:
        """``(trials, budget)`` per rung of bracket ``s`` (``0 <= s <= s_max``)."""
        return self._create_bracket(s).rung_sizes()

    def _create_bracket(self, s: int) -> _Bracket:
        return _Bracket(
            self._time_attr,
            self._get_n0(s),
            self._get_r0(s),
            self._max_t_attr,
            self._eta,
            s,
            self._stop_last_trials,
        )

    def _cur_band_filled(self) -> bool:
        cur_band = self._hyperbands[self._state["band_idx"]]
        return len(cur_band) == self._s_max_1 and (cur_band[-1] is None or cur_band[-1].filled())

    def _next_bracket_index(self, cur_band: list) -> int:
        # Smaller brackets (fewer halvings) first.
        return len(cur_band)

    # -- driver hooks -------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Takes metric and mode from ``TuneConfig``; raises ValueError if neither sets them."""
        return fill_search_properties(self, metric, mode)

    def on_trial_add(self, tune_controller, trial: "Trial") -> None:
        require_metric_and_mode(self)
        cur_bracket = self._state["bracket"]
        cur_band = self._hyperbands[self._state["band_idx"]]
        if cur_bracket is None or cur_bracket.filled():
            while True:
                if self._cur_band_filled():
                    cur_band = []
                    self._hyperbands.append(cur_band)
                    self._state["band_idx"] += 1
                s = self._next_bracket_index(cur_band)
                if self._get_r0(s) <= 0:
                    cur_band.append(None)
                    continue
                cur_bracket = self._create_bracket(s)
                cur_band.append(cur_bracket)
                self._state["bracket"] = cur_bracket
                break
        cur_bracket.add_trial(trial)
        self._trial_info[trial.trial_id] = (cur_bracket, self._state["band_idx"])

    def decision_points(self, trial: "Trial") -> tuple[str, tuple[float, ...]] | None:
        """The milestone of the trial's bracket this round: it runs on until it reaches it."""
        info = self._trial_info.get(trial.trial_id)
        if info is None:
            return None
        return self._time_attr, (info[0]._cumul_r,)

    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        info = self._trial_info.get(trial.trial_id)
        if info is None:
            return TrialScheduler.CONTINUE
        if self._time_attr not in result:
            if not getattr(self, "_warned_no_time", False):  # (a scheduler saved before it had the flag)
                self._warned_no_time = True
                logger.warning("%s: a result of trial %s has no %r (its time_attr): the scheduler pauses and "
                               "stops trials only by results that have it. Reported: %s.", type(self).__name__,
                               trial, self._time_attr, sorted(k for k in result if not k.startswith("_")))
            return TrialScheduler.CONTINUE
        bracket = info[0]
        bracket.on_started(trial)
        score = result.get(self._metric)
        if score is not None:
            score = metric_sign(self._mode) * score
        bracket.update_trial_stats(trial, result[self._time_attr], score)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        if bracket._halves == 0 and bracket.stop_last_trials:
            # Last rung: nothing is compared any more, so there is no reason to wait.
            bracket.cleanup_trial(trial)
            self._trial_info.pop(trial.trial_id, None)
            return TrialScheduler.STOP
        action = self._process_bracket(tune_controller, bracket, trial)
        if action == TrialScheduler.PAUSE:
            self._on_pause(tune_controller, trial)
        return action

    def _process_bracket(self, tune_controller, bracket: _Bracket, current: "Trial | None" = None) -> str:
        """Halves a bracket whose live trials all reached the rung; returns the current trial's action."""
        action = TrialScheduler.PAUSE
        if not bracket.cur_iter_done():
            return action
        if bracket.finished():
            to_stop = [t for t in bracket.current_trials() if t is not current]
            for t in bracket.current_trials():
                bracket.cleanup_trial(t)
                self._trial_info.pop(t.trial_id, None)
            for t in to_stop:
                if not t.is_finished():
                    tune_controller.stop_trial(t)
            return TrialScheduler.STOP
        good, bad = bracket.successive_halving()
        self._num_stopped += len(bad)
        to_resume, pausing = [], []
        for t in bad:
            self._trial_info.pop(t.trial_id, None)
            if t is current:
                action = TrialScheduler.STOP
        for t in good:
            if bracket.continue_trial(t):
                if t is current:
                    action = TrialScheduler.CONTINUE
                elif t.status in (_PAUSED, _PENDING):
                    # PENDING: restored while it waited at the rung.
                    to_resume.append(t)
                elif t.status == _RUNNING:
                    pausing.append(t)
        for t in bad:
            if t is not current and not t.is_finished():
                tune_controller.stop_trial(t)
        for t in to_resume:
            self._unpause_trial(tune_controller, t)
            bracket.mark_runnable(t)
        for t in pausing:
            # The driver is still pausing it; it is started once PAUSED.
            self._unpause_trial(tune_controller, t)
            bracket.mark_runnable(t, pausing=True)
        return action

    def _on_pause(self, tune_controller, trial: "Trial") -> None:
        """Hook for subclasses that tell a searcher about pauses."""

    def _unpause_trial(self, tune_controller, trial: "Trial") -> None:
        tune_controller.resume_trial(trial)

    def _remove(self, tune_controller, trial: "Trial", result: dict | None = None) -> None:
        info = self._trial_info.pop(trial.trial_id, None)
        if info is None:
            return
        bracket = info[0]
        if result and self._time_attr in result:
            score = result.get(self._metric)
            bracket.update_trial_stats(
                trial, result[self._time_attr], None if score is None else metric_sign(self._mode) * score
            )
        bracket.cleanup_trial(trial)
        if bracket.current_trials() and not bracket.finished():
            self._process_bracket(tune_controller, bracket)

    def on_trial_complete(self, tune_controller, trial: "Trial", result: dict) -> None:
        self._remove(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial: "Trial") -> None:
        self._remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: "Trial") -> None:
        self._remove(tune_controller, trial)

    def _brackets_by_progress(self):
        for band in self._hyperbands:
            brackets = [b for b in band if b is not None]
            brackets.sort(key=lambda b: b.completion_percentage())
            yield from brackets

    def choose_trial_to_run(self, tune_controller, allow_recurse: bool = True) -> "Trial | None":
        if self._to_process:
            # Brackets that restored trials left: their rung may be complete now.
            to_process, self._to_process = self._to_process, []
            for bracket in to_process:
                if bracket.current_trials() and not bracket.finished():
                    self._process_bracket(tune_controller, bracket)
        for bracket in self._brackets_by_progress():
            trial = bracket.next_pending()
            if trial is not None:
                return trial
        # Nothing is runnable. If nothing runs either, a bracket may be waiting on a
        # trial that left it; process such brackets so their paused trials go on.
        if allow_recurse and tune_controller.first_trial_with_status(_RUNNING) is None:
            for bracket in list(self._brackets_by_progress()):
                if any(t.status == _PAUSED for t in bracket.current_trials()):
                    self._process_bracket(tune_controller, bracket)
            return self.choose_trial_to_run(tune_controller, allow_recurse=False)
        return None

    def debug_string(self) -> str:
        out = f"Using HyperBand: num_stopped={self._num_stopped} total_brackets={sum(len(b) for b in self._hyperbands)}"
        for i, band in enumerate(self._hyperbands):
            out += f"\nRound #{i}:"
            for bracket in band:
                if bracket is not None:
                    out += f"\n  {bracket}"
        return out

    # -- state ----------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        return {
            **super()._state_settings(),
            "time_attr": self._time_attr,
            "max_t": self._max_t_attr,
            "reduction_factor": self._eta,
            "stop_last_trials": self._stop_last_trials,
        }

    def get_state(self) -> dict:
        """Every band's brackets (trials by id), the bracket being filled and the stop count."""
        state = super().get_state()
        where: dict[int, list[int]] = {}
        bands = []
        for i, band in enumerate(self._hyperbands):
            saved_band = []
            for j, bracket in enumerate(band):
                if bracket is None:
                    saved_band.append(None)
                    continue
                where[id(bracket)] = [i, j]
                saved_band.append(bracket.get_state())
            bands.append(saved_band)
        state["bands"] = bands
        current = self._state["bracket"]
        state["current_bracket"] = where.get(id(current)) if current is not None else None
        state["band_idx"] = self._state["band_idx"]
        state["trial_brackets"] = {tid: where[id(b)] for tid, (b, _) in self._trial_info.items()}
        state["num_stopped"] = self._num_stopped
        return state

    def set_state(self, state: dict, trials) -> None:
        """Rebuilds the bands over the restored trials; brackets that finished trials left are
        processed at the next ``choose_trial_to_run`` (their rung may be complete)."""
        super().set_state(state, trials)
        trials = as_trial_dict(trials)
        self._hyperbands = []
        self._to_process = []
        for band in state["bands"]:
            rebuilt: list[_Bracket | None] = []
            for saved in band:
                if saved is None:
                    rebuilt.append(None)
                    continue
                bracket = self._create_bracket(saved["s"])
                if bracket.set_state(saved, trials):
                    self._to_process.append(bracket)
                rebuilt.append(bracket)
            self._hyperbands.append(rebuilt)
        if not self._hyperbands:
            self._hyperbands = [[]]
        current = state["current_bracket"]
        self._state = {
            "bracket": self._hyperbands[current[0]][current[1]] if current is not None else None,
            "band_idx": state["band_idx"],
        }
        self._trial_info = {}
        for tid, (i, j) in state["trial_brackets"].items():
            bracket = self._hyperbands[i][j]
            if tid in bracket._live:
                self._trial_info[tid] = (bracket, i)
        self._num_stopped = int(state["num_stopped"])
        for tid, trial in trials.items():
            if tid not in self._trial_info and not is_finished(trial) and tid not in state["trial_brackets"]:
                self.on_trial_add(None, trial)

    def state(self) -> dict:
        """The number of brackets and rounds created so far."""
        return {"num_brackets": sum(len(b) for b in self._hyperbands), "num_stopped": self._num_stopped}


__all__ = ["HyperBandScheduler"]
