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
        return run(run_or_experiment.run, **{**exp_kwargs, "metric": metric, "mode": mode,
                                              "search_alg": search_alg, "scheduler": scheduler,
                                              "verbose": verbose, "progress_reporter": progress_reporter,
                                              "fail_fast": fail_fast, "reuse_actors": reuse_actors,
                                              "raise_on_failed_trial": raise_on_failed_trial,
                                              "callbacks": callbacks,
                                              "max_concurrent_trials": max_concurrent_trials})
    if checkpoint_config is None:
        checkpoint_config = CheckpointConfig(
            num_to_keep=keep_checkpoints_num,
            checkpoint_score_attribute=checkpoint_score_attr.replace("min-", "") if checkpoint_score_attr else None,
            checkpoint_score_order="min" if checkpoint_score_attr and checkpoint_score_attr.startswith("min-") else "max",
            checkpoint_frequency=checkpoint_freq,
            checkpoint_at_end=checkpoint_at_end,
        )
    tune_config = TuneConfig(
        metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
        max_concurrent_trials=max_concurrent_trials, time_budget_s=time_budget_s, reuse_actors=reuse_actors,
        trial_name_creator=trial_name_creator, trial_dirname_creator=trial_dirname_creator,
        chdir_to_trial_dir=chdir_to_trial_dir,
    )
    run_config = RunConfig(
        name=name, storage_path=storage_path or local_dir, storage_filesystem=storage_filesystem,
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
    if resume and name:
        from tunesmith._internal.storage import default_storage_path

        candidate = os.path.join(storage_path or local_dir or default_storage_path(), name)
        from tunesmith.tune.tuner import Tuner

        if Tuner.can_restore(candidate):
            restore_path = candidate
    analysis, _ = run_experiment(inp, restore_path, {"resume_errored": resume == "ERRORED_ONLY"})
    if raise_on_failed_trial:
        failed = [t for t in analysis.trials if t.status == "ERROR"]
        if failed:
            from tunesmith.tune.error import TuneError

            raise TuneError(f"Trials did not complete: {[str(t) for t in failed]}")
    return analysis


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
                       reuse_actors=reuse_actors, raise_on_failed_trial=raise_on_failed_trial,
                       callbacks=callbacks, **kwargs)
        trials.extend(analysis.trials)
    return trials
