"""The trial state machine: what happens to a trial on each event and on each request.

::

    PENDING --start--> RUNNING --DONE / stop--> TERMINATED
       ^                 |  |
       |                 |  +--ERROR--> ERROR (or PENDING again under FailureConfig)
       +--resume-- PAUSED <--PAUSED / pause--+

A request to stop or pause a RUNNING trial is sent to its worker and recorded
in ``TrialTable.stopping``; the transition happens when the worker confirms
(``P.DONE`` / ``P.PAUSED``). Schedulers, searchers and callbacks are told at
each step, in the order the seeds describe.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from tunesmith._internal import protocol as P
from tunesmith._internal.process_state import omp_threads_for
from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.execution.checkpoint_book import CheckpointBook
from tunesmith.tune.execution.controller_config import ControllerConfig, LoopSettings
from tunesmith.tune.execution.error_writer import load_exception, write_trial_error
from tunesmith.tune.execution.placement_groups import to_pg_factory
from tunesmith.tune.execution.trial_table import PAUSE, PAUSE_KEEP, STOP, TrialTable
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.logger._util import write_params
from tunesmith.tune.result import (
    CHECKPOINT_DIR_NAME,
    DEFAULT_METRIC,
    DONE,
    EXPERIMENT_ID,
    RESULT_DUPLICATE,
    SHOULD_CHECKPOINT,
    TRAINING_ITERATION,
)
from tunesmith.tune.schedulers.trial_scheduler import TrialScheduler
from tunesmith.tune.trainable._trial_info import TrialInfo
from tunesmith.tune.utils.util import flatten_dict

# What a metric that the experiment compares cannot be.
_NOT_NUMBERS = (str, bytes, dict, list, tuple)

logger = logging.getLogger(__name__)

RUNNING = Trial.RUNNING
_MISSING = object()
CONTINUE_DECISION = TrialScheduler.CONTINUE
_DECISIONS = (TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP, TrialScheduler.NOOP)
STOP_DECISION = TrialScheduler.STOP


@dataclass
class RunStatus:
    """What the loop and the trial state machine share about the run as a whole.

    Args:
        iteration: The loop's turn, passed to callbacks.
        stop_all: The experiment is stopping (time budget, stopper, fail_fast, Ctrl+C).
        stop_deadline: When trials still running are ended by force, once stopping.
        search_finished: The searcher will give no more trials.
        raise_error: What ``fit()`` raises once the run has ended.
        interrupted: The stop is an interruption (Ctrl+C, SIGTERM): trials resume on restore.
    """

    iteration: int = 0
    stop_all: bool = False
    interrupted: bool = False
    stop_deadline: float = float("inf")
    search_finished: bool = False
    raise_error: BaseException | None = None


class TrialLifecycle:
    """Starts trials, applies their events, and carries out what schedulers ask of them.

    Args:
        config: The controller's configuration.
        settings: Its ``TUNE_*`` settings.
        table: The trials by status.
        checkpoints: The checkpoint bookkeeping.
        callbacks: A ``CallbackList``.
        run: The state shared with the loop.
        facade: What schedulers and searchers are handed as "the controller".
        experiment_id: Goes into every result.
        clock: The backend's clock.
    """

    def __init__(
        self,
        config: ControllerConfig,
        settings: LoopSettings,
        table: TrialTable,
        checkpoints: CheckpointBook,
        callbacks,
        run: RunStatus,
        facade: Any,
        experiment_id: str,
        trainable_key: str,
        clock: Callable[[], float] = time.time,
    ):
        self._cfg = config
        self._settings = settings
        self._table = table
        self._book = checkpoints
        self._callbacks = callbacks
        self._run = run
        self._facade = facade
        self._backend = config.executor
        self._worker_location = self._backend.worker_location
        self._scheduler = config.scheduler
        self._search_alg = config.search_alg
        self._stopper = config.stopper
        self._storage = config.storage
        self._clock = clock
        self.experiment_id = experiment_id
        self.trainable_key = trainable_key
        self._is_class = config.is_class_trainable
        self._stopping_criterion = config.stopping_criterion or {}
        failure_config = config.failure_config
        self._max_failures = getattr(failure_config, "max_failures", 0) if failure_config else 0
        self._fail_fast = getattr(failure_config, "fail_fast", False) if failure_config else False
        at_end = getattr(config.checkpoint_config, "checkpoint_at_end", None)
        if at_end is None:
            # As Ray's Tuner: unset means a final checkpoint for a class trainable that can save one.
            at_end = self._is_class and _saves_checkpoints(config.trainable)
        self._checkpoint_at_end = bool(at_end) and self._is_class
        self._checkpoint_frequency = getattr(config.checkpoint_config, "checkpoint_frequency", 0) or 0
        self._reuse = config.reuse_actors is not False
        self._restore_retries: dict[Trial, int] = {}
        self._startup_retries: dict[Trial, int] = {}
        self._warned_no_checkpoint = False
        # A trial told to stop or pause is ended by force if its worker has not confirmed by then.
        self.stop_deadlines: dict[Trial, float] = {}
        self._required: list[tuple[str, str]] | None = None  # metrics every result must have
        self._required_names: tuple[str, ...] = ()
        self._ranked: list[tuple[str, str]] = []  # of those, the ones compared with every result
        self._ranked_names: tuple[str, ...] = ()
        self._nested_names: bool | None = None  # whether a name decided on is "a/b" (see _decision_view)
        self._warned_stop_keys = False  # a stop criterion missing from a first result was said once
        self._score_checked = False  # the first checkpoint was checked for checkpoint_score_attribute
        # Per-result hooks that nobody implements are not called (the result path is hot).
        has = getattr(callbacks, "has", None)
        self._result_callbacks = has("on_trial_result") if has is not None else True
        self._date_second = -1
        self._orig_cwd = os.getcwd()
        self._date_str = ""

    # -- requests (from schedulers, the loop and the user) ------------------------------------------
    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Pauses a trial; with ``should_checkpoint`` it saves first and resumes from that checkpoint."""
        if trial.status == Trial.PENDING:
            self._table.set_status(trial, Trial.PAUSED)
            return
        if trial.status != Trial.RUNNING or trial in self._table.stopping:
            return
        self._table.stopping[trial] = PAUSE if should_checkpoint else PAUSE_KEEP
        self._set_stop_deadline(trial)
        if self._is_class and not should_checkpoint:
            self._backend.send(trial, (P.STOP, False))
        else:
            self._backend.send(trial, P.PAUSE)

    def stop_trial(self, trial: Trial) -> None:
        """Ends a trial: TERMINATED once its worker confirms."""
        if trial.is_finished():
            return
        stopping = self._table.stopping
        if trial.status == Trial.RUNNING:
            if stopping.get(trial) != STOP:
                stopping[trial] = STOP
                self._set_stop_deadline(trial)
                self._backend.send(trial, (P.STOP, self._checkpoint_at_end))
            return
        stopping.pop(trial, None)
        self._table.set_status(trial, Trial.TERMINATED)
        self._after_trial_end(trial)

    def _stop_grace_s(self) -> float:
        """How long a trial told to stop or pause gets to confirm: ``TUNE_FORCE_TRIAL_CLEANUP_S`` (a
        class trial's step, its checkpoint and cleanup); a function trial, as on Ray, at most
        ``TUNE_FUNCTION_THREAD_TIMEOUT_S`` to reach its next report."""
        grace = self._settings.cleanup_grace_s
        if not self._is_class:
            grace = min(grace, self._settings.function_stop_grace_s)
        return grace

    def _set_stop_deadline(self, trial: Trial) -> None:
        self.stop_deadlines[trial] = self._clock() + self._stop_grace_s()

    def next_stop_deadline(self) -> float:
        """The earliest deadline of a trial still stopping (infinite when none)."""
        stopping = self._table.stopping
        for trial in [t for t in self.stop_deadlines if t not in stopping or t.status != Trial.RUNNING]:
            del self.stop_deadlines[trial]
        return min(self.stop_deadlines.values(), default=float("inf"))

    def end_overdue_stops(self, now: float) -> None:
        """Ends by force each trial that was told to stop or pause and did not confirm in time (a
        thread of the trainable that got the stop, while the trial's own code waits on it)."""
        if not self.stop_deadlines:
            return
        for trial, deadline in list(self.stop_deadlines.items()):
            if now < deadline:
                continue
            del self.stop_deadlines[trial]
            how = self._table.stopping.get(trial)
            if how is None or trial.status != Trial.RUNNING:
                continue
            logger.warning(
                "Trial %s did not end within %g s of being told to %s (TUNE_FORCE_TRIAL_CLEANUP_S%s); its "
                "worker was ended by force. A trainable whose reports come from another thread must let "
                "that thread's stop reach the trial's own code.",
                trial, self._stop_grace_s(), "stop" if how == STOP else "pause",
                "" if self._is_class else ", TUNE_FUNCTION_THREAD_TIMEOUT_S",
            )
            if how == STOP:
                self.end_by_force(trial, interrupted=False)
            else:
                self._backend.kill_trial_worker(trial)
                self._table.stopping.pop(trial, None)
                self._backend.release_trial(trial, reuse=False)
                self._set_paused(trial, how)

    def resume_trial(self, trial: Trial) -> None:
        """Makes a PAUSED trial PENDING so that it is started again."""
        if trial.status == Trial.PAUSED:
            self._table.set_status(trial, Trial.PENDING)

    def save_trial(self, trial: Trial) -> Checkpoint | None:
        """Persists a checkpoint of a trial whose result is being processed now."""
        if not self._is_class or trial.status != Trial.RUNNING or trial in self._table.stopping:
            return trial.resume_checkpoint()
        reply = self._backend.call(trial, P.SAVE)
        name = reply[1]
        if name:
            self._register_checkpoint(trial, name, trial.last_result)
        return trial.checkpoint

    def update_trial_resources(self, trial: Trial, placement_group_factory) -> None:
        """Gives a trial new resources; a running trial is paused and resumes with them."""
        trial.placement_group_factory = to_pg_factory(placement_group_factory, trial.config)
        if trial.status == Trial.RUNNING and (self._is_class or trial.checkpoint is not None):
            # A function trial that never checkpointed would lose all its progress: it keeps
            # running and takes the new resources when it next starts.
            self.pause_trial(trial, should_checkpoint=True)
        self._table.resources_changed = True

    def stop_experiment(self, reason: str) -> None:
        """Stops every trial and the searcher.

        Running trials get ``TUNE_FORCE_TRIAL_CLEANUP_S`` to finish their step (a class trial's
        ``step()`` and final checkpoint); a function trial, as on Ray, gets
        ``TUNE_FUNCTION_THREAD_TIMEOUT_S`` to reach its next report, and is then ended by force.
        """
        logger.info("Stopping the experiment: %s.", reason)
        run = self._run
        run.stop_all = True
        grace = self._settings.cleanup_grace_s
        if not self._is_class:
            grace = min(grace, self._settings.function_stop_grace_s)
        run.stop_deadline = self._clock() + grace
        self._search_alg.set_finished()
        run.search_finished = True
        for trial in list(self._table.trials):
            if not trial.is_finished():
                if trial.status != Trial.RUNNING:
                    self._scheduler.on_trial_remove(self._facade, trial)
                self.stop_trial(trial)

    def on_write_error(self, exc: BaseException) -> None:
        """A result row could not be written: the run ends with the error instead of losing rows."""
        if self._run.raise_error is None:
            self._run.raise_error = exc
        if not self._run.stop_all:
            self.stop_experiment("a result could not be written")

    # -- starting -----------------------------------------------------------------------------------
    def _trial_env(self, trial: Trial) -> dict[str, str]:
        """Environment variables a trial runs with: the working directory it started from (before it
        moved into its own), and, unless the driver's environment sets it, ``OMP_NUM_THREADS``, its CPU
        count (as on Ray: trials running side by side do not each start a thread per core)."""
        env = {"TUNE_ORIG_WORKING_DIR": self._orig_cwd}
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = omp_threads_for(trial.placement_group_factory.bundles[0].get("CPU", 0))
        return env

    def start_trial(self, trial: Trial) -> None:
        """Starts a PENDING or PAUSED trial on the backend (from its restore checkpoint, if any)."""
        cfg = self._cfg
        restoring = trial.restore_checkpoint
        metrics = self._book.metrics_of(restoring)
        info = TrialInfo(
            trial_id=trial.trial_id,
            trial_name=str(trial),
            trial_dir=trial.local_path,
            experiment_name=self._storage.experiment_dir_name,
            experiment_path=self._storage.experiment_local_path,
            experiment_tag=trial.experiment_tag,
            resources=trial.placement_group_factory,
            experiment_id=self.experiment_id,
        )
        spec = P.TrialSpec(
            trainable_key=self.trainable_key,
            config=trial.config,
            trial_info=info,
            checkpoint_path=restoring.path if restoring else None,
            start_iteration=int(metrics.get(TRAINING_ITERATION, 0) or 0),
            start_time_total=float(metrics.get("time_total_s", 0.0) or 0.0),
            start_timesteps_total=_number_or_none(metrics.get("timesteps_total")),
            start_episodes_total=_number_or_none(metrics.get("episodes_total")),
            checkpoint_index=self._book.next_index(trial),
            checkpoint_frequency=self._checkpoint_frequency if self._is_class else 0,
            chdir=cfg.chdir_to_trial_dir,
            log_to_file=trial.log_to_file,
            reuse=bool(cfg.reuse_actors),
            result_buffer_length=self._settings.result_buffer_length,
            storage=self._storage.remote_target(),
            decision_points=self._decision_points(trial),
            export_formats=cfg.export_formats,
            env=self._trial_env(trial),
        )
        was_paused = trial.status == Trial.PAUSED or restoring is not None
        foreign = restoring is not None and restoring.path not in {
            c.path for c, _ in trial.checkpoint_manager.checkpoints}
        again = foreign and trial.started_from is not None and trial.started_from.path == restoring.path
        if foreign and not again:
            # Another trial's checkpoint (PBT's exploit) or the run's initial one: a new stretch of
            # rows starts here (nothing is cut now); a later start from it again cuts back to here.
            trial.checkpoint_rows.pop(restoring.path, None)
        self._rollback(trial)
        if foreign:
            trial.checkpoint_rows.setdefault(restoring.path, trial.num_results)
        trial.started_from = restoring if foreign else None
        if foreign:
            trial.started_from_iteration = int(metrics.get(TRAINING_ITERATION, 0) or 0)
        if not trial.dir_created and trial.local_path is not None:
            # The trial's directory and params files are made in the loggers' I/O thread, off
            # this loop; they exist before a callback other than a result logger hears of the
            # trial (CallbackList waits for them) and before any state naming the trial is saved
            # (the save commits the I/O thread's work first).
            write_params(trial.local_path, trial.config)
            trial.dir_created = True
        self._table.set_status(trial, Trial.RUNNING)
        self._backend.start_trial(trial, spec, self.trainable_key, cfg.trainable_payload)
        it, trials = self._run.iteration, self._table.trials
        self._callbacks.on_trial_start(iteration=it, trials=trials, trial=trial)
        if was_paused and restoring is not None:
            self._callbacks.on_trial_restore(iteration=it, trials=trials, trial=trial)

    def _rollback(self, trial: Trial) -> None:
        """Cuts the trial's logs back to its restore checkpoint: the iterations after it run again.

        Called as the trial starts, so a trial that is paused and then never resumed keeps
        its logs. A checkpoint of another trial (PBT's exploit) starts a new stretch of
        rows, so nothing is cut for it.
        """
        rows = trial.rows_at(trial.restore_checkpoint)
        if rows is not None and rows < trial.num_results:
            trial.num_results = rows
            self._callbacks.rollback_trial(trial, rows)
            at_checkpoint = self._book.metrics_of(trial.restore_checkpoint)
            if at_checkpoint:  # the last row kept, until the trial reports again
                trial.last_result = at_checkpoint

    # -- events -------------------------------------------------------------------------------------
    def process_event(self, trial: Trial, msg: tuple) -> None:
        """Applies one protocol message from a trial's worker."""
        kind = msg[0]
        if kind == P.RESULT:
            if self._restore_retries:  # it restored: as on Ray, its next restore has its retries again
                self._restore_retries.pop(trial, None)
            how = self._table.stopping.get(trial)
            if how is None:
                self._on_result(trial, msg[1], msg[2])
            elif self._is_class and (how == PAUSE or (how == STOP and self._checkpoint_at_end)):
                self._on_late_result(trial, msg[1], msg[2])
            elif msg[2]:
                # The worker sees the stop or pause next, and the result is dropped: a function
                # trial resumes from its last checkpoint, whose rows end before it; the dropped
                # result's checkpoint is not left behind.
                self._book.discard(trial, msg[2])
        elif kind == P.DONE:
            self._on_done(trial, msg[1], msg[2])
        elif kind == P.PAUSED:
            self._on_paused(trial, msg[1])
        elif kind == P.ERROR:
            if len(msg) > 3 and msg[3] == P.RESTORE_PHASE:
                self._on_restore_error(trial, msg[1], msg[2])
            elif len(msg) > 3 and msg[3] == P.STARTUP_PHASE:
                self._on_startup_error(trial, msg[1], msg[2])
            else:
                self._on_error(trial, msg[1], msg[2])

    def _decision_points(self, trial: Trial) -> dict[str, tuple] | None:
        """``{result field: increasing values}`` where the trial may be stopped or paused: the
        scheduler's decision points, when it names them (a custom one may not), and the
        trial's stop criteria (``RunConfig(stop={...})`` as a dict; a Stopper object names none)."""
        points: dict[str, set] = {}
        for key, value in (trial.stopping_criterion or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                points.setdefault(key, set()).add(value)
        named = getattr(self._scheduler, "decision_points", None)
        try:
            hint = named(trial) if named is not None else None
        except Exception:  # a scheduler's hint is never worth failing a trial for
            logger.debug("decision_points of %s failed", type(self._scheduler).__name__, exc_info=True)
            hint = None
        if hint is not None:
            field, values = hint
            points.setdefault(field, set()).update(values)
        return {field: tuple(sorted(values)) for field, values in points.items()} or None

    def _fill_result(self, trial: Trial, result: dict, checkpoint_dir_name: str | None) -> dict:
        if DONE not in result:
            result[DONE] = False
        result["trial_id"] = trial.trial_id
        if EXPERIMENT_ID not in result:
            result[EXPERIMENT_ID] = self.experiment_id
        result["experiment_tag"] = trial.experiment_tag
        now = int(self._clock())
        if now != self._date_second:
            self._date_second = now
            self._date_str = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
        result["date"] = self._date_str
        if "timestamp" not in result:
            result["timestamp"] = now
        where = self._worker_location(trial)
        result["hostname"] = where.hostname
        result["node_ip"] = where.node_ip
        result["pid"] = where.pid
        result["config"] = trial.config
        result[CHECKPOINT_DIR_NAME] = checkpoint_dir_name
        return result

    def _required_metrics(self) -> list[tuple[str, str]]:
        """``(metric, who asks for it)`` for TuneConfig's metric, the scheduler's and the searcher's."""
        required: list[tuple[str, str]] = []
        if self._cfg.metric:
            required.append((self._cfg.metric, "TuneConfig(metric=...)"))
        for owner in (self._scheduler, self._search_alg):
            metrics = getattr(owner, "metric", None)
            for m in [metrics] if isinstance(metrics, str) else list(metrics or ()):
                if m and m != DEFAULT_METRIC and all(m != r for r, _ in required):
                    required.append((m, type(getattr(owner, "searcher", owner)).__name__))
        return required

    def _ranked_metrics(self) -> list[tuple[str, str]]:
        """``(metric, who)`` for the metrics compared as numbers with every result: those of a scheduler
        other than FIFO and of a searcher other than the default one (the rest are only ranked at the
        end, where text or None is never best)."""
        from tunesmith.tune.schedulers._util import is_default_searcher, unwrap_searcher
        from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler

        ranked: list[tuple[str, str]] = []
        owners = []
        if type(self._scheduler) is not FIFOScheduler:
            owners.append(self._scheduler)
        if not is_default_searcher(self._search_alg):
            owners.append(self._search_alg)
        for owner in owners:
            metrics = getattr(owner, "metric", None)
            for m in [metrics] if isinstance(metrics, str) else list(metrics or ()):
                if m and m != DEFAULT_METRIC and all(m != r for r, _ in ranked):
                    ranked.append((m, type(unwrap_searcher(owner)).__name__))
        return ranked

    def _know_required(self) -> None:
        """Works out, once, the metrics that every result must have (see :meth:`_required_metrics`)."""
        if self._required is None:
            self._required = self._required_metrics()
            self._required_names = tuple(m for m, _ in self._required)
            self._ranked = self._ranked_metrics()
            self._ranked_names = tuple(m for m, _ in self._ranked)

    def _validate_metric(self, trial: Trial, result: dict) -> None:
        self._know_required()
        if trial.num_results:
            # The common case, without building the list of what is missing.
            for name in self._required_names:
                if name not in result:
                    break
            else:
                for name in self._ranked_names:
                    value = result[name]
                    if value is None or isinstance(value, _NOT_NUMBERS):
                        break
                else:
                    return
        missing = [f"{m!r} ({who})" for m, who in self._required if m not in result]
        if trial.num_results == 0 and not self._warned_stop_keys:
            # A stop criterion may be reported only now and then (a validation score): as on Ray,
            # one that is missing is said once, and the trial is checked against it when it comes.
            absent = [k for k in self._stopping_criterion if k not in result]
            if absent:
                self._warned_stop_keys = True
                logger.warning(
                    "The first result of trial %s has no %s, which RunConfig(stop=...) names; the trial stops on "
                    "it only once it reports it. The result had: %s.", trial, ", ".join(map(repr, absent)),
                    sorted(str(k) for k in result if k != "config"),
                )
        if missing and not result.get(DONE):
            reported = sorted(str(k) for k in result if k not in ("config",))
            raise ValueError(
                f"Trial {trial} reported a result without the metric(s) {', '.join(missing)} that the "
                f"experiment uses. The result had: {reported}. Report the metric, fix its name, or set "
                "TUNE_DISABLE_STRICT_METRIC_CHECKING=1."
            )
        # Metrics compared with every result: text (or None) there would fail deep inside a scheduler or
        # searcher. The others are checked in the first result only (None may stand for "not measured").
        for name, who in (*self._ranked, *(() if trial.num_results else self._required)):
            value = result.get(name, result)
            if (value is None and name in self._ranked_names) or isinstance(value, _NOT_NUMBERS):
                raise ValueError(
                    f"Trial {trial} reported {name!r} = {value!r}, which {who} compares as a number. "
                    "Report a number under that name, or use another metric."
                )

    def _decision_view(self, result: dict) -> dict:
        """The result as stop criteria, the scheduler and the searcher read it.

        As on Ray, a name like ``"info/loss"`` addresses ``result["info"]["loss"]``. Flattening
        every result would cost the hot path, so it is done only when a name the experiment
        decides on has a ``/`` in it.
        """
        if self._nested_names is None:
            self._know_required()
            self._nested_names = any("/" in name for name in (*self._required_names, *self._stopping_criterion))
        if not self._nested_names or not any(type(v) is dict for k, v in result.items() if k != "config"):
            return result
        view = flatten_dict({k: v for k, v in result.items() if k != "config"})
        view["config"] = result.get("config")
        return view

    def _on_result(self, trial: Trial, result: dict, checkpoint_dir_name: str | None) -> None:
        if result.get(RESULT_DUPLICATE):
            self._on_duplicate(trial)
            return
        result = self._fill_result(trial, result, checkpoint_dir_name)
        view = self._decision_view(result)
        if self._settings.strict_metrics:
            try:
                self._validate_metric(trial, view)
            except ValueError as exc:
                self._run.raise_error = exc
                self.stop_experiment("bad metric")
                return
        trial.update_last_result(result)
        # The checkpoint is the trial's at once (a scheduler deciding on this result may use it);
        # callbacks hear of it after the result, in Ray's order (result, then checkpoint).
        checkpoint = self._register_checkpoint(trial, checkpoint_dir_name, result, notify=False) \
            if checkpoint_dir_name else None

        try:
            stop = result[DONE] or bool((trial.stopping_criterion or self._stopper is not None)
                                        and self._should_stop(trial, view, result))
        except BaseException:
            # A stopper that fails ends the run; the result is logged first, so that the checkpoint
            # kept with it (the trial's latest, which a restore resumes from) has its row.
            if self._result_callbacks:
                self._callbacks.on_trial_result(
                    iteration=self._run.iteration, trials=self._table.trials, trial=trial, result=result
                )
            raise
        if stop:
            decision = TrialScheduler.STOP
        else:
            decision = self._scheduler.on_trial_result(self._facade, trial, view)
            if decision not in _DECISIONS:
                raise ValueError(
                    f"{type(self._scheduler).__name__}.on_trial_result returned {decision!r} for trial {trial}; "
                    "a scheduler's decision is TrialScheduler.CONTINUE, PAUSE, STOP or NOOP.")
            if decision == STOP_DECISION:
                trial.scheduler_stop_iteration = result.get(TRAINING_ITERATION)
        if decision == STOP_DECISION:
            result[DONE] = view[DONE] = True  # the trial's last result, as loggers and callbacks see it
        else:
            # As on Ray, the result a trial stops at reaches the searcher once, in on_trial_complete.
            self._search_alg.on_trial_result(trial.trial_id, view)
        if self._result_callbacks:
            self._callbacks.on_trial_result(
                iteration=self._run.iteration, trials=self._table.trials, trial=trial, result=result
            )
        if checkpoint is not None:
            self._notify_checkpoint(trial, checkpoint)
        if self._stopper is not None and not self._run.stop_all and self._stopper.stop_all():
            # Asked after each result, as Ray does: results already sent after this one are dropped.
            self.stop_experiment("stopper")
            return

        if trial in self._table.stopping or trial.status != RUNNING:
            return  # the scheduler already paused or stopped it
        # Trial.checkpoint_now(), or a callback that set result["should_checkpoint"] (as on Ray, read
        # after the callbacks heard the result).
        if trial._checkpoint_requested or (checkpoint is None and result.get(SHOULD_CHECKPOINT)):
            trial._checkpoint_requested = False
            self.save_trial(trial)
        if decision == CONTINUE_DECISION:
            self._backend.send(trial, P.CONTINUE)
        elif decision == TrialScheduler.PAUSE:
            self.pause_trial(trial, should_checkpoint=True)
        elif decision == TrialScheduler.STOP:
            self.stop_trial(trial)
        # NOOP: the scheduler acts on the trial itself later.

    def _on_duplicate(self, trial: Trial) -> None:
        """The trainable ended and repeated its last result (``RESULT_DUPLICATE``, as a wrapped
        function does): that result is the final one, done; no row is added."""
        last = trial.last_result
        if last and not last.get(DONE):
            trial.last_result = {**last, DONE: True}
        self.stop_trial(trial)

    def _on_late_result(self, trial: Trial, result: dict, checkpoint_dir_name: str | None) -> None:
        """A class trial's step that ended after it was asked to pause (or stop with a final
        checkpoint): the checkpoint the worker saves next holds that step's state, so its
        result is logged, as the checkpoint's metrics, though nothing is decided on it."""
        result = self._fill_result(trial, result, checkpoint_dir_name)
        if result[DONE] or ((trial.stopping_criterion or self._stopper is not None)
                            and self._should_stop(trial, self._decision_view(result), result)):
            # The trial reached its end with this step: it ends, rather than pausing to run on.
            result[DONE] = True
            self._table.stopping[trial] = STOP
        trial.update_last_result(result)
        checkpoint = self._register_checkpoint(trial, checkpoint_dir_name, result, notify=False) \
            if checkpoint_dir_name else None
        if self._result_callbacks:
            self._callbacks.on_trial_result(
                iteration=self._run.iteration, trials=self._table.trials, trial=trial, result=result
            )
        if checkpoint is not None:
            self._notify_checkpoint(trial, checkpoint)

    def _should_stop(self, trial: Trial, view: dict, result: dict) -> bool:
        """Whether a stop criterion (read with "a/b" names, in ``view``) or the Stopper (given the
        result as reported, nested, as on Ray) ends the trial at this result."""
        for key, value in trial.stopping_criterion.items():
            if key in view:
                reported = view[key]
                try:
                    if reported >= value:
                        return True
                except (TypeError, ValueError):
                    if reported is None:  # not measured at this result: not reached
                        continue
                    raise ValueError(
                        f"Trial {trial} reported {key!r} = {reported!r} ({type(reported).__name__}), which the "
                        f"stop criterion {{{key!r}: {value!r}}} cannot compare with {value!r}: it stops a trial "
                        "once the reported number reaches the value. Report a single number under that name."
                    ) from None
        return self._stopper is not None and bool(self._stopper(trial.trial_id, result))

    def _register_checkpoint(self, trial: Trial, name: str, metrics: dict, notify: bool = True) -> Checkpoint:
        """Makes ``name`` the trial's latest checkpoint; with ``notify``, callbacks hear of it now."""
        if not self._score_checked:
            self._check_score_attribute(trial, metrics)
        # On remote storage, the next upload comes soon, and with SyncConfig(sync_artifacts=True) it
        # takes the trial's artifacts along (storage.StorageContext.unnamed_checkpoints).
        checkpoint = self._book.register(trial, name, metrics)
        if notify:
            self._notify_checkpoint(trial, checkpoint)
        return checkpoint

    def _notify_checkpoint(self, trial: Trial, checkpoint: Checkpoint) -> None:
        it, trials = self._run.iteration, self._table.trials
        self._callbacks.on_trial_save(iteration=it, trials=trials, trial=trial)
        self._callbacks.on_checkpoint(iteration=it, trials=trials, trial=trial, checkpoint=checkpoint)

    def _check_score_attribute(self, trial: Trial, metrics: dict) -> None:
        """Says (as an error in the log, as Ray does) when the first checkpoint's metrics lack
        ``checkpoint_score_attribute``: checkpoints are kept (and, with ``num_to_keep``, deleted)
        by it, and those without it rank last. The run goes on: the metric may come later."""
        from tunesmith.tune.utils.nested import lookup

        if not metrics:
            return  # a checkpoint from before any result: the next one tells
        self._score_checked = True
        from tunesmith.tune.execution.checkpoint_manager import score_attribute_of

        attribute = getattr(self._cfg.checkpoint_config, "checkpoint_score_attribute", None)
        if not attribute or lookup(metrics, score_attribute_of(metrics, attribute, "max")[0], _MISSING) is not _MISSING:
            return
        reported = sorted(str(k) for k in metrics if k != "config")
        message = (
            f"CheckpointConfig(checkpoint_score_attribute={attribute!r}): trial {trial} saved a checkpoint "
            f"with a result that has no {attribute!r}; checkpoints are ranked (and, with num_to_keep, "
            f"deleted) by it, and checkpoints without it rank last. The result had: {reported}. Fix the "
            "name, or report the metric with every checkpoint."
        )
        logger.error(message)

    def _release(self, trial: Trial, reuse: bool) -> None:
        self._backend.release_trial(trial, reuse=reuse)
        self._table.resources_changed = True

    def _on_done(self, trial: Trial, return_value: Any, checkpoint_dir_name: str | None) -> None:
        if checkpoint_dir_name:
            self._register_checkpoint(trial, checkpoint_dir_name, trial.last_result)
        if return_value is not None:
            trial.return_value = return_value
        how = self._table.stopping.pop(trial, None)
        self._release(trial, self._reuse)
        if how in (PAUSE, PAUSE_KEEP):
            self._set_paused(trial, how)
            return
        before = trial.__dict__.pop("_before_exploit", None)
        if before is not None and before[2] == trial.num_results:
            # Restarted from another trial's checkpoint (PBT's exploit) at its last iteration, it ended
            # without a result: its results and checkpoints are its own, and so is its config.
            trial.set_config(before[0])
            trial.set_experiment_tag(before[1])
        last = trial.last_result
        if last and not last.get(DONE) and how != STOP:
            # The trainable returned: its last result is the final one. A new dict, not a new row:
            # the loggers may still be encoding the one they were given. (A trial the experiment's
            # end stopped did not finish: as on Ray its last result stays not done.)
            trial.last_result = {**last, DONE: True}
        self._table.set_status(trial, Trial.TERMINATED)
        self._after_trial_end(trial)

    def _after_trial_end(self, trial: Trial) -> None:
        result = trial.last_result
        # Also for a trial the scheduler itself stopped (as on Ray): it learns of every trial's end.
        # As each result, read with "a/b" names addressing nested metrics (as on Ray).
        view = self._decision_view(result) if result else result
        self._scheduler.on_trial_complete(self._facade, trial, view)
        self._search_alg.on_trial_complete(trial.trial_id, result=view)
        self._callbacks.on_trial_complete(iteration=self._run.iteration, trials=self._table.trials, trial=trial)

    def _on_paused(self, trial: Trial, checkpoint_dir_name: str | None) -> None:
        if checkpoint_dir_name:
            self._register_checkpoint(trial, checkpoint_dir_name, trial.last_result)
        how = self._table.stopping.pop(trial, PAUSE)
        self._release(trial, self._reuse)
        if how == STOP:
            self._table.set_status(trial, Trial.TERMINATED)
            self._after_trial_end(trial)
            return
        self._set_paused(trial, how)

    def _set_paused(self, trial: Trial, how: str) -> None:
        if how == PAUSE:
            if trial.checkpoint is None and not self._warned_no_checkpoint:
                self._warned_no_checkpoint = True
                logger.warning(
                    "%s paused trial %s, which has no checkpoint: it will start over from scratch when it "
                    "resumes, and so will every trial paused without a checkpoint. To keep progress across "
                    "pauses, pass checkpoint=Checkpoint.from_directory(...) to train.report() (and load it "
                    "with train.get_checkpoint()), or implement save_checkpoint/load_checkpoint in a "
                    "Trainable class.",
                    # A stop of the whole run (Ctrl+C, SIGTERM) pauses trials too: the scheduler did not.
                    "Stopping the experiment" if self._run.stop_all else type(self._scheduler).__name__, trial,
                )
            trial.restore_checkpoint = trial.resume_checkpoint()
        self._table.set_status(trial, Trial.PAUSED)

    def _on_startup_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        """The worker died before it ran any of the trial's code: try again, not counted as a failure."""
        self._table.stopping.pop(trial, None)
        self._release(trial, False)
        tries = self._startup_retries.get(trial, 0) + 1
        self._startup_retries[trial] = tries
        if tries > 3:
            self.fail_trial(trial, tb + "The worker process died while starting, 3 times in a row.\n", exc_bytes)
            return
        logger.warning("The worker process for trial %s died while starting; starting it again.", trial)
        self._table.set_status(trial, Trial.PENDING)

    def _on_restore_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        """A trial could not load its checkpoint: it tries again (TUNE_RESTORE_RETRY_NUM times), then the
        restore counts as a failure of the trial (as on Ray): retried from the same checkpoint under
        ``FailureConfig``, or the trial ends in ERROR with its results and checkpoints kept.

        It never goes on from an older checkpoint or from scratch on its own: a load_checkpoint() that
        cannot read what its save_checkpoint() wrote would otherwise train again from the start, report
        success, and leave the checkpoints it could not read to be deleted as no longer the trial's.
        """
        self._table.stopping.pop(trial, None)
        self._release(trial, self._reuse)
        retries = self._restore_retries.get(trial, 0)
        retry_num = self._settings.restore_retry_num
        if retries < retry_num:
            self._restore_retries[trial] = retries + 1
            logger.warning("Trial %s could not restore its checkpoint; retrying (%d of %d).",
                           trial, retries + 1, retry_num)
            self._table.set_status(trial, Trial.PENDING)
            return
        bad = trial.restore_checkpoint
        logger.warning("Trial %s could not restore its checkpoint %s.", trial, bad.path if bad else None)
        self.fail_trial(trial, tb, exc_bytes)

    def _on_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        stopping = self._table.stopping.pop(trial, None)
        # As on Ray, the worker of a failed trial is not kept: the failure may have left it (or the
        # node it runs on, on a cluster) unusable, and a retry must not land there again.
        self._release(trial, False)
        if stopping == STOP:
            # Its last result came in and it was told to end (its criterion, the scheduler): as on Ray,
            # where it is TERMINATED from then on, a failure while it winds down (its cleanup, a
            # crash at exit) neither fails it nor trains it again.
            logger.warning("Trial %s failed after it was told to stop; it ends as it was told, with the "
                           "results it had:\n%s", trial, tb)
            self._table.set_status(trial, Trial.TERMINATED)
            self._after_trial_end(trial)
            return
        self.fail_trial(trial, tb, exc_bytes)

    def fail_trial(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        """Records a failure: the trial is retried under ``FailureConfig`` or ends in ERROR."""
        trial.num_failures += 1
        write_trial_error(trial, tb, exc_bytes)
        retry = not self._run.stop_all and (
            self._max_failures < 0 or trial.num_failures <= self._max_failures
        )
        it, trials = self._run.iteration, self._table.trials
        if not retry and self._run.interrupted and (
            self._max_failures < 0 or trial.num_failures <= self._max_failures
        ):
            # It failed as the run was being interrupted, with retries left: its retry is the restore's,
            # from where a retry now would start (as an interrupted trial that did not fail).
            logger.warning("Trial %s failed while the run was being stopped; it is retried when the run is "
                           "restored:\n%s", trial, tb)
            trial.restore_checkpoint = trial.resume_checkpoint()
            self._table.set_status(trial, Trial.PAUSED)
            return
        if retry:
            # From its latest checkpoint (or the one it started from, see Trial.resume_checkpoint);
            # before it had any, from tune.run(restore=...)'s, if given.
            initial = self._cfg.initial_checkpoint
            point = trial.resume_checkpoint()
            if point is None and initial:
                trial.checkpoint_rows[initial] = 0  # it stands before the trial's first row: all are cut
                point = Checkpoint(initial)
            trial.restore_checkpoint = point
            self._table.set_status(trial, Trial.PENDING)
            self._callbacks.on_trial_recover(iteration=it, trials=trials, trial=trial)
            return
        self._table.set_status(trial, Trial.ERROR)
        self._scheduler.on_trial_error(self._facade, trial)
        # As on Ray, a failed trial's partial result is not given: its last value is no outcome.
        self._search_alg.on_trial_complete(trial.trial_id, result=None, error=True)
        self._callbacks.on_trial_error(iteration=it, trials=trials, trial=trial)
        if self._fail_fast:
            if self._fail_fast == "raise":
                error = load_exception(exc_bytes, tb)
                if not isinstance(error, Exception):
                    # SystemExit or KeyboardInterrupt inside the trial: raised as such, it would end the
                    # driver's script quietly (exit code 0 for sys.exit()) or look like the user's Ctrl+C.
                    wrapped = RuntimeError(f"Trial {trial} ended with {type(error).__name__}{error.args!r}:\n{tb}")
                    wrapped.__cause__ = error
                    error = wrapped
                self._run.raise_error = error
            self.stop_experiment("fail_fast")

    # -- ending by force ----------------------------------------------------------------------------
    def end_by_force(self, trial: Trial, interrupted: bool) -> None:
        """Kills a RUNNING trial that did not stop in time.

        After an interruption it is PAUSED (it resumes from its latest checkpoint on
        restore); otherwise TERMINATED.
        """
        self._backend.kill_trial_worker(trial)
        was_stopping = self._table.stopping.pop(trial, None) == STOP
        self._backend.release_trial(trial, reuse=False)
        if interrupted and not was_stopping:  # a trial already told to stop (its criterion) ends
            trial.restore_checkpoint = trial.resume_checkpoint()
            self._table.set_status(trial, Trial.PAUSED)
        else:
            self._table.set_status(trial, Trial.TERMINATED)
            self._after_trial_end(trial)

    def request_pause_for_interrupt(self, trial: Trial) -> None:
        """Asks a RUNNING trial to pause at its next result (Ctrl+C: it resumes on restore).

        A trial already told to stop (by the scheduler, a stopper or its criterion) stops: paused,
        it would train on after restore, past the point where it was to end. One told to pause
        pauses as it was told.
        """
        if trial in self._table.stopping:
            return
        self._table.stopping[trial] = PAUSE
        self._backend.send(trial, P.PAUSE)


def _number_or_none(value: Any) -> float | None:
    """A counter carried over a restore (``timesteps_total``...): a number, or None when there is none."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _saves_checkpoints(trainable: Any) -> bool:
    """Whether a class trainable overrides ``save_checkpoint`` (or the older ``_save``); a wrapped
    function (``FunctionTrainable``) counts as a function, as on Ray."""
    from tunesmith.tune.trainable.function_trainable import FunctionTrainable
    from tunesmith.tune.trainable.trainable import Trainable

    if isinstance(trainable, type) and issubclass(trainable, FunctionTrainable):
        return False
    return any(getattr(trainable, m, None) is not getattr(Trainable, m, None) for m in ("save_checkpoint", "_save"))
