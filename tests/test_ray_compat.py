"""Places where a script written for Ray Tune behaves the same on tunesmith (issue 7).

Each test goes through the public API (``Tuner.fit()`` with real worker processes
where a run is needed) and checks what a user switching from Ray would see.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import tunesmith
from tunesmith import tune


def _fit(trainable, param_space=None, run_config=None, **tune_kwargs):
    return tune.Tuner(
        trainable,
        param_space=param_space or {},
        tune_config=tune.TuneConfig(**tune_kwargs),
        run_config=run_config or tune.RunConfig(verbose=0),
    ).fit()


def report_loss(config):
    for i in range(3):
        tune.report({"loss": config.get("x", 1) / (i + 1)})


# -- 3: a scheduler's metric is checked like TuneConfig's --------------------------------------------
def test_misspelled_scheduler_metric_is_an_error():
    from tunesmith.tune.schedulers import ASHAScheduler

    with pytest.raises(ValueError, match=r"'los' \((ASHA|AsyncHyperBand)Scheduler\).*loss"):
        _fit(report_loss, scheduler=ASHAScheduler(metric="los", mode="min"))


def test_scheduler_metric_check_can_be_disabled(monkeypatch):
    from tunesmith.tune.schedulers import ASHAScheduler

    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    grid = _fit(report_loss, scheduler=ASHAScheduler(metric="los", mode="min"))
    assert grid[0].metrics["training_iteration"] == 3


# -- 4: HParams are written without importing tensorboardX or torch -----------------------------------
def test_hparams_are_written_without_importing_tensorboardx_or_torch(tmp_path):
    pytest.importorskip("tensorboardX")  # the TensorBoard logger is on by default only with it
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        from tunesmith import tune

        def objective(config):
            tune.report({"loss": config["lr"] * 2})

        grid = tune.Tuner(
            objective,
            param_space={"lr": tune.grid_search([0.5]), "act": tune.choice(["relu"]), "deep": True},
            run_config=tune.RunConfig(verbose=0),
        ).fit()
        print(json.dumps({"path": grid[0].path,
                          "imported": [m for m in ("tensorboardX", "torch") if m in sys.modules]}))
    """))
    env = dict(os.environ, TUNE_RESULT_DIR=str(tmp_path / "results"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["imported"] == []

    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    from test_loggers import _read_events

    files = [n for n in os.listdir(info["path"]) if n.startswith("events.out.tfevents")]
    events = _read_events(os.path.join(info["path"], files[0]))
    plugin = {}
    for event in events:
        for value in event.summary.value:
            if value.tag.startswith("_hparams_/"):
                assert value.metadata.plugin_data.plugin_name == "hparams"
                plugin[value.tag] = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    start = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert start["lr"].number_value == 0.5 and start["act"].string_value == "relu"
    experiment = plugin["_hparams_/experiment"].experiment
    assert {h.name for h in experiment.hparam_infos} == {"lr", "act"}
    assert "ray/tune/loss" in {m.name.tag for m in experiment.metric_infos}
    assert plugin["_hparams_/session_end_info"].session_end_info.status == 1  # STATUS_SUCCESS


# -- 5: Trial at Ray's import path, Trial.checkpoint_now() from a callback ------------------------------
class Stepper(tune.Trainable):
    def setup(self, config):
        self.count = 0

    def step(self):
        self.count += 1
        return {"count": self.count}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.json"), "w") as f:
            json.dump(self.count, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.json")) as f:
            self.count = json.load(f)


def test_checkpoint_now_from_a_callback():
    from tunesmith.tune.experiment import Trial

    class CheckpointAtTwo(tune.Callback):
        def on_trial_result(self, iteration, trials, trial: Trial, result, **info):
            assert isinstance(trial, Trial)
            if result["count"] == 2:
                trial.checkpoint_now()

    grid = _fit(Stepper, run_config=tune.RunConfig(
        verbose=0, stop={"training_iteration": 4}, callbacks=[CheckpointAtTwo()],
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)))
    result = grid[0]
    assert [m["training_iteration"] for _, m in result.best_checkpoints] == [2]
    with result.checkpoint.as_directory() as d:
        with open(os.path.join(d, "count.json")) as f:
            assert json.load(f) == 2


def test_a_callback_asks_for_a_checkpoint_through_the_result():
    """Seed 004: result["should_checkpoint"] (tune.result.SHOULD_CHECKPOINT) makes a checkpoint; Ray reads it
    after the callbacks heard the result, so a callback that sets it gets one (it used to be ignored)."""
    from tunesmith.tune.result import SHOULD_CHECKPOINT

    class EveryOther(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["count"] % 2 == 0:
                result[SHOULD_CHECKPOINT] = True

    grid = _fit(Stepper, run_config=tune.RunConfig(
        verbose=0, stop={"training_iteration": 5}, callbacks=[EveryOther()],
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True)))
    result = grid[0]
    assert [m["training_iteration"] for _, m in result.best_checkpoints] == [2, 4, 5]
    with result.best_checkpoints[1][0].as_directory() as d:
        with open(os.path.join(d, "count.json")) as f:
            assert json.load(f) == 4


# -- 6: Resources from default_resource_request, resource_help -----------------------------------------
def test_resources_from_default_resource_request():
    from tunesmith.tune.resources import Resources

    class TwoCpus(tune.Trainable):
        @classmethod
        def default_resource_request(cls, config):  # the seed's example
            return Resources(
                cpu=0,
                gpu=0,
                extra_cpu=config["workers"],
                extra_gpu=int(config["use_gpu"]) * config["workers"])

        @classmethod
        def resource_help(cls, config):
            return "Lower config['workers'] to fit."

        def step(self):
            return {"cpus": self.trial_resources.required_resources["CPU"], "done": True}

    tunesmith.init(num_cpus=2)
    grid = _fit(TwoCpus, {"workers": 2, "use_gpu": False})
    assert grid[0].metrics["cpus"] == 2
    with pytest.raises(ValueError, match=r"more than this machine has.*Lower config\['workers'\] to fit"):
        _fit(TwoCpus, {"workers": 3, "use_gpu": False})
    with pytest.raises(ValueError, match="extra_cpu"):
        Resources(cpu=1, gpu=0, extra_cpu=-1)


# -- 7: StatusReporter at its old path; counters as in the class API ------------------------------------
def test_status_reporter_counters_and_user_training_iteration():
    from tunesmith.tune.function_runner import StatusReporter

    def trainable(config, reporter: StatusReporter):
        assert isinstance(reporter, StatusReporter)
        for i in range(3):
            reporter(mean_loss=1.0 / (i + 1), timesteps_this_iter=10, episodes_this_iter=2,
                     training_iteration=(i + 1) * 100)

    frame = _fit(trainable)[0].metrics_dataframe
    assert list(frame["timesteps_total"]) == [10, 20, 30]
    assert list(frame["episodes_total"]) == [2, 4, 6]
    assert list(frame["timesteps_since_restore"]) == [10, 20, 30]
    assert list(frame["training_iteration"]) == [100, 200, 300]


def test_status_reporter_seed_example():
    from tunesmith.tune.function_runner import StatusReporter

    def trainable_function(config, reporter):
        assert isinstance(reporter, StatusReporter)
        reporter(timesteps_this_iter=1)
        reporter(mean_accuracy=1, training_iteration=4)
        reporter(mean_accuracy=1, training_iteration=4, done=True)

    result = _fit(trainable_function)[0]
    assert result.error is None
    assert result.metrics["training_iteration"] == 4 and result.metrics["done"] is True
    assert result.metrics["timesteps_total"] == 1


# -- 8: the auto-filled fields, experiment_id included ---------------------------------------------
AUTO_FILLED = {
    "config", "date", "done", "experiment_id", "experiment_tag", "hostname", "iterations_since_restore",
    "node_ip", "pid", "time_since_restore", "time_this_iter_s", "time_total_s", "timestamp",
    "timesteps_since_restore", "training_iteration", "trial_id",
}


def test_auto_filled_fields_of_function_and_class_trainables():
    function_grid = _fit(report_loss, {"x": tune.grid_search([1, 2])})
    class_grid = _fit(Stepper, run_config=tune.RunConfig(verbose=0, stop={"training_iteration": 2}))
    for grid in (function_grid, class_grid):
        for result in grid:
            assert AUTO_FILLED <= set(result.metrics), AUTO_FILLED - set(result.metrics)
            assert re.fullmatch(r"[0-9a-f]{32}", result.metrics["experiment_id"])
    ids = {r.metrics["experiment_id"] for r in function_grid}
    assert len(ids) == 1  # one experiment, one id
    assert ids != {class_grid[0].metrics["experiment_id"]}


# -- 9: a returned number is the trial's metric ------------------------------------------------------
def returns_a_number(config):
    return config["x"] * 2.5


def test_returned_number_is_reported_as_metric():
    grid = _fit(returns_a_number, {"x": tune.grid_search([1, 2])}, metric="_metric", mode="max")
    assert [r.metrics["_metric"] for r in grid] == [2.5, 5.0]
    assert grid.get_best_result().config == {"x": 2}


# -- 10: sample_from with direct config access -----------------------------------------------------
def echo_config(config):
    tune.report({"a": config["a"], "b": config["b"], "c": config["c"]})


def test_sample_from_takes_the_config_directly():
    grid = _fit(echo_config, {
        "id": tune.grid_search([1, 2]),
        "a": tune.sample_from(lambda config: config["id"] * 10),
        "b": tune.sample_from(lambda config: config.a + 1),
        "c": tune.sample_from(lambda spec: spec.config.b + 1),
    })
    assert [(r.metrics["a"], r.metrics["b"], r.metrics["c"]) for r in grid] == [(10, 11, 12), (20, 21, 22)]


# -- 11: quantized bounds must be multiples of q -----------------------------------------------------
def test_quantized_bounds_not_divisible_by_q_are_an_error():
    from tunesmith.tune.search.sample import Float

    with pytest.raises(ValueError, match="lower bound 0.05 is not divisible"):
        tune.quniform(0.05, 1.0, 0.1)
    with pytest.raises(ValueError, match="upper bound 1.05 is not divisible"):
        Float(0.0, 1.05).quantized(0.1)
    assert tune.quniform(0.2, 1.0, 0.1).sample(random_state=0) <= 1.0


# -- 12: best result of a single trial; analysis keyed by trial id ----------------------------------------
def test_single_trial_best_result_and_analysis_keyed_by_trial_id():
    grid = _fit(report_loss)
    assert grid.get_best_result() is grid[0]
    analysis = tune.run(report_loss, config={"x": tune.grid_search([1, 2])}, verbose=0)
    ids = [t.trial_id for t in analysis.trials]
    frames = analysis.fetch_trial_dataframes()
    assert sorted(frames) == sorted(ids)
    assert list(frames[ids[1]]["loss"]) == [2.0, 1.0, pytest.approx(2 / 3)]
    configs = analysis.get_all_configs()
    assert configs == {ids[0]: {"x": 1}, ids[1]: {"x": 2}}
    assert analysis.get_all_configs(prefix=True)[ids[1]] == {"config/x": 2}


# -- 13: search algorithm calls as Ray's tests make them ---------------------------------------------
def test_basic_variant_generator_takes_experiments_and_next_trial_without_id():
    from tunesmith.tune.search import BasicVariantGenerator

    gen = BasicVariantGenerator()
    gen.add_configurations(tune.Experiment("one", run=report_loss, config={"x": tune.grid_search([1, 2])}))
    gen.add_configurations([tune.Experiment("two", run=report_loss, config={"x": 3}, num_samples=2)])
    suggestions = []
    while not gen.is_finished():
        suggestion = gen.next_trial()
        if suggestion is not None:
            suggestions.append(suggestion)
    assert [s.config for s in suggestions] == [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 3}]
    assert len({s.trial_id for s in suggestions}) == 4
    assert gen.total_samples == 4


def test_search_generator_next_trial_and_concurrency_limiter_stepping_aside():
    from tunesmith.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

    class SelfLimiting(Searcher):
        def __init__(self):
            super().__init__(metric="loss", mode="min")
            self.limit = None

        def set_max_concurrency(self, max_concurrent):
            self.limit = max_concurrent
            return True

        def suggest(self, trial_id):
            return {"x": 1}

    inner = SelfLimiting()
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    assert inner.limit == 2  # asked at construction, as Ray does
    assert all(limiter.suggest(f"t{i}") == {"x": 1} for i in range(5))  # the searcher limits itself
    gen = SearchGenerator(limiter)
    gen.add_configurations({"x": tune.uniform(0, 1)}, num_samples=3)
    suggestion = gen.next_trial()
    assert suggestion.config == {"x": 1} and suggestion.trial_id


# -- 14: logger files are complete when the logger is closed ------------------------------------------
def many_results(config):
    for i in range(400):
        tune.report({"i": i, "text": "x" * 200})


def test_logger_files_are_complete_when_a_trial_completes():
    from tunesmith.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    seen = {}

    class CountRows(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            with open(os.path.join(trial.local_path, "result.json")) as f:
                seen["json"] = sum(1 for _ in f)
            with open(os.path.join(trial.local_path, "progress.csv")) as f:
                seen["csv"] = sum(1 for _ in f) - 1

    callbacks = [JsonLoggerCallback(flush_period_s=3600), CSVLoggerCallback(flush_period_s=3600), CountRows()]
    _fit(many_results, run_config=tune.RunConfig(verbose=0, callbacks=callbacks))
    assert seen == {"json": 400, "csv": 400}


def test_legacy_loggers_close_leaves_files_complete(tmp_path):
    from tunesmith.tune.logger import CSVLogger, JsonLogger

    for cls, name in ((JsonLogger, "result.json"), (CSVLogger, "progress.csv")):
        logdir = str(tmp_path / cls.__name__)
        lg = cls({"a": 1}, logdir)
        for i in range(2000):
            lg.on_result({"i": i, "text": "y" * 200, "training_iteration": i + 1})
        lg.close()
        with open(os.path.join(logdir, name)) as f:
            lines = f.read().splitlines()
        assert len(lines) == 2000 + (name == "progress.csv")
        assert lines[-1].startswith('{"i": 1999' if name == "result.json" else "1999,")


# -- 16, 17: scheduler aliases; init(address=...) ---------------------------------------------------------
def test_create_scheduler_leaves_out_arguments_the_scheduler_does_not_take():
    """As Ray's: one settings dict serves several scheduler names (a CLI option picks the name)."""
    settings = {"metric": "loss", "mode": "min", "time_attr": "training_iteration", "max_t": 20,
                "perturbation_interval": 2, "hyperparam_mutations": {"lr": [0.1, 0.01]}}
    kinds = {name: type(tune.create_scheduler(name, **settings)).__name__ for name in ("fifo", "asha", "pbt")}
    assert kinds == {"fifo": "FIFOScheduler", "asha": "AsyncHyperBandScheduler", "pbt": "PopulationBasedTraining"}
    assert tune.create_scheduler("asha", **settings)._max_t == 20


def test_create_scheduler_accepts_ray_aliases():
    from tunesmith.tune.schedulers import AsyncHyperBandScheduler, MedianStoppingRule

    assert type(tune.create_scheduler("asynchyperband", metric="loss", mode="min")) is AsyncHyperBandScheduler
    assert type(tune.create_scheduler("medianstopping", metric="loss", mode="min")) is MedianStoppingRule


def test_init_with_a_cluster_address_and_local_resources_is_an_error():
    with pytest.raises(ValueError, match="ray://head:10001.*declare their resources"):
        tunesmith.init("ray://head:10001", num_cpus=2)
    tunesmith.init(address="local", num_cpus=2)
    from tunesmith._internal.resources import detect_resources

    assert detect_resources()[0]["CPU"] == 2


# -- 20: the experiment name is used as given --------------------------------------------------------
def test_experiment_name_is_used_as_given(storage):
    name = "trainable_type='function' lr=0.1"
    grid = _fit(report_loss, run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0))
    assert os.path.basename(grid.experiment_path) == name
    assert os.path.isdir(os.path.join(storage, name))
    assert tune.ExperimentAnalysis(os.path.join(storage, name)).trials[0].status == "TERMINATED"
    for bad in ("../outside", "/tmp/abs", "a/../../b", ".."):
        with pytest.raises(ValueError, match="experiment name must be a directory name inside"):
            _fit(report_loss, run_config=tune.RunConfig(name=bad, storage_path=storage, verbose=0))
    assert sorted(os.listdir(storage)) == [name]


def _reports_twice(config):
    tune.report({"m": 1})
    tune.report({"m": 2})


def test_a_trials_final_result_is_done():
    # Returned: the last result is marked done (the row on disk stays as it was reported).
    returned = _fit(_reports_twice)[0]
    assert returned.metrics["done"] is True
    rows = [json.loads(line) for line in open(os.path.join(returned.path, "result.json"))]
    assert [r["done"] for r in rows] == [False, False]
    # Stopped by a criterion: the deciding result is done, as logged and as callbacks see it.
    seen = []

    class Seen(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(result["done"])

    stopped = _fit(_reports_twice, run_config=tune.RunConfig(verbose=0, stop={"training_iteration": 1},
                                                               callbacks=[Seen()]))[0]
    assert stopped.metrics["done"] is True and seen == [True]
    assert json.loads(open(os.path.join(stopped.path, "result.json")).readline())["done"] is True
    # A class trial stopped by a criterion, and trials that go on are not done.
    assert _fit(Stepper, run_config=tune.RunConfig(verbose=0, stop={"count": 3}))[0].metrics["done"] is True


def test_callback_setup_gets_the_experiments_own_arguments():
    got = {}

    class Setup(tune.Callback):
        def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
            got.update(stop=stop, num_samples=num_samples, total=total_num_samples, **info)

    _fit(_reports_twice, {"x": tune.grid_search([1, 2])}, num_samples=3, time_budget_s=600,
         run_config=tune.RunConfig(verbose=0, stop={"training_iteration": 1}, callbacks=[Setup()]))
    assert got == {"stop": {"training_iteration": 1}, "num_samples": 3, "total": 6, "time_budget_s": 600}
    # Without stop criteria, or with a Stopper or a function, it is an empty dict, as on Ray (a callback's
    # stop.get(...) raised on None).
    for stop in (None, tune.stopper.MaximumIterationStopper(1), lambda trial_id, result: True):
        got.clear()
        _fit(_reports_twice, {"x": 1}, run_config=tune.RunConfig(verbose=0, stop=stop, callbacks=[Setup()]))
        assert got["stop"] == {}, stop


def test_checkpoint_at_end_after_a_frequency_checkpoint_saves_once():
    result = _fit(Stepper, run_config=tune.RunConfig(
        verbose=0, stop={"training_iteration": 4},
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, checkpoint_at_end=True)))[0]
    on_disk = sorted(p for p in os.listdir(result.path) if p.startswith("checkpoint_"))
    assert on_disk == ["checkpoint_000000", "checkpoint_000001"]
    assert [m["training_iteration"] for _, m in result.best_checkpoints] == [2, 4]
    with open(os.path.join(result.checkpoint.path, "count.json")) as f:
        assert json.load(f) == 4


def _where_am_i(config):
    print("written by the trial")
    tune.report({"cwd": os.getcwd(), "orig": os.environ.get("TUNE_ORIG_WORKING_DIR")})


def test_trials_know_the_original_working_directory_and_may_log_to_an_absolute_path(tmp_path):
    log = tmp_path / "all_trials.log"
    grid = _fit(_where_am_i, {"i": tune.grid_search([0, 1])}, run_config=tune.RunConfig(verbose=0, log_to_file=str(log)))
    assert [r.metrics["orig"] for r in grid] == [os.getcwd()] * 2
    assert all(r.metrics["cwd"] == r.path for r in grid)
    assert log.read_text().count("written by the trial") == 2
    with pytest.raises(ValueError, match="not a directory"):
        _fit(_where_am_i, run_config=tune.RunConfig(verbose=0, log_to_file=str(tmp_path)))


def _reports_nested(config):
    for i in range(1, 8):
        tune.report({"info": {"x": i * config["scale"]}})


def test_slash_names_address_nested_metrics_in_stop_criteria_metric_and_schedulers():
    stopped = _fit(_reports_nested, {"scale": 1}, run_config=tune.RunConfig(verbose=0, stop={"info/x": 3}))
    assert stopped[0].metrics["training_iteration"] == 3
    from tunesmith.tune.schedulers import ASHAScheduler

    grid = _fit(_reports_nested, {"scale": tune.grid_search([1, -1, -2, -3])}, metric="info/x", mode="max",
                scheduler=ASHAScheduler(grace_period=1, max_t=5, reduction_factor=2), max_concurrent_trials=1)
    assert grid.errors == []
    iterations = {r.config["scale"]: r.metrics["training_iteration"] for r in grid}
    assert iterations[1] == 5 and min(iterations.values()) < 5  # the worse trials stopped early
    assert grid.get_best_result().config["scale"] == 1


class _LargeModel:
    def __init__(self, model_id):
        self.model_id = model_id


def _uses_refs(config):
    import tunesmith as ray

    tune.report({"model_id": ray.get(config["model_ref"]).model_id, "data": sum(ray.get(config["data"]))})


def test_ray_core_calls_of_a_tune_script_work_after_import_tunesmith_as_ray():
    import tunesmith as ray

    if not ray.is_initialized():
        ray.init(num_cpus=2)
    assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2.0
    data = ray.put([1, 2, 3])
    grid = _fit(_uses_refs, {"model_ref": tune.grid_search([ray.put(_LargeModel(1)), ray.put(_LargeModel(2))]),
                             "data": data})
    assert grid.errors == []
    assert sorted((r.metrics["model_id"], r.metrics["data"]) for r in grid) == [(1, 6), (2, 6)]
    assert ray.get([data, ray.put("x")]) == [[1, 2, 3], "x"]
    with pytest.raises(TypeError, match="tunesmith.put"):
        ray.get(42)
    ray.shutdown()
    assert not ray.is_initialized()


@pytest.mark.parametrize("module, names", [
    ("tunesmith.train.trainer", ["BaseTrainer", "TrainingFailedError"]),
    ("tunesmith.train.context", ["TrainContext"]),
    ("tunesmith.train.base_trainer", ["BaseTrainer", "TrainingFailedError"]),
    ("tunesmith.tune.trainable.function_trainable", ["FunctionTrainable", "wrap_function"]),
    ("tunesmith.tune.trainable", ["FunctionTrainable", "wrap_function"]),
])
def test_import_paths_the_seeds_name_exist(module, names):
    import importlib

    loaded = importlib.import_module(module)
    assert all(hasattr(loaded, name) for name in names)
    from tunesmith import train
    from tunesmith.train.context import TrainContext

    assert isinstance(train.get_context(), TrainContext)


def _objective(config):
    return {"score": config["x"] ** 2}


def test_tuner_internal_is_the_tuner_behind_the_tuner(tmp_path):
    """Seed 004 (Tune Internals) documents ray.tune.impl.tuner_internal.TunerInternal; a Tuner keeps one as
    _local_tuner, built fresh or from an experiment directory to continue."""
    from tunesmith.tune.impl.tuner_internal import TunerInternal

    run_config = tune.RunConfig(name="inner", storage_path=str(tmp_path), verbose=0)
    tuner = tune.Tuner(_objective, param_space={"x": tune.grid_search([1, 2])}, run_config=run_config)
    inner = tuner._local_tuner
    assert isinstance(inner, TunerInternal)
    assert inner.get_run_config().name == "inner" and inner.trainable is _objective
    assert list(inner.param_space) == ["x"]
    with pytest.raises(RuntimeError, match="fit"):
        inner.get_results()
    assert sorted(r.config["x"] for r in inner.fit()) == [1, 2]

    restored = TunerInternal(restore_path=str(tmp_path / "inner"), trainable=_objective,
                             resume_config={"resume_errored": True})
    assert restored.get_run_config().storage_path == str(tmp_path)
    assert sorted(r.metrics["score"] for r in restored.get_results()) == [1, 4]
    with pytest.raises(ValueError, match="No experiment to restore"):
        TunerInternal(restore_path=str(tmp_path / "missing"), trainable=_objective)
    with pytest.raises(TypeError, match="resume_config takes"):
        TunerInternal(restore_path=str(tmp_path / "inner"), trainable=_objective, resume_config={"errored": 1})
