"""Console output of an experiment: status tables (reporters) and per-trial lines.

The driver calls ``reporter.setup(...)`` once, then each turn of its event
loop ``reporter.should_report(trials, done=False)`` and, when that is True,
``reporter.report(trials, done, *sys_info)``; at the end it reports once with
``done=True``. Verbosity levels (``RunConfig(verbose=...)``): 0 prints
nothing, 1 the status table, 2 adds one line per trial start, completion and
error (:class:`TrialProgressCallback`), 3 adds a line per result.
"""
from __future__ import annotations

import datetime
import html
import logging
import numbers
import os
import sys
import threading
import time
import unicodedata
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence, TYPE_CHECKING

from tunesmith.tune.callback import Callback
from tunesmith.tune.utils.nested import lookup as _lookup
from tunesmith.tune.result import (
    AUTO_RESULT_KEYS,
    EPISODE_REWARD_MEAN,
    MEAN_ACCURACY,
    MEAN_LOSS,
    NODE_IP,
    PID,
    TIME_TOTAL_S,
    TIMESTEPS_TOTAL,
    TRAINING_ITERATION,
)

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

# Metric columns shown when present in results, and their headers.
DEFAULT_COLUMNS: "OrderedDict[str, str]" = OrderedDict([
    (EPISODE_REWARD_MEAN, "reward"),
    (MEAN_ACCURACY, "acc"),
    (MEAN_LOSS, "loss"),
    ("loss", "loss"),
    ("accuracy", "acc"),
    (TIME_TOTAL_S, "total time (s)"),
    (TIMESTEPS_TOTAL, "ts"),
    (TRAINING_ITERATION, "iter"),
])

# Defaults Ray's table does not have: a user may add them as columns of their own.
_DEFAULTS_BEYOND_RAYS = frozenset(("loss", "accuracy"))

_PENDING, _RUNNING, _PAUSED, _TERMINATED, _ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"
# Order of trials in the table: the ones that are moving first.
_STATE_ORDER = (_RUNNING, _PAUSED, _PENDING, _TERMINATED, _ERROR)


# -- small formatting helpers ---------------------------------------------------

def _truncate(text: str, max_len: int) -> str:
    if max_len and len(text) > max_len:
        return "..." + text[-(max_len - 3):] if max_len > 3 else text[:max_len]
    return text


def _format_value(value: Any, max_len: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) or (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)):
        return f"{float(value):.6g}"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return _truncate(str(value), max_len)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: East Asian wide characters (and most emoji) take two, combining
    marks none.

    Example:
        >>> display_width("abc"), display_width("实验"), display_width("é")
        (3, 4, 1)
    """
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with ``+---+`` borders; numeric columns are right-aligned.

    Example:
        >>> print(format_table(["name", "x"], [["a", "1.5"], ["bb", "10"]]))
        +------+-----+
        | name |   x |
        |------+-----|
        | a    | 1.5 |
        | bb   |  10 |
        +------+-----+
    """
    header_lines = [h.split("\n") for h in headers]  # a long header may be wrapped over lines
    widths = [max(display_width(part) for part in h) for h in header_lines]
    for row in rows:
        for i, cell in enumerate(row):
            width = display_width(cell)
            if width > widths[i]:
                widths[i] = width
    numeric = [
        bool(rows) and all(row[i] == "" or _is_number(row[i]) for row in rows) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [_pad(cell, widths[i], numeric[i]) for i, cell in enumerate(cells)]
        return "| " + " | ".join(parts) + " |"

    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    height = max((len(h) for h in header_lines), default=1)
    out = [border]
    for k in range(height):
        out.append(line([h[k] if k < len(h) else "" for h in header_lines]))
    out.append("|" + "+".join("-" * (w + 2) for w in widths) + "|")
    out.extend(line(row) for row in rows)
    out.append(border)
    return "\n".join(out)


def _wrap_header(text: str, max_len: int) -> str:
    """A column header of at most ``max_len`` characters a line, on at most two lines (the
    start of a longer one is cut, as Ray's reporters do)."""
    text = str(text)
    if len(text) <= max_len:
        return text
    if len(text) > 2 * max_len:
        text = "..." + text[3 - 2 * max_len:]
    return "\n".join(text[i:i + max_len] for i in range(0, len(text), max_len))


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}hr {minutes}min {secs}s"
    return f"{minutes}min {secs}s"


def _time_passed_str(start_time: float, now: float) -> str:
    current = datetime.datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S")
    delta = max(0.0, now - start_time)
    hours, rest = divmod(delta, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"Current time: {current} (running for {int(hours):02d}:{int(minutes):02d}:{seconds:05.2f})"


def _memory_str() -> str | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        mem = psutil.virtual_memory()
    except Exception:
        return None
    gib = 1024 ** 3
    return f"Memory usage on this node: {(mem.total - mem.available) / gib:.1f}/{mem.total / gib:.1f} GiB"


def _trial_location(trial: "Trial") -> str:
    result = trial.last_result or {}
    ip, pid = result.get(NODE_IP), result.get(PID)
    if ip and pid:
        return f"{ip}:{pid}"
    if pid:
        return f"pid={pid}"
    return ""


def _check_columns(name: str, columns: Any) -> None:
    if columns is None or isinstance(columns, Mapping):
        return
    if isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns):
        return
    raise TypeError(
        f"{name} must be None, a list of names or a dict of name -> column header, got {columns!r}."
    )


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


# -- redrawing the table in place on a terminal -----------------------------------

def _write_out(text: str) -> None:
    """Writes to ``sys.stdout``, as ``print`` does: nothing when a program has set it to None."""
    out = sys.stdout
    if out is None:
        return
    out.write(text)
    out.flush()


def _redraw_in_place(stream: Any) -> bool:
    """Whether reports replace the previous one: on a terminal, unless TUNESMITH_REDRAW=0."""
    if os.environ.get("TUNESMITH_REDRAW", "1") == "0" or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _screen_rows(text: str, columns: int) -> int:
    """How many terminal rows ``text`` (ending with a newline) takes at ``columns`` wide."""
    columns = max(1, columns)
    return sum(max(1, -(-display_width(line) // columns)) for line in text.split("\n")[:-1])


_LIVE_LOCK = threading.Lock()


class _StreamProxy:
    """Stands in for ``sys.stdout``/``sys.stderr`` while a live table is on the terminal."""

    def __init__(self, stream: Any, live: "_LiveTable"):
        self._stream = stream
        self._live = live

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._live.lock:
            self._live.before_other_output()
            n = self._stream.write(text)
            self._live.after_other_output(text)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _LiveTable:
    """Keeps the latest status table at the bottom of the terminal, redrawn in place.

    Drawing a table first erases the previous one (cursor up over its rows,
    clear to the end of the screen). Anything else printed meanwhile, through
    ``sys.stdout`` or ``sys.stderr`` (trial output, progress lines, warnings),
    erases the table first and is printed where it was; the reporter then
    draws the table again below it.
    """

    def __init__(self):
        self.lock = threading.RLock()
        self._out = sys.stdout
        self._rows = 0
        self._at_line_start = True
        self._erased_at: float | None = None
        self._proxies: list[tuple[str, _StreamProxy]] = []
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if name == "stdout" or _redraw_in_place(stream):
                proxy = _StreamProxy(stream, self)
                setattr(sys, name, proxy)
                self._proxies.append((name, proxy))
        # Logging handlers made earlier (logging.basicConfig) hold the streams themselves: their
        # lines go through the proxies too, or a redraw would erase them.
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []
        by_stream = {id(proxy._stream): proxy for _, proxy in self._proxies}
        for handler in _stream_handlers():
            proxy = by_stream.get(id(handler.stream))
            if proxy is not None:
                self._handlers.append((handler, handler.stream))
                handler.setStream(proxy)

    def _erase(self) -> None:
        if self._rows:
            # Up to the table's first row, then each row cleared on its own: clearing to the end
            # of the screen from its top-left corner counts as clearing the whole screen, which
            # tmux (scroll-on-clear) answers by moving the table into the scrollback.
            n = self._rows
            self._out.write(f"\x1b[{n}F" + "\x1b[2K\x1b[1E" * n + f"\x1b[{n}F")
            self._rows = 0

    def before_other_output(self) -> None:
        if self._rows:
            self._erase()
            self._out.flush()
            self._erased_at = time.monotonic()

    def after_other_output(self, text: str) -> None:
        self._at_line_start = text.endswith("\n")

    def wants_redraw(self) -> bool:
        erased = self._erased_at
        return erased is not None and self._at_line_start and time.monotonic() - erased >= 0.2

    def draw(self, text: str) -> None:
        import shutil

        with self.lock:
            self._erase()
            if not self._at_line_start:
                self._out.write("\n")
            try:  # the terminal's own size: COLUMNS/LINES in the environment may be stale
                size = os.get_terminal_size(self._out.fileno())
            except (AttributeError, ValueError, OSError):
                size = shutil.get_terminal_size()
            self._out.write(text)
            self._out.flush()
            rows = _screen_rows(text, size.columns)
            # A table taller than the screen cannot be erased whole: it stays, and the next follows it.
            self._rows = rows if rows < size.lines else 0
            self._at_line_start = True
            self._erased_at = None

    def close(self) -> None:
        """Leaves the last table on the screen and gives the streams (and logging handlers) back."""
        with self.lock:
            self._rows = 0
            for name, proxy in self._proxies:
                if getattr(sys, name) is proxy:
                    setattr(sys, name, proxy._stream)
            self._proxies = []
            for handler, stream in self._handlers:
                if isinstance(handler.stream, _StreamProxy):
                    handler.setStream(stream)
            self._handlers = []


def _stream_handlers() -> list[logging.StreamHandler]:
    """The stream handlers of every logger (the root's included); file handlers are not among them."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [h for lg in loggers for h in lg.handlers
            if type(h) is logging.StreamHandler or (isinstance(h, logging.StreamHandler)
                                                    and not isinstance(h, logging.FileHandler))]


# -- reporters --------------------------------------------------------------------

class ProgressReporter:
    """Interface of progress reporters: decide when to report, and report.

    Example:
        >>> from tunesmith import tune
        >>> class EveryTurn(tune.ProgressReporter):
        ...     def should_report(self, trials, done=False):
        ...         return True
        ...
        ...     def report(self, trials, done, *sys_info):
        ...         print(*sys_info)
        ...         print("\\n".join(str(trial) for trial in trials))
    """

    def setup(self, start_time: float | None = None, total_samples: int | None = None,
              metric: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        """Called once by the driver before the experiment starts."""

    def should_report(self, trials: list["Trial"], done: bool = False) -> bool:
        """Returns True if a report should be printed now."""
        raise NotImplementedError

    def report(self, trials: list["Trial"], done: bool, *sys_info: str) -> None:
        """Reports the progress of ``trials``; ``sys_info`` are extra status lines."""
        raise NotImplementedError


class TuneReporterBase(ProgressReporter):
    """The status-table reporter shared by :class:`CLIReporter` and :class:`JupyterNotebookReporter`.

    Args:
        metric_columns: Result fields to show: a list, or a dict of field ->
            column header. When None, fields among :data:`DEFAULT_COLUMNS` are
            shown, plus up to ``infer_limit`` other numeric fields.
        parameter_columns: Config fields to show (``"a/b"`` for nested ones):
            a list, or a dict of field -> header. When None, every sampled parameter.
        total_samples: Number of trials the experiment will have, when known.
        max_progress_rows: Rows of the trial table (all rows in the final report).
        max_error_rows: Rows of the error table (all rows in the final report).
        max_column_length: Longest text shown in a cell.
        max_report_frequency: Smallest number of seconds between reports.
        infer_limit: How many result fields to add when ``metric_columns`` is None.
        print_intermediate_tables: Print the trial table in every report
            (True, the default when None) or only in the final one (False).
        metric: Metric for the "current best trial" line.
        mode: ``"min"`` or ``"max"`` for ``metric``.
        sort_by_metric: Show terminated trials best first (needs metric and mode).
    """

    def __init__(
        self,
        metric_columns: Sequence[str] | Mapping[str, str] | None = None,
        parameter_columns: Sequence[str] | Mapping[str, str] | None = None,
        total_samples: int | None = None,
        max_progress_rows: int = 20,
        max_error_rows: int = 20,
        max_column_length: int = 20,
        max_report_frequency: float = 5,
        infer_limit: int = 3,
        print_intermediate_tables: bool | None = None,
        metric: str | None = None,
        mode: str | None = None,
        sort_by_metric: bool = False,
    ):
        cls = type(self).__name__
        _check_columns(f"{cls}(metric_columns=...)", metric_columns)
        _check_columns(f"{cls}(parameter_columns=...)", parameter_columns)
        _check_int(f"{cls}(total_samples=...)", total_samples, 0, allow_none=True)
        _check_int(f"{cls}(max_progress_rows=...)", max_progress_rows, 1)
        _check_int(f"{cls}(max_error_rows=...)", max_error_rows, 1)
        _check_int(f"{cls}(max_column_length=...)", max_column_length, 4)
        _check_int(f"{cls}(infer_limit=...)", infer_limit, 0)
        if isinstance(max_report_frequency, bool) or not isinstance(max_report_frequency, numbers.Real) \
                or max_report_frequency < 0:
            raise ValueError(
                f"{cls}(max_report_frequency={max_report_frequency!r}) must be a number of seconds >= 0."
            )
        if mode not in (None, "min", "max"):
            raise ValueError(f"{cls}(mode={mode!r}) must be 'min', 'max' or None.")

        # As Ray: empty metric_columns means the default ones, empty parameter_columns all parameters.
        if metric_columns is not None and not metric_columns:
            metric_columns = None
        if parameter_columns is not None and not parameter_columns:
            parameter_columns = None
        self._metrics_override = metric_columns is not None
        self._user_metric_columns = metric_columns is not None
        self._inferred_metrics: dict[str, str] = {}
        if metric_columns is None:
            self._metric_columns: Any = OrderedDict(DEFAULT_COLUMNS)
        elif isinstance(metric_columns, Mapping):
            self._metric_columns = OrderedDict(metric_columns)
        else:
            self._metric_columns = list(metric_columns)
        if parameter_columns is None:
            self._parameter_columns: Any = None
        elif isinstance(parameter_columns, Mapping):
            self._parameter_columns = OrderedDict(parameter_columns)
        else:
            self._parameter_columns = list(parameter_columns)
        self._total_samples = total_samples
        self._max_progress_rows = int(max_progress_rows)
        self._max_error_rows = int(max_error_rows)
        self._max_column_length = int(max_column_length)
        self._max_report_frequency = float(max_report_frequency)
        self._infer_limit = int(infer_limit)
        self._print_intermediate_tables = print_intermediate_tables
        self._metric = metric
        self._mode = mode
        self._sort_by_metric = bool(sort_by_metric)
        self._start_time = time.time()
        self._last_report_time = 0.0

    # -- configuration -------------------------------------------------------
    def setup(self, start_time: float | None = None, total_samples: int | None = None,
              metric: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        self.set_start_time(start_time)
        if total_samples is not None:
            self.set_total_samples(total_samples)
        self.set_search_properties(metric, mode)

    def set_start_time(self, timestamp: float | None = None) -> None:
        self._start_time = time.time() if timestamp is None else timestamp

    def set_total_samples(self, total_samples: int) -> None:
        self._total_samples = total_samples

    def set_search_properties(self, metric: str | None, mode: str | None) -> bool:
        """Sets the metric and mode for the best-trial line; raises if they conflict with the reporter's own."""
        if (self._metric and metric and metric != self._metric) or (self._mode and mode and mode != self._mode):
            raise ValueError(
                f"The reporter was created with metric={self._metric!r}, mode={self._mode!r}, but the "
                f"experiment uses metric={metric!r}, mode={mode!r}. Set them in one place only."
            )
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or None, got {mode!r}.")
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def add_metric_column(self, metric: str, representation: str | None = None) -> None:
        """Adds a result field to the table; disables inferring further columns.

        Args:
            metric: The result field (``"a/b"`` for nested ones).
            representation: The column header; defaults to ``metric``.
        """
        added = self.__dict__.setdefault("_added_metrics", set())
        if metric in self._metric_columns and (
                self.__dict__.get("_user_metric_columns", True) or metric in added
                or metric not in _DEFAULTS_BEYOND_RAYS):
            raise ValueError(f"Column {metric!r} already exists.")
        added.add(metric)
        self._metrics_override = True
        if isinstance(self._metric_columns, Mapping):
            self._metric_columns[metric] = representation or metric
        else:
            if representation is not None and representation != metric:
                raise ValueError(
                    "A representation cannot differ from the metric name when the reporter was created "
                    "with a list of metric columns; create it with a dict to name columns."
                )
            self._metric_columns.append(metric)

    def add_parameter_column(self, parameter: str, representation: str | None = None) -> None:
        """Adds a config field to the table.

        Args:
            parameter: The config field (``"a/b"`` for nested ones).
            representation: The column header; defaults to ``parameter``.
        """
        if self._parameter_columns is None:
            self._parameter_columns = OrderedDict() if representation else []
        if parameter in self._parameter_columns:
            raise ValueError(f"Column {parameter!r} already exists.")
        if isinstance(self._parameter_columns, Mapping):
            self._parameter_columns[parameter] = representation or parameter
        else:
            if representation is not None and representation != parameter:
                raise ValueError(
                    "A representation cannot differ from the parameter name when the reporter was created "
                    "with a list of parameter columns; create it with a dict to name columns."
                )
            self._parameter_columns.append(parameter)

    # -- reporting -----------------------------------------------------------
    def should_report(self, trials: list["Trial"], done: bool = False) -> bool:
        now = time.time()
        if now - self._last_report_time >= self._max_report_frequency:
            self._last_report_time = now
            return True
        return done

    def _metric_column_map(self) -> "OrderedDict[str, str]":
        cols = self._metric_columns
        out = OrderedDict(cols.items()) if isinstance(cols, Mapping) else OrderedDict((c, c) for c in cols)
        for key, rep in self._inferred_metrics.items():
            out.setdefault(key, rep)
        if self._metric and self._metric not in out:
            out[self._metric] = self._metric
        return out

    def _infer_user_metrics(self, trials: list["Trial"]) -> None:
        if self._metrics_override or len(self._inferred_metrics) >= self._infer_limit:
            return
        skip = set(AUTO_RESULT_KEYS) | set(DEFAULT_COLUMNS)
        for trial in trials:
            for key, value in (trial.last_result or {}).items():
                if key in skip or key in self._inferred_metrics:
                    continue
                if isinstance(value, numbers.Real) and not isinstance(value, bool):
                    self._inferred_metrics[key] = key
                    if len(self._inferred_metrics) >= self._infer_limit:
                        return

    def _parameter_column_map(self, trials: list["Trial"]) -> "OrderedDict[str, str]":
        cols = self._parameter_columns
        if cols is None:
            keys: set[str] = set()
            for trial in trials:
                keys.update(trial.evaluated_params)
            return OrderedDict((k, k) for k in sorted(keys))
        if isinstance(cols, Mapping):
            return OrderedDict(cols.items())
        return OrderedDict((c, c) for c in cols)

    def _best_trial(self, trials: list["Trial"]) -> tuple["Trial | None", Any]:
        if not self._metric or not self._mode:
            return None, None
        best, best_value = None, None
        sign = 1 if self._mode == "max" else -1
        for trial in trials:
            value = _lookup(trial.last_result or {}, self._metric)
            if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
                continue
            if best is None or sign * value > sign * best_value:
                best, best_value = trial, value
        return best, best_value

    def _order_trials(self, trials: list["Trial"]) -> dict[str, list["Trial"]]:
        by_state: dict[str, list["Trial"]] = {}
        for trial in trials:
            by_state.setdefault(trial.status, []).append(trial)
        if self._sort_by_metric and self._metric and self._mode and _TERMINATED in by_state:
            sign = -1 if self._mode == "max" else 1

            def key(t):
                value = _lookup(t.last_result or {}, self._metric)
                ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
                return (0, sign * value) if ok else (1, 0)

            by_state[_TERMINATED].sort(key=key)
        ordered = {s: by_state[s] for s in _STATE_ORDER if s in by_state}
        for state in sorted(set(by_state) - set(ordered)):
            ordered[state] = by_state[state]
        return ordered

    def _progress_lines(self, trials: list["Trial"], done: bool, *sys_info: str) -> list[str]:
        self._infer_user_metrics(trials)
        lines = ["== Status ==", _time_passed_str(self._start_time, time.time())]
        memory = _memory_str()
        if memory:
            lines.append(memory)
        lines.extend(str(info) for info in sys_info if info)
        best, value = self._best_trial(trials)
        if best is not None:
            params = self._parameter_column_map(trials)
            shown = {k: _lookup(best.config, k) for k in params} if params else best.config
            lines.append(
                f"Current best trial: {best.trial_id} with {self._metric}={value} and parameters={shown}"
            )
        lines.extend(self._trial_table_lines(trials, done))
        lines.extend(self._error_table_lines(trials, done))
        return lines

    def _trial_table_lines(self, trials: list["Trial"], done: bool) -> list[str]:
        if not trials:
            return []
        by_state = self._order_trials(trials)
        counts = ", ".join(f"{len(by_state[s])} {s}" for s in sorted(by_state))
        total = self._total_samples
        if total is not None and total >= sys.maxsize:
            total_str = "/infinite"
        elif total and total >= len(trials):
            total_str = f"/{total}"
        else:
            total_str = ""
        lines = [f"Number of trials: {len(trials)}{total_str} ({counts})"]
        print_table = done or self._print_intermediate_tables is not False
        if not print_table:
            return lines

        max_rows = None if done else self._max_progress_rows
        shown_by_state = _fair_filter(by_state, max_rows) if max_rows and len(trials) > max_rows else by_state
        shown = [t for state_trials in shown_by_state.values() for t in state_trials]

        max_len = self._max_column_length
        params = self._parameter_column_map(trials)
        metrics = self._metric_column_map()
        param_values = [[_lookup(t.evaluated_params, k, None) if k in t.evaluated_params
                         else _lookup(t.config, k) for k in params] for t in shown]
        metric_values = [[_lookup(t.last_result or {}, k) for k in metrics] for t in shown]
        # Columns that are empty for every shown trial are hidden.
        keep_p = [i for i in range(len(params)) if any(row[i] is not None for row in param_values)]
        keep_m = [i for i in range(len(metrics)) if any(row[i] is not None for row in metric_values)]
        param_headers = [_wrap_header(h, max_len) for h in params.values()]
        metric_headers = [_wrap_header(h, max_len) for h in metrics.values()]
        headers = ["Trial name", "status", "loc"] + [param_headers[i] for i in keep_p] \
            + [metric_headers[i] for i in keep_m]
        rows = []
        for t, pv, mv in zip(shown, param_values, metric_values):
            rows.append(
                [_truncate(str(t), max_len * 3), t.status, _trial_location(t)]
                + [_format_value(pv[i], max_len) for i in keep_p]
                + [_format_value(mv[i], max_len) for i in keep_m]
            )
        lines.append(format_table(headers, rows))
        hidden = len(trials) - len(shown)
        if hidden > 0:
            parts = [
                f"{len(by_state[s]) - len(shown_by_state.get(s, []))} {s}"
                for s in by_state if len(by_state[s]) > len(shown_by_state.get(s, []))
            ]
            lines.append(f"... {hidden} more trials not shown ({', '.join(parts)})")
        return lines

    def _error_table_lines(self, trials: list["Trial"], done: bool) -> list[str]:
        failed = [t for t in trials if t.error_file]
        if not failed:
            return []
        lines = [f"Number of errored trials: {len(failed)}"]
        max_rows = None if done else self._max_error_rows
        shown = failed[:max_rows] if max_rows else failed
        rows = [[str(t), str(t.num_failures), str(t.error_file)] for t in shown]
        lines.append(format_table(["Trial name", "# failures", "error file"], rows))
        if len(failed) > len(shown):
            lines.append(f"... {len(failed) - len(shown)} more trials with errors.")
        return lines

    def _progress_str(self, trials: list["Trial"], done: bool, *sys_info: str, delim: str = "\n") -> str:
        return delim.join(self._progress_lines(trials, done, *sys_info)) + delim


def _fair_filter(by_state: dict[str, list["Trial"]], max_rows: int) -> dict[str, list["Trial"]]:
    """Picks ``max_rows`` trials, sharing the rows across statuses round-robin."""
    quota = {state: 0 for state in by_state}
    left = max_rows
    while left > 0:
        progressed = False
        for state, state_trials in by_state.items():
            if left > 0 and quota[state] < len(state_trials):
                quota[state] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return {state: by_state[state][:quota[state]] for state in by_state if quota[state]}


class CLIReporter(TuneReporterBase):
    """Prints a status table of the experiment to the terminal.

    The report shows the time, memory use, resources, the best trial (when a
    metric and mode are known), the number of trials per status, a table of
    trials with their parameters and latest metrics, and a table of errored
    trials with their error files.

    On a terminal each report replaces the previous one in place, and
    anything else printed meanwhile (trial output, progress lines) appears
    above the table; when stdout is not a terminal (a file, a pipe, CI
    logs) or ``TUNESMITH_REDRAW=0``, every report is printed after the last.

    Args:
        metric_columns: Result fields to show (list, or dict field -> header).
        parameter_columns: Config fields to show (list, or dict field -> header).
        total_samples: Number of trials the experiment will have.
        max_progress_rows: Rows of the trial table in intermediate reports.
        max_error_rows: Rows of the error table in intermediate reports.
        max_column_length: Longest text shown in a cell.
        max_report_frequency: Smallest number of seconds between reports.
        infer_limit: Result fields added automatically when ``metric_columns`` is None.
        print_intermediate_tables: False to print the trial table only in the final report.
        metric: Metric for the "current best trial" line.
        mode: ``"min"`` or ``"max"``.
        sort_by_metric: Show terminated trials best first.

    Example:
        >>> from tunesmith import tune
        >>> reporter = tune.CLIReporter(max_progress_rows=10)
        >>> reporter.add_metric_column("custom_metric")
        >>> run_config = tune.RunConfig(progress_reporter=reporter)
    """

    _live: "_LiveTable | None" = None

    def should_report(self, trials: list["Trial"], done: bool = False) -> bool:
        live = self._live
        if live is not None and live.wants_redraw():
            # Other output scrolled the table away: put it back below that output.
            self._last_report_time = time.time()
            return True
        return super().should_report(trials, done)

    def report(self, trials: list["Trial"], done: bool, *sys_info: str) -> None:
        text = self._progress_str(trials, done, *sys_info)
        live = self._live
        if live is None and _redraw_in_place(sys.stdout):
            with _LIVE_LOCK:
                # One live table per terminal: the reporter of a second run at the same time (another
                # thread's fit) prints its reports through the first one's proxy, which keeps them
                # above its table; a table wrapping another's proxy would hand back a proxy when done.
                if not isinstance(sys.stdout, _StreamProxy):
                    live = self._live = _LiveTable()
        if live is None:
            _write_out(text)
            return
        live.draw(text)
        if done:
            self._end_live()

    def _end_live(self) -> None:
        """Ends the live table (the controller calls it at the end of the run even when the last
        report is skipped, as a reporter's should_report(done=True) may decide)."""
        live, self._live = self._live, None
        if live is not None:
            live.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_live", None)
        return state


def _ipython_shell():
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except Exception:
        return None


def _in_notebook() -> bool:
    shell = _ipython_shell()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class JupyterNotebookReporter(TuneReporterBase):
    """Shows the status table in a Jupyter notebook, updating one output in place.

    The first report adds an output to the running cell; each later report
    replaces that output's content (a display handle), so the cell shows one
    live table while trial output accumulates below it. With
    ``overwrite=False`` every report adds a new output instead. Outside a
    notebook it prints the same text as :class:`CLIReporter`.

    Args:
        overwrite: Update the table in place (True) or add a new one per report.
        **kwargs: The arguments of :class:`CLIReporter`.

    Example:
        >>> from tunesmith import tune
        >>> reporter = tune.JupyterNotebookReporter(overwrite=True, max_progress_rows=10)
        >>> run_config = tune.RunConfig(progress_reporter=reporter)
    """

    def __init__(self, overwrite: bool = True, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._overwrite = bool(overwrite)
        self._handle = None

    def setup(self, start_time: float | None = None, total_samples: int | None = None,
              metric: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        super().setup(start_time=start_time, total_samples=total_samples, metric=metric, mode=mode, **kwargs)
        self._handle = None  # a new experiment gets its own output

    def report(self, trials: list["Trial"], done: bool, *sys_info: str) -> None:
        text = self._progress_str(trials, done, *sys_info)
        if _ipython_shell() is None:
            _write_out(text)
            return
        from IPython.display import display

        bundle = {"text/plain": text, "text/html": f"<pre>{html.escape(text)}</pre>"}
        if self._overwrite and self._handle is not None:
            self._handle.update(bundle, raw=True)
        else:
            self._handle = display(bundle, raw=True, display_id=True)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state


def detect_reporter(verbose: int = 1, metric: str | None = None, mode: str | None = None,
                    **kwargs: Any) -> TuneReporterBase:
    """The default reporter: a notebook reporter inside Jupyter, a CLI reporter elsewhere.

    Args:
        verbose: The experiment's verbosity; in a notebook, output is only
            overwritten at verbosity 1 so that per-trial lines stay visible.
        metric: Metric for the best-trial line.
        mode: ``"min"`` or ``"max"``.
        **kwargs: Further reporter arguments.
    """
    if _in_notebook():
        return JupyterNotebookReporter(overwrite=verbose < 2, metric=metric, mode=mode, **kwargs)
    return CLIReporter(metric=metric, mode=mode, **kwargs)


# -- per-trial lines ------------------------------------------------------------------

def _now_str() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _print_all_trial_errors() -> bool:
    return os.environ.get("TUNE_PRINT_ALL_TRIAL_ERRORS", "1") != "0"


class TrialProgressCallback(Callback):
    """Prints one line per trial event, according to the verbosity.

    At verbosity 1 it prints trial errors (unless the environment variable
    ``TUNE_PRINT_ALL_TRIAL_ERRORS`` is ``0``); at 2 also trial starts and
    completions; at 3 also a summary of every result.

    Args:
        metric: Metric to include in the lines.
        progress_metrics: Result fields to include (default: ``metric``, or
            the first few numeric user fields).
        verbosity: 1, 2 or 3.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.progress_reporter import TrialProgressCallback
        >>> run_config = tune.RunConfig(verbose=0, callbacks=[TrialProgressCallback(verbosity=3)])
    """

    def __init__(self, metric: str | None = None, progress_metrics: Iterable[str] | None = None,
                 verbosity: int = 2):
        if isinstance(verbosity, bool) or verbosity not in (0, 1, 2, 3):
            raise ValueError(f"TrialProgressCallback(verbosity={verbosity!r}) must be 0, 1, 2 or 3.")
        self._metric = metric
        self._progress_metrics = list(progress_metrics) if progress_metrics is not None else None
        self._verbosity = int(verbosity)

    def _summary(self, result: dict) -> str:
        if self._progress_metrics is not None:
            keys = self._progress_metrics
        elif self._metric:
            keys = [self._metric]
        else:
            keys = []
            for key, value in result.items():
                if key not in AUTO_RESULT_KEYS and isinstance(value, numbers.Real) and not isinstance(value, bool):
                    keys.append(key)
                    if len(keys) >= 5:
                        break
        parts = []
        for key in keys:
            value = _lookup(result, key)
            if value is not None:
                parts.append(f"{key}={_format_value(value, 40)}")
        return ", ".join(parts)

    @staticmethod
    def _running_time(trial: "Trial") -> str:
        total = (trial.last_result or {}).get(TIME_TOTAL_S)
        if not isinstance(total, numbers.Real):
            total = time.time() - trial.start_time if trial.start_time else 0.0
        return _format_duration(float(total))

    @staticmethod
    def _write(text: str) -> None:
        _write_out(text + "\n")

    def on_trial_start(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        if self._verbosity >= 2:
            self._write(f"Trial {trial} started with configuration: {trial.config}")

    def on_trial_result(self, iteration: int, trials: list["Trial"], trial: "Trial", result: dict,
                        **info: Any) -> None:
        if self._verbosity >= 3:
            it = result.get(TRAINING_ITERATION, "?")
            summary = self._summary(result)
            total = result.get(TIME_TOTAL_S)
            running = _format_duration(float(total)) if isinstance(total, numbers.Real) else self._running_time(trial)
            out = sys.stdout
            if out is not None:
                out.write(
                    f"Trial {trial} finished iteration {it} at {_now_str()}. Total running time: {running}."
                    + (f" {summary}" if summary else "") + "\n"
                )

    def on_trial_complete(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        if self._verbosity >= 2:
            summary = self._summary(trial.last_result or {})
            self._write(
                f"Trial {trial} completed after {trial.last_result.get(TRAINING_ITERATION, 0)} iterations "
                f"at {_now_str()}. Total running time: {self._running_time(trial)}."
                + (f" Last result: {summary}" if summary else "")
            )

    def on_trial_error(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        if self._verbosity >= 2 or (self._verbosity >= 1 and _print_all_trial_errors()):
            text = (
                f"Trial {trial} errored after {trial.last_result.get(TRAINING_ITERATION, 0)} iterations "
                f"at {_now_str()}. Total running time: {self._running_time(trial)}."
            )
            if trial.error_file:
                text += f"\nError file: {trial.error_file}"
            if trial.error_msg and _print_all_trial_errors():
                text += f"\n{trial.error_msg}"
            self._write(text)
