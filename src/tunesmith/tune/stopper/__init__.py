"""Stopping criteria for trials and experiments (``tune.stopper``)."""
from __future__ import annotations

from tunesmith.tune.stopper.dict_stopper import DictStopper
from tunesmith.tune.stopper.experiment_plateau import ExperimentPlateauStopper
from tunesmith.tune.stopper.function_stopper import FunctionStopper
from tunesmith.tune.stopper.maximum_iteration import MaximumIterationStopper
from tunesmith.tune.stopper.noop import NoopStopper
from tunesmith.tune.stopper.stopper import CombinedStopper, Stopper, create_stopper
from tunesmith.tune.stopper.timeout import TimeoutStopper
from tunesmith.tune.stopper.trial_plateau import TrialPlateauStopper

__all__ = [
    "CombinedStopper",
    "DictStopper",
    "ExperimentPlateauStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "Stopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
    "create_stopper",
]
