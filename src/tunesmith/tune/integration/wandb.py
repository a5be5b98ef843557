"""The W&B logger and ``setup_wandb`` under their older import path (``tune.integration.wandb``)."""
from tunesmith.tune.logger.wandb import WandbLoggerCallback, setup_wandb

__all__ = ["WandbLoggerCallback", "setup_wandb"]
