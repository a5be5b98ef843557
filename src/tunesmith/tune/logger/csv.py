"""CSV logging: one row per result in ``progress.csv``."""
from __future__ import annotations

import csv
import io
import os
from typing import TYPE_CHECKING

from tunesmith.tune.logger._util import OpenFiles, TrialFile, cut_csv_rows, flatten, wait_for_writes
from tunesmith.tune.logger.logger import Logger, _TrialWriterCallback
from tunesmith.tune.result import CONFIG, EXPR_PROGRESS_FILE

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial


def _existing_header(path: str) -> list[str] | None:
    """The header of a non-empty CSV file at ``path``, or None."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.strip():
        return None
    return next(csv.reader(io.StringIO(first)))


_MISSING = object()


def _plain_line(values: list) -> str | None:
    """The line ``csv.writer`` writes for ``values`` when each is a number, a flag, None or text
    it leaves unquoted; None for anything else (the caller then lets the csv module write it)."""
    out = []
    for value in values:
        kind = type(value)
        if kind is str:
            if "," in value or '"' in value or "\n" in value or "\r" in value:
                return None
            out.append(value)
        elif kind is float or kind is int:
            out.append(repr(value))  # what str() gives, as the csv module writes them
        elif kind is bool:
            out.append("True" if value else "False")
        elif value is None:
            out.append("")
        else:
            return None
    if len(out) == 1 and not out[0]:
        return None  # a lone empty field is quoted
    return ",".join(out) + "\r\n"


class _CSVWriter:
    def __init__(self, logdir: str, owner: OpenFiles | None = None):
        self.file = TrialFile(os.path.join(logdir, EXPR_PROGRESS_FILE), owner=owner, encoder=self._encode)
        self.fieldnames: list[str] | None = None

    def write(self, result: dict) -> None:
        self.file.write(dict(result))

    def _encode(self, rows: list[dict]) -> str:
        # Runs in the I/O thread, after every earlier write to this path has landed.
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if self.fieldnames is None:
            # The file is open (for appending) by now: only a non-empty one can have a header.
            header = None if self.file.was_empty else _existing_header(self.file.path)
            if header is None:
                self.fieldnames = [str(k) for k in flatten(rows[0], exclude=(CONFIG,))]
                writer.writerow(self.fieldnames)
            else:
                # A restored trial continues the file in the columns it already has.
                self.fieldnames = header
        fields = self.fieldnames
        lines = [buffer.getvalue()]
        for row in rows:
            get = row.get
            line = _plain_line([get(k, _MISSING) for k in fields])
            if line is None:  # nested or missing fields, or values the csv module must quote
                flat = flatten(row, exclude=(CONFIG,)).get
                buffer.seek(0)
                buffer.truncate()
                writer.writerow([flat(k, "") for k in fields])
                line = buffer.getvalue()
            lines.append(line)
        return "".join(lines)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class CSVLoggerCallback(_TrialWriterCallback):
    """Logs every result of a trial as one row of ``<trial dir>/progress.csv``.

    Nested result fields become ``/``-joined columns; ``config`` is left out.
    The columns are those of the trial's first result: keys that appear only
    in later results are not written, and missing ones are left empty. Rows
    are appended, so a restored trial continues its file with its header.

    Args:
        flush_period_s: Seconds between flushes of the buffered files.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger import CSVLoggerCallback
        >>> run_config = tune.RunConfig(callbacks=[CSVLoggerCallback()])
    """

    _rollback_file = EXPR_PROGRESS_FILE
    _rollback_cut = staticmethod(cut_csv_rows)

    def _make_writer(self, trial: "Trial") -> _CSVWriter:
        return _CSVWriter(trial.local_path, self._files)


class CSVLogger(Logger):
    """Legacy per-trial logger writing ``progress.csv``. Prefer :class:`CSVLoggerCallback`.

    Example:
        >>> from tunesmith.tune.logger import CSVLogger, LegacyLoggerCallback
        >>> callback = LegacyLoggerCallback([CSVLogger])
    """

    def _init(self) -> None:
        self._writer = _CSVWriter(self.logdir)

    def on_result(self, result: dict) -> None:
        self._writer.write(result)
        # As the older loggers did, each result is on disk when this returns (a logger_creator's
        # logger may never be closed).
        self._writer.flush()
        wait_for_writes()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        """Writes what is buffered and closes the file; it is complete on disk when this returns."""
        self._writer.close()
        wait_for_writes()
