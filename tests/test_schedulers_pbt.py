"""PopulationBasedTraining and its replay on synthetic populations, run by the real controller on the
simulated backend."""
from __future__ import annotations

import json
import os
import random

import pytest

from tunesmith import tune
from tunesmith._internal.backend.simulated import SimulatedExperiment
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import PopulationBasedTraining, PopulationBasedTrainingReplay, TrialScheduler
from tunesmith.tune.schedulers.pbt import explore

LRS = [1e-3, 5e-4, 1e-4, 5e-5, 1e-5]


# -- explore ---------------------------------------------------------------------
def test_list_values_move_to_a_neighbour_and_stay_in_the_list():
    random.seed(0)
    seen = set()
    for _ in range(200):
        new = explore({"lr": 1e-4}, {"lr": LRS}, resample_probability=0.0)
        assert new["lr"] in (5e-4, 5e-5)
        seen.add(new["lr"])
    assert seen == {5e-4, 5e-5}
    # At the ends the index is clamped.
    assert {explore({"lr": 1e-3}, {"lr": LRS}, 0.0)["lr"] for _ in range(50)} <= {1e-3, 5e-4}
    # A value outside the list is replaced by one from it.
    assert explore({"lr": 0.3}, {"lr": LRS}, 0.0)["lr"] in LRS


def test_continuous_values_are_multiplied_by_a_perturbation_factor():
    random.seed(1)
    seen = set()
    for _ in range(100):
        new = explore({"alpha": 0.5, "n": 10, "other": "x"}, {"alpha": lambda: 0.0, "n": lambda: 0},
                      resample_probability=0.0, perturbation_factors=(1.5, 0.5))
        assert new["alpha"] in (0.75, 0.25)
        assert new["n"] in (15, 5) and isinstance(new["n"], int)
        assert new["other"] == "x"
        seen.add(new["alpha"])
    assert seen == {0.75, 0.25}


def test_search_space_domains_resample_inside_and_perturbations_are_clipped():
    random.seed(2)
    space = {"alpha": tune.uniform(0.1, 1.0), "act": tune.choice(["relu", "tanh", "gelu"])}
    for _ in range(100):
        new = explore({"alpha": 0.5, "act": "tanh"}, space, resample_probability=1.0)
        assert 0.1 <= new["alpha"] <= 1.0
        assert new["act"] in ("relu", "tanh", "gelu")
    for _ in range(20):
        new = explore({"alpha": 0.95, "act": "tanh"}, space, 0.0, perturbation_factors=(1.2,))
        assert new["alpha"] == 1.0  # 1.14 is clipped to the domain
        assert new["act"] in ("relu", "gelu")


def test_a_float_domain_with_integer_bounds_perturbs_as_floats():
    """tune.uniform(0, 1) was taken for an integer domain: every perturbed value became the int 0, the exploited
    trials scored 0 and exploited again, and the run never ended."""
    random.seed(0)
    seen = {explore({"x": 0.5}, {"x": tune.uniform(0, 1)}, 0.0)["x"] for _ in range(50)}
    assert seen == {0.4, 0.6}
    assert explore({"x": 9.5}, {"x": tune.uniform(0, 10)}, 0.0, perturbation_factors=(1.0,))["x"] == 9.5
    # An integer domain still stays below its (exclusive) upper bound.
    assert explore({"n": 9}, {"n": tune.randint(0, 10)}, 0.0, perturbation_factors=(1.2,))["n"] == 9


def test_perturbed_values_keep_their_kind_and_move_on_a_grid():
    """A float reaching an integer bound became that int and stopped moving; a quantized value snapped back onto
    itself (4 * 1.2 -> 5 -> 4 with q=2); a resampled int became a float; a flag became 0.8 or 1.2."""
    random.seed(0)
    x = 0.9
    for _ in range(8):
        x = explore({"x": x}, {"x": tune.uniform(0, 1)}, 0.0)["x"]
        assert type(x) is float and 0 <= x <= 1
    assert len({explore({"x": 1.0}, {"x": tune.uniform(0, 1)}, 0.0)["x"] for _ in range(30)}) == 2  # 1.0, 0.8
    assert {explore({"n": 4}, {"n": tune.qrandint(2, 32, 2)}, 0.0)["n"] for _ in range(50)} == {2, 6}
    assert {explore({"n": 20}, {"n": tune.qrandint(0, 100, 10)}, 0.0)["n"] for _ in range(50)} == {10, 30}
    assert {explore({"f": 0.5}, {"f": tune.quniform(0, 1, 0.25)}, 0.0)["f"] for _ in range(50)} == {0.25, 0.75}
    for _ in range(20):
        layers = explore({"layers": 3}, {"layers": lambda: random.uniform(1, 8)}, 1.0)["layers"]
        assert type(layers) is int and 1 <= layers <= 8
        assert type(explore({"flag": True}, {"flag": lambda: random.random()}, 0.0)["flag"]) is bool


def test_a_sample_from_mutation_is_refused_up_front():
    with pytest.raises(ValueError, match="is a tune.sample_from"):
        PopulationBasedTraining(metric="loss", mode="min",
                                hyperparam_mutations={"lr": tune.sample_from(lambda spec: spec.config.base)})


def test_nested_mutations_and_custom_explore_fn():
    random.seed(3)

    def clamp(config):
        config["opt"]["lr"] = min(config["opt"]["lr"], 0.01)
        return config

    new = explore({"opt": {"lr": 0.01, "wd": 1}}, {"opt": {"lr": lambda: 0.0}}, 0.0, (2.0,), clamp)
    assert new == {"opt": {"lr": 0.01, "wd": 1}}
    new = explore({"opt": {"lr": 0.004, "wd": 1}}, {"opt": {"lr": lambda: 0.0}}, 0.0, (2.0,), clamp)
    assert new == {"opt": {"lr": 0.008, "wd": 1}}


# -- exploit -----------------------------------------------------------------------
def _accumulate(config, state, it):
    state["acc"] = state.get("acc", 0.0) + config["q"]
    return {"acc": state["acc"]}


def test_bottom_trial_clones_checkpoint_and_config_of_the_top_trial(tmp_path):
    random.seed(0)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=2,
        quantile_fraction=0.25, resample_probability=0.0, hyperparam_mutations={"q": [0.1, 0.4, 0.7, 1.0]},
    )
    sim = SimulatedExperiment(pbt, _accumulate, max_concurrent=4, max_iterations=4, experiment_path=str(tmp_path))
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.4, 0.7, 1.0)]
    # The four train in step, one iteration a virtual second; at second 4 the worst trial (q=0.1)
    # reports first, while the others still stand at iteration 3.
    assert not sim.advance(4)
    worst, best = trials[0], trials[3]
    # At iteration 4 the worst trial copies the best one's checkpoint from iteration 2: it was paused
    # without a checkpoint of its own (its worker told to stop, as for a Trainable class) and restarts
    # from the copied one at once.
    assert sim.decisions[worst.trial_id] == [(1, "CONTINUE"), (2, "CONTINUE"), (3, "CONTINUE"), (4, "STOP")]
    assert [e for e in sim.events if e[1] == worst.trial_id][-3:] == [
        ("stop", worst.trial_id, 4), ("restore", worst.trial_id, (best.trial_id, 2)), ("start", worst.trial_id, 2),
    ]
    assert worst.status == Trial.RUNNING
    restored = sim.backend.checkpoints[worst.restore_checkpoint.path]
    assert (restored.trial_id, restored.iteration, restored.state) == (best.trial_id, 2, {"acc": 2.0})
    assert worst.config["q"] in (0.7, 1.0)
    assert "@perturbed[q=" in worst.experiment_tag
    # The other trials kept their configs.
    assert [t.config["q"] for t in trials[1:]] == [0.4, 0.7, 1.0]
    policy = [json.loads(line) for line in open(tmp_path / f"pbt_policy_{worst.trial_id}.txt")]
    assert policy == [["0", "3", 4, 2, {"q": 1.0}, worst.config]]
    assert len(open(tmp_path / "pbt_global.txt").read().splitlines()) == 1

    # Restarted, it continues from the copied state and iteration.
    assert not sim.advance(1)
    assert worst.last_result["training_iteration"] == 3
    assert worst.last_result["acc"] == pytest.approx(2.0 + worst.config["q"])


def test_population_improves_over_its_worst_members():
    random.seed(4)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=3,
        hyperparam_mutations={"q": [0.1, 0.4, 0.7, 1.0]},
    )
    sim = SimulatedExperiment(pbt, _accumulate, max_concurrent=2, max_iterations=30)
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.1, 0.4, 0.4, 0.7, 1.0, 0.1, 0.4)]
    sim.run()
    assert all(t.status == Trial.TERMINATED for t in trials)
    assert pbt._num_perturbations > 0
    # Every trial ends with more than a fixed q=0.4 trial could reach alone.
    assert sorted(t.last_result["acc"] for t in trials)[len(trials) // 2] > 0.4 * 30


def test_synchronous_mode_waits_for_the_whole_population():
    random.seed(5)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=2, synch=True,
        hyperparam_mutations={"q": [0.1, 0.4, 0.7, 1.0]},
    )
    sim = SimulatedExperiment(pbt, _accumulate, max_concurrent=2, max_iterations=6)
    trials = [sim.add_trial({"q": q}) for q in (0.1, 0.4, 0.7, 1.0)]
    sim.run()
    # At each sync point, no trial goes past it before every trial has reached it.
    results = [(tid, it) for e, tid, it in sim.events if e == "result"]
    for sync in (2, 4):
        last_at_sync = max(i for i, (tid, it) in enumerate(results) if it == sync)
        first_after = min(i for i, (tid, it) in enumerate(results) if it == sync + 1)
        assert last_at_sync < first_after
        assert len({tid for tid, it in results[: first_after] if it == sync}) == 4
    exploit_iters = [d for e, tid, d in sim.events if e == "restore"]
    assert exploit_iters and all(d[1] % 2 == 0 for d in exploit_iters)
    assert all(t.status == Trial.TERMINATED for t in trials)


def test_missing_hyperparameters_are_sampled_on_add():
    pbt = PopulationBasedTraining(
        metric="acc", mode="max", hyperparam_mutations={"lr": LRS, "alpha": tune.uniform(0, 1)}
    )
    t = Trial("t", {"lr": 1e-4})
    pbt.on_trial_add(None, t)
    assert t.config["lr"] == 1e-4 and 0 <= t.config["alpha"] <= 1
    assert t.evaluated_params["alpha"] == t.config["alpha"]


def test_require_attrs():
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="acc", mode="max",
                                  hyperparam_mutations={"lr": LRS})
    t = Trial("t", {"lr": 1e-4})
    pbt.on_trial_add(None, t)
    with pytest.raises(RuntimeError, match="'acc'.*require_attrs=False"):
        pbt.on_trial_result(None, t, {"training_iteration": 1})
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="acc", mode="max",
                                  hyperparam_mutations={"lr": LRS}, require_attrs=False)
    pbt.on_trial_add(None, t)
    assert pbt.on_trial_result(None, t, {"training_iteration": 1}) == TrialScheduler.CONTINUE


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({}, ValueError, "hyperparam_mutations"),
        ({"hyperparam_mutations": {"lr": 3}}, TypeError, "lr"),
        ({"hyperparam_mutations": {"lr": []}}, ValueError, "empty"),
        ({"hyperparam_mutations": {"lr": LRS}, "quantile_fraction": 0.7}, ValueError, "quantile_fraction"),
        ({"hyperparam_mutations": {"lr": LRS}, "perturbation_interval": 0}, ValueError, "perturbation_interval"),
        ({"hyperparam_mutations": {"lr": LRS}, "resample_probability": 2}, ValueError, "resample_probability"),
    ],
)
def test_invalid_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        PopulationBasedTraining(**kwargs)


# -- replay ------------------------------------------------------------------------
def _write_policy(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def test_replay_switches_configs_at_the_recorded_iterations(tmp_path):
    rows = [  # trial 5 took over trial 3's state; then trial 2 took over trial 5's
        ["5", "3", 4, 3, {"q": 0.5}, {"q": 0.6}],
        ["2", "5", 8, 6, {"q": 0.6}, {"q": 0.72}],
    ]
    _write_policy(tmp_path / "pbt_policy_00002.txt", rows)
    replay = PopulationBasedTrainingReplay(experiment_dir=str(tmp_path), trial_id="00002")
    sim = SimulatedExperiment(replay, _accumulate, max_iterations=10)
    t = sim.add_trial({"q": 0.1})
    assert t.config == {"q": 0.5}
    sim.run()
    restores = [d for e, tid, d in sim.events if e == "restore"]
    assert restores == [(t.trial_id, 3), (t.trial_id, 6)]
    assert t.config == {"q": 0.72}
    assert t.last_result["training_iteration"] == 10
    # 3 steps at 0.5, 3 at 0.6, 4 at 0.72
    assert t.last_result["acc"] == pytest.approx(3 * 0.5 + 3 * 0.6 + 4 * 0.72)
    with pytest.raises(ValueError, match="one trial"):
        sim.add_trial({"q": 0.1})


def test_replay_leaves_out_the_rows_a_later_exploit_overwrote(tmp_path):
    """Ray's PBT appends to a trial's file when its new donor has no lineage of its own: the earlier rows
    were replayed too, from the wrong config."""
    rows = [["0_lr=0.1", "1_lr=0.2", 3, 3, {"q": 0.2}, {"q": 0.4}],
            ["0_lr=0.1", "2_lr=0.8", 9, 9, {"q": 0.8}, {"q": 1.6}]]
    _write_policy(tmp_path / "pbt_policy_00000.txt", rows)
    replay = PopulationBasedTrainingReplay(str(tmp_path / "pbt_policy_00000.txt"))
    sim = SimulatedExperiment(replay, _accumulate, max_iterations=12)
    t = sim.add_trial({"q": 0.1})
    assert t.config == {"q": 0.8}
    sim.run()
    assert t.last_result["acc"] == pytest.approx(9 * 0.8 + 3 * 1.6)


def test_replay_of_a_policy_written_by_pbt(tmp_path):
    random.seed(0)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", metric="acc", mode="max", perturbation_interval=2,
        hyperparam_mutations={"q": [0.1, 0.4, 0.7, 1.0]},
    )
    sim = SimulatedExperiment(pbt, _accumulate, max_concurrent=4, max_iterations=12, experiment_path=str(tmp_path))
    for q in (0.1, 0.4, 0.7, 1.0):
        sim.add_trial({"q": q})
    sim.run()
    files = sorted(p for p in os.listdir(tmp_path) if p.startswith("pbt_policy_"))
    assert files
    replay = PopulationBasedTrainingReplay(str(tmp_path / files[0]))
    rows = [json.loads(line) for line in open(tmp_path / files[0])]
    assert replay.config == rows[0][4]
    assert [p[0] for p in replay._policy] == [r[3] for r in rows]


def test_replay_errors():
    with pytest.raises(ValueError, match="policy_file"):
        PopulationBasedTrainingReplay()
    with pytest.raises(ValueError, match="does not exist"):
        PopulationBasedTrainingReplay("/nonexistent/pbt_policy_x.txt")


def test_perturbing_a_quantized_integer_stays_on_its_grid_and_in_its_inclusive_bounds():
    import random

    from tunesmith.tune.schedulers.pbt import explore

    random.seed(1)
    mutations = {"q": tune.qrandint(2, 10, 2)}
    values = {explore({"q": v}, mutations, 0.0)["q"] for v in (2, 4, 6, 8, 10) for _ in range(20)}
    # 10 * 1.2 = 12 comes back to 10 (the bound is inclusive), 2 * 0.8 = 1.6 to 2; all are multiples of 2.
    assert values <= {2, 4, 6, 8, 10} and {2, 10} <= values


def _pbt_counter(config):
    import tempfile
    import time

    from tunesmith import train

    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            step = json.load(open(os.path.join(d, "s.json")))["step"]
    while step < 24:
        step += 1
        time.sleep(0.03)
        with tempfile.TemporaryDirectory() as d:
            json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
            train.report({"score": config["lr"] * step}, checkpoint=train.Checkpoint.from_directory(d))


def test_an_exploit_never_starts_from_a_checkpoint_num_to_keep_deleted(tmp_path, monkeypatch):
    # With num_to_keep=1 the checkpoint a top trial had at its perturbation is deleted as soon as it
    # saves another (a state save every step makes that prompt); a trial that copies it later takes the
    # donor's latest checkpoint instead of failing to read a deleted one.
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4,
                                  hyperparam_mutations={"lr": tune.uniform(0.1, 1.0)})
    grid = tune.Tuner(
        _pbt_counter, param_space={"lr": tune.uniform(0.1, 1.0)},
        tune_config=tune.TuneConfig(num_samples=6, scheduler=pbt, metric="score", mode="max",
                                    max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    ).fit()
    assert grid.num_errors == 0, [str(e).splitlines()[-1] for e in grid.errors]
    assert pbt._num_perturbations > 0


def _counts_with_sparse_checkpoints(config):
    import json
    import tempfile

    trial = tune.get_context().get_trial_id()
    state = {"step": 0, "w": 0.0, "src": "-"}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
    step, w, src = state["step"], state["w"], state["src"]
    while step < 6:
        step += 1
        w += config["lr"]
        saved = None
        if step % 2 == 0:
            saved = tempfile.mkdtemp()
            with open(os.path.join(saved, "state.json"), "w") as f:
                json.dump({"step": step, "w": w, "src": f"{trial}@{step}"}, f)
        tune.report({"w": w, "src": src, "lr": config["lr"]},
                    checkpoint=tune.Checkpoint.from_directory(saved) if saved else None)
        marker = os.path.join(config["dir"], trial)
        if src != "-" and not src.startswith(trial) and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("fails after starting from another trial's checkpoint, before its own")


def test_an_exploited_trial_that_fails_before_its_next_checkpoint_retries_from_the_copied_state(tmp_path):
    """The retry went back to the trial's own checkpoint from before the exploit, with the new config
    (Ray makes the copied checkpoint the trial's latest)."""
    # Synchronous: the two trials are ranked together at step 2, so the lower one is exploited there.
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": [0.1, 0.5]}, synch=True)
    grid = tune.Tuner(
        _counts_with_sparse_checkpoints,
        param_space={"lr": tune.grid_search([0.1, 0.5]), "dir": str(tmp_path)},
        tune_config=tune.TuneConfig(metric="w", mode="max", scheduler=pbt),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert grid.num_errors == 0
    (lower,) = [r for r in grid if r.metrics["trial_id"].endswith("_00000")]  # lr=0.1: exploited at step 2
    frame = lower.metrics_dataframe
    started_from = [s for s in frame["src"] if s != "-"]
    # Its retry started again from the copied checkpoint (not from its own of step 2, with the new config),
    # and the rows it logged before failing were cut: each iteration appears once.
    assert started_from and not started_from[0].startswith(lower.metrics["trial_id"])
    assert list(frame["training_iteration"]) == [1, 2, 3, 4, 5, 6]


def _checkpoints_every_third_step(config):
    import json
    import tempfile

    state = {"step": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
    for step in range(state["step"] + 1, 10):
        saved = None
        if step % 3 == 0:
            saved = tempfile.mkdtemp()
            with open(os.path.join(saved, "state.json"), "w") as f:
                json.dump({"step": step}, f)
        tune.report({"score": step * config["lr"]},
                    checkpoint=tune.Checkpoint.from_directory(saved) if saved else None)


def test_the_policy_log_names_the_iteration_of_the_cloned_checkpoint(tmp_path):
    """It named the donor's last iteration; the checkpoint cloned was older (taken every third step), so
    PopulationBasedTrainingReplay would change the config at the wrong iteration."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": [0.1, 0.5]}, synch=True)
    tune.Tuner(_checkpoints_every_third_step, param_space={"lr": tune.grid_search([0.1, 0.5])},
               tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
               run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    with open(tmp_path / "exp" / "pbt_global.txt") as f:
        lines = [json.loads(line) for line in f]
    assert lines
    assert all(clone_iteration % 3 == 0 for _, _, _, clone_iteration, _, _ in lines), lines


def _score_falls_as_it_trains(config):
    from _trainables import report_step, restore_step

    step = restore_step()
    while step < 8:
        step += 1
        report_step(step, score=-step + config["lr"])


def test_an_exploited_trial_waits_behind_the_trials_already_waiting(tmp_path):
    """A trial that copied a donor took the donor's training time, and its old queue entry at that time counted
    as current again: it ran before the paused top trials every time, and with a score that falls as trials
    train, the run exploited back and forth without end."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": tune.uniform(0.0, 1.0)})
    grid = tune.Tuner(_score_falls_as_it_trains, param_space={"lr": tune.grid_search([0.1, 0.3, 0.6, 0.9])},
                      tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt, time_budget_s=120),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="falling", verbose=0)).fit()
    assert not grid.errors
    assert [r.metrics["step"] for r in grid] == [8, 8, 8, 8]  # every trial ran to its end, within the budget


def _four_steps_at_its_own_pace(config):
    import json
    import tempfile
    import time

    from tunesmith import train

    state = {"it": 0, "lrs": []}
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "s.json")) as f:
            state = json.load(f)
    slow = config["lr"] < 0.2
    restarted_at_the_end = state["it"] >= 4  # the slow trial, exploited at its last iteration
    while state["it"] < 4:
        state["it"] += 1
        state["lrs"].append(config["lr"])
        time.sleep(0.3 if slow else 0.05)
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "s.json"), "w") as f:
            json.dump(state, f)
        train.report({"score": sum(state["lrs"]), "lr_seen": config["lr"]}, checkpoint=train.Checkpoint.from_directory(d))
    if slow or restarted_at_the_end:
        open(config["slow_done"], "w").close()
    else:  # the donor is still running when the slow trial reports its last iteration
        deadline = time.time() + 30
        while not os.path.exists(config["slow_done"]) and time.time() < deadline:
            time.sleep(0.02)


def test_a_trial_exploited_at_its_last_iteration_keeps_its_own_config(tmp_path):
    """Exploited when it reported its last iteration, the trial restarted from the donor's checkpoint of
    that same iteration and ended without a result: its rows and checkpoints were its own, but its
    stored config and tag were the perturbed ones that never ran (two configs for one trial)."""
    from tunesmith import tune

    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4, quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": tune.uniform(0.01, 1.0)}, resample_probability=0.0)
    grid = tune.Tuner(
        tune.with_resources(_four_steps_at_its_own_pace, {"cpu": 0.5}),
        param_space={"lr": tune.grid_search([0.1, 0.3]), "slow_done": str(tmp_path / "slow_done")},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0),
    ).fit()
    analysis = tune.ExperimentAnalysis(str(tmp_path / "exp"))
    for result in grid:
        trial = [t for t in analysis.trials if t.trial_id == result.metrics["trial_id"]][0]
        assert result.config["lr"] == trial.config["lr"] == result.metrics["lr_seen"], trial.experiment_tag


def test_a_donor_that_copied_another_trial_gives_its_copied_state_not_an_older_own_checkpoint(tmp_path):
    """A donor exploited since its last own checkpoint (and with no PBT checkpoint) gave that older
    checkpoint, whose weights never had the config the donor was given since, paired with that config
    and the donor's latest iteration."""
    from tunesmith.train import Checkpoint
    from tunesmith.tune.schedulers.pbt import _PBTTrialState

    pbt = PopulationBasedTraining(metric="score", mode="max", perturbation_interval=2,
                                  hyperparam_mutations={"lr": [0.1, 0.2]})
    donor, bottom = Trial("f", {"lr": 0.1}, trial_id="d"), Trial("f", {"lr": 0.2}, trial_id="r")
    own = Checkpoint(str(tmp_path / "d_own_step_1"))
    donor.checkpoint_manager.register(own, {"training_iteration": 1})
    donor.started_from, donor.started_from_iteration = Checkpoint(str(tmp_path / "x_step_2")), 2
    donor.last_result = {"training_iteration": 15}
    for trial in (donor, bottom):
        pbt._trial_state[trial.trial_id] = _PBTTrialState(trial)
    copied = []
    pbt._quantile_of = lambda state, k: -1 if state is pbt._trial_state["r"] else 1
    pbt._random_top_trial = lambda k: donor
    pbt._exploit = lambda controller, trial, state, d, d_state, checkpoint, donor_iter: copied.append(
        (checkpoint.path, donor_iter))
    assert pbt._checkpoint_or_exploit(None, bottom, pbt._trial_state["r"], 2, bottom)
    assert copied == [(str(tmp_path / "x_step_2"), 2)]
