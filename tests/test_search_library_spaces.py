"""Each integration's own search space format, library-specific features, and the seed's examples."""
from __future__ import annotations

import os

import pytest

from tunesmith import train, tune


def run_config(tmp_path, name, **kwargs):
    return tune.RunConfig(name=name, storage_path=str(tmp_path / "storage"), verbose=0, **kwargs)


# ------------------------------------------------------------------------ the seed's examples


def test_seed_example_optuna_search(tmp_path):
    from tunesmith.tune.search.optuna import OptunaSearch

    def train_fn(config):
        # This objective function is just for demonstration purposes
        train.report({"loss": config["param"]})

    tuner = tune.Tuner(
        train_fn,
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(),
            num_samples=100,
            metric="loss",
            mode="min",
        ),
        param_space={"param": tune.uniform(0, 1)},
        run_config=run_config(tmp_path, "seed_optuna"),
    )
    results = tuner.fit()
    assert len(results) == 100 and results.num_errors == 0
    # TPE concentrates on small values of the loss after its startup trials.
    assert results.get_best_result().metrics["loss"] < 0.05


def test_seed_example_saving_and_restoring_search_algorithms(tmp_path, monkeypatch):
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    monkeypatch.chdir(tmp_path)

    def train_fn(config):
        train.report({"loss": (config["x"] - 1) ** 2})

    space = {"x": tune.uniform(-3, 3)}
    search_alg = HyperOptSearch(metric="loss", mode="min")
    tuner_1 = tune.Tuner(train_fn, param_space=space, tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=4),
                         run_config=tune.RunConfig(verbose=0))
    results_1 = tuner_1.fit()
    search_alg.save("./my-checkpoint.pkl")

    # Restore the saved state onto another search algorithm, in a new tuning script
    search_alg2 = HyperOptSearch(metric="loss", mode="min")
    search_alg2.restore("./my-checkpoint.pkl")
    tuner_2 = tune.Tuner(train_fn, param_space=space, tune_config=tune.TuneConfig(search_alg=search_alg2, num_samples=4),
                         run_config=tune.RunConfig(verbose=0))
    results_2 = tuner_2.fit()
    assert len(results_1) == len(results_2) == 4
    seen = {r.config["x"] for r in results_1}
    assert not seen & {r.config["x"] for r in results_2}  # it went on, it did not start over
    assert len(search_alg2._trials.trials) == 8

    # Tune saves the searcher's state in the experiment folder during tuning.
    search_alg = HyperOptSearch(metric="loss", mode="min")
    tune.Tuner(
        train_fn, param_space=space,
        tune_config=tune.TuneConfig(num_samples=5, search_alg=search_alg),
        run_config=tune.RunConfig(name="my-experiment-1", storage_path=str(tmp_path / "my_results"), verbose=0),
    ).fit()
    search_alg2 = HyperOptSearch()
    search_alg2.restore_from_dir(os.path.join(str(tmp_path / "my_results"), "my-experiment-1"))
    assert len(search_alg2._trials.trials) == 5


# ---------------------------------------------------------------------------------- Optuna


def two_losses(config):
    return {"a": (config["x"] - 0.2) ** 2, "b": (config["x"] - 0.8) ** 2}


def test_optuna_multi_objective(tmp_path):
    import optuna

    from tunesmith.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric=["a", "b"], mode=["min", "min"], seed=0)
    grid = tune.Tuner(
        two_losses, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
        run_config=run_config(tmp_path, "multi"),
    ).fit()
    assert len(grid) == 6 and grid.num_errors == 0
    study = searcher._study
    assert len(study.directions) == 2 and all(d == optuna.study.StudyDirection.MINIMIZE for d in study.directions)
    assert len(study.best_trials) >= 1
    with pytest.raises(ValueError, match="same length"):
        OptunaSearch(metric=["a", "b"], mode=["min"])
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    with pytest.raises(ValueError, match="Multi-objective search is available with OptunaSearch"):
        HyperOptSearch(metric=["a", "b"], mode=["min", "max"])


def test_optuna_native_distributions_and_define_by_run(tmp_path):
    import optuna

    from tunesmith.tune.search.optuna import OptunaSearch

    def objective(config):
        return {"loss": config["model"]["lr"] * config["layers"], "kind": config["kind"]}

    dists = {"model/lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "layers": optuna.distributions.IntDistribution(1, 4)}
    searcher = OptunaSearch(dists, metric="loss", mode="min", seed=0, points_to_evaluate=[{"model/lr": 0.01, "layers": 2}])
    grid = tune.Tuner(objective, param_space={"kind": "dict"},
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=4),
                      run_config=run_config(tmp_path, "dists")).fit()
    configs = [r.config for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]
    assert configs[0] == {"model": {"lr": 0.01}, "layers": 2, "kind": "dict"}
    assert all(1e-4 <= c["model"]["lr"] <= 0.1 and 1 <= c["layers"] <= 4 for c in configs)

    def define_by_run(trial):
        layers = trial.suggest_int("layers", 1, 4)
        trial.suggest_float("model/lr", 1e-4, 1e-1, log=True)
        if layers > 2:
            trial.suggest_categorical("norm", ["batch", "layer"])
        return {"kind": "define-by-run"}

    searcher = OptunaSearch(define_by_run, metric="loss", mode="min", seed=1)
    grid = tune.Tuner(objective, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=5),
                      run_config=run_config(tmp_path, "dbr")).fit()
    assert grid.num_errors == 0
    for r in grid:
        assert r.config["kind"] == "define-by-run"
        assert ("norm" in r.config) == (r.config["layers"] > 2)
    with pytest.raises(TypeError, match="define-by-run"):
        searcher.add_evaluated_point({"layers": 1, "model": {"lr": 0.01}}, 0.5)


def curve(config):
    for i in range(1, 9):
        train.report({"loss": config["x"] / i + (1 - config["x"]) * 0.05})


def test_asha_with_optuna_reports_intermediate_values(tmp_path):
    from tunesmith.tune.schedulers import ASHAScheduler
    from tunesmith.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(seed=0)
    grid = tune.Tuner(
        curve, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=ASHAScheduler(max_t=8, grace_period=1),
                                    metric="loss", mode="min", num_samples=10, max_concurrent_trials=2),
        run_config=run_config(tmp_path, "asha"),
    ).fit()
    iterations = [r.metrics["training_iteration"] for r in grid]
    assert max(iterations) == 8 and min(iterations) < 8  # ASHA stopped some trials early
    trials = searcher._study.trials
    assert len(trials) == 10 and all(t.state.name == "COMPLETE" for t in trials)
    by_value = {round(t.value, 12): t for t in trials}
    for r in grid:
        t = by_value[round(r.metrics["loss"], 12)]
        # Optuna saw every intermediate result, up to where the scheduler stopped the trial.
        assert sorted(t.intermediate_values) == list(range(1, r.metrics["training_iteration"] + 1))


# -------------------------------------------------------------------------------- HyperOpt


def _hyperopt_conditional_space() -> dict:
    """A HyperOpt space with a choice of optimizers, each with parameters of its own."""
    from hyperopt import hp

    return {
        "optimizer": hp.choice("optimizer", [
            {"name": "sgd", "lr": hp.loguniform("sgd_lr", -7, 0), "momentum": hp.uniform("momentum", 0, 1)},
            {"name": "adam", "lr": hp.loguniform("adam_lr", -7, 0)},
            {"name": "lbfgs"},
        ]),
        "noise": hp.normal("noise", 0, 1),
    }


def test_hyperopt_conditional_space_and_normal_domains(tmp_path):
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    def objective(config):
        opt = config["optimizer"]
        return {"loss": opt.get("lr", 0.5) + abs(config["noise"])}

    space = _hyperopt_conditional_space()
    searcher = HyperOptSearch(space, metric="loss", mode="min", random_state_seed=0, n_initial_points=3,
                              points_to_evaluate=[{"optimizer": 2, "noise": 0.0}])
    grid = tune.Tuner(objective, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=8),
                      run_config=run_config(tmp_path, "conditional")).fit()
    configs = [r.config for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]
    assert configs[0] == {"optimizer": {"name": "lbfgs"}, "noise": 0.0}
    for c in configs:
        name = c["optimizer"]["name"]
        assert ("momentum" in c["optimizer"]) == (name == "sgd")
        assert ("lr" in c["optimizer"]) == (name != "lbfgs")

    # Tune's randn/qrandn become hp.normal/hp.qnormal.
    searcher = HyperOptSearch(metric="loss", mode="min", random_state_seed=0)
    grid = tune.Tuner(lambda c: {"loss": c["a"] ** 2 + c["b"] ** 2},
                      param_space={"a": tune.randn(3, 0.5), "b": tune.qrandn(0, 1, 0.25)},
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
                      run_config=run_config(tmp_path, "normal")).fit()
    for r in grid:
        assert (r.config["b"] / 0.25).is_integer()
    assert 1.0 < sum(r.config["a"] for r in grid) / 6 < 5.0


def _loss_of_lr(config):
    return {"loss": (config["lr"] - 0.02) ** 2 + config.get("momentum", 0) * 0}


def test_an_edited_converted_space_is_searched_as_edited(tmp_path):
    """Keys added to (or narrowed in) what convert_search_space returned were ignored: the searcher went on
    with the Tune space the dict came from. Integers of a converted space given as hyperopt's own came
    back as floats."""
    pytest.importorskip("hyperopt")
    from hyperopt import hp

    from tunesmith.tune.search.hyperopt import HyperOptSearch

    converted = HyperOptSearch.convert_search_space({"lr": tune.uniform(0.0, 1.0), "layers": tune.randint(1, 4)})
    converted["lr"] = hp.uniform("lr", 0.5, 0.6)
    converted["momentum"] = hp.uniform("momentum", 0.8, 0.9)
    searcher = HyperOptSearch(converted, metric="loss", mode="min", random_state_seed=0)
    grid = tune.Tuner(_loss_of_lr, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
                      run_config=run_config(tmp_path, "edited")).fit()
    assert not grid.errors
    for r in grid:
        assert 0.5 <= r.config["lr"] <= 0.6 and 0.8 <= r.config["momentum"] <= 0.9
        assert type(r.config["layers"]) is int and 1 <= r.config["layers"] <= 3


def _conditional(config):
    return {"loss": config["opt"]["beta"] if "beta" in config["opt"] else config["opt"]["gamma"]}


@pytest.mark.parametrize("library", ["optuna", "hyperopt"])
def test_a_seeded_searchers_conditional_values_repeat_run_after_run(tmp_path, library):
    """The values inside a chosen dict (a conditional space) came from numpy's global generator, so two runs
    of a seeded searcher picked the same branches with different inner values."""
    pytest.importorskip(library)
    space = {"opt": tune.choice([{"beta": tune.uniform(0, 1)}, {"gamma": tune.uniform(1, 2)}])}

    def run(name):
        if library == "optuna":
            from tunesmith.tune.search.optuna import OptunaSearch

            searcher = OptunaSearch(seed=0)
        else:
            from tunesmith.tune.search.hyperopt import HyperOptSearch

            searcher = HyperOptSearch(random_state_seed=0)
        grid = tune.Tuner(_conditional, param_space=space, tune_config=tune.TuneConfig(
            search_alg=searcher, metric="loss", mode="min", num_samples=5, max_concurrent_trials=1),
            run_config=run_config(tmp_path, name)).fit()
        return [r.config for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]

    first = run("first")
    assert first == run("second")
    assert all(0 <= c["opt"].get("beta", 0.5) <= 1 and 1 <= c["opt"].get("gamma", 1.5) <= 2 for c in first)


# ------------------------------------------------------------------------- Nevergrad, ZOOpt, BayesOpt


def test_nevergrad_parametrization_and_optimizer_instance(tmp_path):
    import nevergrad as ng

    from tunesmith.tune.search.nevergrad import NevergradSearch

    def objective(config):
        return {"loss": (config["x"] - 1) ** 2 + (config["act"] == "relu")}

    space = ng.p.Dict(x=ng.p.Scalar(lower=-3, upper=3), act=ng.p.Choice(["relu", "tanh"]))
    searcher = NevergradSearch(ng.optimizers.OnePlusOne, space=space, metric="loss", mode="min", seed=0,
                               points_to_evaluate=[{"x": 0.5, "act": "tanh"}])
    grid = tune.Tuner(objective, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
                      run_config=run_config(tmp_path, "ng")).fit()
    configs = [r.config for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]
    assert configs[0] == {"x": 0.5, "act": "tanh"}
    assert all(-3 <= c["x"] <= 3 and c["act"] in ("relu", "tanh") for c in configs)
    assert searcher._opt.num_tell == 6

    instance = ng.optimizers.registry["TwoPointsDE"](ng.p.Instrumentation(x=ng.p.Scalar(lower=0, upper=1)), budget=10)
    searcher = NevergradSearch(instance, metric="loss", mode="max")
    grid = tune.Tuner(lambda c: {"loss": c["x"]}, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=4),
                      run_config=run_config(tmp_path, "ng_instance")).fit()
    assert len(grid) == 4 and all(0 <= r.config["x"] <= 1 for r in grid)


def test_zoopt_dim_dict(tmp_path):
    from zoopt import ValueType

    from tunesmith.tune.search.zoopt import ZOOptSearch

    dim_dict = {
        "height": (ValueType.CONTINUOUS, [-10, 10], 1e-2),
        "width": (ValueType.DISCRETE, [0, 10], True),
        "layer": (ValueType.GRID, [4, 8, 16]),
    }
    searcher = ZOOptSearch(algo="asracos", budget=10, dim_dict=dim_dict, metric="loss", mode="min", seed=0)
    grid = tune.Tuner(lambda c: {"loss": c["height"] ** 2 + c["width"] + c["layer"]},
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
                      run_config=run_config(tmp_path, "zoopt")).fit()
    for r in grid:
        assert -10 <= r.config["height"] <= 10 and r.config["width"] in range(11) and r.config["layer"] in (4, 8, 16)
    with pytest.raises(ValueError, match="budget"):
        ZOOptSearch(metric="loss", mode="min")
    # ZOOpt's argument for the space is dim_dict: `space=` went on to zoopt.Parameter, and the error
    # that followed told the user to pass `space`.
    with pytest.raises(TypeError, match="`dim_dict`"):
        ZOOptSearch(budget=10, space=dim_dict, metric="loss", mode="min")
    with pytest.raises(RuntimeError, match="pass the `dim_dict` argument"):
        ZOOptSearch(budget=10, metric="loss", mode="min").suggest("t1")


def test_bayesopt_bounds_and_analysis_warm_start(tmp_path):
    from tunesmith.tune.search.bayesopt import BayesOptSearch

    def objective(config):
        return {"score": -((config["x"] - 2) ** 2) - (config["y"] + 1) ** 2}

    first = tune.Tuner(objective, param_space={"x": tune.uniform(-5, 5), "y": tune.uniform(-5, 5)},
                       tune_config=tune.TuneConfig(num_samples=12,
                                                   search_alg=tune.search.BasicVariantGenerator(random_state=0)),
                       run_config=run_config(tmp_path, "first")).fit()
    searcher = BayesOptSearch({"x": (-5, 5), "y": (-5, 5)}, metric="score", mode="max", random_state=0,
                              analysis=first)
    grid = tune.Tuner(objective, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=4),
                      run_config=run_config(tmp_path, "bayes")).fit()
    # The twelve earlier results were registered before the first suggestion, then the four new ones.
    assert len(searcher._optimizer.space) == 16
    assert len(grid) == 4 and all(-5 <= r.config["x"] <= 5 for r in grid)


# ------------------------------------------------------------------------------------- BOHB


def bohb_trainable(config):
    from _trainables import report_step, restore_step

    step = restore_step()
    while step < 9:
        step += 1
        report_step(step, loss=(config["x"] - 1) ** 2 + 1.0 / step + (config["opt"] == "sgd"))


def test_bohb_with_hyperband_for_bohb_and_configspace(tmp_path):
    import ConfigSpace as CS

    from tunesmith.tune.schedulers import HyperBandForBOHB
    from tunesmith.tune.search.bohb import TuneBOHB

    cs = CS.ConfigurationSpace(seed=0)
    cs.add([CS.UniformFloatHyperparameter("x", -3, 3), CS.CategoricalHyperparameter("opt", ["sgd", "adam"])])
    searcher = TuneBOHB(cs, seed=0, bohb_config={"min_points_in_model": 3})
    scheduler = HyperBandForBOHB(time_attr="training_iteration", max_t=9, reduction_factor=3)
    grid = tune.Tuner(
        bohb_trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=12, metric="loss",
                                    mode="min"),
        run_config=run_config(tmp_path, "bohb"),
    ).fit()
    assert len(grid) == 12 and grid.num_errors == 0
    iterations = sorted(r.metrics["training_iteration"] for r in grid)
    assert iterations[0] < 9 and iterations[-1] == 9  # halved at rungs, the best went on to max_t
    # BOHB's model was fed per budget by the scheduler's rung results.
    budgets = {b for b, losses in searcher._bohber.losses.items() if losses}
    assert len(budgets) >= 2 and max(budgets) <= 9
    assert any("budget" in (r.metrics.get("hyperband_info") or {}) for r in grid)
    assert not searcher.running and not searcher.paused


# -------------------------------------------------------------------------------- Ax, HEBO


@pytest.mark.slow_search
def test_ax_parameter_dicts_and_constraints(tmp_path):
    from tunesmith.tune.search.ax import AxSearch

    parameters = [
        {"name": "x1", "type": "range", "bounds": [0.0, 1.0]},
        {"name": "x2", "type": "range", "bounds": [0.0, 1.0]},
        {"name": "kind", "type": "choice", "values": ["a", "b"]},
    ]
    searcher = AxSearch(parameters, metric="loss", mode="min", seed=0, parameter_constraints=["x1 + x2 <= 1.0"],
                        points_to_evaluate=[{"x1": 0.25, "x2": 0.25, "kind": "b"}])
    grid = tune.Tuner(lambda c: {"loss": (c["x1"] - 0.5) ** 2 + c["x2"]},
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=5),
                      run_config=run_config(tmp_path, "ax")).fit()
    configs = [r.config for r in sorted(grid, key=lambda r: r.metrics["trial_id"])]
    assert configs[0] == {"x1": 0.25, "x2": 0.25, "kind": "b"}
    assert all(c["x1"] + c["x2"] <= 1.0 + 1e-9 for c in configs)


@pytest.mark.slow_search
def test_hebo_design_space(tmp_path):
    from hebo.design_space.design_space import DesignSpace

    from tunesmith.tune.search.hebo import HEBOSearch

    space = DesignSpace().parse([
        {"name": "x", "type": "num", "lb": -2, "ub": 2},
        {"name": "n", "type": "int", "lb": 1, "ub": 5},
        {"name": "act", "type": "cat", "categories": ["relu", "tanh"]},
    ])
    searcher = HEBOSearch(space, metric="loss", mode="min", random_state_seed=0, max_concurrent=2,
                          points_to_evaluate=[{"x": 0.5, "n": 2, "act": "tanh"}], evaluated_rewards=[0.25])
    grid = tune.Tuner(lambda c: {"loss": c["x"] ** 2 + c["n"] + (c["act"] == "relu")},
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=4),
                      run_config=run_config(tmp_path, "hebo")).fit()
    assert len(grid) == 4
    assert all(-2 <= r.config["x"] <= 2 and 1 <= r.config["n"] <= 5 for r in grid)
    assert searcher._opt.y.shape[0] == 5  # the evaluated point plus the four trials


def test_the_same_space_on_the_searcher_and_as_param_space_takes_tune_configs_metric(tmp_path):
    from tunesmith.tune.search.optuna import OptunaSearch

    space = {"x": tune.uniform(-5, 5)}
    grid = tune.Tuner(
        lambda config: {"loss": (config["x"] - 1) ** 2}, param_space=space,
        tune_config=tune.TuneConfig(search_alg=OptunaSearch(space=space, seed=0), metric="loss", mode="min",
                                    num_samples=3),
        run_config=run_config(tmp_path, "both"),
    ).fit()
    assert not grid.errors and len(grid) == 3
    assert grid.get_best_result().metrics["loss"] == min(r.metrics["loss"] for r in grid)


@pytest.mark.parametrize("point, says", [
    ({"optimizer": 0, "noise": 0.0, "sgd_lr": 0.1}, "a label of a chosen branch is probably missing"),
    ({"optimizer": 2, "noise": 0.0, "nois": 1.0}, "it names ['nois'], which are no hp labels"),
])
def test_hyperopt_points_that_do_not_fit_a_hyperopt_space_are_named(point, says):
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    space = _hyperopt_conditional_space()
    searcher = HyperOptSearch(space, metric="loss", mode="min", points_to_evaluate=[point])
    with pytest.raises(ValueError, match="points_to_evaluate entry") as info:
        searcher.suggest("t0")
    assert says in str(info.value) and "momentum" in str(info.value)


def test_domains_a_library_searcher_cannot_take_are_named_for_what_they_are():
    """A domain under an integer dict key was refused as "inside lists", though the space has no list."""
    pytest.importorskip("hyperopt")
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    with pytest.raises(ValueError, match="'layer_sizes/1'.*keys of searched parameters must be strings"):
        HyperOptSearch.convert_search_space({"layer_sizes": {1: tune.randint(8, 64)}})
    with pytest.raises(ValueError, match="'layers/0'.*inside lists are not supported"):
        HyperOptSearch.convert_search_space({"layers": [tune.randint(16, 128)]})


def test_ax_takes_a_choice_of_ints_and_floats(tmp_path):
    """tune.choice([0.001, 0.01, 1]), a common learning-rate list, failed inside Ax ("Values in `values`
    not of the same type"); each trial now gets one of the user's own values."""
    pytest.importorskip("ax")
    from tunesmith.tune.search.ax import AxSearch

    grid = tune.Tuner(_loss_of_lr, param_space={"lr": tune.choice([0.001, 0.01, 1])},
                      tune_config=tune.TuneConfig(search_alg=AxSearch(seed=0), metric="loss", mode="min",
                                                  num_samples=3),
                      run_config=run_config(tmp_path, "ax_mixed")).fit()
    assert not grid.errors
    assert sorted((r.config["lr"], type(r.config["lr"])) for r in grid) == [(0.001, float), (0.01, float), (1, int)]


def _uses_the_constants(config):
    tune.report({"loss": config["lr"] + config["epochs"] + config["model"]["width"], "act": config["model"]["act"]})


def test_a_searchers_own_space_keeps_its_fixed_values(tmp_path):
    """Constants of a Tune space given to the searcher itself (no param_space) were dropped: the trainable
    failed with KeyError: 'epochs'. HyperOpt's converted space keeps them too, as on Ray."""
    pytest.importorskip("hyperopt")
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    space = {"lr": tune.uniform(0, 1), "epochs": 3, "model": {"act": "relu", "width": tune.choice([8, 16])}}
    for i, searcher_space in enumerate((space, HyperOptSearch.convert_search_space(space))):
        grid = tune.Tuner(_uses_the_constants, tune_config=tune.TuneConfig(
            search_alg=HyperOptSearch(searcher_space, metric="loss", mode="min"), num_samples=3),
            run_config=run_config(tmp_path, f"constants{i}")).fit()
        assert not grid.errors
        for r in grid:
            assert r.config["epochs"] == 3 and r.config["model"]["act"] == "relu"
            assert r.config["model"]["width"] in (8, 16) and 0 <= r.config["lr"] <= 1
    assert sorted(HyperOptSearch.convert_search_space({"lr": tune.uniform(0, 1), "epochs": 3})) == ["epochs", "lr"]


def test_a_point_to_evaluate_on_a_quantized_bound_with_float_error_is_taken(tmp_path):
    """quniform(0.0, 0.3, 0.1) with points_to_evaluate=[{"x": 0.3}] failed: "0.3 is outside its domain"."""
    pytest.importorskip("optuna")
    from tunesmith.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch({"x": tune.quniform(0.0, 0.3, 0.1)}, metric="m", mode="max",
                            points_to_evaluate=[{"x": 0.3}], seed=0)
    assert searcher.suggest("t1") == {"x": 0.3}
