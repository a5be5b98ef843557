"""Tune a PyTorch Lightning model with ASHA: report each validation, checkpoint, load the best.

``TuneReportCheckpointCallback`` reports what the module logs (``val_loss``
and ``val_acc``, renamed ``loss`` and ``acc``) at the end of every
validation and saves a Lightning checkpoint with it; ASHA stops poor
configurations early. A small MLP on made-up data keeps it to seconds.

Run it with ``pip install -e ".[lightning]" && python examples/tune_lightning.py``.
"""
from __future__ import annotations

import os

import lightning.pytorch as pl
import torch

from tunesmith import tune
from tunesmith.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
from tunesmith.tune.schedulers import ASHAScheduler


class Classifier(pl.LightningModule):
    def __init__(self, lr: float = 0.01, hidden: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(logits, y))
        self.log("val_acc", ((logits > 0).float() == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def make_loaders(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1200, 8, generator=generator)
    y = ((x[:, 0] * x[:, 1] + x[:, 2]) > 0).float()
    train = torch.utils.data.TensorDataset(x[:1000], y[:1000])
    val = torch.utils.data.TensorDataset(x[1000:], y[1000:])
    return (torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, generator=generator),
            torch.utils.data.DataLoader(val, batch_size=200))


def train_lightning(config):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train_loader, val_loader = make_loaders()
    trainer = pl.Trainer(
        max_epochs=10, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[TuneReportCheckpointCallback({"loss": "val_loss", "acc": "val_acc"}, filename="model.ckpt")],
    )
    trainer.fit(Classifier(lr=config["lr"], hidden=config["hidden"]), train_loader, val_loader)


def main() -> None:
    results = tune.Tuner(
        train_lightning,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "hidden": tune.choice([8, 16, 32])},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6,
                                    scheduler=ASHAScheduler(max_t=10, grace_period=2)),
        run_config=tune.RunConfig(name="lightning_example", verbose=1),
    ).fit()
    best = results.get_best_result()
    print(f"best config: {best.config}, val_loss {best.metrics['loss']:.4f}, val_acc {best.metrics['acc']:.3f}")

    with best.checkpoint.as_directory() as directory:
        model = Classifier.load_from_checkpoint(os.path.join(directory, "model.ckpt"))
    print(f"the best model, loaded from its checkpoint: lr={model.hparams.lr:.4g}, hidden={model.hparams.hidden}")


if __name__ == "__main__":
    main()
