"""``air.integrations.wandb``: :class:`WandbLoggerCallback` and :func:`setup_wandb`."""
from tunesmith.tune.logger.wandb import WandbLoggerCallback, setup_wandb

__all__ = ["WandbLoggerCallback", "setup_wandb"]
