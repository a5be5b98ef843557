"""Several experiments at once on one machine, against the same experiments one after another.

Each experiment is a fresh Python process running ``Tuner.fit()`` with 1-CPU trials
of ``time.sleep`` on 2 CPUs (``tunesmith.init(num_cpus=2)``); all share one
machine ledger directory (a fresh private one). For 3 and for 5 experiments, the script measures the
wall time of running them one after another and of starting them all at once,
side by side in one run, and prints the ratio (goal: at most 1.15) and the
load average.

Run: ``python benchmarks/bench_sharing.py [TRIALS_PER_EXPERIMENT] [SLEEP_S] [CPUS]``
(default 8 trials of 0.5 s on 2 CPUs).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

SCRIPT = textwrap.dedent("""
    import sys, time
    import tunesmith
    from tunesmith import tune
    tunesmith.init(num_cpus=float(sys.argv[3]))
    SLEEP_S = float(sys.argv[2])

    def sleepy(config):
        time.sleep(SLEEP_S)
        tune.report({"done_at": time.time()})

    grid = tune.Tuner(sleepy, param_space={"i": tune.grid_search(list(range(int(sys.argv[1]))))},
                      run_config=tune.RunConfig(verbose=0)).fit()
    assert len(grid) == int(sys.argv[1]) and not grid.errors
""")


def _start(script: str, env: dict, trials: int, sleep_s: float, cpus: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, script, str(trials), str(sleep_s), str(cpus)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"an experiment failed:\n{out}\n{err}")


def measure(count: int, trials: int, sleep_s: float, cpus: int, workdir: str) -> tuple[float, float]:
    """Wall times of ``count`` experiments one after another, and all at once."""
    script = os.path.join(workdir, "experiment.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    env = dict(os.environ, TUNE_RESULT_DIR=os.path.join(workdir, "results"),
               TUNESMITH_LEDGER_DIR=os.path.join(workdir, f"ledger-{count}"),
               TUNESMITH_RESOURCES=f'{{"CPU": {cpus}}}')  # the machine they share, whatever this one has
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    for _ in range(count):
        _finish(_start(script, env, trials, sleep_s, cpus))
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [_start(script, env, trials, sleep_s, cpus) for _ in range(count)]
    for proc in procs:
        _finish(proc)
    concurrent = time.perf_counter() - t0
    return sequential, concurrent


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    sleep_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    cpus = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    print(f"{trials} trials of time.sleep({sleep_s}) per experiment, 1 CPU each, on {cpus} CPUs")
    with tempfile.TemporaryDirectory() as workdir:
        for count in (3, 5):
            sequential, concurrent = measure(count, trials, sleep_s, cpus, workdir)
            ideal = count * trials * sleep_s / cpus
            print(f"{count} experiments: one after another {sequential:.2f} s, all at once {concurrent:.2f} s, "
                  f"ratio {concurrent / sequential:.3f} (goal <= 1.15; trial time alone {ideal:.1f} s)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in load))


if __name__ == "__main__":
    main()
