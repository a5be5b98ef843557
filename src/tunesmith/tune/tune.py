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

    if kwargs:
        unknown = ", ".join(sorted(kwargs))
        warnings.warn(f"tune.run() ignores arguments it does not know: {unknown}.", stacklevel=2)
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
        initial_checkpoint=os.fspath(restore) if restore is not None else None,
    )
    restore_path = None
    if resume_options is not None and name:
        from tunesmith._internal.storage import default_storage_path

        candidate = os.path.join(run_config.storage_path or default_storage_path(), name)
        from tunesmith.tune.tuner import Tuner

        if Tuner.can_restore(candidate):
            restore_path = candidate
    analysis, _ = run_experiment(inp, restore_path, resume_options)
    if raise_on_failed_trial:
        failed = [t for t in analysis.trials if t.status == "ERROR"]
        if failed:
            from tunesmith.tune.error import TuneError

            raise TuneError(f"Trials did not complete: {[str(t) for t in failed]}")
    return analysis


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

    config = dataclasses.replace(checkpoint_config) if checkpoint_config is not None else CheckpointConfig()
    if keep_checkpoints_num is not None:
        config.num_to_keep = keep_checkpoints_num
    if checkpoint_score_attr:
        lower_is_better = checkpoint_score_attr.startswith("min-")
        config.checkpoint_score_attribute = checkpoint_score_attr[4:] if lower_is_better else checkpoint_score_attr
        config.checkpoint_score_order = "min" if lower_is_better else "max"
    if checkpoint_freq:
        config.checkpoint_frequency = checkpoint_freq
    if checkpoint_at_end or config.checkpoint_at_end is None:
        config.checkpoint_at_end = bool(checkpoint_at_end)  # tune.run saves no final checkpoint unless asked
    return config


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
        analysis = run(exp, scheduler=scheduler, verbose=verbose, progress_reporter=progress_reporter,
                       resume=resume, reuse_actors=reuse_actors, raise_on_failed_trial=raise_on_failed_trial,
                       callbacks=callbacks, **kwargs)
        trials.extend(analysis.trials)
    return trials
