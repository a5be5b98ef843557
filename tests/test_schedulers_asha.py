"""ASHA: rung cut-offs and stopping decisions on synthetic results, and a run of the real controller
on the simulated backend."""
from __future__ import annotations

import random

import numpy as np
import pytest

from tunesmith._internal.backend.simulated import SimulatedExperiment
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

C, S = TrialScheduler.CONTINUE, TrialScheduler.STOP


class _NoController:
    def first_trial_with_status(self, status):
        return None


def _trials(n):
    return [Trial("t", {}, trial_id=f"{i:05d}") for i in range(n)]


def test_rungs_are_at_grace_period_times_powers_of_eta():
    asha = AsyncHyperBandScheduler(metric="m", mode="max", max_t=100, grace_period=1, reduction_factor=4)
    assert [r.milestone for r in asha._brackets[0].rungs] == [64, 16, 4, 1]
    asha = ASHAScheduler(metric="m", mode="max", max_t=81, grace_period=1, reduction_factor=3, brackets=3)
    assert [[r.milestone for r in b.rungs] for b in asha._brackets] == [
        [81, 27, 9, 3, 1],
        [81, 27, 9, 3],
        [81, 27, 9],
    ]


def test_known_sequence_keeps_only_top_third_at_first_rung():
    asha = ASHAScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    ctrl = _NoController()
    trials = _trials(6)
    for t in trials:
        asha.on_trial_add(ctrl, t)
    accs = [0.5, 0.9, 0.3, 0.7, 0.1, 0.8]
    decisions = [asha.on_trial_result(ctrl, t, {"training_iteration": 1, "acc": a}) for t, a in zip(trials, accs)]
    # Cut-off = 66.7th percentile of what the rung had recorded before each result:
    # -, 0.5, 0.767, 0.633, 0.7, 0.633
    assert decisions == [C, C, S, C, S, C]


def test_cutoff_matches_numpy_percentile_for_random_sequences():
    rng = random.Random(0)
    for eta in (2, 3, 4):
        asha = ASHAScheduler(metric="acc", mode="max", max_t=100, grace_period=1, reduction_factor=eta)
        ctrl = _NoController()
        seen = []
        for t in _trials(200):
            asha.on_trial_add(ctrl, t)
            acc = rng.random()
            decision = asha.on_trial_result(ctrl, t, {"training_iteration": 1, "acc": acc})
            expected = C if not seen or acc >= np.percentile(seen, 100 * (1 - 1 / eta)) else S
            assert decision == expected
            seen.append(acc)


def test_min_mode_stops_the_larger_losses():
    asha = ASHAScheduler(metric="loss", mode="min", max_t=10, grace_period=2, reduction_factor=2)
    ctrl = _NoController()
    a, b, c = _trials(3)
    for t in (a, b, c):
        asha.on_trial_add(ctrl, t)
    assert asha.on_trial_result(ctrl, a, {"training_iteration": 1, "loss": 9.0}) == C  # before grace
    assert asha.on_trial_result(ctrl, a, {"training_iteration": 2, "loss": 1.0}) == C
    assert asha.on_trial_result(ctrl, b, {"training_iteration": 2, "loss": 5.0}) == S
    assert asha.on_trial_result(ctrl, c, {"training_iteration": 2, "loss": 0.5}) == C


def test_trial_is_judged_once_per_rung_and_at_the_highest_rung_reached():
    asha = ASHAScheduler(metric="acc", mode="max", max_t=100, grace_period=1, reduction_factor=2)
    ctrl = _NoController()
    a, b, c = _trials(3)
    for t in (a, b, c):
        asha.on_trial_add(ctrl, t)
    asha.on_trial_result(ctrl, a, {"training_iteration": 1, "acc": 0.9})
    # Between rungs nothing is judged, even a bad value.
    assert asha.on_trial_result(ctrl, a, {"training_iteration": 3, "acc": 0.0}) == C
    assert asha.on_trial_result(ctrl, b, {"training_iteration": 1, "acc": 0.1}) == S
    # c first reports at iteration 5: judged at rung 4 (empty), not at rung 1.
    assert asha.on_trial_result(ctrl, c, {"training_iteration": 5, "acc": 0.05}) == C
    assert asha._brackets[0].rungs[-3].trial_ids == {c.trial_id}
    assert c.trial_id not in asha._brackets[0].rungs[-1].trial_ids


def test_max_t_stops_trials_unless_stop_last_trials_is_false():
    asha = ASHAScheduler(metric="acc", mode="max", max_t=4, grace_period=1)
    ctrl = _NoController()
    (t,) = _trials(1)
    asha.on_trial_add(ctrl, t)
    assert asha.on_trial_result(ctrl, t, {"training_iteration": 4, "acc": 1.0}) == S
    asha = ASHAScheduler(metric="acc", mode="max", max_t=4, grace_period=1, stop_last_trials=False)
    asha.on_trial_add(ctrl, t)
    assert asha.on_trial_result(ctrl, t, {"training_iteration": 9, "acc": 1.0}) == C


def test_a_skipped_lower_rung_judges_nothing_later_when_stop_last_trials_is_false():
    """As on Ray: with stop_last_trials=False, a trial judged at rung 2 (it first reported past rung 1) was
    judged again at rung 1 on its next result, against another trial's value, and stopped."""
    for stop_last, expected in ((False, C), (True, S)):
        asha = ASHAScheduler(metric="score", mode="max", time_attr="step", max_t=100, grace_period=1,
                             reduction_factor=2, stop_last_trials=stop_last)
        ctrl = _NoController()
        a, b = _trials(2)
        for t in (a, b):
            asha.on_trial_add(ctrl, t)
        for step in range(1, 7):
            asha.on_trial_result(ctrl, a, {"step": step, "score": 10})
        assert asha.on_trial_result(ctrl, b, {"step": 2, "score": 20}) == C  # judged at rung 2
        assert asha.on_trial_result(ctrl, b, {"step": 3, "score": 5}) == expected


def test_results_missing_the_metric_are_ignored():
    asha = ASHAScheduler(metric="acc", mode="max", max_t=4)
    ctrl = _NoController()
    (t,) = _trials(1)
    asha.on_trial_add(ctrl, t)
    assert asha.on_trial_result(ctrl, t, {"training_iteration": 1}) == C


def test_simulated_run_finds_best_and_spends_fewer_iterations_than_fifo():
    def curve(config, state, it):
        return {"acc": config["q"] * (1 - 0.9 ** it)}

    configs = [{"q": q} for q in np.linspace(0.1, 1.0, 27)]
    random.Random(1).shuffle(configs)
    asha_sim = SimulatedExperiment(
        ASHAScheduler(metric="acc", mode="max", max_t=27, grace_period=1, reduction_factor=3),
        curve, max_concurrent=4, max_iterations=27,
    )
    fifo_sim = SimulatedExperiment(FIFOScheduler(), curve, max_concurrent=4, max_iterations=27)
    for c in configs:
        asha_sim.add_trial(c)
        fifo_sim.add_trial(c)
    asha_sim.run()
    fifo_sim.run()
    best = max(asha_sim.get_trials(), key=lambda t: t.last_result["acc"])
    assert best.config["q"] == 1.0 and best.last_result["training_iteration"] == 27
    assert fifo_sim.iterations_run == 27 * 27
    assert asha_sim.iterations_run <= 0.4 * fifo_sim.iterations_run


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"grace_period": 0}, "grace_period"),
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"brackets": 0}, "brackets"),
        ({"mode": "maximize"}, "mode"),
        ({"max_t": 5, "grace_period": 10}, "grace_period"),
    ],
)
def test_invalid_arguments_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ASHAScheduler(**kwargs)
