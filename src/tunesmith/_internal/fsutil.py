"""Small file system helpers for the per-trial hot path."""
from __future__ import annotations

import logging
import os
import re
import shutil
from typing import Callable

logger = logging.getLogger(__name__)


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
    r"|events\.out\.tfevents\..*|error\.(txt|pkl)|.*\.tmp\d+)\Z"
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


def copy_tree(source: str, target: str, ignore: Callable[[str, list[str]], list[str]] | None = None,
              dirs_exist_ok: bool = False) -> None:
    """Copies a checkpoint's directory by content: a symlink becomes the file or directory it
    points to (a checkpoint outlives the place its links point into), and a link that points
    nowhere is left out with a warning rather than failing the copy."""
    dangling: list[str] = []

    def skip(directory: str, names: list[str]) -> set[str]:
        skipped = set(ignore(directory, names)) if ignore is not None else set()
        for name in names:
            path = os.path.join(directory, name)
            if name not in skipped and os.path.islink(path) and not os.path.exists(path):
                dangling.append(path)
                skipped.add(name)
        return skipped

    shutil.copytree(source, target, ignore=skip, dirs_exist_ok=dirs_exist_ok)
    if dangling:
        logger.warning("Left out of the checkpoint copied from %s: symbolic links to nothing: %s",
                       source, ", ".join(dangling))


def local_tree(root: str) -> tuple[list[str], list[str]]:
    """The files and the empty directories under ``root``, as ``/``-separated relative paths.

    Symbolic links are followed (a link to a directory walks it, unless it points back into
    its own ancestors); a link that points nowhere is left out.
    """
    files: list[str] = []
    empty: list[str] = []
    for directory, dirs, names in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(directory, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        if dirs:
            here = os.path.realpath(directory)
            kept = []
            for name in dirs:
                real = os.path.realpath(os.path.join(directory, name))
                if real == here or here.startswith(real + os.sep):
                    continue  # a link back up the tree: walking it would never end
                kept.append(name)
            dirs[:] = kept
        present = [name for name in names if os.path.exists(os.path.join(directory, name))]
        files.extend(prefix + name for name in present)
        if not present and not dirs and prefix:
            empty.append(prefix[:-1])
    return files, empty


def wait_readable(fds: list, timeout: float | None = None) -> list:
    """The descriptors (ints, or objects with ``fileno()``) of ``fds`` that are readable, waiting at most
    ``timeout`` seconds (None: until one is).

    ``select.poll`` rather than ``select.select``: a program with more than 1,024 files open (a server,
    a data loader keeping shards open) hands out descriptor numbers ``select`` cannot take.
    """
    import select

    if not hasattr(select, "poll"):  # Windows: select is all there is
        return select.select(fds, [], [], timeout)[0]
    poller = select.poll()
    by_number = {}
    for fd in fds:
        number = fd if isinstance(fd, int) else fd.fileno()
        by_number[number] = fd
        poller.register(number, select.POLLIN | select.POLLHUP | select.POLLERR)
    ready = poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
    return [by_number[number] for number, _ in ready]
