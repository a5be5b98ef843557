"""Errors raised by Tune."""
from __future__ import annotations


class TuneError(Exception):
    """An error in running or analysing a Tune experiment.

    Raised, for example, when trials failed and the experiment was set to
    raise on failure, or when an experiment cannot be restored.

    Example:
        >>> from tunesmith.tune import TuneError
        >>> try:
        ...     raise TuneError("Trials did not complete: [train_fn_00001]")
        ... except TuneError as e:
        ...     print(e)
        Trials did not complete: [train_fn_00001]
    """
