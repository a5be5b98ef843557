"""Scheduler construction, metric/mode resolution and the compatibility matrix."""
from __future__ import annotations

import pytest

from tunesmith import tune
from tunesmith.tune import schedulers
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    MedianStoppingRule,
    PB2,
    PopulationBasedTraining,
    ResourceChangingScheduler,
    check_scheduler_compatibility,
    create_scheduler,
)

ALL_NAMES = [
    "fifo", "async_hyperband", "asha", "median_stopping_rule", "hyperband",
    "hb_bohb", "pbt", "pbt_replay", "pb2", "resource_changing",
]


@pytest.mark.parametrize(
    "name, kwargs, cls",
    [
        ("fifo", {}, FIFOScheduler),
        ("async_hyperband", {"max_t": 10}, AsyncHyperBandScheduler),
        ("ASHA", {}, ASHAScheduler),
        ("median_stopping_rule", {"grace_period": 2}, MedianStoppingRule),
        ("hyperband", {"max_t": 27}, HyperBandScheduler),
        ("hb_bohb", {}, HyperBandForBOHB),
        ("pbt", {"hyperparam_mutations": {"lr": [0.1, 0.01]}}, PopulationBasedTraining),
        ("pb2", {"hyperparam_bounds": {"lr": [0.1, 0.01]}}, PB2),
        ("resource_changing", {"base_scheduler": ASHAScheduler()}, ResourceChangingScheduler),
    ],
)
def test_create_scheduler_builds_every_scheduler(name, kwargs, cls):
    scheduler = tune.create_scheduler(name, **kwargs)
    assert isinstance(scheduler, cls)


def test_create_scheduler_replay_and_unknown_names(tmp_path):
    policy = tmp_path / "pbt_policy_x.txt"
    policy.write_text('["0", "1", 2, 2, {"lr": 0.1}, {"lr": 0.2}]\n')
    replay = create_scheduler("pbt_replay", policy_file=str(policy))
    assert replay.config == {"lr": 0.1}
    with pytest.raises(ValueError) as info:
        create_scheduler("hyperbandit")
    for name in ALL_NAMES:
        assert name in str(info.value)


def test_public_names_are_importable_from_the_package():
    from tunesmith.tune.schedulers.pb2 import PB2 as PB2_
    from tunesmith.tune.schedulers.resource_changing_scheduler import DistributeResourcesToTopJob

    assert PB2_ is PB2 and DistributeResourcesToTopJob.__name__ == "DistributeResourcesToTopJob"
    assert ASHAScheduler is AsyncHyperBandScheduler
    assert set(schedulers.__all__) >= {"ASHAScheduler", "PopulationBasedTrainingReplay", "create_scheduler"}


@pytest.mark.parametrize(
    "make",
    [
        lambda: ASHAScheduler(),
        lambda: HyperBandScheduler(),
        lambda: MedianStoppingRule(),
        lambda: PopulationBasedTraining(hyperparam_mutations={"lr": [1, 2]}),
        lambda: PB2(hyperparam_bounds={"lr": [1, 2]}),
        lambda: HyperBandForBOHB(),
    ],
)
def test_metric_and_mode_come_from_tune_config_or_raise(make):
    scheduler = make()
    assert scheduler.set_search_properties("loss", "min")
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")
    # Same values again are fine; different ones are refused.
    assert scheduler.set_search_properties("loss", "min")
    assert scheduler.set_search_properties("acc", None) is False
    assert scheduler.set_search_properties(None, "max") is False
    with pytest.raises(ValueError, match=r"metric.*mode.*TuneConfig"):
        make().set_search_properties(None, None)
    with pytest.raises(ValueError, match="mode"):
        make().set_search_properties("loss", None)
    with pytest.raises(ValueError, match="metric"):
        make().on_trial_add(None, Trial("t", {}))


def test_fifo_needs_no_metric():
    assert FIFOScheduler().set_search_properties(None, None)


class BasicVariantGenerator:
    pass


class OptunaSearch:
    pass


class TuneBOHB:
    pass


class ConcurrencyLimiter:
    def __init__(self, searcher):
        self.searcher = searcher


@pytest.mark.parametrize(
    "scheduler, search_alg, ok",
    [
        (ASHAScheduler(), OptunaSearch(), True),
        (HyperBandScheduler(), OptunaSearch(), True),
        (MedianStoppingRule(), OptunaSearch(), True),
        (PopulationBasedTraining(hyperparam_mutations={"a": [1]}), None, True),
        (PopulationBasedTraining(hyperparam_mutations={"a": [1]}), BasicVariantGenerator(), True),
        (PopulationBasedTraining(hyperparam_mutations={"a": [1]}), OptunaSearch(), False),
        (PopulationBasedTraining(hyperparam_mutations={"a": [1]}), ConcurrencyLimiter(OptunaSearch()), False),
        (PB2(hyperparam_bounds={"a": [1, 2]}), OptunaSearch(), False),
        (HyperBandForBOHB(), TuneBOHB(), True),
        (HyperBandForBOHB(), ConcurrencyLimiter(TuneBOHB()), True),
        (HyperBandForBOHB(), OptunaSearch(), False),
        (ResourceChangingScheduler(PopulationBasedTraining(hyperparam_mutations={"a": [1]})), OptunaSearch(), False),
    ],
)
def test_compatibility_matrix(scheduler, search_alg, ok):
    if ok:
        check_scheduler_compatibility(scheduler, search_alg)
    else:
        with pytest.raises(ValueError, match=f"{type(scheduler).__name__} cannot be used with .*OptunaSearch"):
            check_scheduler_compatibility(scheduler, search_alg)


class Trainable:
    """Stands for tunesmith's Trainable base class in these checks."""

    def save_checkpoint(self, checkpoint_dir):
        return None


class NoCheckpoints(Trainable):
    def step(self):
        return {}


class WithCheckpoints(Trainable):
    def step(self):
        return {}

    def save_checkpoint(self, checkpoint_dir):
        return {"x": 1}


class OldStyle(Trainable):
    def _train(self):
        return {}

    def _save(self, checkpoint_dir):
        return checkpoint_dir


@pytest.mark.parametrize(
    "scheduler", [HyperBandScheduler(), PopulationBasedTraining(hyperparam_mutations={"a": [1]}), HyperBandForBOHB()]
)
def test_schedulers_that_pause_need_a_trainable_that_checkpoints(scheduler):
    with pytest.raises(ValueError, match="cannot save checkpoints"):
        check_scheduler_compatibility(scheduler, None, trainable=NoCheckpoints)
    check_scheduler_compatibility(scheduler, None, trainable=WithCheckpoints)
    check_scheduler_compatibility(scheduler, None, trainable=OldStyle)
    check_scheduler_compatibility(scheduler, None, trainable=lambda config: None)  # cannot tell: allowed
    with pytest.raises(ValueError, match="cannot save checkpoints"):
        check_scheduler_compatibility(scheduler, None, can_checkpoint=False)
    # ASHA never pauses, so it does not care.
    check_scheduler_compatibility(ASHAScheduler(), None, trainable=NoCheckpoints)


def test_debug_strings_describe_the_state():
    asha = ASHAScheduler(metric="acc", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    assert asha.debug_string().startswith("Using AsyncHyperBand: num_stopped=0")
    assert "Bracket: Iter 4.000: None | Iter 2.000: None | Iter 1.000: None" in asha.debug_string()
    assert HyperBandScheduler(metric="a", mode="max").debug_string().startswith("Using HyperBand")
    assert "MedianStoppingRule" in MedianStoppingRule().debug_string()


def test_save_and_restore_keep_the_state(tmp_path):
    asha = ASHAScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)

    class Ctrl:
        def first_trial_with_status(self, status):
            return None

    trials = [Trial("t", {}, trial_id=f"{i}") for i in range(3)]
    for t, acc in zip(trials, (0.9, 0.5, 0.1)):
        asha.on_trial_add(Ctrl(), t)
        asha.on_trial_result(Ctrl(), t, {"training_iteration": 1, "acc": acc})
    path = str(tmp_path / "sched.pkl")
    asha.save(path)
    fresh = ASHAScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    fresh.restore(path)
    late = Trial("t", {}, trial_id="late")
    fresh.on_trial_add(Ctrl(), late)
    assert fresh.on_trial_result(Ctrl(), late, {"training_iteration": 1, "acc": 0.3}) == "STOP"

    pbt = PopulationBasedTraining(metric="acc", mode="max", hyperparam_mutations={"lr": lambda: 0.1})
    pbt.on_trial_add(None, Trial("t", {}))
    pbt.save(path)
    fresh = PopulationBasedTraining(metric="acc", mode="max", hyperparam_mutations={"lr": [1]})
    fresh.restore(path, trials=[Trial("t", {"lr": 0.1})])
    # The state is the bookkeeping; user callables come from the scheduler given on restore.
    assert fresh._hyperparam_mutations["lr"] == [1] and list(fresh._trial_state) == ["00000"]


class _StopsAtThree(schedulers.TrialScheduler):
    """A user's scheduler that stops every trial at its third result and records the ends it hears of."""

    def __init__(self):
        super().__init__()
        self.completed = []

    def on_trial_result(self, tune_controller, trial, result):
        return self.STOP if result["training_iteration"] >= 3 else self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self.completed.append((trial.config["x"], result["training_iteration"]))

    def choose_trial_to_run(self, tune_controller):
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                return trial
        return None


def _counts_to_ten(config):
    for i in range(10):
        tune.report({"i": i})


def test_a_scheduler_hears_of_the_end_of_trials_it_stopped(tmp_path):
    # As on Ray: on_trial_complete comes for every trial that ends, STOP decisions included.
    scheduler = _StopsAtThree()
    tune.Tuner(_counts_to_ten, param_space={"x": tune.grid_search([1, 2])},
               tune_config=tune.TuneConfig(scheduler=scheduler),
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(scheduler.completed) == [(1, 3), (2, 3)]


class _Decides(schedulers.FIFOScheduler):
    def __init__(self, decision):
        super().__init__()
        self.decision = decision

    def on_trial_result(self, tune_controller, trial, result):
        return self.decision


class _StepsForever(tune.Trainable):
    def step(self):
        return {"x": 1}


@pytest.mark.parametrize("trainable", [_counts_to_ten, _StepsForever], ids=["function", "class"])
@pytest.mark.parametrize("decision", ["STOPP", "stop", None])
def test_a_decision_that_is_not_one_is_an_error_naming_the_scheduler(tmp_path, trainable, decision):
    """A misspelt decision (or a missing return) was taken as NOOP: a class trial then waited forever for
    an answer, and a function trial went on as if told to continue."""
    with pytest.raises(ValueError, match=rf"_Decides.on_trial_result returned {decision!r} for trial .*"
                                         "CONTINUE, PAUSE, STOP or NOOP"):
        tune.Tuner(trainable, tune_config=tune.TuneConfig(scheduler=_Decides(decision)),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
