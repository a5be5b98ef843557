"""Process-wide settings a trial may change, and the thread pools of numeric libraries in workers.

A reused worker runs one trial after another; what a trial sets for the whole process
(warning filters, numpy's error handling, torch's default dtype, the umask, signal
handlers...) would otherwise reach the next trial, which on Ray starts in a process of its
own. ``ProcessSettings`` takes a snapshot before a trial and puts it back after.

Thread pools: a trial gets ``OMP_NUM_THREADS`` set to its CPU count, as on Ray, and
torch's thread count follows it even when torch was imported before the trial started.
So do the BLAS and OpenMP pools of native libraries loaded before the trial (numpy's
OpenBLAS, scikit-learn's and LightGBM's OpenMP), through threadpoolctl: on Ray each trial's
process loads them after ``OMP_NUM_THREADS`` is set. The fork server loads trainables with
OpenMP limited to one thread, because an OpenMP pool started there (torch math at import
time) does not survive ``fork()``: the forked worker's first parallel operation would wait
forever.
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
    """Makes the thread pools loaded so far use ``OMP_NUM_THREADS`` threads (a later load reads it itself).

    That is torch's, and those threadpoolctl finds (BLAS and OpenMP libraries).
    """
    n = _env_threads(os.environ.get("OMP_NUM_THREADS"))
    if n is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        try:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
        except Exception:
            pass
    _limit_native_pools(n)


# Python modules whose import loads a BLAS or OpenMP library.
_NATIVE_POOL_MODULES = ("numpy", "scipy", "sklearn", "torch", "lightgbm", "xgboost", "catboost", "numexpr")

# The BLAS/OpenMP libraries loaded in this process (a threadpoolctl controller), and how many
# modules were imported when they were looked for: a library loaded later reads OMP_NUM_THREADS,
# which a trial's count is set in before its code runs, but a trial may change any pool's size.
_pools: tuple[Any, int] | None = None


def _limit_native_pools(n: int) -> None:
    global _pools
    if not any(name in sys.modules for name in _NATIVE_POOL_MODULES):
        return
    try:
        import threadpoolctl

        if _pools is None or _pools[1] != len(sys.modules):
            _pools = (threadpoolctl.ThreadpoolController(), len(sys.modules))
        for library in _pools[0].lib_controllers:
            if library.num_threads != n:
                library.set_num_threads(n)
    except Exception:  # threadpoolctl absent or a library it cannot drive: pools keep their size
        pass


def preload_pool_control() -> None:
    """Imports threadpoolctl once, in the fork server, when what it loaded has thread pools to limit."""
    if any(name in sys.modules for name in _NATIVE_POOL_MODULES):
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
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
        import time
        import warnings

        self._filters = list(warnings.filters)
        self._showwarning = warnings.showwarning
        self._excepthooks = (sys.excepthook, getattr(sys.modules.get("threading"), "excepthook", None))
        self._tzname = time.tzname
        socket = sys.modules.get("socket")
        self._socket_timeout = socket.getdefaulttimeout() if socket is not None else None
        self._umask = os.umask(0o022)
        os.umask(self._umask)
        self._signals = _signal_handlers()
        self._decimal = None
        decimal = sys.modules.get("decimal")
        if decimal is not None:
            self._decimal = decimal.getcontext().copy()
        self._loggers = _logger_settings()
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
                cudnn = torch.backends.cudnn
                self._torch = (torch.get_default_dtype(), torch.is_grad_enabled(),
                               torch.are_deterministic_algorithms_enabled(), cudnn.benchmark, cudnn.deterministic)
            except Exception:
                pass

    def restore(self) -> None:
        import time
        import warnings

        if warnings.filters != self._filters:
            warnings.filters[:] = self._filters
            mutated = getattr(warnings, "_filters_mutated", None)
            if mutated is not None:
                mutated()
        warnings.showwarning = self._showwarning
        sys.excepthook = self._excepthooks[0]
        threading = sys.modules.get("threading")
        if threading is not None and self._excepthooks[1] is not None:
            threading.excepthook = self._excepthooks[1]
        if time.tzname != self._tzname:  # the trial set TZ and called time.tzset() (TZ is back by now)
            time.tzset()
        socket = sys.modules.get("socket")
        if socket is not None and socket.getdefaulttimeout() != self._socket_timeout:
            socket.setdefaulttimeout(self._socket_timeout)
        os.umask(self._umask)
        _restore_signal_handlers(self._signals)
        decimal = sys.modules.get("decimal")
        if decimal is not None:
            decimal.setcontext(self._decimal.copy() if self._decimal is not None else decimal.Context())
        _restore_loggers(self._loggers)
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
            dtype, grad, deterministic, benchmark, cudnn_deterministic = self._torch or (
                getattr(torch, "float32", None), True, False, False, False)
            try:
                torch.set_default_dtype(dtype)
                torch.set_grad_enabled(grad)
                if torch.are_deterministic_algorithms_enabled() != deterministic:
                    torch.use_deterministic_algorithms(deterministic)
                torch.backends.cudnn.benchmark = benchmark
                torch.backends.cudnn.deterministic = cudnn_deterministic
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


def _logger_settings() -> tuple | None:
    """``logging.disable``'s level, and each logger's level, handlers, propagation and disabled flag."""
    logging = sys.modules.get("logging")
    if logging is None:
        return None
    loggers = {"": logging.getLogger()}
    loggers.update((name, lg) for name, lg in list(logging.Logger.manager.loggerDict.items())
                   if isinstance(lg, logging.Logger))
    return logging.root.manager.disable, {
        name: (lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for name, lg in loggers.items()}


def _restore_loggers(saved: tuple | None) -> None:
    """Puts the loggers back as they were. Loggers made during the trial (a library imported then
    set its own up once) keep what they have but their file handlers (a trial's log file would get
    the next trial's lines)."""
    logging = sys.modules.get("logging")
    if logging is None or saved is None:
        return
    disable, loggers = saved
    if logging.root.manager.disable != disable:
        logging.disable(disable)
    changed = False
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        before = loggers.get(name)
        if before is None:
            for handler in [h for h in lg.handlers if isinstance(h, logging.FileHandler)]:
                lg.removeHandler(handler)
                _close(handler)
            continue
        _, level, handlers, propagate, disabled = before
        if lg.level != level:
            lg.level = level
            changed = True
        if lg.handlers != handlers:
            for handler in lg.handlers:
                if handler not in handlers:
                    _close(handler)
            lg.handlers[:] = handlers
        lg.propagate, lg.disabled = propagate, disabled
    root = logging.getLogger()
    if root.level != loggers[""][1]:
        root.level = loggers[""][1]
        changed = True
    if changed:
        logging.Logger.manager._clear_cache()


def _close(handler) -> None:
    try:
        handler.close()
    except Exception:
        pass
