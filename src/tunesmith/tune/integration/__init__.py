"""Integrations with training frameworks (``tune.integration``).

- :mod:`~tunesmith.tune.integration.pytorch_lightning`: report (and checkpoint) from a Lightning ``Trainer``.
- :mod:`~tunesmith.tune.integration.xgboost`: report (and checkpoint) from ``xgboost.train``.
- :mod:`~tunesmith.tune.integration.lightgbm`: report (and checkpoint) from ``lightgbm.train``.
- :mod:`~tunesmith.tune.integration.mlflow`, :mod:`~tunesmith.tune.integration.wandb`: the tracker
  callbacks and ``setup_*`` helpers under their older import path.

Each module imports its framework only when it is imported itself.
"""
