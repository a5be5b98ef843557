"""ASHA versus FIFO throughput: 2,000 trivial trials of 20 reports each.

Prints the results per second each scheduler sustains through ``Tuner.fit()``
and their ratio, then the cost of ASHA's decisions alone (no processes).

Two ASHA runs are made. In the first, scores differ and ASHA stops most
trials after a few reports, so it finishes the 2,000 trials sooner but spends
a larger share of its time starting trials. In the second ("no stops"),
every trial reports the same score, so ASHA keeps every trial and handles the
same 40,000 results as FIFO: the ratio of their results/s is the cost of
ASHA's per-result decisions in a real run.
Run: ``python benchmarks/bench_asha.py [num_trials]``.
Each run happens in a fresh Python process, in its own results directory and
machine-sharing ledger, and is checked on disk afterwards (every trial
TERMINATED, as many result rows as results counted).
"""
from __future__ import annotations

import os
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _guard import BenchmarkCheckFailed, check_experiment, machine, with_workload  # noqa: E402

NUM_TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
REPORTS = 20

WORKLOAD = textwrap.dedent("""
    import json, sys, time
    from tunesmith import tune
    from tunesmith.tune.schedulers import ASHAScheduler

    storage, num_trials, reports, which = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    def trivial(config):
        for it in range(1, reports + 1):
            tune.report({"score": config["q"] * it})

    def flat(config):
        for it in range(1, reports + 1):
            tune.report({"score": 1.0})

    scheduler = ASHAScheduler(max_t=reports, grace_period=1, reduction_factor=4) if which != "fifo" else None
    t0 = time.perf_counter()
    results = tune.Tuner(
        flat if which == "asha_no_stops" else trivial,
        param_space={"q": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=num_trials, metric="score", mode="max", scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=storage, name="b", verbose=0),
    ).fit()
    elapsed = time.perf_counter() - t0
    n = sum(r.metrics.get("training_iteration", 0) for r in results)
    print(json.dumps({"results": n, "seconds": elapsed}))
""")


def run(which: str) -> dict:
    def check(storage: str, figures: dict) -> None:
        # Every trial TERMINATED, and as many rows on disk as the results counted.
        rows = check_experiment(storage, NUM_TRIALS, None)
        if rows != figures["results"]:
            raise BenchmarkCheckFailed(f"{rows} rows on disk, {figures['results']} results counted")

    return with_workload(WORKLOAD, [NUM_TRIALS, REPORTS, which], check)


def decisions_only() -> float:
    """Results per second through ASHA's on_trial_result alone."""
    import random

    from tunesmith.tune.experiment.trial import Trial
    from tunesmith.tune.schedulers import ASHAScheduler

    class _Controller:
        def first_trial_with_status(self, status):
            return None

    asha = ASHAScheduler(metric="score", mode="max", max_t=REPORTS, grace_period=1, reduction_factor=4)
    ctrl = _Controller()
    trials = [Trial("bench", {"q": random.random()}, trial_id=f"{i:06d}") for i in range(NUM_TRIALS)]
    for t in trials:
        asha.on_trial_add(ctrl, t)
    n = 0
    t0 = time.perf_counter()
    for t in trials:
        for it in range(1, REPORTS + 1):
            n += 1
            if asha.on_trial_result(ctrl, t, {"training_iteration": it, "score": t.config["q"] * it}) == "STOP":
                break
    return n / (time.perf_counter() - t0)


def main() -> None:
    print(f"cpus: {os.cpu_count()}; {machine()}", flush=True)
    fifo = run("fifo")
    asha = run("asha")
    flat = run("asha_no_stops")
    fifo_rate = fifo["results"] / fifo["seconds"]
    asha_rate = asha["results"] / asha["seconds"]
    flat_rate = flat["results"] / flat["seconds"]
    print(f"fifo: {fifo['results']} results in {fifo['seconds']:.2f}s = {fifo_rate:,.0f} results/s")
    print(f"asha: {asha['results']} results in {asha['seconds']:.2f}s = {asha_rate:,.0f} results/s")
    print(f"asha (no stops): {flat['results']} results in {flat['seconds']:.2f}s = {flat_rate:,.0f} results/s")
    print(f"asha (no stops)/fifo results/s ratio: {flat_rate / fifo_rate:.2f}")
    print(f"asha/fifo results/s ratio: {asha_rate / fifo_rate:.2f}")
    print(f"asha/fifo wall time ratio: {asha['seconds'] / fifo['seconds']:.2f}")
    print(f"asha decisions alone: {decisions_only():,.0f} results/s")
    print(f"at the end: {machine()}")


if __name__ == "__main__":
    main()
