"""Core overhead benchmarks of tunesmith on the local backend, default loggers on.

Prints one line per figure. Run: ``python benchmarks/bench_core.py``.
Each workload runs in a fresh Python process so that start-up is counted
where it matters and runs do not share warm state, in its own results
directory and machine-sharing ledger; the trials and result rows it leaves on
disk are checked after each run (``_guard.py``), and the load average is
printed next to the figures.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _guard import check_experiment, load, machine, with_workload  # noqa: E402

PRELUDE = "import os, sys, time, json\n"

WORKLOADS = {
    "one_trial_whole_process": textwrap.dedent("""
        from tunesmith import tune
        def trivial(config):
            tune.report({"score": 1})
        tune.Tuner(trivial, run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
    """),
    # With a sampled parameter the TensorBoard logger writes HParams at the trial's end;
    # that must not import tensorboardX (and with it torch, when installed).
    "one_trial_hparams_whole_process": textwrap.dedent("""
        from tunesmith import tune
        def trivial(config):
            tune.report({"score": config["lr"]})
        tune.Tuner(trivial, param_space={"lr": tune.uniform(0, 1)},
                   run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
        print(json.dumps({"imported_torch": int("torch" in sys.modules),
                          "imported_tensorboardX": int("tensorboardX" in sys.modules)}))
    """),
    "200_trivial_trials": textwrap.dedent("""
        t0 = time.perf_counter()
        from tunesmith import tune
        def trivial(config):
            tune.report({"score": config["i"]})
        tune.Tuner(trivial, param_space={"i": tune.grid_search(list(range(200)))},
                   run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
        print(json.dumps({"inner_s": time.perf_counter() - t0}))
    """),
    "4x5000_reports": textwrap.dedent("""
        from tunesmith import tune
        def many(config):
            for i in range(5000):
                tune.report({"score": i, "loss": 1.0 / (i + 1)})
        t0 = time.perf_counter()
        tune.Tuner(many, param_space={"i": tune.grid_search(list(range(4)))},
                   run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
        el = time.perf_counter() - t0
        print(json.dumps({"inner_s": el, "results_per_s": 20000 / el}))
    """),
    "100x_sleep_0.2_on_2_cpus": textwrap.dedent("""
        import tunesmith
        from tunesmith import tune
        tunesmith.init(num_cpus=2)
        def sleepy(config):
            time.sleep(0.2)
            tune.report({"done_at": time.time()})
        t0 = time.perf_counter()
        tune.Tuner(sleepy, param_space={"i": tune.grid_search(list(range(100)))},
                   run_config=tune.RunConfig(storage_path=sys.argv[1], name="b", verbose=0)).fit()
        el = time.perf_counter() - t0
        print(json.dumps({"inner_s": el, "ideal_s": 10.0, "overhead_pct": 100 * (el - 10.0) / 10.0}))
    """),
}


# What each workload must leave on disk: (trials, result rows), checked after every run.
EXPECTED = {
    "one_trial_whole_process": (1, 1),
    "one_trial_hparams_whole_process": (1, 1),
    "200_trivial_trials": (200, 200),
    "4x5000_reports": (4, 20000),
    "100x_sleep_0.2_on_2_cpus": (100, 100),
}


def run(name: str, code: str) -> dict:
    trials, rows = EXPECTED[name]
    figures = with_workload(PRELUDE + code, [], lambda storage, fig: check_experiment(storage, trials, rows))
    return {k: round(v, 3) for k, v in figures.items()}


def main() -> None:
    selected = sys.argv[1:] or list(WORKLOADS)
    print(f"cpus: {os.cpu_count()}; {machine()}", flush=True)
    for name in selected:
        print(f"{name}: {json.dumps(run(name, WORKLOADS[name]))}  ({load()})", flush=True)


if __name__ == "__main__":
    main()
