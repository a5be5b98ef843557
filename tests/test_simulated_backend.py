"""The real TuneController on the simulated backend: virtual time, scripted trials, no processes."""
from __future__ import annotations

import json
import os
import time

import pytest

from tunesmith import tune
from tunesmith._internal import protocol as P
from tunesmith._internal.backend.base import ExecutorBackend, TrialEvent
from tunesmith._internal.backend.local import LocalExecutor
from tunesmith._internal.backend.simulated import ScriptedTrainable, SimulatedBackend
from tunesmith._internal.storage import StorageContext
from tunesmith.tune.execution.controller_config import ControllerConfig
from tunesmith.tune.execution.tune_controller import TuneController
from tunesmith.tune.schedulers import ASHAScheduler, FIFOScheduler
from tunesmith.tune.search.basic_variant import BasicVariantGenerator


def _controller(tmp_path, script, space, num_samples, scheduler=None, cpus=4, **config):
    search = BasicVariantGenerator()
    search.add_configurations(space, num_samples=num_samples)
    backend = SimulatedBackend(script, total_resources={"CPU": cpus})
    controller = TuneController(ControllerConfig(
        trainable=script, trainable_name="sim", trainable_payload=b"", search_alg=search,
        scheduler=scheduler or FIFOScheduler(), storage=StorageContext(str(tmp_path), "exp"),
        executor=backend, **config,
    ))
    return controller, backend


def test_backends_implement_the_whole_contract():
    assert issubclass(LocalExecutor, ExecutorBackend) and issubclass(SimulatedBackend, ExecutorBackend)

    class Partial(ExecutorBackend):
        def can_ever_fit(self, resources):
            return True

    with pytest.raises(TypeError, match="abstract"):
        Partial()
    # An event unpacks as (trial, message), as the controller reads it.
    trial, message = TrialEvent("t", (P.DONE, None, None))
    assert trial == "t" and message[0] == P.DONE


def test_hours_of_virtual_training_run_in_a_moment_with_asha(tmp_path):
    script = ScriptedTrainable(lambda config, i: {"acc": config["q"] * (1 - 0.8 ** i)}, iterations=30,
                               seconds=60.0)
    scheduler = ASHAScheduler(metric="acc", mode="max", max_t=30, grace_period=2, reduction_factor=3)
    controller, backend = _controller(tmp_path, script, {"q": tune.grid_search([0.1 * i for i in range(20, 0, -1)])},
                                      1, scheduler=scheduler, cpus=4)
    start = time.perf_counter()
    controller.run()
    assert time.perf_counter() - start < 30  # on a loaded machine; it takes well under a second
    trials = controller.get_trials()
    assert all(t.status == "TERMINATED" for t in trials)
    assert backend.time() >= 30 * 60  # half an hour of virtual time at least: the best trial ran all 30 minutes
    iterations = {t.config["q"]: t.last_result["training_iteration"] for t in trials}
    assert iterations[2.0] == 30 and min(iterations.values()) == 2  # ASHA stopped the weak at the first rung
    assert backend.results == sum(iterations.values())
    # Virtual time is what results report, and each iteration took its declared minute.
    best = max(trials, key=lambda t: t.config["q"])
    assert best.last_result["time_total_s"] == pytest.approx(30 * 60.0)
    # The experiment state was written as for any run.
    with open(os.path.join(str(tmp_path), "exp", "experiment_state.json")) as f:
        state = json.load(f)
    assert len(state["trials"]) == 20 and {t["status"] for t in state["trials"]} == {"TERMINATED"}


def test_time_budget_is_virtual_time(tmp_path):
    script = ScriptedTrainable(lambda config, i: {"m": i}, iterations=1000, seconds=10.0)
    controller, backend = _controller(tmp_path, script, {"x": tune.grid_search([1, 2])}, 1, time_budget_s=600)
    start = time.perf_counter()
    controller.run()
    assert time.perf_counter() - start < 30
    assert 600 <= backend.time() < 700
    assert sorted(t.last_result["training_iteration"] for t in controller.get_trials()) == [60, 60]


def test_a_failing_trial_is_retried_from_its_checkpoint_then_errors(tmp_path):
    failures = []

    def fail_at(config, iteration):
        if config["x"] == 2 and iteration == 5:
            failures.append(iteration)
            return True
        return False

    script = ScriptedTrainable(lambda config, i: {"m": i}, iterations=8, checkpoint_every=2, fail_at=fail_at)
    controller, backend = _controller(tmp_path, script, {"x": tune.grid_search([1, 2])}, 1,
                                      failure_config=tune.FailureConfig(max_failures=2))
    controller.run()
    ok, bad = controller.get_trials()
    assert ok.status == "TERMINATED" and ok.last_result["training_iteration"] == 8
    # Each retry resumed from the checkpoint at iteration 4 and failed again at 5.
    assert failures == [5, 5, 5] and bad.status == "ERROR" and bad.num_failures == 3
    assert [d for e, tid, d in backend.log if e == "restore" and tid == bad.trial_id] == [(bad.trial_id, 4)] * 2
    with open(os.path.join(bad.local_path, "error.txt")) as f:
        text = f.read()
    assert text.count("Failure # ") == 3 and "scripted failure" in text


def test_pause_and_stop_take_effect_at_the_next_result(tmp_path):
    script = ScriptedTrainable(lambda config, state, i: {"m": i}, iterations=10, checkpoint_every=1)
    backend = SimulatedBackend(script, total_resources={"CPU": 1})

    class Trial:
        trial_id = "t"
        placement_group_factory = type("PGF", (), {"required_resources": {"CPU": 1}})()

    trial = Trial()
    info = type("Info", (), {"trial_dir": str(tmp_path)})()
    backend.start_trial(trial, P.TrialSpec("k", {}, info), "k", b"")
    assert not backend.has_resources({"CPU": 1})
    (event,) = backend.wait(None)
    assert event.message[0] == P.RESULT and backend.time() == 1.0
    backend.send(trial, P.CONTINUE)
    backend.send(trial, P.PAUSE)  # arrives while iteration 2 runs
    events = backend.wait(None)
    assert [e.message[0] for e in events] == [P.RESULT, P.PAUSED] and backend.time() == 2.0
    backend.release_trial(trial)
    assert backend.has_resources({"CPU": 1}) and backend.wait(5.0) == [] and backend.time() == 7.0
