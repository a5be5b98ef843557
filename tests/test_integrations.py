"""The framework callbacks with real training runs of XGBoost, LightGBM and PyTorch Lightning.

Each tunes two learning rates (a good one first, then one so small that it
learns nothing) under ASHA, one trial at a time so that the decision is
deterministic: the second trial is stopped at the first rung. Then the best
trial's checkpoint is loaded back into a model, whose loss on the validation
data must be the loss the trial reported with it.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from tunesmith import tune
from tunesmith.tune.schedulers import ASHAScheduler


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return x[:200], y[:200], x[200:], y[200:]


def _logloss(y, p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _tune(trainable, lrs, max_t, grace, storage, name):
    return tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search(lrs)},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", max_concurrent_trials=1,
            scheduler=ASHAScheduler(max_t=max_t, grace_period=grace, reduction_factor=2),
        ),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    ).fit()


def _check_asha(results, good_lr, bad_lr, full, rung):
    assert results.num_errors == 0
    by_lr = {r.config["lr"]: r for r in results}
    assert by_lr[good_lr].metrics["training_iteration"] == full
    assert by_lr[bad_lr].metrics["training_iteration"] == rung  # stopped by ASHA at its first rung
    best = results.get_best_result()
    assert best.config["lr"] == good_lr and best.checkpoint is not None
    return best


# -- XGBoost -------------------------------------------------------------------------------------

def _xgb_trainable(config):
    import xgboost as xgb

    from tunesmith.tune.integration.xgboost import TuneReportCheckpointCallback

    xt, yt, xv, yv = _data()
    xgb.train(
        {"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "eta": config["lr"],
         "max_depth": 2, "nthread": 1},
        xgb.DMatrix(xt, label=yt), num_boost_round=20,
        evals=[(xgb.DMatrix(xt, label=yt), "train"), (xgb.DMatrix(xv, label=yv), "eval")], verbose_eval=False,
        callbacks=[TuneReportCheckpointCallback({"loss": "eval-logloss", "error": "eval-error"}, frequency=5)],
    )


def test_xgboost_callback_with_asha(storage):
    pytest.importorskip("xgboost")
    import xgboost as xgb

    from tunesmith.tune.integration.xgboost import TuneReportCheckpointCallback

    results = _tune(_xgb_trainable, [0.3, 1e-4], max_t=100, grace=5, storage=storage, name="xgb")
    best = _check_asha(results, 0.3, 1e-4, full=20, rung=5)
    assert set(best.metrics) >= {"loss", "error"}
    assert [os.path.basename(c.path) for c, _ in best.best_checkpoints] == [
        "checkpoint_000000", "checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]

    booster = TuneReportCheckpointCallback.get_model(best.checkpoint)
    assert booster.num_boosted_rounds() == 20
    _, _, xv, yv = _data()
    assert _logloss(yv, booster.predict(xgb.DMatrix(xv))) == pytest.approx(best.metrics["loss"], abs=1e-4)


def test_xgboost_callback_checkpoints_at_end_and_checks_names():
    pytest.importorskip("xgboost")
    from tunesmith.tune.integration.xgboost import TuneReportCallback, TuneReportCheckpointCallback

    with pytest.raises(ValueError, match="frequency"):
        TuneReportCheckpointCallback(frequency=-1)
    with pytest.raises(TypeError, match="metrics"):
        TuneReportCallback(metrics=3)
    callback = TuneReportCheckpointCallback({"loss": "eval-rmse"})
    with pytest.raises(KeyError, match="eval-logloss"):
        callback._report_dict({"eval": {"logloss": [0.5]}})


# -- LightGBM ------------------------------------------------------------------------------------

def _lgb_trainable(config):
    import lightgbm as lgb

    from tunesmith.tune.integration.lightgbm import TuneReportCheckpointCallback

    xt, yt, xv, yv = _data()
    lgb.train(
        {"objective": "binary", "learning_rate": config["lr"], "num_leaves": 4, "min_data_in_leaf": 5,
         "verbose": -1, "num_threads": 1},
        lgb.Dataset(xt, label=yt), num_boost_round=12,
        valid_sets=[lgb.Dataset(xv, label=yv)], valid_names=["eval"],
        callbacks=[TuneReportCheckpointCallback({"loss": "eval-binary_logloss"}, filename="booster.txt",
                                                frequency=4)],
    )


def test_lightgbm_callback_with_asha(storage):
    pytest.importorskip("lightgbm")
    from tunesmith.tune.integration.lightgbm import TuneReportCheckpointCallback

    results = _tune(_lgb_trainable, [0.3, 1e-5], max_t=100, grace=3, storage=storage, name="lgb")
    best = _check_asha(results, 0.3, 1e-5, full=12, rung=3)
    assert os.path.isfile(os.path.join(best.checkpoint.path, "booster.txt"))

    booster = TuneReportCheckpointCallback.get_model(best.checkpoint, filename="booster.txt")
    assert booster.current_iteration() == 12
    _, _, xv, yv = _data()
    assert _logloss(yv, booster.predict(xv)) == pytest.approx(best.metrics["loss"], abs=1e-6)


# -- PyTorch Lightning ---------------------------------------------------------------------------

def _make_module_class():
    import lightning.pytorch as pl
    import torch

    class TinyClassifier(pl.LightningModule):
        def __init__(self, lr: float = 0.1, hidden: int = 8):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

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
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return TinyClassifier


def _loaders():
    import torch

    xt, yt, xv, yv = _data()
    train = torch.utils.data.TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt))
    val = torch.utils.data.TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv))
    return (torch.utils.data.DataLoader(train, batch_size=50, shuffle=False),
            torch.utils.data.DataLoader(val, batch_size=100))


def _lightning_trainable(config):
    import lightning.pytorch as pl
    import torch

    from tunesmith.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = _make_module_class()(lr=config["lr"])
    train_loader, val_loader = _loaders()
    trainer = pl.Trainer(
        max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[TuneReportCheckpointCallback({"loss": "val_loss", "acc": "val_acc"}, filename="model.ckpt",
                                                on="validation_end")],
    )
    trainer.fit(model, train_loader, val_loader)


def test_lightning_callback_with_asha(storage):
    pytest.importorskip("lightning")
    import torch

    results = _tune(_lightning_trainable, [1.0, 1e-6], max_t=4, grace=1, storage=storage, name="pl")
    best = _check_asha(results, 1.0, 1e-6, full=4, rung=1)
    assert 0.0 <= best.metrics["acc"] <= 1.0

    with best.checkpoint.as_directory() as directory:
        model = _make_module_class().load_from_checkpoint(os.path.join(directory, "model.ckpt"))
    assert model.hparams.lr == 1.0
    _, val_loader = _loaders()
    x, y = next(iter(val_loader))
    with torch.no_grad():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).item()
    assert math.isclose(loss, best.metrics["loss"], rel_tol=1e-5)


def test_lightning_callback_checks_its_arguments():
    pytest.importorskip("lightning")
    from tunesmith.tune.integration.pytorch_lightning import TuneReportCallback, TuneReportCheckpointCallback

    with pytest.raises(ValueError, match="validation_end"):
        TuneReportCallback(on="val_end")
    with pytest.raises(ValueError, match="filename"):
        TuneReportCheckpointCallback(filename="")
    assert TuneReportCallback("val_loss", on=["validation_end", "train_epoch_end"])._on == {
        "validation_end", "train_epoch_end"}


def test_lightning_callbacks_report_on_every_trainer_event_lightning_has():
    # As on Ray, whose callbacks take any of the installed Lightning's Callback hooks as `on`.
    pytest.importorskip("lightning")
    import inspect

    import lightning.pytorch as pl

    from tunesmith.tune.integration.pytorch_lightning import TuneCallback, TuneReportCallback

    events = {n[3:] for n, f in inspect.getmembers(pl.Callback, inspect.isfunction) if n.startswith("on_")}
    assert {"predict_end", "before_backward", "save_checkpoint"} <= events
    for event in events:
        assert TuneReportCallback(on=event)._on == {event}
        assert getattr(TuneCallback, f"on_{event}") is not getattr(pl.Callback, f"on_{event}"), event
