"""TorchTrainer with real torch.distributed (gloo on CPU): DDP, checkpoints, failures, tuning."""
from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from _trainables import process_alive

import tunesmith
from tunesmith import train, tune
from tunesmith.train import Checkpoint, ScalingConfig, TrainingFailedError
from tunesmith.train.torch import (
    TorchConfig,
    TorchTrainer,
    get_device,
    prepare_data_loader,
    prepare_model,
)


def quiet(tmp_path, **kw) -> train.RunConfig:
    return train.RunConfig(verbose=0, storage_path=str(tmp_path), **kw)


# -- DDP regression ------------------------------------------------------------------------------------------------
def ddp_regression(config):
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset

    rank = train.get_context().get_world_rank()
    torch.manual_seed(0)  # the same data on every rank
    x = torch.randn(512, 4)
    y = x @ torch.tensor([2.0, -1.0, 0.5, 3.0]) + 1.0
    loader = prepare_data_loader(DataLoader(TensorDataset(x, y, torch.arange(512)), batch_size=32, shuffle=True))
    torch.manual_seed(100 + rank)  # different initial weights: DDP starts every rank from rank 0's
    model = prepare_model(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    seen = []
    for epoch in range(config["epochs"]):
        loader.sampler.set_epoch(epoch)
        total = 0.0
        for xb, yb, index in loader:
            if epoch == 0:
                seen += index.tolist()
            loss = ((model(xb).squeeze(-1) - yb) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        with tempfile.TemporaryDirectory() as d:
            torch.save(model.module.state_dict(), os.path.join(d, f"params_rank{rank}.pt"))
            Path(d, f"seen_rank{rank}.json").write_text(json.dumps(seen))
            train.report({"loss": total / len(loader), "batches": len(loader)}, checkpoint=Checkpoint.from_directory(d))
    info = {
        "backend": dist.get_backend(), "device": str(get_device()), "threads": torch.get_num_threads(),
        "wrapped": type(model).__name__,
    }
    return {"weight": model.module.weight.detach().clone(), "info": info}


def test_two_worker_ddp_regression_learns_with_identical_models(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # then each worker uses one thread per CPU it has
    result = TorchTrainer(
        ddp_regression, train_loop_config={"lr": 0.05, "epochs": 6},
        scaling_config=ScalingConfig(num_workers=2), run_config=quiet(tmp_path),
    ).fit()
    losses = list(result.metrics_dataframe["loss"])
    assert len(losses) == 6 and losses[-1] < losses[0] / 20
    assert result.metrics["batches"] == 8  # each worker reads half of the 16 batches
    ckpt = result.checkpoint.path
    params = [torch.load(os.path.join(ckpt, f"params_rank{r}.pt")) for r in (0, 1)]
    for name in params[0]:
        assert torch.equal(params[0][name], params[1][name]), name
    assert torch.allclose(params[0]["weight"], torch.tensor([[2.0, -1.0, 0.5, 3.0]]), atol=0.1)
    seen = [json.loads(Path(ckpt, f"seen_rank{r}.json").read_text()) for r in (0, 1)]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(512))
    value = result.return_value
    assert torch.equal(value["weight"], params[0]["weight"])
    assert value["info"] == {"backend": "gloo", "device": "cpu", "threads": 1,
                             "wrapped": "DistributedDataParallel"}


# -- the seed's train.report example (rank-0 checkpoint) --------------------------------------------------------------------
def train_func(config):
    start_epoch = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as checkpoint_dir:
            # Load back training state
            start_epoch = torch.load(os.path.join(checkpoint_dir, "state.pt"))["epoch"] + 1

    for epoch in range(start_epoch, config.get("num_epochs", 10)):
        # Do training...

        metrics = {"loss": 1.0 / (epoch + 1), "epoch": epoch}

        with tempfile.TemporaryDirectory() as temp_checkpoint_dir:
            # Save the checkpoint...
            torch.save({"epoch": epoch}, os.path.join(temp_checkpoint_dir, "state.pt"))

            checkpoint = Checkpoint.from_directory(temp_checkpoint_dir)

            # Example: Only the rank 0 worker uploads the checkpoint.
            if tunesmith.train.get_context().get_world_rank() == 0:
                train.report(metrics, checkpoint=checkpoint)
            else:
                train.report(metrics, checkpoint=None)


def test_seed_report_example_with_a_rank0_checkpoint(tmp_path):
    trainer = TorchTrainer(
        train_func, scaling_config=train.ScalingConfig(num_workers=2), run_config=quiet(tmp_path)
    )
    result = trainer.fit()
    assert result.metrics["training_iteration"] == 10 and result.metrics["epoch"] == 9
    names = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))
    assert names == [f"checkpoint_{i:06d}" for i in range(10)]
    assert os.listdir(result.checkpoint.path) == ["state.pt"]
    assert len(result.best_checkpoints) == 10
    # get_checkpoint() hands the checkpoint to every rank when training resumes from it.
    resumed = TorchTrainer(
        train_func, train_loop_config={"num_epochs": 12}, scaling_config=train.ScalingConfig(num_workers=2),
        run_config=quiet(tmp_path), resume_from_checkpoint=result.checkpoint,
    ).fit()
    assert list(resumed.metrics_dataframe["epoch"]) == [10, 11]
    assert list(resumed.metrics_dataframe["training_iteration"]) == [1, 2]


# -- a worker killed mid-run ----------------------------------------------------------------------------------------
def allreduce_and_die_once(config):
    import torch.distributed as dist

    rank = train.get_context().get_world_rank()
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = torch.load(os.path.join(d, "state.pt"))["epoch"] + 1
    for epoch in range(start, 5):
        marker = os.path.join(config["dir"], "killed")
        if epoch == 3 and rank == 1 and not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        total = torch.tensor([float(epoch)])
        dist.all_reduce(total)
        with tempfile.TemporaryDirectory() as d:
            torch.save({"epoch": epoch}, os.path.join(d, "state.pt"))
            train.report({"epoch": epoch, "sum": total.item(), "start": start},
                         checkpoint=Checkpoint.from_directory(d) if rank == 0 else None)


def test_sigkill_of_one_worker_restarts_the_group_from_the_checkpoint(tmp_path):
    result = TorchTrainer(
        allreduce_and_die_once, train_loop_config={"dir": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(tmp_path, failure_config=train.FailureConfig(max_failures=1)),
    ).fit()
    df = result.metrics_dataframe
    assert list(df["epoch"]) == [0, 1, 2, 3, 4]  # every epoch once, none repeated or lost
    assert list(df["sum"]) == [0.0, 2.0, 4.0, 6.0, 8.0]  # a working process group after the restart
    assert list(df["training_iteration"]) == [1, 2, 3, 4, 5]
    assert df["start"].iloc[-1] > 0  # the second group started from a checkpoint
    error = Path(result.path, "error.txt").read_text()
    assert "rank 1" in error and "killed by signal 9" in error


# -- tuning ------------------------------------------------------------------------------------------------------------
def fits_a_line(config):
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = x.sum(1, keepdim=True)
    model = prepare_model(torch.nn.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for _ in range(8):
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train.report({"loss": loss.item(), "world_size": train.get_context().get_world_size()})


def test_tuner_with_asha_stops_bad_torch_trainer_trials_early(tmp_path):
    from tunesmith.tune.schedulers import ASHAScheduler

    tunesmith.init(num_cpus=2)  # one 2-worker trial at a time: the order below is the order they run
    grid = tune.Tuner(
        TorchTrainer(fits_a_line, scaling_config=ScalingConfig(num_workers=2)),
        param_space={"train_loop_config": {"lr": tune.grid_search([0.1, 1e-4])}},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", scheduler=ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2)
        ),
        run_config=quiet(tmp_path),
    ).fit()
    assert grid.num_errors == 0 and grid.num_terminated == 2
    iterations = {r.config["train_loop_config"]["lr"]: r.metrics["training_iteration"] for r in grid}
    assert iterations == {0.1: 8, 1e-4: 2}  # stopped at the second rung, behind the first trial
    assert all(r.metrics["world_size"] == 2 for r in grid)
    assert grid.get_best_result().config["train_loop_config"]["lr"] == 0.1


# -- GPUs (declared; this machine has none) ---------------------------------------------------------------------------------
def records_devices(config):
    import torch.distributed as dist

    rank = train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory() as d:
        Path(d, f"rank{rank}.json").write_text(json.dumps({
            "visible": os.environ["CUDA_VISIBLE_DEVICES"], "device": str(get_device()),
            "backend": dist.get_backend(),
        }))
        train.report({"x": 1}, checkpoint=Checkpoint.from_directory(d))


def test_use_gpu_hands_out_declared_gpus_and_asks_for_nccl(tmp_path):
    tunesmith.init(num_cpus=2, num_gpus=2)
    # The GPU backend is nccl, which this CPU build of torch does not have: the run fails saying so.
    with pytest.raises(TrainingFailedError) as info:
        TorchTrainer(records_devices, scaling_config=ScalingConfig(num_workers=2, use_gpu=True),
                     run_config=quiet(tmp_path)).fit()
    assert "NCCL" in str(info.value)
    # With gloo, the workers see the group's GPUs in CUDA_VISIBLE_DEVICES (torch uses its own by
    # index); without CUDA, get_device() is the CPU.
    result = TorchTrainer(
        records_devices, torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=True), run_config=quiet(tmp_path),
    ).fit()
    seen = [json.loads(Path(result.checkpoint.path, f"rank{r}.json").read_text()) for r in (0, 1)]
    assert seen == [{"visible": "0,1", "device": "cpu", "backend": "gloo"}] * 2


def test_torch_config_and_helpers_outside_a_worker():
    assert TorchConfig().backend is None and TorchConfig().timeout_s == 1800
    with pytest.raises(ValueError, match="timeout_s"):
        TorchConfig(timeout_s=0)
    with pytest.raises(TypeError, match="torch_config"):
        TorchTrainer(fits_a_line, torch_config={"backend": "gloo"})
    assert get_device() == torch.device("cpu")
    model = prepare_model(torch.nn.Linear(1, 1))
    assert isinstance(model, torch.nn.Linear)  # one process: not wrapped
    with pytest.raises(ValueError, match="parallel_strategy"):
        prepare_model(torch.nn.Linear(1, 1), parallel_strategy="zero3")


def test_the_driver_imports_no_torch(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tunesmith import train\n"
        "from tunesmith.train.torch import TorchTrainer, TorchConfig, prepare_model, get_device\n"
        "def loop():\n"
        "    import torch\n"
        "    train.report({'loss': torch.tensor(1.5), 'vec': torch.arange(3)})\n"
        "trainer = TorchTrainer(loop, scaling_config=train.ScalingConfig(num_workers=2),\n"
        f"                       run_config=train.RunConfig(verbose=0, storage_path={str(tmp_path)!r}))\n"
        "assert 'torch' not in sys.modules\n"
        "result = trainer.fit()\n"
        "print(result.metrics['loss'], result.metrics['vec'], 'torch' in sys.modules)\n"
    )
    env = dict(os.environ, TUNESMITH_SHARE_MACHINE="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1.5 [0, 1, 2] False"


# -- prepare_data_loader with loaders of other kinds -------------------------------------------------------
def reads_loaders(config):
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, SubsetRandomSampler

    data = list(range(12))
    batched = prepare_data_loader(DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 2, False)))
    unbatched = prepare_data_loader(DataLoader(data, batch_size=None))
    subset = prepare_data_loader(DataLoader(data, batch_size=3, sampler=SubsetRandomSampler(range(12))))
    train.report({
        "batched": [b.tolist() for b in batched],
        "unbatched": [int(x) for x in unbatched],
        "subset": [x for b in subset for x in b.tolist()],
        "rank": train.get_context().get_world_rank(),
    })


def test_prepare_data_loader_shards_every_kind_of_loader(tmp_path):
    """A loader made with batch_sampler= or batch_size=None was not sharded (each rank read everything), and one
    with a custom random sampler lost its shuffling (as Ray: anything but a sequential order is shuffled)."""
    grid = tune.Tuner(
        TorchTrainer(reads_loaders, scaling_config=ScalingConfig(num_workers=2)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    metrics = grid[0].metrics  # rank 0's
    assert metrics["rank"] == 0
    assert metrics["batched"] == [[0, 2], [4, 6], [8, 10]]
    assert metrics["unbatched"] == [0, 2, 4, 6, 8, 10]
    assert len(metrics["subset"]) == 6 and metrics["subset"] != sorted(metrics["subset"])


def _reads_its_shard_through_a_prepared_loader(config):
    from torch.utils.data import DataLoader

    loader = prepare_data_loader(DataLoader(train.get_dataset_shard("train"), batch_size=2))
    batches = [batch[0] if isinstance(batch, list) else batch for batch in loader]  # TensorDataset: (x,)
    train.report({"seen": sorted(int(x) for batch in batches for x in batch)})


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(range(8))


@pytest.mark.parametrize("kind", ["tensor_dataset", "list", "numpy", "iterable_dataset"])
def test_a_dataset_shard_given_to_prepare_data_loader_is_read_whole(tmp_path, kind):
    """A dataset passed as datasets= was sharded again by prepare_data_loader: with 2 workers each read a
    quarter of it, and half the items were never read; a torch IterableDataset's shard was no IterableDataset
    (a DataLoader asked for its length)."""
    import numpy as np
    from torch.utils.data import TensorDataset

    data = {"tensor_dataset": lambda: TensorDataset(torch.arange(8)), "list": lambda: list(range(8)),
            "numpy": lambda: np.arange(8), "iterable_dataset": _Stream}[kind]()
    trainer = TorchTrainer(_reads_its_shard_through_a_prepared_loader, scaling_config=ScalingConfig(num_workers=2),
                           datasets={"train": data}, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    assert trainer.fit().metrics["seen"] == [0, 2, 4, 6]  # rank 0's


# -- each worker's process: random numbers, threads, what it started ----------------------------------------------
def _rank_process(config):
    import subprocess
    import sys

    rank = train.get_context().get_world_rank()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    seen = {"child": child.pid, "draw": float(torch.rand(1)), "omp": os.environ.get("OMP_NUM_THREADS"),
            "threads": torch.get_num_threads()}
    with open(os.path.join(config["dir"], f"rank_{rank}.json"), "w") as f:
        json.dump(seen, f)
    train.report({"rank": rank})


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
def test_each_worker_draws_its_own_numbers_uses_its_cpus_and_leaves_nothing_running(tmp_path, monkeypatch):
    """Forked from the trial's process, every rank drew the same torch numbers (the same dropout masks);
    a worker given 2 CPUs ran torch on one thread; processes the workers started outlived fit()."""
    import time

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    seen = {}
    try:
        for name, scaling in (("two", ScalingConfig(num_workers=2)),
                              ("one", ScalingConfig(num_workers=1, resources_per_worker={"CPU": 2}))):
            result = TorchTrainer(_rank_process, train_loop_config={"dir": str(tmp_path / name)},
                                  scaling_config=scaling, run_config=quiet(tmp_path / "results", name=name)).fit()
            assert result.error is None
    finally:
        for path in tmp_path.glob("*/rank_*.json"):
            seen[f"{path.parent.name}/{path.stem}"] = json.loads(path.read_text())
    assert sorted(seen) == ["one/rank_0", "two/rank_0", "two/rank_1"]
    assert seen["two/rank_0"]["draw"] != seen["two/rank_1"]["draw"]
    assert [(seen[k]["omp"], seen[k]["threads"]) for k in sorted(seen)] == [("2", 2), ("1", 1), ("1", 1)]
    pids = [s["child"] for s in seen.values()]
    deadline = time.monotonic() + 30  # ended (SIGTERM) when the workers' process left
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not any(process_alive(p) for p in pids)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
