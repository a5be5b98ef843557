"""``tunesmith.air.session``: the older spelling of the session functions."""
from __future__ import annotations

from tunesmith._internal.session import (  # noqa: F401
    get_checkpoint,
    get_context,
    get_dataset_shard,
    get_experiment_name,
    get_local_rank,
    get_trial_dir,
    get_trial_id,
    get_trial_name,
    get_trial_resources,
    get_world_rank,
    get_world_size,
    report,
)
