"""The ``Stopper`` interface, the combinator of stoppers, and ``create_stopper``."""
from __future__ import annotations

import abc
from typing import Any


class Stopper(abc.ABC):
    """Base class for stopping trials, or the whole experiment, on a criterion.

    The driver calls the stopper with every result a trial reports; when it
    returns True that trial stops. After each turn of its event loop the driver
    asks :meth:`stop_all`; when it returns True every trial stops and no new
    trial starts. Running trials stop after their current iteration.

    Example:
        >>> from tunesmith import tune
        >>> class StopOnAccuracy(tune.Stopper):
        ...     def __init__(self, threshold):
        ...         self.threshold = threshold
        ...         self.reached = False
        ...
        ...     def __call__(self, trial_id, result):
        ...         self.reached = self.reached or result["mean_accuracy"] >= self.threshold
        ...         return self.reached
        ...
        ...     def stop_all(self):
        ...         return self.reached
        >>> stopper = StopOnAccuracy(0.8)
        >>> stopper("t1", {"mean_accuracy": 0.9})
        True
    """

    @abc.abstractmethod
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Returns True if the trial ``trial_id`` should stop after ``result``."""

    def stop_all(self) -> bool:
        """Returns True if the whole experiment should stop."""
        return False


class CombinedStopper(Stopper):
    """Stops a trial, or the experiment, when any of the given stoppers says so.

    The stoppers are asked in order, and those after one that says stop do not
    see that result (as on Ray): stateful stoppers later in the list (an
    :class:`~tunesmith.tune.stopper.ExperimentPlateauStopper`) count only the
    results that reached them.

    Args:
        *stoppers: The stoppers to combine.

    Example:
        >>> from tunesmith.tune.stopper import (
        ...     CombinedStopper, MaximumIterationStopper, TrialPlateauStopper)
        >>> stopper = CombinedStopper(
        ...     MaximumIterationStopper(max_iter=20),
        ...     TrialPlateauStopper(metric="loss"),
        ... )
    """

    def __init__(self, *stoppers: Stopper):
        for i, stopper in enumerate(stoppers):
            if not isinstance(stopper, Stopper):
                raise TypeError(
                    f"CombinedStopper takes Stopper instances; argument {i} is "
                    f"{type(stopper).__name__} ({stopper!r})."
                )
        self._stoppers = tuple(stoppers)

    @property
    def stoppers(self) -> tuple[Stopper, ...]:
        return self._stoppers

    def _forget_trial(self, trial_id: str) -> None:
        for stopper in self._stoppers:
            forget = getattr(stopper, "_forget_trial", None)
            if forget is not None:
                forget(trial_id)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return any(stopper(trial_id, result) for stopper in self._stoppers)

    def stop_all(self) -> bool:
        return any(stopper.stop_all() for stopper in self._stoppers)


def create_stopper(stop: Any) -> Stopper:
    """Turns a ``RunConfig(stop=...)`` value into a :class:`Stopper`.

    Args:
        stop: None (never stop), a dict of thresholds (a trial stops once any
            ``result[key] >= value``), a function ``f(trial_id, result) -> bool``,
            or a :class:`Stopper`.

    Returns:
        A Stopper.

    Raises:
        TypeError: If ``stop`` is none of these.
        ValueError: If a dict threshold is not a number.

    Example:
        >>> from tunesmith.tune.stopper import create_stopper
        >>> stopper = create_stopper({"training_iteration": 10})
        >>> stopper("t1", {"training_iteration": 10})
        True
    """
    from tunesmith.tune.stopper.dict_stopper import DictStopper
    from tunesmith.tune.stopper.function_stopper import FunctionStopper
    from tunesmith.tune.stopper.noop import NoopStopper

    if stop is None:
        return NoopStopper()
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, type) and issubclass(stop, Stopper):
        raise TypeError(
            f"stop={stop.__name__} is a Stopper class; pass an instance, e.g. stop={stop.__name__}(...)."
        )
    if isinstance(stop, dict):
        return DictStopper(stop)
    if isinstance(stop, (list, tuple)) and stop and all(isinstance(s, Stopper) for s in stop):
        return CombinedStopper(*stop)  # as on Ray: a trial stops when any of them says so
    if callable(stop):
        return FunctionStopper(stop)
    raise TypeError(
        f"stop must be None, a dict of thresholds, a function (trial_id, result) -> bool, "
        f"or a tune.Stopper; got {type(stop).__name__} ({stop!r})."
    )


