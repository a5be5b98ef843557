"""An experiment that fault tests run, kill and restore in their own processes.

Usage: python _crash_driver.py run|restore STORAGE NAME [options as JSON]

Every trial counts to ``iters``; each result names its trial (``owner``), so a
row written into another trial's files is caught, and each iteration's
``step`` equals its ``training_iteration``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tunesmith import train, tune  # noqa: E402


def counting(config):
    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                step = json.load(f)["step"]
    while step < config["iters"]:
        step += 1
        time.sleep(config["sleep"])
        saved = None
        if step % config["every"] == 0:
            d = tempfile.mkdtemp()
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            saved = train.Checkpoint.from_directory(d)
        train.report({"step": step, "owner": config["id"]}, checkpoint=saved)
        if saved is not None:
            shutil.rmtree(saved.path, ignore_errors=True)  # report() copied it


def main() -> None:
    mode, storage, name = sys.argv[1:4]
    opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    if opts.get("num_cpus"):
        import tunesmith

        tunesmith.init(num_cpus=opts["num_cpus"])
    trainable = counting
    if opts.get("cpus_per_trial", 1) != 1:
        trainable = tune.with_resources(counting, {"cpu": opts["cpus_per_trial"]})
    if mode == "run":
        space = {
            "id": tune.grid_search(list(range(opts.get("trials", 4)))),
            "iters": opts.get("iters", 30), "sleep": opts.get("sleep", 0.02), "every": opts.get("every", 3),
        }
        tuner = tune.Tuner(
            trainable, param_space=space,
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=0,
                failure_config=tune.FailureConfig(max_failures=opts.get("max_failures", 0)),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=opts.get("num_to_keep")),
                sync_config=tune.SyncConfig(sync_period=opts.get("sync_period", 300)),
            ),
        )
    else:
        tuner = tune.Tuner.restore(os.path.join(storage, name), trainable=trainable)
    grid = tuner.fit()
    print("STATUS", json.dumps(sorted(r.metrics.get("step", 0) for r in grid)), flush=True)


if __name__ == "__main__":
    main()
