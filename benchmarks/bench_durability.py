"""What the durability contract costs: result throughput against an earlier revision, side by side.

The contract (rows committed before the experiment state that follows them,
checkpoints deleted only after the state that drops them, logs cut back on
resume) must cost at most 5% of result throughput. This script checks out a
baseline revision into a temporary git worktree and runs the same workloads
with each revision's ``src`` on ``PYTHONPATH``, alternating the two so that
the machine's load affects both alike, and prints the medians and the ratio.
Each run counts the rows on disk, so a dropped result cannot look like speed.

Run: ``python benchmarks/bench_durability.py [--baseline REV] [--rounds N]``
(default baseline: the revision before the contract, 2d80cf7).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = {
    # 4 trials x 5,000 reports with default loggers (bench_core's throughput figure).
    "4x5000_reports": textwrap.dedent("""
        import json, os, sys, time
        from tunesmith import tune
        def many(config):
            for i in range(5000):
                tune.report({"score": i, "loss": 1.0 / (i + 1)})
        t0 = time.perf_counter()
        grid = tune.Tuner(many, param_space={"i": tune.grid_search(list(range(4)))},
                          run_config=tune.RunConfig(storage_path=sys.argv[1], name="t", verbose=0)).fit()
        el = time.perf_counter() - t0
        rows = sum(sum(1 for _ in open(os.path.join(r.path, "result.json"))) for r in grid)
        print(json.dumps({"results_per_s": 20000 / el, "rows": rows, "expected": 20000}))
    """),
    # The same with a checkpoint every 50 reports and num_to_keep=2: commits and deletions happen.
    "4x2000_reports_checkpointing": textwrap.dedent("""
        import json, os, sys, tempfile, time
        from tunesmith import train, tune
        def many(config):
            for i in range(2000):
                ckpt = None
                if i % 50 == 49:
                    d = tempfile.mkdtemp()
                    open(os.path.join(d, "w"), "w").write(str(i))
                    ckpt = train.Checkpoint.from_directory(d)
                train.report({"score": i}, checkpoint=ckpt)
        t0 = time.perf_counter()
        grid = tune.Tuner(many, param_space={"i": tune.grid_search(list(range(4)))},
                          run_config=tune.RunConfig(storage_path=sys.argv[1], name="t", verbose=0,
                                                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2))).fit()
        el = time.perf_counter() - t0
        rows = sum(sum(1 for _ in open(os.path.join(r.path, "result.json"))) for r in grid)
        print(json.dumps({"results_per_s": 8000 / el, "rows": rows, "expected": 8000}))
    """),
}


def _run(src: str, code: str, ledger: str) -> float:
    env = dict(os.environ, PYTHONPATH=src, TUNESMITH_LEDGER_DIR=ledger)
    with tempfile.TemporaryDirectory() as storage:
        out = subprocess.run([sys.executable, "-c", code, storage], env=env, capture_output=True, text=True,
                             check=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    if data["rows"] != data["expected"]:
        raise SystemExit(f"{data['rows']} of {data['expected']} rows reached disk: the figure would be wrong")
    return data["results_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="2d80cf7")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = os.path.join(tmp, "baseline")
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "-q", base_tree, args.baseline], check=True)
        ledger = os.path.join(tmp, "ledger")  # an isolated machine-sharing ledger
        try:
            print(f"load average before: {os.getloadavg()[0]:.2f}")
            for name, code in WORKLOADS.items():
                figures = {"baseline": [], "current": []}
                for _ in range(args.rounds):
                    figures["baseline"].append(_run(os.path.join(base_tree, "src"), code, ledger))
                    figures["current"].append(_run(os.path.join(REPO, "src"), code, ledger))
                base, cur = statistics.median(figures["baseline"]), statistics.median(figures["current"])
                print(f"{name}: baseline {args.baseline} {base:,.0f} results/s, current {cur:,.0f} results/s, "
                      f"current/baseline {cur / base:.3f} (median of {args.rounds} alternating runs)")
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", base_tree], check=False)


if __name__ == "__main__":
    main()
