"""``Experiment``: the older way to describe one experiment for ``tune.run_experiments``."""
from __future__ import annotations

import os
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
        self._checkpoint_config = checkpoint_config
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

    # The keys of ``spec`` that searchers, schedulers and callbacks may be shown (``public_spec``).
    PUBLIC_KEYS = ("stop", "num_samples", "time_budget_s")

    @property
    def spec(self) -> dict[str, Any]:
        """The experiment as a dict: ``run`` (the trainable's name), ``stop``, ``config``,
        ``num_samples`` and the other arguments it was made with."""
        return {
            "run": self.run_identifier, "stop": self.stop if isinstance(self.stop, dict) else {},
            "time_budget_s": self.time_budget_s, "config": self.config,
            "resources_per_trial": self.resources_per_trial, "num_samples": self.num_samples,
            "storage_path": self.storage_path, "sync_config": self.sync_config,
            "checkpoint_config": self.checkpoint_config, "trial_name_creator": self.trial_name_creator,
            "trial_dirname_creator": self.trial_dirname_creator, "log_to_file": self.log_to_file,
            "export_formats": self.export_formats or [], "max_failures": self.max_failures,
            "restore": self.restore,
        }

    @property
    def public_spec(self) -> dict[str, Any]:
        """The entries of ``spec`` named by ``PUBLIC_KEYS``."""
        spec = self.spec
        return {k: spec[k] for k in self.PUBLIC_KEYS}

    @property
    def run_identifier(self) -> str:
        """The name the trainable runs under (a registered name, or the function's or class's name)."""
        return self.get_trainable_name(self.run)

    @staticmethod
    def get_trainable_name(run_object: Any) -> str:
        """The name of a trainable (a registered name is returned as it is)."""
        from tunesmith.tune.registry import trainable_name

        return trainable_name(run_object)

    @classmethod
    def register_if_needed(cls, run_object: Any) -> str:
        """Registers a trainable under its name (a registered name is left as it is); returns the name."""
        from tunesmith.tune.registry import register_trainable

        name = cls.get_trainable_name(run_object)
        if not isinstance(run_object, str):
            register_trainable(name, run_object, warn=False)
        return name

    @property
    def checkpoint_config(self):
        """The ``CheckpointConfig`` (the default one when none was given, as on Ray)."""
        if self._checkpoint_config is None:
            from tunesmith.train._config import CheckpointConfig

            return CheckpointConfig()
        return self._checkpoint_config

    @checkpoint_config.setter
    def checkpoint_config(self, value) -> None:
        self._checkpoint_config = value

    @property
    def stopper(self):
        """The stopper given as ``stop`` (None when ``stop`` is a dict of criteria, or not given)."""
        return None if self.stop is None or isinstance(self.stop, dict) else self.stop

    @property
    def path(self) -> str | None:
        """Where the experiment's directory is (None while it has no name: ``tune.run`` names it)."""
        if self.name is None:
            return None
        from tunesmith._internal.storage import default_storage_path, join_experiment_path

        return join_experiment_path(os.fspath(self.storage_path or default_storage_path()), self.name)

    @property
    def local_path(self) -> str | None:
        """The experiment's directory when its storage is on this machine; None for a store's URI."""
        path = self.path
        return None if path is None or "://" in path and not path.startswith("file://") else path

    @property
    def remote_path(self) -> str | None:
        """The experiment's URI on a store (``s3://...``); None when its storage is on this machine."""
        path = self.path
        return path if path is not None and "://" in path and not path.startswith("file://") else None

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
            storage_path=self.storage_path, checkpoint_config=self._checkpoint_config,
            max_failures=self.max_failures, log_to_file=self.log_to_file,
            trial_name_creator=self.trial_name_creator, trial_dirname_creator=self.trial_dirname_creator,
            sync_config=self.sync_config, checkpoint_freq=self.checkpoint_freq,
            checkpoint_at_end=self.checkpoint_at_end, keep_checkpoints_num=self.keep_checkpoints_num,
            checkpoint_score_attr=self.checkpoint_score_attr, restore=self.restore,
            storage_filesystem=self.storage_filesystem, export_formats=self.export_formats,
        )
