"""tunesmith's Ray backend against Ray Tune, side by side on one local multi-node Ray cluster.

Starts a Ray cluster of ``--nodes`` nodes on this machine (``ray.cluster_utils.Cluster``
of the Ray installation at ``--ray-python``, which has ``ray[tune]``),
then runs each workload twice, in fresh driver processes connected to that
cluster: once with tunesmith (``tunesmith.init(address=...)``, run by this
interpreter) and once with Ray Tune (run by ``--ray-python``). The cluster's
worker processes import tunesmith from this repository's ``src``.

Workloads:

* ``trivial``: ``--trivial`` trials (default 1,000) that each report one result;
  trial throughput is trials per second of ``fit()``.
* ``bookkeeping``: the seed's bookkeeping overhead benchmark, scaled: ``--sleep-trials``
  trials (default 200) of ``time.sleep(--sleep-s)`` (default 1 s), one CPU each, on
  all of the cluster's CPUs; overhead is ``fit()`` time over the ideal
  ``ceil(trials / CPUs) * sleep``. Also printed: when the first trial's function began
  (after the job's Ray worker processes started), and the overhead of the rest of ``fit()``
  over the same ideal, which is the bookkeeping proper.

Before the bookkeeping workload, a fresh Ray driver (``--ray-python``, Ray core
only) times how long the cluster takes to start one plain one-CPU actor per CPU
and hear back from all of them: Ray's own floor for any first trial. On a small
machine that hosts many virtual CPUs this floor is most of the overhead (all the
actor processes start at once on the machine's few cores), so the bookkeeping
overhead is also printed beyond it: ``fit()`` less the floor, over the ideal.

The load average of this machine is printed next to each figure.

Run::

    python benchmarks/bench_cluster.py
    python benchmarks/bench_cluster.py --trivial 200 --sleep-trials 48 --skip-ray
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BACKENDS = {
    "tunesmith": "from tunesmith import tune\nimport tunesmith\ntunesmith.init(address=os.environ['BENCH_ADDRESS'])\n",
    "ray_tune": "from ray import tune\nimport ray\nray.init(address=os.environ['BENCH_ADDRESS'], log_to_driver=False)\n",
}

FLOOR_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import ray
    ray.init(address=os.environ["BENCH_ADDRESS"], log_to_driver=False)
    cpus = int(sys.argv[1])
    @ray.remote(num_cpus=1)
    class Plain:
        def ping(self):
            return os.getpid()
    t0 = time.perf_counter()
    pending = [a.ping.remote() for a in [Plain.remote() for _ in range(cpus)]]
    times = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        times.append(time.perf_counter() - t0)
    print("BENCH", json.dumps({"first_actor_s": times[0], "all_actors_s": times[-1]}))
""")

RUN_CONFIG = 'tune.RunConfig(verbose=0, storage_path=os.environ["BENCH_STORAGE_PATH"])'

WORKLOADS = {
    "trivial": textwrap.dedent("""
        def trivial(config):
            tune.report({{"score": config["i"]}})
        t0 = time.perf_counter()
        grid = tune.Tuner(trivial, param_space={{"i": tune.grid_search(list(range({n})))}},
                          run_config={run_config}).fit()
        fit_s = time.perf_counter() - t0
        assert len(grid) == {n} and not grid.errors, grid.errors
        print("BENCH", json.dumps({{"fit_s": fit_s, "trials_per_s": {n} / fit_s}}))
    """),
    "bookkeeping": textwrap.dedent("""
        def sleeper(config):
            began = time.time()
            time.sleep({sleep_s})
            tune.report({{"score": config["i"], "began": began}})
        t0 = time.perf_counter()
        w0 = time.time()
        grid = tune.Tuner(sleeper, param_space={{"i": tune.grid_search(list(range({n})))}},
                          run_config={run_config}).fit()
        fit_s = time.perf_counter() - t0
        assert len(grid) == {n} and not grid.errors, grid.errors
        ideal = math.ceil({n} / {cpus}) * {sleep_s}
        first = min(r.metrics["began"] for r in grid) - w0
        print("BENCH", json.dumps({{"fit_s": fit_s, "ideal_s": ideal, "overhead_pct": 100 * (fit_s / ideal - 1),
                                   "first_trial_began_s": first,
                                   "overhead_after_first_pct": 100 * ((fit_s - first) / ideal - 1)}}))
    """),
}


def _overlay(ray_python: str, cache: str) -> str:
    """A directory with what tunesmith needs and the Ray Tune installation lacks (cloudpickle, psutil).

    Installed with that interpreter's pip into a directory of its own, at the versions this
    interpreter has, so that pickles made by the driver load in the cluster's workers.
    """
    import cloudpickle

    wanted = [f"cloudpickle=={cloudpickle.__version__}"]
    try:
        import psutil

        wanted.append(f"psutil=={psutil.__version__}")
    except ImportError:
        pass
    target = os.path.join(cache, "overlay-" + "-".join(w.replace("==", "") for w in wanted))
    if not os.path.isdir(target):
        subprocess.run([ray_python, "-m", "pip", "install", "--quiet", "--target", target, *wanted], check=True)
    return target


_CLUSTER_SCRIPT = textwrap.dedent("""
    import json, sys
    from ray.cluster_utils import Cluster
    nodes, cpus = int(sys.argv[1]), int(sys.argv[2])
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": cpus, "num_gpus": 0, "resources": {"node0": 1}, "include_dashboard": False})
    for i in range(1, nodes):
        c.add_node(num_cpus=cpus, num_gpus=0, resources={f"node{i}": 1})
    c.wait_for_nodes()
    print("ADDRESS", c.address, flush=True)
    sys.stdin.read()  # runs until the benchmark closes our stdin
    c.shutdown()
""")


class LocalCluster:
    """A head and ``nodes - 1`` worker nodes on this machine, ``cpus`` CPUs each.

    Started by a helper process of the Ray installation at ``ray_python``
    (``ray.cluster_utils.Cluster``), which shuts down exactly the processes it
    started when :meth:`stop` closes its input.
    """

    def __init__(self, ray_python: str, nodes: int, cpus: int, pythonpath: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = pythonpath
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["RAY_AUTH_MODE"] = "disabled"  # a throwaway cluster on this machine
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen([ray_python, "-c", _CLUSTER_SCRIPT, str(nodes), str(cpus)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.address = None
        for line in self.proc.stdout:
            if line.startswith("ADDRESS "):
                self.address = line.split()[1]
                break
        if self.address is None:
            self.stop()
            raise RuntimeError("The local Ray cluster did not start (see its output above).")
        self.cpus = nodes * cpus

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def run_workload(python: str, backend: str, workload: str, params: dict, env: dict) -> dict:
    body = WORKLOADS[workload].format(run_config=RUN_CONFIG, **params)
    script = "import os, sys, time, json, math\n" + BACKENDS[backend] + body
    storage = tempfile.mkdtemp(prefix=f"bench_cluster_{backend}_")
    run_env = dict(env)
    run_env["BENCH_STORAGE_PATH"] = storage
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        out = subprocess.run([python, "-c", script], env=run_env, capture_output=True, text=True, timeout=3600)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    whole = time.perf_counter() - t0
    lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{backend} {workload} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    figures = json.loads(lines[-1][6:])
    figures["whole_process_s"] = whole
    figures["load_before"] = load_before
    figures["load_after"] = os.getloadavg()[0]
    return figures


def ray_floor(ray_python: str, cpus: int, env: dict) -> dict:
    """Seconds for ``cpus`` plain one-CPU Ray actors to start and answer, in a fresh driver."""
    out = subprocess.run([ray_python, "-c", FLOOR_SCRIPT, str(cpus)], env=env, capture_output=True, text=True,
                         timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the Ray floor measurement failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][6:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-python", default="/work/ray-venv/bin/python",
                        help="an interpreter with ray[tune] installed (runs the cluster and Ray Tune)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cpus-per-node", type=int, default=4)
    parser.add_argument("--trivial", type=int, default=1000)
    parser.add_argument("--sleep-trials", type=int, default=200)
    parser.add_argument("--sleep-s", type=float, default=1.0)
    parser.add_argument("--only", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--skip-ray", action="store_true", help="run tunesmith only")
    args = parser.parse_args()

    cache = os.path.join(tempfile.gettempdir(), "tunesmith_bench_cluster")
    os.makedirs(cache, exist_ok=True)
    pythonpath = os.pathsep.join([os.path.join(REPO, "src"), _overlay(args.ray_python, cache)])
    cluster = LocalCluster(args.ray_python, args.nodes, args.cpus_per_node, pythonpath)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TUNESMITH_ADDRESS", "TUNE_RESULT_DIR")}
    env["BENCH_ADDRESS"] = cluster.address
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_AUTH_MODE"] = "disabled"
    print(f"cluster: {args.nodes} nodes x {args.cpus_per_node} CPUs at {cluster.address}; "
          f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    rows = []
    try:
        for workload in args.only or ["trivial", "bookkeeping"]:
            params = {"n": args.trivial} if workload == "trivial" else {
                "n": args.sleep_trials, "sleep_s": args.sleep_s, "cpus": cluster.cpus}
            results = {}
            floor = None
            if workload == "bookkeeping":
                floor = ray_floor(args.ray_python, cluster.cpus, env)
                print(f"ray floor: {json.dumps({k: round(v, 3) for k, v in floor.items()})}", flush=True)
            for backend, python in (("tunesmith", sys.executable), ("ray_tune", args.ray_python)):
                if backend == "ray_tune" and args.skip_ray:
                    continue
                figures = run_workload(python, backend, workload, params, env)
                if floor is not None:
                    figures["ray_floor_s"] = floor["all_actors_s"]
                    figures["overhead_beyond_floor_pct"] = 100 * (
                        (figures["fit_s"] - floor["all_actors_s"]) / figures["ideal_s"] - 1)
                results[backend] = figures
                print(f"{workload} {backend}: {json.dumps({k: round(v, 3) for k, v in figures.items()})}", flush=True)
            rows.append((workload, params, results))
    finally:
        cluster.stop()

    print()
    print("| workload | tunesmith | Ray Tune | ratio | load avg (1 min) before/after |")
    print("| --- | --- | --- | --- | --- |")
    for workload, params, results in rows:
        ts, rt = results.get("tunesmith"), results.get("ray_tune")
        load = " / ".join(f"{r['load_before']:.1f}-{r['load_after']:.1f}" for r in (ts, rt) if r)
        if workload == "trivial":
            name = f"{params['n']} trivial trials (fit s, trials/s)"
            a = f"{ts['fit_s']:.1f} s, {ts['trials_per_s']:.1f}/s"
            b = f"{rt['fit_s']:.1f} s, {rt['trials_per_s']:.1f}/s" if rt else "-"
            ratio = f"{ts['trials_per_s'] / rt['trials_per_s']:.1f}x throughput" if rt else "-"
        else:
            name = f"{params['n']} x {params['sleep_s']:g} s on {params['cpus']} CPUs (fit s, over ideal)"
            def cell(r: dict) -> str:
                return (f"{r['fit_s']:.1f} s, {r['overhead_pct']:+.1f}% (first trial began at "
                        f"{r['first_trial_began_s']:.1f} s; {r['overhead_after_first_pct']:+.1f}% after it; "
                        f"{r['overhead_beyond_floor_pct']:+.1f}% beyond Ray's {r['ray_floor_s']:.1f} s "
                        "to start one actor per CPU)")

            a = cell(ts)
            b = cell(rt) if rt else "-"
            ratio = f"ideal {ts['ideal_s']:.0f} s" + (f"; {rt['fit_s'] / ts['fit_s']:.2f}x faster" if rt else "")
        print(f"| {name} | {a} | {b} | {ratio} | {load} |")


if __name__ == "__main__":
    main()
