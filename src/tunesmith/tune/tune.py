"""``tune.run`` and ``tune.run_experiments``: the older entry points, returning ``ExperimentAnalysis``."""
from __future__ import annotations

import os
import warnings
from typing import Any

from tunesmith.tune._run import ExperimentInput, run_experiment
from tunesmith.tune.tune_config import TuneConfig
from tunesmith.train._config import CheckpointConfig, FailureConfig, RunConfig


def run(
    run_or_experiment: Any,
    name: str | None = None,
    metric: str | None = None,
    mode: str | None = None,
    stop: Any = None,
    time_budget_s: float | None = None,
    config: dict | None = None,
    resources_per_trial: Any = None,
    num_samples: int = 1,
    storage_path: str | None = None,
    storage_filesystem=None,
    search_alg=None,
    scheduler=None,
    checkpoint_config: CheckpointConfig | None = None,
    verbose: int = 3,
    progress_reporter=None,
    log_to_file: Any = False,
    trial_name_creator=None,
    trial_dirname_creator=None,
    sync_config=None,
    keep_checkpoints_num: int | None = None,
    checkpoint_score_attr: str | None = None,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = False,
    max_failures: int = 0,
    fail_fast: bool | str = False,
    restore: str | None = None,
    resume: bool | str | None = None,
    reuse_actors: bool | None = None,
    raise_on_failed_trial: bool = True,
    callbacks: list | None = None,
    max_concurrent_trials: int | None = None,
    local_dir: str | None = None,
    chdir_to_trial_dir: bool | None = None,
    export_formats: list[str] | None = None,
    loggers: list | None = None,
    **kwargs: Any,
):
    """Runs an experiment and returns an :class:`~tunesmith.tune.ExperimentAnalysis`.

    The older form of ``Tuner(...).fit()``; the arguments mean what they mean in Ray Tune.
    With ``raise_on_failed_trial`` (the default) a failed trial raises ``TuneError``
    after the experiment ends.

    Example:
        >>> from tunesmith import tune
        >>> def f(config):
        ...     tune.report(score=config["x"])
        >>> analysis = tune.run(f, config={"x": tune.grid_search([1, 2])}, verbose=0)  # doctest: +SKIP
    """
    from tunesmith.tune.experiment.experiment import Experiment

    _check_obsolete_arguments("tune.run()", kwargs, _OBSOLETE_RUN_ARGS, _run_argument_names())
    if loggers:
        # The older form of per-trial loggers (seed 003): Logger classes, run by a LegacyLoggerCallback
        # (for every experiment, whichever form it was given in).
        from tunesmith.tune.logger.logger import LegacyLoggerCallback

        callbacks = [*(callbacks or []), LegacyLoggerCallback(loggers)]
    if isinstance(run_or_experiment, (list, tuple)) and run_or_experiment and all(
        isinstance(e, Experiment) for e in run_or_experiment
    ):
        # Several experiments, one after the other, in one analysis of all their trials (as on Ray).
        from tunesmith.tune.analysis.experiment_analysis import ExperimentAnalysis

        analyses = []
        for exp in run_or_experiment:
            analyses.append(run(
                exp, metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler, verbose=verbose,
                progress_reporter=progress_reporter, fail_fast=fail_fast, reuse_actors=reuse_actors,
                raise_on_failed_trial=False, callbacks=callbacks, resume=resume,
                max_concurrent_trials=max_concurrent_trials, restore=restore))
            if fail_fast and _any_failed(analyses[-1].trials):
                break  # as in one run of them all: the first failed trial ends it
        trials = [t for a in analyses for t in a.trials]
        _raise_on_failed(trials, raise_on_failed_trial)
        return ExperimentAnalysis(analyses[-1].experiment_path, trials=trials, default_metric=metric,
                                  default_mode=mode)
    if isinstance(run_or_experiment, Experiment):
        exp_kwargs = run_or_experiment.run_kwargs()
        if restore is not None:
            exp_kwargs["restore"] = restore
        return run(run_or_experiment.run, **{**exp_kwargs, "metric": metric, "mode": mode,
                                              "search_alg": search_alg, "scheduler": scheduler,
                                              "verbose": verbose, "progress_reporter": progress_reporter,
                                              "fail_fast": fail_fast, "reuse_actors": reuse_actors,
                                              "raise_on_failed_trial": raise_on_failed_trial,
                                              "callbacks": callbacks, "resume": resume,
                                              "max_concurrent_trials": max_concurrent_trials})
    resume_options = _resume_options(resume)
    checkpoint_config = _with_legacy_checkpoint_args(
        checkpoint_config, keep_checkpoints_num, checkpoint_score_attr, checkpoint_freq, checkpoint_at_end
    )
    if isinstance(search_alg, str):
        from tunesmith.tune.search import create_searcher

        search_alg = create_searcher(search_alg)
    if isinstance(scheduler, str):
        from tunesmith.tune.schedulers import create_scheduler

        scheduler = create_scheduler(scheduler)
    tune_config = TuneConfig(
        metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
        max_concurrent_trials=max_concurrent_trials, time_budget_s=time_budget_s, reuse_actors=reuse_actors,
        trial_name_creator=trial_name_creator, trial_dirname_creator=trial_dirname_creator,
        chdir_to_trial_dir=chdir_to_trial_dir,
    )
    run_config = RunConfig(
        name=name, storage_path=storage_path, local_dir=local_dir, storage_filesystem=storage_filesystem,
        callbacks=callbacks, stop=stop,
        failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast),
        checkpoint_config=checkpoint_config, sync_config=sync_config,
        progress_reporter=progress_reporter, verbose=verbose, log_to_file=log_to_file,
    )
    inp = ExperimentInput(
        trainable=run_or_experiment, param_space=config or {}, tune_config=tune_config,
        run_config=run_config, resources_per_trial=resources_per_trial, default_verbose=3,
        initial_checkpoint=os.fspath(restore) if restore else None,  # "" (an unset CLI option): none
        export_formats=_export_formats(export_formats),
    )
    restore_path = None
    if resume_options is not None and name:
        from tunesmith._internal.storage import default_storage_path, join_experiment_path

        candidate = join_experiment_path(run_config.storage_path or default_storage_path(), name)
        from tunesmith.tune.tuner import Tuner

        if Tuner.can_restore(candidate, storage_filesystem=storage_filesystem):
            restore_path = candidate
    analysis, _ = run_experiment(inp, restore_path, resume_options)
    _raise_on_failed(analysis.trials, raise_on_failed_trial)
    return analysis


def _any_failed(trials: list) -> bool:
    return any(t.status == "ERROR" for t in trials)


def _raise_on_failed(trials: list, raise_on_failed_trial: bool) -> None:
    failed = [t for t in trials if t.status == "ERROR"]
    if raise_on_failed_trial and failed:
        from tunesmith.tune.error import TuneError

        raise TuneError(f"Trials did not complete: {[str(t) for t in failed]}")


# Arguments of earlier tune.run() versions that no longer do anything here: accepted with a warning,
# so that older scripts (seed 003's ``tune.run(MyDurableTrainable, sync_to_driver=False)``) still run.
_OBSOLETE_RUN_ARGS = frozenset({
    "sync_to_driver", "sync_to_cloud", "sync_on_checkpoint", "upload_dir", "server_port",
    "with_server", "queue_trials", "trial_executor", "global_checkpoint_period", "ray_auto_init",
    "run_errored_only", "return_trials", "sync_function", "syncer", "trial_name_creator_fn", "_remote",
    "_remote_string_queue", "_entrypoint", "_experiment_checkpoint_dir",
})


def _export_formats(export_formats: Any) -> tuple:
    if not export_formats:
        return ()
    if isinstance(export_formats, str):
        return (export_formats,)
    if not isinstance(export_formats, (list, tuple)) or not all(isinstance(f, str) for f in export_formats):
        raise TypeError(f"export_formats must be a format name or a list of them, got {export_formats!r}.")
    return tuple(export_formats)


def _run_argument_names() -> list[str]:
    import inspect

    return [name for name in inspect.signature(run).parameters if name != "kwargs"]


def _check_obsolete_arguments(where: str, kwargs: dict, obsolete: frozenset, known: list[str]) -> None:
    """Warns of arguments of earlier versions that are ignored; raises ``TypeError`` for any other
    unknown argument (a typo must not run an experiment without the setting)."""
    import difflib

    unknown = sorted(k for k in kwargs if k not in obsolete)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(f"{where} got unexpected keyword argument{'s' if len(unknown) > 1 else ''}: "
                        f"{', '.join(hints)}.")
    ignored = sorted(kwargs)
    if ignored:
        warnings.warn(f"{where} ignores arguments of earlier versions that no longer apply: "
                      f"{', '.join(ignored)}.", stacklevel=3)


# What each part of tune.run(resume="AUTO+ERRORED") sets, as Tuner.restore's options.
_RESUME_SETTINGS = {
    "ERRORED": {"resume_errored": True},
    "RESTART_ERRORED": {"restart_errored": True},
    "ERRORED_ONLY": {"resume_unfinished": False, "resume_errored": True},
    "RESTART_ERRORED_ONLY": {"resume_unfinished": False, "restart_errored": True},
}
_RESUME_MODES = ("AUTO", "LOCAL", "REMOTE", "PROMPT")


def _resume_options(resume: Any) -> dict | None:
    """``Tuner.restore`` options for ``tune.run(resume=...)``; None for a new run.

    ``True`` and ``"AUTO"`` (``"LOCAL"``, ``"REMOTE"``, ``"PROMPT"`` are older names of it) resume
    unfinished trials; ``"+ERRORED"``, ``"+RESTART_ERRORED"``, ``"+ERRORED_ONLY"`` and
    ``"+RESTART_ERRORED_ONLY"`` also resume or restart errored trials (the ``_ONLY`` forms only
    those); ``"ERRORED_ONLY"`` alone is ``"AUTO+ERRORED_ONLY"``.

    Example:
        >>> _resume_options("AUTO+RESTART_ERRORED")
        {'resume_unfinished': True, 'resume_errored': False, 'restart_errored': True}
    """
    if resume is None or resume is False:
        return None
    options = {"resume_unfinished": True, "resume_errored": False, "restart_errored": False}
    if resume is True:
        return options
    if not isinstance(resume, str):
        raise TypeError(f"tune.run(resume=...) takes True, False or a string such as 'AUTO', got {resume!r}.")
    mode, *settings = resume.split("+")
    if mode == "ERRORED_ONLY":
        mode, settings = "AUTO", ["ERRORED_ONLY", *settings]
    if mode not in _RESUME_MODES:
        raise ValueError(
            f"tune.run(resume={resume!r}): unknown resume mode {mode!r}; use one of {', '.join(_RESUME_MODES)}, "
            f"optionally followed by +{', +'.join(_RESUME_SETTINGS)}."
        )
    for setting in settings:
        if setting not in _RESUME_SETTINGS:
            raise ValueError(
                f"tune.run(resume={resume!r}): unknown resume setting {setting!r}; use one of "
                f"+{', +'.join(_RESUME_SETTINGS)}."
            )
        options.update(_RESUME_SETTINGS[setting])
    return options


def _with_legacy_checkpoint_args(checkpoint_config, keep_checkpoints_num, checkpoint_score_attr,
                                 checkpoint_freq, checkpoint_at_end) -> CheckpointConfig:
    """``checkpoint_config`` with the older checkpoint arguments of ``tune.run`` applied over it."""
    import dataclasses

    if isinstance(checkpoint_config, dict):
        checkpoint_config = CheckpointConfig(**checkpoint_config)
    elif checkpoint_config is not None and not isinstance(checkpoint_config, CheckpointConfig):
        raise TypeError(
            f"checkpoint_config must be a CheckpointConfig (or a dict of its fields), got "
            f"{type(checkpoint_config).__name__}."
        )
    config = checkpoint_config if checkpoint_config is not None else CheckpointConfig()
    changes: dict[str, Any] = {}
    if keep_checkpoints_num is not None:
        changes["num_to_keep"] = keep_checkpoints_num
    if checkpoint_score_attr:
        lower_is_better = checkpoint_score_attr.startswith("min-")
        changes["checkpoint_score_attribute"] = checkpoint_score_attr[4:] if lower_is_better else checkpoint_score_attr
        changes["checkpoint_score_order"] = "min" if lower_is_better else "max"
    if checkpoint_freq and checkpoint_freq > 0:  # as on Ray, 0 or less saves no periodic checkpoint
        changes["checkpoint_frequency"] = checkpoint_freq
    if checkpoint_at_end or config.checkpoint_at_end is None:
        changes["checkpoint_at_end"] = bool(checkpoint_at_end)  # tune.run saves no final checkpoint unless asked
    return dataclasses.replace(config, **changes)  # checked as a CheckpointConfig of its own


def run_experiments(experiments, scheduler=None, verbose: int = 2, progress_reporter=None,
                    resume: bool | str | None = False, reuse_actors: bool | None = None,
                    raise_on_failed_trial: bool = True, concurrent: bool = True, callbacks=None, **kwargs):
    """Runs one or more experiments and returns the list of their trials.

    Args:
        experiments: An ``Experiment``, a list of them, or a dict ``{name: spec}``.
    """
    from tunesmith.tune.experiment.experiment import Experiment

    if isinstance(experiments, Experiment):
        experiments = [experiments]
    elif isinstance(experiments, dict):
        experiments = [Experiment.from_json(name, spec) for name, spec in experiments.items()]
    elif not isinstance(experiments, (list, tuple)) or not all(isinstance(e, Experiment) for e in experiments):
        raise TypeError("run_experiments() takes an Experiment, a list of Experiments, or a dict {name: spec}.")
    trials = []
    for exp in experiments:
        # Every experiment runs; a failed trial of one is raised once all have run (as on Ray).
        analysis = run(exp, scheduler=scheduler, verbose=verbose, progress_reporter=progress_reporter,
                       resume=resume, reuse_actors=reuse_actors, raise_on_failed_trial=False,
                       callbacks=callbacks, **kwargs)
        trials.extend(analysis.trials)
        if kwargs.get("fail_fast") and _any_failed(analysis.trials):
            break  # as in one run of them all: the first failed trial ends it
    _raise_on_failed(trials, raise_on_failed_trial)
    return trials
