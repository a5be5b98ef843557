"""What tracker logging costs the experiment: result throughput with and without MLflow, side by side.

Prints one line per workload and then the ratios, with the load average before and after. Run:
``python benchmarks/bench_trackers.py [ROUNDS] [WORKLOADS] [STORES]`` (default 1 round; with more,
the workloads alternate and each figure is the median; WORKLOADS and STORES are comma-separated
subsets, e.g. ``1 4x5000 none,sqlite``).

Workloads (each in a fresh Python process, default loggers on, ``verbose=0``):

- ``4x5000``: bench_core's ``4x5000_reports`` (four trials, 5,000 trivial
  reports each), without a tracker and with ``MLflowLoggerCallback`` on a
  SQLite store and on a file store. Two times are taken: until the last
  trial has finished (the experiment's own speed, while the tracker helper
  records in the background) and until ``fit()`` returns (everything is in
  MLflow). MLflow records about 5,000 metric values a second on the SQLite
  store here, so for 20,000 results of 8 metrics each the second time is
  MLflow's, not tunesmith's.
- ``4x500_2ms``: four trials of 500 reports, each after 2 ms of work: a
  fast but not trivial training loop.
- ``4x5000_2ms``: the same loop ten times longer (about 20 s on two cores),
  so that MLflow's fixed start-up (its import and a new store's migrations,
  about 3 to 4 s here) weighs less against the run.

``mlflow=null`` is a tracker callback whose backend records nothing: the
cost of queueing the results and handing them to the helper process alone.

Every run with MLflow checks afterwards that MLflow has every result.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

CODE = textwrap.dedent("""
    import json, os, sys, time
    from tunesmith import tune

    reports, work_s, store = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    marks = {}

    class Mark(tune.Callback):
        def on_experiment_end(self, trials, **info):
            marks["experiment_done"] = time.perf_counter()

    def train_fn(config):
        for i in range(reports):
            if work_s:
                end = time.perf_counter() + work_s
                while time.perf_counter() < end:
                    pass
            tune.report({"score": i, "loss": 1.0 / (i + 1)})

    callbacks = [Mark()]
    uri = None
    if store == "null":
        from tunesmith.tune.logger._tracker import TrackerBackend, TrackerLoggerCallback

        class NullTracker(TrackerLoggerCallback):
            def _make_backend(self):
                return TrackerBackend()  # records nothing: what the queue and helper process cost

        callbacks.append(NullTracker())
    elif store != "none":
        from tunesmith.tune.logger.mlflow import MLflowLoggerCallback
        uri = (f"sqlite:///{os.path.join(os.environ['TUNE_RESULT_DIR'], 'mlflow.db')}" if store == "sqlite"
               else "file://" + os.path.join(os.environ["TUNE_RESULT_DIR"], "mlruns"))
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name="bench"))
    t0 = time.perf_counter()
    tune.Tuner(train_fn, param_space={"i": tune.grid_search(list(range(4)))},
               run_config=tune.RunConfig(verbose=0, callbacks=callbacks)).fit()
    t1 = time.perf_counter()
    out = {"experiment_s": marks["experiment_done"] - t0, "fit_s": t1 - t0}
    if uri:
        from mlflow import MlflowClient
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("bench")
        runs = client.search_runs([exp.experiment_id])
        out["mlflow_loss_values"] = sum(len(client.get_metric_history(r.info.run_id, "loss")) for r in runs)
        if store == "sqlite":
            import sqlite3
            with sqlite3.connect(os.path.join(os.environ["TUNE_RESULT_DIR"], "mlflow.db")) as db:
                out["metric_rows"] = db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    print(json.dumps(out))
""")

WORKLOADS = {
    "4x5000": (5000, 0.0),
    "4x500_2ms": (500, 0.002),
    "4x5000_2ms": (5000, 0.002),
}
STORES = ("none", "null", "sqlite", "file")


def run_once(reports: int, work_s: float, store: str) -> dict:
    with tempfile.TemporaryDirectory() as results:
        env = dict(os.environ, TUNE_RESULT_DIR=results, MLFLOW_ALLOW_FILE_STORE="true",
                   TUNESMITH_LEDGER_DIR=os.path.join(results, "ledger"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        out = subprocess.run([sys.executable, "-c", CODE, str(reports), str(work_s), store], env=env,
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{reports} reports, store {store} failed:\n{out.stdout}\n{out.stderr}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    total = 4 * reports
    if store in ("sqlite", "file") and figures["mlflow_loss_values"] != total:
        raise RuntimeError(f"MLflow has {figures['mlflow_loss_values']} of {total} loss values")
    figures["experiment_results_per_s"] = total / figures["experiment_s"]
    figures["fit_results_per_s"] = total / figures["fit_s"]
    return figures


FLOOR_CODE = textwrap.dedent("""
    import json, os, sqlite3, sys, time
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    t_import = time.perf_counter()
    from mlflow import MlflowClient

    rows, batch = int(sys.argv[1]), int(sys.argv[2])
    path = os.path.join(os.environ["TUNE_RESULT_DIR"], "floor.db")
    t_store = time.perf_counter()
    client = MlflowClient(tracking_uri="sqlite:///" + path)
    client.search_experiments(max_results=1)
    t_ready = time.perf_counter()
    run_id = client.create_run(client.create_experiment("floor")).info.run_id
    keys = [f"metric_{i}" for i in range(9)]
    values = [(keys[i % 9], float(i), 1765000000000 + i // 9, i // 9, 0, run_id) for i in range(rows)]
    with sqlite3.connect(path) as db:
        t0 = time.perf_counter()
        for start in range(0, rows, batch):
            db.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
                           "VALUES (?, ?, ?, ?, ?, ?)", values[start:start + batch])
            db.commit()
        elapsed = time.perf_counter() - t0
    print(json.dumps({"rows": rows, "insert_s": elapsed, "import_s": t_store - t_import,
                      "new_store_s": t_ready - t_store}))
""")


def sqlite_floor(rows: int) -> dict:
    """SQLite's own rate for inserting ``rows`` values into MLflow's metrics table (its schema, three indexes).

    Plain ``sqlite3`` ``executemany`` in transactions of 9,000 rows, no MLflow or SQLAlchemy code:
    no tracker on SQLite can record the experiment's values faster than this. Also times
    MLflow's fixed start-up in the same fresh process: its import and the creation of a new
    SQLite store, which every ``fit()`` with a new store waits for before its first value.
    """
    with tempfile.TemporaryDirectory() as results:
        env = dict(os.environ, TUNE_RESULT_DIR=results)
        out = subprocess.run([sys.executable, "-c", FLOOR_CODE, str(rows), "9000"], env=env,
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the SQLite floor measurement failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    workloads = {k: v for k, v in WORKLOADS.items() if len(sys.argv) <= 2 or k in sys.argv[2].split(",")}
    stores = [s for s in STORES if len(sys.argv) <= 3 or s in sys.argv[3].split(",")]
    if "none" not in stores:
        stores.insert(0, "none")  # every ratio is against it
    print("load average before (1, 5, 15 min): %.2f, %.2f, %.2f" % os.getloadavg(), flush=True)
    figures: dict[tuple[str, str], list[dict]] = {}
    for _ in range(rounds):
        for name, (reports, work_s) in workloads.items():
            for store in stores:
                figures.setdefault((name, store), []).append(run_once(reports, work_s, store))
    med = {key: {k: statistics.median(run[k] for run in runs) for k in runs[0]} for key, runs in figures.items()}
    for (name, store), f in med.items():
        print(f"{name} mlflow={store}: experiment {f['experiment_s']:.2f} s "
              f"({f['experiment_results_per_s']:,.0f} results/s), fit() {f['fit_s']:.2f} s "
              f"({f['fit_results_per_s']:,.0f} results/s)", flush=True)
    for name in workloads:
        base = med[(name, "none")]
        for store in stores[1:]:
            f = med[(name, store)]
            print(f"{name} mlflow={store}/none results/s ratio: experiment "
                  f"{f['experiment_results_per_s'] / base['experiment_results_per_s']:.2f}, "
                  f"fit() {f['fit_results_per_s'] / base['fit_results_per_s']:.2f}")
    for name in workloads:
        if (name, "sqlite") not in med:
            continue
        rows = int(med[(name, "sqlite")]["metric_rows"])
        floor = sqlite_floor(rows)
        base = med[(name, "none")]
        mlflow_s = floor["import_s"] + floor["new_store_s"] + floor["insert_s"]
        print(f"MLflow's own start-up in a fresh process: import {floor['import_s']:.2f} s, a new SQLite "
              f"store (its tables and migrations) {floor['new_store_s']:.2f} s")
        print(f"{name} SQLite floor: {rows:,} metric values, plain sqlite3 inserts them into MLflow's "
              f"metrics table at {rows / floor['insert_s']:,.0f} values/s ({floor['insert_s']:.2f} s); with "
              f"MLflow's start-up, {mlflow_s:.2f} s of work before fit() can return. fit()'s results/s ratio "
              f"could at best be {base['fit_s'] / max(base['fit_s'], mlflow_s):.2f} with all of it overlapping "
              f"the trials on a spare core, {base['fit_s'] / (base['fit_s'] + mlflow_s):.2f} with none of it")
    print("load average after (1, 5, 15 min): %.2f, %.2f, %.2f" % os.getloadavg())
    print(f"({rounds} round(s), {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
