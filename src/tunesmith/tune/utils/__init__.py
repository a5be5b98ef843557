"""Utilities for trainables: debugging serialisation and checkpointing, GPUs, dicts."""
from __future__ import annotations

from tunesmith.tune.utils.util import (
    diagnose_serialization,
    flatten_dict,
    unflatten_dict,
    validate_save_restore,
    wait_for_gpu,
)

__all__ = ["diagnose_serialization", "flatten_dict", "unflatten_dict", "validate_save_restore", "wait_for_gpu"]
