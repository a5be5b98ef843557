"""Checkpoints of a worker group: staged by each worker, merged into one ``checkpoint_00000N``.

A worker that passes a checkpoint to ``train.report`` copies its files itself
into ``<trial dir>/.group_staging/<run>/iter_<k>/rank_<r>`` before ``report``
returns (the user's temporary directory may be gone right after). Once every
worker has reported iteration ``k``, the supervising process links the staged
files into the trial's next checkpoint directory (hard links, no copy); for
same-named files the lowest rank wins, so rank 0's files are kept. A rank's
latest staged checkpoint stays (it is what ``train.get_checkpoint()`` returns
in that worker) until the rank stages a later one that is merged, or the
group ends.
"""
from __future__ import annotations

import os
import shutil

STAGING_DIRNAME = ".group_staging"


def staged_path(staging_dir: str, iteration: int, rank: int) -> str:
    """Where worker ``rank`` stages the checkpoint of its ``iteration``-th report."""
    return os.path.join(staging_dir, f"iter_{iteration:06d}", f"rank_{rank}")


def stage(checkpoint, target: str, trial_dir: str | None = None) -> None:
    """Copies a checkpoint's files into ``target`` (which must not exist yet).

    A checkpoint of the trial's own directory (the workers' working directory) takes the files
    written there, not tunesmith's (this staging area, results, earlier checkpoints).
    """
    from tunesmith._internal.fsutil import copy_tree, trial_files_ignore

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    if checkpoint._local:
        shutil.rmtree(target, ignore_errors=True)
        # By content: a link into the worker's temporary directory would point nowhere once it is gone.
        copy_tree(checkpoint.path, target, ignore=trial_files_ignore(checkpoint.path, trial_dir))
    else:
        checkpoint.to_directory(target)


def merge(sources: list[str], target: str, tmp: str) -> None:
    """Links the files of the staged directories ``sources`` (lowest rank first) into ``target``.

    The directory appears complete or not at all: it is assembled at ``tmp``
    (on the same filesystem, outside the ``checkpoint_*`` names) and renamed.
    Where two sources hold the same file, the first one's is kept. The sources
    stay as they are.
    """
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for source in sources:
        _link_missing(source, tmp)
    if os.path.lexists(target):  # left by a run that died before the driver saw it
        shutil.rmtree(target, ignore_errors=True)
    os.rename(tmp, target)


def _link_missing(source: str, target: str) -> None:
    for name in os.listdir(source):
        src = os.path.join(source, name)
        dst = os.path.join(target, name)
        if os.path.islink(src):
            if not os.path.lexists(dst):
                os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            if not os.path.lexists(dst):
                os.mkdir(dst)
            if os.path.isdir(dst) and not os.path.islink(dst):
                _link_missing(src, dst)
        elif not os.path.lexists(dst):
            try:
                os.link(src, dst)
            except OSError:  # a filesystem without hard links
                shutil.copy2(src, dst)
        # else: the lower rank's file stays


def drop_staged(staging_dir: str, iteration: int, rank: int) -> None:
    """Removes rank ``rank``'s staged checkpoint of ``iteration`` (and the iteration's directory once empty)."""
    shutil.rmtree(staged_path(staging_dir, iteration, rank), ignore_errors=True)
    try:
        os.rmdir(os.path.join(staging_dir, f"iter_{iteration:06d}"))
    except OSError:
        pass  # another rank's staged checkpoint is still there
