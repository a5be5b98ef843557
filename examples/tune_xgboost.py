"""Tune XGBoost with ASHA: report each boosting round, checkpoint the booster, load the best.

``TuneReportCheckpointCallback`` reports ``eval-logloss`` (renamed ``loss``)
after every round and saves the booster every 10 rounds and at the end;
ASHA stops poor configurations early. The data are made up here, so the
example needs no download.

Run it with ``pip install -e ".[xgboost]" && python examples/tune_xgboost.py``.
"""
from __future__ import annotations

import numpy as np
import xgboost as xgb

from tunesmith import tune
from tunesmith.tune.integration.xgboost import TuneReportCheckpointCallback
from tunesmith.tune.schedulers import ASHAScheduler


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 10))
    y = ((x[:, 0] + x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=2000)) > 0).astype(int)
    return x[:1500], y[:1500], x[1500:], y[1500:]


def train_xgboost(config):
    x_train, y_train, x_val, y_val = make_data()
    params = {"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "nthread": 1,
              "eta": config["eta"], "max_depth": config["max_depth"], "subsample": config["subsample"]}
    xgb.train(
        params, xgb.DMatrix(x_train, label=y_train), num_boost_round=50,
        evals=[(xgb.DMatrix(x_val, label=y_val), "eval")], verbose_eval=False,
        callbacks=[TuneReportCheckpointCallback({"loss": "eval-logloss", "error": "eval-error"}, frequency=10)],
    )


def main() -> None:
    results = tune.Tuner(
        train_xgboost,
        param_space={"eta": tune.loguniform(1e-3, 0.5), "max_depth": tune.randint(1, 8),
                     "subsample": tune.uniform(0.5, 1.0)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=12,
                                    scheduler=ASHAScheduler(max_t=50, grace_period=10)),
        run_config=tune.RunConfig(name="xgboost_example", verbose=1),
    ).fit()
    best = results.get_best_result()
    print(f"best config: {best.config}, eval logloss {best.metrics['loss']:.4f}, error {best.metrics['error']:.3f} "
          f"after {best.metrics['training_iteration']} rounds")

    booster = TuneReportCheckpointCallback.get_model(best.checkpoint)
    _, _, x_val, y_val = make_data()
    accuracy = float(((booster.predict(xgb.DMatrix(x_val)) > 0.5) == y_val).mean())
    print(f"the best booster, loaded from its checkpoint: {booster.num_boosted_rounds()} rounds, "
          f"validation accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
