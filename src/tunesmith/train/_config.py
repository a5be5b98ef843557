"""Run-level configuration: ``RunConfig``, ``CheckpointConfig``, ``FailureConfig``, ``SyncConfig``, ``ScalingConfig``.

Each class is reachable from ``tunesmith.tune`` and ``tunesmith.train`` as the same object.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class CheckpointConfig:
    """Which checkpoints are kept and when class trainables checkpoint.

    Args:
        num_to_keep: How many checkpoints to keep (None keeps all). The latest is always kept.
        checkpoint_score_attribute: Metric used to rank checkpoints; without it the most recent are kept.
        checkpoint_score_order: ``"max"`` or ``"min"``.
        checkpoint_frequency: Save every this many iterations (class trainables only).
        checkpoint_at_end: Save when the trial ends (class trainables only).

    Example:
        >>> from tunesmith import tune
        >>> cc = tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
        ...                            checkpoint_score_order="min")
        >>> tune.CheckpointConfig(num_to_keep=0)
        Traceback (most recent call last):
        ...
        ValueError: CheckpointConfig(num_to_keep=0) must be None or a positive integer.
    """

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self):
        from tunesmith.tune.tune_config import _plain_number

        self.num_to_keep = _plain_number(self.num_to_keep)
        self.checkpoint_frequency = _plain_number(self.checkpoint_frequency)
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int) or self.num_to_keep <= 0):
            raise ValueError(
                f"CheckpointConfig(num_to_keep={self.num_to_keep!r}) must be None or a positive integer."
            )
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(
                f"CheckpointConfig(checkpoint_score_order={self.checkpoint_score_order!r}) must be 'max' or 'min'."
            )
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ValueError(
                f"CheckpointConfig(checkpoint_frequency={self.checkpoint_frequency!r}) must be a non-negative integer."
            )


@dataclass
class FailureConfig:
    """What happens when a trial fails.

    Args:
        max_failures: Retries per trial from its latest checkpoint (-1: forever).
        fail_fast: Stop the whole experiment on the first error; ``"raise"`` re-raises it.

    Example:
        >>> from tunesmith import tune
        >>> fc = tune.FailureConfig(max_failures=3)
    """

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self):
        from tunesmith.tune.tune_config import _plain_number

        self.max_failures = _plain_number(self.max_failures)
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(
                f"FailureConfig(max_failures={self.max_failures!r}) must be an integer: 0 for no retries, "
                "N for N retries per trial, or -1 to retry forever."
            )
        if isinstance(self.fail_fast, str) and self.fail_fast.upper() == "RAISE":
            self.fail_fast = "raise"
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError(f"FailureConfig(fail_fast={self.fail_fast!r}) must be True, False or 'raise'.")
        if self.fail_fast and self.max_failures != 0:
            raise ValueError(
                f"FailureConfig(max_failures={self.max_failures}, fail_fast={self.fail_fast!r}): with fail_fast the "
                "first error ends the experiment, so no trial is retried; set max_failures=0 (as Ray requires)."
            )


@dataclass
class SyncConfig:
    """How the driver syncs experiment files to remote storage.

    Args:
        sync_period: Seconds between syncs of the experiment directory.
        sync_timeout: Seconds after which a sync is abandoned.
        sync_artifacts: Also sync files a trial writes into its working directory.
        sync_artifacts_on_checkpoint: Sync artifacts when a checkpoint is saved.

    Example:
        >>> from tunesmith import tune
        >>> sc = tune.SyncConfig(sync_period=60)
    """

    sync_period: int = 300
    sync_timeout: int = 1800
    sync_artifacts: bool = False
    sync_artifacts_on_checkpoint: bool = True
    upload_dir: str | None = None
    syncer: Any = None
    sync_on_checkpoint: bool = True

    def __post_init__(self):
        # upload_dir is the older spelling of RunConfig(storage_path=...) (RunConfig takes it over).
        if self.syncer not in (None, "auto"):
            warnings.warn(
                f"SyncConfig(syncer={self.syncer!r}) is not used: files go to the storage through pyarrow.fs. "
                "For a storage of your own, pass RunConfig(storage_filesystem=<pyarrow.fs.FileSystem>).",
                stacklevel=3,
            )


def _is_search_space(value: Any) -> bool:
    from tunesmith.tune.search.sample import Domain

    if isinstance(value, Domain):
        return True
    if isinstance(value, dict):
        return (len(value) == 1 and "grid_search" in value) or any(_is_search_space(v) for v in value.values())
    return False


def _holds_search_space(config: Any) -> bool:
    """Whether a config object's fields hold ``tune.grid_search``/``tune.choice``-style values."""
    import dataclasses

    return any(_is_search_space(getattr(config, f.name)) for f in dataclasses.fields(config))


def space_of_config_objects(param_space: Any) -> Any:
    """``param_space`` with a ``ScalingConfig`` under ``"scaling_config"`` turned into a dict of its
    fields, so that search spaces in them are resolved per trial (the trainer reads the dict back)."""
    import dataclasses

    if not isinstance(param_space, dict) or not isinstance(param_space.get("scaling_config"), ScalingConfig):
        return param_space
    scaling = param_space["scaling_config"]
    return {**param_space, "scaling_config": {f.name: getattr(scaling, f.name) for f in dataclasses.fields(scaling)}}


@dataclass
class ScalingConfig:
    """How many training workers a trainer starts and with what resources.

    The group is placed as one unit: a trial starts when the sum of the
    trainer's and all workers' resources is free, never with part of its workers.

    Args:
        num_workers: Number of training workers.
        use_gpu: Give each worker one GPU (through ``CUDA_VISIBLE_DEVICES``).
        resources_per_worker: Resources of each worker, e.g. ``{"CPU": 2}``
            (default one CPU; with ``use_gpu``, one GPU). A dict given here is
            all a worker asks for (no CPU is added), plus one GPU with ``use_gpu``.
        trainer_resources: Resources of the process that supervises the
            workers (default none: it only waits on them).
        placement_strategy: ``"PACK"``, ``"SPREAD"``, ``"STRICT_PACK"`` or
            ``"STRICT_SPREAD"``; on one machine every strategy but
            ``STRICT_SPREAD`` places the whole group here.

    Example:
        >>> from tunesmith import train
        >>> train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 2}).as_placement_group_factory()
        PlacementGroupFactory([{}, {'CPU': 2.0}, {'CPU': 2.0}], strategy='PACK')
        >>> train.ScalingConfig(num_workers=2, use_gpu=True).total_resources
        {'GPU': 2.0}
        >>> train.ScalingConfig(num_workers=3, resources_per_worker={"custom": 1}).total_resources
        {'custom': 3.0}
        >>> train.ScalingConfig(num_workers=0)
        Traceback (most recent call last):
        ...
        ValueError: ScalingConfig(num_workers=0) must be a positive integer.
    """

    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    trainer_resources: dict[str, float] | None = None
    placement_strategy: str = "PACK"

    def __post_init__(self):
        if _holds_search_space(self):
            # A ScalingConfig in a Tuner's param_space, to be tuned: each trial's resolved
            # values make a ScalingConfig of their own, which is checked then.
            return
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"ScalingConfig(num_workers={self.num_workers!r}) must be a positive integer.")
        if not isinstance(self.use_gpu, bool):
            raise ValueError(f"ScalingConfig(use_gpu={self.use_gpu!r}) must be True or False.")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ValueError(
                f"ScalingConfig(placement_strategy={self.placement_strategy!r}) must be one of "
                "'PACK', 'SPREAD', 'STRICT_PACK', 'STRICT_SPREAD'."
            )
        for field_name in ("resources_per_worker", "trainer_resources"):
            value = getattr(self, field_name)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ValueError(f"ScalingConfig({field_name}={value!r}) must be a dict such as {{'CPU': 1}}.")
            for key, amount in value.items():
                if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                    raise ValueError(
                        f"ScalingConfig({field_name}={value!r}): {key!r} must be a non-negative number."
                    )
        gpus = _canonical_resources(self.resources_per_worker or {}).get("GPU")
        if gpus and not self.use_gpu:
            raise ValueError(
                f"ScalingConfig(resources_per_worker={self.resources_per_worker!r}) asks for GPUs but "
                "use_gpu is False. Set use_gpu=True, or remove 'GPU' from resources_per_worker."
            )
        if self.use_gpu and gpus == 0:
            raise ValueError(
                "ScalingConfig(use_gpu=True) with resources_per_worker={'GPU': 0} gives the workers no GPU. "
                "Set use_gpu=False, or give each worker a GPU amount above 0."
            )
        from tunesmith._internal.backend._address import cluster_address

        if self.placement_strategy == "STRICT_SPREAD" and self.num_workers > 1 and cluster_address() is None:
            raise ValueError(
                f"ScalingConfig(placement_strategy='STRICT_SPREAD') puts each of the {self.num_workers} "
                "workers on its own node, which one machine can never do. Use 'PACK' or 'SPREAD', or run on a "
                "Ray cluster (tunesmith.init(address=...))."
            )

    @property
    def _resources_per_worker_not_none(self) -> dict[str, float]:
        # As Ray: one CPU by default, or one GPU (and no CPU) with use_gpu; what the user gave
        # otherwise, without zero amounts and with no implied CPU.
        if self.resources_per_worker is None:
            res = {"GPU": 1.0} if self.use_gpu else {"CPU": 1.0}
        else:
            res = {k: v for k, v in _canonical_resources(self.resources_per_worker).items() if v != 0}
        if self.use_gpu:
            res.setdefault("GPU", 1.0)
        return res

    @property
    def _trainer_resources_not_none(self) -> dict[str, float]:
        return _canonical_resources(self.trainer_resources or {"CPU": 0})

    @property
    def num_cpus_per_worker(self) -> float:
        """CPUs of each worker."""
        return self._resources_per_worker_not_none.get("CPU", 0)

    @property
    def num_gpus_per_worker(self) -> float:
        """GPUs of each worker."""
        return self._resources_per_worker_not_none.get("GPU", 0)

    @property
    def total_resources(self) -> dict[str, float]:
        """What the whole group holds: the trainer's resources plus every worker's."""
        return self.as_placement_group_factory().required_resources

    def as_placement_group_factory(self):
        from tunesmith.tune.execution.placement_groups import PlacementGroupFactory

        return PlacementGroupFactory(
            [self._trainer_resources_not_none] + [self._resources_per_worker_not_none] * self.num_workers,
            strategy=self.placement_strategy,
        )


def _canonical_resources(resources: dict) -> dict[str, float]:
    return {("CPU" if k == "cpu" else "GPU" if k == "gpu" else k): v for k, v in resources.items()}


@dataclass
class RunConfig:
    """Run-level settings of an experiment.

    Args:
        name: Experiment name; defaults to ``<trainable>_<date>``.
        storage_path: Where results go: a local directory or a URI (``s3://...``).
            Defaults to ``~/tunesmith_results`` (``TUNE_RESULT_DIR`` overrides it).
        storage_filesystem: A ``pyarrow.fs.FileSystem`` for ``storage_path``.
        callbacks: ``tune.Callback`` objects.
        stop: A dict of thresholds, a function ``(trial_id, result) -> bool`` or a ``Stopper``.
        failure_config: A ``FailureConfig``.
        checkpoint_config: A ``CheckpointConfig``.
        sync_config: A ``SyncConfig``.
        progress_reporter: A ``ProgressReporter`` for the console.
        verbose: 0 silent, 1 status table, 2 plus brief results, 3 plus detailed results.
        log_to_file: True to capture each trial's stdout/stderr into its directory;
            a file name for both; or a ``(stdout, stderr)`` pair.

    Example:
        >>> from tunesmith import tune
        >>> rc = tune.RunConfig(name="mnist_lr", stop={"training_iteration": 20}, verbose=1,
        ...                     checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
    """

    name: str | None = None
    storage_path: str | None = None
    storage_filesystem: Any = None
    callbacks: list | None = None
    stop: dict | Callable | Any | None = None
    failure_config: FailureConfig | None = None
    checkpoint_config: CheckpointConfig | None = None
    sync_config: SyncConfig | None = None
    progress_reporter: Any = None
    verbose: int | None = None
    log_to_file: bool | str | tuple = False
    local_dir: str | None = None

    def __post_init__(self):
        if self.storage_path is not None:
            self.storage_path = os.fspath(self.storage_path)
        upload_dir = getattr(self.sync_config, "upload_dir", None)
        if upload_dir:
            # The older form: results go to SyncConfig(upload_dir=...), local_dir was only a local copy.
            upload_dir = os.fspath(upload_dir)
            if self.storage_path is not None and self.storage_path != upload_dir:
                raise ValueError(
                    f"RunConfig(storage_path={self.storage_path!r}) and SyncConfig(upload_dir={upload_dir!r}) "
                    "name two places for the results; pass only storage_path (upload_dir is its older name)."
                )
            self.storage_path = upload_dir
        if self.local_dir is not None and self.storage_path is None:
            self.storage_path = os.fspath(self.local_dir)
        for name, kind in (("failure_config", FailureConfig), ("checkpoint_config", CheckpointConfig),
                           ("sync_config", SyncConfig)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"RunConfig({name}=...) must be a tune.{kind.__name__}, got {type(value).__name__}.")
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.sync_config is None:
            self.sync_config = SyncConfig()
        if isinstance(self.verbose, bool):
            self.verbose = int(self.verbose)  # as Ray's Verbosity(int(verbose)): True is 1
        if self.verbose is not None and self.verbose not in (0, 1, 2, 3):
            raise ValueError(f"RunConfig(verbose={self.verbose!r}) must be 0, 1, 2 or 3.")


class DataConfig:
    """How a trainer hands its ``datasets`` to the workers (``dataset_config=`` of a trainer).

    Args:
        datasets_to_split: ``"all"`` (the default) splits every dataset among the workers, each
            getting an equal share; a list of names splits only those, and every worker gets
            the others whole (a validation set each worker evaluates on, say).
        execution_options: Ray Data's execution options; tunesmith's datasets are the data
            themselves, so there is nothing to execute (kept so Ray Train scripts run).
        enable_shard_locality: Ray Data's locality hint; no effect here (kept so scripts run).

    Example:
        >>> from tunesmith import train
        >>> config = train.DataConfig(datasets_to_split=["train"])
        >>> config.splits("train"), config.splits("val")
        (True, False)
    """

    def __init__(self, datasets_to_split: str | list[str] = "all", execution_options: Any = None,
                 enable_shard_locality: bool = True):
        if datasets_to_split != "all":
            if isinstance(datasets_to_split, str) or not isinstance(datasets_to_split, (list, tuple)) or \
                    not all(isinstance(n, str) for n in datasets_to_split):
                raise TypeError(
                    f"DataConfig(datasets_to_split={datasets_to_split!r}) must be 'all' or a list of dataset names."
                )
            datasets_to_split = list(datasets_to_split)
        self.datasets_to_split = datasets_to_split
        self.execution_options = execution_options
        self.enable_shard_locality = enable_shard_locality

    def splits(self, name: str) -> bool:
        """Whether the dataset ``name`` is split among the workers (else each gets it whole)."""
        return self.datasets_to_split == "all" or name in self.datasets_to_split

    def __repr__(self) -> str:
        return f"DataConfig(datasets_to_split={self.datasets_to_split!r})"
