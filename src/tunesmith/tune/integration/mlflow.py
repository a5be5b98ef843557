"""The MLflow logger and ``setup_mlflow`` under their older import path (``tune.integration.mlflow``)."""
from tunesmith.tune.logger.mlflow import MLflowLoggerCallback, setup_mlflow

__all__ = ["MLflowLoggerCallback", "setup_mlflow"]
