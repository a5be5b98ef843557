"""The code examples of seed 004 (the Ray Tune user guide), run with their imports changed.

Each example is kept as the seed prints it, in a string; ``_run`` swaps
``ray`` for ``tunesmith`` in its imports and executes it with the names the
seed's prose assumes (``trainable``, ``my_trainable``, ``train_fn`` ...)
already defined. Where an example cannot run as printed (an ``...``
placeholder, a misspelt import), the change is made in the string and said
in a comment next to it. The assertions check what a user would see: the
number of trials and configs, the files written, what a callback or reporter
printed.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import tunesmith
from tunesmith import train, tune
from tunesmith.train import RunConfig


def _swap_imports(code: str) -> str:
    code = re.sub(r"^(\s*)from ray(\.| )", r"\1from tunesmith\2", code, flags=re.M)
    code = re.sub(r"^(\s*)import ray$", r"\1import tunesmith as ray", code, flags=re.M)
    return code


def _trainable(config):
    """The seed's unnamed trainable: reports what its prose's examples read."""
    import time as _time

    started = _time.time()
    _time.sleep(float(config.get("sleep", 0.0)) if isinstance(config, dict) else 0.0)
    for i in range(int(config.get("iters", 1)) if isinstance(config, dict) else 1):
        train.report({"metric": i, "loss": 1.0 / (i + 1), "acc": 0.5, "max-auc": 0.1 * i,
                      "custom_metric": i, "mean_accuracy": 0.1 * i,
                      "started": started, "ended": _time.time()})


def _run(code: str, **names) -> dict:
    namespace = {"tune": tune, "train": train, "RunConfig": RunConfig, "np": np, "os": os,
                 "trainable": _trainable, "my_trainable": _trainable, "train_fn": _trainable,
                 "grid_search": tune.grid_search, "a": "a", "b": "b", "c": "c"}
    namespace.update(names)
    exec(compile(_swap_imports(code), "<seed example>", "exec"), namespace)
    return namespace


def _max_overlap(results) -> int:
    spans = [(r.metrics["started"], r.metrics["ended"]) for r in results]
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield
    tunesmith.init()  # resources back to the machine's own


def test_grid_search_and_random_sampling():
    ns = _run("""
tuner = tune.Tuner(
    trainable,
    param_space={"bar": tune.grid_search([True, False])})
results = tuner.fit()
""")
    assert sorted(r.config["bar"] for r in ns["results"]) == [False, True]

    ns = _run("""
tuner = tune.Tuner(
    trainable,
    param_space={
        "param1": tune.choice([True, False]),
        "bar": tune.uniform(0, 10),
        "alpha": tune.sample_from(lambda _: np.random.uniform(100) ** 2),
        "const": "hello"  # It is also ok to specify constant values.
    })
results = tuner.fit()
""")
    (result,) = ns["results"]
    assert result.config["const"] == "hello"
    assert result.config["param1"] in (True, False) and 0 <= result.config["bar"] <= 10
    assert isinstance(result.config["alpha"], float)


def test_how_many_configs_num_samples_and_grid_search_give():
    code = """
# 13 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=13), param_space={
    "x": tune.choice([0, 1, 2]),
    }
)
counts.append(len(tuner.fit()))

# 13 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=13), param_space={
    "x": tune.choice([0, 1, 2]),
    "y": tune.randn([0, 1, 2]),
    }
)
counts.append(len(tuner.fit()))

# 4 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1), param_space={"x": tune.grid_search([1, 2, 3, 4])})
counts.append(len(tuner.fit()))

# 3 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1), param_space={"x": grid_search([1, 2, 3])})
counts.append(len(tuner.fit()))

# 6 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=2), param_space={"x": tune.grid_search([1, 2, 3])})
counts.append(len(tuner.fit()))

# 9 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1), param_space={
    "x": tune.grid_search([1, 2, 3]),
    "y": tune.grid_search([a, b, c])}
)
counts.append(len(tuner.fit()))

# 18 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=2), param_space={
    "x": tune.grid_search([1, 2, 3]),
    "y": tune.grid_search([a, b, c])}
)
counts.append(len(tuner.fit()))

# 45 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=5), param_space={
    "x": tune.grid_search([1, 2, 3]),
    "y": tune.grid_search([a, b, c])}
)
counts.append(len(tuner.fit()))
"""
    counts: list[int] = []
    # The seed writes ``tune.randn([0, 1, 2])``; a list is not a mean, so this
    # runs ``tune.randn(0, 1)`` (the comment's count does not depend on it).
    _run(code.replace("tune.randn([0, 1, 2])", "tune.randn(0, 1)"), counts=counts)
    assert counts == [13, 13, 4, 3, 6, 9, 18, 45]

    # The seed's ``tune.sample_from(...)`` placeholder, filled in.
    ns = _run("""
# 6 different configs.
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=2), param_space={
    "x": tune.sample_from(lambda spec: np.random.uniform()),
    "y": tune.grid_search([a, b, c])
    }
)
results = tuner.fit()
""")
    assert len(ns["results"]) == 6
    assert sorted(r.config["y"] for r in ns["results"]) == ["a", "a", "b", "b", "c", "c"]


def test_conditional_spaces_with_sample_from_and_nested_grid_search():
    ns = _run("""
tuner = tune.Tuner(
    my_trainable,
    run_config=RunConfig(name="my_trainable"),
    # num_samples will repeat the entire config 10 times.
    tune_config=tune.TuneConfig(num_samples=10),
    param_space={
        # ``sample_from`` creates a generator to call the lambda once per trial.
        "alpha": tune.sample_from(lambda spec: np.random.uniform(100)),
        # ``sample_from`` also supports "conditional search spaces"
        "beta": tune.sample_from(lambda spec: spec.config.alpha * np.random.normal()),
        "nn_layers": [
            # tune.grid_search will make it so that all values are evaluated.
            tune.grid_search([16, 64, 256]),
            tune.grid_search([16, 64, 256]),
        ],
    },
)
results = tuner.fit()
""".replace("tuner.fit()\n", "tuner.fit()\n", 1))
    results = ns["results"]
    assert len(results) == 90  # 3 x 3 grid, 10 times
    layers = sorted({tuple(r.config["nn_layers"]) for r in results})
    assert len(layers) == 9 and all(len({x for x in pair}) >= 1 for pair in layers)
    for r in results:
        assert isinstance(r.config["alpha"], float) and isinstance(r.config["beta"], float)
    assert results.experiment_path.endswith("my_trainable")


def test_resources_decide_how_many_trials_run_at_once():
    tunesmith.init(num_cpus=4)  # the seed's "If you have 4 CPUs on your machine"
    overlaps = []
    code = """
# If you have 4 CPUs on your machine, this will run 2 concurrent trials at a time.
trainable_with_resources = tune.with_resources(trainable, {"cpu": 2})
tuner = tune.Tuner(
    trainable_with_resources,
    tune_config=tune.TuneConfig(num_samples=10)
)
results = tuner.fit()
overlaps.append(results)

# If you have 4 CPUs on your machine, this will run 1 trial at a time.
trainable_with_resources = tune.with_resources(trainable, {"cpu": 4})
tuner = tune.Tuner(
    trainable_with_resources,
    tune_config=tune.TuneConfig(num_samples=10)
)
results = tuner.fit()
overlaps.append(results)

# Fractional values are also supported, (i.e., {"cpu": 0.5}).
# If you have 4 CPUs on your machine, this will run 8 concurrent trials at a time.
trainable_with_resources = tune.with_resources(trainable, {"cpu": 0.5})
tuner = tune.Tuner(
    trainable_with_resources,
    tune_config=tune.TuneConfig(num_samples=10)
)
results = tuner.fit()
overlaps.append(results)
"""
    # Each trial sleeps a little so that overlapping trials can be seen.
    code = code.replace("num_samples=10)", "num_samples=10), param_space={'sleep': 0.2}")
    _run(code, overlaps=overlaps)
    for results, most in zip(overlaps, (2, 1, 8)):
        assert len(results) == 10 and not results.errors
        assert 1 <= _max_overlap(results) <= most
    assert _max_overlap(overlaps[1]) == 1


def test_gpu_requests_by_lambda_and_per_trial_devices():
    tunesmith.init(num_cpus=4, num_gpus=1)  # declared: "4 CPUs and 1 GPU on your machine"
    seen = []

    def report_devices(config):
        train.report({"devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")})

    ns = _run("""
# Custom resource allocation via lambda functions are also supported.
# If you want to allocate gpu resources to trials based on a setting in your config
trainable_with_resources = tune.with_resources(trainable,
    resources=lambda spec: {"gpu": 1} if spec.config.use_gpu else {"gpu": 0})
tuner = tune.Tuner(
    trainable_with_resources,
    tune_config=tune.TuneConfig(num_samples=10),
    param_space={"use_gpu": tune.grid_search([True, False])},
)
results = tuner.fit()
""", trainable=report_devices)
    by_choice = {}
    for r in ns["results"]:
        by_choice.setdefault(r.config["use_gpu"], set()).add(r.metrics["devices"])
    assert by_choice[True] == {"0"}
    assert by_choice[False] == {""}
    seen.extend(ns["results"])
    assert len(seen) == 20


def test_a_trial_that_can_never_fit_is_a_clear_error():
    tunesmith.init(num_cpus=2, num_gpus=0)
    with pytest.raises(Exception, match=r"(?i)gpu"):
        _run("""
# If you have 4 CPUs and 1 GPU on your machine, this will run 1 trial at a time.
trainable_with_cpu_gpu = tune.with_resources(trainable, {"cpu": 2, "gpu": 1})
tuner = tune.Tuner(
    trainable_with_cpu_gpu,
    tune_config=tune.TuneConfig(num_samples=10)
)
results = tuner.fit()
""")


def test_max_concurrent_trials():
    ns = _run("""
from ray.tune import TuneConfig

config = TuneConfig(
    # ...
    num_samples=100,
    max_concurrent_trials=10,
)
""")
    config = ns["config"]
    config.num_samples = 6
    config.max_concurrent_trials = 2
    tunesmith.init(num_cpus=8)
    results = tune.Tuner(_trainable, tune_config=config, param_space={"sleep": 0.2}).fit()
    assert len(results) == 6 and 1 <= _max_overlap(results) <= 2


def test_callback_on_trial_result(capsys):
    _run("""
from ray import train, tune
from ray.train import RunConfig
from ray.tune import Callback


class MyCallback(Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        print(f"Got result: {result['metric']}")


def train_fn(config):
    for i in range(10):
        train.report({"metric": i})


tuner = tune.Tuner(
    train_fn,
    run_config=RunConfig(callbacks=[MyCallback()]))
tuner.fit()
""")
    got = re.findall(r"Got result: (\d+)", capsys.readouterr().out)
    assert got == [str(i) for i in range(10)]


def test_function_and_class_trainables_report_the_same_metrics():
    ns = _run("""
def trainable(config):
    for i in range(num_epochs):
        ...
        train.report({"acc": accuracy, "metric_foo": random_metric_1, "bar": metric_2})

class Trainable(tune.Trainable):
    def step(self):
        ...
        # don't call report here!
        return dict(acc=accuracy, metric_foo=random_metric_1, bar=metric_2)
""", num_epochs=3, accuracy=0.9, random_metric_1=0.1, metric_2=2)
    fn = tune.Tuner(ns["trainable"]).fit()[0]
    cls = tune.Tuner(ns["Trainable"], run_config=RunConfig(stop={"training_iteration": 3})).fit()[0]
    for result in (fn, cls):
        assert result.metrics["training_iteration"] == 3
        assert (result.metrics["acc"], result.metrics["metric_foo"], result.metrics["bar"]) == (0.9, 0.1, 2)


def test_where_results_are_written(tmp_path):
    # The seed's first example passes ``num_samples=2`` to RunConfig, which
    # has no such field (it belongs to TuneConfig): that is an error naming it.
    with pytest.raises(TypeError, match="num_samples"):
        _run("""
tuner = tune.Tuner(trainable, run_config=RunConfig(num_samples=2))
results = tuner.fit()
""")
    _run("""
# This logs to 2 different trial folders:
# ./results/test_experiment/trial_name_1 and ./results/test_experiment/trial_name_2
# Only trial_name is autogenerated.
tuner = tune.Tuner(trainable,
    tune_config=tune.TuneConfig(num_samples=2),
    run_config=RunConfig(storage_path="./results", name="test_experiment"))
results = tuner.fit()
""")
    experiment = tmp_path / "results" / "test_experiment"
    trial_dirs = [p for p in experiment.iterdir() if p.is_dir()]
    assert len(trial_dirs) == 2
    for d in trial_dirs:
        assert (d / "result.json").exists() and (d / "params.json").exists()


def test_grid_of_learning_rate_and_momentum():
    ns = _run("""
tuner = tune.Tuner(
    trainable,
    param_space={
        "lr": tune.grid_search([1e-5, 1e-4]),
        "momentum": tune.grid_search([0, 0.9])
    }
)
results = tuner.fit()
""")
    assert sorted((r.config["lr"], r.config["momentum"]) for r in ns["results"]) == [
        (1e-5, 0), (1e-5, 0.9), (1e-4, 0), (1e-4, 0.9)]


def test_log_to_file_forms():
    def noisy(config):
        import sys

        print("to stdout")
        print("to stderr", file=sys.stderr)
        train.report({"metric": 1})

    ns = _run("""
tuner = tune.Tuner(
    trainable,
    run_config=RunConfig(log_to_file=True)
)
results = tuner.fit()
""", trainable=noisy)
    trial_dir = ns["results"][0].path
    assert "to stdout" in open(os.path.join(trial_dir, "stdout")).read()
    assert "to stderr" in open(os.path.join(trial_dir, "stderr")).read()

    ns = _run("""
tuner = tune.Tuner(
    trainable,
    run_config=RunConfig(log_to_file="std_combined.log")
)
first = tuner.fit()

tuner = tune.Tuner(
    trainable,
    run_config=RunConfig(log_to_file=("my_stdout.log", "my_stderr.log")))
results = tuner.fit()
""", trainable=noisy)
    combined = open(os.path.join(ns["first"][0].path, "std_combined.log")).read()
    assert "to stdout" in combined and "to stderr" in combined
    trial_dir = ns["results"][0].path
    assert "to stdout" in open(os.path.join(trial_dir, "my_stdout.log")).read()
    assert "to stderr" in open(os.path.join(trial_dir, "my_stderr.log")).read()


def test_trial_working_directory_is_the_trial_directory_for_artifacts():
    ns = _run("""
from ray import train

def trainable(config):
    for step in range(3):
        results = {"step_metric": step}
        # You can also just write to a file directly.
        # The working directory is set to the trial directory, so
        # you don't need to worry about multiple workers saving
        # to the same location.
        with open(f"./artifact_{step}.txt", "w") as f:
            f.write("Artifact Data")

        train.report(results)

class CustomLogging(tune.Trainable):
    def setup(self, config):
        self.logged = []

    def step(self):
        with open(f"./artifact_{self.iteration}.txt", "w") as f:
            f.write("Artifact Data")
        return {"step_metric": self.iteration}

    def log_result(self, result):
        res_dict = {
            str(k): v
            for k, v in result.items()
            if (v and "config" not in k and not isinstance(v, str))
        }
        step = result["training_iteration"]
        with open("custom_log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "keys": sorted(res_dict)}) + "\\n")
""", json=json)
    results = tune.Tuner(ns["trainable"], param_space={"x": tune.grid_search([1, 2])}).fit()
    for r in results:
        for step in range(3):
            assert open(os.path.join(r.path, f"artifact_{step}.txt")).read() == "Artifact Data"
    (r,) = tune.Tuner(ns["CustomLogging"], run_config=RunConfig(stop={"training_iteration": 2})).fit()
    assert {f for f in os.listdir(r.path) if f.startswith("artifact_")} == {"artifact_0.txt", "artifact_1.txt"}
    lines = [json.loads(line) for line in open(os.path.join(r.path, "custom_log.jsonl"))]
    assert [line["step"] for line in lines] == [1, 2]
    assert "step_metric" in lines[-1]["keys"]


def test_custom_logger_callback_writes_a_file_per_trial(tmp_path):
    ns = _run('''
from typing import Dict, List

import json
import os

from ray.tune.logger import LoggerCallback


class CustomLoggerCallback(LoggerCallback):
    """Custom logger interface"""

    def __init__(self, filename: str = "log.txt"):
        self._trial_files = {}
        self._filename = filename

    def log_trial_start(self, trial: "Trial"):
        trial_logfile = os.path.join(trial.logdir, self._filename)
        self._trial_files[trial] = open(trial_logfile, "at")

    def log_trial_result(self, iteration: int, trial: "Trial", result: Dict):
        if trial in self._trial_files:
            self._trial_files[trial].write(json.dumps(result))

    def on_trial_complete(self, iteration: int, trials: List["Trial"],
                          trial: "Trial", **info):
        if trial in self._trial_files:
            self._trial_files[trial].close()
            del self._trial_files[trial]
''')

    class MyTrainableClass(tune.Trainable):
        def step(self):
            return {"score": self.iteration, "done": self.iteration >= 2}

    ns = _run("""
from ray import tune
from ray.train import RunConfig

tuner = tune.Tuner(
    MyTrainableClass,
    run_config=RunConfig(name="experiment_name", callbacks=[CustomLoggerCallback("log_test.txt")])
)
results = tuner.fit()
""", MyTrainableClass=MyTrainableClass, CustomLoggerCallback=ns["CustomLoggerCallback"])
    (result,) = ns["results"]
    text = open(os.path.join(result.path, "log_test.txt")).read()
    # The example writes the rows back to back, without a separator.
    decoder, rows, at = json.JSONDecoder(), [], 0
    while at < len(text):
        row, at = decoder.raw_decode(text, at)
        rows.append(row)
    assert [row["training_iteration"] for row in rows] == [1, 2, 3]
    assert rows[-1]["score"] == 2


def test_reporters_from_the_seed(capsys):
    _run("""
from ray.train import RunConfig
from ray.tune import CLIReporter

# Limit the number of rows.
reporter = CLIReporter(max_progress_rows=10)
# Add a custom metric column, in addition to the default metrics.
# Note that this must be a metric that is returned in your training results.
reporter.add_metric_column("custom_metric")
tuner = tune.Tuner(my_trainable, run_config=RunConfig(progress_reporter=reporter))
results = tuner.fit()
""")
    out = capsys.readouterr().out
    assert "custom_metric" in out

    ns = _run("""
from ray.tune import CLIReporter
from ray.tune.experiment.trial import Trial

class ExperimentTerminationReporter(CLIReporter):
    def should_report(self, trials, done=False):
        \"\"\"Reports only on experiment termination.\"\"\"
        calls.append(done)
        return done

tuner = tune.Tuner(my_trainable, run_config=RunConfig(progress_reporter=ExperimentTerminationReporter()))
results = tuner.fit()

class TrialTerminationReporter(CLIReporter):
    def __init__(self):
        super(TrialTerminationReporter, self).__init__()
        self.num_terminated = 0

    def should_report(self, trials, done=False):
        \"\"\"Reports only on trial termination events.\"\"\"
        old_num_terminated = self.num_terminated
        self.num_terminated = len([t for t in trials if t.status == Trial.TERMINATED])
        return self.num_terminated > old_num_terminated

tuner = tune.Tuner(my_trainable, run_config=RunConfig(progress_reporter=TrialTerminationReporter()),
                   param_space={"x": tune.grid_search([1, 2, 3])})
results = tuner.fit()
""", calls=[])
    assert ns["calls"] and ns["calls"][-1] is True
    out = capsys.readouterr().out
    # One table at the end of the first run, then at most one per terminated trial.
    assert 2 <= out.count("Trial name") <= 4
    assert "TERMINATED" in out

    _run("""
from ray.tune import ProgressReporter

class CustomReporter(ProgressReporter):

    def should_report(self, trials, done=False):
        return True

    def report(self, trials, *sys_info):
        print(*sys_info)
        print("\\n".join([str(trial) for trial in trials]))

tuner = tune.Tuner(my_trainable, run_config=RunConfig(progress_reporter=CustomReporter()),
                   param_space={"x": tune.grid_search([1, 2])})
results = tuner.fit()
""")
    out = capsys.readouterr().out
    names = set(re.findall(r"_trainable_[0-9a-f]+_0000[01]", out))
    assert len(names) == 2, out[-2000:]


def test_optuna_search_example():
    pytest.importorskip("optuna")
    ns = _run("""
from ray import train, tune
from ray.train import RunConfig
from ray.tune.search.optuna import OptunaSearch

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
)
results = tuner.fit()
""")
    results = ns["results"]
    assert len(results) == 100 and not results.errors
    assert len({r.config["param"] for r in results}) == 100
    assert results.get_best_result().metrics["loss"] < 0.05


def test_saving_and_restoring_a_search_algorithm():
    pytest.importorskip("hyperopt")
    from tunesmith.tune.search.hyperopt import HyperOptSearch

    def train_fn(config):
        train.report({"loss": (config["x"] - 0.3) ** 2})

    space = {"x": tune.uniform(0, 1)}
    ns = _run("""
search_alg = HyperOptSearch()

tuner_1 = tune.Tuner(
    train_fn,
    tune_config=tune.TuneConfig(search_alg=search_alg)
)
results_1 = tuner_1.fit()

search_alg.save("./my-checkpoint.pkl")

# Restore the saved state onto another search algorithm,
# in a new tuning script

search_alg2 = HyperOptSearch()
search_alg2.restore("./my-checkpoint.pkl")

tuner_2 = tune.Tuner(
    train_fn,
    tune_config=tune.TuneConfig(search_alg=search_alg2)
)
results_2 = tuner_2.fit()
""".replace("tune.TuneConfig(search_alg=search_alg", "tune.TuneConfig(metric='loss', mode='min', num_samples=4, search_alg=search_alg")
        .replace("tuner_1 = tune.Tuner(\n    train_fn,", "tuner_1 = tune.Tuner(\n    train_fn, param_space=space,")
        .replace("tuner_2 = tune.Tuner(\n    train_fn,", "tuner_2 = tune.Tuner(\n    train_fn, param_space=space,"),
        HyperOptSearch=HyperOptSearch, train_fn=train_fn, space=space)
    first = {r.config["x"] for r in ns["results_1"]}
    second = {r.config["x"] for r in ns["results_2"]}
    assert len(first) == 4 and len(second) == 4
    assert not first & second  # the restored searcher goes on, it does not start over

    ns = _run("""
search_alg = HyperOptSearch()
tuner_1 = tune.Tuner(
    train_fn,
    tune_config=tune.TuneConfig(
        num_samples=5,
        search_alg=search_alg,
    ),
    run_config=RunConfig(
        name="my-experiment-1",
        storage_path="~/my_results",
    )
)
results = tuner_1.fit()

search_alg2 = HyperOptSearch()
search_alg2.restore_from_dir(
  os.path.join("~/my_results", "my-experiment-1")
)
""".replace("num_samples=5,", "num_samples=5, metric='loss', mode='min',")
        .replace("tuner_1 = tune.Tuner(\n    train_fn,", "tuner_1 = tune.Tuner(\n    train_fn, param_space=space,"),
        HyperOptSearch=HyperOptSearch, train_fn=train_fn, space=space)
    assert len(ns["results"]) == 5
    restored = ns["search_alg2"]
    assert restored.metric == "loss"


def test_search_space_api_example():
    ns = _run("""
config = {
    "uniform": tune.uniform(-5, -1),
    "quniform": tune.quniform(3.2, 5.4, 0.2),
    "loguniform": tune.loguniform(1e-4, 1e-2),
    "qloguniform": tune.qloguniform(1e-4, 1e-1, 5e-5),
    "randn": tune.randn(10, 2),
    "qrandn": tune.qrandn(10, 2, 0.2),
    "randint": tune.randint(-9, 15),
    "qrandint": tune.qrandint(-21, 12, 3),
    "lograndint": tune.lograndint(1, 10),
    "qlograndint": tune.qlograndint(1, 10, 2),
    "choice": tune.choice(["a", "b", "c"]),
    "func": tune.sample_from(lambda spec: spec.config.uniform * 0.01),
    "grid": tune.grid_search([32, 64, 128])
}
""")
    results = tune.Tuner(_trainable, param_space=ns["config"], tune_config=tune.TuneConfig(num_samples=4)).fit()
    assert len(results) == 12
    for r in results:
        c = r.config
        assert -5 <= c["uniform"] <= -1
        assert 3.2 - 1e-9 <= c["quniform"] <= 5.4 + 1e-9 and abs(c["quniform"] / 0.2 - round(c["quniform"] / 0.2)) < 1e-6
        assert 1e-4 <= c["loguniform"] <= 1e-2
        assert 1e-4 - 1e-12 <= c["qloguniform"] <= 1e-1 + 1e-12
        assert abs(c["qloguniform"] / 5e-5 - round(c["qloguniform"] / 5e-5)) < 1e-6
        assert abs(c["qrandn"] / 0.2 - round(c["qrandn"] / 0.2)) < 1e-6
        assert -9 <= c["randint"] < 15 and isinstance(c["randint"], int)
        assert -21 <= c["qrandint"] <= 12 and c["qrandint"] % 3 == 0
        assert 1 <= c["lograndint"] < 10
        assert 1 <= c["qlograndint"] <= 10 and c["qlograndint"] % 2 == 0
        assert c["choice"] in ("a", "b", "c")
        assert c["func"] == pytest.approx(c["uniform"] * 0.01)
    assert sorted({r.config["grid"] for r in results}) == [32, 64, 128]


def test_scheduler_examples():
    def train_fn(config):
        for i in range(12):
            train.report({"loss": config.get("param", 0.5) + 1.0 / (i + 1), "mean_accuracy": i})

    # The seed imports ``from tune.schedulers import ASHAScheduler``; the
    # package is ``ray.tune.schedulers``.
    ns = _run("""
from ray import train, tune
from ray.tune.schedulers import ASHAScheduler

tuner = tune.Tuner(
    train_fn,
    tune_config=tune.TuneConfig(
        scheduler=ASHAScheduler(),
        metric="loss",
        mode="min",
        num_samples=10,
    ),
    param_space={"param": tune.uniform(0, 1)},
)
results = tuner.fit()

asha_scheduler = ASHAScheduler(
    time_attr='training_iteration',
    metric='loss',
    mode='min',
    max_t=100,
    grace_period=10,
    reduction_factor=3,
    brackets=1,
)
tuner = tune.Tuner(
    train_fn,
    tune_config=tune.TuneConfig(scheduler=asha_scheduler),
)
results2 = tuner.fit()
""", train_fn=train_fn)
    assert len(ns["results"]) == 10 and not ns["results"].errors
    its = sorted(r.metrics["training_iteration"] for r in ns["results"])
    assert its[0] >= 1 and its[-1] == 12
    assert ns["results2"][0].metrics["training_iteration"] == 12

    ns = _run("""
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining

pbt_scheduler = PopulationBasedTraining(
    time_attr='training_iteration',
    metric='loss',
    mode='min',
    perturbation_interval=1,
    hyperparam_mutations={
        "lr": [1e-3, 5e-4, 1e-4, 5e-5, 1e-5],
        "alpha": tune.uniform(0.0, 1.0),
    }
)
tuner = tune.Tuner(
    train_fn,
    tune_config=tune.TuneConfig(
        num_samples=4,
        scheduler=pbt_scheduler,
    ),
)
results = tuner.fit()
""", train_fn=train_fn)
    results = ns["results"]
    assert len(results) == 4 and not results.errors
    for r in results:
        assert r.config["lr"] in [1e-3, 5e-4, 1e-4, 5e-5, 1e-5] and 0.0 <= r.config["alpha"] <= 1.0

    ns = _run("""
from ray.tune.schedulers.pb2 import PB2

pb2_scheduler = PB2(
    time_attr='time_total_s',
    metric='mean_accuracy',
    mode='max',
    perturbation_interval=600.0,
    hyperparam_bounds={
        "lr": [1e-3, 1e-5],
        "alpha": [0.0, 1.0],
    }
)
tuner = tune.Tuner(train_fn, tune_config=tune.TuneConfig(scheduler=pb2_scheduler, num_samples=2))
results = tuner.fit()
""", train_fn=train_fn)
    assert len(ns["results"]) == 2 and not ns["results"].errors
    for r in ns["results"]:
        assert 1e-5 <= r.config["lr"] <= 1e-3 and 0.0 <= r.config["alpha"] <= 1.0


def test_reset_config_lets_the_trainable_be_reused():
    ns = _run("""
class PytorchTrainable(tune.Trainable):
    \"\"\"Train a Pytorch ConvNet.\"\"\"

    def setup(self, config):
        self.train_loader, self.test_loader = get_data_loaders()
        self.model = ConvNet()
        self.optimizer = optim.SGD(
            self.model.parameters(),
            lr=config.get("lr", 0.01),
            momentum=config.get("momentum", 0.9))

    def reset_config(self, new_config):
        for param_group in self.optimizer.param_groups:
            if "lr" in new_config:
                param_group["lr"] = new_config["lr"]
            if "momentum" in new_config:
                param_group["momentum"] = new_config["momentum"]

        self.model = ConvNet()
        self.config = new_config
        return True
""", get_data_loaders=lambda: (None, None))

    class Model:
        def parameters(self):
            return []

    class _SGD:
        def __init__(self, params, lr, momentum):
            self.param_groups = [{"lr": lr, "momentum": momentum}]

    class optim:  # noqa: N801 - stands for torch.optim in the seed's example
        SGD = _SGD

    ns["ConvNet"], ns["optim"] = Model, optim

    class Reported(ns["PytorchTrainable"]):
        def step(self):
            import os as _os

            group = self.optimizer.param_groups[0]
            return {"lr": group["lr"], "pid": _os.getpid(), "done": True}

    tunesmith.init(num_cpus=2)
    results = tune.Tuner(
        tune.with_resources(Reported, {"cpu": 2}),
        param_space={"lr": tune.grid_search([0.1, 0.2, 0.3])},
        tune_config=tune.TuneConfig(reuse_actors=True),
    ).fit()
    assert sorted(r.metrics["lr"] for r in results) == [0.1, 0.2, 0.3]
    # {"cpu": 2} on two cores: one trial at a time, all in one reused worker.
    assert len({r.metrics["pid"] for r in results}) == 1


def test_the_scheduler_examples_toy_trainable():
    """Seed 004's HyperBand example (and its logger and CLI snippets) use MyTrainableClass from
    ray.tune.utils.mock_trainable: with the import changed, it runs under HyperBand."""
    from tunesmith.tune.schedulers import HyperBandScheduler
    from tunesmith.tune.utils.mock_trainable import MyTrainableClass

    results = tune.Tuner(
        MyTrainableClass,
        run_config=RunConfig(name="hyperband_test", stop={"training_iteration": 9}, verbose=0),
        tune_config=tune.TuneConfig(num_samples=6, metric="episode_reward_mean", mode="max",
                                    scheduler=HyperBandScheduler(time_attr="training_iteration", max_t=9)),
        param_space={"width": tune.randint(10, 90), "height": tune.randint(0, 100)},
    ).fit()
    assert len(results) == 6 and not results.errors
    best = results.get_best_result()
    config, reward = best.config, best.metrics["episode_reward_mean"]
    assert reward == pytest.approx(np.tanh(best.metrics["training_iteration"] / config["width"]) * config["height"])
