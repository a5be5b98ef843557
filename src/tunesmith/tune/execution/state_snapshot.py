"""Commits the experiment's state to storage, in the order the durability contract needs."""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from typing import Any, Callable

from tunesmith._internal.storage import slot_file, write_atomic, write_bytes_atomic
from tunesmith.tune.execution.checkpoint_book import CheckpointBook
from tunesmith.tune.execution.controller_config import env_float
from tunesmith.tune.result import EXPERIMENT_STATE_FILE, SCHEDULER_STATE_FILE, STOPPER_STATE_FILE

logger = logging.getLogger(__name__)

# Checkpoints waiting to be deleted that make a state save come early (local storage).
_EARLY_DELETE_AT = 3

CALLBACK_STATE_FILE = "callback_state.pkl"


def _write_text_atomic(path: str, pieces: list[str]) -> None:
    """Writes the concatenation of ``pieces`` to ``path`` atomically (see ``storage.write_atomic``)."""
    write_atomic(path, lambda f: f.writelines(pieces), "w", encoding="utf-8", newline="")


class StateSaveError(RuntimeError):
    """The experiment state could not be written; the message says where and how to continue."""


class StateSnapshotter:
    """Writes ``experiment_state.json`` and the searcher's, scheduler's, stopper's and callbacks' state.

    One :meth:`save` commits, in this order: buffered result rows, the searcher,
    scheduler, stopper and callback states (into the state slot, ``a`` or ``b``,
    that the saved experiment state does not name: see ``storage.slot_file``),
    the experiment state naming that slot and the checkpoints, then deletes
    checkpoints the new state no longer names. On
    remote storage the deletion waits for an upload of that state: every
    ``SyncConfig.sync_period`` seconds the save uploads what changed (the state
    last), then deletes. :meth:`due_in` says when the next periodic save is
    due: every ``period`` seconds, or with a negative period ("auto") spaced so
    that saving takes about 5% of the driver's time (twenty times the last save's
    duration, and at least a second apart), or when an upload is due.

    The period is wall-clock time whatever the backend's clock: it bounds the
    work lost in a crash and the share of the driver's time spent saving, both
    real (under a simulated backend, virtual hours pass in real seconds).

    Args:
        storage: The experiment's ``StorageContext``.
        search_alg: Saved with ``save_to_dir``.
        scheduler: Saved with ``save``.
        callbacks: A ``CallbackList``; its ``get_state()`` is pickled when not all None.
        checkpoints: Whose dropped checkpoints are deleted after the state is written.
        describe: Returns the experiment state dict, without its trials.
        trials: Returns all trials; each one's ``get_json_state()`` goes into the state.
        on_write_error: Called with the error when a result row could not be written.
        period: ``TUNE_GLOBAL_CHECKPOINT_S`` (negative: auto).

    Example:
        >>> import tempfile
        >>> from tunesmith._internal.storage import StorageContext
        >>> from tunesmith.tune.callback import CallbackList
        >>> from tunesmith.tune.schedulers import FIFOScheduler
        >>> from tunesmith.tune.search.basic_variant import BasicVariantGenerator
        >>> snap = StateSnapshotter(StorageContext(tempfile.mkdtemp(), "exp"), BasicVariantGenerator(),
        ...     FIFOScheduler(), CallbackList([]), CheckpointBook(), lambda: {"version": 2}, list, print)
        >>> snap.save()
        >>> os.path.exists(os.path.join(snap.path, EXPERIMENT_STATE_FILE))
        True
    """

    def __init__(
        self,
        storage,
        search_alg,
        scheduler,
        callbacks,
        checkpoints: CheckpointBook,
        describe: Callable[[], dict[str, Any]],
        trials: Callable[[], list],
        on_write_error: Callable[[BaseException], None],
        period: float = -1.0,
        stopper: Any = None,
    ):
        self._storage = storage
        self._search_alg = search_alg
        self._scheduler = scheduler
        self._callbacks = callbacks
        self._checkpoints = checkpoints
        self._describe = describe
        self._trials = trials
        self._on_write_error = on_write_error
        self._period = period
        self._stopper = stopper
        self._stopper_unsaved = False
        self._last_slow_sync_warning = 0.0
        self.failed = False  # a save raised StateSaveError
        self.last_write = 0.0
        self.last_duration = 0.0
        self._cache: dict[Any, tuple[tuple, str]] = {}
        self.upload_failures = 0  # background uploads that failed (the run went on)
        self._deletable_after_upload: set[str] = set()  # checkpoints the upload in flight makes deletable

    @property
    def path(self) -> str:
        return self._storage.experiment_local_path

    def due_in(self) -> float:
        """Wall-clock seconds until the next periodic save is due (0 or less: now)."""
        period = self._period
        if period < 0:
            period = max(1.0, 20 * self.last_duration)
        due = self.last_write + period - time.time()
        if self._storage.is_remote:
            upload_due = self._storage.sync_due_in()
            if self._storage.unnamed_checkpoints:
                # Early, for checkpoints on the store that no uploaded state names: still within the
                # 5% of the driver's time that state saves may take.
                upload_due = max(upload_due, self.last_write + 20 * self.last_duration - time.time())
            due = min(due, upload_due)
        elif len(self._checkpoints.pending_deletes) - self._checkpoints.held >= _EARLY_DELETE_AT:
            # Checkpoints dropped by num_to_keep wait for a saved state that no longer names them:
            # a save comes early, so that they do not fill the disk (a trial checkpointing every
            # step with num_to_keep=1 keeps a few, not one per step since the last save), at most
            # every five times the last save's duration.
            due = min(due, self.last_write + 5 * self.last_duration - time.time())
        return due

    def maybe_save(self) -> None:
        if self.due_in() <= 0:
            self.save()

    def _encode(self, fields: dict[str, Any], trials: list) -> list[str]:
        """The state file's text in pieces: ``fields`` plus ``"trials"``, each trial re-encoded only when it changed.

        A trial's saved state changes only with its status, results, failures,
        checkpoints, config, resources, start point or error; those make up the cache key (by
        identity where the controller replaces an object rather than changing it), so a
        snapshot costs O(trials that changed) encodings and not O(all trials). The pieces
        are written one after the other: the whole text is never held at once (with
        10,000 trials it is tens of megabytes).
        """
        cache, fresh = self._cache, {}
        parts = []
        for trial in trials:
            # Every field of the saved state that can change without the others (a PBT exploit sets
            # started_from while the trial's status stays RUNNING).
            key = (trial.status, trial.num_results, trial.num_failures, len(trial.checkpoint_manager.checkpoints),
                   id(trial.restore_checkpoint), id(trial.last_result), id(trial.config), id(trial.evaluated_params),
                   id(trial.placement_group_factory), trial.error_file, trial.trial_dirname,
                   id(trial.started_from), trial.restored_iteration, trial.scheduler_stop_iteration,
                   len(trial.checkpoint_rows), len(trial.start_points), trial.experiment_tag, trial.error_msg,
                   trial.start_time)
            hit = cache.get(trial)
            if hit is None or hit[0] != key:
                self._checkpoints.note_start_points(trial)
                hit = (key, trial.get_json_text())
            fresh[trial] = hit
            if parts:
                parts.append(", ")
            parts.append(hit[1])
        self._cache = fresh
        head = json.dumps(fields, allow_nan=True)
        return [f'{head[:-1]}{", " if fields else ""}"trials": [', *parts, "]}"]

    def save(self) -> None:
        """Commits the experiment to storage: result rows first, then the state that names checkpoints.

        Raises:
            StateSaveError: A file could not be written (a full disk, a lost mount); what was
                saved before is intact.
        """
        try:
            self._save()
        except OSError as exc:
            self.failed = True
            raise StateSaveError(
                f"The experiment state could not be saved in {self.path}: {exc}. What was saved before is intact: "
                f"make room (or fix the storage), then continue the run with Tuner.restore({self.path!r}, "
                "trainable=...)."
            ) from exc

    def _save(self) -> None:
        from tunesmith.tune.logger._util import ResultWriteError, commit_results

        start = time.time()
        path = self.path
        os.makedirs(path, exist_ok=True)
        try:
            commit_results()
        except ResultWriteError as exc:
            self._on_write_error(exc)
        trials = self._trials()
        # The searcher's, scheduler's, stopper's and callbacks' states go into the slot the saved
        # experiment state does not name; the state file naming it comes last. A snapshot cut short
        # (a kill, a full disk) leaves the saved state and the states it names as they were.
        storage = self._storage
        # On remote storage, the slot the state on the store names is the one kept: a snapshot that
        # reached the store only in part (a kill, an outage during the upload) then leaves that state
        # and its files as they were. The staging directory is scratch there (a restore reads the store).
        named = storage.uploaded_slot if storage.is_remote else getattr(storage, "state_slot", None)
        slot = "b" if named == "a" else "a"
        text = self._encode({"state_slot": slot, **self._describe()}, trials)
        try:
            self._search_alg.save_to_dir(path, session_str=f"tunesmith-{slot}")
        except Exception:
            logger.warning("Could not save the search algorithm's state:\n%s", traceback.format_exc())
        try:
            self._scheduler.save(os.path.join(path, slot_file(SCHEDULER_STATE_FILE, slot)))
        except Exception:
            logger.warning("Could not save the scheduler's state:\n%s", traceback.format_exc())
        if self._stopper is not None and not self._stopper_unsaved:
            self._save_stopper(os.path.join(path, slot_file(STOPPER_STATE_FILE, slot)))
        callback_state = self._callbacks.get_state()
        callback_file = os.path.join(path, slot_file(CALLBACK_STATE_FILE, slot))
        if any(v is not None for v in callback_state.values()):
            import cloudpickle

            write_bytes_atomic(callback_file, cloudpickle.dumps(callback_state))
        elif os.path.exists(callback_file):
            os.remove(callback_file)  # from an earlier snapshot in this slot
        _write_text_atomic(os.path.join(path, EXPERIMENT_STATE_FILE), text)
        storage.state_slot = slot
        synced_s = self._sync_and_delete_dropped()
        end = time.time()
        self.last_write = end
        # Uploads keep their own period (SyncConfig.sync_period), outside the 5% rule of state writes.
        self.last_duration = end - start - synced_s

    def _save_stopper(self, stopper_file: str) -> None:
        """Keeps the Stopper with what it counted (per-trial iterations, plateau windows, time spent), as Ray does."""
        import cloudpickle

        try:
            data = cloudpickle.dumps(self._stopper)
        except Exception as exc:
            self._stopper_unsaved = True
            logger.warning("The stopper %r cannot be saved (%s); a restored run starts it afresh.", self._stopper, exc)
            for slot in ("a", "b"):  # an older save must not pass for this one
                stale = os.path.join(os.path.dirname(stopper_file), slot_file(STOPPER_STATE_FILE, slot))
                if os.path.exists(stale):
                    os.remove(stale)
            return
        write_bytes_atomic(stopper_file, data)

    def final_sync(self) -> None:
        """Uploads everything that changed, at the end of the run (remote storage), after the
        upload in flight.

        Raises:
            StorageError: The store kept refusing an upload for ``sync_timeout`` seconds.
        """
        storage = self._storage
        if storage.is_remote:
            self._collect_upload(wait=True)
            if storage.state_slot is not None and storage.state_slot == storage.uploaded_slot:
                # The last state was saved while an upload of a state naming the other slot ran, so it
                # went to the slot that upload has now made the store's: its files cannot replace those
                # of the state on the store. Saved again, it goes to the other slot.
                self.save()
            self._sync_and_delete_dropped(force=True)
            storage.wait_for_deletes()

    def _sync_and_delete_dropped(self, force: bool = False) -> float:
        """Starts an upload of the state just written when one is due (in the background), and deletes
        the checkpoints dropped before an upload that has ended: the store then holds a state that no
        longer names them. With ``force``, uploads now and waits.

        Returns the seconds the driver spent on it.
        """
        storage = self._storage
        if not storage.is_remote:
            self._checkpoints.delete_dropped(self._trials())
            return 0.0
        start = time.time()
        self._collect_upload(wait=force)
        if force:
            storage.sync()
            self._checkpoints.delete_dropped(self._trials())
        elif storage.sync_due():
            self._deletable_after_upload = {c.path for c in self._checkpoints.pending_deletes}
            storage.start_sync()
        return time.time() - start

    def _collect_upload(self, wait: bool) -> None:
        """Handles the background upload once it has ended: deletes what it made deletable, or says
        that it failed (the next one tries again; the run goes on)."""
        storage = self._storage
        upload = storage.finish_sync(wait)
        if upload is None:
            return
        deletable, self._deletable_after_upload = self._deletable_after_upload, set()
        if upload.error is not None:
            self.upload_failures += 1
            logger.error(
                "Uploading the experiment's files to %s failed: %s\nThe run goes on, and the next upload "
                "(in %.0f s, and at the end of the run) tries again; until one succeeds, the store holds an "
                "older state of the experiment, and the newest one is in %s.",
                storage.experiment_path, upload.error, storage.sync_due_in(), storage.experiment_local_path,
                exc_info=upload.error if not isinstance(upload.error, OSError) else None,
            )
            return
        threshold = env_float("TUNE_WARN_SLOW_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", 5.0)
        if upload.seconds > threshold and upload.started - self._last_slow_sync_warning > 60:
            self._last_slow_sync_warning = upload.started
            logger.warning(
                "Uploading the experiment's files to %s took %.1f s "
                "(TUNE_WARN_SLOW_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=%s). Large files in the experiment "
                "directory, or a slow link to the store, slow every upload; SyncConfig(sync_period=...) sets "
                "how often they run.", storage.experiment_path, upload.seconds, threshold,
            )
        if deletable:
            self._checkpoints.delete_dropped(self._trials(), only=deletable)
