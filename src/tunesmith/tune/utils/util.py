"""Debugging and helper utilities: ``validate_save_restore``, ``diagnose_serialization``,
``wait_for_gpu``, ``flatten_dict``, ``unflatten_dict``."""
from __future__ import annotations

import inspect
import os
import pickle
import shutil
import subprocess
import tempfile
import time
import warnings
from typing import Any, Callable

_SKIP_IN_COMPARISON = (".tune_metadata",)


# -- validate_save_restore ------------------------------------------------------------------------

def _checkpoint_fingerprint(path: str) -> dict[str, bytes]:
    """Relative path -> bytes of every file of a checkpoint directory, without tunesmith's metadata."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            if name in _SKIP_IN_COMPARISON:
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, path)] = f.read()
    return files


def _user_metrics(result: dict) -> dict:
    from tunesmith.tune.result import AUTO_RESULT_KEYS

    skip = set(AUTO_RESULT_KEYS) | {"experiment_id", "time_this_iter_s", "episodes_total"}
    return {k: v for k, v in result.items() if k not in skip}


def _equal(a: Any, b: Any) -> bool:
    try:
        same = a == b
        return bool(same) if not hasattr(same, "all") else bool(same.all())
    except Exception:
        try:
            return pickle.dumps(a) == pickle.dumps(b)
        except Exception:
            return False


def validate_save_restore(
    trainable_cls: type,
    config: dict | None = None,
    num_gpus: int = 0,
    use_object_store: bool = False,
) -> bool:
    """Checks that a class trainable saves and restores its state correctly.

    Trains one instance for three iterations, saves it, restores the
    checkpoint into a fresh instance and checks that the iteration count
    continues there. It also checks that the restored instance holds the saved
    state: saving it again must give the same checkpoint, or else its next
    result must match the original's.

    Args:
        trainable_cls: The ``tune.Trainable`` subclass to check.
        config: Config to build both instances with.
        num_gpus: Accepted for compatibility; instances run in this process.
        use_object_store: Use ``save_to_object``/``restore_from_object``
            instead of ``save``/``restore``.

    Returns:
        True when the checks pass.

    Raises:
        AssertionError: With a message saying which check failed.

    Example:
        >>> from tunesmith import tune
        >>> class Counter(tune.Trainable):
        ...     def setup(self, config):
        ...         self.n = 0
        ...     def step(self):
        ...         self.n += 1
        ...         return {"n": self.n}
        ...     def save_checkpoint(self, checkpoint_dir):
        ...         return {"n": self.n}
        ...     def load_checkpoint(self, checkpoint):
        ...         self.n = checkpoint["n"]
        >>> validate_save_restore(Counter)
        True
    """
    from tunesmith.tune.trainable.trainable import Trainable

    if not (inspect.isclass(trainable_cls) and issubclass(trainable_cls, Trainable)):
        raise TypeError(
            "validate_save_restore() takes a tune.Trainable subclass, "
            f"got {getattr(trainable_cls, '__name__', type(trainable_cls).__name__)}."
        )
    name = trainable_cls.__name__
    root = tempfile.mkdtemp(prefix="validate_save_restore_")
    counter = iter(range(10))

    def logger_creator(_config):
        path = os.path.join(root, f"instance_{next(counter)}")
        os.makedirs(path, exist_ok=True)
        return path

    first = trainable_cls(config=dict(config or {}), logger_creator=logger_creator)
    second = trainable_cls(config=dict(config or {}), logger_creator=logger_creator)
    try:
        result: dict = {}
        for _ in range(3):
            result = first.train()
        assert result.get("training_iteration") == 3, (
            f"{name}: training_iteration after three train() calls is "
            f"{result.get('training_iteration')!r}, expected 3."
        )
        saved_dir = os.path.join(root, "saved")
        if use_object_store:
            obj = first.save_to_object()
            second.restore_from_object(obj)
            saved_dir = first.save(saved_dir)
        else:
            saved_dir = first.save(saved_dir)
            second.restore(saved_dir)
        assert second.iteration == 3, (
            f"{name}: after restore the iteration is {second.iteration}, expected 3."
        )
        resaved = second.save(os.path.join(root, "resaved"))
        same_checkpoint = _checkpoint_fingerprint(saved_dir) == _checkpoint_fingerprint(resaved)
        expected = first.train()
        got = second.train()
        assert got["training_iteration"] == 4, (
            f"{name}: the first train() after restore reports training_iteration "
            f"{got['training_iteration']}, expected 4."
        )
        if not same_checkpoint:
            want, have = _user_metrics(expected), _user_metrics(got)
            differ = sorted(k for k in set(want) | set(have) if not _equal(want.get(k), have.get(k)))
            if differ:
                # A hint, not a failure (as on Ray, only the iteration counts are required): a noisy
                # metric and a checkpoint holding a time or a path look the same from here.
                warnings.warn(
                    f"{name}: saving the restored instance again gives a different checkpoint, and its next "
                    f"result differs from the original's in {differ} (original: "
                    f"{ {k: want.get(k) for k in differ} }, restored: { {k: have.get(k) for k in differ} }). If "
                    "the trainable is deterministic, check that load_checkpoint()/_restore() sets every "
                    "attribute that save_checkpoint()/_save() writes.",
                    stacklevel=2,
                )
        got = second.train()
        assert got["training_iteration"] == 5, (
            f"{name}: the second train() after restore reports training_iteration "
            f"{got['training_iteration']}, expected 5."
        )
        return True
    finally:
        for instance in (first, second):
            try:
                instance.stop()
            except Exception:
                pass
        shutil.rmtree(root, ignore_errors=True)


# -- diagnose_serialization -----------------------------------------------------------------------

def _closure_variables(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Globals and nonlocals referenced by a function, or by the methods of a class."""
    functions = []
    if inspect.isclass(obj):
        for klass in obj.__mro__:
            if klass is object or klass.__module__.startswith("tunesmith."):
                continue
            for value in vars(klass).values():
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if inspect.isfunction(value):
                    functions.append(value)
    else:
        target = obj
        while hasattr(target, "func") and not inspect.isfunction(target):  # functools.partial
            target = target.func
        target = inspect.unwrap(target) if inspect.isfunction(target) else getattr(target, "__call__", target)
        functions.append(getattr(target, "__func__", target))
    globals_: dict[str, Any] = {}
    nonlocals: dict[str, Any] = {}
    for fn in functions:
        try:
            found = inspect.getclosurevars(fn)
        except (TypeError, ValueError):
            continue
        globals_.update(found.globals)
        nonlocals.update({k: v for k, v in found.nonlocals.items() if k != "__class__"})
    return globals_, nonlocals


def _check_variables(variables: dict[str, Any], failures: set[str], out: Callable[[str], None]) -> None:
    import cloudpickle

    for name, value in variables.items():
        try:
            cloudpickle.dumps(value)
            out(f"    {name!r} ({type(value).__name__}) ... PASSED")
        except Exception as exc:
            failures.add(name)
            out(f"    {name!r} ({type(value).__name__}) ... FAILED")
            out(f"        {type(exc).__name__}: {exc}")


def diagnose_serialization(trainable: Callable | type) -> bool | set[str]:
    """Finds which variables keep a trainable from being serialised.

    Tune sends the trainable to worker processes with cloudpickle. When that
    fails, this function checks every global and closure variable the
    trainable refers to, prints which ones fail, and returns their names.

    Args:
        trainable: A function trainable or a ``tune.Trainable`` subclass.

    Returns:
        True if the trainable serialises; otherwise the set of names of the
        variables that do not (empty if none of them is to blame).

    Example:
        >>> import threading
        >>> lock = threading.Lock()
        >>> def train_fn(config):
        ...     with lock:
        ...         return {"score": 1}
        >>> diagnose_serialization(train_fn)  # doctest: +SKIP
        {'lock'}
    """
    import cloudpickle

    label = getattr(trainable, "__name__", repr(trainable))
    print(f"Trying to serialize {label} ...")
    try:
        cloudpickle.dumps(trainable)
        print("Serialization succeeded.")
        return True
    except Exception as exc:
        print(f"Serialization failed: {type(exc).__name__}: {exc}")

    print(f"Inspecting the global and closure variables {label} refers to ...")
    globals_, nonlocals = _closure_variables(trainable)
    failures: set[str] = set()
    if globals_:
        print(f"  {len(globals_)} global variable(s):")
        _check_variables(globals_, failures, print)
    if nonlocals:
        print(f"  {len(nonlocals)} closure variable(s):")
        _check_variables(nonlocals, failures, print)
    if failures:
        print(
            f"Variable(s) {sorted(failures)} cannot be serialised. Create them inside the trainable "
            "instead, or pass data with tune.with_parameters()."
        )
    else:
        print("None of the variables failed on its own, yet the trainable does not serialise; "
              "check the objects its default arguments and attributes refer to.")
    return failures


# -- wait_for_gpu ---------------------------------------------------------------------------------

def _gpu_memory_utilization(gpu_id: int | str) -> float:
    """Fraction of the memory of one GPU in use, from GPUtil or ``nvidia-smi``."""
    try:
        import GPUtil  # type: ignore[import-not-found]

        for gpu in GPUtil.getGPUs():
            if str(gpu.id) == str(gpu_id) or getattr(gpu, "uuid", None) == gpu_id:
                return float(gpu.memoryUtil)
        raise ValueError(f"wait_for_gpu(gpu_id={gpu_id!r}): no such GPU.")
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        raise RuntimeError("wait_for_gpu() needs the GPUtil package or the nvidia-smi command; neither was found.")
    out = subprocess.run(
        ["nvidia-smi", f"--id={gpu_id}", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()
    used, total = (float(x) for x in out[0].split(","))
    return used / total if total else 0.0


def wait_for_gpu(
    gpu_id: int | str | None = None,
    target_util: float = 0.01,
    retry: int = 20,
    delay_s: float = 5,
    gpu_memory_limit: float | None = None,
) -> bool:
    """Waits until the memory of a GPU is freed, e.g. by the trial that used it before.

    Args:
        gpu_id: GPU index or UUID; defaults to the first of ``CUDA_VISIBLE_DEVICES``.
        target_util: Memory utilisation (0 to 1) at or below which the GPU counts as free.
        retry: How many times to check.
        delay_s: Seconds between checks.
        gpu_memory_limit: Older name of ``target_util``.

    Returns:
        True once the GPU is free.

    Raises:
        RuntimeError: If the GPU is still busy after ``retry`` checks, or no GPU can be queried.

    Example:
        >>> def train_fn(config):  # doctest: +SKIP
        ...     tune.utils.wait_for_gpu()
        ...     train()
    """
    if gpu_memory_limit is not None:
        target_util = gpu_memory_limit
    if not 0 <= target_util <= 1:
        raise ValueError(f"wait_for_gpu(target_util={target_util!r}) must be between 0 and 1.")
    if gpu_id is None:
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if not visible:
            raise RuntimeError(
                "wait_for_gpu(): no GPU is assigned to this trial (CUDA_VISIBLE_DEVICES is empty); "
                "request one with tune.with_resources(trainable, {'gpu': 1}) or pass gpu_id."
            )
        gpu_id = visible[0].strip()
    util = None
    for attempt in range(max(1, retry)):
        util = _gpu_memory_utilization(gpu_id)
        if util <= target_util:
            return True
        if attempt + 1 < retry:
            time.sleep(delay_s)
    raise RuntimeError(
        f"GPU {gpu_id} still has {util:.1%} of its memory in use after {retry} checks "
        f"(target {target_util:.1%})."
    )


# -- dict helpers ---------------------------------------------------------------------------------

def flatten_dict(dt: dict, delimiter: str = "/", prevent_delimiter: bool = False,
                 flatten_list: bool = False) -> dict:
    """Flattens nested dicts into one level with joined keys.

    Example:
        >>> flatten_dict({"a": {"b": 1, "c": {"d": 2}}, "e": 3})
        {'a/b': 1, 'a/c/d': 2, 'e': 3}
    """
    def visit(value: Any, prefix: str, out: dict) -> None:
        items: Any
        if isinstance(value, dict):
            items = value.items()
        elif flatten_list and isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            out[prefix] = value
            return
        if not items and prefix:
            out[prefix] = value
            return
        for key, sub in items:
            key = str(key)
            if prevent_delimiter and delimiter in key:
                raise ValueError(f"Found delimiter {delimiter!r} in key {key!r} while flattening.")
            visit(sub, f"{prefix}{delimiter}{key}" if prefix else key, out)

    out: dict = {}
    for key, value in dt.items():
        if prevent_delimiter and delimiter in str(key):
            raise ValueError(f"Found delimiter {delimiter!r} in key {key!r} while flattening.")
        if isinstance(value, dict) or (flatten_list and isinstance(value, (list, tuple))):
            visit(value, str(key), out)
        else:
            out[key] = value
    return out


def unflatten_dict(dt: dict, delimiter: str = "/") -> dict:
    """Turns joined keys back into nested dicts.

    Example:
        >>> unflatten_dict({"a/b": 1, "a/c/d": 2, "e": 3})
        {'a': {'b': 1, 'c': {'d': 2}}, 'e': 3}
    """
    out: dict = {}
    for key, value in dt.items():
        if not isinstance(key, str) or delimiter not in key:
            out[key] = value
            continue
        parts = key.split(delimiter)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"unflatten_dict(): key {key!r} clashes with a value at {part!r}.")
        node[parts[-1]] = value
    return out
