"""tunesmith.tune: the Ray Tune API.

Every public name is loaded on first access.
"""
from __future__ import annotations

from typing import Any

from tunesmith._lazy import lazy_getattr

_T = "tunesmith.tune"
_LAZY = {
    # entry points
    "Tuner": f"{_T}.tuner:Tuner",
    "TuneConfig": f"{_T}.tune_config:TuneConfig",
    "run": f"{_T}.tune:run",
    "run_experiments": f"{_T}.tune:run_experiments",
    "Experiment": f"{_T}.experiment.experiment:Experiment",
    "ExperimentAnalysis": f"{_T}.analysis.experiment_analysis:ExperimentAnalysis",
    "ResultGrid": f"{_T}.result_grid:ResultGrid",
    "TuneError": f"{_T}.error:TuneError",
    # configs shared with train
    "RunConfig": "tunesmith.train._config:RunConfig",
    "CheckpointConfig": "tunesmith.train._config:CheckpointConfig",
    "FailureConfig": "tunesmith.train._config:FailureConfig",
    "SyncConfig": "tunesmith.train._config:SyncConfig",
    "Checkpoint": "tunesmith.train._checkpoint:Checkpoint",
    # session functions
    "report": "tunesmith._internal.session:report",
    "get_checkpoint": "tunesmith._internal.session:get_checkpoint",
    "get_context": "tunesmith._internal.session:get_context",
    "get_trial_resources": "tunesmith._internal.session:get_trial_resources",
    "checkpoint_dir": "tunesmith._internal.session:checkpoint_dir",
    "track": f"{_T}.track:",
    # trainables
    "Trainable": f"{_T}.trainable.trainable:Trainable",
    "DurableTrainable": f"{_T}.trainable.trainable:DurableTrainable",
    "with_parameters": f"{_T}.trainable.util:with_parameters",
    "with_resources": f"{_T}.trainable.util:with_resources",
    "register_trainable": f"{_T}.registry:register_trainable",
    "register_env": f"{_T}.registry:register_env",
    "PlacementGroupFactory": f"{_T}.execution.placement_groups:PlacementGroupFactory",
    # callbacks, stopping, reporting
    "Callback": f"{_T}.callback:Callback",
    "Stopper": f"{_T}.stopper.stopper:Stopper",
    "ProgressReporter": f"{_T}.progress_reporter:ProgressReporter",
    "CLIReporter": f"{_T}.progress_reporter:CLIReporter",
    "JupyterNotebookReporter": f"{_T}.progress_reporter:JupyterNotebookReporter",
    # search spaces
    "uniform": f"{_T}.search.sample:uniform",
    "quniform": f"{_T}.search.sample:quniform",
    "loguniform": f"{_T}.search.sample:loguniform",
    "qloguniform": f"{_T}.search.sample:qloguniform",
    "randn": f"{_T}.search.sample:randn",
    "qrandn": f"{_T}.search.sample:qrandn",
    "randint": f"{_T}.search.sample:randint",
    "qrandint": f"{_T}.search.sample:qrandint",
    "lograndint": f"{_T}.search.sample:lograndint",
    "qlograndint": f"{_T}.search.sample:qlograndint",
    "choice": f"{_T}.search.sample:choice",
    "sample_from": f"{_T}.search.sample:sample_from",
    "grid_search": f"{_T}.search.sample:grid_search",
    "create_searcher": f"{_T}.search:create_searcher",
    "create_scheduler": f"{_T}.schedulers:create_scheduler",
    # submodules
    "search": f"{_T}.search:",
    "schedulers": f"{_T}.schedulers:",
    "stopper": f"{_T}.stopper:",
    "logger": f"{_T}.logger:",
    "utils": f"{_T}.utils:",
    "integration": f"{_T}.integration:",
    "execution": f"{_T}.execution:",
    "experiment": f"{_T}.experiment:",
    "analysis": f"{_T}.analysis:",
    "progress_reporter": f"{_T}.progress_reporter:",
    "result": f"{_T}.result:",
    "resources": f"{_T}.resources:",
    "function_runner": f"{_T}.function_runner:",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
