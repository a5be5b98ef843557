"""Class trainables and the wrappers around any trainable."""
from __future__ import annotations

from tunesmith.tune.trainable._trial_info import TrialInfo
from tunesmith.tune.trainable.function_trainable import FunctionTrainable, wrap_function
from tunesmith.tune.trainable.trainable import DurableTrainable, Trainable
from tunesmith.tune.trainable.util import with_parameters, with_resources

__all__ = ["DurableTrainable", "FunctionTrainable", "Trainable", "TrialInfo", "with_parameters", "with_resources",
           "wrap_function"]
