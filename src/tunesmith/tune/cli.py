"""The ``tunesmith`` command: look at experiments on disk, as Ray's ``tune`` command does.

    tunesmith list-trials EXPERIMENT_DIR [--sort a,b] [--desc] [--filter "COL OP VALUE"]
                          [--columns a,b] [--result-columns a,b] [--limit N] [--output FILE]
    tunesmith list-experiments RESULTS_DIR [--sort a,b] [--desc] [--filter ...] [--columns a,b]
                          [--limit N] [--output FILE]
    tunesmith add-note PATH [--filename note.txt] [--message TEXT]
    tunesmith rm PATH...
    tunesmith report EXPERIMENT_DIR [-o report.html] [--metric M --mode min|max]

``ls`` and ``lsx`` are the short names of the first two. Everything is read
from the experiment's JSON files: nothing is unpickled, and a ``--filter`` is
parsed into a column, an operator and a value, never evaluated.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import numbers
import operator
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Callable

from tunesmith.tune.result import (
    EXPERIMENT_STATE_FILE,
    EXPR_PARAM_FILE,
    EXPR_RESULT_FILE,
    MEAN_ACCURACY,
    MEAN_LOSS,
    TIME_TOTAL_S,
    TIMESTEPS_TOTAL,
    TRAINING_ITERATION,
)

# Columns shown by default, as Ray's CLI shows them (plus every ``config/...`` column).
DEFAULT_EXPERIMENT_INFO_KEYS = ("trainable_name", "experiment_tag", "trial_id", "status", "last_update_time")
DEFAULT_RESULT_KEYS = (TRAINING_ITERATION, TIME_TOTAL_S, TIMESTEPS_TOTAL, MEAN_ACCURACY, MEAN_LOSS)
DEFAULT_PROJECT_INFO_KEYS = ("name", "total_trials", "last_updated")
_STATUSES = ("pending", "running", "paused", "terminated", "error")
CONFIG_PREFIX = "config/"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S (%A)"

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}
_FILTER = re.compile(r"^\s*(\S+?)\s*(<=|>=|==|!=|<|>)\s*(.*?)\s*$")


class CLIError(Exception):
    """A problem with the command's input, printed without a traceback."""


# -- reading experiments ---------------------------------------------------------------------------
def _read_state(experiment_dir: str) -> dict:
    if "://" in experiment_dir:  # file://, s3://, gs://: read through the store's filesystem
        from tunesmith.tune.analysis import _loading

        storage, root = _loading.Storage.resolve(experiment_dir)
        path = storage.join(root, EXPERIMENT_STATE_FILE)
        try:
            if not storage.isfile(path):
                raise CLIError(f"{experiment_dir} is not an experiment directory (it has no {EXPERIMENT_STATE_FILE}).")
            return _loading.read_json(storage, path)
        except (OSError, ValueError) as exc:
            raise CLIError(f"Could not read {experiment_dir}/{EXPERIMENT_STATE_FILE}: {exc}") from exc
    path = os.path.join(experiment_dir, EXPERIMENT_STATE_FILE)
    if not os.path.isfile(path):
        raise CLIError(f"{experiment_dir} is not an experiment directory (it has no {EXPERIMENT_STATE_FILE}).")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise CLIError(f"Could not read {path}: {exc}") from exc


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def _format_time(timestamp: Any) -> str | None:
    if not isinstance(timestamp, numbers.Real) or isinstance(timestamp, bool):
        return None
    return time.strftime(TIMESTAMP_FORMAT, time.localtime(timestamp))


def trial_rows(experiment_dir: str) -> tuple[list[dict], list[str], list[str]]:
    """One row per trial; returns ``(rows, info and config columns, result columns)``."""
    rows = []
    info_columns: list[str] = list(DEFAULT_EXPERIMENT_INFO_KEYS) + ["logdir"]
    config_columns: list[str] = []
    result_columns: list[str] = []
    for t in _read_state(experiment_dir).get("trials") or []:
        last = t.get("last_result") or {}
        row = {
            "trainable_name": t.get("trainable_name"),
            "experiment_tag": t.get("experiment_tag"),
            "trial_id": t.get("trial_id"),
            "status": t.get("status"),
            "last_update_time": _format_time(last.get("timestamp")),
            "logdir": t.get("trial_dirname"),
        }
        config = t.get("config") if isinstance(t.get("config"), dict) else last.get("config") or {}
        for key, value in _flatten(config, CONFIG_PREFIX).items():
            row[key] = value
            if key not in config_columns:
                config_columns.append(key)
        for key, value in _flatten({k: v for k, v in last.items() if k != "config"}).items():
            if key not in row:
                row[key] = value
                if key not in result_columns:
                    result_columns.append(key)
        rows.append(row)
    return rows, info_columns + config_columns, result_columns


def experiment_rows(project_dir: str) -> list[dict]:
    """One row per experiment directory directly under ``project_dir``."""
    if not os.path.isdir(project_dir):
        raise CLIError(f"{project_dir} is not a directory.")
    rows = []
    for name in sorted(os.listdir(project_dir)):
        path = os.path.join(project_dir, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        row: dict[str, Any] = {"name": name}
        if os.path.isfile(os.path.join(path, EXPERIMENT_STATE_FILE)):
            try:
                state = _read_state(path)
            except CLIError as exc:
                # One damaged experiment does not hide the others (as Ray's `tune lsx`).
                print(f"tunesmith: {exc}", file=sys.stderr)
                rows.append(row)
                continue
            trials = state.get("trials") or []
            row["total_trials"] = len(trials)
            for status in _STATUSES:  # zero counts too: a filter on "running" works when none is
                row[status] = sum(1 for t in trials if str(t.get("status", "")).lower() == status)
            row["last_updated"] = _format_time(state.get("timestamp"))
        else:
            # Trial directories without saved state (an experiment that never saved it).
            found = [root for root, _, files in os.walk(path) if EXPR_RESULT_FILE in files or EXPR_PARAM_FILE in files]
            if not found:
                continue
            row["total_trials"] = len(found)
            row["last_updated"] = _format_time(max(os.path.getmtime(p) for p in found))
        rows.append(row)
    return rows


# -- selecting, filtering, sorting -----------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _available(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


def _check_columns(requested: list[str], available: list[str], option: str) -> None:
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise CLIError(f"{option}: no column {', '.join(map(repr, unknown))}. Available columns: {available}.")


def parse_filter(text: str, rows: list[dict], available: list[str]) -> Callable[[dict], bool]:
    """Turns ``"COL OP VALUE"`` into a predicate over rows; the value is typed by the column."""
    match = _FILTER.match(text or "")
    if not match or not match.group(3):
        raise CLIError(
            f"--filter {text!r}: expected \"<column> <operator> <value>\" with an operator among "
            f"{list(OPERATORS)}, e.g. --filter \"training_iteration >= 10\"."
        )
    column, op_name, raw = match.groups()
    _check_columns([column], available, "--filter")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    present = [row[column] for row in rows if not _missing(row.get(column))]
    value: Any = raw
    if present and all(_is_number(v) for v in present):
        try:
            value = float(raw)
        except ValueError:
            raise CLIError(f"--filter {text!r}: column {column!r} holds numbers, but {raw!r} is not one.") from None
    elif present and all(isinstance(v, bool) for v in present):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise CLIError(f"--filter {text!r}: column {column!r} holds true/false values, not {raw!r}.")
        value = raw.lower() in ("true", "1")
    op = OPERATORS[op_name]

    def keep(row: dict) -> bool:
        cell = row.get(column)
        if _missing(cell):
            return op_name == "!="
        if isinstance(value, str):
            cell = cell if isinstance(cell, str) else json.dumps(cell) if isinstance(cell, (list, dict)) else str(cell)
        try:
            return bool(op(cell, value))
        except TypeError:
            return False

    return keep


def _sort_key(value: Any) -> tuple:
    if _is_number(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def sort_rows(rows: list[dict], keys: list[str], desc: bool) -> list[dict]:
    """Sorts by several columns, the first the most significant; missing values go last."""
    for key in reversed(keys):
        present = [r for r in rows if not _missing(r.get(key))]
        absent = [r for r in rows if _missing(r.get(key))]
        present.sort(key=lambda r: _sort_key(r[key]), reverse=desc)
        rows = present + absent
    return rows


# -- output ----------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A ``psql``-style table, numbers right-aligned."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    numeric = [all(_is_number(r.get(c)) or _missing(r.get(c)) for r in rows) for c in columns]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: list[str], header: bool = False) -> str:
        parts = [
            v.rjust(w) if numeric[i] and not header else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ]
        return "| " + " | ".join(parts) + " |"

    border = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    under = "|-" + "-+-".join("-" * w for w in widths) + "-|"
    return "\n".join([border, line(columns, header=True), under] + [line(row) for row in cells] + [border])


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Prints the table without its empty columns (and, on a terminal, what does not fit)."""
    empty = [c for c in columns if all(_missing(r.get(c)) for r in rows)] if rows else []
    shown = [c for c in columns if c not in empty]
    dropped: list[str] = []
    if sys.stdout.isatty():
        width = shutil.get_terminal_size(fallback=(100, 100)).columns
        while len(shown) > 1 and len(format_table(rows, shown).split("\n", 1)[0]) > width:
            dropped.insert(0, shown.pop())
    print(format_table(rows, shown) if shown else "(no columns to show)")
    if dropped:
        print(f"Dropped columns: {dropped}")
        print("Please increase your terminal size to view remaining columns.")
    if empty:
        print(f"Empty columns: {empty}")


def write_output(rows: list[dict], columns: list[str], output: str) -> None:
    """Writes the rows to a .csv or .pkl file, making its directory if new (as ``report -o`` does)."""
    extension = os.path.splitext(output)[1].lower()
    if extension not in (".csv", ".pkl", ".p", ".pickle"):
        raise CLIError(f"--output {output!r}: unsupported file type; use a .csv or .pkl file name.")
    import io

    from tunesmith._internal.storage import StorageError, write_output_file

    if extension == ".csv":
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if _missing(row.get(c)) else _csv_value(row.get(c)) for c in columns])
        data = text.getvalue().encode("utf-8")
    else:
        import pandas as pd

        buffer = io.BytesIO()
        pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns).to_pickle(buffer)
        data = buffer.getvalue()
    try:
        where = write_output_file(output, data)  # a local path, or a store's URI (s3://...)
    except (OSError, StorageError) as exc:
        raise CLIError(f"--output {output!r}: could not write it: {exc}") from exc
    print(f"Output saved at: {where if output.startswith('file://') else output}")


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _show(rows: list[dict], columns: list[str], args, available: list[str] | None = None) -> int:
    available = available or _available(rows) or columns
    if args.filter:
        keep = parse_filter(args.filter, rows, available)
        rows = [r for r in rows if keep(r)]
    sort = _split(args.sort)
    if sort:
        _check_columns(sort, available, "--sort")
        rows = sort_rows(rows, sort, args.desc)
    if args.limit is not None:
        rows = rows[: max(args.limit, 0)]
    print_table(rows, columns)
    if args.output:
        write_output(rows, columns, args.output)
    return 0


# -- commands --------------------------------------------------------------------------------------
def list_trials(args) -> int:
    rows, info_and_config, result_columns = trial_rows(args.experiment_dir)
    available = _available(rows) or info_and_config
    columns = _split(args.columns)
    extra = _split(args.result_columns)
    _check_columns(columns, available, "--columns")
    _check_columns(extra, available, "--result-columns")
    if not columns:
        columns = [c for c in info_and_config if c in DEFAULT_EXPERIMENT_INFO_KEYS or c.startswith(CONFIG_PREFIX)]
        if not extra:
            extra = [c for c in DEFAULT_RESULT_KEYS if c in result_columns]
    columns += [c for c in extra if c not in columns]
    return _show(rows, columns, args)


def list_experiments(args) -> int:
    rows = experiment_rows(args.results_dir)
    if not rows:
        raise CLIError(f"No experiments found in {args.results_dir}.")
    available = _available(rows)
    available += [s for s in _STATUSES if s not in available]  # known even where no experiment has a state
    columns = _split(args.columns)
    _check_columns(columns, available, "--columns")
    if not columns:
        # By default, only the statuses some experiment has; any of them can be asked for.
        columns = ["name", "total_trials", *[s for s in _STATUSES if any(r.get(s) for r in rows)], "last_updated"]
    return _show(rows, columns, args, available)


def _local_only(path: str, what: str) -> None:
    """Refuses a store's URI for a command that changes files on this machine only."""
    if "://" in path and not path.startswith("file://"):
        raise CLIError(f"{what} works on directories on this machine; {path!r} is on a store (use its own tools "
                       "there, such as `aws s3 rm --recursive`).")


def add_note(args) -> int:
    _local_only(args.path, "add-note")
    path = os.path.expanduser(args.path[len("file://"):] if args.path.startswith("file://") else args.path)
    if not os.path.isdir(path):
        raise CLIError(f"{args.path} is not a directory; pass an experiment or trial directory.")
    name = args.filename
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\x00" in name:
        raise CLIError(f"--filename {name!r} must be a plain file name, such as note.txt.")
    file_path = os.path.join(path, name)
    existed = os.path.isfile(file_path)
    if args.message is not None:
        with open(file_path, "a", encoding="utf-8") as f:
            f.write(args.message if args.message.endswith("\n") else args.message + "\n")
    else:
        editor = shlex.split(os.environ.get("EDITOR") or "vim")
        try:
            subprocess.call(editor + [file_path])
        except OSError as exc:
            raise CLIError(f"Could not start the editor {editor[0]!r} (set $EDITOR): {exc}") from exc
    print(f"Note {'updated' if existed else 'created'} at: {file_path}")
    return 0


def remove(args) -> int:
    for path in args.paths:
        _local_only(path, "rm")
        path = path[len("file://"):] if path.startswith("file://") else path
        if not os.path.isfile(os.path.join(path, EXPR_PARAM_FILE)) and not os.path.isfile(
            os.path.join(path, EXPERIMENT_STATE_FILE)
        ):
            print(f"Refusing to remove {path}: it is neither a trial nor an experiment directory.", file=sys.stderr)
            return 1
        if not args.yes:
            try:
                answer = input(f"Remove {path}? [y/N] ")
            except EOFError:  # no terminal to ask (stdin closed or redirected)
                print("Aborted!", file=sys.stderr)
                return 1
            if answer.strip().lower() != "y":
                continue
        shutil.rmtree(path)
    return 0


def _report_of_uri(uri: str, output: str | None, metric: str | None, mode: str | None) -> str:
    """The report of an experiment on a store (file://, s3://...): its files are read into a
    temporary directory and the page is written locally (``report.html`` here by default)."""
    import tempfile

    from tunesmith.tune import ExperimentAnalysis
    from tunesmith.tune.analysis.html_report import write_html_report
    from tunesmith.tune.result_grid import _copy_report_inputs

    try:
        analysis = ExperimentAnalysis(uri)
        analysis._read_state(required=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{uri} is not an experiment directory that can be read: {exc}") from exc
    with tempfile.TemporaryDirectory() as local:
        _copy_report_inputs(analysis, local)
        return write_html_report(local, output or "report.html", metric=metric, mode=mode, shown_path=uri)


def report(args) -> int:
    from tunesmith.tune.analysis.html_report import write_html_report

    try:
        if "://" in args.experiment_dir:
            path = _report_of_uri(args.experiment_dir, args.output, args.metric, args.mode)
        else:
            path = write_html_report(args.experiment_dir, args.output, metric=args.metric, mode=args.mode)
    except ValueError as exc:
        print(f"tunesmith report: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {path}")
    return 0


def _table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sort", help="Comma-separated columns to sort by.")
    p.add_argument("--desc", action="store_true", help="Sort in descending order (Ray's `--desc True` works too).")
    p.add_argument("--filter", help='Keep rows matching "<column> <operator> <value>"; operators: < <= == != >= >.')
    p.add_argument("--limit", type=int, help="Show at most this many rows.")
    p.add_argument("-o", "--output", help="Also write the rows to this .csv or .pkl file.")


def _normalise_desc(argv: list[str]) -> list[str]:
    """Accepts Ray's ``--desc True``/``--desc False`` besides the bare flag."""
    out = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        value = None
        if arg == "--desc" and i + 1 < len(argv) and argv[i + 1].lower() in ("true", "false", "1", "0"):
            value, skip = argv[i + 1].lower(), True
        elif arg.startswith("--desc="):
            value = arg.split("=", 1)[1].lower()
        if value is None:
            out.append(arg)
        elif value in ("true", "1"):
            out.append("--desc")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunesmith", description="Inspect tunesmith experiments.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list-trials", aliases=["ls"], help="List the trials of an experiment.")
    p.add_argument("experiment_dir")
    p.add_argument("--columns", help="Comma-separated columns to show (instead of the default ones).")
    p.add_argument("--result-columns", help="Comma-separated columns of the last result to show.")
    _table_options(p)
    p.set_defaults(func=list_trials)
    p = sub.add_parser("list-experiments", aliases=["lsx"], help="List the experiments in a results directory.")
    p.add_argument("results_dir")
    p.add_argument("--columns", help="Comma-separated columns to show (instead of the default ones).")
    _table_options(p)
    p.set_defaults(func=list_experiments)
    p = sub.add_parser("add-note", help="Add a note (a text file) to an experiment or trial directory.")
    p.add_argument("path")
    p.add_argument("--filename", default="note.txt", help="Name of the note file (default: note.txt).")
    p.add_argument("-m", "--message", help="Append this text instead of opening $EDITOR.")
    p.set_defaults(func=add_note)
    p = sub.add_parser("rm", help="Remove trial or experiment directories.")
    p.add_argument("paths", nargs="+")
    p.add_argument("-y", "--yes", action="store_true", help="Do not ask for confirmation.")
    p.set_defaults(func=remove)
    p = sub.add_parser("report", help="Write a self-contained HTML report of an experiment.")
    p.add_argument("experiment_dir")
    p.add_argument("-o", "--output", help="Where to write it (default: EXPERIMENT_DIR/report.html).")
    p.add_argument("--metric", help="Metric to rank and plot (default: the experiment's).")
    p.add_argument("--mode", choices=["min", "max"], help="Whether lower or higher is better.")
    p.set_defaults(func=report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the ``tunesmith`` command.

    Example:
        >>> from tunesmith.tune.cli import main
        >>> main(["list-trials", "/nonexistent"])
        Traceback (most recent call last):
        ...
        SystemExit: /nonexistent is not an experiment directory (it has no experiment_state.json).
    """
    args = build_parser().parse_args(_normalise_desc(list(sys.argv[1:] if argv is None else argv)))
    try:
        return args.func(args)
    except CLIError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
