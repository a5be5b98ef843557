"""Ray Train on tunesmith: start-up of a worker group, and the DDP example against hand-written DDP.

Prints, side by side in one run:

1. ``startup``: a 2-worker ``TorchTrainer`` whose function reports once, at
   once. Figure: seconds from just before the trainer is built (libraries
   imported) to that first ``train.report``, process group set up included;
   for tunesmith and for Ray Train (``--ray-python``, ``ray[train]``
   installed there). ``startup_ddp`` does the same after wrapping a small
   model in ``DistributedDataParallel`` (whose first use imports
   ``torch._dynamo``, seconds on its own).
2. ``ddp_example``: ``examples/train_torch_ddp.py``'s training (2 workers,
   10 epochs, a checkpoint per epoch) run by ``TorchTrainer``, against the
   same loop written by hand with ``torch.multiprocessing.spawn`` (gloo,
   ``DistributedSampler``, ``DistributedDataParallel``, one thread per
   worker as the trainer's workers use).

Every run is a fresh Python process; the variants alternate and each is run
``--repeat`` times; medians are shown. Experiments on this machine that
share it through tunesmith's ledger would make a trial wait, so
``TUNESMITH_SHARE_MACHINE=0`` is set for the tunesmith runs.

Run::

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --repeat 5 --skip-ray
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
import time

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

STARTUP = {
    "tunesmith": textwrap.dedent("""
        import json, os, sys, time
        import torch
        from tunesmith import train
        from tunesmith.train.torch import TorchTrainer, prepare_model
        from tunesmith.train import ScalingConfig, RunConfig
    """),
    "ray": textwrap.dedent("""
        import json, os, sys, time
        import torch
        import ray.train as train
        from ray.train.torch import TorchTrainer, prepare_model
        from ray.train import ScalingConfig, RunConfig
    """),
}

STARTUP_BODY = textwrap.dedent("""
    def first_report(config):
        if config["ddp"]:
            prepare_model(torch.nn.Linear(4, 1))
        elapsed = time.time() - config["t0"]
        train.report({"first_report_s": elapsed})
        # Ray Train 2.x keeps no metrics without a checkpoint: the figure goes through a file.
        if train.get_context().get_world_rank() == 0:
            with open(config["out"], "w") as f:
                f.write(repr(elapsed))

    if __name__ == "__main__":
        out = os.path.join(os.environ["BENCH_STORAGE_PATH"], "first_report_s")
        t0 = time.time()
        trainer = TorchTrainer(
            first_report, train_loop_config={"t0": t0, "ddp": DDP, "out": out},
            scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(storage_path=os.environ["BENCH_STORAGE_PATH"]),
        )
        trainer.fit()
        fit_s = time.time() - t0
        with open(out) as f:
            print(json.dumps({"first_report_s": float(f.read()), "fit_s": fit_s}))
""")

DDP_TUNESMITH = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, EXAMPLES)
    from tunesmith.train import RunConfig, ScalingConfig
    from tunesmith.train.torch import TorchTrainer
    from train_torch_ddp import train_loop_per_worker

    if __name__ == "__main__":
        t0 = time.time()
        result = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"lr": 3e-3, "batch_size": 64, "epochs": EPOCHS},
            scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(storage_path=os.environ["BENCH_STORAGE_PATH"], verbose=0),
        ).fit()
        print(json.dumps({"inner_s": time.time() - t0, "final_loss": result.return_value}))
""")

DDP_BY_HAND = textwrap.dedent("""
    import json, os, socket, sys, time
    sys.path.insert(0, EXAMPLES)
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler
    from train_torch_ddp import make_data, make_model

    def worker(rank, world_size, port, epochs, out_dir, results):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        torch.manual_seed(0)
        dataset = make_data()
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True)
        loader = DataLoader(dataset, batch_size=64, sampler=sampler)
        model = DistributedDataParallel(make_model())
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = torch.nn.MSELoss()
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            total, batches = 0.0, 0
            for x, y in loader:
                loss = loss_fn(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
                batches += 1
            if rank == 0:
                path = os.path.join(out_dir, f"checkpoint_{epoch:06d}")
                os.makedirs(path)
                torch.save(model.module.state_dict(), os.path.join(path, "model.pt"))
        if rank == 0:
            results.put(total / batches)
        dist.destroy_process_group()

    if __name__ == "__main__":
        t0 = time.time()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        results = mp.get_context("spawn").SimpleQueue()
        mp.spawn(worker, args=(2, port, EPOCHS, os.environ["BENCH_STORAGE_PATH"], results), nprocs=2, join=True)
        print(json.dumps({"inner_s": time.time() - t0, "final_loss": results.get()}))
""")


def run_script(python: str, code: str, timeout: float, env_extra: dict[str, str]) -> dict:
    """Runs ``code`` as a script in a fresh process; returns its JSON figures and ``whole_process_s``."""
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        script = os.path.join(tmp, "workload.py")
        with open(script, "w") as f:
            f.write(code)
        storage = os.path.join(tmp, "results")
        os.makedirs(storage)
        env = dict(os.environ, BENCH_STORAGE_PATH=storage, **env_extra)
        env.pop("TUNE_RESULT_DIR", None)
        t0 = time.perf_counter()
        try:
            out = subprocess.run([python, script], env=env, capture_output=True, text=True, timeout=timeout,
                                 cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        return {"error": f"exit status {out.returncode}:\n{tail}"}
    figures = {"whole_process_s": wall}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            try:
                figures.update(json.loads(line))
            except ValueError:
                pass
    return figures


def median_figures(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"]}
    keys = [k for k, v in ok[0].items() if isinstance(v, (int, float))]
    return {k: round(statistics.median(r[k] for r in ok), 3) for k in keys} | {"runs": len(ok)}


def show(label: str, figures: dict) -> None:
    if "error" in figures:
        print(f"  {label:<26} FAILED: {textwrap.indent(figures['error'], ' ' * 10).lstrip()}", flush=True)
    else:
        print(f"  {label:<26} {json.dumps(figures)}", flush=True)


def compare(variants: dict[str, tuple[str, str, dict]], repeat: int, timeout: float) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, (python, code, env) in variants.items():
            runs[name].append(run_script(python, code, timeout, env))
    medians = {name: median_figures(r) for name, r in runs.items()}
    for name, figures in medians.items():
        show(name + ":", figures)
        if "error" not in figures:
            for failed in (r for r in runs[name] if "error" in r):
                show(f"  ({name}, one run)", failed)
    return medians


def ratio(ours: dict, theirs: dict, key: str) -> str:
    if key not in ours or key not in theirs:
        return "n/a"
    return f"{ours[key] / theirs[key]:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default="/work/ray-venv/bin/python",
                        help="interpreter with ray[train] and torch installed (default: %(default)s)")
    parser.add_argument("--skip-ray", action="store_true", help="leave Ray Train out")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the DDP example (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    args = parser.parse_args(argv)
    if not args.skip_ray and not os.path.exists(args.ray_python):
        parser.error(f"--ray-python {args.ray_python!r} does not exist; pass one with ray[train], or --skip-ray.")

    print(f"tunesmith python: {sys.executable}")
    if not args.skip_ray:
        version = subprocess.run([args.ray_python, "-c", "import ray; print(ray.__version__)"],
                                 capture_output=True, text=True)
        print(f"ray python: {args.ray_python} (ray {version.stdout.strip() or 'not importable'})")
    print(f"cpus: {os.cpu_count()}, repeat: {args.repeat} (medians), load average at start: "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    ours_env = {"TUNESMITH_SHARE_MACHINE": "0"}
    ray_env = {"RAY_AIR_NEW_OUTPUT": "0"}
    failed = False

    for name, ddp in (("startup", False), ("startup_ddp", True)):
        print(f"\n== {name}: 2-worker TorchTrainer, seconds to the first train.report", flush=True)
        body = STARTUP_BODY.replace("DDP", repr(ddp))
        variants = {"tunesmith": (sys.executable, STARTUP["tunesmith"] + body, ours_env)}
        if not args.skip_ray:
            variants["ray train"] = (args.ray_python, STARTUP["ray"] + body, ray_env)
        medians = compare(variants, args.repeat, args.timeout)
        failed |= any("error" in m for m in medians.values())
        if "ray train" in medians:
            print(f"  first report, Ray Train / tunesmith: "
                  f"{ratio(medians['ray train'], medians['tunesmith'], 'first_report_s')}", flush=True)

    print(f"\n== ddp_example: {args.epochs} epochs on 2 workers, TorchTrainer against torch.multiprocessing.spawn",
          flush=True)
    setup = f"EXAMPLES = {EXAMPLES!r}\nEPOCHS = {args.epochs}\n"
    medians = compare({
        "tunesmith TorchTrainer": (sys.executable, setup + DDP_TUNESMITH, ours_env),
        "by hand, mp.spawn": (sys.executable, setup + DDP_BY_HAND, {}),
    }, args.repeat, args.timeout)
    failed |= any("error" in m for m in medians.values())
    ours, hand = medians["tunesmith TorchTrainer"], medians["by hand, mp.spawn"]
    print(f"  TorchTrainer / mp.spawn: whole process {ratio(ours, hand, 'whole_process_s')}, "
          f"training call {ratio(ours, hand, 'inner_s')}", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other work on this machine slows every figure)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
