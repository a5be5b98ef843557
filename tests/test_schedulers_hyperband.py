"""Synchronous HyperBand and HyperBandForBOHB on synthetic trials, run by the real controller on the
simulated backend (virtual time, no processes)."""
from __future__ import annotations

import random

import pytest

from tunesmith._internal.backend.simulated import SimulatedExperiment
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import HyperBandForBOHB, HyperBandScheduler


def _curve(config, state, it):
    state["steps"] = state.get("steps", 0) + 1
    return {"acc": config["q"] * it, "steps_in_state": state["steps"]}


def test_bracket_sizes_follow_the_paper_for_r81_eta3():
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=81, reduction_factor=3)
    # s_max = 4; n_0 = ceil(5/(s+1) * 3^s), r_0 = 81 * 3^-s
    assert [hb.bracket_layout(s)[0] for s in range(5)] == [(5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]
    assert hb.bracket_layout(4) == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    assert hb.bracket_layout(2) == [(15, 9), (5, 27), (2, 81)]


def test_a_max_t_between_powers_of_eta_has_rays_brackets_and_few_trials_run_to_it():
    """max_t=8, η=3 made 2 brackets, (2, 8) and (3, 2): the third of three trials was stopped at 6. As on
    Ray, log_3(8) rounds to 2: brackets (3, 8), (5, 2) and one with budget 0, skipped."""
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=8, reduction_factor=3)
    assert [hb.bracket_layout(s)[0] for s in range(2)] == [(3, 8), (5, 2)]
    sim = SimulatedExperiment(hb, _curve, max_concurrent=1, max_iterations=8)
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.2, 0.3)]
    sim.run()
    assert [sim.iteration_of(t) for t in trials] == [8, 8, 8]
    # A float max_t gives whole budgets as well (a rung at 3.33 paused trials at iteration 4).
    assert HyperBandScheduler(metric="acc", mode="max", max_t=10.0).bracket_layout(2)[0] == (9, 1)


def test_a_time_attr_missing_from_results_is_warned_about_once(caplog):
    """A misspelt time_attr left the scheduler doing nothing, without a word."""
    hb = HyperBandScheduler(metric="acc", mode="max", time_attr="epochs", max_t=9, reduction_factor=3)
    sim = SimulatedExperiment(hb, _curve, max_iterations=9)
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.2, 0.3, 0.4)]
    with caplog.at_level("WARNING", logger="tunesmith"):
        sim.run()
    assert [sim.iteration_of(t) for t in trials] == [9] * 4
    assert caplog.text.count("'epochs' (its time_attr)") == 1 and "training_iteration" in caplog.text


def test_trials_fill_smaller_brackets_first_then_a_new_band():
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=81, reduction_factor=3)
    sim = SimulatedExperiment(hb, _curve)
    for i in range(5 + 8 + 15 + 34 + 81 + 1):
        sim.add_trial({"q": i})
    band0 = hb._hyperbands[0]
    assert [(b.n0, b.r0) for b in band0] == [(5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]
    assert [len(b._all) for b in band0] == [5, 8, 15, 34, 81]
    assert len(hb._hyperbands) == 2 and len(hb._hyperbands[1][0]._all) == 1


def test_per_rung_counts_and_survivors_in_a_simulated_run():
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=27, reduction_factor=3)
    # s_max = 3: brackets (4 trials, r=27) and (6 trials, r=9 -> 2 trials to 27)
    sim = SimulatedExperiment(hb, _curve, max_concurrent=3, max_iterations=27)
    qs = [0.3, 0.9, 0.1, 0.5, 0.2, 0.8, 0.4, 0.7, 0.6, 0.05]
    trials = [sim.add_trial({"q": q}) for q in qs]
    sim.run()
    first, second = trials[:4], trials[4:]
    assert [sim.iteration_of(t) for t in first] == [27] * 4
    reached = {t.config["q"]: sim.iteration_of(t) for t in second}
    # All 6 reach 9; the best ceil(6/3) = 2 continue to 27.
    assert reached == {0.2: 9, 0.8: 27, 0.4: 9, 0.7: 27, 0.6: 9, 0.05: 9}
    assert all(t.status == Trial.TERMINATED for t in trials)


def test_paused_trials_resume_from_their_checkpoint():
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    # s_max = 2: first bracket (3 trials, r=9); second (5 trials, r=3 -> 2 to 9)
    sim = SimulatedExperiment(hb, _curve, max_concurrent=2, max_iterations=9)
    trials = [sim.add_trial({"q": q}) for q in (1, 1, 1, 0.1, 0.9, 0.2, 0.8, 0.3)]
    sim.run()
    survivors = [t for t in trials[3:] if sim.iteration_of(t) == 9]
    assert sorted(t.config["q"] for t in survivors) == [0.8, 0.9]
    for t in survivors:
        restores = [d for e, tid, d in sim.events if e == "restore" and tid == t.trial_id]
        assert restores == [(t.trial_id, 3)]
        # The training state came back with the checkpoint: 9 steps in all, not 6.
        assert t.last_result["steps_in_state"] == 9
        assert t.last_result["training_iteration"] == 9


def test_removing_a_trial_lets_its_bracket_go_on():
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    # The first bracket's trials (and the second bracket's fifth) are slow: by virtual second 3.5
    # the second bracket's first four trials have reached its rung (r=3) and wait there.
    slow = {0, 1, 2, 7}
    sim = SimulatedExperiment(hb, _curve, max_concurrent=8, max_iterations=9,
                              seconds=lambda config, it: 100.0 if config["i"] in slow else 1.0,
                              fail_at=lambda config, it: config["i"] == 7)
    qs = (1, 1, 1, 0.1, 0.9, 0.2, 0.8, 0.3)
    trials = [sim.add_trial({"q": q, "i": i}) for i, q in enumerate(qs)]
    assert not sim.advance(3.5)
    assert [t.status for t in trials[3:7]] == [Trial.PAUSED] * 4
    assert [sim.iteration_of(t) for t in trials[3:7]] == [3] * 4
    assert all(t.status == Trial.RUNNING and sim.iteration_of(t) == 0 for t in trials[:3] + trials[7:])
    # The fifth fails (at virtual second 100): the bracket must not wait for it.
    assert not sim.advance(100)
    assert trials[7].status == Trial.ERROR
    # The best two of the four went on from their rung's checkpoint; the other two ended there.
    restarted = {t.config["q"] for t in trials[3:7] if ("start", t.trial_id, 3) in sim.events}
    assert sorted(restarted) == [0.8, 0.9]
    assert sorted(t.config["q"] for t in trials[3:7] if t.status == Trial.TERMINATED) == [0.1, 0.2]
    sim.run()
    assert sorted(t.config["q"] for t in trials[3:7] if sim.iteration_of(t) == 9) == [0.8, 0.9]
    assert [sim.iteration_of(t) for t in trials[3:7] if t.config["q"] in (0.1, 0.2)] == [3, 3]


def test_bohb_fills_the_largest_bracket_first_and_tells_the_searcher():
    class TuneBOHB:
        def __init__(self):
            self.paused, self.unpaused = [], []

        def on_pause(self, trial_id):
            self.paused.append(trial_id)

        def on_unpause(self, trial_id):
            self.unpaused.append(trial_id)

    bohb = HyperBandForBOHB(metric="acc", mode="max", max_t=9, reduction_factor=3)
    sim = SimulatedExperiment(bohb, _curve, max_concurrent=9, max_iterations=9, search_alg=TuneBOHB())
    qs = [0.1 * i for i in range(1, 10)]
    random.Random(3).shuffle(qs)
    trials = [sim.add_trial({"q": q}) for q in qs]
    assert [(b.n0, b.r0) for b in bohb._hyperbands[0]] == [(9, 1)]
    sim.run()
    its = sorted(sim.iteration_of(t) for t in trials)
    assert its == [1] * 6 + [3] * 2 + [9]
    best = max(trials, key=lambda t: t.config["q"])
    assert sim.iteration_of(best) == 9
    # Trials wait at a rung until the whole bracket is there and paused (Ray's rule for BOHB): 8 at rung 1 and
    # 2 at rung 3 at least, the last one to arrive too when the others' pauses are still on their way.
    assert 8 + 2 <= len(sim.search_alg.paused) <= 9 + 3
    restarted = [tid for e, tid, _ in sim.events if e == "restore"]
    assert sorted(sim.search_alg.unpaused) == sorted(restarted)
    assert set(restarted) <= set(sim.search_alg.paused)
    assert bohb._supports_search_alg(sim.search_alg)


def test_hyperband_requires_checkpointing_and_validates():
    assert HyperBandScheduler._requires_checkpointing
    with pytest.raises(ValueError, match="reduction_factor"):
        HyperBandScheduler(reduction_factor=1)
    with pytest.raises(ValueError, match="max_t"):
        HyperBandScheduler(max_t=0)
    with pytest.raises(ValueError, match="metric"):
        HyperBandScheduler().on_trial_add(None, Trial("t", {}))
