"""Helpers for scheduler state: reading it back, and checkpoint references by path.

A scheduler's state (see :meth:`TrialScheduler.get_state`) holds plain data.
Checkpoints a scheduler remembers (PBT's donors) are kept as references: the
path relative to the experiment directory, so that a moved experiment still
finds them, and linked back to the restored trials' own checkpoint objects.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

_FINISHED = ("TERMINATED", "ERROR")


def is_finished(trial: "Trial") -> bool:
    """Whether a trial has ended (TERMINATED or ERROR): it no longer counts as live."""
    return trial.status in _FINISHED


def as_trial_dict(trials: "Mapping[str, Trial] | Iterable[Trial] | None") -> "dict[str, Trial]":
    """``{trial_id: trial}`` from a mapping or an iterable of trials."""
    if trials is None:
        return {}
    if isinstance(trials, Mapping):
        return dict(trials)
    return {t.trial_id: t for t in trials}


def load_state_file(checkpoint_path: str, owner: str) -> dict:
    """Reads a state written by ``TrialScheduler.save``; ValueError naming the file when it cannot."""
    import cloudpickle

    try:
        with open(checkpoint_path, "rb") as f:
            state = cloudpickle.load(f)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ValueError(
            f"{owner}: could not read the scheduler state file {checkpoint_path!r} "
            f"({type(exc).__name__}: {exc}). The file is damaged or was not written by {owner}.save()."
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{owner}: the scheduler state file {checkpoint_path!r} holds a {type(state).__name__}, "
            f"not a state written by {owner}.save()."
        )
    return state


def _local_checkpoint_path(checkpoint: Any) -> str | None:
    from tunesmith.train._checkpoint import Checkpoint

    if isinstance(checkpoint, Checkpoint) and checkpoint._local and isinstance(checkpoint.path, str):
        return checkpoint.path
    return None


def _relative(path: str, experiment_path: str | None) -> str | None:
    if not experiment_path or "://" in str(experiment_path):
        return None
    root = os.path.abspath(os.path.expanduser(experiment_path))
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return None
    return None if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def checkpoint_ref(checkpoint: Any, experiment_path: str | None) -> dict | None:
    """A reference to ``checkpoint`` that survives the experiment moving.

    A local :class:`~tunesmith.train.Checkpoint` becomes its path (and the path
    relative to ``experiment_path`` when inside it); a checkpoint on another
    filesystem is kept by path only; any other object (the simulated backend's
    in-memory checkpoints) is kept as is.
    """
    if checkpoint is None:
        return None
    from tunesmith.train._checkpoint import Checkpoint

    if isinstance(checkpoint, Checkpoint):
        path = _local_checkpoint_path(checkpoint)
        if path is None:
            return {"path": str(checkpoint.path), "relpath": None, "local": False}
        return {"path": path, "relpath": _relative(path, experiment_path), "local": True}
    return {"object": checkpoint}


class CheckpointResolver:
    """Finds the restored checkpoint objects that :func:`checkpoint_ref` references point to."""

    def __init__(self, trials: "Mapping[str, Trial]"):
        self._by_rel: dict[str, Any] = {}
        self._by_path: dict[str, Any] = {}
        self._roots: list[str] = []
        for trial in trials.values():
            root = getattr(trial, "experiment_path", None)
            if root and "://" not in str(root) and root not in self._roots:
                self._roots.append(root)
            known = [c for c, _ in getattr(trial.checkpoint_manager, "checkpoints", [])]
            if trial.restore_checkpoint is not None:
                known.append(trial.restore_checkpoint)
            for ckpt in known:
                path = getattr(ckpt, "path", None)
                if not isinstance(path, str):
                    continue
                self._by_path.setdefault(path, ckpt)
                rel = _relative(path, root)
                if rel is not None:
                    self._by_rel.setdefault(rel, ckpt)

    def resolve(self, ref: dict | None) -> Any:
        """The checkpoint ``ref`` names, or None when it is gone."""
        if ref is None:
            return None
        if "object" in ref:
            return ref["object"]
        rel, path = ref.get("relpath"), ref.get("path")
        if rel is not None and rel in self._by_rel:
            return self._by_rel[rel]
        if path in self._by_path:
            return self._by_path[path]
        if not ref.get("local", True):
            return None
        from tunesmith.train._checkpoint import Checkpoint

        candidates = [os.path.join(root, rel) for root in self._roots] if rel is not None else []
        candidates.append(path)
        for candidate in candidates:
            if candidate and os.path.isdir(candidate):
                return Checkpoint(candidate)
        return None
