"""The ``tunesmith`` command: look at experiments on disk.

    tunesmith list-trials EXPERIMENT_DIR [--sort COL] [--columns a,b] [--limit N] [--desc]
    tunesmith list-experiments RESULTS_DIR
    tunesmith rm TRIAL_DIR...
    tunesmith report EXPERIMENT_DIR [-o report.html] [--metric M --mode min|max]

``ls``/``lsx`` are accepted as the older spellings of the first two.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from tunesmith.tune.result import EXPERIMENT_STATE_FILE


def _load_trials(experiment_dir: str) -> list[dict]:
    path = os.path.join(experiment_dir, EXPERIMENT_STATE_FILE)
    if not os.path.isfile(path):
        raise SystemExit(f"{experiment_dir} is not an experiment directory (it has no {EXPERIMENT_STATE_FILE}).")
    with open(path) as f:
        return json.load(f)["trials"]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def _table(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda values: " | ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(columns), sep] + [line(row) for row in cells])


def list_trials(args) -> int:
    trials = _load_trials(args.experiment_dir)
    rows = []
    for t in trials:
        row = {"trial_id": t["trial_id"], "status": t["status"], "trial_dir": t["trial_dirname"]}
        row.update({f"config/{k}": v for k, v in _flatten(t.get("evaluated_params") or {}).items()})
        for key in ("training_iteration", "time_total_s"):
            if key in (t.get("last_result") or {}):
                row[key] = t["last_result"][key]
        if args.columns:
            row.update({c: _flatten(t.get("last_result") or {}).get(c, "") for c in args.columns.split(",")})
        rows.append(row)
    if args.sort:
        rows.sort(key=lambda r: (r.get(args.sort) is None, r.get(args.sort)), reverse=args.desc)
    if args.limit:
        rows = rows[: args.limit]
    print(_table(rows) if rows else "No trials.")
    return 0


def list_experiments(args) -> int:
    rows = []
    for name in sorted(os.listdir(args.results_dir)):
        state = os.path.join(args.results_dir, name, EXPERIMENT_STATE_FILE)
        if not os.path.isfile(state):
            continue
        trials = _load_trials(os.path.join(args.results_dir, name))
        counts = {}
        for t in trials:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        rows.append({"experiment": name, "trials": len(trials),
                     **{s.lower(): n for s, n in sorted(counts.items())}})
    print(_table(rows) if rows else "No experiments.")
    return 0


def remove(args) -> int:
    for path in args.paths:
        if not os.path.isfile(os.path.join(path, "params.json")) and not os.path.isfile(
            os.path.join(path, EXPERIMENT_STATE_FILE)
        ):
            print(f"Refusing to remove {path}: it is neither a trial nor an experiment directory.", file=sys.stderr)
            return 1
        if not args.yes and input(f"Remove {path}? [y/N] ").strip().lower() != "y":
            continue
        shutil.rmtree(path)
    return 0


def report(args) -> int:
    from tunesmith.tune.analysis.html_report import write_html_report

    try:
        path = write_html_report(args.experiment_dir, args.output, metric=args.metric, mode=args.mode)
    except ValueError as exc:
        print(f"tunesmith report: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunesmith", description="Inspect tunesmith experiments.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list-trials", aliases=["ls"], help="List the trials of an experiment.")
    p.add_argument("experiment_dir")
    p.add_argument("--sort", help="Column to sort by.")
    p.add_argument("--desc", action="store_true", help="Sort in descending order.")
    p.add_argument("--columns", help="Comma-separated result columns to show.")
    p.add_argument("--limit", type=int, help="Show at most this many trials.")
    p.set_defaults(func=list_trials)
    p = sub.add_parser("list-experiments", aliases=["lsx"], help="List the experiments in a results directory.")
    p.add_argument("results_dir")
    p.set_defaults(func=list_experiments)
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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
