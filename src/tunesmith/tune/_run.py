"""Builds an experiment from user input, checks it, runs it, and restores it.

``Tuner.fit``, ``Tuner.restore`` and ``tune.run`` all come through here, so
each piece of user input is validated in one place, before any trial starts.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from tunesmith._internal.experiment_lock import ExperimentLock
from tunesmith._internal.storage import (
    StorageContext,
    check_experiment_name,
    checkpoint_missing,
    default_experiment_name,
)
from tunesmith.tune.result import (
    DONE,
    EXPERIMENT_STATE_FILE,
    EXPERIMENT_STATE_VERSION,
    EXPR_RESULT_FILE,
    TUNER_FILE,
)
from tunesmith.tune.utils.util import flatten_dict
from tunesmith.tune.tune_config import TuneConfig
from tunesmith.train._config import RunConfig


@dataclass
class ExperimentInput:
    """Everything a run needs, gathered from Tuner or tune.run arguments."""

    trainable: Any
    param_space: dict = field(default_factory=dict)
    tune_config: TuneConfig = field(default_factory=TuneConfig)
    run_config: RunConfig = field(default_factory=RunConfig)
    resources_per_trial: Any = None
    default_verbose: int = 1
    # tune.run(restore=...): a checkpoint every new trial starts from.
    initial_checkpoint: str | None = None
    # The experiment directory's name, fixed when a Tuner is constructed.
    experiment_name: str | None = None
    # tune.run(export_formats=...): formats a class trainable's export_model writes when its trial ends.
    export_formats: tuple = ()


def resolve_trainable(trainable: Any) -> tuple[Any, str]:
    """Returns the trainable object and its name; raises a clear error for anything else."""
    from tunesmith.tune import registry

    if isinstance(trainable, str):
        return registry.get_trainable_cls(trainable), trainable
    if trainable is None:
        raise TypeError("A trainable is required: pass a function, a tune.Trainable subclass or a registered name.")
    if inspect.isclass(trainable):
        from tunesmith.tune.trainable.trainable import Trainable

        if not issubclass(trainable, Trainable) and not _is_trainer(trainable):
            raise TypeError(
                f"The trainable class {trainable.__name__} must subclass tunesmith.tune.Trainable; "
                "or pass a function that takes the config."
            )
    elif _is_trainer(trainable):
        return trainable.as_trainable(), registry.trainable_name(trainable.as_trainable())
    elif not callable(trainable):
        raise TypeError(
            f"The trainable must be a function, a tune.Trainable subclass or a registered name; "
            f"got {type(trainable).__name__} ({trainable!r})."
        )
    else:
        _check_function_signature(trainable)
    return trainable, registry.trainable_name(trainable)


def _check_function_signature(fn: Any) -> None:
    """A function trainable takes the config and at most one more argument (a reporter, or the
    older ``checkpoint_dir``): one that needs more would fail in every trial. It is no ``async def``."""
    if _is_async(fn):
        raise TypeError(async_trainable_message(fn))
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = list(signature.parameters.values())
    required = [p.name for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    # A second required parameter is the older API's reporter (seed 003's ``def f(config, reporter)``)
    # or checkpoint_dir; any other name is data that tune.with_parameters was meant to pass.
    second_is_data = len(required) == 2 and "checkpoint_dir" not in required and "report" not in required[1]
    if len(required) > 2 or second_is_data:
        name = getattr(fn, "__name__", type(fn).__name__)
        raise TypeError(
            f"The trainable function {name}{signature} needs {len(required)} arguments; Tune calls it with the "
            "config and at most one more (a reporter, or checkpoint_dir in the older API). Pass the data it "
            f"needs with tune.with_parameters({name}, {', '.join(f'{n}=...' for n in required[1:])}), or give "
            "those parameters defaults."
        )


def _is_async(fn: Any) -> bool:
    call = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", None)
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def async_trainable_message(fn: Any) -> str:
    name = getattr(fn, "__name__", type(fn).__name__)
    return (f"The trainable {name} is an async function: Tune calls a trainable as a plain function, so its body "
            "would never run. Define it with def, and run its asynchronous code inside with asyncio.run(...).")


def _is_trainer(obj: Any) -> bool:
    return hasattr(obj, "as_trainable") and not inspect.isfunction(obj)


def is_class_trainable(trainable: Any) -> bool:
    if not inspect.isclass(trainable):
        return False
    from tunesmith.tune.trainable.trainable import Trainable

    return issubclass(trainable, Trainable)


def pickle_trainable(trainable: Any, name: str) -> bytes:
    from tunesmith._internal.pickling import dumps

    try:
        return dumps(trainable)
    except Exception as exc:
        raise TypeError(
            f"The trainable {name!r} cannot be serialised to send it to worker processes: {exc}. "
            "It probably captures an object such as a lock, a file or a database connection; create it "
            "inside the trainable instead, or pass data with tune.with_parameters(). "
            "tune.utils.diagnose_serialization(trainable) names the culprit."
        ) from exc


def _check_metric_mode(metric, mode, who: str) -> None:
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}.")
    if metric is not None and not isinstance(metric, str):
        raise TypeError(f"{who}: metric must be a string, got {metric!r}.")


def build_search_alg(tune_config: TuneConfig, param_space: dict):
    from tunesmith.tune.search.basic_variant import BasicVariantGenerator
    from tunesmith.tune.search.search_algorithm import SearchAlgorithm
    from tunesmith.tune.search.searcher import Searcher

    alg = tune_config.search_alg
    if alg is None:
        alg = BasicVariantGenerator(max_concurrent=tune_config.max_concurrent_trials or 0)
    elif isinstance(alg, Searcher):
        from tunesmith.tune.search.concurrency_limiter import ConcurrencyLimiter
        from tunesmith.tune.search.search_generator import SearchGenerator

        limit = tune_config.max_concurrent_trials
        if limit and isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent != limit:
            raise ValueError(
                f"TuneConfig(max_concurrent_trials={limit}) and the search algorithm's ConcurrencyLimiter"
                f"(max_concurrent={alg.max_concurrent}) disagree; set the limit in one place only."
            )
        if limit and not isinstance(alg, ConcurrencyLimiter):
            alg = ConcurrencyLimiter(alg, max_concurrent=limit)
        alg = SearchGenerator(alg)
    elif not isinstance(alg, SearchAlgorithm):
        raise TypeError(
            f"TuneConfig(search_alg=...) must be a tune.search.Searcher or SearchAlgorithm, got {type(alg).__name__}."
        )
    accepted = alg.set_search_properties(tune_config.metric, tune_config.mode, param_space)
    conflict = (tune_config.metric and alg.metric and alg.metric != tune_config.metric) or (
        tune_config.mode and alg.mode and alg.mode != tune_config.mode
    )
    # A searcher built with its own space declines TuneConfig's; only a metric/mode clash is an error.
    if not accepted and conflict:
        raise ValueError(
            f"The search algorithm {type(alg).__name__} already has a metric or mode "
            f"({alg.metric!r}, {alg.mode!r}) that differs from TuneConfig's ({tune_config.metric!r}, "
            f"{tune_config.mode!r}). Set them in one place only."
        )
    return alg


def build_scheduler(tune_config: TuneConfig, search_alg):
    from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

    scheduler = tune_config.scheduler or FIFOScheduler()
    if not isinstance(scheduler, TrialScheduler):
        raise TypeError(
            f"TuneConfig(scheduler=...) must be a tune.schedulers.TrialScheduler, got {type(scheduler).__name__}."
        )
    if not scheduler.set_search_properties(tune_config.metric, tune_config.mode):
        raise ValueError(
            f"The scheduler {type(scheduler).__name__} already has a metric or mode "
            f"({scheduler.metric!r}, {scheduler.mode!r}) that differs from TuneConfig's "
            f"({tune_config.metric!r}, {tune_config.mode!r}). Set them in one place only."
        )
    check = getattr(scheduler, "_supports_search_alg", None)
    if check is not None:
        inner = getattr(search_alg, "searcher", search_alg)
        if not check(inner):
            raise ValueError(
                f"{type(scheduler).__name__} cannot be combined with the search algorithm "
                f"{type(inner).__name__} (see the scheduler/search algorithm compatibility matrix)."
            )
    return scheduler


def build_callbacks(run_config: RunConfig, verbose: int, metric, mode) -> list:
    from tunesmith.tune.logger import LoggerCallback, default_logger_callbacks

    callbacks = list(run_config.callbacks or [])
    if os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0") != "1":
        present = {type(cb) for cb in callbacks if isinstance(cb, LoggerCallback)}
        covered = _defaults_covered_by_legacy_loggers(callbacks)
        for cb in default_logger_callbacks():
            if type(cb).__name__ not in covered and not any(issubclass(p, type(cb)) for p in present):
                callbacks.append(cb)
    if verbose >= 1:
        from tunesmith.tune.progress_reporter import TrialProgressCallback

        callbacks.append(TrialProgressCallback(verbosity=verbose, metric=metric))
    return callbacks


def _defaults_covered_by_legacy_loggers(callbacks: list) -> set[str]:
    """The default logger callbacks whose files a ``LegacyLoggerCallback`` of the run writes already
    (with ``JsonLogger``, ``CSVLogger``, ``TBXLogger`` or ``UnifiedLogger``): they are not added too,
    or every row would be written twice."""
    from tunesmith.tune.logger import CSVLogger, JsonLogger, TBXLogger
    from tunesmith.tune.logger.logger import LegacyLoggerCallback, UnifiedLogger

    covered: set[str] = set()
    for cb in callbacks:
        for cls in getattr(cb, "logger_classes", ()) if isinstance(cb, LegacyLoggerCallback) else ():
            if issubclass(cls, UnifiedLogger):
                covered |= {"JsonLoggerCallback", "CSVLoggerCallback", "TBXLoggerCallback"}
            for legacy, default in ((JsonLogger, "JsonLoggerCallback"), (CSVLogger, "CSVLoggerCallback"),
                                    (TBXLogger, "TBXLoggerCallback")):
                if issubclass(cls, legacy):
                    covered.add(default)
    return covered


def build_reporter(run_config: RunConfig, verbose: int, tune_config: TuneConfig, total_samples):
    reporter = run_config.progress_reporter
    if verbose < 1:
        return None  # as on Ray: verbose=0 reports nothing, a progress_reporter of the user's included
    if reporter is None:
        from tunesmith.tune.progress_reporter import detect_reporter

        reporter = detect_reporter(verbose=verbose, metric=tune_config.metric, mode=tune_config.mode)
    if hasattr(reporter, "setup"):
        try:
            reporter.setup(total_samples=total_samples, metric=tune_config.metric, mode=tune_config.mode)
        except TypeError:
            pass
    return reporter


def _resources_known_ahead(trainable: Any, inp: "ExperimentInput"):
    """The ``PlacementGroupFactory`` every trial asks for, when no config decides it (else None)."""
    from tunesmith.tune.execution.placement_groups import PlacementGroupFactory, to_pg_factory

    try:
        request = resources_request(trainable, inp.resources_per_trial, inp.param_space)
        if callable(request) and not isinstance(request, PlacementGroupFactory) and not hasattr(
            request, "as_placement_group_factory"
        ):
            return None
        return to_pg_factory(request)
    except Exception:  # a bad request: the experiment's own checks say what is wrong
        return None


def resources_request(trainable: Any, override: Any, param_space: dict | None = None):
    """What each trial asks for: ``resources_per_trial`` (``tune.run``), or what the trainable says.

    Raises:
        ValueError: ``resources_per_trial`` is given for a trainable whose resources are already set
            (its ``default_resource_request``, or ``tune.with_resources``), as on Ray.
    """
    from tunesmith.tune.trainable.util import get_resources_request

    own = get_resources_request(trainable)
    if override is None:
        return own
    if own is not None:
        try:
            default = own(param_space or {}) if callable(own) else own
        except Exception:  # it needs a resolved config: nothing to compare with here
            default = None
        if default is not None:
            raise ValueError(
                f"Resources for {getattr(trainable, '__name__', trainable)!r} are already set to {default} (by "
                "its default_resource_request() or tune.with_resources); pass no resources_per_trial as well."
            )
    return override


def _log_to_file(value) -> tuple:
    if value is True:
        return ("stdout", "stderr")
    if not value:
        return (None, None)
    if isinstance(value, str):
        return (_log_file_name(value), _log_file_name(value))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(_log_file_name(v) if v else None for v in value)
    raise ValueError(
        f"RunConfig(log_to_file={value!r}) must be True, a file name, or a (stdout, stderr) pair of file names."
    )


def _log_file_name(name) -> str:
    """A ``log_to_file`` name: a file inside the trial directory, or an absolute path (every trial
    appends to that one file, as on Ray)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise ValueError(f"RunConfig(log_to_file=...): file names must be strings, got {name!r}.")
    if os.path.isabs(name):
        if name.endswith(os.sep) or os.path.isdir(name):
            raise ValueError(f"RunConfig(log_to_file={name!r}): the output goes to a file, not a directory.")
        return name
    normalized = os.path.normpath(name)
    if normalized == ".." or normalized.startswith(".." + os.sep) or normalized == ".":
        raise ValueError(
            f"RunConfig(log_to_file={name!r}): a relative name is a file inside each trial's directory; "
            "give one such as 'stdout.txt' (no '..'), or an absolute path."
        )
    return name


def _split_stop(stop):
    """A dict of thresholds is checked inline per trial; anything else becomes a Stopper."""
    if stop is None:
        return {}, None
    if isinstance(stop, dict):
        from tunesmith.tune.tune_config import _plain_number

        stop = {key: _plain_number(value) for key, value in stop.items()}
        for key, value in stop.items():
            # A flag threshold is a number too (as on Ray: {"converged": True} stops at True >= True).
            if not isinstance(value, (int, float)) or value != value:
                raise ValueError(
                    f"RunConfig(stop={{{key!r}: {value!r}}}): each stop threshold must be a number "
                    "(not NaN): a trial stops once its result reaches it."
                )
        return dict(stop), None
    from tunesmith.tune.stopper import create_stopper

    return {}, create_stopper(stop)


def _validate_checkpointing(trainable, run_config: RunConfig, is_class: bool, scheduler) -> None:
    cc = run_config.checkpoint_config
    if not is_class and (cc.checkpoint_frequency or cc.checkpoint_at_end):
        raise ValueError(
            "CheckpointConfig(checkpoint_frequency=..., checkpoint_at_end=...) only applies to class trainables; "
            "a function trainable checkpoints by passing checkpoint=... to train.report()."
        )
    if is_class and getattr(scheduler, "_requires_checkpointing", False):
        from tunesmith.tune.trainable.trainable import Trainable

        saves = any(
            getattr(trainable, m, None) is not getattr(Trainable, m, None)
            for m in ("save_checkpoint", "_save")
        )
        if not saves:
            raise ValueError(
                f"{type(scheduler).__name__} pauses and clones trials from checkpoints, but "
                f"{trainable.__name__} does not implement save_checkpoint()/load_checkpoint()."
            )


def _known_trial_count(inp) -> int | None:
    """How many trials a new run of the default search makes (its grid times ``num_samples``), else None."""
    tc = inp.tune_config
    if tc.search_alg is not None or tc.num_samples is None or tc.num_samples < 1:
        return None
    try:
        from tunesmith.tune.search.variant_generator import count_variants

        return count_variants(inp.param_space or {}, tc.num_samples)
    except Exception:  # noqa: BLE001 - an unusual space: no bound
        return None


def _end_by_signal(signum: int) -> None:
    """Ends the process by ``signum`` (SIGTERM, SIGHUP), as it would have ended without the experiment's handler."""
    import signal

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or missing stream must not keep the process alive
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def run_experiment(inp: ExperimentInput, restore_path: str | None = None, restore_options: dict | None = None):
    """Runs an experiment and returns ``(ExperimentAnalysis, controller)``."""
    from tunesmith.tune.analysis.experiment_analysis import ExperimentAnalysis

    tc, rc = inp.tune_config, inp.run_config
    if not isinstance(tc, TuneConfig):
        raise TypeError(f"tune_config must be a tune.TuneConfig, got {type(tc).__name__}.")
    if not isinstance(rc, RunConfig):
        raise TypeError(f"run_config must be a tune.RunConfig, got {type(rc).__name__}.")
    if inp.param_space is not None and not isinstance(inp.param_space, dict):
        raise TypeError(f"param_space must be a dict, got {type(inp.param_space).__name__}.")
    _check_metric_mode(tc.metric, tc.mode, "TuneConfig")
    if rc.name:
        check_experiment_name(rc.name)  # before any worker starts
    trainable, name = resolve_trainable(inp.trainable)
    from tunesmith.tune.registry import carried_with

    payload = pickle_trainable(carried_with(trainable), name)
    executor = make_backend()
    trainable_key = f"{name}-{uuid.uuid4().hex[:8]}"
    try:
        # Workers boot and load the trainable while the rest of the experiment is set up (inside the
        # try: a Ctrl+C now must not leave them, nor a cluster's actors and placement groups, behind).
        slots = int(executor.total.get("CPU", 1))
        executor.prestart(min(slots, executor.max_prestart, tc.max_concurrent_trials or slots,
                              _known_trial_count(inp) or slots), trainable_key, payload,
                          resources=_resources_known_ahead(trainable, inp))
        controller, storage = _build_controller(
            inp, trainable, name, payload, trainable_key, executor, restore_path, restore_options or {}
        )
    except BaseException:
        executor.shutdown()  # the prestarted workers
        raise
    if hasattr(executor, "check_storage"):
        try:
            executor.check_storage(storage)  # every node must see the experiment directory
        except BaseException:
            controller.experiment_lock.release()
            executor.shutdown()
            raise
    try:
        controller.run()
    finally:
        lock = getattr(controller, "experiment_lock", None)
        if lock is not None:
            lock.release()
        if getattr(controller, "terminated", 0) and sys.exc_info()[0] is not None:
            _end_by_signal(controller.terminated)  # the signal came while the run was failing: it still ends it
    if getattr(controller, "interrupted", False):
        from tunesmith._internal.storage import join_experiment_path

        given = inp.run_config.storage_path
        # The URI as the user wrote it (an endpoint in its query stays), else where the run is.
        where = join_experiment_path(given, storage.experiment_dir_name) if given and "?" in given \
            else storage.experiment_path
        extra = ", storage_filesystem=..." if inp.run_config.storage_filesystem is not None else ""
        print(
            f"The experiment was interrupted; its state is saved. Resume it with "
            f"Tuner.restore({where!r}, trainable=...{extra}).",
            flush=True,
        )
    if getattr(controller, "terminated", 0):
        _end_by_signal(controller.terminated)
    trials = controller.get_trials()
    if storage.is_remote:
        # Results read back from the store: Result.path and checkpoints are storage locations.
        for trial in trials:
            _rebase_to_store(trial, storage)
    analysis = ExperimentAnalysis(
        storage.experiment_fs_path,
        trials=trials,
        default_metric=tc.metric,
        default_mode=tc.mode,
        storage_filesystem=storage.storage_filesystem if storage.is_remote else None,
    )
    return analysis, controller


def _rebase_to_store(trial, storage: StorageContext) -> None:
    """Points a finished run's trial at its files on the remote store instead of the staging directory."""
    error_file = trial._relative(trial.error_file)
    pickled_error_file = trial._relative(trial.pickled_error_file)
    trial.experiment_path = storage.experiment_fs_path
    trial.filesystem = storage.storage_filesystem
    trial.error_file = trial._absolute(error_file)
    trial.pickled_error_file = trial._absolute(pickled_error_file)


def make_backend():
    """The backend this process runs trials on: the local worker pool unless configured otherwise.

    The one place a backend is chosen: ``tunesmith.init(address=...)``, ``TUNESMITH_ADDRESS``
    or ``RAY_ADDRESS`` pick the Ray backend (only then is Ray imported), as does a connection
    the script made itself with ``ray.init``.
    """
    from tunesmith._internal.backend._address import cluster_address

    address = cluster_address()
    if address is not None:
        from tunesmith._internal.backend.ray_backend import RayExecutor

        return RayExecutor(address)
    from tunesmith._internal.backend.local import LocalExecutor

    return LocalExecutor()


def _check_fits(request, executor) -> None:
    from tunesmith.tune.execution.placement_groups import to_pg_factory

    if callable(request):
        return  # depends on each config; checked per trial
    pgf = to_pg_factory(request)
    if not executor.can_ever_fit(pgf.required_resources):
        shown = {k: v for k, v in executor.total.items() if k != "memory" or "memory" in pgf.required_resources}
        raise ValueError(
            f"Each trial asks for {pgf.required_resources}, more than {executor.place} has ({shown}). Lower "
            f"the request (tune.with_resources / resources_per_trial) or {executor.more_resources_hint}."
        )


def _apply_restored_resources(trials: list, request, executor) -> None:
    """Resources of a restored run's unfinished trials: those of the trainable given to
    ``Tuner.restore`` when it sets any (``tune.with_resources``, as on Ray), else the saved ones;
    either way they must fit, or the run would wait forever."""
    from tunesmith.tune.execution.placement_groups import to_pg_factory

    for trial in trials:
        if trial.is_finished():
            continue
        if request is not None:
            trial.placement_group_factory = to_pg_factory(request, trial.config)
        needed = trial.placement_group_factory.required_resources
        if not executor.can_ever_fit(needed):
            raise ValueError(
                f"Restored trial {trial} asks for {needed}, more than {executor.place} has "
                f"({dict(executor.total)}). Pass the trainable to Tuner.restore wrapped in tune.with_resources(...) "
                f"with a request that fits, or {executor.more_resources_hint}."
            )


def _build_controller(inp: ExperimentInput, trainable, name: str, payload: bytes, trainable_key: str,
                      executor, restore_path: str | None, restore_options: dict):
    """Checks the rest of the input and assembles the driver; returns ``(controller, storage)``."""
    from tunesmith.tune.execution.controller_config import ControllerConfig
    from tunesmith.tune.execution.tune_controller import TuneController

    tc, rc = inp.tune_config, inp.run_config
    param_space = inp.param_space if inp.param_space is not None else {}
    is_class = is_class_trainable(trainable)
    verbose = rc.verbose if rc.verbose is not None else inp.default_verbose
    search_alg = build_search_alg(tc, param_space)
    scheduler = build_scheduler(tc, search_alg)
    stopping_criterion, stopper = _split_stop(rc.stop)
    from tunesmith.tune.stopper import Stopper

    if tc.num_samples == -1 and tc.time_budget_s is None and not isinstance(rc.stop, Stopper) \
            and tc.search_alg is None:
        raise ValueError(
            "TuneConfig(num_samples=-1) samples until something ends the experiment: set "
            "TuneConfig(time_budget_s=...), or pass a Stopper whose stop_all() ends it as RunConfig(stop=...)."
        )
    _validate_checkpointing(trainable, rc, is_class, scheduler)
    log_to_file = _log_to_file(rc.log_to_file)
    request = resources_request(trainable, inp.resources_per_trial, param_space)
    _check_fits(request, executor)

    trials = None
    scheduler_restored = False
    time_budget_spent_s = 0.0
    commit_restore = None
    if restore_path is not None:
        from tunesmith._internal.storage import split_experiment_path

        root, experiment_name = split_experiment_path(restore_path)
        storage = StorageContext(root, experiment_name, rc.storage_filesystem,
                                 sync_config=rc.sync_config, trial_output_names=log_to_file)
        storage.download_experiment()  # state and logs, not checkpoints: those stay on the store
    else:
        storage = experiment_storage(inp, name)
    storage.make_dirs()
    if restore_path is None and rc.name is None:
        storage, lock = _lock_default_named(inp, name, storage)
    else:
        lock = _experiment_lock(storage)
    try:
        if restore_path is not None and os.path.exists(
            os.path.join(storage.experiment_local_path, EXPERIMENT_STATE_FILE)
        ):
            trials, scheduler_restored, time_budget_spent_s, commit_restore = _restore_trials(
                storage, search_alg, scheduler, restore_options, rc.checkpoint_config, inp.initial_checkpoint
            )
            _apply_restored_resources(trials, request, executor)
            stopper = _restore_stopper(storage.experiment_local_path, storage.state_slot, stopper)
            forget = getattr(stopper, "_forget_trial", None)
            for trial in trials if forget is not None else ():
                if getattr(trial, "restarted_from_scratch", False):
                    forget(trial.trial_id)  # as on Ray, where a restarted trial is a new one
            old_space = restore_options.get("respecified")
            if isinstance(old_space, dict) and old_space is not param_space:
                _respecify_values(trials, search_alg, old_space, param_space)
            _save_tuner_file(storage, inp, name)
        else:  # a new run, or a Tuner that was built but never ran (or killed before it saved a state)
            # Saved first: a searcher of the user's (in the tuner file) that holds this run's
            # configurations would be given them again by the restore of a run that saved no state.
            _save_tuner_file(storage, inp, name)
            search_alg.add_configurations(param_space, num_samples=tc.num_samples)
    except BaseException:
        lock.release()
        raise

    try:  # anything failing from here on (a callback, a reporter, restoring their state) frees the lock
        controller = TuneController(ControllerConfig(
            trainable=trainable,
            trainable_name=name,
            trainable_payload=payload,
            trainable_key=trainable_key,
            search_alg=search_alg,
            scheduler=scheduler,
            stopper=stopper,
            callbacks=build_callbacks(rc, verbose, tc.metric, tc.mode),
            # num_samples=-1: the table says "N/infinite" trials, as on Ray.
            reporter=build_reporter(rc, verbose, tc, sys.maxsize if search_alg.total_samples is None
                                    and tc.num_samples == -1 else search_alg.total_samples),
            storage=storage,
            executor=executor,
            metric=tc.metric,
            mode=tc.mode,
            resources_request=request,
            max_concurrent_trials=tc.max_concurrent_trials,
            time_budget_s=tc.time_budget_s,
            time_budget_spent_s=time_budget_spent_s,
            reuse_actors=tc.reuse_actors,
            failure_config=rc.failure_config,
            checkpoint_config=rc.checkpoint_config,
            trial_name_creator=tc.trial_name_creator,
            trial_dirname_creator=tc.trial_dirname_creator,
            log_to_file=log_to_file,
            chdir_to_trial_dir=os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") != "0" and tc.chdir_to_trial_dir is not False,
            is_class_trainable=is_class,
            stopping_criterion=stopping_criterion,
            trials=trials,
            scheduler_restored=scheduler_restored,
            initial_checkpoint=inp.initial_checkpoint,
            export_formats=tuple(inp.export_formats or ()),
            # As on Ray, callbacks' setup() gets the stop criteria as a dict ({} for a Stopper or a function).
            callback_setup={"stop": dict(rc.stop) if isinstance(rc.stop, dict) else {},
                            "num_samples": tc.num_samples, "time_budget_s": tc.time_budget_s},
        ))
        controller.experiment_lock = lock
        if restore_path is not None:
            controller.restore_callback_state()
        if commit_restore is not None:
            commit_restore()
    except BaseException:
        lock.release()
        raise
    return controller, storage


def _lock_default_named(inp: ExperimentInput, name: str, storage: StorageContext):
    """Locks the directory of a run whose name tunesmith chose (``<trainable>_<date>``).

    Two runs started in the same second (threads, or one script launched several
    times at once) get that name both; the later one takes ``<name>_2`` (``_3``...)
    instead of failing, as the user never named it.
    """
    from tunesmith._internal.experiment_lock import ExperimentInUseError

    base = inp.experiment_name or os.path.basename(storage.experiment_local_path)
    for attempt in range(1, 100):
        try:
            return storage, _experiment_lock(storage)
        except ExperimentInUseError:
            if attempt == 99:
                raise
            if storage.is_remote:  # this run's staging directory, made for the name in use
                shutil.rmtree(storage.experiment_local_path, ignore_errors=True)
        inp.experiment_name = f"{base}_{attempt + 1}"
        storage = experiment_storage(inp, name)
        storage.make_dirs()
    raise AssertionError("unreachable")


def _experiment_lock(storage: StorageContext) -> ExperimentLock:
    if storage.is_remote:
        return ExperimentLock(storage.experiment_path, lock_file=storage.remote_lock_file())
    return ExperimentLock(storage.experiment_local_path)


def experiment_storage(inp: ExperimentInput, trainable_name: str) -> StorageContext:
    """Where a new run of ``inp`` writes: ``<storage_path>/<name>``."""
    rc = inp.run_config
    name = inp.experiment_name or rc.name or default_experiment_name(trainable_name)
    return StorageContext(rc.storage_path, name, rc.storage_filesystem, sync_config=rc.sync_config,
                          trial_output_names=_log_to_file(rc.log_to_file))


def save_tuner_file(storage: StorageContext, inp: ExperimentInput, name: str) -> None:
    """Writes the tuner file (what ``Tuner.restore`` rebuilds the run from) into a new experiment directory.

    A directory that has a tuner file already keeps it: it belongs to an experiment that ran
    (or runs) there, and ``fit()`` writes this run's own under the experiment's lock. On remote
    storage the file is uploaded at once, with one try (pyarrow's own retries).
    """
    if storage.is_remote:
        import pyarrow.fs

        try:
            info = storage.storage_filesystem.get_file_info(f"{storage.experiment_fs_path}/{TUNER_FILE}")
            if info.type != pyarrow.fs.FileType.NotFound:
                return
        except OSError:
            pass
    elif os.path.exists(os.path.join(storage.experiment_local_path, TUNER_FILE)):
        return
    storage.make_dirs()
    _save_tuner_file(storage, inp, name, upload_timeout=0.0)


def _save_tuner_file(storage: StorageContext, inp: ExperimentInput, name: str,
                     upload_timeout: float | None = None) -> None:
    """Keeps the run's settings next to its results so ``Tuner.restore`` can rebuild it."""
    import cloudpickle

    from tunesmith._internal.storage import write_bytes_atomic

    data = {"param_space": inp.param_space, "tune_config": inp.tune_config, "run_config": inp.run_config,
            "resources_per_trial": inp.resources_per_trial, "trainable_name": name}
    try:
        payload = cloudpickle.dumps(data)
    except Exception:
        # Some setting cannot be saved (a searcher or callback holding a lock): the others are kept, and
        # the tuner file names the ones left out, so that Tuner.restore says what it goes on without.
        unsaved: dict[str, str] = {}
        for key in ("tune_config", "run_config"):
            data[key] = _without_unpicklable_fields(data[key], key, unsaved)
        try:
            cloudpickle.dumps(data["resources_per_trial"])
        except Exception as exc:
            unsaved["resources_per_trial"] = f"{type(exc).__name__}: {exc}"
            data["resources_per_trial"] = None
        data["unsaved"] = unsaved
        if unsaved and not os.path.exists(os.path.join(storage.experiment_local_path, TUNER_FILE)):
            import logging

            logging.getLogger(__name__).warning(
                "These settings cannot be saved with the experiment, so a Tuner.restore of it would go on "
                "without them: %s. Objects such as locks, open files and connections cannot be saved; create "
                "them in the object's setup instead.", "; ".join(f"{k} ({why})" for k, why in unsaved.items()))
        try:
            payload = cloudpickle.dumps(data)
        except Exception as exc:
            raise TypeError(
                f"The param_space cannot be serialised: {type(exc).__name__}: {exc}. Its values travel to "
                "the worker processes and are saved for Tuner.restore, so it cannot hold objects such as "
                "locks, open files or connections; create those inside the trainable, or pass data with "
                "tune.with_parameters()."
            ) from exc
    path = os.path.join(storage.experiment_local_path, TUNER_FILE)
    try:
        write_bytes_atomic(path, payload)
    except OSError as exc:  # a full disk: the message names the file, and that nothing was lost
        raise type(exc)(exc.errno, f"Could not write {path} ({exc.strerror or exc}). What the experiment "
                        "saved before is intact: make room and run it again") from exc
    storage.upload_now(TUNER_FILE, timeout=upload_timeout)


def _without_unpicklable_fields(config: Any, owner: str, unsaved: dict[str, str]) -> Any:
    """A copy of the dataclass ``config`` with the fields that cannot be pickled set to None (named in ``unsaved``)."""
    import dataclasses

    import cloudpickle

    if not dataclasses.is_dataclass(config):
        return config
    changes = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            if item.name == "callbacks" and isinstance(value, (list, tuple)):
                changes[item.name] = _savable_callbacks(value, f"{owner}.{item.name}", unsaved)
                continue
            unsaved[f"{owner}.{item.name}"] = f"{type(exc).__name__}: {exc}"
            changes[item.name] = None
    if not changes:
        return config
    copy = dataclasses.replace(config)  # __post_init__ runs again: set the fields after it
    for name, value in changes.items():
        object.__setattr__(copy, name, value)
    return copy


def _savable_callbacks(callbacks, owner: str, unsaved: dict[str, str]) -> list:
    """The callbacks, each that cannot be pickled replaced by a stand-in (the others keep their places)."""
    import cloudpickle

    from tunesmith.tune.callback import UnsavedCallback

    kept = []
    for i, cb in enumerate(callbacks):
        try:
            cloudpickle.dumps(cb)
        except Exception as exc:
            unsaved[f"{owner}[{i}] ({type(cb).__name__})"] = f"{type(exc).__name__}: {exc}"
            cb = UnsavedCallback(type(cb).__name__)
        kept.append(cb)
    return kept


def load_tuner_file(path: str, storage_filesystem=None) -> dict:
    """Reads the tuner file of the experiment directory ``path`` (local, a URI, or a path on ``storage_filesystem``)."""
    import cloudpickle

    from tunesmith._internal.storage import resolve_storage

    fs, fs_path = resolve_storage(path, storage_filesystem)
    if fs is None:
        with open(os.path.join(fs_path, TUNER_FILE), "rb") as f:
            return cloudpickle.load(f)
    with fs.open_input_stream(f"{fs_path}/{TUNER_FILE}") as f:
        return cloudpickle.loads(f.read())


def read_experiment_state(path: str) -> dict:
    """The experiment state saved in directory ``path``.

    Raises:
        ValueError: The state file is missing, cut short or not an experiment state;
            the message names the file.
    """
    state_file = os.path.join(path, EXPERIMENT_STATE_FILE)
    try:
        with open(state_file, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"No experiment to restore: {state_file} does not exist.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"The experiment state file {state_file} cannot be read ({exc}); it is cut short or "
            "corrupt, so this experiment cannot be restored."
        ) from exc
    if not isinstance(state, dict) or not isinstance(state.get("trials"), list):
        raise ValueError(f"{state_file} is not a tunesmith experiment state (it has no list of trials).")
    version = state.get("version", 1)
    if not isinstance(version, int) or version > EXPERIMENT_STATE_VERSION:
        raise ValueError(
            f"{state_file} has experiment state version {version!r}; this tunesmith reads versions up to "
            f"{EXPERIMENT_STATE_VERSION}. It was written by a newer tunesmith: restore it with that release.")
    return state


def _load_params(trial, params_file: str) -> None:
    """Gives the trial's config (its JSON form, from the experiment state) back the values JSON keeps
    only as text, from the pickled config, when it can be read.

    The pickle may be newer than the state (written when the trial last started): the state's
    plain values win (see ``with_objects_from``).
    """
    import logging

    import cloudpickle

    from tunesmith.tune.utils.serialization import with_objects_from

    if not os.path.exists(params_file):
        return
    try:
        with open(params_file, "rb") as f:
            config = cloudpickle.load(f)
        if not isinstance(config, dict):
            raise TypeError(f"it holds a {type(config).__name__}, not a dict")
    except Exception as exc:
        logging.getLogger(__name__).warning(
            "Could not read %s (%s); trial %s resumes with the config saved in the experiment state, "
            "where values that are not JSON were stored as text.", params_file, exc, trial,
        )
        return
    saved = trial.config
    trial.config = with_objects_from(saved, config)
    # The saved last result holds the config's JSON form (objects as text); when it is this very
    # config, it gets the objects back.
    last_config = trial.last_result.get("config") if isinstance(trial.last_result, dict) else None
    if type(last_config) is dict and last_config == saved:
        trial.last_result["config"] = trial.config


def _drop_missing_checkpoints(trial) -> None:
    import logging

    if trial.started_from is not None and checkpoint_missing(trial.started_from):
        trial.started_from = None  # deleted since: the trial's own latest checkpoint holds its progress
    missing = [c.path for c, _ in list(trial.checkpoint_manager.checkpoints) if checkpoint_missing(c)]
    if not missing:
        return
    for path in missing:
        trial.checkpoint_manager.drop(path)
    if trial.is_finished() and trial.status != "ERROR":
        what = "its results are kept"
    else:
        what = f"if it runs again, it resumes from {trial.checkpoint.path if trial.checkpoint else 'scratch'}"
    logging.getLogger(__name__).warning(
        "%s %s of trial %s %s missing; %s.", "Checkpoint" if len(missing) == 1 else "Checkpoints",
        ", ".join(missing), trial, "is" if len(missing) == 1 else "are", what,
    )


def _logged_rows(trial) -> int:
    """How many result rows the trial's result.json holds."""
    try:
        with open(os.path.join(trial.local_path, EXPR_RESULT_FILE), "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _cut_logs(trial, rows: int) -> None:
    from tunesmith.tune.logger._util import cut_csv_rows, cut_result_lines
    from tunesmith.tune.result import EXPR_PROGRESS_FILE

    cut_result_lines(os.path.join(trial.local_path, EXPR_RESULT_FILE), rows)
    cut_csv_rows(os.path.join(trial.local_path, EXPR_PROGRESS_FILE), rows)
    trial.num_results = rows


# The trial checkpoint directories tunesmith makes (a trial's own "checkpoint_best" and such are the user's).
_CHECKPOINT_DIR = re.compile(r"checkpoint_\d{6,}(\.tmp)?\Z")


def _remove_uncommitted_remote(storage: StorageContext, trials: list, id_prefix: str | None) -> None:
    """``_remove_uncommitted`` on the remote store: trial dirs and checkpoints the saved state does not know."""
    import pyarrow.fs

    from tunesmith._internal.storage import delete_dir, with_retries

    fs, base, timeout = storage.storage_filesystem, storage.experiment_fs_path, storage.sync_timeout

    def listdir(path: str):
        selector = pyarrow.fs.FileSelector(path, allow_not_found=True)
        infos = with_retries(lambda: fs.get_file_info(selector), "list", fs, path, timeout)
        return [(i.base_name, i.type) for i in infos]

    known = {t.trial_dirname: t for t in trials}
    wanted = {t.restore_checkpoint.path for t in trials if t.restore_checkpoint is not None}
    for name, kind in listdir(base):
        if kind != pyarrow.fs.FileType.Directory:
            continue
        trial = known.get(name)
        entries = listdir(f"{base}/{name}")
        if trial is None:
            # A trial's workers upload its checkpoints at once, its params.json comes with the driver's
            # next upload: a directory of checkpoints alone is a trial's too.
            trial_like = any(n == "params.json" for n, _ in entries) or bool(entries) and all(
                _CHECKPOINT_DIR.match(n) and k == pyarrow.fs.FileType.Directory for n, k in entries)
            if trial_like and _of_saved_run(
                name, id_prefix, lambda: _first_line_remote(fs, f"{base}/{name}/{EXPR_RESULT_FILE}")
            ):
                delete_dir(fs, f"{base}/{name}", timeout)  # a trial the saved state never had
            continue
        named = {c.path for c, _ in trial.checkpoint_manager.checkpoints} | wanted
        for sub, sub_kind in entries:
            path = f"{base}/{name}/{sub}"
            if _CHECKPOINT_DIR.match(sub) and sub_kind == pyarrow.fs.FileType.Directory and path not in named:
                delete_dir(fs, path, timeout)


def _remove_uncommitted(path: str, trials: list, id_prefix: str | None) -> None:
    """Removes what the saved run wrote after its state: its unknown trial dirs, and unknown checkpoints.

    Trial directories of other runs under the same experiment name (a ``fit()`` run
    twice there) are kept.
    """
    import shutil

    known = {t.trial_dirname: t for t in trials}
    # A checkpoint a trial is about to start from stays, whichever trial's directory holds it (PBT's
    # exploit starts a trial from another's checkpoint, which that one may have dropped).
    wanted = {t.restore_checkpoint.path for t in trials if t.restore_checkpoint is not None}
    for entry in os.scandir(path):
        if not entry.is_dir(follow_symlinks=False):
            continue
        trial = known.get(entry.name)
        if trial is None:
            if os.path.exists(os.path.join(entry.path, "params.json")) and _of_saved_run(
                entry.name, id_prefix, lambda: _first_line(os.path.join(entry.path, EXPR_RESULT_FILE))
            ):
                shutil.rmtree(entry.path, ignore_errors=True)  # a trial the saved state never had
            continue
        named = {c.path for c, _ in trial.checkpoint_manager.checkpoints} | wanted
        for sub in os.scandir(entry.path):
            if _CHECKPOINT_DIR.match(sub.name) and sub.is_dir(follow_symlinks=False) and sub.path not in named:
                shutil.rmtree(sub.path, ignore_errors=True)


def _of_saved_run(dirname: str, id_prefix: str | None, first_result_line) -> bool:
    """Whether an unknown trial directory is one the saved run made (its trial ids begin with ``id_prefix``).

    The default directory name holds the trial id; a custom one is told by the trial id of its
    first result. A directory that shows neither is kept.
    """
    if not id_prefix:
        return False
    if f"_{id_prefix}_" in dirname or dirname.startswith(f"{id_prefix}_"):
        return True
    line = first_result_line()
    try:
        trial_id = json.loads(line).get("trial_id") if line else None
    except (ValueError, AttributeError):  # a cut or foreign line
        return False
    return isinstance(trial_id, str) and trial_id.startswith(f"{id_prefix}_")


def _first_line(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.readline()
    except OSError:
        return None


def _first_line_remote(fs, path: str) -> bytes | None:
    try:
        with fs.open_input_stream(path) as f:
            return f.read(1 << 16).split(b"\n", 1)[0]
    except Exception:
        return None


def _restore_trials(storage: StorageContext, search_alg, scheduler, options: dict, checkpoint_config=None,
                    initial_checkpoint: str | None = None):
    """Rebuilds the trials of a saved experiment and the search and scheduler state.

    Returns ``(trials, scheduler_restored, time_budget_spent_s)``; with ``scheduler_restored``
    the scheduler already knows the trials and must not be told of them again; the seconds of
    ``TuneConfig(time_budget_s)`` the saved run had used are not given again (as on Ray).
    """
    from tunesmith.tune.experiment.trial import Trial

    path = storage.experiment_local_path
    state = read_experiment_state(path)
    state_file = os.path.join(path, EXPERIMENT_STATE_FILE)
    storage.state_slot = state.get("state_slot")  # the slot of the states saved with it (None: older runs)
    if storage.is_remote:
        storage.uploaded_slot = storage.state_slot  # downloaded: the state on the store names it
    trials = []
    ended_unfinished = []
    cuts = []  # (trial, rows): logs cut back once the search and scheduler state are known to load

    def latest_or_initial(trial):
        """A trial's latest checkpoint (or the one it started from, see Trial.resume_checkpoint);
        before it had any, tune.run(restore=...)'s, if given."""
        point = trial.resume_checkpoint()
        if point is not None or not initial_checkpoint:
            return point
        from tunesmith.train._checkpoint import Checkpoint

        trial.checkpoint_rows[initial_checkpoint] = 0  # it stands before the trial's first row
        return Checkpoint(initial_checkpoint)

    for tstate in state["trials"]:
        try:
            trial = Trial.from_json_state(
                tstate, experiment_path=path, checkpoint_config=checkpoint_config,
                storage_path=storage.remote_experiment_path, checkpoint_filesystem=storage.storage_filesystem,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{state_file}: a trial's saved state cannot be read: {exc}") from exc
        trial.dir_created = True
        if "num_results" not in tstate:  # a state of version 1: its rows are those logged
            trial.num_results = _logged_rows(trial)
        _load_params(trial, os.path.join(trial.local_path, "params.pkl"))
        _drop_missing_checkpoints(trial)
        if trial.status == Trial.RUNNING and (trial.last_result or {}).get(DONE):
            # Its stop was decided (a stop criterion, a scheduler) and its worker had not confirmed
            # it when the driver died: it ended there, as on Ray, and does not run past it.
            trial.status = Trial.TERMINATED
            ended_unfinished.append(trial)
        if trial.status in (Trial.RUNNING, Trial.PAUSED, Trial.PENDING):
            if options.get("resume_unfinished", True):
                # A paused trial keeps the checkpoint chosen for it (PBT); a running one
                # resumes from its latest.
                chosen = trial.restore_checkpoint
                if trial.status == Trial.RUNNING or chosen is None or checkpoint_missing(chosen):
                    trial.restore_checkpoint = latest_or_initial(trial)
                trial.status = Trial.PENDING
            else:
                trial.status = Trial.TERMINATED
                ended_unfinished.append(trial)
        elif trial.status == Trial.ERROR:
            if options.get("restart_errored"):
                trial.restarted_from_scratch = True  # per-trial stopper counts start over (see below)
                trial.restore_checkpoint = None
                trial.checkpoint_manager.checkpoints = []
                trial.checkpoint_rows = {}
                trial.status = Trial.PENDING
                trial.last_result = {}
            elif options.get("resume_errored"):
                trial.restore_checkpoint = latest_or_initial(trial)
                trial.status = Trial.PENDING
        if trial.status == Trial.PENDING:
            if trial.restore_checkpoint is None and trial.num_results:
                # It runs again from its first iteration (no checkpoint to resume from): as one restarted
                # (a tracker's run of its own, per-trial stopper counts from zero).
                trial.restarted_from_scratch = True
            rows = trial.rows_at(trial.restore_checkpoint)
            cuts.append((trial, trial.num_results if rows is None else rows))
            trial.num_results = cuts[-1][1]
        trials.append(trial)
    # (a searcher reads its files of the slot the state names: see searcher._newest)
    if search_alg.has_checkpoint(path):
        try:
            search_alg.restore_from_dir(path)
        except Exception as exc:
            raise ValueError(f"The search algorithm's state in {path} cannot be restored: "
                             f"{type(exc).__name__}: {exc}") from exc
        # Trials not resumed are over: a searcher (or ConcurrencyLimiter) that still
        # counted them as live would wait for them forever.
        for trial in ended_unfinished:
            result = trial.last_result or None
            if result and any(type(v) is dict for k, v in result.items() if k != "config"):
                result = {**flatten_dict({k: v for k, v in result.items() if k != "config"}),
                          "config": result.get("config")}
            search_alg.on_trial_complete(trial.trial_id, result=result)
    else:
        _continue_without_search_state(search_alg, trials)
    spent = state.get("time_budget_spent_s")
    spent = float(spent) if isinstance(spent, (int, float)) and not isinstance(spent, bool) else 0.0
    scheduler_restored = _restore_scheduler(path, storage.state_slot, scheduler, trials)
    id_prefix = state.get("id_prefix")

    def commit() -> None:
        """Cuts the resumed trials' logs back and removes what the saved state does not know: called once
        the whole restore was accepted (a refused one leaves the experiment as it was)."""
        for trial, rows in cuts:
            _cut_logs(trial, rows)
        if storage.is_remote:
            _remove_uncommitted_remote(storage, trials, id_prefix)
        _remove_uncommitted(path, trials, id_prefix)

    return trials, scheduler_restored, spent, commit


def _continue_without_search_state(search_alg, trials: list) -> None:
    """A run whose searcher state was never saved: a fresh searcher makes the trials not made yet."""
    import logging

    from tunesmith.tune.search.search_generator import SearchGenerator

    if isinstance(search_alg, SearchGenerator):
        search_alg._counter = len(trials)
        total = search_alg.total_samples
        if total is None or total > len(trials):
            logging.getLogger(__name__).warning(
                "The searcher's state was not saved with the experiment; a fresh %s makes the trials not made "
                "before (%s more; it knows nothing of the earlier results).",
                type(search_alg.searcher).__name__, "any number of" if total is None else total - len(trials),
            )
        return
    search_alg.set_finished()


def _respecify_values(trials: list, search_alg, old_space: dict, new_space: dict) -> None:
    """Gives the trials that will run, and those not created yet, the values of a re-specified param space."""
    from tunesmith.tune.experiment.trial import Trial
    from tunesmith.tune.search._respecify import respecify_config

    for trial in trials:
        if trial.status != Trial.PENDING:
            continue  # a finished trial keeps the values it ran with
        # (the JSON logger writes the new config into the trial's params files as it starts)
        trial.config = respecify_config(trial.config, old_space, new_space)
    respecify = getattr(search_alg, "respecify", None)
    if respecify is not None:
        respecify(old_space, new_space)


def _restore_stopper(path: str, slot: str | None, stopper):
    """The run's Stopper as last saved (with its counts), in place of the fresh one from the RunConfig.

    Raises:
        ValueError: The saved stopper cannot be read; the message names the file.
    """
    from tunesmith.tune.result import STOPPER_STATE_FILE

    from tunesmith._internal.storage import slot_file

    stopper_file = os.path.join(path, slot_file(STOPPER_STATE_FILE, slot))
    if stopper is None or not os.path.exists(stopper_file):
        return stopper
    import cloudpickle  # noqa: F401  (rebuilds what was pickled by value)
    import pickle

    try:
        with open(stopper_file, "rb") as f:
            saved = pickle.load(f)
    except Exception as exc:
        raise ValueError(f"The stopper state {stopper_file} cannot be read: {exc}") from exc
    return saved if type(saved) is type(stopper) else stopper


def _sets_up_trials_itself(scheduler) -> bool:
    """Whether the scheduler's class is a user's that keeps its own record of trials (made in
    ``on_trial_add``) without restoring it from a saved state of its own."""
    for klass in type(scheduler).__mro__:
        if klass.__module__.startswith("tunesmith."):
            return False
        if "set_state" in vars(klass) or "restore" in vars(klass):
            return False
        if "on_trial_add" in vars(klass):
            return True
    return False


def _restore_scheduler(path: str, slot: str | None, scheduler, trials: list) -> bool:
    """Gives the scheduler its saved state; True when it was linked to the restored trials.

    Raises:
        ValueError: The state cannot be read or is another scheduler's; the message names the file.
    """
    import inspect

    from tunesmith.tune.result import SCHEDULER_STATE_FILE
    from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler

    from tunesmith._internal.storage import slot_file

    sched_file = os.path.join(path, slot_file(SCHEDULER_STATE_FILE, slot))
    if not os.path.exists(sched_file) or type(scheduler) is FIFOScheduler or _sets_up_trials_itself(scheduler):
        return False  # (FIFO keeps nothing; a user's class is told of each trial again, as on Ray)
    if "trials" in inspect.signature(scheduler.restore).parameters:
        try:
            scheduler.restore(sched_file, trials={t.trial_id: t for t in trials})
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"The scheduler state {sched_file} cannot be read: {type(exc).__name__}: {exc}") from exc
        return True
    try:  # a user scheduler with Ray's one-argument restore(); it learns of the trials by on_trial_add
        scheduler.restore(sched_file)
    except Exception as exc:
        raise ValueError(f"The scheduler state {sched_file} cannot be restored: {exc}") from exc
    return False
