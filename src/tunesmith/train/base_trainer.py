"""``BaseTrainer``: what every trainer shares — ``fit()``, and running as a Tune trainable."""
from __future__ import annotations

from typing import Any

from tunesmith.train._config import RunConfig, ScalingConfig
from tunesmith.train._result import Result, TrainingFailedError  # noqa: F401  (Ray's import path too)


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
    """

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
        tuner = Tuner(
            self,
            param_space=self._param_space_default(),
            tune_config=TuneConfig(max_concurrent_trials=1),
            run_config=self.run_config,
        )
        result = tuner.fit()[0]
        if result.error is not None:
            raise result.error
        return result

    def as_trainable(self):
        """The Tune trainable that runs this trainer: a function named after the trainer's class."""
        from tunesmith.train._internal.supervisor import TrainerTrainable

        return TrainerTrainable(self)

    def _param_space_default(self) -> dict:
        return {"train_loop_config": dict(self.train_loop_config)} if self.train_loop_config else {}

    @staticmethod
    def _check_resources(scaling: ScalingConfig) -> None:
        """Raises before anything starts when this machine (or the Ray cluster trials run on) can never
        give the group its resources."""
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
        raise ValueError(
            f"ScalingConfig(num_workers={scaling.num_workers}, use_gpu={scaling.use_gpu}, "
            f"resources_per_worker={scaling.resources_per_worker}) needs {need} for the whole group, "
            f"but {fix}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scaling_config={self.scaling_config!r}, run_config={self.run_config!r})"
