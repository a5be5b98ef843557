"""Comet: one Comet experiment per trial (``CometLoggerCallback``).

Needs ``pip install comet-ml`` (the ``comet`` extra). With ``online=False``
each trial is kept as an offline archive (a ``.zip`` that ``comet upload``
sends later). Nothing here imports comet_ml until a trial is logged.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from tunesmith.tune.logger._tracker import (
    ExperimentRecord,
    TrackerBackend,
    TrackerLoggerCallback,
    TrialRecord,
    flatten_dict,
    result_step,
)

# How Ray's Comet logger sorts result fields: dropped, system info, "others", curves, metrics.
_EXCLUDE = ("done", "should_checkpoint", "config", "checkpoint_dir_name")
_SYSTEM = ("node_ip", "hostname", "pid", "date")
_OTHER = ("trial_id", "experiment_id", "experiment_tag")
_EPISODES = ("hist_stats/episode_reward", "hist_stats/episode_lengths")

# Comet gathers a great deal by default (code, git, environment, console, framework
# hooks); a trial's logger reports only what the trial gives it unless asked otherwise.
_QUIET_DEFAULTS = {
    "log_code": False, "log_graph": False, "auto_param_logging": False, "auto_metric_logging": False,
    "auto_output_logging": False, "log_env_details": False, "log_git_metadata": False,
    "log_git_patch": False, "log_env_gpu": False, "log_env_cpu": False, "log_env_host": False,
    "display_summary_level": 0,
}


def _matches(key: str, names: Sequence[str]) -> bool:
    return any(key == name or key.startswith(name + "/") for name in names)


class _CometBackend(TrackerBackend):
    library = "Comet"

    def __init__(self, online, tags, save_checkpoints, experiment_kwargs):
        self.online = online
        self.tags = list(tags or [])
        self.save_checkpoints = save_checkpoints
        self.experiment_kwargs = dict(experiment_kwargs)
        self._experiments: dict[str, Any] = {}

    def setup(self, experiment: ExperimentRecord) -> None:
        import comet_ml

        self._comet = comet_ml
        self._offline_dir = None
        if not self.online and "offline_directory" not in self.experiment_kwargs \
                and not os.environ.get("COMET_OFFLINE_DIRECTORY") and experiment.path:
            self._offline_dir = os.path.join(experiment.path, "comet")

    def start_trial(self, trial: TrialRecord) -> None:
        comet_ml = self._comet
        kwargs = {**_QUIET_DEFAULTS, **self.experiment_kwargs}
        if self._offline_dir is not None:
            os.makedirs(self._offline_dir, exist_ok=True)
            kwargs["offline_directory"] = self._offline_dir
        # Comet ends "the current experiment" when a new one is created in the same process;
        # trials run side by side, so none of them is made the current one.
        config_api = getattr(comet_ml, "config", None)
        if hasattr(config_api, "set_global_experiment"):
            config_api.set_global_experiment(None)
        cls = comet_ml.Experiment if self.online else comet_ml.OfflineExperiment
        experiment = cls(**kwargs)
        if hasattr(config_api, "set_global_experiment"):
            config_api.set_global_experiment(None)
        experiment.set_name(trial.trial_name)
        if self.tags:
            experiment.add_tags(self.tags)
        experiment.log_other("Created from", "tunesmith")
        experiment.log_others({"trial_id": trial.trial_id, "experiment_tag": trial.experiment_tag})
        experiment.log_parameters(trial.config)
        self._experiments[trial.trial_id] = experiment

    def update_trial(self, trial: TrialRecord) -> None:
        self._experiments[trial.trial_id].log_parameters(trial.config)

    def log_results(self, trial: TrialRecord, results: list[dict]) -> None:
        experiment = self._experiments[trial.trial_id]
        for result in results:
            step = result_step(result, prefer_timesteps=False)
            metrics, others, system, episodes = {}, {}, {}, {}
            for key, value in flatten_dict(result).items():
                if _matches(key, _EXCLUDE):
                    continue
                if _matches(key, _SYSTEM):
                    system[key] = value
                elif _matches(key, _OTHER):
                    others[key] = value
                elif _matches(key, _EPISODES):
                    episodes[key] = value
                elif isinstance(value, (int, float)) and not isinstance(value, bool) or type(value).__module__ == "numpy":
                    metrics[key] = value
            if others:
                experiment.log_others(others)
            for key, value in system.items():
                experiment.log_system_info(key, value)
            for key, values in episodes.items():
                if isinstance(values, (list, tuple)):
                    experiment.log_curve(key, x=list(range(len(values))), y=list(values), step=step)
            experiment.log_metrics(metrics, step=step)

    def log_checkpoint(self, trial: TrialRecord, path: str, iteration: int | None) -> None:
        if self.save_checkpoints and os.path.isdir(path):
            self._experiments[trial.trial_id].log_model(
                os.path.basename(os.path.normpath(path)), path, metadata={"training_iteration": iteration})

    def end_trial(self, trial: TrialRecord, status: str) -> None:
        experiment = self._experiments.pop(trial.trial_id)
        experiment.log_other("trial_status", status)
        experiment.end()


class CometLoggerCallback(TrackerLoggerCallback):
    """Logs each trial as a Comet experiment.

    Each trial gets an experiment named after the trial, with ``tags``, its
    config as parameters and its id and tag as "others". Numeric result
    fields are logged as metrics at the step ``training_iteration``; host, node IP, pid and date as
    system info; RLlib's episode histograms as curves. With
    ``save_checkpoints=True`` each persisted checkpoint is logged as a model.
    When the trial ends, ``trial_status`` (``FINISHED``, ``FAILED`` or
    ``KILLED``) is logged and the experiment ends. With ``online=False``
    the experiments are offline archives, in ``<experiment dir>/comet/``
    unless ``offline_directory`` or ``COMET_OFFLINE_DIRECTORY`` says otherwise.

    The Comet calls happen in a helper process, so they do not slow the
    experiment; ``Tuner.fit()`` returns once every experiment has ended.

    Args:
        online: Log to the Comet server (``comet_ml.Experiment``, needs an
            API key) or keep offline archives (``comet_ml.OfflineExperiment``).
        tags: Tags of every experiment.
        save_checkpoints: Log checkpoints as models.
        **experiment_kwargs: Passed on to the Comet experiment (``project_name``,
            ``workspace``, ``api_key``, ``offline_directory``, ...).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger.comet import CometLoggerCallback
        >>> callback = CometLoggerCallback(online=False, tags=["sweep"], project_name="my-project")
        >>> run_config = tune.RunConfig(callbacks=[callback])
    """

    _library = "Comet"
    _module = "comet_ml"
    _install = "comet-ml"

    def __init__(self, online: bool = True, tags: Sequence[str] | None = None, save_checkpoints: bool = False,
                 **experiment_kwargs: Any):
        if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
            raise TypeError(f"CometLoggerCallback(tags=...) must be a list of strings, got {tags!r}.")
        self.online = bool(online)
        self.tags = list(tags or [])
        self.save_checkpoints = bool(save_checkpoints)
        self.experiment_kwargs = experiment_kwargs
        super().__init__()

    def _make_backend(self) -> TrackerBackend:
        return _CometBackend(self.online, self.tags, self.save_checkpoints, self.experiment_kwargs)


__all__ = ["CometLoggerCallback"]
