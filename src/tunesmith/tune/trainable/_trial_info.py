"""What a trainable knows about the trial it runs in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrialInfo:
    """Identity and place of the trial a trainable runs in.

    Attributes:
        trial_id: The trial's id.
        trial_name: The trial's name (``str(trial)``).
        trial_dir: The trial directory (results, checkpoints, working directory).
        experiment_name: The experiment's name.
        experiment_path: The experiment directory.
        experiment_tag: The trial's experiment tag.
        resources: The trial's ``PlacementGroupFactory``.
        experiment_id: A unique id of the experiment run.
    """

    trial_id: str
    trial_name: str
    trial_dir: str
    experiment_name: str = ""
    experiment_path: str = ""
    experiment_tag: str = ""
    resources: Any = None
    experiment_id: str = ""
