"""``HyperBandForBOHB``: the HyperBand variant that the BOHB searcher pairs with."""
from __future__ import annotations

from typing import TYPE_CHECKING

from tunesmith.tune.schedulers._util import class_names, is_default_searcher, unwrap_searcher
from tunesmith.tune.schedulers.hyperband import HyperBandScheduler
from tunesmith.tune.schedulers.trial_scheduler import TrialScheduler

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial


def _searcher_of(tune_controller):
    search_alg = tune_controller.search_alg
    return unwrap_searcher(search_alg) if search_alg is not None else None


class HyperBandForBOHB(HyperBandScheduler):
    """HyperBand as BOHB uses it: true to the original algorithm.

    Unlike :class:`HyperBandScheduler`, brackets are filled largest first (the
    bracket with the most halvings, ``s = s_max``, takes the first trials), and
    there is no pipelining or straggler mitigation. When a trial is paused at a
    rung or resumed, the search algorithm hears of it through its optional
    ``on_pause(trial_id)`` / ``on_unpause(trial_id)`` methods, which is how
    ``TuneBOHB`` learns which budgets are complete, and the result that
    completes a rung carries ``result["hyperband_info"]["budget"]`` (the
    rung's budget), which ``TuneBOHB`` fits its model on. Standalone it behaves
    like HyperBand with the classic bracket order.

    Args:
        time_attr: The result field that measures training progress.
        metric: The result field to optimise. Taken from ``TuneConfig`` when None.
        mode: ``"min"`` or ``"max"``. Taken from ``TuneConfig`` when None.
        max_t: ``R``: the largest budget a trial gets.
        reduction_factor: ``η``.
        stop_last_trials: Stop trials when they reach ``max_t``.

    Example:
        >>> from tunesmith.tune.schedulers import HyperBandForBOHB
        >>> bohb = HyperBandForBOHB(metric="loss", mode="min", max_t=27, reduction_factor=3)
        >>> bohb.bracket_layout(3)
        [(27, 1), (9, 3), (3, 9), (1, 27)]
    """

    _requires_checkpointing = True

    def _supports_search_alg(self, search_alg) -> bool:
        return is_default_searcher(search_alg) or "TuneBOHB" in class_names(unwrap_searcher(search_alg))

    def on_trial_result(self, tune_controller, trial: "Trial", result: dict) -> str:
        # Like Ray, mark the result that completes a rung with the rung's budget, so that
        # TuneBOHB can fit its model per budget.
        info = self._trial_info.get(trial.trial_id)
        budget = info[0]._cumul_r if info is not None else None
        decision = super().on_trial_result(tune_controller, trial, result)
        result["hyperband_info"] = {}
        if budget is not None and result.get(self._time_attr, -1) >= budget:
            result["hyperband_info"]["budget"] = budget
        return decision

    def _process_bracket(self, tune_controller, bracket, current: "Trial | None" = None) -> str:
        # As Ray's: a rung is halved on a trial's result only once its bracket is filled and every
        # other trial of it waits paused. With few trials at a time (TuneBOHB counts only running
        # ones) the bracket fills while its first trials wait; halving earlier compares a handful.
        # When nothing runs any more, choose_trial_to_run processes what the bracket has.
        if current is not None and (not bracket.filled() or any(
                t.status != "PAUSED" for t in bracket.current_trials() if t is not current)):
            return TrialScheduler.PAUSE
        return super()._process_bracket(tune_controller, bracket, current)

    def _next_bracket_index(self, cur_band: list) -> int:
        # Largest bracket first, as in the original HyperBand.
        return self._s_max_1 - len(cur_band) - 1

    def _on_pause(self, tune_controller, trial: "Trial") -> None:
        searcher = _searcher_of(tune_controller)
        if searcher is not None and hasattr(searcher, "on_pause"):
            searcher.on_pause(trial.trial_id)

    def _unpause_trial(self, tune_controller, trial: "Trial") -> None:
        super()._unpause_trial(tune_controller, trial)
        searcher = _searcher_of(tune_controller)
        if searcher is not None and hasattr(searcher, "on_unpause"):
            searcher.on_unpause(trial.trial_id)

    def debug_string(self) -> str:
        return super().debug_string().replace("Using HyperBand", "Using HyperBandForBOHB", 1)


__all__ = ["HyperBandForBOHB"]
