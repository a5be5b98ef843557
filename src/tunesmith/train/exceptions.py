"""Errors of a trainer's worker group."""
from __future__ import annotations

from tunesmith.train._result import TrainingFailedError


class WorkerGroupError(TrainingFailedError):
    """One or more training workers raised or died; the group was ended.

    Attributes:
        worker_failures: The error of each failed worker, by world rank.
        original_error: The error that ended the group (a worker that died
            comes first, then the earliest error raised).

    Example:
        >>> from tunesmith.train import TrainingFailedError, WorkerGroupError
        >>> err = WorkerGroupError("rank 1 failed", {1: ValueError("bad batch")})
        >>> isinstance(err, TrainingFailedError), err.worker_failures[1]
        (True, ValueError('bad batch'))
    """

    def __init__(
        self,
        message: str,
        worker_failures: dict[int, BaseException],
        original_error: BaseException | None = None,
        traceback_str: str | None = None,
    ):
        if original_error is None and worker_failures:
            original_error = worker_failures[min(worker_failures)]
        super().__init__(message, original_error=original_error, traceback_str=traceback_str)
        self.worker_failures = dict(worker_failures)

    def __reduce__(self):
        return (type(self), (str(self), self.worker_failures, self.original_error, self.traceback_str))


class WorkerDiedError(RuntimeError):
    """A training worker process ended without returning or raising (killed, or crashed)."""
