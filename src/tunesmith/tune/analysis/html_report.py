"""A one-file HTML report of a finished (or running) experiment.

``tunesmith report EXPERIMENT_DIR`` and ``ResultGrid.report(path)`` write it.
The page shows the best trial and its config, the learning curve of the
metric for every trial, a parallel-coordinates view of config against final
metric, the scheduler's early stops, the errors with their tracebacks, and a
table of all trials. Everything it needs (data, styles, drawing code) is in
the file: it opens offline, from disk or as an e-mail attachment, and stays
usable with thousands of trials (curves are thinned to a bounded number of
points per trial).

Only the experiment's JSON files are read (``experiment_state.json``, each
trial's ``result.json`` and ``error.txt``): nothing is unpickled.
"""
from __future__ import annotations

import datetime
import html
import json
import math
import numbers
import os
from typing import Any

from tunesmith.tune.result import (
    AUTO_RESULT_KEYS,
    EXPERIMENT_STATE_FILE,
    EXPR_ERROR_FILE,
    EXPR_RESULT_FILE,
    TRAINING_ITERATION,
)

REPORT_FILE = "report.html"
# Points of all learning curves together, and per curve, kept in the page.
_MAX_TOTAL_POINTS = 300_000
_MAX_CURVE_POINTS = 200
_MAX_TRACEBACK_CHARS = 20_000
_LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "rmse", "regret", "cost", "time")


def _lookup(result: dict, key: str) -> Any:
    if key in result:
        return result[key]
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in (d or {}).items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _read_results(path: str) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash
    except OSError:
        pass
    return rows


def _read_tail(path: str, limit: int) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return ("..." + text) if size > limit else text


def _thin(points: list[list[float]], limit: int) -> list[list[float]]:
    """At most ``limit`` points, evenly spaced, always keeping the first and last."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _guess_metric(trials: list[dict]) -> str | None:
    for trial in trials:
        for key, value in _flatten({k: v for k, v in (trial.get("last_result") or {}).items()
                                    if k not in AUTO_RESULT_KEYS}).items():
            if _number(value) is not None:
                return key
    return None


def collect_report_data(experiment_path: str, metric: str | None = None, mode: str | None = None,
                        shown_path: str | None = None) -> dict:
    """Everything the report shows, as JSON-safe data, read from an experiment directory.

    Args:
        experiment_path: The experiment directory (with ``experiment_state.json``).
        metric: The metric to rank and plot; the experiment's own by default.
        mode: ``"min"`` or ``"max"``; the experiment's own by default.

    Returns:
        A dict with the experiment's summary and one entry per trial.
    """
    state_file = os.path.join(experiment_path, EXPERIMENT_STATE_FILE)
    if not os.path.isfile(state_file):
        raise ValueError(
            f"{experiment_path} is not an experiment directory: it has no {EXPERIMENT_STATE_FILE}. "
            "Pass the directory of one experiment (e.g. ~/tunesmith_results/<name>)."
        )
    if mode not in (None, "min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
    with open(state_file, encoding="utf-8") as f:
        state = json.load(f)
    states = state.get("trials") or []
    metric = metric or state.get("metric") or _guess_metric(states)
    mode_guessed = False
    if mode is None:
        mode = state.get("mode") if not metric or metric == state.get("metric") else None
    if mode is None:
        mode_guessed = True
        mode = "min" if metric and any(word in metric.lower() for word in _LOWER_IS_BETTER) else "max"

    per_curve = max(10, min(_MAX_CURVE_POINTS, _MAX_TOTAL_POINTS // max(1, len(states))))
    params: list[str] = []
    trials = []
    for ts in states:
        trial_dir = os.path.join(experiment_path, os.path.basename(ts.get("trial_dirname") or ""))
        results = _read_results(os.path.join(trial_dir, EXPR_RESULT_FILE))
        if not results and ts.get("last_result"):
            results = [ts["last_result"]]
        curve = []
        for row in results:
            value = _number(_lookup(row, metric)) if metric else None
            step = _number(row.get(TRAINING_ITERATION))
            if value is not None and step is not None:
                curve.append([step, value])
        values = [v for _, v in curve]
        # The final value is the last one the trial reported for the metric, as get_best_result()
        # ranks trials (a metric logged every few iterations counts); one that was NaN makes no final
        # value rather than an older one.
        final = None
        if metric:
            last_reported = next((r for r in reversed(results) if _lookup(r, metric) is not None), None)
            final = _number(_lookup(last_reported, metric)) if last_reported is not None else None
        config = _flatten(ts.get("evaluated_params") or {}) or _flatten(ts.get("config") or {})
        for key in config:
            if key not in params:
                params.append(key)
        last = ts.get("last_result") or (results[-1] if results else {})
        error = None
        error_text = _read_tail(os.path.join(trial_dir, EXPR_ERROR_FILE), _MAX_TRACEBACK_CHARS)
        if error_text:
            error = {"message": ts.get("error_msg") or error_text.strip().splitlines()[-1],
                     "traceback": error_text, "failures": ts.get("num_failures", 0)}
        trials.append({
            "id": ts.get("trial_id"),
            "name": ts.get("custom_trial_name") or f"{ts.get('trainable_name', 'trial')}_{ts.get('trial_id')}",
            "dir": os.path.basename(trial_dir),
            "status": ts.get("status"),
            "config": {k: _plain(v) for k, v in config.items()},
            "iterations": last.get(TRAINING_ITERATION, 0) or 0,
            "time": _number(last.get("time_total_s")),
            "final": final,
            "best": (min(values) if mode == "min" else max(values)) if values else None,
            "curve": _thin(curve, per_curve),
            "stopped_at": ts.get("scheduler_stop_iteration"),
            "error": error,
        })
    # A scheduler's stop at the last iteration any trial reached is the end of the budget, not an early stop.
    longest = max((t["iterations"] for t in trials), default=0)
    for t in trials:
        if t["stopped_at"] is not None and t["stopped_at"] >= longest:
            t["stopped_at"] = None
    ranked = [i for i, t in enumerate(trials) if t["final"] is not None]
    best = None
    if ranked:
        best = (min if mode == "min" else max)(ranked, key=lambda i: trials[i]["final"])
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    return {
        "experiment": state.get("experiment_name") or os.path.basename(os.path.normpath(experiment_path)),
        "path": shown_path or os.path.abspath(experiment_path),
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "metric": metric,
        "mode": mode,
        "mode_guessed": mode_guessed,
        "params": params,
        "counts": counts,
        "best": best,
        "longest": longest,
        "trials": trials,
    }


def render_html(data: dict) -> str:
    """The report page for :func:`collect_report_data`'s data: one self-contained HTML document."""
    payload = json.dumps(data, allow_nan=False, separators=(",", ":"))
    # Inside <script>, "</" could end the element early; JSON allows "<\/" for it.
    # "<!--" would open an HTML comment: "\u003c" is the same "<" to JSON, and no tag to HTML.
    payload = payload.replace("</", "<\\/").replace("<!--", "\\u003c!--")
    title = html.escape(f"{data['experiment']} · tunesmith report")
    return _TEMPLATE.replace("__TITLE__", title).replace("__DATA__", payload)


def write_html_report(experiment_path: str, output_path: str | None = None, *, metric: str | None = None,
                      mode: str | None = None, shown_path: str | None = None) -> str:
    """Writes the HTML report of an experiment and returns its path.

    Args:
        experiment_path: The experiment directory.
        output_path: Where to write; ``<experiment dir>/report.html`` by default.
        metric: The metric to rank and plot; the experiment's own by default.
        mode: ``"min"`` or ``"max"``; the experiment's own by default.
        shown_path: The experiment's location as the page names it (its URI, when
            ``experiment_path`` is a local copy of an experiment on remote storage).

    Returns:
        The path of the written file.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.analysis.html_report import write_html_report
        >>> def objective(config):
        ...     for i in range(3):
        ...         tune.report({"loss": config["x"] / (i + 1)})
        >>> results = tune.Tuner(objective, param_space={"x": tune.grid_search([1, 2])},  # doctest: +SKIP
        ...                      tune_config=tune.TuneConfig(metric="loss", mode="min")).fit()
        >>> write_html_report(results.experiment_path)  # doctest: +SKIP
        '/home/me/tunesmith_results/objective_2026-01-01_12-00-00/report.html'
    """
    data = collect_report_data(experiment_path, metric=metric, mode=mode, shown_path=shown_path)
    from tunesmith._internal.storage import write_output_file

    output_path = os.fspath(output_path or os.path.join(experiment_path, REPORT_FILE))
    if os.path.isdir(output_path) or output_path.endswith(("/", os.sep)):  # a directory (made if new)
        output_path = output_path.rstrip("/" + os.sep) + "/" + REPORT_FILE if "://" in output_path \
            else os.path.join(output_path, REPORT_FILE)
    # A local path (its directory made if new), or a store's URI (s3://bucket/report.html).
    written = write_output_file(output_path, render_html(data).encode("utf-8"))
    return written if output_path.startswith("file://") else output_path


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --fg: #1d2430; --muted: #5d6776; --line: #d9dee6; --bg: #f6f7f9; --card: #fff;
        --accent: #e4572e; --trial: #3b6ea5; --bad: #c0392b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { padding: 18px 28px 12px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { color: var(--muted); font-size: 12.5px; word-break: break-all; }
main { padding: 18px 28px 40px; display: grid; gap: 18px; grid-template-columns: minmax(0, 1fr); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; }
section h2 { margin: 0 0 10px; font-size: 15px; }
.pills span { display: inline-block; margin: 6px 6px 0 0; padding: 2px 9px; border-radius: 10px;
              background: #eef1f5; font-size: 12.5px; }
.pills .TERMINATED { background: #e3f2e8; } .pills .ERROR { background: #f8e1de; }
.pills .RUNNING { background: #e1ecf8; } .pills .PAUSED, .pills .PENDING { background: #f5efd9; }
.best { display: grid; grid-template-columns: minmax(220px, 320px) minmax(0, 1fr); gap: 18px; }
.big { font-size: 26px; font-weight: 600; color: var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { position: sticky; top: 0; background: #f0f2f5; cursor: pointer; user-select: none; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.is-best td { background: #fff1eb; }
tr:hover td { background: #eef4fb; }
.scroll { max-height: 420px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.axis line, .axis path { stroke: #9aa3af; }
.grid line { stroke: #edf0f3; }
.curve { fill: none; stroke: var(--trial); stroke-width: 1; opacity: 0.35; }
.curve.errored { stroke: var(--bad); stroke-dasharray: 3 2; }
.curve.best, .pc.best { stroke: var(--accent) !important; stroke-width: 2.5; opacity: 1; }
.curve.hl, .pc.hl { stroke: #111 !important; stroke-width: 2.5; opacity: 1; }
.pc { fill: none; stroke-width: 1; opacity: 0.5; }
.dot { fill: var(--trial); stroke: none; opacity: 0.6; }
.dot.errored { fill: var(--bad); }
.dot.best { fill: var(--accent); opacity: 1; }
.dot.hl { fill: #111; opacity: 1; }
.controls { color: var(--muted); font-size: 12.5px; margin-bottom: 6px; }
details { border-top: 1px solid var(--line); padding: 6px 0; }
summary { cursor: pointer; }
pre { background: #1f2430; color: #e6e6e6; padding: 10px 12px; border-radius: 6px; overflow: auto;
      max-height: 360px; font-size: 12px; }
.muted { color: var(--muted); }
.bars rect { fill: var(--trial); opacity: 0.8; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div class="meta" id="meta"></div>
  <div class="pills" id="counts"></div>
</header>
<main>
  <section id="best-section"><h2>Best trial</h2><div id="best"></div></section>
  <section id="curves-section"><h2 id="curves-title">Learning curves</h2>
    <div class="controls"><label><input type="checkbox" id="logy"> log scale</label>
      <span id="curves-note"></span></div>
    <svg id="curves" viewBox="0 0 960 380" role="img" aria-label="learning curves"></svg></section>
  <section id="pc-section"><h2>Config against final metric</h2>
    <div class="controls" id="pc-note"></div>
    <svg id="pc" viewBox="0 0 960 360" role="img" aria-label="parallel coordinates"></svg></section>
  <section id="sched-section"><h2>Scheduler decisions</h2><div id="sched"></div></section>
  <section id="errors-section"><h2 id="errors-title">Errors</h2><div id="error-kinds"></div>
    <div class="scroll" id="errors"></div></section>
  <section id="trials-section"><h2>All trials</h2><div class="scroll"><table id="trials"></table></div>
    <div class="controls" id="trials-note"></div></section>
</main>
<script type="application/json" id="report-data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const SVGNS = "http://www.w3.org/2000/svg";
const T = D.trials;
const better = D.mode === "min" ? (a, b) => a < b : (a, b) => a > b;

function el(tag, attrs, parent, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const k in attrs || {}) node.setAttribute(k, attrs[k]);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(3) : String(+v.toPrecision(5));
}
function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const err = (hi - lo) / n / step;
  const s = step * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const first = Math.ceil(lo / s) * s;
  // A range a few floating-point steps wide (0.1 + 0.2 against 0.3): v += s would not move.
  if (!(s > 0) || first + s === first || (hi - first) / s > 1000) return [lo, hi];
  const out = [];
  for (let v = first; v <= hi + s * 1e-9; v += s) out.push(+v.toPrecision(12));
  return out;
}
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function color(t) {  // viridis-like; t=1 is the best end
  t = Math.max(0, Math.min(1, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t)), f = t - i;
  const c = STOPS[i].map((a, k) => Math.round(a + (STOPS[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// -- header --------------------------------------------------------------------------
document.getElementById("title").textContent = D.experiment;
document.getElementById("meta").textContent =
  `${D.path} · ${T.length} trials · metric ${D.metric || "(none)"} (${D.mode}${D.mode_guessed ? ", guessed" : ""})` +
  ` · report generated ${D.generated}`;
const counts = document.getElementById("counts");
for (const s of Object.keys(D.counts).sort()) el("span", {class: s}, counts, `${D.counts[s]} ${s}`);

// -- best trial ------------------------------------------------------------------------
const bestBox = document.getElementById("best");
if (D.best === null) {
  el("p", {class: "muted"}, bestBox, D.metric ? `No trial reported ${D.metric}.` : "No metric to rank trials by.");
} else {
  const b = T[D.best];
  const grid = el("div", {class: "best"}, bestBox);
  const left = el("div", {}, grid);
  el("div", {class: "muted"}, left, `${D.metric} (${D.mode === "min" ? "lowest" : "highest"} final value)`);
  el("div", {class: "big", id: "best-value"}, left, fmt(b.final));
  el("div", {id: "best-name"}, left, b.name);
  el("div", {class: "muted"}, left, `${b.status} after ${b.iterations} iterations` +
     (b.time !== null ? ` · ${fmt(b.time)} s` : "") + (b.stopped_at ? ` · stopped by the scheduler at ${b.stopped_at}` : ""));
  const table = el("table", {id: "best-config"}, el("div", {}, grid));
  const head = el("tr", {}, table); el("th", {}, head, "parameter"); el("th", {}, head, "value");
  const keys = Object.keys(b.config);
  if (!keys.length) el("td", {colspan: 2, class: "muted"}, el("tr", {}, table), "(no parameters)");
  for (const k of keys) { const r = el("tr", {}, table); el("td", {}, r, k); el("td", {class: "num"}, r, fmt(b.config[k])); }
}

// -- learning curves -------------------------------------------------------------------
const curvesSvg = document.getElementById("curves");
let highlighted = null;
function drawCurves() {
  curvesSvg.textContent = "";
  const W = 960, H = 380, L = 64, R = 16, TOP = 12, B = 36;
  const logy = document.getElementById("logy").checked;
  const withCurve = T.map((t, i) => i).filter(i => T[i].curve.length);
  document.getElementById("curves-title").textContent = `Learning curves: ${D.metric || "(no metric)"}`;
  if (!withCurve.length) { el("svg:text", {x: 20, y: 40}, curvesSvg, "No trial reported the metric."); return; }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const i of withCurve) for (const [x, y] of T[i].curve) {
    if (logy && !(y > 0)) continue;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x0 === Infinity) {
    el("svg:text", {x: 20, y: 40}, curvesSvg, "No value of the metric is above 0: a log scale cannot show it.");
    return;
  }
  if (!(y1 >= y0)) { y0 = 0; y1 = 1; }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) || 1; y0 -= d / 2; y1 += d / 2; }
  const fy = logy ? (y => Math.log10(y)) : (y => y);
  const Y0 = fy(y0), Y1 = fy(y1);
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => TOP + (1 - (fy(y) - Y0) / (Y1 - Y0)) * (H - TOP - B);
  const grid = el("svg:g", {class: "grid"}, curvesSvg), axis = el("svg:g", {class: "axis"}, curvesSvg);
  const yt = logy ? ticks(Y0, Y1, 6).map(v => Math.pow(10, v)) : ticks(y0, y1, 6);
  for (const v of yt) {
    el("svg:line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v)}, grid);
    el("svg:text", {x: L - 6, y: sy(v) + 4, "text-anchor": "end"}, axis, fmt(v));
  }
  for (const v of ticks(x0, x1, 10)) {
    el("svg:line", {x1: sx(v), x2: sx(v), y1: H - B, y2: H - B + 4}, axis);
    el("svg:text", {x: sx(v), y: H - B + 16, "text-anchor": "middle"}, axis, fmt(v));
  }
  el("svg:line", {x1: L, x2: W - R, y1: H - B, y2: H - B}, axis);
  el("svg:line", {x1: L, x2: L, y1: TOP, y2: H - B}, axis);
  el("svg:text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle"}, axis, "training_iteration");
  const lines = el("svg:g", {id: "curve-lines"}, curvesSvg);
  const order = withCurve.filter(i => i !== D.best).concat(D.best !== null && T[D.best].curve.length ? [D.best] : []);
  for (const i of order) {
    const t = T[i];
    const pts = t.curve.filter(([, y]) => !logy || y > 0);
    if (!pts.length) continue;
    const cls = (t.status === "ERROR" ? " errored" : "") + (i === D.best ? " best" : "") +
                (i === highlighted ? " hl" : "");
    let mark;
    if (pts.length > 1) {
      const d = pts.map(([x, y], k) => `${k ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
      mark = el("svg:path", {d, class: "curve" + cls, "data-trial": t.id}, lines);
    } else {  // a one-result trial is a dot: a path of one point paints nothing
      const [[x, y]] = pts, r = i === D.best || i === highlighted ? 5 : 3.5;
      mark = el("svg:circle", {cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r, class: "dot" + cls, "data-trial": t.id},
                lines);
    }
    el("svg:title", {}, mark, `${t.name}: ${fmt(t.final)} after ${t.iterations} iterations`);
  }
  const note = document.getElementById("curves-note");
  note.textContent = ` · ${withCurve.length} trials` + (D.best !== null ? ` · best in orange` : "") +
    (T.some(t => t.status === "ERROR") ? " · errored trials in red" : "");
}
document.getElementById("logy").addEventListener("change", drawCurves);

// -- parallel coordinates -------------------------------------------------------------------
const pcSvg = document.getElementById("pc");
function drawParallel() {
  pcSvg.textContent = "";
  const W = 960, H = 360, L = 50, R = 70, TOP = 28, B = 30;
  const rows = T.map((t, i) => i).filter(i => T[i].final !== null);
  const dims = D.params.concat(D.metric ? [D.metric] : []);
  if (!rows.length || !dims.length) {
    el("svg:text", {x: 20, y: 40}, pcSvg, "No trial has both a config and a final metric.");
    return;
  }
  // A parameter a trial has as None, or not at all (a conditional space), is a value of its own.
  const value = (i, k) => {
    if (k === D.metric && k === dims[dims.length - 1]) return T[i].final;
    const v = T[i].config[k];
    return v === null ? "None" : v === undefined ? "(none)" : v;
  };
  const axes = dims.map((k, j) => {
    const vals = rows.map(i => value(i, k)).filter(v => v !== undefined && v !== null);
    const numeric = vals.length && vals.every(v => typeof v === "number");
    let scale, tickVals;
    if (numeric) {
      let lo = Math.min(...vals), hi = Math.max(...vals);
      const log = lo > 0 && hi / lo >= 20 && j < dims.length - 1;
      if (hi === lo) { lo -= 0.5; hi += 0.5; }
      const f = log ? Math.log10 : (v => v);
      scale = v => (f(v) - f(lo)) / (f(hi) - f(lo));
      tickVals = log ? ticks(Math.log10(lo), Math.log10(hi), 4).map(v => Math.pow(10, v)) : ticks(lo, hi, 5);
    } else {
      const cats = [...new Set(vals.map(String))].sort();
      scale = v => cats.length > 1 ? cats.indexOf(String(v)) / (cats.length - 1) : 0.5;
      tickVals = cats;
    }
    return {key: k, x: L + j * (W - L - R) / Math.max(1, dims.length - 1), scale, tickVals};
  });
  const ys = v => TOP + (1 - v) * (H - TOP - B);
  const finals = rows.map(i => T[i].final);
  const fmin = Math.min(...finals), fmax = Math.max(...finals);
  const goodness = f => fmax === fmin ? 1 : (D.mode === "min" ? (fmax - f) / (fmax - fmin) : (f - fmin) / (fmax - fmin));
  const g = el("svg:g", {id: "pc-lines"}, pcSvg);
  const order = rows.filter(i => i !== D.best).concat(D.best !== null ? [D.best] : []);
  for (const i of order) {
    let d = "", ok = true;
    axes.forEach((a, j) => {
      const v = value(i, a.key);
      if (v === undefined || v === null) { ok = false; return; }
      d += `${j ? "L" : "M"}${a.x.toFixed(1)},${ys(a.scale(v)).toFixed(1)}`;
    });
    if (!ok) continue;
    if (axes.length === 1) d += "h1";
    const p = el("svg:path", {d, class: "pc" + (i === D.best ? " best" : "") + (i === highlighted ? " hl" : ""),
                              stroke: color(goodness(T[i].final)), "data-trial": T[i].id}, g);
    el("svg:title", {}, p, `${T[i].name}: ${fmt(T[i].final)}`);
  }
  const axisG = el("svg:g", {class: "axis"}, pcSvg);
  for (const a of axes) {
    el("svg:line", {x1: a.x, x2: a.x, y1: TOP, y2: H - B}, axisG);
    el("svg:text", {x: a.x, y: TOP - 10, "text-anchor": "middle", "font-weight": 600}, axisG, a.key);
    const shown = a.tickVals.length > 12 ? a.tickVals.filter((_, k) => k % Math.ceil(a.tickVals.length / 12) === 0) : a.tickVals;
    for (const v of shown) {
      const y = ys(a.scale(v));
      if (!(y >= TOP - 1 && y <= H - B + 1)) continue;
      el("svg:text", {x: a.x + 5, y: y + 4}, axisG, fmt(v));
    }
  }
  document.getElementById("pc-note").textContent =
    `${order.length} trials · one line per trial, colored by final ${D.metric} (yellow is best) · best in orange`;
}

// -- scheduler decisions -------------------------------------------------------------------------
(function drawScheduler() {
  const box = document.getElementById("sched");
  const stopped = T.filter(t => t.stopped_at !== null && t.stopped_at !== undefined);
  if (!stopped.length) {
    el("p", {class: "muted"}, box, "The scheduler stopped no trial early.");
    return;
  }
  el("p", {}, box, `The scheduler stopped ${stopped.length} of ${T.length} trials early ` +
     `(the longest trials ran ${D.longest} iterations).`);
  const byIter = {};
  for (const t of stopped) byIter[t.stopped_at] = (byIter[t.stopped_at] || 0) + 1;
  const iters = Object.keys(byIter).map(Number).sort((a, b) => a - b);
  const W = 960, H = 140, L = 40, B = 28, max = Math.max(...Object.values(byIter));
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, class: "bars", id: "sched-bars"}, box);
  const bw = Math.min(60, (W - L - 10) / iters.length - 6);
  iters.forEach((it, k) => {
    const x = L + k * (bw + 6), h = (H - B - 18) * byIter[it] / max;
    const r = el("svg:rect", {x, y: H - B - h, width: bw, height: h}, svg);
    el("svg:title", {}, r, `${byIter[it]} trials stopped at iteration ${it}`);
    el("svg:text", {x: x + bw / 2, y: H - B - h - 4, "text-anchor": "middle"}, svg, String(byIter[it]));
    el("svg:text", {x: x + bw / 2, y: H - B + 14, "text-anchor": "middle"}, svg, String(it));
  });
  el("svg:text", {x: L, y: H - 2}, svg, "trials stopped, by iteration of the stop");
})();

// -- errors ---------------------------------------------------------------------------------------
(function drawErrors() {
  const box = document.getElementById("errors");
  const failed = T.filter(t => t.error);
  document.getElementById("errors-title").textContent = `Errors (${failed.length})`;
  if (!failed.length) {
    el("p", {class: "muted"}, document.getElementById("error-kinds"), "No trial failed.");
    box.remove();
    return;
  }
  // Errors that differ only in numbers (a learning rate, an index) are one kind.
  const kinds = {};
  for (const t of failed) {
    const key = t.error.message.replace(/-?\d+(\.\d+)?(e[-+]?\d+)?/gi, "#");
    (kinds[key] = kinds[key] || []).push(t);
  }
  const kindTable = el("table", {id: "error-kinds-table"}, document.getElementById("error-kinds"));
  const kh = el("tr", {}, kindTable);
  el("th", {}, kh, "trials"); el("th", {}, kh, "error (numbers as #)"); el("th", {}, kh, "first trial");
  const sorted = Object.entries(kinds).sort((a, b) => b[1].length - a[1].length);
  for (const [message, ts] of sorted.slice(0, 10)) {
    const r = el("tr", {}, kindTable);
    el("td", {class: "num"}, r, String(ts.length)); el("td", {}, r, message); el("td", {}, r, ts[0].name);
  }
  if (sorted.length > 10) el("p", {class: "muted"}, document.getElementById("error-kinds"),
                             `... and ${sorted.length - 10} more kinds of error.`);
  el("p", {class: "muted"}, document.getElementById("error-kinds"), "Tracebacks, one per failed trial:");
  box.style.padding = "0 10px";
  failed.forEach((t, k) => {
    const det = el("details", k < 3 ? {open: ""} : {}, box);
    el("summary", {}, det, `${t.name} (${t.status}, ${t.error.failures} failure${t.error.failures === 1 ? "" : "s"}): ${t.error.message}`);
    el("pre", {class: "traceback"}, det, t.error.traceback);
  });
})();

// -- table of trials ------------------------------------------------------------------------------
const PAGE = 500;
let sortKey = "final", sortAsc = D.mode === "min", shownRows = PAGE;
function drawTable() {
  const table = document.getElementById("trials");
  table.textContent = "";
  const cols = [["name", "trial"], ["status", "status"], ["iterations", "iter"], ["final", D.metric || "metric"],
                ["stopped_at", "stopped at"]].concat(D.params.map(p => ["config:" + p, p]));
  const head = el("tr", {}, el("thead", {}, table));
  for (const [key, label] of cols) {
    const th = el("th", {}, head, label + (key === sortKey ? (sortAsc ? " ▲" : " ▼") : ""));
    th.addEventListener("click", () => { sortAsc = key === sortKey ? !sortAsc : true; sortKey = key; drawTable(); });
  }
  const get = (t, key) => key.startsWith("config:") ? t.config[key.slice(7)] : t[key];
  const idx = T.map((t, i) => i).sort((a, b) => {
    const va = get(T[a], sortKey), vb = get(T[b], sortKey);
    if (va === vb) return 0;
    if (va === null || va === undefined) return 1;
    if (vb === null || vb === undefined) return -1;
    return (va < vb ? -1 : 1) * (sortAsc ? 1 : -1);
  });
  const body = el("tbody", {}, table);
  for (const i of idx.slice(0, shownRows)) {
    const t = T[i];
    const r = el("tr", {class: i === D.best ? "is-best" : "", "data-trial": t.id}, body);
    for (const [key] of cols) {
      const v = get(t, key);
      el("td", {class: typeof v === "number" ? "num" : ""}, r, fmt(v));
    }
    r.addEventListener("click", () => { highlighted = highlighted === i ? null : i; drawCurves(); drawParallel(); });
  }
  const note = document.getElementById("trials-note");
  note.textContent = "";
  if (T.length > shownRows) {
    note.textContent = `Showing ${shownRows} of ${T.length} trials. `;
    const more = el("a", {href: "#trials-section"}, note, "Show all");
    more.addEventListener("click", e => { e.preventDefault(); shownRows = T.length; drawTable(); });
  } else {
    note.textContent = "Click a column to sort, a row to highlight its trial in the plots.";
  }
}

drawCurves();
drawParallel();
drawTable();
document.body.dataset.ready = "1";
</script>
</body>
</html>
"""
