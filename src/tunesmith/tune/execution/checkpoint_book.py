"""The controller's bookkeeping of checkpoints across all trials."""
from __future__ import annotations

import os

from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.execution.checkpoint_manager import delete_checkpoints
from tunesmith.tune.experiment.trial import Trial


_COUNTERS = ("training_iteration", "time_total_s", "timesteps_total")


class CheckpointBook:
    """Registers trials' checkpoints and deletes dropped ones only when that is safe.

    It knows, for every checkpoint, the metrics of the result it was taken at (a
    trial restored from it continues its iteration count), the next checkpoint
    index of each trial, and the checkpoints that fell out of ``num_to_keep``.
    Those are deleted by :meth:`delete_dropped` only, which the state snapshotter
    calls after a saved state no longer names them (the durability contract).

    Example:
        >>> import tempfile
        >>> trial = Trial("f", {}, trial_id="t_00000", experiment_path=tempfile.mkdtemp())
        >>> book = CheckpointBook()
        >>> ckpt = book.register(trial, "checkpoint_000000", {"training_iteration": 1})
        >>> book.next_index(trial), book.metrics_of(ckpt)["training_iteration"]
        (1, 1)
    """

    def __init__(self, storage=None) -> None:
        # The experiment's StorageContext: on remote storage, checkpoints live on the store.
        self._storage = storage
        self._metrics: dict[str, dict] = {}
        self._next_index: dict[Trial, int] = {}
        self.pending_deletes: list[Checkpoint] = []
        self.held = 0  # how many of pending_deletes a trial is about to start from (kept at the last delete)

    def note_restored(self, trial: Trial) -> None:
        """Takes in the checkpoints a trial read back from saved state has (and the counters at the
        checkpoints it starts from)."""
        for ckpt, metrics in trial.checkpoint_manager.checkpoints:
            self._metrics[ckpt.path] = metrics
            self._note_index(trial, os.path.basename(ckpt.path))
        for path, counters in trial.start_points.items():
            self._metrics.setdefault(path, counters)

    def note_start_points(self, trial: Trial) -> None:
        """Keeps, with the trial, the counters at the checkpoints it starts from (see ``Trial.start_points``)."""
        points = {}
        for ckpt in (trial.restore_checkpoint, trial.started_from):
            metrics = self._metrics.get(ckpt.path) if ckpt is not None else None
            if metrics:
                points[ckpt.path] = {k: metrics[k] for k in _COUNTERS if k in metrics}
        if points != trial.start_points:
            trial.start_points = points

    def _note_index(self, trial: Trial, name: str) -> None:
        try:
            index = int(name.rsplit("_", 1)[-1])
        except ValueError:
            return
        if index + 1 > self._next_index.get(trial, 0):
            self._next_index[trial] = index + 1

    def next_index(self, trial: Trial) -> int:
        """The index the trial's next checkpoint directory gets (``checkpoint_<index>``)."""
        return self._next_index.get(trial, 0)

    def metrics_of(self, checkpoint: Checkpoint | None) -> dict:
        """The result a checkpoint was taken at (empty when unknown)."""
        if checkpoint is None:
            return {}
        return self._metrics.get(checkpoint.path, {})

    def register(self, trial: Trial, name: str, metrics: dict) -> Checkpoint:
        """Records checkpoint ``name`` in the trial's directory, taken at ``metrics``; returns it.

        The trial's checkpoint manager may drop older checkpoints: they wait in
        :attr:`pending_deletes`.
        """
        storage = self._storage
        if storage is not None and storage.is_remote:
            path = storage.checkpoint_path(trial.trial_dirname, name, trial.local_path)
            checkpoint = Checkpoint(path, storage.storage_filesystem)
            storage.unnamed_checkpoints = True
        else:
            path = os.path.join(trial.local_path, name)
            checkpoint = Checkpoint(path)
        self._metrics[path] = metrics
        self._note_index(trial, name)
        trial.started_from = None  # its own checkpoint now holds its progress
        trial.checkpoint_rows[path] = trial.num_results
        for removed in trial.checkpoint_manager.register(checkpoint, metrics):
            trial.checkpoint_rows.pop(removed.path, None)
            self.pending_deletes.append(removed)
        return checkpoint

    def discard(self, trial: Trial, name: str) -> None:
        """Deletes checkpoint ``name`` of a result that was dropped (it came after the trial was told
        to stop or pause): nothing names it, and the trial resumes from an earlier one."""
        storage = self._storage
        if storage is not None and storage.is_remote:
            checkpoint = Checkpoint(storage.checkpoint_path(trial.trial_dirname, name, trial.local_path),
                                    storage.storage_filesystem)
        else:
            checkpoint = Checkpoint(os.path.join(trial.local_path, name))
        self._note_index(trial, name)  # its number is not used again
        delete_checkpoints([checkpoint])

    def delete_dropped(self, trials: list[Trial], only: set[str] | None = None) -> None:
        """Deletes dropped checkpoints (those of ``only``, paths, when given); call only after a saved
        state that no longer names them."""
        if not self.pending_deletes:
            return
        # A checkpoint some trial is about to start from (PBT's exploit) stays until it has.
        wanted = {c.path for t in trials if not t.is_finished()
                  for c in (t.restore_checkpoint, t.started_from) if c is not None}
        if only is not None:
            wanted |= {c.path for c in self.pending_deletes if c.path not in only}
        keep = [c for c in self.pending_deletes if c.path in wanted]
        delete = [c for c in self.pending_deletes if c.path not in wanted]
        self.pending_deletes = keep
        self.held = len(keep)
        for checkpoint in delete:
            self._metrics.pop(checkpoint.path, None)
        if delete:
            # A finished trial that had resumed from one of them names its latest instead, so that the
            # next saved state names no checkpoint that is gone.
            gone = {c.path for c in delete}
            for t in trials:
                if t.is_finished() and t.restore_checkpoint is not None and t.restore_checkpoint.path in gone:
                    t.restore_checkpoint = t.checkpoint
        storage = self._storage
        if storage is not None and storage.is_remote:
            storage.delete_later(delete)  # the store's deletes wait on nothing of the driver's
        else:
            delete_checkpoints(delete)
