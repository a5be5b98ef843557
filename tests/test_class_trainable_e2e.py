"""Class trainables (new and old API) through Tuner.fit() and tune.run()."""
from __future__ import annotations

import json
import os

import pytest

from tunesmith import tune


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = config.get("start", 0)
        self.setups = getattr(self, "setups", 0) + 1

    def step(self):
        self.value += 1
        return {"value": self.value, "pid": os.getpid(), "setups": self.setups}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "v.json"), "w") as f:
            json.dump({"value": self.value}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "v.json")) as f:
            self.value = json.load(f)["value"]


class OldCounter(tune.Trainable):
    def _setup(self, config):
        self.value = 0

    def _train(self):
        self.value += 1
        return {"value": self.value}

    def _save(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, "value.txt")
        with open(path, "w") as f:
            f.write(str(self.value))
        return path

    def _restore(self, checkpoint_path):
        with open(checkpoint_path) as f:
            self.value = int(f.read())


def _fit(trainable, param_space=None, run_config=None, **tune_kwargs):
    return tune.Tuner(
        trainable, param_space=param_space or {}, tune_config=tune.TuneConfig(**tune_kwargs),
        run_config=run_config or tune.RunConfig(verbose=0, stop={"training_iteration": 5}),
    ).fit()


def test_new_class_api_runs_to_the_stop_criterion():
    grid = _fit(Counter, {"start": tune.grid_search([0, 10])})
    assert sorted(r.metrics["value"] for r in grid) == [5, 15]
    assert all(r.metrics["training_iteration"] == 5 for r in grid)


def test_old_class_api_runs():
    grid = _fit(OldCounter)
    assert grid[0].metrics["value"] == 5


def test_checkpoint_frequency_and_at_end():
    rc = tune.RunConfig(
        verbose=0, stop={"training_iteration": 5},
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, checkpoint_at_end=True),
    )
    grid = _fit(Counter, run_config=rc)
    names = sorted(n for n in os.listdir(grid[0].path) if n.startswith("checkpoint_"))
    assert names == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    with open(os.path.join(grid[0].checkpoint.path, "v.json")) as f:
        assert json.load(f) == {"value": 5}


def test_num_to_keep_keeps_the_best_checkpoints():
    rc = tune.RunConfig(
        verbose=0, stop={"training_iteration": 6},
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=1, num_to_keep=2,
            checkpoint_score_attribute="value", checkpoint_score_order="min",
        ),
    )
    grid = _fit(Counter, run_config=rc)
    names = sorted(n for n in os.listdir(grid[0].path) if n.startswith("checkpoint_"))
    # The two best by "min value" are the first two; the latest stays on disk for a restore,
    # but only the ranked ones are listed as the best (as in Ray).
    assert names == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000005"]
    assert [m["value"] for _, m in grid[0].best_checkpoints] == [2, 1]
    assert os.path.basename(grid[0].checkpoint.path) == "checkpoint_000005"
    # Read back from disk, without the CheckpointConfig, the listing is the same.
    analysis = tune.ExperimentAnalysis(grid.experiment_path)
    assert sorted(v for _, v in analysis.get_trial_checkpoints_paths(analysis.trials[0], "value")) == [1, 2]
    assert os.path.basename(analysis.get_last_checkpoint(analysis.trials[0]).path) == "checkpoint_000005"


class Resettable(Counter):
    def reset_config(self, new_config):
        self.value = new_config.get("start", 0)
        return True


def test_reuse_actors_calls_reset_config():
    from tunesmith import init

    init(num_cpus=1)
    grid = _fit(Resettable, {"start": tune.grid_search([0, 100, 200])}, reuse_actors=True)
    assert sorted(r.metrics["value"] for r in grid) == [5, 105, 205]
    assert len({r.metrics["pid"] for r in grid}) == 1
    # setup ran once; later trials were reset, not rebuilt.
    assert sorted(r.metrics["setups"] for r in grid) == [1, 1, 1]


def test_tune_run_returns_experiment_analysis():
    analysis = tune.run(
        Counter, config={"start": tune.grid_search([0, 10, 20])}, stop={"training_iteration": 3},
        metric="value", mode="max", verbose=0, checkpoint_freq=1,
    )
    assert analysis.best_config == {"start": 20}
    assert analysis.best_result["value"] == 23
    assert len(analysis.trials) == 3
    assert analysis.get_best_checkpoint(analysis.best_trial, "value", "max") is not None
    assert len(analysis.dataframe()) == 3


def test_run_experiments_with_experiment_objects():
    exp = tune.Experiment("exp_obj", run=Counter, stop={"training_iteration": 2}, config={"start": 1})
    trials = tune.run_experiments(exp, verbose=0)
    assert len(trials) == 1 and trials[0].last_result["value"] == 3
    trials = tune.run_experiments({"exp_dict": {"run": OldCounter, "stop": {"training_iteration": 2}}}, verbose=0)
    assert trials[0].last_result["value"] == 2


def test_tune_run_restore_starts_every_trial_from_a_checkpoint(tmp_path):
    first = tune.run(Counter, config={"start": 0}, stop={"training_iteration": 3}, verbose=0,
                     checkpoint_at_end=True)
    checkpoint = first.trials[0].checkpoint.path
    analysis = tune.run(Counter, config={"start": tune.grid_search([0, 50])}, stop={"training_iteration": 5},
                        verbose=0, restore=checkpoint)
    # Both trials loaded value 3 at iteration 3 and trained two more iterations.
    assert sorted(t.last_result["value"] for t in analysis.trials) == [5, 5]
    assert all(t.last_result["training_iteration"] == 5 for t in analysis.trials)


class DurableCounter(tune.DurableTrainable):
    def _setup(self, config):
        self.value = 0

    def _train(self):
        self.value += 1
        return {"value": self.value}

    def _save(self, checkpoint_dir):
        return {"value": self.value}

    def _restore(self, checkpoint):
        self.value = checkpoint["value"]


def test_durable_trainable_runs_with_the_seed_call():
    import warnings

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        analysis = tune.run(DurableCounter, sync_to_driver=False, stop={"training_iteration": 3},
                            checkpoint_freq=1, verbose=0)
    trial = analysis.trials[0]
    assert trial.last_result["value"] == 3
    assert trial.checkpoint is not None


def _fails_until_marked(config):
    for i in range(3):
        if config["x"] == 2 and not os.path.exists(config["marker"]):
            raise RuntimeError("not yet")
        tune.report({"score": config["x"] + i})


def _statuses(trials):
    return sorted((t.config["x"], t.status, t.last_result.get("training_iteration")) for t in trials)


@pytest.mark.parametrize("resume", ["AUTO+ERRORED", "AUTO+RESTART_ERRORED", "AUTO+ERRORED_ONLY", "ERRORED_ONLY"])
@pytest.mark.parametrize("entry", ["run", "run_experiments"])
def test_tune_run_resume_settings_rerun_errored_trials(tmp_path, resume, entry):
    config = {"x": tune.grid_search([1, 2]), "marker": str(tmp_path / "fixed")}

    def run(resume_arg):
        if entry == "run":
            return tune.run(_fails_until_marked, name="exp", config=config, storage_path=str(tmp_path),
                            verbose=0, resume=resume_arg, raise_on_failed_trial=False).trials
        experiment = tune.Experiment("exp", _fails_until_marked, config=config, storage_path=str(tmp_path))
        return tune.run_experiments(experiment, verbose=0, resume=resume_arg, raise_on_failed_trial=False)

    assert _statuses(run(None)) == [(1, "TERMINATED", 3), (2, "ERROR", None)]
    (tmp_path / "fixed").touch()
    assert _statuses(run(resume)) == [(1, "TERMINATED", 3), (2, "TERMINATED", 3)]
    # Plain "AUTO" leaves errored trials as they were (and runs nothing again).
    assert _statuses(run("AUTO")) == [(1, "TERMINATED", 3), (2, "TERMINATED", 3)]


def test_tune_run_refuses_an_unknown_resume_setting(tmp_path):
    with pytest.raises(ValueError, match="unknown resume setting 'BOGUS'"):
        tune.run(_fails_until_marked, name="exp", storage_path=str(tmp_path), resume="AUTO+BOGUS", verbose=0)


def test_an_experiments_restore_checkpoint_is_used():
    first = tune.run(Counter, config={"start": 0}, stop={"training_iteration": 3}, verbose=0,
                     checkpoint_at_end=True)
    checkpoint = first.trials[0].checkpoint.path
    (trial,) = tune.run_experiments(
        tune.Experiment("from_checkpoint", Counter, config={"start": 50}, stop={"training_iteration": 5},
                        restore=checkpoint), verbose=0)
    assert trial.last_result["value"] == 5  # loaded 3, not the config's start of 50


def test_an_experiment_refuses_arguments_it_does_not_know():
    with pytest.raises(TypeError, match="did you mean 'checkpoint_freq'"):
        tune.Experiment("typo", Counter, chekpoint_freq=1)


def test_older_checkpoint_arguments_apply_over_a_checkpoint_config():
    analysis = tune.run(Counter, stop={"training_iteration": 3}, verbose=0,
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                        checkpoint_freq=1, checkpoint_at_end=True)
    (trial,) = analysis.trials
    # A checkpoint every iteration (3), the two latest kept.
    assert trial.checkpoint is not None and trial.checkpoint.path.endswith("checkpoint_000002")
    assert sorted(n for n in os.listdir(trial.local_path) if n.startswith("checkpoint_")) == [
        "checkpoint_000001", "checkpoint_000002"]


@pytest.mark.parametrize("option", [{"scheduler": "asha"}, {"search_alg": "random"}])
def test_tune_run_takes_a_scheduler_or_searcher_by_name(option):
    analysis = tune.run(Counter, config={"start": tune.uniform(0, 1)}, num_samples=2, metric="value", mode="max",
                        stop={"training_iteration": 2}, verbose=0, **option)
    assert [t.status for t in analysis.trials] == ["TERMINATED", "TERMINATED"]


class SetsItsResources(Counter):
    @classmethod
    def default_resource_request(cls, config):
        return {"cpu": 1}


def test_resources_per_trial_for_a_class_that_sets_its_own_is_an_error():
    with pytest.raises(ValueError, match="already set to .*default_resource_request"):
        tune.run(SetsItsResources, resources_per_trial={"cpu": 1}, stop={"training_iteration": 1}, verbose=0)


class OwnInit(tune.Trainable):
    """A subclass with its own constructor, as the older API documents it."""

    def __init__(self, config=None, logger_creator=None):
        self.offset = 100  # set before the base constructor calls setup()
        super().__init__(config, logger_creator)

    def setup(self, config):
        self.value = self.offset + config["x"]

    def step(self):
        self.value += 1
        return {"value": self.value, "dir": self.logdir, "name": self.trial_name}


def test_a_subclass_with_its_own_constructor_runs_under_a_tuner():
    """Trials of a subclass defining __init__(self, config=None, logger_creator=None) all failed with
    "got an unexpected keyword argument 'trial_info'"."""
    grid = _fit(OwnInit, {"x": tune.grid_search([1, 2])},
                run_config=tune.RunConfig(verbose=0, stop={"training_iteration": 2}), reuse_actors=False)
    assert not grid.errors
    assert sorted(r.metrics["value"] for r in grid) == [103, 104]
    for r in grid:
        assert r.metrics["dir"] == r.path  # the trial's own directory, as for any hosted trainable
        assert os.path.basename(r.path).startswith(r.metrics["name"])


class ReportsFromStep(tune.Trainable):
    def step(self):
        tune.report({"loss": 1.0})
        return {"loss": 1.0}


def test_report_inside_a_class_trainable_fails_the_trial_clearly():
    """tune.report()/train.report() inside step() warned that it ran "outside of a trial", dropped the
    metrics and any checkpoint, and the trial ended TERMINATED."""
    grid = _fit(ReportsFromStep)
    (result,) = list(grid)
    assert isinstance(result.error, Exception)
    message = str(result.error)
    assert "ReportsFromStep" in message and "step() returns" in message


class EndsWithDuplicate(tune.Trainable):
    def setup(self, config):
        self.calls = 0

    def step(self):
        self.calls += 1
        if self.calls == 3:
            return {"value": 2, tune.result.RESULT_DUPLICATE: True, "done": True}
        return {"value": self.calls}

    def save_checkpoint(self, checkpoint_dir):
        return {"calls": self.calls}


def test_a_duplicate_result_moves_no_counter():
    """A step returning RESULT_DUPLICATE counted as an iteration: the trainable's iteration and its final
    checkpoint said 3 where two results were made."""
    t = EndsWithDuplicate(config={})
    iterations = [t.train().get("training_iteration") for _ in range(3)]
    assert iterations == [1, 2, None]
    assert t.iteration == 2
    t.stop()
    grid = tune.Tuner(EndsWithDuplicate, run_config=tune.RunConfig(
        verbose=0, checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True))).fit()
    (result,) = list(grid)
    assert result.metrics["training_iteration"] == 2 and result.metrics["value"] == 2
    with result.checkpoint.as_directory() as path:
        with open(os.path.join(path, ".tune_metadata")) as f:
            assert json.load(f)["iteration"] == 2  # a trial restored from it goes on with iteration 3
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 2]


def test_get_auto_filled_metrics():
    t = Counter(config={"start": 1})
    filled = t.get_auto_filled_metrics(time_this_iter=0.5)
    assert filled["trial_id"] == "default" and filled["config"] == {"start": 1}
    assert filled["time_this_iter_s"] == 0.5 and filled["pid"] == os.getpid()
    assert {"date", "timestamp", "hostname", "node_ip", "time_total_s"} <= set(filled)
    assert "time_total_s" not in t.get_auto_filled_metrics(debug_metrics_only=True)
    t.stop()


class _NewModelPerArch(tune.Trainable):
    """Says no to a reset for another architecture (a new model is needed); writes what it saw."""

    def setup(self, config):
        self.arch = config["arch"]
        self.own = (self.trial_name, self.logdir)
        self.inherited = os.environ.get("ARCH_SET_BY_SETUP")
        os.environ["ARCH_SET_BY_SETUP"] = self.arch  # process state a new process would not have

    def step(self):
        return {"arch": self.arch, "inherited": self.inherited, "pid": os.getpid(), "done": True}

    def reset_config(self, new_config):
        return new_config["arch"] == self.arch

    def cleanup(self):
        with open("cleanup.json", "a") as f:
            f.write(json.dumps({"arch": self.arch, "as_itself": (self.trial_name, self.logdir) == self.own,
                                "config": self.config["arch"], "in_own_dir": os.getcwd() == self.own[1]}) + "\n")


def test_an_instance_whose_reset_says_no_is_cleaned_up_as_itself_and_the_next_starts_afresh(tmp_path):
    """With reuse_actors, an instance whose reset_config() returned False ran its cleanup() as the next
    trial (that trial's name, config and directory, where its files landed), and the new instance built
    in the same process saw what the old one's setup() had set there."""
    grid = tune.Tuner(
        _NewModelPerArch, param_space={"arch": tune.grid_search(["a", "b"])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert not grid.errors
    assert len({result.metrics["pid"] for result in grid}) == 1  # one worker, a new instance in it
    for result in grid:
        arch = result.metrics["arch"]
        (line,) = open(os.path.join(result.path, "cleanup.json")).read().splitlines()
        assert json.loads(line) == {"arch": arch, "as_itself": True, "config": arch, "in_own_dir": True}
        assert result.metrics["inherited"] is None
    assert "ARCH_SET_BY_SETUP" not in os.environ


class _PrintsAndRaisesOnReset(tune.Trainable):
    def setup(self, config):
        self.n = config["n"]

    def step(self):
        return {"n": self.n, "done": True}

    def reset_config(self, new_config):
        print(f"reset_config n={new_config['n']}")
        if new_config["n"] == 2:
            raise RuntimeError("cannot take this one")
        self.n = new_config["n"]
        return True

    def cleanup(self):
        with open("cleanup.txt", "a") as f:
            f.write(f"{self.n}\n")


def test_reset_config_prints_to_the_trial_log_and_an_instance_whose_reset_raised_is_cleaned_up(tmp_path):
    """reset_config()'s output reached the driver's console instead of the trial's log file, and an
    instance whose reset_config() raised was dropped without its cleanup()."""
    grid = tune.Tuner(
        _PrintsAndRaisesOnReset, param_space={"n": tune.grid_search([0, 1, 2])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, log_to_file=True),
    ).fit()
    by_n = {r.config["n"]: r for r in grid}
    assert by_n[0].error is None and by_n[1].error is None and "cannot take this one" in str(by_n[2].error)
    assert "reset_config n=1" in open(os.path.join(by_n[1].path, "stdout")).read()
    # The instance that ran trials 0 and 1 was cleaned up once, as trial 1's (where it last ran).
    assert open(os.path.join(by_n[1].path, "cleanup.txt")).read().split() == ["1"]
