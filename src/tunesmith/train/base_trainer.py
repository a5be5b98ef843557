"""``BaseTrainer``: what every trainer shares — ``fit()``, and running as a Tune trainable."""
from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

from tunesmith.train._config import RunConfig, ScalingConfig
from tunesmith.train._result import Result, TrainingFailedError  # noqa: F401  (Ray's import path too)


TRAINER_FILE = "trainer.pkl"


class BaseTrainer:
    """A training run that ``fit()`` runs as one Tune trial, or that a ``Tuner`` tunes.

    Subclasses say what one trial does; this class turns them into a Tune
    trainable (:meth:`as_trainable`) and runs it (:meth:`fit`).

    Args:
        scaling_config: How many workers, with what resources.
        run_config: Name, storage, checkpoint and failure settings of the run.
        datasets: Datasets by name, split among the workers.
        metadata: A dict available as ``train.get_context().get_metadata()``
            and stored with every checkpoint.
        resume_from_checkpoint: A checkpoint the run starts from (``train.get_checkpoint()``).

    A run that was interrupted (the driver died, or the training failed for good) continues with
    ``Trainer.restore(experiment_dir)``; ``Trainer.can_restore(experiment_dir)`` says whether there is one.
    """

    _restore_path: str | None = None
    _restore_storage_filesystem: Any = None

    def __new__(cls, *args: Any, **kwargs: Any):
        trainer = super().__new__(cls)
        # The arguments as given, so that restore() can build the trainer again.
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
            params = dict(bound.arguments)
            params.pop(next(iter(params)))  # self
            for name, param in inspect.signature(cls.__init__).parameters.items():
                if param.kind is inspect.Parameter.VAR_KEYWORD and name in params:
                    params.update(params.pop(name))
        except TypeError:
            params = dict(kwargs)  # __init__ raises the error itself
        trainer._param_dict = params
        return trainer

    def __init__(
        self,
        *,
        scaling_config: ScalingConfig | None = None,
        run_config: RunConfig | None = None,
        datasets: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        resume_from_checkpoint: Any = None,
    ):
        from tunesmith.train._checkpoint import Checkpoint

        name = type(self).__name__
        if scaling_config is None:
            scaling_config = ScalingConfig()
        if not isinstance(scaling_config, ScalingConfig):
            raise TypeError(
                f"{name}(scaling_config=...) must be a tunesmith.train.ScalingConfig, "
                f"got {type(scaling_config).__name__}."
            )
        from tunesmith.train._config import _holds_search_space

        if _holds_search_space(scaling_config):
            raise ValueError(
                f"{name}(scaling_config={scaling_config!r}) holds a search space. To tune it, pass it in the "
                "Tuner's param_space instead: Tuner(trainer, param_space={'scaling_config': ScalingConfig(...)})."
            )
        if run_config is None:
            run_config = RunConfig()
        if not isinstance(run_config, RunConfig):
            raise TypeError(f"{name}(run_config=...) must be a tunesmith.train.RunConfig, got {type(run_config).__name__}.")
        if datasets is not None and not isinstance(datasets, dict):
            raise TypeError(
                f"{name}(datasets=...) must be a dict of datasets by name, e.g. {{'train': data}}; "
                f"got {type(datasets).__name__}."
            )
        from tunesmith.train._internal.dataset import check_datasets

        check_datasets(datasets, f"{name}(datasets=...)")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise TypeError(f"{name}(metadata=...) must be a dict, got {type(metadata).__name__}.")
            import json

            try:
                json.dumps(metadata)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}(metadata=...) must be JSON serialisable: {exc}.") from exc
        if resume_from_checkpoint is not None and not isinstance(resume_from_checkpoint, Checkpoint):
            import os

            if not isinstance(resume_from_checkpoint, (str, os.PathLike)):
                raise TypeError(
                    f"{name}(resume_from_checkpoint=...) must be a tunesmith.train.Checkpoint, "
                    f"got {type(resume_from_checkpoint).__name__}."
                )
            resume_from_checkpoint = Checkpoint(resume_from_checkpoint)
        self.scaling_config = scaling_config
        self.run_config = run_config
        self.datasets = datasets
        self.metadata = metadata
        self.resume_from_checkpoint = resume_from_checkpoint
        self.train_loop_config: dict | None = None

    # -- running ------------------------------------------------------------------------
    def fit(self) -> Result:
        """Runs the training and returns its :class:`~tunesmith.train.Result`.

        Raises:
            ValueError: If the ``ScalingConfig`` asks for more than this machine (or the cluster) has.
            TrainingFailedError: If training failed (after the retries of
                ``RunConfig(failure_config=...)``); ``WorkerGroupError`` names the workers.
        """
        from tunesmith.tune.tune_config import TuneConfig
        from tunesmith.tune.tuner import Tuner

        self._check_resources(self.scaling_config)
        if self._restore_path is not None:
            tuner = Tuner.restore(self._restore_path, trainable=self, param_space=self._param_space_default(),
                                  resume_unfinished=True, resume_errored=True,
                                  storage_filesystem=self._restore_storage_filesystem)
        else:
            tuner = Tuner(
                self,
                param_space=self._param_space_default(),
                tune_config=TuneConfig(max_concurrent_trials=1),
                run_config=self.run_config,
            )
        self._save(tuner)
        result = tuner.fit()[0]
        if result.error is not None:
            raise result.error
        return result

    # -- restoring -------------------------------------------------------------------------
    def _save(self, tuner) -> None:
        """Writes the trainer's class and arguments next to the run, for :meth:`restore`.

        Datasets are not kept (only their names): ``restore`` takes them again.
        """
        from tunesmith._internal.pickling import dumps
        from tunesmith._internal.storage import write_bytes_atomic
        from tunesmith.tune._run import experiment_storage

        params = dict(self._param_dict)
        if params.get("datasets"):
            params["datasets"] = dict.fromkeys(params["datasets"])
        try:
            payload = dumps((type(self), params))
        except Exception as exc:
            warnings.warn(f"{type(self).__name__}: its arguments cannot be serialised ({exc}), so this run "
                          f"cannot be continued with {type(self).__name__}.restore(); Tuner.restore() can.",
                          stacklevel=3)
            return
        inner = tuner._local_tuner
        storage = experiment_storage(inner._input, inner._trainable_name)
        storage.make_dirs()
        write_bytes_atomic(os.path.join(storage.experiment_local_path, TRAINER_FILE), payload)
        storage.upload_now(TRAINER_FILE, timeout=0.0)

    @classmethod
    def can_restore(cls, path: str | os.PathLike, storage_filesystem=None) -> bool:
        """Whether ``path`` is the experiment directory of a trainer's ``fit()`` that :meth:`restore` continues."""
        from tunesmith._internal.storage import resolve_storage

        fs, fs_path = resolve_storage(os.fspath(path), storage_filesystem)
        if fs is None:
            return os.path.isfile(os.path.join(fs_path, TRAINER_FILE))
        import pyarrow.fs

        return fs.get_file_info(f"{fs_path}/{TRAINER_FILE}").type == pyarrow.fs.FileType.File

    @classmethod
    def restore(cls, path: str | os.PathLike, storage_filesystem=None, datasets: dict | None = None,
                scaling_config: ScalingConfig | None = None, **kwargs: Any) -> "BaseTrainer":
        """A trainer that continues the interrupted run in ``path`` when its ``fit()`` is called.

        The run goes on from its latest checkpoint; a run that had finished returns its result.

        Args:
            path: The run's experiment directory (``<storage_path>/<name>``), local or a URI.
            storage_filesystem: The ``pyarrow.fs`` filesystem of ``path``.
            datasets: The datasets of the original trainer, again (they are not saved).
            scaling_config: A new scaling config (optional).
            **kwargs: Other arguments of the trainer given again (e.g. a training function or
                config that holds objects which do not outlive a session).

        Raises:
            ValueError: ``path`` holds no trainer run, or the datasets are not the original ones.
        """
        import cloudpickle  # noqa: F401  (rebuilds what was pickled by value)
        import pickle

        from tunesmith._internal.storage import resolve_storage

        path = os.fspath(path)
        if not cls.can_restore(path, storage_filesystem):
            raise ValueError(
                f"No trainer run to restore at {path!r}: it has no {TRAINER_FILE}. Pass the experiment directory "
                "(<storage_path>/<name>) that a trainer's fit() wrote."
            )
        fs, fs_path = resolve_storage(path, storage_filesystem)
        if fs is None:
            with open(os.path.join(fs_path, TRAINER_FILE), "rb") as f:
                trainer_cls, params = pickle.load(f)
        else:
            with fs.open_input_stream(f"{fs_path}/{TRAINER_FILE}") as f:
                trainer_cls, params = pickle.loads(f.read())
        if trainer_cls is not cls and not issubclass(cls, trainer_cls):
            warnings.warn(f"The run at {path} was made by {trainer_cls.__name__}; restoring it with "
                          f"{cls.__name__}.restore() will probably fail. Use {trainer_cls.__name__}.restore().",
                          stacklevel=2)
        original = sorted(params.pop("datasets", None) or {})
        given = sorted(datasets or {})
        if original != given:
            raise ValueError(
                f"{cls.__name__}.restore(): the run was given the datasets {original}; pass them again with "
                f"datasets={{...}} (got {given or 'none'})."
            )
        if datasets:
            params["datasets"] = datasets
        if scaling_config is not None:
            params["scaling_config"] = scaling_config
        params.update({k: v for k, v in kwargs.items() if v is not None})
        try:
            trainer = cls(**params)
        except Exception as exc:
            raise ValueError(f"{cls.__name__}.restore(): the trainer could not be built again from the run at "
                             f"{path}: {exc}") from exc
        trainer._restore_path = path
        trainer._restore_storage_filesystem = storage_filesystem
        return trainer

    def as_trainable(self):
        """The Tune trainable that runs this trainer: a function named after the trainer's class."""
        from tunesmith.train._internal.supervisor import TrainerTrainable

        return TrainerTrainable(self)

    def _param_space_default(self) -> dict:
        return {"train_loop_config": dict(self.train_loop_config)} if self.train_loop_config else {}

    @staticmethod
    def _check_resources(scaling: ScalingConfig) -> None:
        """Raises before anything starts when this machine can never give the group its resources (on a
        Ray cluster, warns: nodes that have them may join)."""
        from tunesmith._internal.backend._address import cluster_address

        if cluster_address() is not None:
            from tunesmith._core import cluster_resources

            total, place = cluster_resources(), "the Ray cluster"
            more = "add nodes that have them to the cluster"
        else:
            from tunesmith._internal.resources import detect_resources

            total, _ = detect_resources()
            place, more = "this machine", "declare more with tunesmith.init(num_cpus=..., resources=...)"
        need = scaling.total_resources
        short = {k: v for k, v in need.items() if v > 0 and v > total.get(k, 0.0) + 1e-9}
        if not short:
            return
        have = {k: total.get(k, 0.0) for k in need}
        if "GPU" in short and scaling.use_gpu:
            gpus_hint = "declare GPUs with tunesmith.init(num_gpus=...)" if place == "this machine" else more
            fix = f"{place} has {have.get('GPU', 0):g} GPUs. Use fewer workers, set use_gpu=False, or {gpus_hint}."
        else:
            fix = f"{place} has {have}. Lower num_workers or resources_per_worker, or {more}."
        message = (
            f"ScalingConfig(num_workers={scaling.num_workers}, use_gpu={scaling.use_gpu}, "
            f"resources_per_worker={scaling.resources_per_worker}) needs {need} for the whole group, "
            f"but {fix}"
        )
        if place != "this machine":
            # As on Ray: nodes that have it may still join (an autoscaler adds them); the run waits.
            warnings.warn(message + " The run waits for such nodes.", stacklevel=3)
            return
        raise ValueError(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scaling_config={self.scaling_config!r}, run_config={self.run_config!r})"
