"""Small file system helpers for the per-trial hot path."""
from __future__ import annotations

import os
import re
from typing import Callable


def ensure_dir(path: str) -> None:
    """Makes sure the directory ``path`` exists, with as few system calls as the common cases allow.

    ``os.makedirs(path, exist_ok=True)`` looks at the parent before it creates ``path`` and
    at ``path`` again when it exists already; a trial directory's parent almost always
    exists, and with thousands of short trials those extra calls add up. (A file in the
    directory's place is not looked for here: opening anything inside it fails.)
    """
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


# What tunesmith keeps at the top of a trial's directory (results, params, its checkpoints, the
# staging of a trainer's checkpoints, temporary files of atomic writes).
_TRIAL_OWN = re.compile(
    r"(checkpoint_\d{6,}(\.tmp)?|\.group_staging|params\.(json|pkl)|result\.json|progress\.csv"
    r"|events\.out\.tfevents\..*|error\.(txt|pkl)|.*\.tmp)\Z"
)


def trial_files_ignore(source: str, trial_dir: str | None) -> Callable[[str, list[str]], list[str]] | None:
    """An ``ignore`` for ``shutil.copytree`` when a checkpoint is made of the trial's own directory.

    A trial runs in its directory, so ``Checkpoint.from_directory(".")`` names it; the copy then
    takes the trial's files (what the user wrote there) but not tunesmith's own: its results,
    params and earlier checkpoints (a checkpoint would hold all the earlier ones, nested). None
    when ``source`` is another directory.
    """
    if trial_dir is None:
        return None
    root = os.path.realpath(source)
    if root != os.path.realpath(trial_dir):
        return None

    def ignore(directory: str, names: list[str]) -> list[str]:
        if os.path.realpath(directory) != root:
            return []
        return [name for name in names if _TRIAL_OWN.match(name)]

    return ignore
