"""Weights & Biases: one W&B run per trial (``WandbLoggerCallback``) and ``setup_wandb`` inside a trial.

Needs ``pip install wandb`` (the ``wandb`` extra). ``WANDB_MODE=offline``
keeps runs on disk (``wandb sync`` uploads them later). Nothing here imports
wandb until a run is logged.
"""
from __future__ import annotations

import os
import re
from typing import Any, Sequence

from tunesmith.tune.logger._tracker import (
    FINISHED,
    ExperimentRecord,
    TrackerBackend,
    TrackerLoggerCallback,
    TrialRecord,
    flatten_dict,
    result_step,
)

WANDB_API_KEY = "WANDB_API_KEY"
WANDB_PROJECT = "WANDB_PROJECT"
WANDB_GROUP = "WANDB_GROUP"

# Result fields that go to the run's config (once) rather than its history, as in Ray.
_CONFIG_KEYS = ("trial_id", "experiment_tag", "node_ip", "experiment_id", "hostname", "pid", "date")
_EXCLUDE = ("done", "should_checkpoint", "timestamp", "checkpoint_dir_name")
_BAD_NAME_CHARS = re.compile(r"[^\w\-.]")


def _set_api_key(api_key_file: str | None, api_key: str | None) -> None:
    if api_key_file:
        if api_key:
            raise ValueError("Pass either api_key or api_key_file, not both.")
        with open(os.path.expanduser(api_key_file)) as f:
            api_key = f.readline().strip()
    if api_key:
        os.environ[WANDB_API_KEY] = api_key


def _history_row(result: dict, excludes: Sequence[str], media=None) -> dict:
    """The W&B history row of a result: its numbers, and (with ``media``) numpy images and videos."""
    skip = set(_CONFIG_KEYS) | set(_EXCLUDE) | set(excludes)
    row = {}
    for key, value in flatten_dict({k: v for k, v in result.items() if k not in skip}).items():
        if key in skip or any(key.startswith(e + "/") for e in excludes):
            continue
        if isinstance(value, bool):
            value = int(value)
        if media is not None and getattr(value, "ndim", 0) in (3, 4, 5):
            row[key] = media(value)
        elif isinstance(value, (int, float)) or type(value).__module__ == "numpy":
            row[key] = value
    return row


def _media(wandb, image_kwargs: dict, video_kwargs: dict):
    """As on Ray: an array of 3 dimensions is an image (H, W, C), of 4 a batch of images, of 5 a
    batch of videos (N, T, C, W, H)."""
    def convert(array):
        if array.ndim == 3:
            return wandb.Image(array, **image_kwargs)
        if array.ndim == 4:
            images = [wandb.Image(a, **image_kwargs) for a in array]
            return images if len(images) > 1 else images[0]
        videos = [wandb.Video(a, **video_kwargs) for a in array]
        return videos if len(videos) > 1 else videos[0]

    return convert


def _quiet_settings(wandb, extra: Any = None):
    settings = {"console": "off", "silent": True, "x_disable_stats": True, "x_disable_meta": True,
                "x_disable_machine_info": True}
    if isinstance(extra, dict):
        settings.update(extra)
    elif extra is not None:
        return extra
    return wandb.Settings(**settings)


class _WandbBackend(TrackerBackend):
    library = "W&B"

    def __init__(self, project, group, api_key_file, api_key, excludes, log_config, upload_checkpoints,
                 init_kwargs, image_kwargs=None, video_kwargs=None):
        self.image_kwargs = dict(image_kwargs or {})
        self.video_kwargs = dict(video_kwargs or {})
        self.project = project
        self.group = group
        self.api_key_file = api_key_file
        self.api_key = api_key
        self.excludes = list(excludes or [])
        self.log_config = log_config
        self.upload_checkpoints = upload_checkpoints
        self.init_kwargs = dict(init_kwargs)
        self._runs: dict[str, Any] = {}

    def setup(self, experiment: ExperimentRecord) -> None:
        _set_api_key(self.api_key_file, self.api_key)
        import wandb

        self._wandb = wandb
        self._project = self.project or os.environ.get(WANDB_PROJECT) or experiment.name
        self._group = self.group or os.environ.get(WANDB_GROUP) or experiment.name

    def start_trial(self, trial: TrialRecord) -> None:
        wandb = self._wandb
        kwargs = dict(self.init_kwargs)
        settings = _quiet_settings(wandb, kwargs.pop("settings", None))
        config = dict(trial.config)
        config.update(trial_id=trial.trial_id, experiment_tag=trial.experiment_tag)
        init = dict(
            id=trial.trial_id, name=trial.trial_name, project=self._project, group=self._group,
            config=config, reinit="create_new", resume="allow", allow_val_change=True, settings=settings,
        )
        if trial.local_path:
            os.makedirs(trial.local_path, exist_ok=True)
            init["dir"] = trial.local_path
        init.update(kwargs)
        self._runs[trial.trial_id] = wandb.init(**init)

    def update_trial(self, trial: TrialRecord) -> None:
        self._runs[trial.trial_id].config.update(trial.config, allow_val_change=True)

    def log_results(self, trial: TrialRecord, results: list[dict]) -> None:
        run = self._runs[trial.trial_id]
        media = _media(self._wandb, self.image_kwargs, self.video_kwargs)
        config = None
        if self.log_config:  # the trial's config with every result (it changes under PBT)
            config = {f"config/{k}": v for k, v in flatten_dict(trial.config).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for result in results:
            row = _history_row(result, self.excludes, media)
            if config:
                row.update(config)
            run.log(row, step=result_step(result, prefer_timesteps=False))

    def log_checkpoint(self, trial: TrialRecord, path: str, iteration: int | None) -> None:
        if not self.upload_checkpoints or not os.path.isdir(path):
            return
        name = _BAD_NAME_CHARS.sub("_", f"checkpoint_{trial.trial_name}")
        artifact = self._wandb.Artifact(name, type="model", metadata={"training_iteration": iteration})
        artifact.add_dir(path)
        self._runs[trial.trial_id].log_artifact(artifact)

    def end_trial(self, trial: TrialRecord, status: str) -> None:
        self._runs.pop(trial.trial_id).finish(exit_code=0 if status == FINISHED else 1)


class WandbLoggerCallback(TrackerLoggerCallback):
    """Logs each trial as a Weights & Biases run.

    Each trial gets a run with the trial's id and name, in ``group`` (the
    Tune experiment's name by default); its config (plus ``trial_id`` and
    ``experiment_tag``) is the run's config, and every numeric result field
    is logged to the run's history at the step ``training_iteration``. With ``upload_checkpoints=True``
    each persisted checkpoint is logged as a ``model`` artifact. When the
    trial ends the run finishes with exit code 0, or 1 if the trial failed.
    Set ``WANDB_MODE=offline`` (or pass ``mode="offline"``) to keep runs on
    disk, in each trial's directory under ``wandb/``.

    The W&B calls happen in a helper process, so they do not slow the
    experiment; ``Tuner.fit()`` returns once every run has finished.

    Args:
        project: The W&B project; ``WANDB_PROJECT`` or the experiment's name by default.
        group: The run group; ``WANDB_GROUP`` or the experiment's name by default.
        api_key_file: A file whose first line is the W&B API key.
        api_key: The W&B API key (else ``WANDB_API_KEY`` or ``wandb login``).
        excludes: Result fields not to log.
        log_config: Also log the trial's (numeric) config values with every result, as
            ``config/<key>`` (useful when PBT changes them); the config is always the run's config.
        upload_checkpoints: Log checkpoints as artifacts.
        save_checkpoints: Older name of ``upload_checkpoints``.
        upload_timeout: Kept for compatibility; the end of the experiment
            waits until every run has finished.
        video_kwargs: Keyword arguments for ``wandb.Video`` of a result value that is a numpy
            array of 5 dimensions (a batch of videos).
        image_kwargs: Keyword arguments for ``wandb.Image`` of a result value that is a numpy
            array of 3 (an image) or 4 (a batch of images) dimensions.
        **kwargs: Passed on to ``wandb.init`` (``entity``, ``mode``, ``tags``, ``notes``, ...).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger.wandb import WandbLoggerCallback
        >>> callback = WandbLoggerCallback(project="my-project", mode="offline", tags=["sweep"])
        >>> run_config = tune.RunConfig(callbacks=[callback])
    """

    _library = "W&B"
    _module = "wandb"

    def __init__(
        self,
        project: str | None = None,
        group: str | None = None,
        api_key_file: str | None = None,
        api_key: str | None = None,
        excludes: Sequence[str] | None = None,
        log_config: bool = False,
        upload_checkpoints: bool = False,
        save_checkpoints: bool = False,
        upload_timeout: int = 1800,
        video_kwargs: dict | None = None,
        image_kwargs: dict | None = None,
        **kwargs: Any,
    ):
        if api_key and api_key_file:
            raise ValueError("WandbLoggerCallback takes api_key or api_key_file, not both.")
        if excludes is not None and (isinstance(excludes, str) or not all(isinstance(e, str) for e in excludes)):
            raise TypeError(f"WandbLoggerCallback(excludes=...) must be a list of result field names, got {excludes!r}.")
        self.project = project
        self.group = group
        self.api_key_file = api_key_file
        self.api_key = api_key
        self.excludes = list(excludes or [])
        self.log_config = log_config
        self.upload_checkpoints = bool(upload_checkpoints or save_checkpoints)
        self.upload_timeout = upload_timeout
        self.video_kwargs = dict(video_kwargs or {})
        self.image_kwargs = dict(image_kwargs or {})
        self.kwargs = kwargs
        super().__init__()

    def _make_backend(self) -> TrackerBackend:
        return _WandbBackend(self.project, self.group, self.api_key_file, self.api_key, self.excludes,
                             self.log_config, self.upload_checkpoints, self.kwargs,
                             image_kwargs=self.image_kwargs, video_kwargs=self.video_kwargs)


def setup_wandb(
    config: dict | None = None,
    api_key: str | None = None,
    api_key_file: str | None = None,
    rank_zero_only: bool = True,
    **kwargs: Any,
):
    """Starts a W&B run for the current trial and returns it.

    Call it inside a training function (or a ``Trainable``'s ``setup``) and
    log with the returned run (``run.log({...})``). The run takes the trial's
    id and name, the experiment's name as its group and project (unless
    ``WANDB_PROJECT`` or ``project=`` says otherwise) and ``config`` (without a
    ``"wandb"`` entry) as its config. It finishes when the trial ends, with
    exit code 1 if the trial failed; a paused trial resumes its run.

    Args:
        config: The trial's config, logged as the run's config.
        api_key: The W&B API key.
        api_key_file: A file whose first line is the API key.
        rank_zero_only: In a distributed training function, only the worker
            of rank 0 logs; the others get a disabled run.
        **kwargs: Passed on to ``wandb.init`` (``project``, ``group``, ``mode``, ...).

    Returns:
        The ``wandb`` run.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger.wandb import setup_wandb
        >>> def train_fn(config):
        ...     run = setup_wandb(config, project="my-project", mode="offline")
        ...     for step in range(3):
        ...         run.log({"loss": 1 / (step + 1)})
        ...         tune.report({"loss": 1 / (step + 1)})
    """
    try:
        import wandb
    except ImportError as exc:
        raise ImportError("setup_wandb needs wandb: `pip install wandb`.") from exc
    from tunesmith._internal import trial_hooks
    from tunesmith._internal.session import get_context

    context = get_context()
    if rank_zero_only and context.get_world_rank() != 0:
        return wandb.init(mode="disabled", reinit="create_new")
    _set_api_key(api_key_file, api_key)
    experiment = context.get_experiment_name()
    init: dict[str, Any] = dict(
        config={k: v for k, v in (config or {}).items() if k != "wandb"},
        project=os.environ.get(WANDB_PROJECT) or experiment,
        group=os.environ.get(WANDB_GROUP) or experiment,
        reinit="create_new", allow_val_change=True, settings=_quiet_settings(wandb),
    )
    trial_id = context.get_trial_id()
    if trial_id:
        init.update(id=trial_id, name=context.get_trial_name(), resume="allow")
        if context.get_trial_dir():
            init["dir"] = context.get_trial_dir()
    if "settings" in kwargs:
        init["settings"] = _quiet_settings(wandb, kwargs.pop("settings"))
    init.update(kwargs)
    run = wandb.init(**init)
    if trial_id:
        def _finish(outcome: str) -> None:
            run.finish(exit_code=1 if outcome == trial_hooks.FAILED else 0)

        trial_hooks.add_trial_end_hook(_finish)
    return run


__all__ = ["WandbLoggerCallback", "setup_wandb"]
