"""A trainer as one Tune trial: the trial's process starts, watches and merges a worker group.

:class:`TrainerTrainable` is the function trainable a trainer hands to Tune.
Its call runs in the trial's worker process, with the trial's session: it
starts one process per training worker (``ScalingConfig.num_workers``), lets
the backend wire them together, and turns their ``train.report`` calls into
one result per iteration (rank 0's metrics, every rank's checkpoint files
merged). It ends the group when a worker fails, when the workers disagree on
how often they reported, or when the driver stops or pauses the trial.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from multiprocessing.connection import wait
from typing import Any

from tunesmith._internal import process_state
from tunesmith._internal.process_state import omp_threads_for
from tunesmith.train._internal import checkpoints
from tunesmith.train._internal.group_worker import DONE, ERROR, REPORT, WorkerSpec, recv
from tunesmith.train._internal.worker_group import WorkerGroup, start_method
from tunesmith.tune.utils.nested import deep_update

logger = logging.getLogger(__name__)

# When a worker reports an error, how long the others get to show that one of them died first (a
# collective operation fails in every rank once a peer is killed; the killed rank is the cause).
_DEATH_GRACE_S = 1.0
# Messages read from one worker while its group fails (a worker that keeps reporting cannot hold it up).
_MAX_DRAINED = 1000

_PARAM_SPACE_KEYS = ("train_loop_config", "scaling_config", "datasets", "metadata")


# Once a worker returned, the others may still be busy before their last report (rank-0-only
# validation, a large save): they are waited for, as on Ray. After this long a warning says so.
_UNEVEN_WARN_S = 300.0


def _uneven_report_timeout_s() -> float | None:
    """Seconds a worker may go without reporting once another finished with more reports
    (``TUNESMITH_TRAIN_UNEVEN_REPORT_TIMEOUT_S``); None (the default) waits as long as it takes."""
    value = os.environ.get("TUNESMITH_TRAIN_UNEVEN_REPORT_TIMEOUT_S")
    return float(value) if value not in (None, "") else None


def resolve_config(trainer, config: dict | None):
    """The trainer's settings for one trial: its own, overridden by the trial's config.

    Returns ``(train_loop_config, scaling_config, datasets, metadata)``.
    """
    from tunesmith.train._config import ScalingConfig

    config = dict(config or {})
    unknown = sorted(k for k in config if k not in _PARAM_SPACE_KEYS)
    if unknown:
        raise ValueError(
            f"The param_space of a {type(trainer).__name__} may hold {list(_PARAM_SPACE_KEYS)}; it had "
            f"{unknown}. Put the training function's hyperparameters under 'train_loop_config', e.g. "
            "param_space={'train_loop_config': {'lr': tune.loguniform(1e-4, 1e-1)}}."
        )
    loop_config = dict(trainer.train_loop_config or {})
    override = config.get("train_loop_config")
    if override is not None:
        if not isinstance(override, dict):
            raise TypeError(f"param_space['train_loop_config'] must be a dict, got {type(override).__name__}.")
        loop_config = deep_update(loop_config, override)
    scaling = config.get("scaling_config", trainer.scaling_config)
    if isinstance(scaling, dict):
        scaling = ScalingConfig(**scaling)
    if not isinstance(scaling, ScalingConfig):
        raise TypeError(
            f"scaling_config must be a tunesmith.train.ScalingConfig, got {type(scaling).__name__}."
        )
    datasets = config.get("datasets", trainer.datasets)
    from tunesmith.train._internal.dataset import check_datasets

    check_datasets(datasets, "param_space['datasets']")
    metadata = config.get("metadata", trainer.metadata)
    return loop_config, scaling, datasets, metadata


class ReturnValue:
    """Rank 0's return value, as the bytes that worker pickled; unpickling it gives the value itself.

    So the value reaches the Result as it was returned (a dict is not taken
    for a last result), and tensors in it travel as plain pickled data.
    """

    __slots__ = ("payload",)

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        import pickle

        return (pickle.loads, (self.payload,))


class TrainerTrainable:
    """The function trainable of a trainer; its name is the trainer's class name (``TorchTrainer``).

    Args:
        trainer: A ``DataParallelTrainer`` (or subclass).
    """

    # What sets a trial's resources, for the error of a request that can never fit.
    requested_by = "the trainer's ScalingConfig: num_workers, resources_per_worker"

    def __init__(self, trainer):
        self.trainer = trainer
        self.__name__ = type(trainer).__name__
        self.__qualname__ = self.__name__

    @property
    def _tunesmith_resources(self):
        """The trial's resources: the sum of the group's bundles (``ScalingConfig``), per config."""
        return self._resources_for

    def _resources_for(self, config) -> Any:
        _, scaling, _, _ = resolve_config(self.trainer, dict(config or {}))
        return scaling.as_placement_group_factory()

    def __call__(self, config: dict) -> Any:
        from tunesmith.train._result import TrainingFailedError

        try:
            payload = run_trainer(self.trainer, config)
        except TrainingFailedError as exc:
            # The workers' tracebacks are in the message; the supervisor's frames would only add noise.
            raise exc.with_traceback(None) from exc.__cause__
        return ReturnValue(payload) if payload is not None else None

    def __repr__(self) -> str:
        return f"<trainable of {self.trainer!r}>"


def run_trainer(trainer, config: dict) -> bytes | None:
    """Runs one trial of ``trainer`` inside a Tune trial's process.

    Returns rank 0's return value as pickled bytes (None when it returned None).
    """
    from tunesmith._internal import session as S
    from tunesmith.train.backend import GroupInfo

    sess = S._get_session()
    if sess is None:
        raise RuntimeError(f"{type(trainer).__name__} runs through trainer.fit() or a Tuner, not by calling it.")
    loop_config, scaling, datasets, metadata = resolve_config(trainer, config)
    checkpoint = sess.checkpoint
    if checkpoint is None and trainer.resume_from_checkpoint is not None:
        # A new run that starts from the checkpoint: as on Ray, its iterations count from 1, so stop
        # criteria and schedulers see this run's own progress.
        checkpoint = trainer.resume_from_checkpoint

    n = scaling.num_workers
    per_worker = scaling._resources_per_worker_not_none
    backend = trainer._backend_config._make_backend()
    from tunesmith._internal.backend.ray_group import on_ray

    ray_group = on_ray()  # on a Ray cluster each worker gets its GPUs from its own bundle
    gpu_ids = [[] for _ in range(n)] if ray_group else _assign_gpus(scaling, per_worker.get("GPU", 0.0))
    group_info = GroupInfo(world_size=n, use_gpu=scaling.use_gpu, gpu_ids=gpu_ids,
                           resources_per_worker=per_worker)
    env = dict(backend.on_group_start(group_info) or {})
    share = os.environ.get("TRAIN_ENABLE_SHARE_CUDA_VISIBLE_DEVICES")
    share = backend.share_cuda_visible_devices if share is None else share == "1"
    all_gpus = [g for ids in gpu_ids for g in ids]
    all_gpus = list(dict.fromkeys(all_gpus))

    trial_dir = sess.trial_info.trial_dir
    staging_root = os.path.join(trial_dir, checkpoints.STAGING_DIRNAME)
    shutil.rmtree(staging_root, ignore_errors=True)  # left by a group that was killed
    staging = os.path.join(staging_root, uuid.uuid4().hex[:8])
    specs = []
    for rank in range(n):
        worker_env = dict(env)
        if process_state.omp_from_cpus:  # as on Ray: each worker's thread count is its own CPUs
            worker_env["OMP_NUM_THREADS"] = omp_threads_for(per_worker.get("CPU", 0.0))
        worker_env["CUDA_VISIBLE_DEVICES"] = ",".join(all_gpus if share and gpu_ids[rank] else gpu_ids[rank])
        specs.append(WorkerSpec(
            fn=trainer.train_loop_per_worker, takes_config=trainer._takes_config, config=loop_config,
            rank=rank, world_size=n, local_rank=rank, local_world_size=n, node_rank=0,
            trial_info=sess.trial_info, checkpoint=checkpoint, staging_dir=staging, backend=backend,
            env=worker_env, metadata=dict(metadata or {}), datasets=datasets,
            dataset_config=getattr(trainer, "dataset_config", None), gpu_ids=gpu_ids[rank],
            parent_pid=os.getpid(), storage=getattr(sess, "remote", None), cwd=os.getcwd(),
        ))
    driver_conn = getattr(sess, "_conn", None)
    inherited = (driver_conn.fileno(),) if driver_conn is not None else ()
    if ray_group:
        from tunesmith._internal.backend.ray_group import RayWorkerGroup

        group = RayWorkerGroup(specs, per_worker)
    else:
        group = WorkerGroup(specs, start_method(backend), inherited_fds=inherited)
    ok = False
    try:
        group.start()
        value = _GroupRun(sess, group, staging, metadata).run()
        ok = True
        return value
    finally:
        group.shutdown(kill=not ok)
        shutil.rmtree(staging_root, ignore_errors=True)


def _assign_gpus(scaling, per_worker: float) -> list[list[str]]:
    """The GPU ids of each worker, from the GPUs the trial was given (``CUDA_VISIBLE_DEVICES``)."""
    n = scaling.num_workers
    if not per_worker:
        return [[] for _ in range(n)]
    visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    needed = n * per_worker
    if len(visible) + 1e-9 < (needed if per_worker >= 1 else -(-needed // 1)):
        raise RuntimeError(
            f"The trial was given GPUs {visible} but its {n} workers need {needed:g} "
            f"(ScalingConfig(use_gpu=True, resources_per_worker={scaling.resources_per_worker})). "
            "Declare the GPUs with tunesmith.init(num_gpus=...) or lower the request."
        )
    if per_worker >= 1:
        k = int(round(per_worker))
        return [visible[r * k:(r + 1) * k] for r in range(n)]
    return [[visible[int(r * per_worker + 1e-9)]] for r in range(n)]


class _GroupRun:
    """Watches a started group to its end, reporting one result per iteration to the trial's session."""

    def __init__(self, sess, group: WorkerGroup, staging: str, metadata: dict | None):
        self.sess = sess
        self.group = group
        self.staging = staging
        self.metadata = metadata
        self.n = len(group.handles)
        self.counts = [0] * self.n
        self.finished: dict[int, int] = {}  # rank -> its number of reports when it returned
        self.pending: dict[int, dict[int, tuple[dict, bool]]] = {}
        self.next_iteration = 1
        self.last_event = time.monotonic()
        self._warned_uneven = False
        self.latest_staged: dict[int, int] = {}  # rank -> the iteration of its latest staged checkpoint
        self.finished_at: dict[int, float] = {}  # rank -> when it returned (the worker's clock)

    def run(self) -> bytes | None:
        by_conn = {h.conn: h for h in self.group.handles}
        driver = getattr(self.sess, "_conn", None)
        answer = getattr(self.sess, "_answer", None)
        if answer is None:
            driver = None
        value = None
        while len(self.finished) < self.n:
            watched = [h.conn for h in self.group.handles if h.rank not in self.finished]
            if driver is not None:
                watched.append(driver)
            ready = wait(watched, self._timeout())
            if not ready:
                self._check_stalled()
                continue
            for conn in ready:
                if conn is driver:
                    answer(driver.recv())  # a stop or pause raises TrialStopped
                    continue
                handle = by_conn[conn]
                try:
                    msg = recv(conn)
                except (EOFError, OSError):
                    self._fail({handle.rank: self._death(handle)})
                self.last_event = time.monotonic()
                kind = msg[0]
                if kind == REPORT:
                    self._on_report(handle.rank, msg[1], msg[2])
                elif kind == DONE:
                    self._finish(handle.rank, msg)
                    if handle.rank == 0:
                        value = msg[1]
                    self._check_counts()
                elif kind == ERROR:
                    failures = self._take_reports_in_flight(handle)
                    failures[handle.rank] = _worker_error(handle, msg)
                    self._fail(failures)
        return value

    def _take_reports_in_flight(self, failed) -> dict[int, tuple[BaseException, str, float, bool]]:
        """Before a failure ends the group, completes the rounds whose other reports are on their way.

        Reports are not a barrier, so the failing rank's last report may be complete
        before the other ranks' reports of that round have been read; waiting a moment
        for them keeps that iteration (up to 1 s, only while a round is incomplete).
        A rank that returned meanwhile counts as finished, and one that failed too is
        returned with its error (for :meth:`_fail`), rather than taken for dead later.
        """
        failures: dict[int, tuple[BaseException, str, float, bool]] = {}
        deadline = time.monotonic() + 1.0
        others = {h.conn: h for h in self.group.handles if h is not failed and h.rank not in self.finished}
        while self.pending and others and time.monotonic() < deadline:
            ready = wait(list(others), max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for conn in ready:
                handle = others[conn]
                try:
                    msg = recv(conn)
                except (EOFError, OSError):
                    others.pop(conn)
                    continue
                if msg[0] == REPORT:
                    self._on_report(handle.rank, msg[1], msg[2])
                    continue
                others.pop(conn)
                if msg[0] == DONE:
                    self._finish(handle.rank, msg)
                elif msg[0] == ERROR:
                    failures[handle.rank] = _worker_error(handle, msg)
        return failures

    def _finish(self, rank: int, msg: tuple) -> None:
        """Notes that ``rank`` returned (``msg``: its DONE, with the time it returned)."""
        self.finished[rank] = self.counts[rank]
        self.finished_at[rank] = msg[2] if len(msg) > 2 else time.time()

    # -- reports --------------------------------------------------------------------------
    def _on_report(self, rank: int, metrics: dict, staged: bool) -> None:
        self.counts[rank] += 1
        self.pending.setdefault(self.counts[rank], {})[rank] = (metrics, staged)
        if staged:
            previous = self.latest_staged.get(rank)
            self.latest_staged[rank] = self.counts[rank]
            if previous is not None and previous < self.next_iteration:  # merged, and no longer its latest
                checkpoints.drop_staged(self.staging, previous, rank)
        self._check_counts()
        while len(self.pending.get(self.next_iteration, ())) == self.n:
            self._emit(self.next_iteration)
            self.next_iteration += 1

    def _emit(self, iteration: int) -> None:
        from tunesmith.train._checkpoint import Checkpoint

        entries = self.pending.pop(iteration)
        metrics = entries[0][0]
        ranks = sorted(r for r, (_, staged) in entries.items() if staged)
        if not ranks:
            self.sess.report(metrics)
            return
        sources = [checkpoints.staged_path(self.staging, iteration, r) for r in ranks]
        remote = getattr(self.sess, "storage_filesystem", None) is not None
        target = os.path.join(self.staging, f"merged_{iteration:06d}") if remote else self._next_checkpoint_dir()
        checkpoints.merge(sources, target, os.path.join(self.staging, f"merging_{iteration:06d}"))
        for rank in ranks:
            # A rank's latest staged checkpoint stays: its train.get_checkpoint() points there.
            if self.latest_staged.get(rank, iteration) > iteration:
                checkpoints.drop_staged(self.staging, iteration, rank)
        checkpoint = Checkpoint(target)
        if self.metadata:  # as on Ray, what the training function set on the checkpoint itself wins
            own = checkpoint.get_metadata() or {}
            missing = {key: value for key, value in self.metadata.items() if key not in own}
            if missing:
                checkpoint.update_metadata(missing)
        self.sess.report(metrics, checkpoint=checkpoint)
        if remote:
            shutil.rmtree(target, ignore_errors=True)

    def _next_checkpoint_dir(self) -> str:
        from tunesmith.tune.result import CHECKPOINT_DIR_FORMAT

        nxt = getattr(self.sess, "_next_checkpoint_dir", None)
        if nxt is not None:
            return nxt()
        return os.path.join(self.sess.trial_info.trial_dir, CHECKPOINT_DIR_FORMAT.format(self.sess.checkpoint_index))

    # -- uneven reports ----------------------------------------------------------------------
    def _check_counts(self) -> None:
        for rank, count in self.finished.items():
            if any(c > count for c in self.counts):
                self._uneven(f"rank {rank} returned after {count} reports while others reported more")
        if len(self.finished) == self.n and len(set(self.counts)) > 1:
            self._uneven("the workers returned after different numbers of reports")

    def _timeout(self) -> float | None:
        if not self.finished:
            return None
        most = max(self.finished.values())
        if all(self.counts[r] >= most for r in range(self.n) if r not in self.finished):
            return None
        limit = _uneven_report_timeout_s()
        if limit is None:
            if self._warned_uneven:
                return None
            limit = _UNEVEN_WARN_S
        return max(0.0, self.last_event + limit - time.monotonic())

    def _check_stalled(self) -> None:
        if self._timeout() != 0.0:
            return
        if _uneven_report_timeout_s() is None:
            self._warned_uneven = True
            waiting = [r for r in range(self.n) if r not in self.finished]
            logger.warning(
                "Rank(s) %s returned after %s reports; rank(s) %s made no report for %g s since and are still "
                "waited for. A worker that returns without its last train.report() call leaves the others "
                "waiting (set TUNESMITH_TRAIN_UNEVEN_REPORT_TIMEOUT_S to fail after that many seconds).",
                sorted(self.finished), max(self.finished.values()), waiting, _UNEVEN_WARN_S,
            )
            return
        self._uneven(
            f"a worker returned and the others made no report for {_uneven_report_timeout_s():g} s "
            "(TUNESMITH_TRAIN_UNEVEN_REPORT_TIMEOUT_S; if a worker is only slower than that between its "
            "last reports, raise it)"
        )

    def _uneven(self, what: str) -> None:
        from tunesmith.train._result import TrainingFailedError

        states = ", ".join(
            f"rank {r}: {self.counts[r]} reports ({'returned' if r in self.finished else 'running'})"
            for r in range(self.n)
        )
        raise TrainingFailedError(
            f"The training workers called train.report() a different number of times: {what}. "
            f"{states}. Every worker must call train.report() the same number of times (each call is one "
            "training iteration); report from every rank, passing checkpoint=None where a rank has none."
        )

    # -- failures ------------------------------------------------------------------------------
    def _death(self, handle) -> tuple[BaseException, str, float, bool]:
        from tunesmith.train.exceptions import WorkerDiedError

        seen = time.time()
        code = handle.wait(timeout=5.0)
        if code is None:
            handle.kill()
            code = handle.wait()
        from tunesmith._internal.exit import describe_exit

        how = getattr(handle, "died_how", None) or describe_exit(code)
        text = f"Training worker rank {handle.rank} (pid {handle.pid}) {how} before it finished."
        return WorkerDiedError(text), text, seen, True

    def _fail(self, failures: dict[int, tuple[BaseException, str, float, bool]]) -> None:
        """Ends the group with a ``WorkerGroupError`` naming every worker that failed."""
        from tunesmith.train.exceptions import WorkerGroupError

        # Errors that other workers sent already (often caused by the first failure) are named too.
        # Unless a death is known, a dying peer gets a moment for its end to show: the kernel may
        # still be closing its connections when another rank's collective call has failed already.
        grace_end = time.monotonic() + (0.0 if any(f[3] for f in failures.values()) else _DEATH_GRACE_S)
        for handle in self.group.handles:
            if handle.rank in failures or handle.rank in self.finished:
                continue
            try:
                for _ in range(_MAX_DRAINED):
                    if not handle.conn.poll(max(0.0, grace_end - time.monotonic())):
                        break
                    msg = recv(handle.conn)
                    if msg[0] == ERROR:
                        failures[handle.rank] = _worker_error(handle, msg)
                        break
                    if msg[0] == DONE:  # it returned: its end of the connection closes next
                        self._finish(handle.rank, msg)
                        break
            except (EOFError, OSError):
                failures[handle.rank] = self._death(handle)
                grace_end = time.monotonic()  # the cause is known
        self.group.shutdown(kill=True)
        # A worker that died is the cause; otherwise the error raised first.
        primary = min(failures, key=lambda r: (not failures[r][3], failures[r][2], r))
        exc, tb, _, _ = failures[primary]
        others = [r for r in sorted(failures) if r != primary]
        message = f"Training worker rank {primary} failed: {type(exc).__name__}: {exc}"
        if failures[primary][3]:
            message = str(exc)
        if others:
            message += "\nOther workers that failed: " + "; ".join(
                f"rank {r}: {type(failures[r][0]).__name__}: {failures[r][0]}" for r in others
            )
        # Only a rank that returned before the failure can have caused it.
        failed_at = failures[primary][2]
        returned = {r: c for r, c in self.finished.items()
                    if r not in failures and self.finished_at.get(r, 0.0) <= failed_at}
        if returned:
            # A worker that had returned leaves the others' collective calls without a peer, and
            # they fail with errors about a lost connection rather than the cause.
            message += (
                "\nNote: "
                + ", ".join(f"rank {r} had returned (after {c} reports)" for r, c in sorted(returned.items()))
                + " when this failed. If the failing worker was in a collective call (all_reduce, barrier, a "
                "DDP step), that early return is the likely cause: every worker must run the same number of "
                "iterations and call train.report() the same number of times."
            )
        if tb and not failures[primary][3]:
            message += f"\n\nOriginal traceback (rank {primary}):\n{tb.rstrip()}"
        raise WorkerGroupError(
            message, {r: f[0] for r, f in failures.items()}, original_error=exc, traceback_str=tb
        )


def _worker_error(handle, msg) -> tuple[BaseException, str, float, bool]:
    _, tb, exc_bytes, when = msg
    exc = None
    if exc_bytes is not None:
        try:
            import cloudpickle

            exc = cloudpickle.loads(exc_bytes)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        lines = [line for line in tb.strip().splitlines() if line.strip()]
        exc = RuntimeError(lines[-1] if lines else "a training worker failed")
    return exc, tb, when, False
