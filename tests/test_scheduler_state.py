"""Scheduler state through get_state/set_state: a restored scheduler decides as the original would.

Each scheduler is driven on synthetic trials by the real ``TuneController`` on
the simulated backend (virtual time, no processes), its state taken mid-run,
and a fresh scheduler restored from it over fresh ``Trial`` objects with the
same ids. Both then run on from the same point (same random seed) and must
make the same decisions.
"""
from __future__ import annotations

import json
import os
import random
import tempfile

import cloudpickle
import numpy as np
import pytest

from tunesmith import train, tune
from tunesmith.train import Checkpoint
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import (
    PB2,
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    PopulationBasedTrainingReplay,
    ResourceChangingScheduler,
    TrialScheduler,
)
from tunesmith._internal.backend.simulated import SimulatedExperiment
from tunesmith.tune.schedulers.resource_changing_scheduler import DistributeResources


# -- helpers -----------------------------------------------------------------------------
def _curve(config, state, it):
    """A learning curve whose level is the config's quality ``q``."""
    return {"acc": config["q"] * (1 - 0.7**it), "t": it * 1.5}


def _accumulate(config, state, it):
    """Training state that checkpoints carry: PBT's clones continue from the donor's sum."""
    state["acc"] = state.get("acc", 0.0) + config["q"]
    return {"acc": state["acc"]}


def _walk(value):
    yield value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(k)
            yield from _walk(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _walk(v)


def _assert_plain(state: dict) -> None:
    """No Trial objects and nothing that cannot be pickled in a state."""
    assert not any(isinstance(v, Trial) for v in _walk(state))
    assert isinstance(state["scheduler"], str) and state["version"] == 1
    cloudpickle.loads(cloudpickle.dumps(state))


def _restore(sim: SimulatedExperiment, fresh: TrialScheduler, through_json: bool = True,
             as_restored: bool = False) -> SimulatedExperiment:
    """Takes the state of ``sim``'s scheduler and restores ``fresh`` from it over new trials."""
    state = sim.scheduler.get_state()
    _assert_plain(state)
    if through_json:
        state = json.loads(json.dumps(state))
    else:
        state = cloudpickle.loads(cloudpickle.dumps(state))
    other = sim.fork(fresh, as_restored=as_restored)
    fresh.set_state(state, {t.trial_id: t for t in other.get_trials()})
    return other


def _run_both(sim: SimulatedExperiment, other: SimulatedExperiment, seed: int = 0) -> None:
    """Runs the original and the restored controller from the same point with the same seed."""
    start = len(sim.events)
    decided = {tid: len(d) for tid, d in sim.decisions.items()}
    random.seed(seed)
    np.random.seed(seed)
    sim.run()
    random.seed(seed)
    np.random.seed(seed)
    other.run()
    assert sim.events[start:] == other.events
    assert _decisions_after(sim, decided) == {tid: other.decisions.get(tid, []) for tid in sim.decisions}
    # The progress output's summary line (stop and perturbation counts) goes on from the same numbers.
    assert sim.scheduler.debug_string() == other.scheduler.debug_string()
    assert [(t.trial_id, t.status, t.last_result.get("training_iteration")) for t in sim.get_trials()] == [
        (t.trial_id, t.status, t.last_result.get("training_iteration")) for t in other.get_trials()
    ]


def _decisions_after(sim: SimulatedExperiment, start: dict[str, int]) -> dict[str, list]:
    return {tid: d[start.get(tid, 0):] for tid, d in sim.decisions.items()}


QUALITIES = [0.35, 0.8, 0.1, 0.55, 1.0, 0.2, 0.65, 0.45, 0.9, 0.05, 0.7, 0.3]


# -- FIFO and the base class --------------------------------------------------------------
def test_fifo_state_round_trips_and_names_its_class():
    fifo = FIFOScheduler(metric="acc", mode="max")
    state = fifo.get_state()
    assert state == {"scheduler": "FIFOScheduler", "version": 1, "settings": {"metric": "acc", "mode": "max"}}
    FIFOScheduler(metric="acc", mode="max").set_state(json.loads(json.dumps(state)), {})


def test_a_state_of_another_class_version_or_setting_is_refused():
    asha = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9)
    state = asha.get_state()
    with pytest.raises(ValueError, match="written by AsyncHyperBandScheduler, not HyperBandScheduler"):
        HyperBandScheduler(metric="acc", mode="max").set_state(state, {})
    with pytest.raises(ValueError, match="AsyncHyperBandScheduler: the scheduler state has version 99"):
        AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9).set_state({**state, "version": 99}, {})
    with pytest.raises(ValueError, match="made with max_t=9, but this scheduler has max_t=27"):
        AsyncHyperBandScheduler(metric="acc", mode="max", max_t=27).set_state(state, {})
    with pytest.raises(ValueError, match="made with mode='max', but this scheduler has mode='min'"):
        AsyncHyperBandScheduler(metric="acc", mode="min", max_t=9).set_state(state, {})
    # The old format (a pickled __dict__) is recognised as not a state.
    with pytest.raises(ValueError, match="not one written by AsyncHyperBandScheduler.get_state"):
        AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9).set_state(dict(asha.__dict__), {})


def test_restore_names_a_damaged_or_foreign_state_file(tmp_path):
    path = tmp_path / "scheduler_state.pkl"
    PopulationBasedTraining(metric="acc", mode="max", hyperparam_mutations={"q": [1, 2]}).save(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    asha = AsyncHyperBandScheduler(metric="acc", mode="max")
    with pytest.raises(ValueError, match="could not read the scheduler state file .*scheduler_state.pkl"):
        asha.restore(str(path))
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"written by PopulationBasedTraining, not AsyncHyperBandScheduler.*"
                                         r"scheduler_state.pkl"):
        asha.restore(str(path))


# -- ASHA ---------------------------------------------------------------------------------
@pytest.mark.parametrize("brackets", [1, 3])
def test_asha_restored_mid_run_stops_the_same_trials(brackets):
    def make():
        return AsyncHyperBandScheduler(metric="acc", mode="max", max_t=27, grace_period=1,
                                       reduction_factor=3, brackets=brackets)

    np.random.seed(1)
    sim = SimulatedExperiment(make(), _curve, max_concurrent=4)
    for q in QUALITIES:
        sim.add_trial({"q": q})
    assert not sim.advance(12)
    stopped_before = sum(1 for t in sim.get_trials() if t.status == Trial.TERMINATED)
    assert 0 < stopped_before < len(QUALITIES)
    other = _restore(sim, make())
    _run_both(sim, other, seed=2)
    # Trials were stopped after the restore too, against the rungs recorded before it.
    stopped_after = [tid for tid, d in other.decisions.items() if d and d[-1][1] == TrialScheduler.STOP
                     and d[-1][0] < 27]
    assert stopped_after


def test_asha_state_keeps_rung_records_of_trials_that_ended():
    asha = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    sim = SimulatedExperiment(asha, _curve, max_concurrent=3)
    for q in (0.9, 0.8, 0.7):
        sim.add_trial({"q": q})
    sim.run()
    fresh = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    other = _restore(sim, fresh)
    # A new, weaker trial meets the old trials' records at the first rung and is stopped there.
    late = other.add_trial({"q": 0.1})
    other.run()
    assert other.decisions[late.trial_id] == [(1, TrialScheduler.STOP)]
    # Without the state, the same trial would have been the first at its rung and gone on.
    blank = SimulatedExperiment(
        AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3), _curve)
    alone = blank.add_trial({"q": 0.1})
    blank.run()
    assert blank.decisions[alone.trial_id][0] == (1, TrialScheduler.CONTINUE)


# -- HyperBand ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [HyperBandScheduler, HyperBandForBOHB])
def test_hyperband_brackets_continue_after_restore(cls):
    def make():
        return cls(metric="acc", mode="max", max_t=9, reduction_factor=3)

    sim = SimulatedExperiment(make(), _curve, max_concurrent=4, checkpoint_every_result=True)
    for q in QUALITIES + [0.5, 0.6, 0.15, 0.25, 0.95]:
        sim.add_trial({"q": q})
    assert not sim.advance(10)
    assert any(t.status == Trial.PAUSED for t in sim.get_trials())
    other = _restore(sim, make())
    _run_both(sim, other)
    # Each bracket halved: only the best trials of a bracket reached max_t.
    final = {t.config["q"]: other.iteration_of(t) for t in other.get_trials()}
    assert sorted(final.values()).count(9) < len(final) / 2


@pytest.mark.parametrize("cls", [HyperBandScheduler, HyperBandForBOHB])
def test_hyperband_after_a_restore_with_every_trial_pending_halves_the_same_way(cls):
    """As after Tuner.restore: trials that waited at a rung come back PENDING and must
    wait there, not run past it; the brackets then keep the same trials."""
    def make():
        return cls(metric="acc", mode="max", max_t=9, reduction_factor=3)

    sim = SimulatedExperiment(make(), _curve, max_concurrent=4, checkpoint_every_result=True)
    for q in QUALITIES + [0.5, 0.6, 0.15, 0.25, 0.95]:
        sim.add_trial({"q": q})
    assert not sim.advance(10)
    waiting = [t.trial_id for t in sim.get_trials() if t.status == Trial.PAUSED]
    assert waiting
    other = _restore(sim, make(), as_restored=True)
    assert all(t.status == Trial.PENDING for t in other.get_trials() if not t.is_finished())
    ran_before = sim.iterations_run
    sim.run()
    other.run()
    assert {t.trial_id: sim.iteration_of(t) for t in sim.get_trials()} == {
        t.trial_id: other.iteration_of(t) for t in other.get_trials()
    }
    # No extra training: the trials that waited at their rung did not run past it.
    assert other.iterations_run == sim.iterations_run - ran_before


def test_hyperband_processes_a_bracket_whose_trial_ended_before_the_restore():
    def make():
        return HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)

    sim = SimulatedExperiment(make(), _curve, max_concurrent=3, checkpoint_every_result=True)
    trials = [sim.add_trial({"q": q}) for q in (0.9, 0.5, 0.1)]  # the first bracket (s=0) takes 3
    trials += [sim.add_trial({"q": q}) for q in (0.8, 0.6, 0.4, 0.2, 0.3)]  # s=1 takes 5
    assert not sim.advance(12)
    bracket_trials = trials[3:]
    paused = [t for t in bracket_trials if t.status == Trial.PAUSED]
    behind = [t for t in bracket_trials if t.status in (Trial.PENDING, Trial.RUNNING)]
    assert paused and behind
    fresh = make()
    other = sim.fork(fresh, as_restored=True)
    state = json.loads(json.dumps(sim.scheduler.get_state()))
    # The trials still short of the rung ended (e.g. failed) before the restore.
    for t in other.get_trials():
        if t.trial_id in {b.trial_id for b in behind}:
            t.status = Trial.ERROR
    fresh.set_state(state, {t.trial_id: t for t in other.get_trials()})
    other.run()
    # The rung was complete with the trials that were left: the best went on, the rest stopped.
    ends = [other.iteration_of(t) for t in other.get_trials() if t.trial_id in {p.trial_id for p in paused}]
    assert len(paused) == 3 and sorted(ends) == [3, 9, 9]
    assert all(t.status in (Trial.TERMINATED, Trial.ERROR) for t in other.get_trials())


# -- MedianStoppingRule -----------------------------------------------------------------------
@pytest.mark.parametrize("time_attr, hard_stop, min_time_slice", [
    ("training_iteration", True, 0), ("t", True, 0), ("training_iteration", False, 2)])
def test_median_stopping_restored_mid_run_makes_the_same_decisions(time_attr, hard_stop, min_time_slice):
    def make():
        return MedianStoppingRule(time_attr=time_attr, metric="acc", mode="max", grace_period=2,
                                  min_samples_required=2, hard_stop=hard_stop, min_time_slice=min_time_slice)

    sim = SimulatedExperiment(make(), _curve, max_concurrent=3, max_iterations=10)
    for q in QUALITIES:
        sim.add_trial({"q": q})
    assert not sim.advance(15)
    assert any(d in (TrialScheduler.STOP, TrialScheduler.PAUSE) for ds in sim.decisions.values() for _, d in ds)
    other = _restore(sim, make())
    _run_both(sim, other)


@pytest.mark.parametrize("time_attr", ["training_iteration", "t"])
def test_median_stopping_uses_the_results_from_before_the_restore(time_attr):
    def make():
        return MedianStoppingRule(time_attr=time_attr, metric="acc", mode="max", grace_period=1,
                                  min_samples_required=3)

    sim = SimulatedExperiment(make(), _curve, max_iterations=6)
    for q in (0.9, 0.8, 0.7):
        sim.add_trial({"q": q})
    sim.run()
    assert all(t.status == Trial.TERMINATED for t in sim.get_trials())
    other = _restore(sim, make())
    weak = other.add_trial({"q": 0.2})
    other.run()
    assert other.decisions[weak.trial_id][-1][1] == TrialScheduler.STOP and other.iteration_of(weak) <= 2
    # A scheduler without the old results lets it run: too few samples.
    blank = SimulatedExperiment(make(), _curve, max_iterations=6)
    alone = blank.add_trial({"q": 0.2})
    blank.run()
    assert blank.iteration_of(alone) == 6


# -- PBT -------------------------------------------------------------------------------------
def _pbt(synch=False, **kw):
    return PopulationBasedTraining(
        time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=2, synch=synch,
        hyperparam_mutations={"q": [0.1, 0.2, 0.4, 0.7, 1.0]}, **kw,
    )


@pytest.mark.parametrize("synch", [False, True])
def test_pbt_restored_mid_run_perturbs_the_same_way(synch):
    random.seed(3)
    sim = SimulatedExperiment(_pbt(synch), _accumulate, max_concurrent=3, max_iterations=12,
                              checkpoint_every_result=True)
    for q in (0.1, 0.1, 0.2, 0.4, 0.7, 1.0):
        sim.add_trial({"q": q})
    assert not sim.advance(12)
    before = sim.scheduler._num_perturbations
    assert before > 0
    # Configs (perturbed, with odd values) and checkpoints go through cloudpickle, not JSON.
    other = _restore(sim, _pbt(synch), through_json=False)
    _run_both(sim, other, seed=4)
    assert other.scheduler._num_perturbations > before
    assert [t.config for t in sim.get_trials()] == [t.config for t in other.get_trials()]


def test_pbt_does_not_count_trials_that_ended_before_the_restore_as_live(tmp_path):
    """Synchronous PBT waits for every live trial at a sync point: a trial that had ended
    must not be waited for, or the population never perturbs again."""
    random.seed(5)

    def step(config, state, it):
        return _accumulate(config, state, it)

    sim = SimulatedExperiment(_pbt(synch=True), step, max_concurrent=6, max_iterations=15,
                              checkpoint_every_result=True, experiment_path=str(tmp_path))
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.2, 0.4, 0.7, 1.0, 0.4)]
    assert not sim.advance(5)
    sim.stop_trial(trials[2])  # ended, and the scheduler was told
    assert not sim.advance(1)
    fresh = _pbt(synch=True)
    state = sim.scheduler.get_state()
    other = sim.fork(fresh, as_restored=True)
    # This one ended after the scheduler's state was written: its restored status decides.
    other.get_trials()[5].set_status(Trial.ERROR)
    fresh.set_state(state, {t.trial_id: t for t in other.get_trials()})
    assert fresh._num_live == 4
    assert sorted(fresh._trials) == sorted(t.trial_id for t in trials)
    before = fresh._num_perturbations
    other.run()
    assert [other.iteration_of(t) for t in other.get_trials() if t.status == Trial.TERMINATED
            and t.trial_id != trials[2].trial_id] == [15] * 4
    assert fresh._num_perturbations >= before + 4  # sync points 8, 10, 12, 14 at least
    # Every sync point after the restore was reached by all four live trials before any went past it.
    results = [(tid, it) for e, tid, it in other.events if e == "result"]
    live = {t.trial_id for t in other.get_trials()} - {trials[2].trial_id, trials[5].trial_id}
    for sync in (8, 10, 12, 14):
        first_after = min(i for i, (tid, it) in enumerate(results) if it == sync + 1)
        assert {tid for tid, it in results[:first_after] if it == sync} == live
    # Donors after the restore were live trials only.
    policy = [json.loads(line) for line in open(tmp_path / "pbt_global.txt")]
    ended_tags = {trials[2].experiment_tag, trials[5].experiment_tag}
    assert all(row[1] not in ended_tags for row in policy if row[2] > 6)


def test_pbt_counts_an_errored_trial_that_is_resumed_as_live():
    random.seed(9)
    sim = SimulatedExperiment(_pbt(), _accumulate, max_concurrent=4, max_iterations=10, checkpoint_every_result=True)
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.4, 0.7, 1.0)]
    assert not sim.advance(3)
    trials[3].set_status(Trial.ERROR)
    sim.scheduler.on_trial_error(sim, trials[3])
    fresh = _pbt()
    state = sim.scheduler.get_state()
    assert state["trials"][trials[3].trial_id]["finished"]
    other = sim.fork(fresh, as_restored=True)
    other.get_trials()[3].set_status(Trial.PENDING)  # Tuner.restore(..., resume_errored=True)
    fresh.set_state(state, {t.trial_id: t for t in other.get_trials()})
    assert fresh._num_live == 4
    other.run()
    assert other.iteration_of(other.get_trials()[3]) == 10


def test_pbt_restore_before_the_trials_exist_links_them_as_they_are_added(tmp_path):
    """The order the driver uses today: restore(path), then on_trial_add for each trial."""
    random.seed(6)
    sim = SimulatedExperiment(_pbt(synch=True), _accumulate, max_concurrent=4, max_iterations=10,
                              checkpoint_every_result=True)
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.4, 0.7, 1.0)]
    assert not sim.advance(3)
    sim.stop_trial(trials[0])
    assert not sim.advance(1)  # the trial stops at its next result
    assert trials[0].status == Trial.TERMINATED
    path = str(tmp_path / "scheduler_state.pkl")
    sim.scheduler.save(path)
    fresh = _pbt(synch=True)
    fresh.restore(path)
    # Pickled meanwhile (the run's settings file), it is the plain scheduler again.
    copy = cloudpickle.loads(cloudpickle.dumps(fresh))
    assert "on_trial_add" not in vars(copy) and not hasattr(copy, "_pending_restore")
    other = sim.fork(fresh, as_restored=True)
    for t in other.get_trials():
        fresh.on_trial_add(other, t)  # collected, not added as new trials
    late = other.add_trial({"q": 0.2}, trial_id="late")  # a new trial after the restore
    assert fresh._num_live == 0  # nothing linked yet
    assert not other.advance(1)  # choosing a trial to run links the state
    assert fresh._num_live == 4  # the three live restored trials and the new one
    assert fresh._trials["late"] is late and fresh._trials[trials[1].trial_id] is other.get_trials()[1]
    other.run()
    assert fresh._num_perturbations > sim.scheduler._num_perturbations


def test_pbt_checkpoints_are_found_in_a_moved_experiment(tmp_path):
    old_dir, new_dir = tmp_path / "old" / "exp", tmp_path / "new" / "exp"

    def make_trials(root):
        trials = {}
        for i in range(4):
            t = Trial("f", {"q": 0.1 * (i + 1)}, trial_id=f"t{i}", experiment_tag=str(i), experiment_path=str(root))
            for it in (2, 4):
                d = root / f"trial_{i}" / f"checkpoint_{it:06d}"
                d.mkdir(parents=True, exist_ok=True)
                t.checkpoint_manager.checkpoints.append((Checkpoint(str(d)), {"training_iteration": it}))
            t.status = Trial.RUNNING
            trials[t.trial_id] = t
        return trials

    pbt = _pbt()
    old = make_trials(old_dir)

    class Ctrl:
        experiment_path = str(old_dir)

        def first_trial_with_status(self, status):
            return None

        def save_trial(self, trial):
            return trial.checkpoint

    for t in old.values():
        pbt.on_trial_add(Ctrl(), t)
    for t in old.values():
        pbt.on_trial_result(Ctrl(), t, {"training_iteration": 4, "acc": t.config["q"]})
    top = pbt._trial_state["t3"]
    assert top.last_checkpoint.path == str(old_dir / "trial_3" / "checkpoint_000004")
    state = json.loads(json.dumps(pbt.get_state()))
    assert state["trials"]["t3"]["last_checkpoint"]["relpath"] == os.path.join("trial_3", "checkpoint_000004")
    os.rename(tmp_path / "old", tmp_path / "new")
    new = make_trials(new_dir)
    fresh = _pbt()
    fresh.set_state(state, new)
    # The restored trial's own checkpoint object in the new place.
    assert fresh._trial_state["t3"].last_checkpoint is new["t3"].checkpoint_manager.checkpoints[1][0]


# -- PB2 ---------------------------------------------------------------------------------------
def test_pb2_restored_mid_run_explores_the_same_way():
    def make():
        return PB2(time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=2,
                   hyperparam_bounds={"q": [0.1, 1.0]})

    random.seed(7)
    sim = SimulatedExperiment(make(), _accumulate, max_concurrent=4, max_iterations=8,
                              checkpoint_every_result=True)
    for q in (0.1, 0.3, 0.6, 0.9):
        sim.add_trial({"q": q})
    assert not sim.advance(5)
    assert sim.scheduler._data
    other = _restore(sim, make(), through_json=False)
    assert other.scheduler._data == sim.scheduler._data
    _run_both(sim, other, seed=8)
    assert [t.config for t in sim.get_trials()] == [t.config for t in other.get_trials()]
    with pytest.raises(ValueError, match="hyperparam_bounds"):
        PB2(time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=2,
            hyperparam_bounds={"q": [0.0, 2.0]}).set_state(sim.scheduler.get_state(), {})


# -- PBT replay --------------------------------------------------------------------------------
def test_pbt_replay_goes_on_with_the_next_policy_change(tmp_path):
    policy = tmp_path / "pbt_policy_x.txt"
    rows = [["0_q=0.1", "3", 2, 2, {"q": 0.1}, {"q": 0.5}], ["0_q=0.1", "2", 4, 4, {"q": 0.5}, {"q": 0.9}]]
    policy.write_text("".join(json.dumps(r) + "\n" for r in rows))

    sim = SimulatedExperiment(PopulationBasedTrainingReplay(str(policy)), _accumulate, max_iterations=6,
                              checkpoint_every_result=True)
    sim.add_trial({"q": 0.3})
    assert not sim.advance(3)
    assert sim.get_trials()[0].config == {"q": 0.5}
    other = _restore(sim, PopulationBasedTrainingReplay(str(policy)), as_restored=True)
    # The restored trial keeps the config it had reached (not the replay's first one).
    assert other.get_trials()[0].config == {"q": 0.5}
    other.run()
    sim.run()
    tid = sim.get_trials()[0].trial_id
    assert other.decisions[tid] == sim.decisions[tid][3:]
    assert other.get_trials()[0].config == sim.get_trials()[0].config == {"q": 0.9}
    assert other.get_trials()[0].last_result["acc"] == pytest.approx(sim.get_trials()[0].last_result["acc"])


# -- ResourceChangingScheduler --------------------------------------------------------------------
def test_resource_changing_scheduler_restores_base_state_and_base_resources():
    def make():
        return ResourceChangingScheduler(
            base_scheduler=AsyncHyperBandScheduler(metric="acc", mode="max", max_t=12, grace_period=2,
                                                   reduction_factor=2),
            resources_allocation_function=DistributeResources(add_bundles=False),
        )

    sim = SimulatedExperiment(make(), _curve, max_concurrent=4, total_resources={"CPU": 16.0},
                              checkpoint_every_result=True)
    for q in QUALITIES[:8]:
        sim.add_trial({"q": q})
    assert not sim.advance(5)
    assert any(e == "resources" for e, _, _ in sim.events)
    fresh = make()
    other = _restore(sim, fresh)
    # Base resources are the ones the trials were created with, not their current ones.
    assert all(fresh.base_resources_of(t).required_resources == {"CPU": 1.0} for t in other.get_trials())
    _run_both(sim, other)
    # After the restore, the base scheduler stopped trials at its rungs and resources moved on.
    assert any(d == TrialScheduler.STOP and it < 12 for ds in other.decisions.values() for it, d in ds)
    assert any(e == "resources" for e, _, _ in other.events)


def test_state_drops_ids_of_trials_that_are_not_restored():
    asha = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    sim = SimulatedExperiment(asha, _curve, max_concurrent=4)
    trials = [sim.add_trial({"q": q}) for q in (0.9, 0.5, 0.3, 0.1)]
    assert not sim.advance(2)
    state = asha.get_state()
    fresh = AsyncHyperBandScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    kept = {t.trial_id: t for t in sim.fork(fresh).get_trials()[:2]}
    fresh.set_state(state, kept)
    assert set(fresh._trial_info) <= set(kept)
    assert all(set(r.trial_ids) <= set(kept) for r in fresh._brackets[0].rungs)
    # The recorded values stay: they are the rung's statistics.
    assert [r.values for r in fresh._brackets[0].rungs] == [r.values for r in asha._brackets[0].rungs]
    assert trials


# -- end to end -----------------------------------------------------------------------------------
def pbt_trainable(config):
    step, acc = 0, 0.0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                saved = json.load(f)
        step, acc = saved["step"], saved["acc"]
    while step < 16:
        step += 1
        acc += config["q"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"step": step, "acc": acc}, f)
            train.report({"acc": acc, "step": step}, checkpoint=Checkpoint.from_directory(d))


class InterruptOnce(tune.Callback):
    """Acts as Ctrl+C after ``n`` results, in the first run only (the flag file marks it)."""

    def __init__(self, n: int, flag: str):
        self.n, self.flag, self.seen = n, flag, 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen >= self.n and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            raise KeyboardInterrupt


def test_pbt_keeps_perturbing_after_tuner_restore(tmp_path):
    storage = str(tmp_path / "storage")
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2, synch=True,
                                  hyperparam_mutations={"q": [0.1, 0.2, 0.4, 0.8, 1.0]})
    tuner = tune.Tuner(
        pbt_trainable,
        param_space={"q": tune.grid_search([0.1, 0.2, 0.4, 0.8])},
        tune_config=tune.TuneConfig(metric="acc", mode="max", scheduler=pbt),
        run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0,
                                  callbacks=[InterruptOnce(20, str(tmp_path / "interrupted"))]),
    )
    tuner.fit()
    exp = os.path.join(storage, "exp")
    with open(os.path.join(exp, "experiment_state.json")) as f:
        interrupted_at = max(t["last_result"].get("training_iteration", 0) for t in json.load(f)["trials"])
    assert interrupted_at < 12

    def exploits():
        with open(os.path.join(exp, "pbt_global.txt")) as f:
            return [json.loads(line) for line in f]

    before = len(exploits())
    grid = tune.Tuner.restore(exp, trainable=pbt_trainable).fit()
    assert sorted(r.metrics["training_iteration"] for r in grid) == [16] * 4
    after = exploits()[before:]
    # One exploit (of the bottom quarter: one trial) at each sync point left after the restore.
    sync_points = {row[2] for row in after}
    assert len(after) >= 3 and sync_points >= {12, 14}
    assert all(it % 2 == 0 and it > interrupted_at - 2 for it in sync_points)
