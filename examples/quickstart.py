"""Tune a scikit-learn classifier with random search and ASHA early stopping.

Each trial trains an SGD classifier on the digits data set that ships with
scikit-learn, one epoch per reported result; ASHA stops the poor trials early.
Run it with ``python examples/quickstart.py``.
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from tunesmith import tune
from tunesmith.tune.schedulers import ASHAScheduler


def train_digits(config):
    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
    model = SGDClassifier(
        loss=config["loss"], alpha=config["alpha"], learning_rate="constant",
        eta0=config["eta0"], random_state=0,
    )
    classes = np.unique(y)
    rng = np.random.default_rng(0)
    for _ in range(config["epochs"]):
        order = rng.permutation(len(X_train))
        model.partial_fit(X_train[order], y_train[order], classes=classes)
        tune.report({"accuracy": model.score(X_val, y_val)})


def main() -> None:
    tuner = tune.Tuner(
        train_digits,
        param_space={
            "loss": tune.choice(["hinge", "log_loss", "modified_huber"]),
            "alpha": tune.loguniform(1e-6, 1e-1),
            "eta0": tune.loguniform(1e-4, 1.0),
            "epochs": 30,
        },
        tune_config=tune.TuneConfig(
            metric="accuracy", mode="max", num_samples=40,
            scheduler=ASHAScheduler(max_t=30, grace_period=3, reduction_factor=3),
        ),
        run_config=tune.RunConfig(name="quickstart", stop={"accuracy": 0.99}, verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print(f"Best accuracy: {best.metrics['accuracy']:.4f} after {best.metrics['training_iteration']} epochs")
    print(f"Best config:   {best.config}")
    print(f"Results in:    {results.experiment_path}")


if __name__ == "__main__":
    main()
