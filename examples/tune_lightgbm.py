"""Tune LightGBM with ASHA: report each boosting round, checkpoint the model, load the best.

``TuneReportCheckpointCallback`` reports the validation ``binary_logloss``
(renamed ``loss``) after every round and saves the model every 10 rounds and
at the last one; ASHA stops poor configurations early. The data are made up
here, so the example needs no download.

Run it with ``pip install -e ".[lightgbm]" && python examples/tune_lightgbm.py``.
"""
from __future__ import annotations

import lightgbm as lgb
import numpy as np

from tunesmith import tune
from tunesmith.tune.integration.lightgbm import TuneReportCheckpointCallback
from tunesmith.tune.schedulers import ASHAScheduler


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 10))
    y = ((x[:, 0] + x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=2000)) > 0).astype(int)
    return x[:1500], y[:1500], x[1500:], y[1500:]


def train_lightgbm(config):
    x_train, y_train, x_val, y_val = make_data()
    params = {"objective": "binary", "metric": ["binary_logloss", "binary_error"], "verbose": -1,
              "num_threads": 1, "learning_rate": config["lr"], "num_leaves": config["num_leaves"],
              "min_data_in_leaf": config["min_data_in_leaf"]}
    lgb.train(
        params, lgb.Dataset(x_train, label=y_train), num_boost_round=50,
        valid_sets=[lgb.Dataset(x_val, label=y_val)], valid_names=["eval"],
        callbacks=[TuneReportCheckpointCallback({"loss": "eval-binary_logloss", "error": "eval-binary_error"},
                                                frequency=10)],
    )


def main() -> None:
    results = tune.Tuner(
        train_lightgbm,
        param_space={"lr": tune.loguniform(1e-3, 0.5), "num_leaves": tune.randint(2, 64),
                     "min_data_in_leaf": tune.randint(5, 50)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=12,
                                    scheduler=ASHAScheduler(max_t=50, grace_period=10)),
        run_config=tune.RunConfig(name="lightgbm_example", verbose=1),
    ).fit()
    best = results.get_best_result()
    print(f"best config: {best.config}, eval logloss {best.metrics['loss']:.4f}, error {best.metrics['error']:.3f} "
          f"after {best.metrics['training_iteration']} rounds")

    model = TuneReportCheckpointCallback.get_model(best.checkpoint)
    _, _, x_val, y_val = make_data()
    accuracy = float(((model.predict(x_val) > 0.5) == y_val).mean())
    print(f"the best model, loaded from its checkpoint: {model.current_iteration()} rounds, "
          f"validation accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
