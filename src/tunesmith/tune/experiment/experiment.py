"""``Experiment``: the older way to describe one experiment for ``tune.run_experiments``."""
from __future__ import annotations

import warnings
from typing import Any


# Arguments of earlier Experiment versions with no effect here, besides tune.run's own.
_OBSOLETE_EXPERIMENT_ARGS = frozenset({"custom_loggers"})


def _experiment_argument_names() -> list[str]:
    import inspect

    return [n for n in inspect.signature(Experiment.__init__).parameters if n not in ("self", "kwargs")]


class Experiment:
    """One experiment: a trainable, its config and how to run it.

    Args:
        name: Experiment name (its directory under ``storage_path``).
        run: The trainable: a function, a ``Trainable`` class or a registered name.
        stop: Stopping criteria (dict, function or ``Stopper``).
        time_budget_s: Seconds after which the experiment stops.
        config: The param space.
        resources_per_trial: Resources of each trial.
        num_samples: Samples of the param space.
        storage_path: Results root (``local_dir`` is its older name).
        checkpoint_config: A ``CheckpointConfig``.
        max_failures: Retries per trial.
        log_to_file: Capture trial output to files.
        restore: A checkpoint (path) every trial of the experiment starts from.
        storage_filesystem: The ``pyarrow.fs`` filesystem of ``storage_path``.
        export_formats: Formats the trainable's ``export_model`` writes when a trial ends.

    Example:
        >>> from tunesmith import tune
        >>> exp = tune.Experiment("demo", run=lambda config: {"x": 1}, config={"a": 1})
    """

    def __init__(
        self,
        name: str | None,
        run: Any,
        stop: Any = None,
        time_budget_s: float | None = None,
        config: dict | None = None,
        resources_per_trial: Any = None,
        num_samples: int = 1,
        storage_path: str | None = None,
        local_dir: str | None = None,
        checkpoint_config=None,
        max_failures: int = 0,
        log_to_file: Any = False,
        trial_name_creator=None,
        trial_dirname_creator=None,
        sync_config=None,
        checkpoint_freq: int = 0,
        checkpoint_at_end: bool = False,
        keep_checkpoints_num: int | None = None,
        checkpoint_score_attr: str | None = None,
        restore: Any = None,
        storage_filesystem=None,
        export_formats: list[str] | None = None,
        **kwargs: Any,
    ):
        if run is None:
            raise ValueError("Experiment(run=...) is required: a function, a Trainable class or a registered name.")
        self.name = name
        self.run = run
        self.stop = stop
        self.time_budget_s = time_budget_s
        self.config = config or {}
        self.resources_per_trial = resources_per_trial
        self.num_samples = num_samples
        self.storage_path = storage_path or local_dir
        if isinstance(checkpoint_config, dict):  # the dict form of a run_experiments spec
            from tunesmith.train._config import CheckpointConfig

            checkpoint_config = CheckpointConfig(**checkpoint_config)
        self.checkpoint_config = checkpoint_config
        self.max_failures = max_failures
        self.log_to_file = log_to_file
        self.trial_name_creator = trial_name_creator
        self.trial_dirname_creator = trial_dirname_creator
        if isinstance(sync_config, dict):  # the dict form of a run_experiments spec
            from tunesmith.train._config import SyncConfig

            sync_config = SyncConfig(**sync_config)
        self.sync_config = sync_config
        self.checkpoint_freq = checkpoint_freq
        self.checkpoint_at_end = checkpoint_at_end
        self.keep_checkpoints_num = keep_checkpoints_num
        self.checkpoint_score_attr = checkpoint_score_attr
        self.restore = restore
        self.storage_filesystem = storage_filesystem
        self.export_formats = export_formats
        self.extra = kwargs
        from tunesmith.tune.tune import _OBSOLETE_RUN_ARGS, _check_obsolete_arguments

        _check_obsolete_arguments(f"Experiment {name!r}", kwargs, _OBSOLETE_RUN_ARGS | _OBSOLETE_EXPERIMENT_ARGS,
                                  _experiment_argument_names())

    @classmethod
    def from_json(cls, name: str, spec: dict) -> "Experiment":
        """Builds an experiment from the dict form ``{"run": ..., "config": ..., "stop": ...}``."""
        if "run" not in spec:
            raise ValueError(f"Experiment {name!r} has no 'run' entry naming its trainable.")
        spec = dict(spec)
        if "env" in spec:
            # As on Ray (for RLlib): the environment's registered name goes into the config.
            spec["config"] = {**(spec.get("config") or {}), "env": spec.pop("env")}
        return cls(name, spec.pop("run"), **spec)

    def run_kwargs(self) -> dict:
        """The arguments of ``tune.run`` this experiment stands for."""
        return dict(
            name=self.name, stop=self.stop, time_budget_s=self.time_budget_s, config=self.config,
            resources_per_trial=self.resources_per_trial, num_samples=self.num_samples,
            storage_path=self.storage_path, checkpoint_config=self.checkpoint_config,
            max_failures=self.max_failures, log_to_file=self.log_to_file,
            trial_name_creator=self.trial_name_creator, trial_dirname_creator=self.trial_dirname_creator,
            sync_config=self.sync_config, checkpoint_freq=self.checkpoint_freq,
            checkpoint_at_end=self.checkpoint_at_end, keep_checkpoints_num=self.keep_checkpoints_num,
            checkpoint_score_attr=self.checkpoint_score_attr, restore=self.restore,
            storage_filesystem=self.storage_filesystem, export_formats=self.export_formats,
        )
