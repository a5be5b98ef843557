"""Writes a failed trial's error files (``error.txt``, ``error.pkl``) and reads the exception back."""
from __future__ import annotations

import logging
import os
import time

from tunesmith._internal.storage import write_bytes_atomic
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.result import EXPR_ERROR_FILE, EXPR_ERROR_PICKLE_FILE

logger = logging.getLogger(__name__)


def write_trial_error(trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
    """Appends failure number ``trial.num_failures`` to the trial's ``error.txt`` and replaces ``error.pkl``.

    Sets ``trial.error_file``, ``trial.error_msg`` (the traceback's last line) and
    ``trial.pickled_error_file``. Without a pickled exception, a ``TuneError``
    carrying the traceback text is pickled instead.

    Args:
        trial: The trial that failed (its directory is created when missing).
        tb: The full traceback text.
        exc_bytes: The cloudpickled exception, or None.

    Example:
        >>> import tempfile
        >>> trial = Trial("f", {}, trial_id="t_00000", experiment_path=tempfile.mkdtemp())
        >>> trial.num_failures = 1
        >>> write_trial_error(trial, "Traceback...\\nValueError: bad", None)
        >>> trial.error_msg
        'ValueError: bad'
    """
    lines = [line for line in tb.strip().splitlines() if line.strip()]
    trial.error_msg = lines[-1] if lines else tb
    try:
        os.makedirs(trial.local_path, exist_ok=True)
        error_file = os.path.join(trial.local_path, EXPR_ERROR_FILE)
        # A message may hold any text, undecodable file names too (os.fsdecode's surrogates).
        with open(error_file, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"Failure # {trial.num_failures} (occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})\n")
            f.write(tb if tb.endswith("\n") else tb + "\n")
    except OSError as exc:
        # A full disk must not turn one trial's failure into the experiment's: the error stays in memory.
        logger.error("Could not write the error of trial %s to its directory (%s); the error was:\n%s", trial, exc, tb)
        return
    trial.error_file = error_file
    if exc_bytes is None:
        import cloudpickle

        from tunesmith.tune.error import TuneError

        exc_bytes = cloudpickle.dumps(TuneError(tb))
    pickle_file = os.path.join(trial.local_path, EXPR_ERROR_PICKLE_FILE)
    try:
        write_bytes_atomic(pickle_file, exc_bytes)
    except OSError as exc:
        logger.error("Could not write the exception of trial %s to %s: %s", trial, pickle_file, exc)
        return
    trial.pickled_error_file = pickle_file


def load_exception(exc_bytes: bytes | None, tb: str) -> BaseException:
    """The trial's exception from its pickle, or a ``TuneError`` with the traceback when it cannot be read."""
    from tunesmith.tune.error import TuneError

    if exc_bytes:
        import cloudpickle

        try:
            exc = cloudpickle.loads(exc_bytes)
            if isinstance(exc, BaseException):
                return exc
        except Exception:
            pass
    return TuneError(tb)
