"""Optuna integration (``pip install 'tunesmith[optuna]'``)."""
from tunesmith.tune.search.optuna.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
