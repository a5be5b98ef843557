"""Per-trial cost, worker start, result throughput, ASHA start latency and driver memory, side by side.

Every workload runs in a fresh Python process (start-up counted) with the
default loggers on, in its own results directory and machine-sharing ledger,
and is checked on disk afterwards (rows in ``result.json`` and
``progress.csv``, every trial TERMINATED; see ``_guard.py``), so a dropped
result cannot look like a speed-up. With ``--baseline REV`` the same workloads
run against that revision's ``src`` too, alternating with the current one in
each round, and the medians are printed side by side; the load average is
printed before and after each workload.

Anchors: Optuna's in-process loop with ``RandomSampler`` (no processes, no
files) for the per-trial cost, and the ideal time of the sleeping workload.

Run::

    python benchmarks/bench_speed.py [--baseline REV] [--rounds N] [--only a,b] [--memory]
    python benchmarks/bench_speed.py --ci     # small sizes, loose ratio bounds; exits 1 on a regression

``--ci`` is what ``.ci/run`` runs: it fails only on an order-of-magnitude
regression, measured as ratios against anchors taken in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _guard import BenchmarkCheckFailed, baseline_src, check_experiment, check_rows, load, machine, with_workload  # noqa: E402

TRIVIAL = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from tunesmith import tune
    n = int(sys.argv[2])
    def trivial(config):
        tune.report({"score": config["i"]})
    tune.Tuner(trivial, param_space={"i": tune.grid_search(list(range(n)))},
               run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
    print(json.dumps({"inner_s": time.perf_counter() - t0}))
""")

OPTUNA = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = int(sys.argv[2])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=n)
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    print(json.dumps({"inner_s": time.perf_counter() - t0, "complete": done}))
""")

OPTUNA_REPORTS = textwrap.dedent("""
    import json, sys, time
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials, reports = int(sys.argv[2]), int(sys.argv[3])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    def objective(trial):
        for i in range(reports):
            trial.report(1.0 / (i + 1), i)
        return 0.0
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    el = time.perf_counter() - t0
    n = sum(len(t.intermediate_values) for t in study.trials)
    print(json.dumps({"inner_s": el, "results": n, "results_per_s": n / el}))
""")

REPORTS = textwrap.dedent("""
    import json, sys, time
    from tunesmith import tune
    trials, reports = int(sys.argv[2]), int(sys.argv[3])
    def many(config):
        for i in range(reports):
            tune.report({"score": i, "loss": 1.0 / (i + 1)})
    t0 = time.perf_counter()
    tune.Tuner(many, param_space={"i": tune.grid_search(list(range(trials)))},
               run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
    el = time.perf_counter() - t0
    print(json.dumps({"inner_s": el, "results_per_s": trials * reports / el}))
""")

# The three default loggers alone, in this process, on the rows the 4 x N workload logs (built
# before the clock starts): what logging costs the driver per result with no trial, worker or
# controller, so the results/s of the whole run can be read against it.
LOGGERS_ALONE = textwrap.dedent("""
    import json, os, sys, time
    from tunesmith.tune.callback import CallbackList
    from tunesmith.tune.experiment.trial import Trial
    from tunesmith.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
    from tunesmith.tune.logger._util import wait_for_writes
    trials, reports = int(sys.argv[2]), int(sys.argv[3])
    exp = os.path.join(sys.argv[1], "b")
    ts = [Trial("many", {"i": i}, trial_id=f"bench_{i:05d}", experiment_path=exp, evaluated_params={"i": i},
                experiment_tag=f"{i}_i={i}") for i in range(trials)]
    start = time.time()
    rows = []
    for i in range(reports):
        for t in ts:
            now = start + 0.0001 * i
            rows.append((t, {"score": i, "loss": 1.0 / (i + 1), "training_iteration": i + 1,
                             "timesteps_since_restore": 0, "time_this_iter_s": 7.3e-05 + i * 1e-9,
                             "time_total_s": now - start + 0.000617, "time_since_restore": now - start + 0.000617,
                             "iterations_since_restore": i + 1, "timestamp": int(now), "done": False,
                             "trial_id": t.trial_id, "experiment_id": "9b6ce33b50fe43d38c951bd3bd633da6",
                             "experiment_tag": t.experiment_tag, "date": "2026-12-06_16-32-10", "hostname": "vm",
                             "node_ip": "127.0.0.1", "pid": 25190 + int(t.config["i"]), "config": t.config,
                             "checkpoint_dir_name": None}))
    cbs = CallbackList([JsonLoggerCallback(), CSVLoggerCallback(), TBXLoggerCallback()])
    t0, c0 = time.perf_counter(), time.process_time()
    for t in ts:
        cbs.on_trial_start(iteration=0, trials=ts, trial=t)
    for n, (t, r) in enumerate(rows):
        cbs.on_trial_result(iteration=n, trials=ts, trial=t, result=r)
        if n % 256 == 255:
            cbs.on_step_end(iteration=n, trials=ts)
    for t in ts:
        cbs.on_trial_complete(iteration=len(rows), trials=ts, trial=t)
    cbs.on_experiment_end(trials=ts)
    wait_for_writes()
    el, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"inner_s": el, "results_per_s": len(rows) / el, "cpu_us_per_result": 1e6 * cpu / len(rows),
                      "results_per_cpu_s": len(rows) / cpu}))
""")

# The seed's "many results" benchmark, scaled to this machine: N concurrent trials on 2 CPUs,
# each reporting 10 times a second.
MANY_RESULTS = textwrap.dedent("""
    import json, sys, time
    import tunesmith
    from tunesmith import tune
    trials, reports = int(sys.argv[2]), int(sys.argv[3])
    tunesmith.init(num_cpus=2)
    def tenth(config):
        for i in range(reports):
            time.sleep(0.1)
            tune.report({"i": i})
    t0 = time.perf_counter()
    tune.Tuner(tune.with_resources(tenth, {"cpu": 2 / trials}),
               param_space={"i": tune.grid_search(list(range(trials)))},
               run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
    el = time.perf_counter() - t0
    ideal = reports * 0.1
    print(json.dumps({"inner_s": el, "ideal_s": ideal, "overhead_pct": 100 * (el - ideal) / ideal}))
""")

SCHEDULERS = textwrap.dedent("""
    import json, sys, time
    import tunesmith
    from tunesmith import tune
    from tunesmith.tune.schedulers import ASHAScheduler
    trials, reports, which = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    tunesmith.init(num_cpus=2)
    def trivial(config):
        for it in range(1, reports + 1):
            tune.report({"score": config["q"] * it})
    scheduler = ASHAScheduler(max_t=reports, grace_period=1, reduction_factor=4) if which == "asha" else None
    t0 = time.perf_counter()
    grid = tune.Tuner(trivial, param_space={"q": tune.uniform(0, 1)},
                      tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="max",
                                                  scheduler=scheduler),
                      run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
    el = time.perf_counter() - t0
    n = sum(r.metrics.get("training_iteration", 0) for r in grid)
    print(json.dumps({"inner_s": el, "results": n, "results_per_s": n / el}))
""")

MEMORY = textwrap.dedent("""
    import json, resource, sys, time
    from tunesmith import tune
    n = int(sys.argv[2])
    def trivial(config):
        tune.report({"score": config["i"]})
    t0 = time.perf_counter()
    tune.Tuner(trivial, param_space={"i": tune.grid_search(list(range(n)))},
               run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"inner_s": time.perf_counter() - t0, "driver_peak_rss_mb": rss}))
""")


def _trials_check(n: int, reports: int = 1):
    return lambda storage, fig: check_experiment(storage, n, n * reports)


def _rows_check(n: int):
    return lambda storage, fig: check_rows(storage, n)


def _optuna_check(n: int):
    def check(storage, fig):
        if fig.get("complete") != n:
            raise BenchmarkCheckFailed(f"optuna completed {fig.get('complete')} of {n} trials")
    return check


def _optuna_reports_check(n: int):
    def check(storage, fig):
        if fig.get("results") != n:
            raise BenchmarkCheckFailed(f"optuna recorded {fig.get('results')} of {n} reports")
    return check


def _scheduler_check(n: int):
    def check(storage, fig):
        rows = check_experiment(storage, n, None)  # rows = the sum of the trials' last iterations
        if rows != fig["results"]:
            raise BenchmarkCheckFailed(f"{rows} rows on disk, the results reported {fig['results']}")
    return check


def workloads(ci: bool) -> dict[str, tuple[str, list, object, bool, str]]:
    """name -> (code, args, check, runs tunesmith, figure printed)."""
    trivial = 200 if ci else 2000
    reports = 1000 if ci else 5000
    many, many_reports = (16, 20) if ci else (96, 100)
    asha = 200 if ci else 2000
    return {
        f"{trivial}_trivial_trials": (TRIVIAL, [trivial], _trials_check(trivial), True, "whole_process_s"),
        f"optuna_{trivial}_trials_in_process": (OPTUNA, [trivial], _optuna_check(trivial), False, "whole_process_s"),
        f"4x{reports}_reports": (REPORTS, [4, reports], _trials_check(4, reports), True, "results_per_s"),
        f"loggers_alone_4x{reports}": (LOGGERS_ALONE, [4, reports], _rows_check(4 * reports), True, "results_per_s"),
        f"optuna_4x{reports}_trial_report": (OPTUNA_REPORTS, [4, reports], _optuna_reports_check(4 * reports),
                                             False, "results_per_s"),
        f"{many}x{many_reports}_reports_10_per_s_on_2_cpus": (
            MANY_RESULTS, [many, many_reports], _trials_check(many, many_reports), True, "inner_s"),
        f"fifo_{asha}x20": (SCHEDULERS, [asha, 20, "fifo"], _scheduler_check(asha), True, "results_per_s"),
        f"asha_{asha}x20": (SCHEDULERS, [asha, 20, "asha"], _scheduler_check(asha), True, "results_per_s"),
    }


def _fmt(figures: dict) -> str:
    keep = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    return json.dumps(keep)


def _median(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values:
            out[key] = statistics.median(values)
    return out


# CI bounds: each an order of magnitude looser than the figures measured on the 2-core VM.
def _ci_verdicts(fig: dict[str, dict]) -> list[tuple[str, float, str, bool]]:
    def get(prefix: str, key: str) -> float:
        return next(v for k, v in fig.items() if k.startswith(prefix))[key]

    per_trial = get("200_trivial", "whole_process_s") / get("optuna_200", "whole_process_s")
    results = get("4x1000_reports", "results_per_s") / get("optuna_4x1000", "results_per_s")
    overhead = get("16x20", "inner_s") / get("16x20", "ideal_s")
    asha = get("asha_200", "results_per_s") / get("fifo_200", "results_per_s")
    return [
        ("200 trivial trials / Optuna's in-process loop, whole process", per_trial, "at most 20", per_trial <= 20),
        ("results/s, 4x1000 reports / Optuna trial.report", results, "at least 0.003", results >= 0.003),
        ("16 trials x 20 reports at 10/s: time / ideal", overhead, "at most 5", overhead <= 5),
        ("ASHA / FIFO results/s, 200 trials", asha, "at least 0.03", asha >= 0.03),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to run side by side with the current source")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", help="comma-separated name prefixes of the workloads to run")
    parser.add_argument("--memory", action="store_true", help="also measure driver RSS over 10,000 trials")
    parser.add_argument("--ci", action="store_true", help="small sizes and loose ratio bounds")
    args = parser.parse_args()

    chosen = workloads(args.ci)
    if args.only:
        prefixes = args.only.split(",")
        chosen = {k: v for k, v in chosen.items() if any(k.startswith(p) for p in prefixes)}
    if args.memory:
        chosen["driver_rss_10000_trials"] = (MEMORY, [10000], _trials_check(10000), True, "driver_peak_rss_mb")
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, rounds: {args.rounds}; {machine()}", flush=True)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sides = [("current", None)]
        if args.baseline:
            sides.insert(0, (f"baseline {args.baseline}", baseline_src(args.baseline, tmp)))
        for name, (code, wargs, check, is_tunesmith, key) in chosen.items():
            runs: dict[str, list[dict]] = {label: [] for label, _ in sides}
            before = load()
            for _ in range(args.rounds):
                for label, src in sides if is_tunesmith else sides[-1:]:
                    runs[label].append(with_workload(code, wargs, check, src=src))
            print(f"== {name}  ({before}; after: {load()})", flush=True)
            medians = {}
            for label, results in runs.items():
                if results:
                    medians[label] = _median(results)
                    print(f"  {label:<22} {_fmt(medians[label])}", flush=True)
            if len(medians) == 2:
                (bl, b), (cl, c) = medians.items()
                faster = c[key] > b[key] if "per_s" in key else c[key] < b[key]
                ratio = c[key] / b[key] if "per_s" in key else b[key] / c[key]
                print(f"  {key}: current {'better' if faster else 'worse'}, x{ratio:.2f} against the baseline")
            figures[name] = medians["current"]
    print(f"at the end: {machine()}", flush=True)
    if args.ci:
        failed = False
        for what, value, bound, ok in _ci_verdicts(figures):
            print(f"{'ok  ' if ok else 'FAIL'} {what}: {value:.3f} ({bound})")
            failed |= not ok
        return 1 if failed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
