"""The class API of a trainable: ``Trainable`` and ``DurableTrainable``.

A subclass implements ``setup``/``step``/``save_checkpoint``/``load_checkpoint``
(or the older ``_setup``/``_train``/``_save``/``_restore``). ``train()``,
``save()`` and ``restore()`` wrap them and keep the iteration and time counters
and the auto-filled result fields.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import time
import uuid
from datetime import datetime
from typing import Any, Callable

from tunesmith.tune.result import (
    CHECKPOINT_DIR_FORMAT,
    CONFIG,
    DATE,
    DONE,
    EPISODES_THIS_ITER,
    EPISODES_TOTAL,
    EXPERIMENT_ID,
    EXPERIMENT_TAG,
    HOSTNAME,
    ITERATIONS_SINCE_RESTORE,
    NODE_IP,
    PID,
    RESULT_DUPLICATE,
    TIME_SINCE_RESTORE,
    TIME_THIS_ITER_S,
    TIME_TOTAL_S,
    TIMESTAMP,
    TIMESTEPS_SINCE_RESTORE,
    TIMESTEPS_THIS_ITER,
    TIMESTEPS_TOTAL,
    TRAINING_ITERATION,
    TRIAL_ID,
)
from tunesmith.tune.trainable._trial_info import TrialInfo

# Counters and form of a checkpoint, written next to the user's files.
METADATA_FILE = ".tune_metadata"
# Same name as ``Checkpoint.from_dict`` uses, so ``Checkpoint.to_dict()`` reads dict checkpoints.
DICT_CHECKPOINT_FILE = "dict_checkpoint.pkl"

_hosted_trial_info: TrialInfo | None = None


@contextlib.contextmanager
def hosted_trial(info: TrialInfo | None):
    """Within it, a ``Trainable`` made without ``trial_info`` belongs to the trial ``info`` describes
    (the worker makes the instance this way, so that a subclass's own ``__init__`` need not pass
    anything beyond ``config``)."""
    global _hosted_trial_info
    _hosted_trial_info = info
    try:
        yield
    finally:
        _hosted_trial_info = None


def _take_hosted_trial_info() -> TrialInfo | None:
    """The hosted trial's information, once: for the hosted trainable, not for one it makes."""
    global _hosted_trial_info
    info, _hosted_trial_info = _hosted_trial_info, None
    return info


def _host_identity() -> tuple[str, str]:
    """Hostname and IP of this machine, looked up once per process."""
    from tunesmith._internal.host import host_identity

    return host_identity()


def _default_results_root() -> str:
    root = os.environ.get("TUNE_RESULT_DIR") or os.path.join("~", "tunesmith_results")
    return os.path.abspath(os.path.expanduser(root))


class Trainable:
    """Base class of a class trainable.

    Subclasses implement ``setup(config)``, ``step()`` returning a dict of
    metrics, and optionally ``save_checkpoint``/``load_checkpoint``,
    ``reset_config`` and ``cleanup``. The older names ``_setup``, ``_train``,
    ``_save``, ``_restore`` and ``_stop`` work as well.

    One call to :meth:`train` runs one logical iteration: it calls ``step()``
    and adds the auto-filled fields (``training_iteration``, ``time_total_s``,
    ``done``, ``date``, ...) to the returned dict.

    Args:
        config: Hyperparameters of this trial; a deep copy is passed to ``setup``.
        logger_creator: Optional callable ``config -> logger``; the logger's
            ``logdir`` (or the returned string) becomes :attr:`logdir`.
        storage: Unused placeholder kept for Ray compatibility.
        trial_info: Set when Tune hosts the trainable: the trial's id, name and directory.

    Example:
        >>> from tunesmith import tune
        >>> class MyTrainable(tune.Trainable):
        ...     def setup(self, config):
        ...         self.x = config.get("start", 0)
        ...     def step(self):
        ...         self.x += 1
        ...         return {"x": self.x}
        ...     def save_checkpoint(self, checkpoint_dir):
        ...         return {"x": self.x}
        ...     def load_checkpoint(self, checkpoint):
        ...         self.x = checkpoint["x"]
        >>> t = MyTrainable(config={"start": 10})
        >>> t.train()["x"], t.train()["training_iteration"]
        (11, 2)
        >>> path = t.save()
        >>> t.restore(path)
        >>> t.stop()
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        logger_creator: Callable[[dict], Any] | None = None,
        storage: Any = None,
        trial_info: TrialInfo | None = None,
    ):
        self.config = config if config is not None else {}
        if not isinstance(self.config, dict):
            raise TypeError(
                f"{type(self).__name__}(config=...) must be a dict of hyperparameters, "
                f"got {type(self.config).__name__}."
            )
        if trial_info is None:
            trial_info = _take_hosted_trial_info()
        self._storage = storage
        self._trial_info = trial_info
        self._hostname, self._node_ip = _host_identity()
        self._pid = os.getpid()
        self._experiment_id = (trial_info.experiment_id if trial_info and trial_info.experiment_id
                               else uuid.uuid4().hex)
        self._result_logger = None
        self._result_file = None
        self._logdir = self._make_logdir(logger_creator)
        self._reset_counters()
        self._stopped = False
        self.setup(copy.deepcopy(self.config))

    # -- construction helpers ---------------------------------------------------------------------
    def _make_logdir(self, logger_creator) -> str:
        if self._trial_info is not None and self._trial_info.trial_dir:
            logdir = self._trial_info.trial_dir
        elif logger_creator is not None:
            logger = logger_creator(self.config)
            if isinstance(logger, (str, os.PathLike)):
                logdir = os.fspath(logger)
            else:
                self._result_logger = logger
                logdir = getattr(logger, "logdir", None) or tempfile.mkdtemp(prefix=f"{type(self).__name__}_")
        else:
            root = _default_results_root()
            os.makedirs(root, exist_ok=True)
            prefix = f"{type(self).__name__}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
            logdir = tempfile.mkdtemp(prefix=prefix, dir=root)
            self._result_file = os.path.join(logdir, "result.json")
        os.makedirs(logdir, exist_ok=True)
        return os.path.abspath(logdir)

    def _reset_counters(self) -> None:
        self._iteration = 0
        self._time_total = 0.0
        self._timesteps_total: float | None = None
        self._episodes_total: float | None = None
        self._time_since_restore = 0.0
        self._timesteps_since_restore = 0
        self._iterations_since_restore = 0
        self._restored = False
        self._last_result: dict | None = None

    def _overrides(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(Trainable, name)

    # -- properties -------------------------------------------------------------------------------
    @property
    def iteration(self) -> int:
        """Number of completed ``train()`` calls, continued across ``restore``."""
        return self._iteration

    @property
    def training_iteration(self) -> int:
        """Same as :attr:`iteration`."""
        return self._iteration

    @property
    def logdir(self) -> str:
        """Directory of this trainable's results and checkpoints."""
        return self._logdir

    @property
    def trial_name(self) -> str:
        """Name of the trial, or ``"default"`` outside Tune."""
        return self._trial_info.trial_name if self._trial_info else "default"

    @property
    def trial_id(self) -> str:
        """Id of the trial, or ``"default"`` outside Tune."""
        return self._trial_info.trial_id if self._trial_info else "default"

    @property
    def trial_info(self) -> TrialInfo | None:
        """The trial this trainable runs in, or None outside Tune."""
        return self._trial_info

    @property
    def experiment_id(self) -> str:
        return self._experiment_id

    @property
    def trial_resources(self):
        """The trial's ``PlacementGroupFactory``, or None outside Tune."""
        return self._trial_info.resources if self._trial_info else None

    def get_config(self) -> dict[str, Any]:
        """Returns the config of this trainable."""
        return self.config

    # -- resources --------------------------------------------------------------------------------
    @classmethod
    def default_resource_request(cls, config: dict[str, Any]):
        """Resources a trial of this class needs for ``config``; None means the default (1 CPU).

        May return a :class:`tunesmith.tune.resources.Resources`, a dict such as
        ``{"cpu": 2, "gpu": 1}`` or a ``PlacementGroupFactory``.

        Example:
            >>> from tunesmith import tune
            >>> from tunesmith.tune.resources import Resources
            >>> class Distributed(tune.Trainable):
            ...     @classmethod
            ...     def default_resource_request(cls, config):
            ...         return Resources(cpu=1, gpu=0, extra_cpu=config["workers"])
            >>> Distributed.default_resource_request({"workers": 3}).cpu_total()
            4
        """
        return None

    @classmethod
    def resource_help(cls, config: dict[str, Any]) -> str:
        """A help string for configuring this trainable's resources.

        It is added to the error raised when a trial asks for more than the machine has.
        """
        return ""

    def update_resources(self, resources) -> None:
        """Called when the trial's resources change (e.g. by a resource-changing scheduler)."""

    def _update_resources(self, resources) -> None:
        if self._trial_info is not None:
            self._trial_info.resources = resources
        self.update_resources(resources)

    # -- training ---------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Runs one iteration of training and returns its result with the auto-filled fields."""
        start = time.time()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(
                f"{type(self).__name__}.step() must return a dict of metrics, got {type(result).__name__}."
            )
        if RESULT_DUPLICATE in result:
            return result  # the last result again, as the trainable ended: no counter moves (as on Ray)
        result = dict(result)
        self._iteration += 1
        self._iterations_since_restore += 1
        time_this_iter = result.get(TIME_THIS_ITER_S)
        if time_this_iter is None:
            time_this_iter = time.time() - start
        self._time_total += time_this_iter
        self._time_since_restore += time_this_iter

        result.setdefault(DONE, False)
        steps = result.get(TIMESTEPS_THIS_ITER)
        if steps is not None:
            self._timesteps_total = (self._timesteps_total or 0) + steps
            self._timesteps_since_restore += steps
        episodes = result.get(EPISODES_THIS_ITER)
        if episodes is not None:
            self._episodes_total = (self._episodes_total or 0) + episodes
        if self._timesteps_total is not None:
            result.setdefault(TIMESTEPS_TOTAL, self._timesteps_total)
        result[TIMESTEPS_SINCE_RESTORE] = self._timesteps_since_restore
        if self._episodes_total is not None:
            result.setdefault(EPISODES_TOTAL, self._episodes_total)
        result.setdefault(TRAINING_ITERATION, self._iteration)

        result.update(self.get_auto_filled_metrics(time_this_iter=time_this_iter, timestamp=result.get(TIMESTAMP)))
        self._last_result = result
        self.log_result(result)
        return result

    def get_auto_filled_metrics(self, now: datetime | None = None, time_this_iter: float | None = None,
                                timestamp: int | None = None, debug_metrics_only: bool = False) -> dict[str, Any]:
        """The fields ``train()`` adds to each result: ids, date and time stamps, times, process and host.

        With ``debug_metrics_only``, only those that need no finished iteration (ids, date, process, host, config).
        """
        now = now if now is not None else datetime.now()
        info = self._trial_info
        filled = {
            TRIAL_ID: info.trial_id if info else "default",
            EXPERIMENT_ID: self._experiment_id,
            EXPERIMENT_TAG: info.experiment_tag if info else "",
            DATE: now.strftime("%Y-%m-%d_%H-%M-%S"),
            TIMESTAMP: timestamp or int(now.timestamp()),
            TIME_THIS_ITER_S: time_this_iter,
            TIME_TOTAL_S: self._time_total,
            PID: self._pid,
            HOSTNAME: self._hostname,
            NODE_IP: self._node_ip,
            CONFIG: self.config,
            TIME_SINCE_RESTORE: self._time_since_restore,
            ITERATIONS_SINCE_RESTORE: self._iterations_since_restore,
        }
        if debug_metrics_only:
            filled = {k: v for k, v in filled.items()
                      if k in (TRIAL_ID, EXPERIMENT_ID, DATE, TIMESTAMP, PID, HOSTNAME, NODE_IP, CONFIG)}
        return filled

    def step(self) -> dict[str, Any]:
        """One logical iteration of training; returns a dict of metrics. Subclasses implement it."""
        if self._overrides("_train"):
            return self._train()
        raise NotImplementedError(f"{type(self).__name__} must implement step() (or the older _train()).")

    def _train(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement step() (or the older _train()).")

    def setup(self, config: dict[str, Any], *args, **kwargs) -> None:
        """Initialisation with the trial's config; subclasses may override it."""
        if self._overrides("_setup"):
            self._setup(config, *args, **kwargs)

    def _setup(self, config: dict[str, Any]) -> None:
        pass

    def cleanup(self) -> None:
        """Releases what ``setup`` acquired; called by :meth:`stop`."""
        if self._overrides("_stop"):
            self._stop()

    def _stop(self) -> None:
        pass

    def log_result(self, result: dict[str, Any]) -> None:
        """Logs a result in the trainable's process; override to customise."""
        if self._overrides("_log_result"):
            self._log_result(result)
            return
        if self._result_logger is not None and hasattr(self._result_logger, "on_result"):
            self._result_logger.on_result(result)
        elif self._result_file is not None:
            from tunesmith.tune.utils.serialization import to_jsonable

            with open(self._result_file, "a") as f:
                f.write(json.dumps(to_jsonable(result)) + "\n")

    def _log_result(self, result: dict[str, Any]) -> None:
        pass

    def stop(self) -> None:
        """Releases all resources used by this trainable (calls ``cleanup``)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.cleanup()
        finally:
            logger = self._result_logger
            if logger is not None and hasattr(logger, "close"):
                logger.close()

    # -- reuse ------------------------------------------------------------------------------------
    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Switches to ``new_config`` in place; return True on success. Not supported by default."""
        return False

    def reset(self, new_config: dict[str, Any], logger_creator=None, storage=None,
              trial_info: TrialInfo | None = None) -> bool:
        """Prepares this instance for a new trial; returns False if it must be rebuilt instead (it is then
        left as it was: its cleanup() runs for its own trial)."""
        before = (self.config, self._storage, self._trial_info, self._experiment_id, self._logdir)
        self.config = new_config
        if storage is not None:
            self._storage = storage
        if trial_info is not None:
            self._trial_info = trial_info
            if trial_info.experiment_id:
                self._experiment_id = trial_info.experiment_id
            if trial_info.trial_dir:
                os.makedirs(trial_info.trial_dir, exist_ok=True)
                self._logdir = os.path.abspath(trial_info.trial_dir)
        elif logger_creator is not None:
            self._logdir = self._make_logdir(logger_creator)
        accepted = False
        try:
            accepted = bool(self.reset_config(new_config))
        finally:  # said no, or raised: left as it was
            if not accepted:
                self.config, self._storage, self._trial_info, self._experiment_id, self._logdir = before
        if not accepted:
            return False
        self._reset_counters()
        return True

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint_dir: str) -> dict | str | None:
        """Writes the state into ``checkpoint_dir``; may instead return a dict to be stored for you."""
        if self._overrides("_save"):
            return self._save(checkpoint_dir)
        raise NotImplementedError(
            f"{type(self).__name__} does not implement save_checkpoint() (or the older _save()), "
            "so it cannot be checkpointed."
        )

    def _save(self, tmp_checkpoint_dir: str) -> dict | str | None:
        raise NotImplementedError(f"{type(self).__name__} does not implement save_checkpoint().")

    def load_checkpoint(self, checkpoint: dict | str) -> None:
        """Restores the state written by ``save_checkpoint`` (a directory, a path in it, or the dict)."""
        if self._overrides("_restore"):
            self._restore(checkpoint)
            return
        raise NotImplementedError(
            f"{type(self).__name__} does not implement load_checkpoint() (or the older _restore())."
        )

    def _restore(self, checkpoint: dict | str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement load_checkpoint().")

    def save(self, checkpoint_dir: str | None = None) -> str:
        """Saves the state into a checkpoint directory and returns its path.

        Args:
            checkpoint_dir: Directory to save into; defaults to
                ``<logdir>/checkpoint_<iteration>``.
        """
        if checkpoint_dir is None:
            checkpoint_dir = os.path.join(self._logdir, CHECKPOINT_DIR_FORMAT.format(self._iteration))
            if os.path.isdir(checkpoint_dir):
                shutil.rmtree(checkpoint_dir)
        checkpoint_dir = os.path.abspath(os.fspath(checkpoint_dir))
        os.makedirs(checkpoint_dir, exist_ok=True)
        value = self.save_checkpoint(checkpoint_dir)
        relative = None
        if value is None:
            form = "dir"
        elif isinstance(value, dict):
            form = "dict"
            import cloudpickle  # classes of the user's script are saved by value, as on Ray

            with open(os.path.join(checkpoint_dir, DICT_CHECKPOINT_FILE), "wb") as f:
                cloudpickle.dump(value, f)
        elif isinstance(value, (str, os.PathLike)):
            form = "path"
            path = os.path.abspath(os.fspath(value))
            if os.path.commonpath([path, checkpoint_dir]) == checkpoint_dir:
                relative = os.path.relpath(path, checkpoint_dir)
            else:  # the same place by another name (a link on the way, resolved on one side only)?
                real, real_dir = os.path.realpath(path), os.path.realpath(checkpoint_dir)
                if os.path.commonpath([real, real_dir]) != real_dir:
                    raise ValueError(
                        f"{type(self).__name__}.save_checkpoint() returned {path!r}, which is outside the "
                        f"checkpoint directory {checkpoint_dir!r}; return a path inside it, a dict, or None"
                    )
                relative = os.path.relpath(real, real_dir)
        else:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint() must return None, a dict or a path inside "
                f"the checkpoint directory, got {type(value).__name__}."
            )
        metadata = {  # counters a step() gave as numpy numbers are saved as plain ones
            "iteration": _plain_number(self._iteration),
            "time_total": _plain_number(self._time_total),
            "timesteps_total": _plain_number(self._timesteps_total),
            "episodes_total": _plain_number(self._episodes_total),
            "experiment_id": self._experiment_id,
            "saved_as": form,
            "relative_path": relative,
        }
        tmp = os.path.join(checkpoint_dir, f"{METADATA_FILE}.tmp")
        with open(tmp, "w") as f:
            json.dump(metadata, f)
        os.replace(tmp, os.path.join(checkpoint_dir, METADATA_FILE))
        return checkpoint_dir

    def restore(self, checkpoint_path) -> None:
        """Restores the state and counters from a checkpoint made by :meth:`save`.

        Args:
            checkpoint_path: The checkpoint directory, a path to a file inside it,
                or a ``Checkpoint``.
        """
        if isinstance(checkpoint_path, dict):
            self.load_checkpoint(checkpoint_path)
            self._after_restore(None)
            return
        if hasattr(checkpoint_path, "as_directory") and hasattr(checkpoint_path, "filesystem"):
            with checkpoint_path.as_directory() as local:
                self._restore_local(local)
            return
        self._restore_local(os.fspath(checkpoint_path))

    def _restore_local(self, path: str) -> None:
        path = os.path.abspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{type(self).__name__}.restore(): no checkpoint at {path!r}.")
        checkpoint_dir = _find_checkpoint_dir(path)
        if checkpoint_dir is None:
            # A directory or file not written by save(): hand it over as it is.
            dict_file = os.path.join(path, DICT_CHECKPOINT_FILE)
            if os.path.isdir(path) and os.path.isfile(dict_file):
                with open(dict_file, "rb") as f:
                    self.load_checkpoint(pickle.load(f))
            else:
                self.load_checkpoint(path)
            self._after_restore(None)
            return
        with open(os.path.join(checkpoint_dir, METADATA_FILE)) as f:
            metadata = json.load(f)
        form = metadata.get("saved_as")
        if form == "dict":
            with open(os.path.join(checkpoint_dir, DICT_CHECKPOINT_FILE), "rb") as f:
                value: Any = pickle.load(f)
        elif form == "path" and metadata.get("relative_path"):
            value = os.path.normpath(os.path.join(checkpoint_dir, metadata["relative_path"]))
        else:
            value = checkpoint_dir
        # The counters first: load_checkpoint() sees self.iteration of the checkpoint, as on Ray.
        self._after_restore(metadata)
        self.load_checkpoint(value)

    def _after_restore(self, metadata: dict | None) -> None:
        if metadata:
            self._iteration = int(metadata.get("iteration") or 0)
            self._time_total = float(metadata.get("time_total") or 0.0)
            self._timesteps_total = metadata.get("timesteps_total")
            self._episodes_total = metadata.get("episodes_total")
            if metadata.get("experiment_id") and not (self._trial_info and self._trial_info.experiment_id):
                self._experiment_id = metadata["experiment_id"]
        self._time_since_restore = 0.0
        self._timesteps_since_restore = 0
        self._iterations_since_restore = 0
        self._restored = True

    def save_to_object(self) -> bytes:
        """Saves a checkpoint and returns it as bytes (a tar archive of the checkpoint directory)."""
        tmp = tempfile.mkdtemp(prefix="save_to_object_", dir=self._logdir)
        try:
            checkpoint_dir = self.save(os.path.join(tmp, CHECKPOINT_DIR_FORMAT.format(self._iteration)))
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(checkpoint_dir, arcname=os.path.basename(checkpoint_dir))
            return buf.getvalue()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def restore_from_object(self, obj: bytes) -> None:
        """Restores from the bytes returned by :meth:`save_to_object`."""
        if not isinstance(obj, (bytes, bytearray)):
            raise TypeError(
                f"restore_from_object() takes the bytes returned by save_to_object(), got {type(obj).__name__}."
            )
        tmp = tempfile.mkdtemp(prefix="restore_from_object_", dir=self._logdir)
        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(obj)), mode="r") as tar:
                try:
                    tar.extractall(tmp, filter="data")
                except TypeError:  # Python without extraction filters
                    tar.extractall(tmp)
            names = os.listdir(tmp)
            if len(names) != 1:
                raise ValueError("restore_from_object() got bytes that do not hold one checkpoint directory.")
            self.restore(os.path.join(tmp, names[0]))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def delete_checkpoint(self, checkpoint_path: str) -> None:
        """Deletes the local copy of a checkpoint."""
        path = os.path.abspath(os.fspath(checkpoint_path))
        target = _find_checkpoint_dir(path) or path
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        elif os.path.exists(target):
            os.remove(target)

    # -- export -----------------------------------------------------------------------------------
    def export_model(self, export_formats: list[str] | str, export_dir: str | None = None) -> dict:
        """Exports the model in the given formats; subclasses implement ``_export_model``.

        Args:
            export_formats: A format or a list of formats.
            export_dir: Where to export; defaults to :attr:`logdir`.

        Returns:
            A dict from format to the exported model's path.
        """
        if isinstance(export_formats, str):
            export_formats = [export_formats]
        elif not isinstance(export_formats, (list, tuple)) or not all(isinstance(f, str) for f in export_formats):
            raise ValueError(
                f"export_model(export_formats={export_formats!r}) takes a format name or a list of format names."
            )
        export_dir = export_dir or self._logdir
        os.makedirs(export_dir, exist_ok=True)
        return self._export_model(list(export_formats), export_dir)

    def _export_model(self, export_formats: list[str], export_dir: str) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(trial_id={self.trial_id!r}, iteration={self._iteration})"


def _plain_number(value: Any) -> Any:
    """A numpy number as the Python number it holds (JSON takes only those); anything else as it is."""
    item = getattr(value, "item", None)
    return item() if item is not None and getattr(value, "shape", None) == () else value


def _find_checkpoint_dir(path: str) -> str | None:
    """The directory holding ``path`` (or ``path`` itself) that has checkpoint metadata."""
    current = path if os.path.isdir(path) else os.path.dirname(path)
    while True:
        if os.path.isfile(os.path.join(current, METADATA_FILE)):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class DurableTrainable(Trainable):
    """A ``Trainable`` that also copies every checkpoint to remote storage.

    Implement the same methods as for :class:`Trainable`. Each checkpoint made
    by :meth:`save` is uploaded to ``remote_checkpoint_dir`` (any URI that
    ``pyarrow.fs`` understands, or a local path); :meth:`restore` downloads it
    from there when the local copy is missing.

    Args:
        remote_checkpoint_dir: Upload directory, e.g. ``"s3://bucket/exp/trial"``.
            Without it the class behaves like ``Trainable``.
        *args, **kwargs: Passed to :class:`Trainable`.

    Example:
        >>> import tempfile
        >>> class MyDurable(DurableTrainable):
        ...     def step(self):
        ...         return {"x": 1}
        ...     def save_checkpoint(self, checkpoint_dir):
        ...         return {"x": 1}
        ...     def load_checkpoint(self, checkpoint):
        ...         pass
        >>> t = MyDurable(tempfile.mkdtemp(), config={})
        >>> _ = t.train()
        >>> path = t.save()
    """

    remote_checkpoint_dir: str | None = None

    def __init__(self, remote_checkpoint_dir: str | None = None, *args, **kwargs):
        if isinstance(remote_checkpoint_dir, dict) and "config" not in kwargs and not args:
            kwargs["config"], remote_checkpoint_dir = remote_checkpoint_dir, None
        if remote_checkpoint_dir is not None:
            self.remote_checkpoint_dir = os.fspath(remote_checkpoint_dir)
        self._remote = None
        super().__init__(*args, **kwargs)

    @property
    def storage_client(self):
        """``(pyarrow filesystem, base path)`` of the remote checkpoint directory, or None."""
        if self.remote_checkpoint_dir is None:
            return None
        if self._remote is None:
            import pyarrow.fs

            from tunesmith._internal.storage import resolve_storage

            fs, base = resolve_storage(self.remote_checkpoint_dir)
            self._remote = (fs if fs is not None else pyarrow.fs.LocalFileSystem(), base)
        return self._remote

    def _remote_path(self, local_checkpoint_dir: str) -> str:
        _, base = self.storage_client
        return f"{base.rstrip('/')}/{os.path.basename(os.path.normpath(local_checkpoint_dir))}"

    def save(self, checkpoint_dir: str | None = None) -> str:
        path = super().save(checkpoint_dir)
        if self.storage_client is not None:
            from tunesmith._internal.storage import upload_dir
            from tunesmith.train._checkpoint import _download_timeout

            fs, _ = self.storage_client
            upload_dir(path, fs, self._remote_path(path), timeout=_download_timeout())
        return path

    def restore(self, checkpoint_path) -> None:
        if isinstance(checkpoint_path, (str, os.PathLike)) and self.storage_client is not None:
            local = os.path.abspath(os.fspath(checkpoint_path))
            if not os.path.exists(local):
                self._download(local)
        super().restore(checkpoint_path)

    def _download(self, local: str) -> None:
        """Fetches a missing local checkpoint (directory or a file in it) from remote storage."""
        import pyarrow.fs

        fs, _ = self.storage_client
        # A path to a file inside a checkpoint directory: fetch its checkpoint directory.
        candidate = local
        for _ in range(4):
            remote = self._remote_path(candidate)
            if fs.get_file_info(remote).type == pyarrow.fs.FileType.Directory:
                from tunesmith._internal.storage import download_dir
                from tunesmith.train._checkpoint import _download_timeout

                download_dir(fs, remote, candidate, timeout=_download_timeout())
                return
            if candidate == os.path.dirname(candidate):
                break
            candidate = os.path.dirname(candidate)
        raise FileNotFoundError(
            f"Checkpoint {local!r} exists neither locally nor under {self.remote_checkpoint_dir!r}."
        )

    def delete_checkpoint(self, checkpoint_path: str) -> None:
        path = os.path.abspath(os.fspath(checkpoint_path))
        target = _find_checkpoint_dir(path) or path
        super().delete_checkpoint(checkpoint_path)
        if self.storage_client is not None:
            fs, _ = self.storage_client
            try:
                fs.delete_dir(self._remote_path(target))
            except (OSError, FileNotFoundError):
                pass
