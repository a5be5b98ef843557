"""Result loggers (``tune.logger``): JSON, CSV and TensorBoard, as callbacks and legacy classes."""
from __future__ import annotations

import importlib.util

from tunesmith.tune.logger.csv import CSVLogger, CSVLoggerCallback
from tunesmith.tune.logger.json import JsonLogger, JsonLoggerCallback
from tunesmith.tune.logger.logger import (
    LegacyLoggerCallback,
    Logger,
    LoggerCallback,
    NoopLogger,
    UnifiedLogger,
    pretty_print,
)
from tunesmith.tune.logger.tensorboardx import TBXLogger, TBXLoggerCallback


def _tensorboardx_installed() -> bool:
    return importlib.util.find_spec("tensorboardX") is not None


def default_logger_callbacks() -> list[LoggerCallback]:
    """The logger callbacks an experiment gets unless it passes its own.

    JSON and CSV always; TensorBoard when tensorboardX is installed.
    """
    callbacks: list[LoggerCallback] = [JsonLoggerCallback(), CSVLoggerCallback()]
    if _tensorboardx_installed():
        callbacks.append(TBXLoggerCallback())
    return callbacks


def default_logger_classes() -> tuple[type[Logger], ...]:
    """The legacy logger classes matching :func:`default_logger_callbacks`."""
    if _tensorboardx_installed():
        return (JsonLogger, CSVLogger, TBXLogger)
    return (JsonLogger, CSVLogger)


DEFAULT_LOGGERS = (JsonLogger, CSVLogger, TBXLogger)

__all__ = [
    "CSVLogger",
    "CSVLoggerCallback",
    "DEFAULT_LOGGERS",
    "JsonLogger",
    "JsonLoggerCallback",
    "LegacyLoggerCallback",
    "Logger",
    "LoggerCallback",
    "NoopLogger",
    "TBXLogger",
    "TBXLoggerCallback",
    "UnifiedLogger",
    "default_logger_callbacks",
    "default_logger_classes",
    "pretty_print",
]
