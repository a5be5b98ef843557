"""Aim: one Aim run per trial in a local Aim repository (``AimLoggerCallback``).

Needs ``pip install aim`` (the ``aim`` extra). Look at the runs with
``aim up --repo <repo>``. Nothing here imports aim until a run is logged.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

from tunesmith.tune.logger._tracker import (
    ExperimentRecord,
    TrackerBackend,
    TrackerLoggerCallback,
    TrialRecord,
    numeric_items,
    result_step,
)

# As Ray names them: metrics appear in Aim as ``ray/tune/<field>``.
_METRIC_PREFIX = "ray/tune/"
_NOT_METRICS = ("pid", "timestamp", "done", "should_checkpoint", "time_total_s", "training_iteration", "epoch")


class _AimBackend(TrackerBackend):
    library = "Aim"

    def __init__(self, repo, experiment_name, metrics, run_kwargs):
        self.repo = repo
        self.experiment_name = experiment_name
        self.metrics = list(metrics) if metrics else None
        self.run_kwargs = dict(run_kwargs)
        self._runs: dict[str, Any] = {}
        self._hashes: list[str] = []

    def setup(self, experiment: ExperimentRecord) -> None:
        from aim.sdk import Repo, Run

        self._Run = Run
        self._repo_path = os.path.abspath(os.path.expanduser(self.repo or experiment.path or "."))
        os.makedirs(self._repo_path, exist_ok=True)
        if not Repo.exists(self._repo_path):
            Repo.from_path(self._repo_path, init=True)
        self._experiment = self.experiment_name or experiment.name

    def start_trial(self, trial: TrialRecord) -> None:
        kwargs = {"system_tracking_interval": None, "log_system_params": False, "capture_terminal_logs": False}
        kwargs.update(self.run_kwargs)
        run = self._Run(repo=self._repo_path, experiment=self._experiment, **kwargs)
        run.name = trial.trial_name
        run["trial_id"] = trial.trial_id
        run["trial_log_dir"] = trial.local_path
        run["experiment_tag"] = trial.experiment_tag
        run["hparams"] = trial.config
        self._runs[trial.trial_id] = run
        self._hashes.append(run.hash)

    def update_trial(self, trial: TrialRecord) -> None:
        self._runs[trial.trial_id]["hparams"] = trial.config

    def log_results(self, trial: TrialRecord, results: list[dict]) -> None:
        run = self._runs[trial.trial_id]
        wanted = set(self.metrics) if self.metrics else None
        for result in results:
            step = result_step(result)
            epoch = result.get("epoch")
            context = result.get("context") if isinstance(result.get("context"), dict) else None
            fields = {k: v for k, v in result.items() if k != "context"}
            for key, value in numeric_items(fields, exclude=_NOT_METRICS).items():
                if wanted is not None and key not in wanted:
                    continue
                if isinstance(value, float) and not math.isfinite(value):
                    continue  # Aim stores finite numbers only
                run.track(value, name=_METRIC_PREFIX + key, step=step,
                          epoch=epoch if isinstance(epoch, int) else None, context=context)

    def end_trial(self, trial: TrialRecord, status: str) -> None:
        run = self._runs.pop(trial.trial_id)
        run["trial_status"] = status
        run.close()

    def close(self) -> None:
        # Aim's UI indexes finished runs itself; indexing them here makes them visible to
        # ``Repo.iter_runs`` and queries at once.
        from aim.sdk import Repo
        from aim.sdk.index_manager import RepoIndexManager

        repo = Repo.from_path(self._repo_path)
        manager = RepoIndexManager.get_index_manager(repo)
        for run_hash in self._hashes:
            manager.index(run_hash)


class AimLoggerCallback(TrackerLoggerCallback):
    """Logs each trial as a run in an Aim repository.

    Each trial gets a run in the Aim experiment ``experiment_name``, named
    after the trial, with the trial's config under ``hparams`` and its id,
    tag and directory as run params. Every numeric result field (or only
    those in ``metrics``) is tracked as the metric ``ray/tune/<field>`` at
    the step ``training_iteration`` (``timesteps_total`` when reported); a
    result's ``epoch`` and ``context`` are passed along. When the trial ends
    the run gets ``trial_status`` (``FINISHED``, ``FAILED`` or ``KILLED``)
    and is closed.

    The Aim calls happen in a helper process, so they do not slow the
    experiment; ``Tuner.fit()`` returns once every run is closed and indexed.

    Args:
        repo: Path of the Aim repository (created if needed), or an ``aim.Repo``; the experiment
            directory by default.
        experiment_name: The Aim experiment; the Tune experiment's name by default.
        metrics: Result fields to track; every numeric field when None.
        **aim_run_kwargs: Passed on to ``aim.Run`` (``system_tracking_interval``,
            ``log_system_params``, ``capture_terminal_logs``, ...).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger.aim import AimLoggerCallback
        >>> callback = AimLoggerCallback(repo="/tmp/aim-repo", metrics=["loss"])
        >>> run_config = tune.RunConfig(callbacks=[callback])
    """

    _library = "Aim"
    _module = "aim"

    def __init__(
        self,
        repo: str | None = None,
        experiment_name: str | None = None,
        metrics: Sequence[str] | None = None,
        **aim_run_kwargs: Any,
    ):
        if metrics is not None and (isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics)):
            raise TypeError(f"AimLoggerCallback(metrics=...) must be a list of result field names, got {metrics!r}.")
        if repo is not None and not isinstance(repo, (str, os.PathLike)):
            # An aim.Repo object (as on Ray): its directory travels to the helper process.
            root = getattr(repo, "root_path", None)
            if not isinstance(root, str):
                raise TypeError(
                    f"AimLoggerCallback(repo=...) takes the path of an Aim repository or an aim.Repo, got "
                    f"{type(repo).__name__}."
                )
            repo = root
        self.repo = os.fspath(repo) if repo is not None else None
        self.experiment_name = experiment_name
        self.metrics = list(metrics) if metrics is not None else None
        self.aim_run_kwargs = aim_run_kwargs
        super().__init__()

    def _make_backend(self) -> TrackerBackend:
        return _AimBackend(self.repo, self.experiment_name, self.metrics, self.aim_run_kwargs)


__all__ = ["AimLoggerCallback"]
