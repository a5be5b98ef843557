"""What a :class:`~tunesmith.tune.execution.tune_controller.TuneController` is built from."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


def env_float(name: str, default: float) -> float:
    """``float(os.environ[name])``, or ``default`` when it is unset, empty or ``auto``."""
    value = os.environ.get(name)
    if value in (None, "", "auto"):
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number; set it to a number or unset it.") from None


@dataclass
class ControllerConfig:
    """Everything one experiment's controller needs, assembled by ``tune._run`` from the Tuner's input.

    Args:
        trainable: The function or ``Trainable`` class (already validated).
        trainable_name: Its name, used for trial names.
        trainable_payload: The cloudpickled trainable, shipped once to each worker.
        search_alg: A ``SearchAlgorithm`` with the param space added.
        scheduler: A ``TrialScheduler``.
        storage: The experiment's ``StorageContext``.
        executor: The :class:`~tunesmith._internal.backend.base.ExecutorBackend` that runs trials.
        trainable_key: Identifies the trainable on workers (a fresh one when None).
        stopper: A ``Stopper`` or None.
        callbacks: Callbacks, loggers included.
        reporter: A progress reporter or None.
        metric: ``TuneConfig.metric``.
        mode: ``TuneConfig.mode``.
        resources_request: Resources per trial: a dict, a ``PlacementGroupFactory`` or a
            function of the config.
        max_concurrent_trials: At most this many trials run at once (0/None: no limit).
        time_budget_s: The experiment stops after this many seconds.
        time_budget_spent_s: Seconds of ``time_budget_s`` a restored run had used.
        reuse_actors: Keep workers for later trials (None: the default, which reuses).
        failure_config: ``FailureConfig`` (max_failures, fail_fast).
        checkpoint_config: ``CheckpointConfig``.
        trial_name_creator: Names trials from a ``Trial``.
        trial_dirname_creator: Names trial directories from a ``Trial``.
        log_to_file: ``(stdout_file, stderr_file)`` per trial.
        chdir_to_trial_dir: Trials run with their directory as working directory.
        is_class_trainable: The trainable is a ``Trainable`` class.
        stopping_criterion: ``{metric: threshold}`` that ends a trial.
        callback_setup: What ``Callback.setup`` is given besides ``total_num_samples``: the
            experiment's ``stop``, ``num_samples`` and ``time_budget_s`` as the user passed them.
        trials: Trials read back from a saved experiment (restore).
        experiment_state_extra: More keys for the saved experiment state.
        initial_checkpoint: A checkpoint every new trial starts from.
        export_formats: Formats a class trainable's ``export_model`` writes when its trial ends.
        scheduler_restored: The scheduler got its state back, so restored trials are
            not added to it again.

    Example:
        >>> from tunesmith.tune.execution.controller_config import ControllerConfig
        >>> ControllerConfig.__dataclass_fields__["max_concurrent_trials"].default is None
        True
    """

    trainable: Any
    trainable_name: str
    trainable_payload: bytes
    search_alg: Any
    scheduler: Any
    storage: Any
    executor: Any
    trainable_key: str | None = None
    stopper: Any = None
    callbacks: list = field(default_factory=list)
    reporter: Any = None
    metric: str | None = None
    mode: str | None = None
    resources_request: Any = None
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    time_budget_spent_s: float = 0.0
    reuse_actors: bool | None = None
    failure_config: Any = None
    checkpoint_config: Any = None
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None
    log_to_file: tuple = (None, None)
    chdir_to_trial_dir: bool = True
    is_class_trainable: bool = False
    stopping_criterion: dict | None = None
    trials: list | None = None
    experiment_state_extra: dict | None = None
    initial_checkpoint: str | None = None
    export_formats: tuple = ()
    scheduler_restored: bool = False
    callback_setup: dict | None = None


@dataclass
class LoopSettings:
    """The controller's tunables that come from ``TUNE_*`` environment variables (see the seeds).

    Args:
        max_pending: ``TUNE_MAX_PENDING_TRIALS_PG``: trials created ahead of resources.
        state_period: ``TUNE_GLOBAL_CHECKPOINT_S``: seconds between state snapshots
            (negative: "auto", at most 5% of the time).
        warn_threshold_s: ``TUNE_WARN_THRESHOLD_S``: warn when one loop turn takes longer.
        cleanup_grace_s: ``TUNE_FORCE_TRIAL_CLEANUP_S``: how long stopping trials get.
        function_stop_grace_s: ``TUNE_FUNCTION_THREAD_TIMEOUT_S``: how long a function trial gets to
            reach its next report once the experiment stops (it is ended by force after that).
        result_buffer_length: ``TUNE_RESULT_BUFFER_LENGTH``.
        restore_retry_num: ``TUNE_RESTORE_RETRY_NUM``.
        warn_idle_s: ``TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S``.
        strict_metrics: Not ``TUNE_DISABLE_STRICT_METRIC_CHECKING=1``.

    Example:
        >>> LoopSettings.from_env(cpus=8, basic_variant=True).max_pending >= 200
        True
    """

    max_pending: int = 200
    state_period: float = -1.0
    warn_threshold_s: float = 0.5
    cleanup_grace_s: float = 600.0
    function_stop_grace_s: float = 2.0
    result_buffer_length: int = 1
    restore_retry_num: int = 0
    warn_idle_s: float = 60.0
    strict_metrics: bool = True

    @classmethod
    def from_env(cls, cpus: float, basic_variant: bool) -> "LoopSettings":
        """Reads the environment; ``cpus`` and ``basic_variant`` set the default of ``max_pending``."""
        default_pending = max(200, int(cpus * 1.1))
        return cls(
            max_pending=int(env_float("TUNE_MAX_PENDING_TRIALS_PG", default_pending if basic_variant else 1)),
            state_period=env_float("TUNE_GLOBAL_CHECKPOINT_S", -1.0),
            warn_threshold_s=env_float("TUNE_WARN_THRESHOLD_S", 0.5),
            cleanup_grace_s=env_float("TUNE_FORCE_TRIAL_CLEANUP_S", 600.0),
            function_stop_grace_s=env_float("TUNE_FUNCTION_THREAD_TIMEOUT_S", 2.0),
            result_buffer_length=max(1, int(env_float("TUNE_RESULT_BUFFER_LENGTH", 1))),
            restore_retry_num=int(env_float("TUNE_RESTORE_RETRY_NUM", 0)),
            warn_idle_s=env_float("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", 60.0),
            strict_metrics=os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0") != "1",
        )
