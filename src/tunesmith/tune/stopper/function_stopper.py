"""A stopper that calls a user function."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from tunesmith.tune.stopper.stopper import Stopper


def _takes_two_arguments(function: Callable) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True  # builtins and C callables: trust the caller
    try:
        signature.bind("trial_id", {})
    except TypeError:
        return False
    return True


class FunctionStopper(Stopper):
    """Stops a trial when ``function(trial_id, result)`` returns True.

    Args:
        function: A callable taking the trial id and the result dict and
            returning a bool. If it has a ``stop_all`` attribute that is
            callable, the experiment stops when that returns True.

    Example:
        >>> from tunesmith.tune.stopper import FunctionStopper
        >>> stopper = FunctionStopper(lambda trial_id, result: result["loss"] < 0.1)
        >>> stopper("t1", {"loss": 0.05})
        True
    """

    def __init__(self, function: Callable[[str, dict], bool]):
        if not callable(function):
            raise TypeError(f"FunctionStopper needs a callable, got {type(function).__name__} ({function!r}).")
        if not self.is_valid_function(function):
            raise TypeError(
                f"A stop function must accept two arguments (trial_id, result); "
                f"{getattr(function, '__name__', function)!r} has the signature "
                f"{inspect.signature(function)}."
            )
        self._function = function

    @staticmethod
    def is_valid_function(function: Any) -> bool:
        """True if ``function`` can be used as a stop function."""
        if not callable(function) or isinstance(function, Stopper):
            return False
        return _takes_two_arguments(function)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self._function(trial_id, result))

    def stop_all(self) -> bool:
        stop_all = getattr(self._function, "stop_all", None)
        return bool(stop_all()) if callable(stop_all) else False
