"""ResourceChangingScheduler with DistributeResources and DistributeResourcesToTopJob, run by the real
controller on the simulated backend."""
from __future__ import annotations

import pytest

from tunesmith._internal.backend.simulated import SimulatedExperiment
from tunesmith.tune.execution.placement_groups import PlacementGroupFactory
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import ASHAScheduler, FIFOScheduler, ResourceChangingScheduler, TrialScheduler
from tunesmith.tune.schedulers.resource_changing_scheduler import (
    DistributeResources,
    DistributeResourcesToTopJob,
)


def _curve(config, state, it):
    state["n"] = state.get("n", 0) + 1
    return {"acc": config["q"] * it}


def test_free_cpus_are_shared_evenly_and_trials_restart_with_them():
    rcs = ResourceChangingScheduler(FIFOScheduler(), DistributeResources())
    sim = SimulatedExperiment(rcs, _curve, max_concurrent=2, max_iterations=4, total_resources={"CPU": 8})
    a, b = sim.add_trial({"q": 1}), sim.add_trial({"q": 2})
    sim.run()
    changed = [(tid, res) for e, tid, res in sim.events if e == "resources"]
    assert changed == [(a.trial_id, {"CPU": 4.0}), (b.trial_id, {"CPU": 4.0})]
    assert a.placement_group_factory.required_resources == {"CPU": 4.0}
    assert rcs.base_resources_of(a).required_resources == {"CPU": 1.0} == rcs.base_trial_resources.required_resources
    # The pause kept the training state: 4 iterations in all.
    assert a.last_result["training_iteration"] == 4 and b.status == Trial.TERMINATED


def test_add_bundles_limits_and_reserve():
    policy = DistributeResources(add_bundles=True, increase_by={"CPU": 2}, increase_by_times=1,
                                 reserve_resources={"CPU": 1})
    rcs = ResourceChangingScheduler(FIFOScheduler(), policy)
    sim = SimulatedExperiment(rcs, _curve, total_resources={"CPU": 9})
    t = sim.add_trial({"q": 1})
    assert not sim.advance(0)  # the trial starts
    assert t.status == Trial.RUNNING
    pgf = policy(sim.controller, t, {"training_iteration": 1, "acc": 1}, rcs)
    assert pgf.bundles == [{"CPU": 1.0}, {"CPU": 2.0}]
    assert policy(sim.controller, t, {"training_iteration": 0}, rcs) is None


def test_top_job_gets_every_free_resource():
    policy = DistributeResourcesToTopJob(metric="acc", mode="max")
    rcs = ResourceChangingScheduler(FIFOScheduler(), policy)
    sim = SimulatedExperiment(rcs, _curve, total_resources={"CPU": 8}, max_iterations=4)
    low, high = sim.add_trial({"q": 1}), sim.add_trial({"q": 3})
    sim.run()
    changes = [(tid, res["CPU"]) for e, tid, res in sim.events if e == "resources"]
    # low is best until high reports; then high takes 8 - 1 CPUs and low goes back to 1; at its
    # last result, with low ending, high is given all 8.
    assert changes == [(low.trial_id, 7.0), (high.trial_id, 7.0), (low.trial_id, 1.0), (high.trial_id, 8.0)]
    assert high.placement_group_factory.required_resources == {"CPU": 8.0}
    assert low.placement_group_factory.required_resources == {"CPU": 1.0}


def test_base_scheduler_decisions_win_and_properties_are_forwarded():
    asha = ASHAScheduler(max_t=2, grace_period=1)
    rcs = ResourceChangingScheduler(asha)
    assert rcs.set_search_properties("acc", "max")
    assert (asha.metric, asha.mode) == ("acc", "max") == (rcs.metric, rcs.mode)
    sim = SimulatedExperiment(rcs, _curve, total_resources={"CPU": 2})
    t = sim.add_trial({"q": 1})
    sim.run()
    # The first result gives the lone trial both CPUs; at the second max_t is reached: stopped, with
    # no resource change asked.
    assert sim.decisions[t.trial_id] == [(1, TrialScheduler.PAUSE), (2, TrialScheduler.STOP)]
    assert [e for e in sim.events if e[0] == "resources"] == [("resources", t.trial_id, {"CPU": 2.0})]
    assert t.status == Trial.TERMINATED and t.last_result["training_iteration"] == 2


def test_allocation_function_may_return_a_dict_and_bad_types_are_rejected():
    rcs = ResourceChangingScheduler(FIFOScheduler(), lambda ctrl, trial, result, sched: {"cpu": 3})
    sim = SimulatedExperiment(rcs, _curve)
    t = sim.add_trial({"q": 1})
    assert not sim.advance(1)  # the first result: paused to restart with 3 CPUs
    assert sim.decisions[t.trial_id] == [(1, TrialScheduler.PAUSE)]
    assert t.placement_group_factory == PlacementGroupFactory([{"CPU": 3}])
    assert sim.events[-2:] == [("resources", t.trial_id, {"CPU": 3.0}), ("start", t.trial_id, 1)]
    with pytest.raises(TypeError, match="TrialScheduler"):
        ResourceChangingScheduler(base_scheduler="asha")


def test_an_allocation_function_reads_base_trial_resources_as_on_ray():
    """Ray's allocation functions (the seed's xgboost dynamic resources example) read
    scheduler.base_trial_resources, a PlacementGroupFactory; it was a per-trial method and the run crashed."""
    from tunesmith.tune.execution.placement_groups import PlacementGroupFactory

    def one_more_cpu_at_two(tune_controller, trial, result, scheduler):
        base = scheduler.base_trial_resources
        if result["training_iteration"] == 2:
            return PlacementGroupFactory([{"CPU": base.required_resources["CPU"] + 1}])
        return None

    rcs = ResourceChangingScheduler(FIFOScheduler(), one_more_cpu_at_two)
    sim = SimulatedExperiment(rcs, _curve, total_resources={"CPU": 4}, max_iterations=4)
    trial = sim.add_trial({"q": 1})
    sim.run()
    assert [(tid, res) for e, tid, res in sim.events if e == "resources"] == [(trial.trial_id, {"CPU": 2.0})]
    assert isinstance(rcs.base_trial_resources, PlacementGroupFactory)


def test_the_seed_examples_resource_reads_work():
    """The seed's xgboost dynamic resources example reads ``get_trial_resources().head_cpus`` in the
    trainable and ``tune_controller._resource_updater.get_num_cpus()`` in its allocation function: both
    were AttributeErrors."""
    seen = []

    def all_free_cpus(tune_controller, trial, result, scheduler):
        total = tune_controller._resource_updater.get_num_cpus()
        seen.append((total, tune_controller._resource_updater.get_num_gpus(), trial.placement_group_factory.head_cpus))
        if result["training_iteration"] == 1:
            return PlacementGroupFactory([{"CPU": total}])
        return None

    rcs = ResourceChangingScheduler(FIFOScheduler(), all_free_cpus)
    sim = SimulatedExperiment(rcs, _curve, total_resources={"CPU": 4}, max_iterations=3)
    trial = sim.add_trial({"q": 1})
    sim.run()
    assert seen[0] == (4, 0, 1.0) and seen[-1] == (4, 0, 4.0)
    assert trial.placement_group_factory.head_cpus == 4.0
    assert PlacementGroupFactory([{}, {"CPU": 2}]).head_cpus == 0.0
