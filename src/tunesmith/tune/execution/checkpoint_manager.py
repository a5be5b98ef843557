"""Keeps a trial's checkpoints by the rules of ``CheckpointConfig``."""
from __future__ import annotations

import math
import shutil
from typing import Any

from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.utils.nested import lookup


_MISSING = object()


def score_attribute_of(metrics: dict, attribute: str, order: str) -> tuple[str, str]:
    """``(attribute, order)`` that ``metrics`` are ranked by.

    An attribute reported as it is named is used as it is (as on Ray). One that is
    not, written ``"max-auc"``/``"min-loss"`` (the older ``checkpoint_score_attr``
    spelling, which a seed example uses), ranks by ``auc``/``loss`` in that order
    when the result has that metric.
    """
    if attribute[:4] in ("max-", "min-") and len(attribute) > 4 and lookup(metrics, attribute, _MISSING) is _MISSING \
            and lookup(metrics, attribute[4:], _MISSING) is not _MISSING:
        return attribute[4:], attribute[:3]
    return attribute, order


def _score(metrics: dict, attribute: str | None) -> float:
    if attribute is None:
        return 0.0
    value = lookup(metrics, attribute)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class CheckpointManager:
    """The list of a trial's checkpoints with their metrics.

    The latest checkpoint is never deleted (it is what a restore needs); beyond
    it, at most ``num_to_keep`` checkpoints stay, the best by
    ``checkpoint_score_attribute`` or else the most recent.
    """

    def __init__(self, checkpoint_config=None):
        self.num_to_keep = getattr(checkpoint_config, "num_to_keep", None)
        self.score_attribute = getattr(checkpoint_config, "checkpoint_score_attribute", None)
        self.score_order = getattr(checkpoint_config, "checkpoint_score_order", "max") or "max"
        self.checkpoints: list[tuple[Checkpoint, dict[str, Any]]] = []
        # Path of a latest checkpoint kept only for restore, when read back from saved state.
        self._latest_only: str | None = None

    @property
    def latest_checkpoint(self) -> Checkpoint | None:
        return self.checkpoints[-1][0] if self.checkpoints else None

    def _key(self, item: tuple[Checkpoint, dict]) -> float:
        attribute, order = score_attribute_of(item[1], self.score_attribute, self.score_order)
        score = _score(item[1], attribute)
        if math.isnan(score):
            return -math.inf
        return score if order == "max" else -score

    def _ranked(self) -> list[tuple[Checkpoint, dict[str, Any]]]:
        """Kept checkpoints ordered worst to best (oldest to newest without a score attribute)."""
        if self.score_attribute is None:
            return list(self.checkpoints)
        return sorted(self.checkpoints, key=self._key)

    @property
    def best_checkpoints(self) -> list[tuple[Checkpoint, dict[str, Any]]]:
        """The checkpoints kept by the ``num_to_keep`` ranking, worst to best.

        The latest checkpoint stays on disk for a restore even when it ranks
        lower, as in Ray, but it is not listed among the best.
        """
        ranked = self._ranked()
        if self.num_to_keep is not None:
            return ranked[-self.num_to_keep:]
        if self._latest_only is not None:  # read back from saved state, without the CheckpointConfig
            return [c for c in ranked if _name(c[0].path) != self._latest_only]
        return ranked

    def register(self, checkpoint: Checkpoint, metrics: dict[str, Any]) -> list[Checkpoint]:
        """Adds a checkpoint; returns those that fall out of ``num_to_keep``.

        They are not deleted here: the caller deletes them (:func:`delete_checkpoints`)
        once the experiment state that no longer names them is written, so the
        saved state never points at a checkpoint that is gone.
        """
        self.checkpoints = [c for c in self.checkpoints if c[0].path != checkpoint.path]
        self.checkpoints.append((checkpoint, metrics))
        if self.num_to_keep is None or len(self.checkpoints) <= self.num_to_keep:
            return []
        latest = self.checkpoints[-1]
        ranked = self._ranked()
        keep = set(id(c) for c in ranked[-self.num_to_keep:])
        keep.add(id(latest))
        removed = [c for c in self.checkpoints if id(c) not in keep]
        self.checkpoints = [c for c in self.checkpoints if id(c) in keep]
        return [c for c, _ in removed]

    def drop(self, path: str) -> None:
        """Forgets the checkpoint at ``path`` (it is missing or cannot be loaded)."""
        self.checkpoints = [c for c in self.checkpoints if c[0].path != path]

    def get_state(self) -> list[dict[str, Any]]:
        best = {id(item) for item in self.best_checkpoints}
        state = []
        for item in self.checkpoints:
            entry = {"path": item[0].path, "metrics": item[1]}
            if id(item) not in best:
                entry["latest_only"] = True
            state.append(entry)
        return state

    def set_state(self, state: list[dict[str, Any]], filesystem=None) -> None:
        self.checkpoints = [(Checkpoint(s["path"], filesystem), s["metrics"]) for s in state]
        self._latest_only = next((_name(s["path"]) for s in state if s.get("latest_only")), None)


def _name(path: str) -> str:
    """A checkpoint's directory name, which stays the same when the experiment moves."""
    return path.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]


def delete_checkpoints(checkpoints: list[Checkpoint]) -> None:
    """Deletes checkpoint directories that no saved state names any more."""
    for checkpoint in checkpoints:
        _delete(checkpoint)


def _delete(checkpoint: Checkpoint) -> None:
    if checkpoint._local:
        shutil.rmtree(checkpoint.path, ignore_errors=True)
    else:
        try:
            checkpoint.filesystem.delete_dir(checkpoint.path)
        except OSError:
            pass
