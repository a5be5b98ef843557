"""tunesmith.train.torch: data-parallel training with PyTorch (``TorchTrainer`` and its helpers).

Importing this module does not import torch; the helpers import it when called.
"""
from __future__ import annotations

from typing import Any

from tunesmith._lazy import lazy_getattr

_P = "tunesmith.train.torch"
_LAZY = {
    "TorchTrainer": f"{_P}.torch_trainer:TorchTrainer",
    "TorchConfig": f"{_P}.config:TorchConfig",
    "prepare_model": f"{_P}.train_loop_utils:prepare_model",
    "prepare_data_loader": f"{_P}.train_loop_utils:prepare_data_loader",
    "get_device": f"{_P}.train_loop_utils:get_device",
    "get_devices": f"{_P}.train_loop_utils:get_devices",
    "enable_reproducibility": f"{_P}.train_loop_utils:enable_reproducibility",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    return lazy_getattr(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
