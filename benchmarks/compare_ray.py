"""Side-by-side overhead benchmark: tunesmith against Ray Tune.

Runs the workloads of ``bench_core.py`` with both libraries, each workload in
a fresh Python process, back to back, and prints per workload the figures of
both and how many times faster tunesmith is.

tunesmith runs in the current interpreter. Ray Tune runs in a separate
interpreter that has ``ray[tune]`` installed (``--ray-python``), so Ray never
has to be installed next to tunesmith. Only the standard library is used here.

Run::

    python benchmarks/compare_ray.py
    python benchmarks/compare_ray.py --only 4x5000_reports --reports 2000
    python benchmarks/compare_ray.py --skip-ray
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

PRELUDE = "import os, sys, time, json\n"

# Per-library pieces substituted into the workload templates below, so that
# both libraries run exactly the same trainables and search spaces.
BACKENDS = {
    "tunesmith": {
        "import_tune": "from tunesmith import tune",
        "init_2_cpus": "import tunesmith; tunesmith.init(num_cpus=2)",
    },
    "ray": {
        "import_tune": "from ray import tune",
        "init_2_cpus": "import ray; ray.init(num_cpus=2)",
    },
}

# Ray refuses to run when TUNE_RESULT_DIR is set, so the results directory is
# passed to both libraries as ``storage_path`` through a variable of our own.
RUN_CONFIG = 'tune.RunConfig(verbose=0, storage_path=os.environ["BENCH_STORAGE_PATH"])'

WORKLOADS = {
    "one_trial_whole_process": textwrap.dedent("""
        {import_tune}
        def trivial(config):
            tune.report({{"score": 1}})
        tune.Tuner(trivial, run_config={run_config}).fit()
    """),
    "200_trivial_trials": textwrap.dedent("""
        t0 = time.perf_counter()
        {import_tune}
        def trivial(config):
            tune.report({{"score": config["i"]}})
        tune.Tuner(trivial, param_space={{"i": tune.grid_search(list(range(200)))}},
                   run_config={run_config}).fit()
        print(json.dumps({{"inner_s": time.perf_counter() - t0}}))
    """),
    "4x5000_reports": textwrap.dedent("""
        {import_tune}
        REPORTS = {reports}
        def many(config):
            for i in range(REPORTS):
                tune.report({{"score": i, "loss": 1.0 / (i + 1)}})
        t0 = time.perf_counter()
        tune.Tuner(many, param_space={{"i": tune.grid_search(list(range(4)))}},
                   run_config={run_config}).fit()
        el = time.perf_counter() - t0
        print(json.dumps({{"inner_s": el, "reports_per_trial": REPORTS,
                          "results_per_s": 4 * REPORTS / el}}))
    """),
    "100x_sleep_0.2_on_2_cpus": textwrap.dedent("""
        {import_tune}
        {init_2_cpus}
        def sleepy(config):
            time.sleep(0.2)
            tune.report({{"done_at": time.time()}})
        t0 = time.perf_counter()
        tune.Tuner(sleepy, param_space={{"i": tune.grid_search(list(range(100)))}},
                   run_config={run_config}).fit()
        el = time.perf_counter() - t0
        print(json.dumps({{"inner_s": el, "ideal_s": 10.0,
                          "overhead_pct": 100 * (el - 10.0) / 10.0}}))
    """),
}

# The figure each workload is compared on, and whether higher is better.
PRIMARY = {
    "one_trial_whole_process": ("whole_process_s", False),
    "200_trivial_trials": ("whole_process_s", False),
    "4x5000_reports": ("results_per_s", True),
    "100x_sleep_0.2_on_2_cpus": ("inner_s", False),
}


def workload_code(name: str, backend: str, reports: int) -> str:
    """Return the Python source of workload ``name`` for ``backend``."""
    pieces = dict(BACKENDS[backend], run_config=RUN_CONFIG, reports=reports)
    return PRELUDE + WORKLOADS[name].format(**pieces)


def run_one(python: str, code: str, timeout: float, extra_env: dict[str, str | None]) -> dict:
    """Run ``code`` with ``python`` in a fresh process and collect its figures.

    Returns a dict of figures, or ``{"error": message}`` when the process
    failed or ran past ``timeout`` seconds. Variables of ``extra_env`` whose
    value is None are removed from the environment of the process.
    """
    with tempfile.TemporaryDirectory(prefix="bench_results_") as results:
        env = dict(os.environ, BENCH_STORAGE_PATH=results, TUNE_RESULT_DIR=results)
        # Both libraries run as installed packages do: with their bytecode cached.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for key, value in extra_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        t0 = time.perf_counter()
        try:
            out = subprocess.run([python, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        return {"error": f"exit status {out.returncode}:\n{tail}"}
    figures: dict = {"whole_process_s": round(wall, 3)}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            try:
                figures.update({k: round(v, 3) if isinstance(v, float) else v
                                for k, v in json.loads(line).items()})
            except ValueError:
                pass
    return figures


def show(label: str, figures: dict) -> None:
    """Print the figures of one run, or its error message."""
    if "error" in figures:
        body = textwrap.indent(figures["error"], " " * 13).lstrip()
        print(f"  {label:<10} FAILED: {body}", flush=True)
    else:
        print(f"  {label:<10} {json.dumps(figures)}", flush=True)


def ratio_line(name: str, ours: dict, theirs: dict) -> str:
    """Describe how the two runs of ``name`` compare on its primary figure."""
    key, higher_is_better = PRIMARY[name]
    if key not in ours or key not in theirs or not ours[key] or not theirs[key]:
        return "ratio: n/a"
    factor = ours[key] / theirs[key] if higher_is_better else theirs[key] / ours[key]
    word = "faster" if factor >= 1 else "slower"
    shown = factor if factor >= 1 else 1 / factor
    return f"ratio on {key}: tunesmith {word} by {shown:.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default="/work/ray-venv/bin/python",
                        help="interpreter with ray[tune] installed (default: %(default)s)")
    parser.add_argument("--only", choices=sorted(WORKLOADS), action="append",
                        help="run only this workload (may be given more than once)")
    parser.add_argument("--skip-ray", action="store_true", help="run tunesmith only")
    parser.add_argument("--reports", type=int, default=5000,
                        help="reports per trial for Ray in 4x5000_reports (default: %(default)s; "
                             "tunesmith always uses 5000)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed per workload and library (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.reports < 1:
        parser.error(f"--reports must be a positive integer, got {args.reports}.")
    if not args.skip_ray and not os.path.exists(args.ray_python):
        parser.error(f"--ray-python {args.ray_python!r} does not exist; "
                     "pass an interpreter with ray[tune] installed, or --skip-ray.")

    print(f"tunesmith python: {sys.executable}")
    if not args.skip_ray:
        version = subprocess.run([args.ray_python, "-c", "import ray; print(ray.__version__)"],
                                 capture_output=True, text=True)
        print(f"ray python: {args.ray_python} (ray {version.stdout.strip() or 'not importable'})")
    print(f"cpus: {os.cpu_count()}", flush=True)

    ray_env = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_RESULT_DIR": None}
    failed = False
    for name in args.only or list(WORKLOADS):
        print(f"\n== {name}", flush=True)
        ours = run_one(sys.executable, workload_code(name, "tunesmith", 5000), args.timeout, {})
        show("tunesmith:", ours)
        failed |= "error" in ours
        if args.skip_ray:
            continue
        theirs = run_one(args.ray_python, workload_code(name, "ray", args.reports),
                         args.timeout, ray_env)
        show("ray:", theirs)
        failed |= "error" in theirs
        print(f"  {ratio_line(name, ours, theirs)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
