"""Schedulers through Tuner.fit() with real worker processes."""
from __future__ import annotations

import json
import os
import random
import tempfile

import pytest

from tunesmith import train, tune
from tunesmith.train import Checkpoint
from tunesmith.tune.schedulers import ASHAScheduler, HyperBandScheduler, PopulationBasedTraining

MAX_T = 27
# Learning-curve quality of each config; 1.0 is the known best.
QUALITIES = [0.35, 0.8, 0.1, 0.55, 1.0, 0.2, 0.65, 0.45, 0.9, 0.05, 0.7, 0.3, 0.6, 0.15,
             0.85, 0.4, 0.25, 0.75, 0.5, 0.95, 0.02, 0.62, 0.33, 0.88, 0.12, 0.58, 0.42]


def learning_curve(config):
    for it in range(1, MAX_T + 1):
        train.report({"acc": config["q"] * (1 - 0.8**it)})


def _fit(trainable, param_space, tmp_path, name, **tune_config):
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(**tune_config),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0),
    )
    return tuner.fit()


def test_asha_finds_the_best_config_with_a_fraction_of_fifos_iterations(tmp_path):
    space = {"q": tune.grid_search(QUALITIES)}
    fifo = _fit(learning_curve, space, tmp_path, "fifo", metric="acc", mode="max")
    asha = _fit(
        learning_curve, space, tmp_path, "asha", metric="acc", mode="max",
        scheduler=ASHAScheduler(max_t=MAX_T, grace_period=1, reduction_factor=3),
    )
    fifo_iters = sum(r.metrics["training_iteration"] for r in fifo)
    asha_iters = sum(r.metrics["training_iteration"] for r in asha)
    assert fifo_iters == MAX_T * len(QUALITIES)
    assert asha.get_best_result().config["q"] == 1.0
    assert asha.get_best_result().metrics["training_iteration"] == MAX_T
    assert asha_iters <= 0.4 * fifo_iters


# -- the PBT function example: the best learning rate depends on the accuracy reached ----------
PBT_STEPS = 100


def _optimal_lr(accuracy):
    # A triangle: rising until accuracy 50, falling after it, clamped to [0.001, 0.01].
    lr = 0.01 * accuracy / 50 if accuracy < 50 else 0.01 - 0.01 * (accuracy - 50) / 50
    return min(0.01, max(0.001, lr))


def pbt_function(config):
    state = {"accuracy": 0.0, "step": 0}
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
    lr = config["lr"]
    while state["step"] < PBT_STEPS:
        optimal = _optimal_lr(state["accuracy"])
        q_err = max(lr, optimal) / min(lr, optimal)
        if q_err < 3:
            state["accuracy"] += 1.0 / q_err
        elif lr > optimal:
            state["accuracy"] -= (q_err - 3) * 0.5
        state["accuracy"] = max(0.0, min(100.0, state["accuracy"]))
        state["step"] += 1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump(state, f)
            train.report(
                {"mean_accuracy": state["accuracy"], "lr": lr, "step": state["step"]},
                checkpoint=Checkpoint.from_directory(d),
            )


POPULATION = [0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.02]


def test_pbt_beats_the_best_fixed_learning_rate_and_resumes_from_checkpoints(tmp_path):
    random.seed(0)
    space = {"lr": tune.grid_search(POPULATION)}
    fixed = _fit(pbt_function, space, tmp_path, "fixed", metric="mean_accuracy", mode="max")
    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=4,
        hyperparam_mutations={"lr": tune.uniform(0.0001, 0.02)},
    )
    results = _fit(pbt_function, space, tmp_path, "pbt", metric="mean_accuracy", mode="max", scheduler=pbt)
    best_fixed = fixed.get_best_result().metrics["mean_accuracy"]
    best_pbt = results.get_best_result().metrics["mean_accuracy"]
    assert best_pbt > best_fixed
    # Exploited trials restarted from a donor's checkpoint: the iteration count went on
    # from the checkpoint instead of starting over.
    for r in results:
        assert r.metrics["training_iteration"] == r.metrics["step"] == PBT_STEPS
    exp_dir = results.experiment_path
    with open(os.path.join(exp_dir, "pbt_global.txt")) as f:
        exploits = [json.loads(line) for line in f]
    assert exploits
    for _, _, _, donor_iter, _, new_config in exploits:
        assert 1 <= donor_iter <= PBT_STEPS and 0.0001 <= new_config["lr"] <= 0.02


def checkpointing_curve(config):
    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "step.txt")) as f:
                step = int(f.read())
    while step < 9:
        step += 1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step.txt"), "w") as f:
                f.write(str(step))
            train.report({"acc": config["q"] * step, "step": step}, checkpoint=Checkpoint.from_directory(d))


def test_hyperband_pauses_at_rungs_and_resumes_from_checkpoints(tmp_path):
    qs = [1.0, 0.9, 0.8, 0.1, 0.7, 0.2, 0.6, 0.3]
    results = _fit(
        checkpointing_curve, {"q": tune.grid_search(qs)}, tmp_path, "hb", metric="acc", mode="max",
        scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
    )
    reached = {r.config["q"]: r.metrics["training_iteration"] for r in results}
    # Bracket (3 trials, r=9) runs through; bracket (5 trials, r=3) keeps the best 2 to 9.
    assert reached == {1.0: 9, 0.9: 9, 0.8: 9, 0.1: 3, 0.7: 9, 0.2: 3, 0.6: 9, 0.3: 3}
    for r in results:
        assert r.metrics["training_iteration"] == r.metrics["step"]


class _NoCheckpointClass(tune.Trainable):
    def step(self):
        return {"score": 1}


def test_pbt_on_a_class_that_cannot_checkpoint_fails_up_front():
    from tunesmith.tune.schedulers import PopulationBasedTraining

    pbt = PopulationBasedTraining(metric="score", mode="max", hyperparam_mutations={"lr": [0.1, 0.2]})
    with pytest.raises(ValueError, match="save_checkpoint"):
        tune.Tuner(_NoCheckpointClass, param_space={"lr": 0.1},
                   tune_config=tune.TuneConfig(scheduler=pbt, num_samples=2),
                   run_config=tune.RunConfig(verbose=0)).fit()


def _never_checkpoints(config):
    for i in range(20):
        tune.report({"score": config["q"] * i})


def test_hyperband_restarts_paused_trials_without_checkpoints_from_scratch(caplog):
    import logging

    from tunesmith.tune.schedulers import HyperBandScheduler

    hb = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        grid = tune.Tuner(_never_checkpoints, param_space={"q": tune.grid_search([0.1 * i for i in range(1, 14)])},
                          tune_config=tune.TuneConfig(scheduler=hb),
                          run_config=tune.RunConfig(verbose=0)).fit()
    assert grid.num_errors == 0
    warnings = [r.getMessage() for r in caplog.records if "no checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "start over from scratch" in warnings[0]
    for result in grid:
        # A trial that restarted has each iteration in its logs once: 1, 2, ..., n.
        iterations = list(result.metrics_dataframe["training_iteration"])
        assert iterations == list(range(1, len(iterations) + 1))


def test_pbt_with_a_custom_searcher_is_refused():
    from tunesmith.tune.schedulers import PopulationBasedTraining
    from tunesmith.tune.search import Searcher

    class FixedSearcher(Searcher):
        def suggest(self, trial_id):
            return {"lr": 0.1}

    pbt = PopulationBasedTraining(metric="score", mode="max", hyperparam_mutations={"lr": [0.1, 0.2]})
    with pytest.raises(ValueError, match="cannot be"):
        tune.Tuner(_never_checkpoints, tune_config=tune.TuneConfig(scheduler=pbt, search_alg=FixedSearcher()),
                   run_config=tune.RunConfig(verbose=0)).fit()


def _resource_reporter(config):
    from _trainables import report_step, restore_step

    step = restore_step()
    while step < config["steps"]:
        step += 1
        import time

        time.sleep(0.05)
        report_step(step, cpus=tune.get_trial_resources().required_resources.get("CPU", 0))


def test_resource_changing_scheduler_gives_freed_cpus_to_the_remaining_trial():
    import tunesmith
    from tunesmith.tune.schedulers import ResourceChangingScheduler

    tunesmith.init(num_cpus=2)
    scheduler = ResourceChangingScheduler()
    grid = tune.Tuner(
        _resource_reporter,
        param_space={"steps": tune.grid_search([2, 30])},
        tune_config=tune.TuneConfig(metric="step", mode="max", scheduler=scheduler),
        run_config=tune.RunConfig(verbose=0),
    ).fit()
    long_trial = [r for r in grid if r.config["steps"] == 30][0]
    cpus = list(long_trial.metrics_dataframe["cpus"])
    assert cpus[0] == 1
    assert cpus[-1] == 2  # after the short trial ended, it was restarted with both CPUs
    assert long_trial.metrics["step"] == 30 and long_trial.metrics["training_iteration"] == 30
