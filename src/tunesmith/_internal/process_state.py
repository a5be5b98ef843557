"""Process-wide settings a trial may change, and the thread pools of numeric libraries in workers.

A reused worker runs one trial after another; what a trial sets for the whole process
(warning filters, numpy's error handling, torch's default dtype, the umask, signal
handlers...) would otherwise reach the next trial, which on Ray starts in a process of its
own. ``ProcessSettings`` takes a snapshot before a trial and puts it back after.

Thread pools: a trial gets ``OMP_NUM_THREADS`` set to its CPU count, as on Ray, and
torch's thread count follows it even when torch was imported before the trial started.
The fork server loads trainables with OpenMP limited to one thread, because an OpenMP
pool started there (torch math at import time) does not survive ``fork()``: the forked
worker's first parallel operation would wait forever.
"""
from __future__ import annotations

import os
import sys
from typing import Any


def omp_threads_for(cpus: float) -> str:
    """``OMP_NUM_THREADS`` of a trial with ``cpus`` CPUs: their whole number, at least 1 (as on Ray)."""
    return str(max(1, int(cpus)))


def _env_threads(value: str | None) -> int | None:
    """The thread count an ``OMP_NUM_THREADS`` value asks for (its first level), or None."""
    try:
        n = int((value or "").split(",")[0])
    except ValueError:
        return None
    return n if n > 0 else None


def apply_thread_count() -> None:
    """Makes an already imported torch use ``OMP_NUM_THREADS`` threads (a new import reads it itself)."""
    torch = sys.modules.get("torch")
    n = _env_threads(os.environ.get("OMP_NUM_THREADS"))
    if torch is None or n is None or not hasattr(torch, "set_num_threads"):
        return
    try:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    except Exception:
        pass


_SERVER_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def single_threaded_openmp() -> dict[str, str | None]:
    """Limits OpenMP to one thread in this process (the fork server); returns the variables as they were.

    OpenBLAS survives ``fork()`` and keeps the thread count it would have had (it reads
    ``OPENBLAS_NUM_THREADS`` before ``OMP_NUM_THREADS``).
    """
    before = {name: os.environ.get(name) for name in _SERVER_THREAD_VARS}
    if before["OPENBLAS_NUM_THREADS"] is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        os.environ["OPENBLAS_NUM_THREADS"] = before["OMP_NUM_THREADS"] or str(cores)
    os.environ["OMP_NUM_THREADS"] = "1"
    return before


def restore_variables(before: dict[str, str | None]) -> None:
    """Puts environment variables back as ``single_threaded_openmp`` found them."""
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Whether the trial running in this process got OMP_NUM_THREADS from its CPUs (the driver's
# environment did not set it): a trainer's workers then get theirs from their own CPUs.
omp_from_cpus = False


def reseed_all() -> None:
    """Gives the global generators of ``random``, numpy and torch fresh seeds, as a new process has."""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed()
        except Exception:
            pass
    reseed_torch()


def reseed_torch() -> None:
    """Gives an imported torch a fresh random seed, as a new process would have."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        try:
            torch.seed()
        except Exception:
            pass


class ProcessSettings:
    """A snapshot of process-wide settings that trials commonly change, to put back after a trial."""

    def __init__(self) -> None:
        import warnings

        self._filters = list(warnings.filters)
        self._sys_path = list(sys.path)
        self._umask = os.umask(0o022)
        os.umask(self._umask)
        self._signals = _signal_handlers()
        self._decimal = None
        decimal = sys.modules.get("decimal")
        if decimal is not None:
            self._decimal = decimal.getcontext().copy()
        self._loggers = _logger_levels()
        self._numpy: tuple | None = None
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            try:
                self._numpy = (numpy.geterr(), numpy.get_printoptions())
            except Exception:
                pass
        self._torch: tuple | None = None
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                self._torch = (torch.get_default_dtype(), torch.is_grad_enabled())
            except Exception:
                pass

    def restore(self) -> None:
        import warnings

        if warnings.filters != self._filters:
            warnings.filters[:] = self._filters
            mutated = getattr(warnings, "_filters_mutated", None)
            if mutated is not None:
                mutated()
        if sys.path != self._sys_path:
            sys.path[:] = self._sys_path
        os.umask(self._umask)
        _restore_signal_handlers(self._signals)
        decimal = sys.modules.get("decimal")
        if decimal is not None:
            decimal.setcontext(self._decimal.copy() if self._decimal is not None else decimal.Context())
        _restore_logger_levels(self._loggers)
        # A library the trial imported gets the settings it has just after its import.
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            errors, options = self._numpy or (_NUMPY_ERRORS, _NUMPY_PRINT)
            try:
                numpy.seterr(**errors)
                numpy.set_printoptions(**options)
            except Exception:
                pass
        torch = sys.modules.get("torch")
        if torch is not None:
            dtype, grad = self._torch or (getattr(torch, "float32", None), True)
            try:
                torch.set_default_dtype(dtype)
                torch.set_grad_enabled(grad)
            except Exception:
                pass


# numpy's settings after its import.
_NUMPY_ERRORS = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}
_NUMPY_PRINT = {"precision": 8, "threshold": 1000, "edgeitems": 3, "linewidth": 75, "suppress": False,
                "nanstr": "nan", "infstr": "inf", "formatter": None, "sign": "-", "floatmode": "maxprec",
                "legacy": False}


_SIGNALS: list | None = None


def _signal_handlers() -> list[Any]:
    """The Python handler of each signal a trial can handle (None where Python has none)."""
    import signal

    global _SIGNALS
    if _SIGNALS is None:
        _SIGNALS = []
        for sig in sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}):
            try:
                signal.getsignal(sig)
            except (OSError, ValueError):
                continue
            _SIGNALS.append(sig)
    try:  # the C function: no enum made for each answer
        from _signal import getsignal
    except ImportError:
        getsignal = signal.getsignal
    return [getsignal(sig) for sig in _SIGNALS]


def _restore_signal_handlers(handlers: list[Any]) -> None:
    import signal

    now = _signal_handlers()
    for sig, before, after in zip(_SIGNALS, handlers, now):
        if before is not None and before is not after and before != after:
            try:
                signal.signal(sig, before)
            except (OSError, ValueError, TypeError):  # not from the main thread, or not settable here
                pass


def _logger_levels() -> dict[str, int] | None:
    logging = sys.modules.get("logging")
    if logging is None:
        return None
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            levels[name] = logger.level
    return levels


def _restore_logger_levels(levels: dict[str, int] | None) -> None:
    logging = sys.modules.get("logging")
    if logging is None or levels is None:
        return
    changed = False
    for name, level in levels.items():
        logger = logging.getLogger(name or None)
        if logger.level != level:
            logger.level = level
            changed = True
    if changed:
        logging.Logger.manager._clear_cache()
