"""The class Trainable API used directly in a process, in its new and old forms."""
from __future__ import annotations

import json
import os
import pickle

import pytest

from tunesmith import tune
from tunesmith.train import Checkpoint
from tunesmith.tune.execution.placement_groups import PlacementGroupFactory
from tunesmith.tune.trainable import DurableTrainable, Trainable
from tunesmith.tune.trainable._trial_info import TrialInfo


class NewCounter(tune.Trainable):
    def setup(self, config):
        self.value = config.get("start", 0)
        self.cleaned = False

    def step(self):
        self.value += 1
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"value": self.value}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.value = json.load(f)["value"]

    def cleanup(self):
        self.cleaned = True


class DictCounter(NewCounter):
    def save_checkpoint(self, checkpoint_dir):
        return {"value": self.value}

    def load_checkpoint(self, checkpoint):
        self.value = checkpoint["value"]


class OldPathCounter(tune.Trainable):
    def _setup(self, config):
        self.value = 0
        self.restored_from = None
        self.stopped = False

    def _train(self):
        self.value += 1
        return {"value": self.value}

    def _save(self, tmp_checkpoint_dir):
        path = os.path.join(tmp_checkpoint_dir, "my", "check", "point")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(str(self.value))
        return path

    def _restore(self, checkpoint):
        self.restored_from = checkpoint
        with open(checkpoint) as f:
            self.value = int(f.read())

    def _stop(self):
        self.stopped = True


class OldDictCounter(OldPathCounter):
    def _save(self, tmp_checkpoint_dir):
        return {"value": self.value}

    def _restore(self, checkpoint):
        self.restored_from = checkpoint
        self.value = checkpoint["value"]


AUTO_FIELDS = {
    "training_iteration": int,
    "time_this_iter_s": float,
    "time_total_s": float,
    "iterations_since_restore": int,
    "time_since_restore": float,
    "done": bool,
    "trial_id": str,
    "experiment_id": str,
    "experiment_tag": str,
    "date": str,
    "timestamp": int,
    "hostname": str,
    "node_ip": str,
    "pid": int,
    "config": dict,
}


def test_new_api_counts_iterations_and_fills_every_auto_field():
    t = NewCounter(config={"start": 10})
    results = [t.train() for _ in range(3)]
    assert [r["value"] for r in results] == [11, 12, 13]
    assert [r["training_iteration"] for r in results] == [1, 2, 3]
    assert t.iteration == t.training_iteration == 3
    last = results[-1]
    for key, kind in AUTO_FIELDS.items():
        assert isinstance(last[key], kind), (key, last[key])
    assert last["done"] is False
    assert last["pid"] == os.getpid()
    assert last["config"] == {"start": 10}
    assert last["iterations_since_restore"] == 3
    assert last["time_total_s"] >= last["time_this_iter_s"] >= 0
    assert len(last["date"]) == len("2024-01-01_00-00-00") and last["date"][4] == "-"
    assert "timesteps_total" not in last and "episodes_total" not in last
    t.stop()
    assert t.cleaned


def test_old_api_names_are_called():
    t = OldPathCounter(config={})
    assert t.train()["value"] == 1
    assert t.train()["training_iteration"] == 2
    t.stop()
    assert t.stopped


def test_step_must_return_a_dict():
    class Bad(tune.Trainable):
        def step(self):
            return 3

    with pytest.raises(TypeError, match="Bad.step\\(\\) must return a dict"):
        Bad().train()


def test_missing_step_is_reported():
    with pytest.raises(NotImplementedError, match="must implement step"):
        tune.Trainable().train()


def test_user_values_done_and_should_checkpoint_pass_through():
    class Finisher(tune.Trainable):
        def step(self):
            return {"done": self.iteration >= 1, "should_checkpoint": True, "time_this_iter_s": 2.5,
                    "timesteps_this_iter": 10, "episodes_this_iter": 2}

    t = Finisher()
    first, second = t.train(), t.train()
    assert first["done"] is False and second["done"] is True
    assert second["should_checkpoint"] is True
    assert second["time_this_iter_s"] == 2.5 and second["time_total_s"] == 5.0
    assert second["timesteps_total"] == 20 and second["timesteps_since_restore"] == 20
    assert second["episodes_total"] == 4


def test_default_logdir_is_under_tune_result_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_RESULT_DIR", str(tmp_path / "root"))
    t = NewCounter()
    assert os.path.dirname(t.logdir) == str(tmp_path / "root")
    assert os.path.basename(t.logdir).startswith("NewCounter_")
    t.train()
    t.stop()
    with open(os.path.join(t.logdir, "result.json")) as f:
        assert json.loads(f.readline())["value"] == 1


def test_trial_info_sets_identity_and_logdir(tmp_path):
    info = TrialInfo(trial_id="abc_00001", trial_name="NewCounter_abc_00001", trial_dir=str(tmp_path / "trial"),
                     experiment_tag="1_start=3", resources=PlacementGroupFactory([{"CPU": 2}]),
                     experiment_id="exp123")
    t = NewCounter(config={"start": 3}, logger_creator=None, storage=None, trial_info=info)
    assert t.logdir == str(tmp_path / "trial") and os.path.isdir(t.logdir)
    assert (t.trial_id, t.trial_name) == ("abc_00001", "NewCounter_abc_00001")
    assert t.trial_resources.required_resources == {"CPU": 2.0}
    result = t.train()
    assert (result["trial_id"], result["experiment_tag"], result["experiment_id"]) == (
        "abc_00001", "1_start=3", "exp123")
    assert not os.path.exists(os.path.join(t.logdir, "result.json"))


def test_standalone_identity_defaults():
    t = NewCounter()
    assert t.trial_id == "default" and t.trial_name == "default" and t.trial_resources is None
    assert t.get_config() == {}


def test_save_and_restore_continue_the_iteration():
    t = NewCounter(config={"start": 0})
    for _ in range(3):
        t.train()
    path = t.save()
    assert os.path.basename(path) == "checkpoint_000003"
    assert os.path.dirname(path) == t.logdir
    t.train()
    t.train()
    assert t.value == 5
    t.restore(path)
    assert t.value == 3 and t.iteration == 3
    result = t.train()
    assert result["training_iteration"] == 4
    assert result["iterations_since_restore"] == 1
    assert result["time_since_restore"] <= result["time_total_s"]


def test_restore_into_a_fresh_instance_and_from_a_checkpoint_object():
    t = DictCounter()
    t.train()
    t.train()
    path = t.save()
    fresh = DictCounter()
    fresh.restore(Checkpoint.from_directory(path))
    assert fresh.value == 2
    assert fresh.train()["training_iteration"] == 3
    # A dict checkpoint reads back with Checkpoint.to_dict().
    assert Checkpoint(path).to_dict() == {"value": 2}


def test_save_into_a_given_directory(tmp_path):
    t = NewCounter()
    t.train()
    target = str(tmp_path / "my_ckpt")
    assert t.save(target) == target
    assert json.load(open(os.path.join(target, "state.json"))) == {"value": 1}


def test_old_api_path_form_restores_the_returned_file():
    t = OldPathCounter()
    for _ in range(2):
        t.train()
    path = t.save()
    t.train()
    other = OldPathCounter()
    other.restore(path)
    assert other.value == 2 and other.iteration == 2
    assert other.restored_from == os.path.join(path, "my", "check", "point")
    # The old API handed out the file path; restoring from it works too.
    third = OldPathCounter()
    third.restore(os.path.join(path, "my", "check", "point"))
    assert third.value == 2 and third.train()["training_iteration"] == 3


def test_old_api_dict_form_gets_the_dict_back():
    t = OldDictCounter()
    t.train()
    path = t.save()
    other = OldDictCounter()
    other.restore(path)
    assert other.restored_from == {"value": 1}
    assert other.train()["training_iteration"] == 2


def test_save_checkpoint_must_return_a_path_inside_its_directory(tmp_path):
    class Outside(NewCounter):
        def save_checkpoint(self, checkpoint_dir):
            return str(tmp_path)

    with pytest.raises(ValueError, match="outside the checkpoint directory"):
        Outside().save()


def test_save_without_save_checkpoint_is_a_clear_error():
    class NoSave(tune.Trainable):
        def step(self):
            return {}

    with pytest.raises(NotImplementedError, match="does not implement save_checkpoint"):
        NoSave().save()


def test_save_to_object_and_restore_from_object_across_instances():
    t = OldPathCounter()
    for _ in range(4):
        t.train()
    obj = t.save_to_object()
    assert isinstance(obj, bytes)
    other = OldPathCounter()
    other.restore_from_object(obj)
    assert other.value == 4 and other.iteration == 4
    # The temporary directory holding the object was removed after restoring.
    assert not os.path.exists(other.restored_from)
    assert other.train()["training_iteration"] == 5
    with pytest.raises(TypeError, match="bytes returned by save_to_object"):
        other.restore_from_object({"not": "bytes"})


def test_restore_missing_path_raises():
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        NewCounter().restore("/nonexistent/checkpoint_000001")


def test_export_model(tmp_path):
    class Exporter(NewCounter):
        def _export_model(self, export_formats, export_dir):
            out = {}
            for fmt in export_formats:
                path = os.path.join(export_dir, f"model.{fmt}")
                open(path, "w").write(str(self.value))
                out[fmt] = path
            return out

    t = Exporter()
    t.train()
    exported = t.export_model(["h5", "onnx"], export_dir=str(tmp_path))
    assert sorted(exported) == ["h5", "onnx"]
    assert open(exported["h5"]).read() == "1"
    assert t.export_model("h5") == {"h5": os.path.join(t.logdir, "model.h5")}
    with pytest.raises(ValueError, match="list of format names"):
        t.export_model(42)
    assert NewCounter().export_model("h5") == {}


def test_reset_config_true_resets_counters_and_config(tmp_path):
    class Resettable(NewCounter):
        def reset_config(self, new_config):
            self.value = new_config["start"]
            return True

    t = Resettable(config={"start": 0})
    t.train()
    t.train()
    info = TrialInfo(trial_id="t2", trial_name="Resettable_t2", trial_dir=str(tmp_path / "t2"))
    assert t.reset({"start": 100}, trial_info=info) is True
    assert t.config == {"start": 100} and t.iteration == 0
    assert t.trial_id == "t2" and t.logdir == str(tmp_path / "t2")
    result = t.train()
    assert result["value"] == 101 and result["training_iteration"] == 1 and result["trial_id"] == "t2"


def test_reset_config_default_is_false():
    t = NewCounter(config={"start": 0})
    t.train()
    assert t.reset({"start": 5}) is False


def test_stop_runs_cleanup_once():
    calls = []

    class Cleaner(NewCounter):
        def cleanup(self):
            calls.append(1)

    t = Cleaner()
    t.stop()
    t.stop()
    assert calls == [1]


def test_setup_gets_a_copy_of_the_config():
    class Mutator(tune.Trainable):
        def setup(self, config):
            config["added"] = True

    t = Mutator(config={"a": {"b": 1}})
    assert t.config == {"a": {"b": 1}}


def test_config_must_be_a_dict():
    with pytest.raises(TypeError, match="must be a dict"):
        NewCounter(config=[1, 2])


def test_resource_hooks():
    class Workers(tune.Trainable):
        @classmethod
        def default_resource_request(cls, config):
            return {"cpu": 1, "extra_cpu": config["workers"]}

    assert tune.Trainable.default_resource_request({}) is None
    assert tune.Trainable.resource_help({}) == ""
    assert Workers.default_resource_request({"workers": 3}) == {"cpu": 1, "extra_cpu": 3}
    seen = []

    class Watcher(NewCounter):
        def update_resources(self, resources):
            seen.append(resources)

    info = TrialInfo(trial_id="x", trial_name="x", trial_dir=os.path.join(os.environ["TUNE_RESULT_DIR"], "x"))
    w = Watcher(trial_info=info)
    new = PlacementGroupFactory([{"CPU": 4}])
    w._update_resources(new)
    assert seen == [new] and w.trial_resources == new


def test_delete_checkpoint():
    t = NewCounter()
    t.train()
    path = t.save()
    t.delete_checkpoint(path)
    assert not os.path.exists(path)


def test_trainable_subclass_pickles_by_reference_and_runs_after_unpickling():
    import cloudpickle

    cls = cloudpickle.loads(cloudpickle.dumps(NewCounter))
    assert cls(config={"start": 1}).train()["value"] == 2


def test_durable_trainable_copies_checkpoints_and_restores_from_remote(tmp_path):
    remote = tmp_path / "remote"

    class Durable(DurableTrainable):
        def setup(self, config):
            self.value = 0

        def step(self):
            self.value += 1
            return {"value": self.value}

        def save_checkpoint(self, checkpoint_dir):
            return {"value": self.value}

        def load_checkpoint(self, checkpoint):
            self.value = checkpoint["value"]

    t = Durable(str(remote), config={})
    t.train()
    t.train()
    path = t.save()
    assert os.path.isfile(remote / os.path.basename(path) / "dict_checkpoint.pkl")
    t.delete_checkpoint(path)
    assert not os.path.exists(path)
    assert not os.path.exists(remote / os.path.basename(path))

    path = t.save()
    import shutil

    shutil.rmtree(path)
    fresh = Durable(remote_checkpoint_dir=str(remote), config={})
    fresh.restore(path)
    assert fresh.value == 2 and fresh.train()["training_iteration"] == 3
    # Without a remote directory it behaves like a Trainable.
    plain = Durable({"a": 1})
    assert plain.config == {"a": 1} and plain.storage_client is None


def test_checkpoint_metadata_is_json_with_counters():
    t = DictCounter()
    t.train()
    path = t.save()
    with open(os.path.join(path, ".tune_metadata")) as f:
        meta = json.load(f)
    assert meta["iteration"] == 1 and meta["saved_as"] == "dict"
    with open(os.path.join(path, "dict_checkpoint.pkl"), "rb") as f:
        assert pickle.load(f) == {"value": 1}


def test_tune_namespace_exports():
    assert tune.Trainable is Trainable
    assert tune.DurableTrainable is DurableTrainable


class _StepsOnly(tune.Trainable):
    def step(self):
        return {"value": self.iteration}


def test_a_tuner_saves_a_final_checkpoint_of_a_class_that_can_save_one(tmp_path):
    """Ray's Tuner takes an unset checkpoint_at_end as True for class trainables: Result.checkpoint is the
    state at the end. A class without save_checkpoint is not asked; tune.run saves none unless asked."""
    stop = {"training_iteration": 3}
    result = tune.Tuner(NewCounter, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop=stop)).fit()[0]
    assert result.checkpoint is not None
    with result.checkpoint.as_directory() as d:
        assert json.load(open(os.path.join(d, "state.json")))["value"] == 3
    result = tune.Tuner(_StepsOnly, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop=stop)).fit()[0]
    assert result.error is None and result.checkpoint is None
    off = tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop=stop,
                         checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False))
    assert tune.Tuner(NewCounter, run_config=off).fit()[0].checkpoint is None
    analysis = tune.run(NewCounter, stop=stop, storage_path=str(tmp_path), verbose=0)
    assert analysis.trials[0].checkpoint is None


def test_numpy_counters_a_local_class_in_a_dict_checkpoint_and_the_iteration_seen_on_load(tmp_path):
    """Three things Ray does that a Trainable saved or restored here did not: counters a step() returns as
    numpy numbers (timesteps_this_iter) made every save fail (not JSON serializable); a dict checkpoint
    holding an object of a class defined in the user's script failed to pickle; load_checkpoint() saw
    self.iteration from before the restore."""
    import dataclasses

    import numpy as np

    @dataclasses.dataclass
    class State:  # defined here, as in a user's script: pickled by value
        count: int

    seen = []

    class Counts(Trainable):
        def setup(self, config):
            self.state = State(0)

        def step(self):
            self.state.count += 1
            return {"timesteps_this_iter": np.int64(10), "time_this_iter_s": np.float32(0.5)}

        def save_checkpoint(self, checkpoint_dir):
            return {"state": self.state}

        def load_checkpoint(self, checkpoint):
            seen.append(self.iteration)
            self.state = checkpoint["state"]

    first = Counts(config={})
    for _ in range(3):
        result = first.train()
    assert result["timesteps_total"] == 30
    path = first.save(str(tmp_path / "ckpt"))
    first.stop()
    second = Counts(config={})
    second.restore(path)
    assert seen == [3] and second.state == State(3) and second.iteration == 3
    assert second.train()["timesteps_total"] == 40
    second.stop()


class _CleansUp(Trainable):
    def step(self):
        return {"done": True}

    def reset_config(self, new_config):
        return True

    def cleanup(self):
        with open("cleaned_up.txt", "w") as f:  # relative: the trial's directory
            f.write(self.trial_id)


def test_a_reused_instances_cleanup_runs_in_its_trial_directory(tmp_path, monkeypatch):
    """With reuse_actors=True the last instance's cleanup() ran in the worker's own working directory (the
    driver's): a relative file it wrote landed beside the user's script. As on Ray, it runs in its trial's."""
    monkeypatch.chdir(tmp_path)
    grid = tune.Tuner(
        _CleansUp, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert not (tmp_path / "cleaned_up.txt").exists()
    written = [r for r in grid if os.path.exists(os.path.join(r.path, "cleaned_up.txt"))]
    assert len(written) == 1
    with open(os.path.join(written[0].path, "cleaned_up.txt")) as f:
        assert f.read() in written[0].path


class _SetsUpItsProcess(tune.Trainable):
    """setup() makes process-wide choices (a default dtype, an environment variable) its steps rely on."""

    def setup(self, config):
        import warnings

        self.root_at_setup = os.environ.get("DATA_ROOT")
        os.environ["DATA_ROOT"] = "/data/set/in/setup"
        warnings.simplefilter("error", UserWarning)

    def reset_config(self, new_config):
        return True

    def step(self):
        import warnings

        return {"root": os.environ.get("DATA_ROOT"), "pid": os.getpid(), "done": True,
                "root_at_setup": self.root_at_setup,
                "warnings_error": any(f[0] == "error" for f in warnings.filters)}


class _SetsUpItsProcessOnce(_SetsUpItsProcess):
    reset_config = tune.Trainable.reset_config  # cannot be reused


def test_a_reused_instance_keeps_the_process_its_setup_made(tmp_path):
    """With reuse_actors=True, the settings setup() made were undone after each trial although the next
    trial took the same instance over without running setup() again (its steps then failed)."""
    import tunesmith

    tunesmith.init(num_cpus=1)
    try:
        grid = tune.Tuner(_SetsUpItsProcess, param_space={"i": tune.grid_search([1, 2, 3])},
                          tune_config=tune.TuneConfig(reuse_actors=True),
                          run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
        seen = [r.metrics for r in grid]
        assert len({s["pid"] for s in seen}) == 1
        assert [(s["root"], s["warnings_error"]) for s in seen] == [("/data/set/in/setup", True)] * 3
        # An instance that cannot be reused is cleaned up, and what its setup() did is undone for the next.
        grid = tune.Tuner(_SetsUpItsProcessOnce, param_space={"i": tune.grid_search([1, 2])},
                          tune_config=tune.TuneConfig(reuse_actors=True),
                          run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
        assert not grid.errors and [r.metrics["root_at_setup"] for r in grid] == [None, None]
    finally:
        tunesmith.shutdown()
    assert "DATA_ROOT" not in os.environ


def test_an_instance_made_after_reset_config_said_no_has_its_class_afresh(tmp_path):
    """The new instance was made from the class the old one used: class attributes carried over."""
    import tunesmith

    class Remembers(tune.Trainable):  # not importable: sent by value, as a class of the user's script is
        seen = []

        def setup(self, config):
            type(self).seen.append(config["i"])

        def reset_config(self, new_config):
            return False

        def step(self):
            return {"seen": list(type(self).seen), "pid": os.getpid(), "done": True}

    tunesmith.init(num_cpus=1)
    try:
        grid = tune.Tuner(Remembers, param_space={"i": tune.grid_search([1, 2, 3])},
                          tune_config=tune.TuneConfig(reuse_actors=True),
                          run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    finally:
        tunesmith.shutdown()
    assert len({r.metrics["pid"] for r in grid}) == 1
    assert sorted(r.metrics["seen"] for r in grid) == [[1], [2], [3]]


class _SlowSetup(tune.Trainable):
    def setup(self, config):
        import time

        time.sleep(5)  # loading a data set, say; the time budget ends meanwhile

    def step(self):
        open(self.config["stepped"], "w").close()
        return {"m": 1}


def test_a_trial_stopped_during_setup_starts_no_step(tmp_path):
    """Told to stop while setup() ran, the trial still ran a whole step (an epoch) before it ended, and
    fit() waited for it; on Ray it never steps."""
    stepped = tmp_path / "stepped"
    (result,) = tune.Tuner(_SlowSetup, param_space={"stepped": str(stepped)},
                           tune_config=tune.TuneConfig(time_budget_s=0.5),
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert result.error is None
    assert not stepped.exists() and "training_iteration" not in result.metrics


class _SizesItselfToItsCpus(tune.Trainable):
    def setup(self, config):
        self.sized_for = self.trial_resources.required_resources.get("CPU")

    def reset_config(self, new_config):
        return True

    def step(self):
        return {"sized_for": self.sized_for, "cpus": self.trial_resources.required_resources.get("CPU"),
                "done": True}


def test_a_reused_instance_runs_only_trials_asking_for_its_resources(tmp_path):
    """With reuse_actors=True, an instance set up for 2 CPUs ran a 1-CPU trial (Ray reuses an actor only
    for trials with the same resource requests)."""
    import tunesmith

    tunesmith.init(num_cpus=2)
    try:
        grid = tune.Tuner(tune.with_resources(_SizesItselfToItsCpus, lambda config: {"cpu": config["c"]}),
                          param_space={"c": tune.grid_search([2, 1, 2])},
                          tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
                          run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    finally:
        tunesmith.shutdown()
    assert [(r.metrics["sized_for"], r.metrics["cpus"]) for r in grid] == [(2, 2), (1, 1), (2, 2)]
