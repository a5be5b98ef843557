"""with_parameters, with_resources, the registry, validate_save_restore and diagnose_serialization."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest

from tunesmith import tune
from tunesmith.train import ScalingConfig
from tunesmith.tune.execution.placement_groups import PlacementGroupFactory, to_pg_factory
from tunesmith.tune.registry import get_trainable_cls, is_registered, register_env, trainable_name
from tunesmith.tune.trainable.util import get_resources_request
from tunesmith.tune.utils import (
    diagnose_serialization,
    flatten_dict,
    unflatten_dict,
    validate_save_restore,
    wait_for_gpu,
)


class Counted:
    """An object that counts how often it is pickled."""

    pickled = 0

    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        type(self).pickled += 1
        return (Counted, (self.n,))


# -- with_parameters --------------------------------------------------------------------------------

def test_with_parameters_passes_a_large_array_to_a_function():
    data = np.arange(1_000_000, dtype=np.float64)

    def train_fn(config, data=None):
        return {"total": float(data.sum()) * config["scale"]}

    wrapped = tune.with_parameters(train_fn, data=data)
    assert wrapped.__name__ == "train_fn"
    assert trainable_name(wrapped) == "train_fn"
    assert wrapped({"scale": 2}) == {"total": float(data.sum()) * 2}
    # The wrapper's signature hides the passed parameter, as the worker sees it.
    import inspect

    assert list(inspect.signature(wrapped).parameters) == ["config"]


def test_with_parameters_pickles_the_objects_once():
    Counted.pickled = 0

    def train_fn(config, obj=None, data=None):
        return {"n": obj.n, "size": data.size}

    wrapped = tune.with_parameters(train_fn, obj=Counted(7), data=np.zeros(200_000))
    assert Counted.pickled == 1
    payload = wrapped._tunesmith_parameters.payload
    assert isinstance(payload, bytes) and len(payload) > 200_000 * 8
    blobs = [cloudpickle.dumps(wrapped) for _ in range(3)]
    assert Counted.pickled == 1
    # The payload travels once per pickled trainable, not once per object reference.
    assert all(len(b) < 2 * len(payload) for b in blobs)


def test_with_parameters_gives_each_call_objects_of_its_own():
    def train_fn(config, data=None):
        return {"first": int(data[0]), "x": config["x"]}

    blob = cloudpickle.dumps(tune.with_parameters(train_fn, data=np.arange(10)))
    script = (
        "import sys, cloudpickle\n"
        "fn = cloudpickle.loads(sys.stdin.buffer.read())\n"
        "again = cloudpickle.loads(cloudpickle.dumps(fn))\n"
        "out = [fn({'x': i}) for i in range(3)] + [again({'x': 9})]\n"
        "store = fn._tunesmith_parameters\n"
        "print(out, store._owner.load_count)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True, check=True)
    out = proc.stdout.decode().strip()
    assert out.endswith(" 4"), out  # one load per call (per trial), from one shipped payload
    assert "{'first': 0, 'x': 2}" in out and "{'first': 0, 'x': 9}" in out


def test_with_parameters_keeps_the_old_checkpoint_dir_form():
    def train_fn(config, checkpoint_dir=None, data=None):
        return {"dir": checkpoint_dir, "n": len(data)}

    wrapped = tune.with_parameters(train_fn, data=[1, 2, 3])
    import inspect

    assert list(inspect.signature(wrapped).parameters) == ["config", "checkpoint_dir"]
    assert wrapped({}, checkpoint_dir="/x") == {"dir": "/x", "n": 3}


def test_with_parameters_supports_generator_functions():
    def train_fn(config, data=None):
        for value in data:
            yield {"value": value}

    wrapped = tune.with_parameters(train_fn, data=[1, 2])
    assert [r["value"] for r in wrapped({})] == [1, 2]


def test_with_parameters_passes_objects_to_a_class_setup():
    class Model(tune.Trainable):
        def setup(self, config, data=None, offset=0):
            self.data = data
            self.total = float(data.sum()) + offset

        def step(self):
            return {"total": self.total}

    data = np.ones(50_000)
    wrapped = tune.with_parameters(Model, data=data, offset=1)
    assert wrapped.__name__ == "Model" and issubclass(wrapped, tune.Trainable)
    assert wrapped(config={}).train()["total"] == 50_001.0
    # Shipped to another "process": each instance (each trial) gets objects of its own, as on Ray.
    cls = cloudpickle.loads(cloudpickle.dumps(wrapped))
    store = cls._tunesmith_parameters
    del wrapped
    import gc

    gc.collect()
    loads = store._owner.load_count
    instances = [cls(config={}) for _ in range(3)]
    assert [t.train()["total"] for t in instances] == [50_001.0] * 3
    assert instances[0].data is not instances[1].data and (instances[0].data == instances[1].data).all()
    assert store._owner.load_count == loads + 3


def test_with_parameters_old_class_api():
    class Old(tune.Trainable):
        def _setup(self, config, data=None):
            self.data = data

        def _train(self):
            return {"n": len(self.data)}

    assert tune.with_parameters(Old, data=[1, 2, 3])().train()["n"] == 3


def test_with_parameters_rejects_unknown_parameter_names():
    def train_fn(config):
        return {}

    with pytest.raises(TypeError, match="takes no argument named 'data'"):
        tune.with_parameters(train_fn, data=1)

    class NoSetup(tune.Trainable):
        def step(self):
            return {}

    with pytest.raises(TypeError, match="defines no setup"):
        tune.with_parameters(NoSetup, data=1)
    # As on Ray, nothing to pass is no error (with_parameters(fn, **optional_objects) with none).
    assert tune.with_parameters(train_fn, **{}) is train_fn
    with pytest.raises(TypeError, match="function trainable or a tune.Trainable subclass"):
        tune.with_parameters(42, data=1)


def test_with_parameters_and_with_resources_compose_in_either_order():
    def train_fn(config, data=None):
        return {"n": len(data)}

    a = tune.with_resources(tune.with_parameters(train_fn, data=[1]), {"cpu": 2})
    b = tune.with_parameters(tune.with_resources(train_fn, {"cpu": 2}), data=[1])
    for wrapped in (a, b):
        assert wrapped({}) == {"n": 1}
        assert get_resources_request(wrapped) == {"cpu": 2}
        assert wrapped.__name__ == "train_fn"


# -- with_resources ---------------------------------------------------------------------------------

def _fn(config):
    return {"score": 1}


class _Cls(tune.Trainable):
    def step(self):
        return {"score": 1}


@pytest.mark.parametrize(
    "resources, expected",
    [
        ({"cpu": 2, "gpu": 1}, {"CPU": 2.0, "GPU": 1.0}),
        ({"cpu": 0.5, "memory": 1024}, {"CPU": 0.5, "memory": 1024.0}),
        (PlacementGroupFactory([{"CPU": 1, "GPU": 1}, {"GPU": 1}]), {"CPU": 1.0, "GPU": 2.0}),
        (ScalingConfig(num_workers=2, resources_per_worker={"CPU": 2}), {"CPU": 4.0}),
    ],
)
@pytest.mark.parametrize("trainable", [_fn, _Cls])
def test_with_resources_each_kind(trainable, resources, expected):
    wrapped = tune.with_resources(trainable, resources)
    assert wrapped.__name__ == trainable.__name__
    assert not hasattr(trainable, "_tunesmith_resources")
    request = get_resources_request(wrapped)
    assert request is resources
    assert to_pg_factory(request, {}).required_resources == expected
    if trainable is _Cls:
        assert wrapped.default_resource_request({}).required_resources == expected
        assert wrapped().train()["score"] == 1
    else:
        assert wrapped({}) == {"score": 1}


def test_with_resources_callable_of_the_config():
    wrapped = tune.with_resources(_fn, lambda spec: {"gpu": 1} if spec.config.use_gpu else {"gpu": 0})
    request = get_resources_request(wrapped)
    # As on Ray, asking for a GPU takes no CPU; asking for nothing takes one CPU.
    assert to_pg_factory(request, {"use_gpu": True}).required_resources == {"GPU": 1.0}
    assert to_pg_factory(request, {"use_gpu": False}).required_resources == {"CPU": 1.0}
    cls = tune.with_resources(_Cls, lambda config: {"cpu": config["n"]})
    assert cls.default_resource_request({"n": 3}).required_resources == {"CPU": 3.0}


def test_with_resources_invalid_input():
    with pytest.raises(TypeError, match="resources must be a dict"):
        tune.with_resources(_fn, 4)
    with pytest.raises(TypeError, match="resources must be a dict"):
        tune.with_resources(_fn, "cpu=2")
    with pytest.raises(ValueError, match="'cpu' must be a non-negative number"):
        tune.with_resources(_fn, {"cpu": -1})
    with pytest.raises(ValueError, match="'gpu' must be a non-negative number"):
        tune.with_resources(_fn, {"gpu": "one"})
    # NaN passed the check (it is not below 0), and fit() failed converting it to a thread count.
    with pytest.raises(ValueError, match="'cpu' must be a non-negative number, got nan"):
        tune.with_resources(_fn, {"cpu": float("nan")})
    with pytest.raises(ValueError, match="'CPU' must be a non-negative number, got nan"):
        tune.PlacementGroupFactory([{"CPU": float("nan")}])
    with pytest.raises(TypeError, match="must be a function or a tune.Trainable subclass"):
        tune.with_resources(dict, {"cpu": 1})


def test_default_resource_request_of_a_class_is_the_request():
    class Workers(tune.Trainable):
        @classmethod
        def default_resource_request(cls, config):
            return {"cpu": 1, "extra_cpu": config["workers"]}

    request = get_resources_request(Workers)
    pgf = to_pg_factory(request, {"workers": 3})
    assert pgf.required_resources == {"CPU": 4.0}
    assert get_resources_request(_Cls) is None
    assert get_resources_request(_fn) is None


# -- registry ---------------------------------------------------------------------------------------

def test_register_trainable_and_get_it_back():
    tune.register_trainable("utils_test_fn", _fn)
    tune.register_trainable("utils_test_cls", _Cls)
    assert get_trainable_cls("utils_test_fn") is _fn
    assert get_trainable_cls("utils_test_cls") is _Cls
    assert is_registered("utils_test_fn")
    with pytest.raises(ValueError, match="'nope'.*utils_test_cls.*utils_test_fn"):
        get_trainable_cls("nope")


def test_register_trainable_rejects_other_objects():
    with pytest.raises(TypeError, match="must subclass tunesmith.tune.Trainable"):
        tune.register_trainable("bad_cls", dict)
    with pytest.raises(TypeError, match="takes a function or a tune.Trainable subclass"):
        tune.register_trainable("bad_obj", 3)
    with pytest.raises(TypeError, match="non-empty string"):
        tune.register_trainable("", _fn)


def test_register_env():
    register_env("utils_test_env", lambda cfg: {"env": cfg})
    from tunesmith.tune.registry import ENV_CREATOR, get_env_creator

    assert is_registered("utils_test_env", ENV_CREATOR)
    assert get_env_creator("utils_test_env")({"a": 1}) == {"env": {"a": 1}}
    with pytest.raises(TypeError, match="callable"):
        register_env("bad_env", 3)


def test_trainable_names():
    import functools

    assert trainable_name(_fn) == "_fn"
    assert trainable_name(_Cls) == "_Cls"
    assert trainable_name("registered") == "registered"
    assert trainable_name(functools.partial(_fn)) == "_fn"
    assert trainable_name(lambda config: None) == "lambda"
    assert trainable_name(tune.with_parameters(_Cls_with_setup, data=1)) == "_Cls_with_setup"


class _Cls_with_setup(tune.Trainable):
    def setup(self, config, data=None):
        self.data = data


# -- validate_save_restore --------------------------------------------------------------------------

class GoodCounter(tune.Trainable):
    def setup(self, config):
        self.count = 0

    def step(self):
        self.count += 1
        return {"count": self.count}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.txt"), "w") as f:
            f.write(str(self.count))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "count.txt")) as f:
            self.count = int(f.read())


class ForgetfulCounter(GoodCounter):
    def save_checkpoint(self, checkpoint_dir):
        return {"count": self.count}

    def load_checkpoint(self, checkpoint):
        pass  # forgets to set self.count


class OldGoodCounter(tune.Trainable):
    def _setup(self, config):
        self.count = config.get("start", 0)

    def _train(self):
        self.count += 1
        return {"count": self.count}

    def _save(self, tmp_checkpoint_dir):
        return {"count": self.count}

    def _restore(self, checkpoint):
        self.count = checkpoint["count"]


def test_validate_save_restore_passes_for_correct_trainables():
    assert validate_save_restore(GoodCounter) is True
    assert validate_save_restore(GoodCounter, use_object_store=True) is True
    assert validate_save_restore(OldGoodCounter, config={"start": 5}) is True


class NoisyCounter(GoodCounter):
    """Restores correctly; its metric is noisy and its checkpoint holds the time it was written."""

    def step(self):
        import random

        result = super().step()
        return {**result, "noise": random.random()}

    def save_checkpoint(self, checkpoint_dir):
        super().save_checkpoint(checkpoint_dir)
        with open(os.path.join(checkpoint_dir, "saved_at.txt"), "w") as f:
            f.write(repr(time.time()))


def test_validate_save_restore_warns_of_a_trainable_that_may_forget_its_state():
    """As on Ray, only the iteration counts are required; state that does not come back is a warning, since a
    noisy metric with a checkpoint holding a time looks the same (that raised AssertionError)."""
    with pytest.warns(UserWarning, match="different checkpoint.*'count'"):
        assert validate_save_restore(ForgetfulCounter) is True
    with pytest.warns(UserWarning, match="'noise'"):
        assert validate_save_restore(NoisyCounter) is True


def test_validate_save_restore_rejects_non_trainables():
    with pytest.raises(TypeError, match="tune.Trainable subclass"):
        validate_save_restore(_fn)


def test_validate_save_restore_leaves_no_files(tmp_path):
    before = set(os.listdir(os.environ["TUNE_RESULT_DIR"])) if os.path.isdir(os.environ["TUNE_RESULT_DIR"]) else set()
    validate_save_restore(GoodCounter)
    after = set(os.listdir(os.environ["TUNE_RESULT_DIR"])) if os.path.isdir(os.environ["TUNE_RESULT_DIR"]) else set()
    assert after == before


# -- diagnose_serialization -------------------------------------------------------------------------

def test_diagnose_serialization_names_an_unpicklable_global(capsys):
    namespace = {"__name__": "user_script", "threading": threading}
    exec(
        "lock = threading.Lock()\n"
        "scale = 2\n"
        "def train_fn(config):\n"
        "    with lock:\n"
        "        return {'score': config['x'] * scale}\n",
        namespace,
    )
    assert diagnose_serialization(namespace["train_fn"]) == {"lock"}
    out = capsys.readouterr().out
    assert "Serialization failed" in out
    assert "'lock' (lock) ... FAILED" in out
    assert "'scale' (int) ... PASSED" in out


def test_diagnose_serialization_names_an_unpicklable_closure_variable(capsys):
    lock = threading.Lock()

    def train_fn(config):
        with lock:
            return {}

    assert diagnose_serialization(train_fn) == {"lock"}

    class Holder(tune.Trainable):
        def step(self):
            with lock:
                return {}

    assert diagnose_serialization(Holder) == {"lock"}


def test_diagnose_serialization_true_when_serialisable(capsys):
    def train_fn(config):
        return {"x": 1}

    assert diagnose_serialization(train_fn) is True
    assert "Serialization succeeded" in capsys.readouterr().out


# -- wait_for_gpu and dict helpers --------------------------------------------------------------------

def test_wait_for_gpu_without_an_assigned_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="no GPU is assigned"):
        wait_for_gpu()
    with pytest.raises(ValueError, match="between 0 and 1"):
        wait_for_gpu(0, target_util=2)


def test_wait_for_gpu_polls_until_memory_is_free(monkeypatch):
    from tunesmith.tune.utils import util

    readings = iter([0.9, 0.5, 0.0])
    monkeypatch.setattr(util, "_gpu_memory_utilization", lambda gpu_id: next(readings))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    assert wait_for_gpu(retry=5, delay_s=0) is True
    monkeypatch.setattr(util, "_gpu_memory_utilization", lambda gpu_id: 0.8)
    with pytest.raises(RuntimeError, match="GPU 1 still has 80.0% of its memory in use after 2 checks"):
        wait_for_gpu(retry=2, delay_s=0)


def test_flatten_and_unflatten():
    nested = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    flat = flatten_dict(nested)
    assert flat == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert unflatten_dict(flat) == nested
    assert flatten_dict({"a": [1, {"b": 2}]}, flatten_list=True) == {"a/0": 1, "a/1/b": 2}
    with pytest.raises(ValueError, match="delimiter"):
        flatten_dict({"a/b": {"c": 1}}, prevent_delimiter=True)


def test_utils_namespace():
    assert tune.utils.validate_save_restore is validate_save_restore
    assert tune.utils.diagnose_serialization is diagnose_serialization


def _appends(config, seen=None):
    seen.append(config["x"])
    tune.report({"seen": list(seen)})


def test_a_trial_that_changes_a_with_parameters_object_does_not_change_the_next_trials(tmp_path):
    """Trials in one reused worker got one shared object: the second saw the first's append (Ray: [0, x] each)."""
    grid = tune.Tuner(tune.with_parameters(_appends, seen=[0]), param_space={"x": tune.grid_search([1, 2, 3])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(r.metrics["seen"] for r in grid) == [[0, 1], [0, 2], [0, 3]]


def _looks_up_what_the_driver_registered(config):
    from tunesmith.tune.registry import get_env_creator

    env = get_env_creator("driver_env")({"size": 3})
    tune.report({"env": env["size"], "same_fn": get_trainable_cls("driver_fn").__name__})


def _registered_fn(config):
    pass


def test_names_the_driver_registered_are_found_inside_trials(tmp_path):
    """register_env/register_trainable reached only the driver's process: a trial that looked an
    environment up by name (as RLlib and users' helper modules do) failed with KeyError; on Ray the
    registry reaches every process."""
    import threading

    lock = threading.Lock()  # a creator that cannot be pickled stays behind, and breaks nothing
    register_env("driver_env", lambda env_config: {"size": env_config["size"]})
    register_env("driver_env_with_a_lock", lambda env_config, lock=lock: lock)
    tune.register_trainable("driver_fn", _registered_fn)
    (result,) = tune.Tuner(_looks_up_what_the_driver_registered,
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert result.error is None
    assert (result.metrics["env"], result.metrics["same_fn"]) == (3, "_registered_fn")
