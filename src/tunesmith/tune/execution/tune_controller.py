"""The driver's event loop: creates trials, starts them, processes their results.

The controller knows nothing of processes: an executor backend runs trials and
hands back protocol messages. Searchers, schedulers, stoppers and callbacks are
asked at the points described in DESIGN.md.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from typing import Any

from tunesmith._internal import protocol as P
from tunesmith._internal.storage import StorageContext, write_bytes_atomic, write_json_atomic
from tunesmith.tune.callback import Callback, CallbackError, CallbackList
from tunesmith.tune.execution.checkpoint_manager import delete_checkpoints
from tunesmith.tune.logger._util import _write_params_files
from tunesmith.tune.logger._util import write_error as _write_error
from tunesmith.tune.execution.placement_groups import to_pg_factory
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.result import (
    CHECKPOINT_DIR_NAME,
    DEFAULT_METRIC,
    DONE,
    EXPERIMENT_ID,
    EXPERIMENT_STATE_FILE,
    EXPR_ERROR_FILE,
    EXPR_ERROR_PICKLE_FILE,
    SCHEDULER_STATE_FILE,
    TRAINING_ITERATION,
)
from tunesmith.tune.schedulers.trial_scheduler import TrialScheduler
from tunesmith.tune.trainable._trial_info import TrialInfo
from tunesmith.train._checkpoint import Checkpoint

logger = logging.getLogger(__name__)

_CALLBACK_STATE_FILE = "callback_state.pkl"
_STATUSES = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value in (None, "", "auto"):
        return default
    return float(value)


class TuneController:
    """Runs an experiment's trials to completion.

    Args:
        trainable: The function or ``Trainable`` class (already validated).
        trainable_name: Its name, used for trial names.
        trainable_payload: The cloudpickled trainable, shipped once to each worker.
        search_alg: A ``SearchAlgorithm`` with the param space added.
        scheduler: A ``TrialScheduler``.
        stopper: A ``Stopper`` or None.
        callbacks: Callbacks, loggers included.
        reporter: A progress reporter or None.
        storage: The experiment's ``StorageContext``.
        executor: The backend that runs trials.
    """

    def __init__(
        self,
        *,
        trainable: Any,
        trainable_name: str,
        trainable_payload: bytes,
        trainable_key: str | None = None,
        search_alg,
        scheduler: TrialScheduler,
        stopper=None,
        callbacks: list[Callback] | None = None,
        reporter=None,
        storage: StorageContext,
        executor,
        metric: str | None = None,
        mode: str | None = None,
        resources_request: Any = None,
        max_concurrent_trials: int | None = None,
        time_budget_s: float | None = None,
        reuse_actors: bool | None = None,
        failure_config=None,
        checkpoint_config=None,
        trial_name_creator=None,
        trial_dirname_creator=None,
        log_to_file: tuple = (None, None),
        chdir_to_trial_dir: bool = True,
        is_class_trainable: bool = False,
        stopping_criterion: dict | None = None,
        trials: list[Trial] | None = None,
        experiment_state_extra: dict | None = None,
        initial_checkpoint: str | None = None,
        scheduler_restored: bool = False,
    ):
        self._trainable = trainable
        self._trainable_name = trainable_name
        self._payload = trainable_payload
        self._trainable_key = trainable_key or f"{trainable_name}-{uuid.uuid4().hex[:8]}"
        self._search_alg = search_alg
        self._scheduler = scheduler
        self._stopper = stopper
        self._callbacks = CallbackList(callbacks or [])
        self._reporter = reporter
        self._storage = storage
        self._executor = executor
        self._metric = metric
        self._mode = mode
        self._resources_request = resources_request
        self._max_concurrent = max_concurrent_trials or 0
        self._time_budget_s = time_budget_s
        self._reuse_actors = reuse_actors
        self._failure_config = failure_config
        self._checkpoint_config = checkpoint_config
        self._trial_name_creator = trial_name_creator
        self._trial_dirname_creator = trial_dirname_creator
        self._log_to_file = log_to_file
        self._chdir = chdir_to_trial_dir
        self._is_class = is_class_trainable
        self._stopping_criterion = stopping_criterion or {}
        self._state_extra = experiment_state_extra or {}
        self._initial_checkpoint = initial_checkpoint

        self._experiment_id = uuid.uuid4().hex
        self._id_prefix = uuid.uuid4().hex[:5]
        self._next_index = 0
        self._trials: list[Trial] = []
        self._by_status: dict[str, dict[Trial, None]] = {s: {} for s in _STATUSES}
        self._stopping: dict[Trial, str] = {}  # trial -> "stop" | "pause" | "pause_keep"
        self._scheduler_stopped: set[Trial] = set()
        self._checkpoint_metrics: dict[str, dict] = {}
        self._next_ckpt_index: dict[Trial, int] = {}
        self._search_finished = False
        self._stop_all = False
        self._raise_error: BaseException | None = None
        self.interrupted = False  # set when Ctrl+C ended the run
        self._strict_metrics = os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0") != "1"
        self._required: list[tuple[str, str]] | None = None  # metrics every result must have
        self._iteration = 0
        self._resources_changed = True
        self._date_second = -1
        self._date_str = ""
        self._hostname = socket.gethostname()
        try:
            self._node_ip = socket.gethostbyname(self._hostname)
        except OSError:
            self._node_ip = "127.0.0.1"
        self._max_failures = getattr(failure_config, "max_failures", 0) if failure_config else 0
        self._fail_fast = getattr(failure_config, "fail_fast", False) if failure_config else False
        self._checkpoint_at_end = bool(getattr(checkpoint_config, "checkpoint_at_end", False)) and is_class_trainable
        self._checkpoint_frequency = getattr(checkpoint_config, "checkpoint_frequency", 0) or 0
        from tunesmith.tune.search.basic_variant import BasicVariantGenerator

        cpus = executor.total.get("CPU", 1) if hasattr(executor, "total") else 1
        default_pending = max(200, int(cpus * 1.1))
        self._max_pending = int(_env_float(
            "TUNE_MAX_PENDING_TRIALS_PG",
            default_pending if isinstance(search_alg, BasicVariantGenerator) else 1,
        ))
        self._state_period = _env_float("TUNE_GLOBAL_CHECKPOINT_S", -1.0)
        self._warn_threshold_s = _env_float("TUNE_WARN_THRESHOLD_S", 0.5)
        self._cleanup_grace_s = _env_float("TUNE_FORCE_TRIAL_CLEANUP_S", 600.0)
        self._result_buffer_length = max(1, int(_env_float("TUNE_RESULT_BUFFER_LENGTH", 1)))
        self._restore_retry_num = int(_env_float("TUNE_RESTORE_RETRY_NUM", 0))
        self._restore_retries: dict[Trial, int] = {}
        self._startup_retries: dict[Trial, int] = {}
        # Checkpoints that fell out of num_to_keep: deleted once a saved state no longer names them.
        self._pending_deletes: list[Checkpoint] = []
        self._warned_no_checkpoint = False
        self._stop_deadline = float("inf")
        self._warn_idle_s = _env_float("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", 60.0)
        self._last_running = time.time()
        self._last_slow_warning = self._last_idle_warning = 0.0
        self._last_state_write = 0.0
        self._last_state_duration = 0.0
        self._start_time = time.time()
        self._time_budget_deadline = (
            self._start_time + time_budget_s if time_budget_s else None
        )
        self._scheduler_restored = scheduler_restored
        self._stop_requested = False
        self._dirnames: dict[str, str] = {t.trial_dirname: t.trial_id for t in trials or []}
        for trial in trials or []:
            self._register_restored(trial)

    def restore_callback_state(self) -> None:
        """Gives callbacks back the state they had when the experiment was last saved."""
        path = os.path.join(self._storage.experiment_local_path, _CALLBACK_STATE_FILE)
        if os.path.exists(path):
            import cloudpickle

            with open(path, "rb") as f:
                self._callbacks.set_state(cloudpickle.load(f))

    # -- the facade used by schedulers, searchers and callbacks ---------------------------------
    @property
    def experiment_path(self) -> str:
        return self._storage.experiment_local_path

    @property
    def total_resources(self) -> dict[str, float]:
        """What the backend can hand out to trials in all (CPU, GPU, memory, custom)."""
        return dict(self._executor.total)

    @property
    def search_alg(self):
        return self._search_alg

    def get_trials(self) -> list[Trial]:
        return self._trials

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self._trials if not t.is_finished()]

    def first_trial_with_status(self, status: str) -> Trial | None:
        for trial in self._by_status[status]:
            if trial not in self._stopping:
                return trial
        return None

    def _set_status(self, trial: Trial, status: str) -> None:
        old = trial.status
        self._by_status[old].pop(trial, None)
        trial.set_status(status)
        self._by_status[status][trial] = None
        if status in (Trial.PENDING, Trial.PAUSED):
            self._resources_changed = True

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Pauses a trial; with ``should_checkpoint`` it saves first and resumes from that checkpoint."""
        if trial.status == Trial.PENDING:
            self._set_status(trial, Trial.PAUSED)
            return
        if trial.status != Trial.RUNNING or trial in self._stopping:
            return
        self._stopping[trial] = "pause" if should_checkpoint else "pause_keep"
        if self._is_class and not should_checkpoint:
            self._executor.send(trial, (P.STOP, False))
        else:
            self._executor.send(trial, P.PAUSE)

    def stop_trial(self, trial: Trial) -> None:
        """Ends a trial: TERMINATED once its worker confirms."""
        if trial.is_finished():
            return
        if trial.status == Trial.RUNNING:
            if trial not in self._stopping or self._stopping[trial] != "stop":
                self._stopping[trial] = "stop"
                self._executor.send(trial, (P.STOP, self._checkpoint_at_end))
            return
        self._stopping.pop(trial, None)
        self._set_status(trial, Trial.TERMINATED)
        self._after_trial_end(trial)

    def resume_trial(self, trial: Trial) -> None:
        """Makes a PAUSED trial PENDING so that it is started again."""
        if trial.status == Trial.PAUSED:
            self._set_status(trial, Trial.PENDING)

    def save_trial(self, trial: Trial) -> Checkpoint | None:
        """Persists a checkpoint of a trial whose result is being processed now."""
        if not self._is_class or trial.status != Trial.RUNNING or trial in self._stopping:
            return trial.checkpoint
        reply = self._executor.call(trial, P.SAVE)
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
        self._resources_changed = True

    # -- trial creation ---------------------------------------------------------------------------
    def _register_restored(self, trial: Trial) -> None:
        self._trials.append(trial)
        self._by_status[trial.status][trial] = None
        index = int(trial.trial_id.rsplit("_", 1)[-1]) if "_" in trial.trial_id else len(self._trials)
        self._next_index = max(self._next_index, index + 1)
        self._id_prefix = trial.trial_id.rsplit("_", 1)[0] if "_" in trial.trial_id else self._id_prefix
        if self._trials[0] is trial and trial.last_result.get(EXPERIMENT_ID):
            self._experiment_id = trial.last_result[EXPERIMENT_ID]  # the id outlives a restore
        for ckpt, metrics in trial.checkpoint_manager.checkpoints:
            self._checkpoint_metrics[ckpt.path] = metrics
            self._note_checkpoint_index(trial, os.path.basename(ckpt.path))
        if not self._scheduler_restored and not trial.is_finished():
            self._scheduler.on_trial_add(self, trial)

    def _note_checkpoint_index(self, trial: Trial, name: str) -> None:
        try:
            index = int(name.rsplit("_", 1)[-1])
        except ValueError:
            return
        if index + 1 > self._next_ckpt_index.get(trial, 0):
            self._next_ckpt_index[trial] = index + 1

    def make_trial(self, suggestion) -> Trial:
        trial_id = f"{self._id_prefix}_{self._next_index:05d}"
        pgf = to_pg_factory(self._resources_request, suggestion.config)
        if not self._executor.can_ever_fit(pgf.required_resources):
            resource_help = getattr(self._trainable, "resource_help", None)
            hint = resource_help(suggestion.config) if callable(resource_help) else ""
            raise ValueError(
                f"Trial {trial_id} asks for {pgf.required_resources}, more than this machine has "
                f"({self._executor.total}). Lower the request (tune.with_resources / resources_per_trial) "
                "or make more available with tunesmith.init(num_cpus=..., num_gpus=..., resources=...)."
                + (f" {hint}" if hint else "")
            )
        trial = Trial(
            self._trainable_name,
            config=suggestion.config,
            trial_id=trial_id,
            experiment_tag=suggestion.experiment_tag,
            evaluated_params=suggestion.evaluated_params,
            placement_group_factory=pgf,
            stopping_criterion=self._stopping_criterion,
            experiment_path=self._storage.experiment_local_path,
            checkpoint_config=self._checkpoint_config,
            max_failures=self._max_failures,
            log_to_file=self._log_to_file,
            trial_name_creator=self._trial_name_creator,
            trial_dirname_creator=self._trial_dirname_creator,
            experiment_dir_name=self._storage.experiment_dir_name,
        )
        trial.storage_path = self._storage.remote_experiment_path
        self._next_index += 1
        if self._trial_dirname_creator is not None:
            owner = self._dirnames.get(trial.trial_dirname)
            if owner is not None:
                raise ValueError(
                    f"trial_dirname_creator gave trials {owner} and {trial_id} the same directory name "
                    f"{trial.trial_dirname!r}; their files would mix. Make the name unique per trial, "
                    "for example by including trial.trial_id."
                )
            self._dirnames[trial.trial_dirname] = trial_id
        if self._initial_checkpoint is not None:
            trial.restore_checkpoint = Checkpoint(self._initial_checkpoint)
        return trial

    def add_trial(self, trial: Trial) -> None:
        self._trials.append(trial)
        self._by_status[trial.status][trial] = None
        self._resources_changed = True
        self._scheduler.on_trial_add(self, trial)

    def _num_live(self) -> int:
        s = self._by_status
        return len(s[Trial.PENDING]) + len(s[Trial.RUNNING]) + len(s[Trial.PAUSED])

    def _maybe_add_trials(self) -> None:
        if self._search_finished or self._stop_all:
            return
        while len(self._by_status[Trial.PENDING]) < self._max_pending:
            if self._max_concurrent and self._num_live() >= self._max_concurrent:
                return
            suggestion = self._search_alg.next_trial(f"{self._id_prefix}_{self._next_index:05d}")
            if suggestion is None:
                if self._search_alg.is_finished():
                    self._search_finished = True
                return
            self.add_trial(self.make_trial(suggestion))

    # -- starting trials ---------------------------------------------------------------------------
    def _maybe_start_trials(self) -> None:
        if self._stop_all or not (self._resources_changed or self._executor.contended()):
            return
        self._resources_changed = False
        while True:
            if self._max_concurrent and len(self._by_status[Trial.RUNNING]) >= self._max_concurrent:
                return
            trial = self._scheduler.choose_trial_to_run(self)
            if trial is None or trial in self._stopping:
                return
            if not self._executor.has_resources(trial.placement_group_factory.required_resources):
                return
            self._start_trial(trial)

    def _start_trial(self, trial: Trial) -> None:
        restoring = trial.restore_checkpoint
        metrics = self._checkpoint_metrics.get(restoring.path, {}) if restoring else {}
        info = TrialInfo(
            trial_id=trial.trial_id,
            trial_name=str(trial),
            trial_dir=trial.local_path,
            experiment_name=self._storage.experiment_dir_name,
            experiment_path=self._storage.experiment_local_path,
            experiment_tag=trial.experiment_tag,
            resources=trial.placement_group_factory,
            experiment_id=self._experiment_id,
        )
        spec = P.TrialSpec(
            trainable_key=self._trainable_key,
            config=trial.config,
            trial_info=info,
            checkpoint_path=restoring.path if restoring else None,
            start_iteration=int(metrics.get(TRAINING_ITERATION, 0) or 0),
            start_time_total=float(metrics.get("time_total_s", 0.0) or 0.0),
            checkpoint_index=self._next_ckpt_index.get(trial, 0),
            checkpoint_frequency=self._checkpoint_frequency if self._is_class else 0,
            chdir=self._chdir,
            log_to_file=trial.log_to_file,
            reuse=bool(self._reuse_actors),
            result_buffer_length=self._result_buffer_length,
            storage=self._storage.remote_target(),
        )
        was_paused = trial.status == Trial.PAUSED or restoring is not None
        self._rollback(trial)
        if not trial.dir_created and trial.local_path is not None:
            # The trial's directory and params.json exist before any callback hears of the trial.
            _write_params_files(trial.local_path, trial.config)
            trial.dir_created = True
        self._set_status(trial, Trial.RUNNING)
        self._executor.start_trial(trial, spec, self._trainable_key, self._payload)
        self._callbacks.on_trial_start(iteration=self._iteration, trials=self._trials, trial=trial)
        if was_paused and restoring is not None:
            self._callbacks.on_trial_restore(iteration=self._iteration, trials=self._trials, trial=trial)

    # -- the loop -------------------------------------------------------------------------------------
    def is_finished(self) -> bool:
        if self._stop_all:
            # Running trials stop at their next result; one that does not report in time is
            # terminated by force when the loop ends (TUNE_FORCE_TRIAL_CLEANUP_S).
            return not self._by_status[Trial.RUNNING] or time.time() > self._stop_deadline
        return self._search_finished and self._num_live() == 0

    def run(self) -> None:
        """Runs the experiment; Ctrl+C (or SIGUSR1) stops it gracefully and keeps its state."""
        self._callbacks.setup(
            stop=self._stopper, num_samples=self._search_alg.total_samples,
            total_num_samples=self._search_alg.total_samples,
        )
        self._storage.make_dirs()
        interrupted = abort = False
        callback_error: CallbackError | None = None
        restore_signals = self._install_stop_signals()
        try:
            while not self.is_finished():
                self.step()
        except KeyboardInterrupt:
            if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "1":
                abort = True
                raise
            interrupted = True
            print("Stopping the experiment (Ctrl+C); its state is being saved...", flush=True)
        except CallbackError as exc:
            # The run ends now; running trials resume from their checkpoints on restore.
            callback_error = exc
            interrupted = True
            self._cleanup_grace_s = 0.0
        finally:
            restore_signals()
            if abort:
                self._executor.shutdown()
            else:
                self._shutdown_keeping_state(interrupted)
        self.interrupted = interrupted and callback_error is None
        if callback_error is not None:
            raise callback_error
        if self._raise_error is not None:
            raise self._raise_error

    def _shutdown_keeping_state(self, interrupted: bool) -> None:
        """Shuts down; a second Ctrl+C only hurries it, so the saved state stays consistent."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            self._shutdown(interrupted)
            return

        def hurry(signum, frame):
            self._cleanup_grace_s = 0.0
            self._stop_deadline = 0.0
            print("Stopping now; the experiment's state is being saved...", flush=True)

        previous = signal.signal(signal.SIGINT, hurry)
        try:
            self._shutdown(interrupted)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _install_stop_signals(self):
        """Ctrl+C and SIGUSR1 stop the run between events, never in the middle of one.

        A result is logged, its checkpoint registered and the scheduler asked as one
        unit; the signal only sets a flag that the loop checks. A second Ctrl+C while
        the first waits (a driver stuck in user code) interrupts at once.
        Returns what restores the previous handlers.
        """
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        self._stop_requested = False

        def request_stop(signum, frame):
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = {}
        wanted = [signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else []
        if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "1":
            wanted.append(signal.SIGINT)
        for sig in wanted:
            previous[sig] = signal.signal(sig, request_stop)

        def restore():
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _check_stop_request(self) -> None:
        if self._stop_requested:
            self._stop_requested = False
            raise KeyboardInterrupt

    def step(self) -> None:
        self._check_stop_request()
        self._iteration += 1
        it = self._iteration
        self._callbacks.on_step_begin(iteration=it, trials=self._trials)
        self._maybe_add_trials()
        self._maybe_start_trials()
        if not self._by_status[Trial.RUNNING] and not self._stopping and not self._stop_all and self._num_live():
            self._unstick()
        now = time.time()
        timeout = 0.5
        if self._time_budget_deadline is not None:
            timeout = max(0.0, min(timeout, self._time_budget_deadline - now))
        events = self._executor.wait(timeout)
        busy_start = time.time()
        for trial, msg in events:
            self._process_event(trial, msg)
        if not events and not self._by_status[Trial.RUNNING] and not self._stopping:
            time.sleep(0.01)  # nothing runs: wait for the searcher or a timer without spinning
        self._callbacks.on_step_end(iteration=it, trials=self._trials)
        now = time.time()
        self._warn_if_slow_or_stuck(now, now - busy_start)
        if self._reporter is not None and self._reporter.should_report(self._trials, done=False):
            self._reporter.report(self._trials, False, *self._sys_info())
        if self._time_budget_deadline is not None and now >= self._time_budget_deadline and not self._stop_all:
            self._stop_experiment("time budget")
        if self._stopper is not None and not self._stop_all and self._stopper.stop_all():
            self._stop_experiment("stopper")
        if _write_error() is not None and self._raise_error is None:
            self._on_write_error(_write_error())
        self._maybe_save_state(now)

    def _warn_if_slow_or_stuck(self, now: float, busy_s: float) -> None:
        if busy_s > self._warn_threshold_s and now - self._last_slow_warning > 60:
            self._last_slow_warning = now
            logger.warning(
                "Processing trial events and callbacks took %.2f s in one turn of the event loop "
                "(TUNE_WARN_THRESHOLD_S=%s). A slow callback or logger delays every trial.",
                busy_s, self._warn_threshold_s,
            )
        if self._by_status[Trial.RUNNING] or not self._num_live():
            self._last_running = now
        elif now - self._last_running > self._warn_idle_s and now - self._last_idle_warning > self._warn_idle_s:
            self._last_idle_warning = now
            waiting = self.first_trial_with_status(Trial.PENDING) or self.first_trial_with_status(Trial.PAUSED)
            sharing = getattr(self._executor, "sharing_summary", None)
            logger.warning(
                "No trial has been running for %.0f s. The next trial (%s) asks for %s; this experiment's "
                "own trials leave %s of its resources unused. %s Lower the request or make more resources "
                "available.",
                now - self._last_running, waiting,
                waiting.placement_group_factory.required_resources if waiting else {},
                getattr(self._executor, "available", {}), sharing() if sharing is not None else "",
            )

    def _unstick(self) -> None:
        """Starts a waiting trial when nothing runs and the scheduler chose none.

        With nothing running, no result can arrive to change a scheduler's mind,
        so the first pending (then paused) trial is started rather than waiting forever.
        """
        trial = self.first_trial_with_status(Trial.PENDING) or self.first_trial_with_status(Trial.PAUSED)
        if trial is not None and self._executor.has_resources(trial.placement_group_factory.required_resources):
            self._start_trial(trial)

    def _sys_info(self) -> tuple:
        return (
            self._scheduler.debug_string(),
            f"Resources requested: {self._used_resources_str()}",
            f"Result logdir: {self._storage.experiment_path}",
        )

    def _used_resources_str(self) -> str:
        total = getattr(self._executor, "total", {})
        avail = getattr(self._executor, "available", {})
        parts = []
        for key in ("CPU", "GPU"):
            if total.get(key):
                parts.append(f"{total[key] - avail.get(key, 0):g}/{total[key]:g} {key}s")
        return ", ".join(parts)

    def _stop_experiment(self, reason: str) -> None:
        logger.info("Stopping the experiment: %s.", reason)
        self._stop_all = True
        self._stop_deadline = time.time() + self._cleanup_grace_s
        self._search_alg.set_finished()
        self._search_finished = True
        for trial in list(self._trials):
            if not trial.is_finished():
                if trial.status != Trial.RUNNING:
                    self._scheduler.on_trial_remove(self, trial)
                self.stop_trial(trial)

    # -- events ------------------------------------------------------------------------------------------
    def _process_event(self, trial: Trial, msg: tuple) -> None:
        kind = msg[0]
        if kind == P.RESULT:
            if trial in self._stopping:
                return  # the worker will see the stop or pause next
            self._on_result(trial, msg[1], msg[2])
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

    def _fill_result(self, trial: Trial, result: dict, checkpoint_dir_name: str | None) -> dict:
        result.setdefault(DONE, False)
        result["trial_id"] = trial.trial_id
        result.setdefault(EXPERIMENT_ID, self._experiment_id)
        result["experiment_tag"] = trial.experiment_tag
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_str = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
        result["date"] = self._date_str
        if "timestamp" not in result:
            result["timestamp"] = now
        result["hostname"] = self._hostname
        result["node_ip"] = self._node_ip
        result["pid"] = self._executor.worker_pid(trial)
        result["config"] = trial.config
        result[CHECKPOINT_DIR_NAME] = checkpoint_dir_name
        return result

    def _required_metrics(self) -> list[tuple[str, str]]:
        """``(metric, who asks for it)`` for TuneConfig's metric, the scheduler's and the searcher's."""
        required: list[tuple[str, str]] = []
        if self._metric:
            required.append((self._metric, "TuneConfig(metric=...)"))
        for owner in (self._scheduler, self._search_alg):
            metrics = getattr(owner, "metric", None)
            for m in [metrics] if isinstance(metrics, str) else list(metrics or ()):
                if m and m != DEFAULT_METRIC and all(m != r for r, _ in required):
                    required.append((m, type(getattr(owner, "searcher", owner)).__name__))
        return required

    def _validate_metric(self, trial: Trial, result: dict) -> None:
        if self._required is None:
            self._required = self._required_metrics()
        missing = [f"{m!r} ({who})" for m, who in self._required if m not in result]
        if trial.num_results == 0:
            missing += [f"{k!r} (stop criteria)" for k in self._stopping_criterion if k not in result]
        if missing and not result.get(DONE):
            reported = sorted(k for k in result if k not in ("config",))
            raise ValueError(
                f"Trial {trial} reported a result without the metric(s) {', '.join(missing)} that the "
                f"experiment uses. The result had: {reported}. Report the metric, fix its name, or set "
                "TUNE_DISABLE_STRICT_METRIC_CHECKING=1."
            )

    def _on_result(self, trial: Trial, result: dict, checkpoint_dir_name: str | None) -> None:
        result = self._fill_result(trial, result, checkpoint_dir_name)
        if self._strict_metrics:
            try:
                self._validate_metric(trial, result)
            except ValueError as exc:
                self._raise_error = exc
                self._stop_experiment("bad metric")
                return
        trial.update_last_result(result)
        if checkpoint_dir_name:
            self._register_checkpoint(trial, checkpoint_dir_name, result)

        decision = TrialScheduler.CONTINUE
        if result.get(DONE) or self._should_stop(trial, result):
            decision = TrialScheduler.STOP
        else:
            decision = self._scheduler.on_trial_result(self, trial, result)
            if decision == TrialScheduler.STOP:
                self._scheduler_stopped.add(trial)
                trial.scheduler_stop_iteration = result.get(TRAINING_ITERATION)
        self._search_alg.on_trial_result(trial.trial_id, result)
        self._callbacks.on_trial_result(iteration=self._iteration, trials=self._trials, trial=trial, result=result)

        if trial in self._stopping or trial.status != Trial.RUNNING:
            return  # the scheduler already paused or stopped it
        if trial._checkpoint_requested:  # Trial.checkpoint_now()
            trial._checkpoint_requested = False
            self.save_trial(trial)
        if decision == TrialScheduler.CONTINUE:
            self._executor.send(trial, P.CONTINUE)
        elif decision == TrialScheduler.PAUSE:
            self.pause_trial(trial, should_checkpoint=True)
        elif decision == TrialScheduler.STOP:
            self.stop_trial(trial)
        # NOOP: the scheduler acts on the trial itself later.

    def _should_stop(self, trial: Trial, result: dict) -> bool:
        for key, value in trial.stopping_criterion.items():
            if key in result and result[key] >= value:
                return True
        return self._stopper is not None and bool(self._stopper(trial.trial_id, result))

    def _register_checkpoint(self, trial: Trial, name: str, metrics: dict) -> None:
        path = self._storage.checkpoint_path(trial.trial_dirname, name, trial.local_path)
        checkpoint = Checkpoint(path, self._storage.storage_filesystem)
        self._checkpoint_metrics[path] = metrics
        self._note_checkpoint_index(trial, name)
        trial.checkpoint_rows[path] = trial.num_results
        for removed in trial.checkpoint_manager.register(checkpoint, metrics):
            trial.checkpoint_rows.pop(removed.path, None)
            self._pending_deletes.append(removed)
        self._callbacks.on_trial_save(iteration=self._iteration, trials=self._trials, trial=trial)
        self._callbacks.on_checkpoint(
            iteration=self._iteration, trials=self._trials, trial=trial, checkpoint=checkpoint
        )

    def _on_done(self, trial: Trial, return_value: Any, checkpoint_dir_name: str | None) -> None:
        if checkpoint_dir_name:
            self._register_checkpoint(trial, checkpoint_dir_name, trial.last_result)
        if return_value is not None:
            trial.return_value = return_value
        how = self._stopping.pop(trial, None)
        self._executor.release_trial(trial, reuse=self._reuse_actors is not False)
        self._resources_changed = True
        if how in ("pause", "pause_keep"):
            self._set_paused(trial, how)
            return
        self._set_status(trial, Trial.TERMINATED)
        self._after_trial_end(trial)

    def _after_trial_end(self, trial: Trial) -> None:
        result = trial.last_result
        if trial in self._scheduler_stopped:
            self._scheduler_stopped.discard(trial)
        else:
            self._scheduler.on_trial_complete(self, trial, result)
        self._search_alg.on_trial_complete(trial.trial_id, result=result)
        self._callbacks.on_trial_complete(iteration=self._iteration, trials=self._trials, trial=trial)

    def _on_paused(self, trial: Trial, checkpoint_dir_name: str | None) -> None:
        if checkpoint_dir_name:
            self._register_checkpoint(trial, checkpoint_dir_name, trial.last_result)
        how = self._stopping.pop(trial, "pause")
        self._executor.release_trial(trial, reuse=self._reuse_actors is not False)
        self._resources_changed = True
        if how == "stop":
            self._set_status(trial, Trial.TERMINATED)
            self._after_trial_end(trial)
            return
        self._set_paused(trial, how)

    def _set_paused(self, trial: Trial, how: str) -> None:
        if how == "pause":
            if trial.checkpoint is None and not self._warned_no_checkpoint:
                self._warned_no_checkpoint = True
                logger.warning(
                    "%s paused trial %s, which has no checkpoint: it will start over from scratch when it "
                    "resumes, and so will every trial paused without a checkpoint. To keep progress across "
                    "pauses, pass checkpoint=Checkpoint.from_directory(...) to train.report() (and load it "
                    "with train.get_checkpoint()), or implement save_checkpoint/load_checkpoint in a "
                    "Trainable class.",
                    type(self._scheduler).__name__, trial,
                )
            trial.restore_checkpoint = trial.checkpoint
        self._set_status(trial, Trial.PAUSED)

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

    def _on_startup_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        """The worker died before it ran any of the trial's code: try again, not counted as a failure."""
        self._stopping.pop(trial, None)
        self._executor.release_trial(trial, reuse=False)
        self._resources_changed = True
        tries = self._startup_retries.get(trial, 0) + 1
        self._startup_retries[trial] = tries
        if tries > 3:
            self._fail_trial(trial, tb + "The worker process died while starting, 3 times in a row.\n", exc_bytes)
            return
        logger.warning("The worker process for trial %s died while starting; starting it again.", trial)
        self._set_status(trial, Trial.PENDING)

    def _on_restore_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        """A trial could not load its checkpoint: retry it (TUNE_RESTORE_RETRY_NUM), then fall back.

        The fallback is the trial's previous checkpoint, and from scratch when none is left.
        """
        self._stopping.pop(trial, None)
        self._executor.release_trial(trial, reuse=self._reuse_actors is not False)
        self._resources_changed = True
        retries = self._restore_retries.get(trial, 0)
        if retries < self._restore_retry_num:
            self._restore_retries[trial] = retries + 1
            logger.warning("Trial %s could not restore its checkpoint; retrying (%d of %d).",
                           trial, retries + 1, self._restore_retry_num)
        else:
            self._restore_retries.pop(trial, None)
            bad = trial.restore_checkpoint
            if bad is not None:
                trial.checkpoint_manager.drop(bad.path)
            fallback = trial.checkpoint
            logger.warning(
                "Trial %s could not restore its checkpoint %s; it %s.\n%s",
                trial, bad.path if bad else None,
                f"falls back to the previous checkpoint {fallback.path}" if fallback else "starts from scratch",
                tb,
            )
            trial.restore_checkpoint = fallback
        self._set_status(trial, Trial.PENDING)

    def _on_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        self._stopping.pop(trial, None)
        self._executor.release_trial(trial, reuse=self._reuse_actors is not False)
        self._resources_changed = True
        self._fail_trial(trial, tb, exc_bytes)

    def _fail_trial(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        trial.num_failures += 1
        self._write_error(trial, tb, exc_bytes)
        retry = not self._stop_all and (
            self._max_failures < 0 or trial.num_failures <= self._max_failures
        )
        if retry:
            trial.restore_checkpoint = trial.checkpoint
            self._set_status(trial, Trial.PENDING)
            self._callbacks.on_trial_recover(iteration=self._iteration, trials=self._trials, trial=trial)
            return
        self._set_status(trial, Trial.ERROR)
        self._scheduler_stopped.discard(trial)
        self._scheduler.on_trial_error(self, trial)
        self._search_alg.on_trial_complete(trial.trial_id, result=trial.last_result or None, error=True)
        self._callbacks.on_trial_error(iteration=self._iteration, trials=self._trials, trial=trial)
        if self._fail_fast:
            if self._fail_fast == "raise":
                self._raise_error = _load_exception(exc_bytes, tb)
            self._stop_experiment("fail_fast")

    def _write_error(self, trial: Trial, tb: str, exc_bytes: bytes | None) -> None:
        os.makedirs(trial.local_path, exist_ok=True)
        error_file = os.path.join(trial.local_path, EXPR_ERROR_FILE)
        with open(error_file, "a") as f:
            f.write(f"Failure # {trial.num_failures} (occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})\n")
            f.write(tb if tb.endswith("\n") else tb + "\n")
        trial.error_file = error_file
        lines = [line for line in tb.strip().splitlines() if line.strip()]
        trial.error_msg = lines[-1] if lines else tb
        if exc_bytes is None:
            import cloudpickle

            from tunesmith.tune.error import TuneError

            exc_bytes = cloudpickle.dumps(TuneError(tb))
        pickle_file = os.path.join(trial.local_path, EXPR_ERROR_PICKLE_FILE)
        write_bytes_atomic(pickle_file, exc_bytes)
        trial.pickled_error_file = pickle_file

    # -- experiment state ---------------------------------------------------------------------------------
    def _maybe_save_state(self, now: float) -> None:
        period = self._state_period
        if period < 0:
            # "auto": spend at most 5% of the time writing state, and write at least every 10 s.
            period = min(10.0, max(1.0, 20 * self._last_state_duration))
        if now - self._last_state_write >= period or self._storage.sync_due():
            self.save_experiment_state()

    def save_experiment_state(self) -> None:
        """Commits the experiment to storage: result rows first, then the state that names checkpoints.

        The order is the durability contract: every result row the state implies
        is written before the state, and checkpoints that the new state no longer
        names are deleted only after it is written.
        """
        from tunesmith.tune.logger._util import ResultWriteError, commit_results

        start = time.time()
        path = self._storage.experiment_local_path
        os.makedirs(path, exist_ok=True)
        try:
            commit_results()
        except ResultWriteError as exc:
            self._on_write_error(exc)
        state = {
            "version": 2,
            "experiment_name": self._storage.experiment_dir_name,
            "timestamp": start,
            "trainable_name": self._trainable_name,
            "metric": self._metric,
            "mode": self._mode,
            "id_prefix": self._id_prefix,
            "search_finished": self._search_finished,
            "trials": [t.get_json_state() for t in self._trials],
            **self._state_extra,
        }
        try:
            self._search_alg.save_to_dir(path, session_str="tunesmith")
        except Exception:
            logger.warning("Could not save the search algorithm's state:\n%s", traceback.format_exc())
        self._save_scheduler_state(os.path.join(path, SCHEDULER_STATE_FILE))
        callback_state = self._callbacks.get_state()
        if any(v is not None for v in callback_state.values()):
            import cloudpickle

            write_bytes_atomic(os.path.join(path, _CALLBACK_STATE_FILE), cloudpickle.dumps(callback_state))
        write_json_atomic(os.path.join(path, EXPERIMENT_STATE_FILE), state)
        synced_s = self._sync_and_delete_dropped()
        end = time.time()
        self._last_state_write = end
        # Uploads keep their own period (SyncConfig.sync_period), outside the 5% rule of state writes.
        self._last_state_duration = end - start - synced_s

    def _sync_and_delete_dropped(self, force: bool = False) -> float:
        """Local storage: deletes dropped checkpoints now. Remote: every ``sync_period``, uploads
        what changed, then deletes the checkpoints the uploaded state no longer names.

        Returns the seconds spent uploading.
        """
        storage = self._storage
        if not storage.is_remote:
            self._delete_dropped_checkpoints()
            return 0.0
        if not (force or storage.sync_due()):
            return 0.0
        from tunesmith._internal.storage import StorageError

        start = time.time()
        try:
            storage.sync()
        except StorageError as exc:
            if force:
                raise
            self._on_write_error(exc)
            return time.time() - start
        self._delete_dropped_checkpoints()
        return time.time() - start

    def _save_scheduler_state(self, path: str) -> None:
        try:
            self._scheduler.save(path)
        except Exception:
            logger.warning("Could not save the scheduler's state:\n%s", traceback.format_exc())

    def _delete_dropped_checkpoints(self) -> None:
        if not self._pending_deletes:
            return
        # A checkpoint some trial is about to start from (PBT's exploit) stays until it has.
        wanted = {t.restore_checkpoint.path for t in self._trials
                  if t.restore_checkpoint is not None and not t.is_finished()}
        keep = [c for c in self._pending_deletes if c.path in wanted]
        delete = [c for c in self._pending_deletes if c.path not in wanted]
        self._pending_deletes = keep
        for checkpoint in delete:
            self._checkpoint_metrics.pop(checkpoint.path, None)
        delete_checkpoints(delete)

    def _on_write_error(self, exc: BaseException) -> None:
        """A result row could not be written: the run ends with the error instead of losing rows."""
        if self._raise_error is None:
            self._raise_error = exc
        if not self._stop_all:
            self._stop_experiment("a result could not be written")

    # -- shutdown -------------------------------------------------------------------------------------------
    def _shutdown(self, interrupted: bool) -> None:
        if interrupted:
            self._stop_all = True
            self._search_finished = True
        # After Ctrl+C, trials get a moment to pause at a result; then they are stopped and
        # resume from their latest checkpoint on restore.
        grace = min(self._cleanup_grace_s, 2.0) if interrupted else self._cleanup_grace_s
        grace_deadline = min(time.time() + grace, self._stop_deadline)
        if self._by_status[Trial.RUNNING]:
            for trial in list(self._by_status[Trial.RUNNING]):
                if interrupted:
                    # Interrupted trials keep their status-to-resume: they are restarted on restore.
                    self._stopping[trial] = "pause"
                    self._executor.send(trial, P.PAUSE)
                else:
                    self.stop_trial(trial)
            try:
                while self._by_status[Trial.RUNNING] and time.time() < min(grace_deadline, self._stop_deadline):
                    for trial, msg in self._executor.wait(0.1):
                        if msg[0] == P.RESULT:
                            continue
                        self._process_event(trial, msg)
            except (KeyboardInterrupt, CallbackError) as exc:
                logger.warning("Stopping the remaining trials at once: %s", exc)
            for trial in list(self._by_status[Trial.RUNNING]):
                self._executor.kill_trial_worker(trial)
                self._stopping.pop(trial, None)
                self._executor.release_trial(trial, reuse=False)
                if interrupted:
                    trial.restore_checkpoint = trial.checkpoint
                    self._set_status(trial, Trial.PAUSED)
                else:
                    self._set_status(trial, Trial.TERMINATED)
                    self._after_trial_end(trial)
        self._executor.shutdown()
        try:
            self.save_experiment_state()
        finally:
            if self._reporter is not None:
                self._reporter.report(self._trials, True, *self._sys_info())
            self._callbacks.on_experiment_end(trials=self._trials)
            if self._storage.is_remote:
                from tunesmith._internal.storage import StorageError

                if not isinstance(self._raise_error, StorageError):
                    self._sync_and_delete_dropped(force=True)  # everything, at the end


def _load_exception(exc_bytes: bytes | None, tb: str) -> BaseException:
    from tunesmith.tune.error import TuneError

    if exc_bytes:
        import cloudpickle

        try:
            exc = cloudpickle.loads(exc_bytes)
            if isinstance(exc, BaseException):
                return exc
        except Exception:
            pass
    return TuneError(tb)
