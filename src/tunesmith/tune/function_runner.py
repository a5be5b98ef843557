"""The function API's older import path: ``tunesmith.tune.function_runner.StatusReporter``.

A function written as ``def trainable(config, reporter)`` receives a
:class:`StatusReporter`; calling it reports one result.

Example:
    >>> from tunesmith.tune.function_runner import StatusReporter
    >>> def trainable(config, reporter: StatusReporter):
    ...     for step in range(3):
    ...         reporter(mean_loss=1.0 / (step + 1), timesteps_this_iter=10)
"""
from __future__ import annotations

from tunesmith._internal.session import StatusReporter

__all__ = ["StatusReporter"]
