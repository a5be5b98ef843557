"""``air.integrations.mlflow``: :class:`MLflowLoggerCallback` and :func:`setup_mlflow`."""
from tunesmith.tune.logger.mlflow import MLflowLoggerCallback, setup_mlflow

__all__ = ["MLflowLoggerCallback", "setup_mlflow"]
