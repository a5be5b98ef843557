"""Train a small PyTorch model on 2 worker processes with DistributedDataParallel.

The data is made here: noisy points of y = 3*sin(x0) + x1**2 - 2*x2. Each of
the two workers reads its own half of every epoch (a DistributedSampler),
computes gradients on it, and DDP averages them, so both workers hold the
same model at every step. Every epoch, each worker reports its loss; rank 0
also saves the model, which becomes the run's checkpoint.

Run it with ``pip install -e ".[torch]" && python examples/train_torch_ddp.py``
(add ``--workers N`` or ``--epochs N`` to change the run).
"""
from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch.utils.data import DataLoader, TensorDataset

from tunesmith import train
from tunesmith.train import Checkpoint, RunConfig, ScalingConfig
from tunesmith.train.torch import TorchTrainer, prepare_data_loader, prepare_model


def make_data(n: int = 4096) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, generator=generator) * 4 - 2
    y = 3 * torch.sin(x[:, 0]) + x[:, 1] ** 2 - 2 * x[:, 2] + 0.1 * torch.randn(n, generator=generator)
    return TensorDataset(x, y.unsqueeze(1))


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1),
    )


def train_loop_per_worker(config: dict) -> float:
    torch.manual_seed(0)
    loader = prepare_data_loader(DataLoader(make_data(), batch_size=config["batch_size"], shuffle=True))
    model = prepare_model(make_model())
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_fn = torch.nn.MSELoss()
    rank = train.get_context().get_world_rank()

    for epoch in range(config["epochs"]):
        if train.get_context().get_world_size() > 1:
            loader.sampler.set_epoch(epoch)  # a new shuffle each epoch, still split between workers
        total, batches = 0.0, 0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        metrics = {"loss": total / batches, "epoch": epoch}
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:  # every worker holds the same model: one copy is enough
                module = model.module if hasattr(model, "module") else model
                torch.save(module.state_dict(), os.path.join(tmp, "model.pt"))
                checkpoint = Checkpoint.from_directory(tmp)
            train.report(metrics, checkpoint=checkpoint)
    return metrics["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--storage-path", default=None, help="where results go (default ~/tunesmith_results)")
    args = parser.parse_args()

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"lr": 3e-3, "batch_size": 64, "epochs": args.epochs},
        scaling_config=ScalingConfig(num_workers=args.workers),
        run_config=RunConfig(name="train_torch_ddp", storage_path=args.storage_path, verbose=0),
    )
    result = trainer.fit()

    print(result)
    print("\nLoss per epoch:")
    print(result.metrics_dataframe[["training_iteration", "loss"]].to_string(index=False))
    print(f"\nFinal loss (returned by rank 0): {result.return_value:.4f}")
    with result.checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, "model.pt"))
    print(f"Model saved at {result.checkpoint.path} ({sum(v.numel() for v in state.values())} parameters)")


if __name__ == "__main__":
    main()
