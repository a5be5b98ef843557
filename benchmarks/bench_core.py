"""Core overhead benchmarks of tunesmith on the local backend, default loggers on.

Prints one line per figure. Run: ``python benchmarks/bench_core.py``.
Each workload runs in a fresh Python process so that start-up is counted
where it matters and runs do not share warm state.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

PRELUDE = "import os, sys, time, json\n"

WORKLOADS = {
    "one_trial_whole_process": textwrap.dedent("""
        from tunesmith import tune
        def trivial(config):
            tune.report({"score": 1})
        tune.Tuner(trivial, run_config=tune.RunConfig(verbose=0)).fit()
    """),
    # With a sampled parameter the TensorBoard logger writes HParams at the trial's end;
    # that must not import tensorboardX (and with it torch, when installed).
    "one_trial_hparams_whole_process": textwrap.dedent("""
        from tunesmith import tune
        def trivial(config):
            tune.report({"score": config["lr"]})
        tune.Tuner(trivial, param_space={"lr": tune.uniform(0, 1)}, run_config=tune.RunConfig(verbose=0)).fit()
        print(json.dumps({"imported_torch": int("torch" in sys.modules),
                          "imported_tensorboardX": int("tensorboardX" in sys.modules)}))
    """),
    "200_trivial_trials": textwrap.dedent("""
        t0 = time.perf_counter()
        from tunesmith import tune
        def trivial(config):
            tune.report({"score": config["i"]})
        tune.Tuner(trivial, param_space={"i": tune.grid_search(list(range(200)))},
                   run_config=tune.RunConfig(verbose=0)).fit()
        print(json.dumps({"inner_s": time.perf_counter() - t0}))
    """),
    "4x5000_reports": textwrap.dedent("""
        from tunesmith import tune
        def many(config):
            for i in range(5000):
                tune.report({"score": i, "loss": 1.0 / (i + 1)})
        t0 = time.perf_counter()
        tune.Tuner(many, param_space={"i": tune.grid_search(list(range(4)))},
                   run_config=tune.RunConfig(verbose=0)).fit()
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
                   run_config=tune.RunConfig(verbose=0)).fit()
        el = time.perf_counter() - t0
        print(json.dumps({"inner_s": el, "ideal_s": 10.0, "overhead_pct": 100 * (el - 10.0) / 10.0}))
    """),
}


def run(name: str, code: str) -> dict:
    with tempfile.TemporaryDirectory() as results:
        env = dict(os.environ, TUNE_RESULT_DIR=results)
        # Run as an installed package does: with its compiled bytecode cached.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PRELUDE + code], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stdout}\n{out.stderr}")
    figures = {"whole_process_s": round(wall, 3)}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            figures.update({k: round(v, 3) for k, v in json.loads(line).items()})
    return figures


def main() -> None:
    selected = sys.argv[1:] or list(WORKLOADS)
    for name in selected:
        print(f"{name}: {json.dumps(run(name, WORKLOADS[name]))}", flush=True)


if __name__ == "__main__":
    main()
