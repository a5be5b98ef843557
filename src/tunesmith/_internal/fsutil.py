"""Small file system helpers for the per-trial hot path."""
from __future__ import annotations

import os


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
