"""``air.integrations.comet``: :class:`CometLoggerCallback`."""
from tunesmith.tune.logger.comet import CometLoggerCallback

__all__ = ["CometLoggerCallback"]
