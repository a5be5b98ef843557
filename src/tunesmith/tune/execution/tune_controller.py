"""The driver's event loop: creates trials, starts them, and waits for their events or its next timer.

The controller is assembled from parts that each do one thing and can be read
and tested alone:

- :class:`~tunesmith.tune.execution.trial_table.TrialTable`: the trials by status.
- :class:`~tunesmith.tune.execution.trial_lifecycle.TrialLifecycle`: the trial
  state machine (start, results, pause, stop, failures).
- :class:`~tunesmith.tune.execution.checkpoint_book.CheckpointBook`: checkpoint
  bookkeeping and their safe deletion.
- :mod:`~tunesmith.tune.execution.error_writer`: ``error.txt`` and ``error.pkl``.
- :class:`~tunesmith.tune.execution.state_snapshot.StateSnapshotter`: the
  experiment state on storage, in the durability contract's order.

The controller knows nothing of processes: an
:class:`~tunesmith._internal.backend.base.ExecutorBackend` runs trials and hands
back protocol messages, and its clock is the one the loop's timers read.
Searchers, schedulers, stoppers and callbacks are asked at the points described
in DESIGN.md.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
import uuid

from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.callback import CallbackError, CallbackList
from tunesmith.tune.execution.checkpoint_book import CheckpointBook
from tunesmith.tune.execution.controller_config import ControllerConfig, LoopSettings
from tunesmith.tune.execution.placement_groups import to_pg_factory
from tunesmith._internal.storage import slot_file
from tunesmith.tune.execution.state_snapshot import CALLBACK_STATE_FILE, StateSaveError, StateSnapshotter
from tunesmith.tune.execution.trial_lifecycle import RunStatus, TrialLifecycle
from tunesmith.tune.execution.trial_table import TrialTable
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.logger._util import WriteScope, run_scope
from tunesmith.tune.logger._util import write_error as _write_error
from tunesmith.tune.result import EXPERIMENT_ID, EXPERIMENT_STATE_VERSION

logger = logging.getLogger(__name__)

# The loop wakes at least this often (on the backend's clock) to notice Ctrl+C, let the
# reporter print, ask stoppers whether to stop everything and run callbacks' on_step_end.
HOUSEKEEPING_S = 0.5
# A searcher that has no trial now (and no event will come, since nothing runs) is asked again after this.
SEARCHER_RETRY_S = 0.01
# Other experiments free resources without an event of ours: ask again at least this often.
CONTENDED_RETRY_S = 0.1


# While experiments run, the driver's garbage collector looks at its young objects every
# _GC_YOUNG_THRESHOLD container allocations instead of Python's 700: the controller keeps every
# trial's results and statistics alive, so with thousands of trials the default made a
# full collection (all of them) frequent, about a tenth of the driver's time.
_GC_YOUNG_THRESHOLD = 20_000
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, ...] = ()


@contextlib.contextmanager
def _fewer_collections():
    """Raises the young generation's collection threshold for as long as any experiment runs."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            if 0 < _gc_saved[0] < _GC_YOUNG_THRESHOLD:
                gc.set_threshold(_GC_YOUNG_THRESHOLD, *_gc_saved[1:])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and gc.get_threshold()[0] == _GC_YOUNG_THRESHOLD != _gc_saved[0]:
                gc.set_threshold(*_gc_saved)  # unless someone set their own meanwhile


class TuneController:
    """Runs an experiment's trials to completion.

    It is also the object schedulers, searchers and callbacks receive as "the
    controller" (``get_trials``, ``pause_trial``, ``stop_trial``, ``save_trial``, ...).

    Args:
        config: What the experiment is made of (see :class:`ControllerConfig`).

    Example:
        >>> import tempfile
        >>> from tunesmith._internal.backend.simulated import ScriptedTrainable, SimulatedBackend
        >>> from tunesmith._internal.storage import StorageContext
        >>> from tunesmith.tune.schedulers import FIFOScheduler
        >>> from tunesmith.tune.search.basic_variant import BasicVariantGenerator
        >>> search = BasicVariantGenerator()
        >>> search.add_configurations({"x": 1}, num_samples=2)
        >>> trainable = ScriptedTrainable(lambda config, i: {"loss": 1 / i}, iterations=3)
        >>> controller = TuneController(ControllerConfig(
        ...     trainable=trainable, trainable_name="f", trainable_payload=b"", search_alg=search,
        ...     scheduler=FIFOScheduler(), storage=StorageContext(tempfile.mkdtemp(), "exp"),
        ...     executor=SimulatedBackend(trainable, total_resources={"CPU": 2})))
        >>> controller.run()
        >>> [t.last_result["training_iteration"] for t in controller.get_trials()]
        [3, 3]
    """

    def __init__(self, config: ControllerConfig | None = None, **kwargs):
        if config is None:
            config = ControllerConfig(**kwargs)
        elif kwargs:
            raise TypeError("Pass either a ControllerConfig or keyword arguments, not both.")
        from tunesmith.tune.search.basic_variant import BasicVariantGenerator

        self._cfg = config
        self._backend = config.executor
        self._clock = self._backend.time
        self._search_alg = config.search_alg
        self._scheduler = config.scheduler
        self._stopper = config.stopper
        self._storage = config.storage
        self._reporter = config.reporter
        self._callbacks = CallbackList(config.callbacks or [])
        self._step_hooks = (self._callbacks.has("on_step_begin"), self._callbacks.has("on_step_end"))
        self._settings = LoopSettings.from_env(
            cpus=getattr(self._backend, "total", {}).get("CPU", 1),
            basic_variant=isinstance(config.search_alg, BasicVariantGenerator),
        )
        self._max_concurrent = config.max_concurrent_trials or 0
        # The default search and a Searcher (through its ConcurrencyLimiter, or itself, as TuneBOHB counts only
        # running trials) hold max_concurrent_trials back themselves; a SearchAlgorithm of a user's is held here.
        from tunesmith.tune.search.search_generator import SearchGenerator

        self._search_limits = isinstance(config.search_alg, (BasicVariantGenerator, SearchGenerator))
        self._trainable_key = config.trainable_key or f"{config.trainable_name}-{uuid.uuid4().hex[:8]}"

        # This experiment's result writes and its first failed one: run() makes it the
        # thread's, so that experiments in threads of one process keep their errors apart.
        self.write_scope = WriteScope()
        self._table = TrialTable()
        self._checkpoints = CheckpointBook(self._storage)
        self._run = RunStatus()
        self._lifecycle = TrialLifecycle(
            config, self._settings, self._table, self._checkpoints, self._callbacks, self._run,
            facade=self, experiment_id=uuid.uuid4().hex, trainable_key=self._trainable_key, clock=self._clock,
        )
        self._snapshot = StateSnapshotter(
            self._storage, self._search_alg, self._scheduler, self._callbacks, self._checkpoints,
            describe=self._describe, trials=lambda: self._table.trials,
            on_write_error=self._lifecycle.on_write_error, period=self._settings.state_period,
            stopper=self._stopper,
        )
        self._id_prefix = uuid.uuid4().hex[:5]
        self._next_index = 0
        self._searcher_waiting = False
        self.interrupted = False  # set when Ctrl+C ended the run
        self._by_signal = False  # Ctrl+C (or SIGTERM...) ended the loop, not a failure
        # The signal that ended it (SIGTERM, SIGHUP), or 0: the process ends by it once the state is saved.
        self.terminated = 0
        self._stop_requested = False
        self._ending_signals: list[int] = []  # SIGTERM, SIGHUP where nothing else handles them
        now = self._clock()
        self._last_running = now
        self._last_slow_warning = self._last_idle_warning = 0.0
        # The budget counts the time the experiment ran, over restores (as Ray's TimeoutStopper); its
        # clock starts with the loop (see _start_time_budget).
        self._time_budget_since = now - config.time_budget_spent_s
        self._time_budget_deadline = None
        self._dirnames: dict[str, str] = {t.trial_dirname: t.trial_id for t in config.trials or []}
        for trial in config.trials or []:
            self._register_restored(trial)

    def restore_callback_state(self) -> None:
        """Gives callbacks back the state they had when the experiment was last saved."""
        storage = self._storage
        path = os.path.join(storage.experiment_local_path, slot_file(CALLBACK_STATE_FILE, storage.state_slot))
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
        return dict(self._backend.total)

    @property
    def _resource_updater(self) -> "_ResourceView":
        """What Ray's controller calls its resource updater (``get_num_cpus()``, ``get_num_gpus()``),
        which resource-allocation functions written for Ray's ResourceChangingScheduler read."""
        return _ResourceView(self)

    @property
    def search_alg(self):
        return self._search_alg

    def get_trials(self) -> list[Trial]:
        return self._table.trials

    def get_live_trials(self) -> list[Trial]:
        return self._table.live()

    def first_trial_with_status(self, status: str) -> Trial | None:
        return self._table.first_with_status(status)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Pauses a trial; with ``should_checkpoint`` it saves first and resumes from that checkpoint."""
        self._lifecycle.pause_trial(trial, should_checkpoint)

    def stop_trial(self, trial: Trial) -> None:
        """Ends a trial: TERMINATED once its worker confirms."""
        self._lifecycle.stop_trial(trial)

    def resume_trial(self, trial: Trial) -> None:
        """Makes a PAUSED trial PENDING so that it is started again."""
        self._lifecycle.resume_trial(trial)

    def save_trial(self, trial: Trial) -> Checkpoint | None:
        """Persists a checkpoint of a trial whose result is being processed now."""
        return self._lifecycle.save_trial(trial)

    def update_trial_resources(self, trial: Trial, placement_group_factory) -> None:
        """Gives a trial new resources; a running trial is paused and resumes with them."""
        self._lifecycle.update_trial_resources(trial, placement_group_factory)

    # -- trial creation ---------------------------------------------------------------------------
    def _register_restored(self, trial: Trial) -> None:
        table = self._table
        table.add(trial)
        index = int(trial.trial_id.rsplit("_", 1)[-1]) if "_" in trial.trial_id else len(table.trials)
        self._next_index = max(self._next_index, index + 1)
        self._id_prefix = trial.trial_id.rsplit("_", 1)[0] if "_" in trial.trial_id else self._id_prefix
        if table.trials[0] is trial and trial.last_result.get(EXPERIMENT_ID):
            self._lifecycle.experiment_id = trial.last_result[EXPERIMENT_ID]  # the id outlives a restore
        self._checkpoints.note_restored(trial)
        if not self._cfg.scheduler_restored and (
            not trial.is_finished() or not type(self._scheduler).__module__.startswith("tunesmith.")
        ):  # a user's scheduler hears of every restored trial, finished ones too, as on Ray
            self._scheduler.on_trial_add(self, trial)

    def make_trial(self, suggestion) -> Trial:
        """Builds the next trial from a searcher's suggestion (checks that its resources can ever fit)."""
        cfg = self._cfg
        trial_id = f"{self._id_prefix}_{self._next_index:05d}"
        pgf = to_pg_factory(cfg.resources_request, suggestion.config)
        if not self._backend.can_ever_fit(pgf.required_resources):
            resource_help = getattr(cfg.trainable, "resource_help", None)
            hint = resource_help(suggestion.config) if callable(resource_help) else ""
            backend = self._backend
            raise ValueError(
                f"Trial {trial_id} asks for {pgf.required_resources}, more than {backend.place} has "
                f"({backend.total}). Lower the request ("
                f"{getattr(cfg.trainable, 'requested_by', 'tune.with_resources / resources_per_trial')}) "
                f"or {backend.more_resources_hint}." + (f" {hint}" if hint else "")
            )
        failure_config = cfg.failure_config
        trial = Trial(
            cfg.trainable_name,
            config=suggestion.config,
            trial_id=trial_id,
            experiment_tag=suggestion.experiment_tag,
            evaluated_params=suggestion.evaluated_params,
            placement_group_factory=pgf,
            stopping_criterion=cfg.stopping_criterion or {},
            experiment_path=self._storage.experiment_local_path,
            checkpoint_config=cfg.checkpoint_config,
            max_failures=getattr(failure_config, "max_failures", 0) if failure_config else 0,
            log_to_file=cfg.log_to_file,
            trial_name_creator=cfg.trial_name_creator,
            trial_dirname_creator=cfg.trial_dirname_creator,
            experiment_dir_name=self._storage.experiment_dir_name,
        )
        trial.storage_path = self._storage.remote_experiment_path
        self._next_index += 1
        if cfg.trial_dirname_creator is not None:
            # A name another trial has, or an earlier run's trial directory (one with a params.json):
            # as on Ray, the trial gets the name with a short random suffix, so that no files mix.
            base_name = trial.trial_dirname
            while trial.trial_dirname in self._dirnames or os.path.lexists(
                os.path.join(self._storage.experiment_local_path, trial.trial_dirname, "params.json")
            ):
                trial.trial_dirname = f"{base_name}_{uuid.uuid4().hex[:4]}"
            if trial.trial_dirname != base_name:
                logger.info("Trial %s: the directory name %r is taken; it uses %r.", trial_id, base_name,
                            trial.trial_dirname)
            self._dirnames[trial.trial_dirname] = trial_id
        if cfg.initial_checkpoint is not None:
            trial.restore_checkpoint = Checkpoint(cfg.initial_checkpoint)
        return trial

    def add_trial(self, trial: Trial) -> None:
        self._table.add(trial)
        self._table.resources_changed = True
        self._scheduler.on_trial_add(self, trial)

    def _maybe_add_trials(self) -> None:
        self._searcher_waiting = False
        run, table = self._run, self._table
        if run.search_finished or run.stop_all:
            return
        while table.count(Trial.PENDING) < self._settings.max_pending:
            if self._max_concurrent and not self._search_limits and table.num_live() >= self._max_concurrent:
                return
            suggestion = self._search_alg.next_trial(f"{self._id_prefix}_{self._next_index:05d}")
            if suggestion is None:
                if self._search_alg.is_finished():
                    run.search_finished = True
                else:
                    self._searcher_waiting = True
                return
            self.add_trial(self.make_trial(suggestion))

    # -- starting trials ---------------------------------------------------------------------------
    def _maybe_start_trials(self) -> None:
        table = self._table
        if self._run.stop_all or not (table.resources_changed or self._backend.contended()):
            return
        table.resources_changed = False
        while True:
            if self._max_concurrent and table.count(Trial.RUNNING) >= self._max_concurrent:
                return
            trial = self._scheduler.choose_trial_to_run(self)
            if trial is None or trial in table.stopping:
                return
            if not self._backend.has_resources(trial.placement_group_factory.required_resources):
                return
            self._lifecycle.start_trial(trial)

    def _unstick(self) -> None:
        """Starts a waiting trial when nothing runs and the scheduler chose none.

        With nothing running, no result can arrive to change a scheduler's mind,
        so the first pending (then paused) trial is started rather than waiting forever.
        """
        table = self._table
        trial = table.first_with_status(Trial.PENDING) or table.first_with_status(Trial.PAUSED)
        if trial is not None and self._backend.has_resources(trial.placement_group_factory.required_resources):
            self._lifecycle.start_trial(trial)

    # -- the loop -------------------------------------------------------------------------------------
    def is_finished(self) -> bool:
        run = self._run
        if run.stop_all:
            # Running trials stop at their next result; one that does not report in time is
            # terminated by force when the loop ends (TUNE_FORCE_TRIAL_CLEANUP_S).
            return not self._table.count(Trial.RUNNING) or self._clock() >= run.stop_deadline
        return run.search_finished and self._table.num_live() == 0

    def run(self) -> None:
        """Runs the experiment; Ctrl+C (or SIGUSR1) stops it gracefully and keeps its state."""
        with run_scope(self.write_scope):
            self._run_loop()

    def _run_loop(self) -> None:
        total = self._search_alg.total_samples
        setup = self._cfg.callback_setup or {"stop": self._stopper, "num_samples": total}
        self._callbacks.setup(**setup, total_num_samples=total)
        self._storage.make_dirs()
        self._start_time_budget()
        interrupted = abort = False
        callback_error: CallbackError | None = None
        restore_signals = self._install_stop_signals()
        try:
            with _fewer_collections():
                while not self.is_finished():
                    self.step()
        except KeyboardInterrupt:
            if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "1":
                abort = True
                raise
            interrupted = True
            self._by_signal = True
            if self.terminated:
                import signal

                print(f"Stopping the experiment ({signal.Signals(self.terminated).name}); its state is being "
                      "saved, then the process ends...", flush=True)
            else:
                print("Stopping the experiment (Ctrl+C); its state is being saved...", flush=True)
        except CallbackError as exc:
            # The run ends now; running trials resume from their checkpoints on restore.
            callback_error = exc
            interrupted = True
            self._settings.cleanup_grace_s = 0.0
        except BaseException:
            # The driver itself failed (a scheduler or searcher that raised, an exception from a
            # signal handler, SystemExit): the run ends now, as after a callback error, instead of
            # waiting up to TUNE_FORCE_TRIAL_CLEANUP_S for trials that may never report again.
            # Running trials are paused and resume from their latest checkpoints on restore.
            interrupted = True
            self._settings.cleanup_grace_s = 0.0
            raise
        finally:
            restore_signals()
            if abort:
                self._backend.shutdown()
            else:
                self._shutdown_keeping_state(interrupted)
        self.interrupted = interrupted and callback_error is None
        if callback_error is not None:
            raise callback_error
        if self._run.raise_error is not None:
            raise self._run.raise_error

    def step(self) -> None:
        """One turn: add and start trials, wait for events or the next timer, apply them, housekeeping."""
        self._check_stop_request()
        self._check_time_budget(self._clock())  # a restored run may have none left: no trial is added
        run, table = self._run, self._table
        if not run.iteration and self._stopper is not None and not run.stop_all and self._stopper.stop_all():
            # A restored run whose stopper had ended it (its state came back with it): no trial is
            # added or started.
            self._lifecycle.stop_experiment("stopper")
        run.iteration += 1
        it = run.iteration
        if self._step_hooks[0]:
            self._callbacks.on_step_begin(iteration=it, trials=table.trials)
        self._maybe_add_trials()
        self._maybe_start_trials()
        if not table.count(Trial.RUNNING) and not table.stopping and not run.stop_all and table.num_live():
            self._unstick()
        events = self._backend.wait(self._next_timeout(self._clock()))
        busy_start = time.perf_counter()
        process = self._lifecycle.process_event
        for trial, msg in events:
            process(trial, msg)
        if self._step_hooks[1]:
            self._callbacks.on_step_end(iteration=it, trials=table.trials)
        busy_s = time.perf_counter() - busy_start
        now = self._clock()
        deadlines = self._lifecycle.stop_deadlines
        if deadlines and min(deadlines.values()) <= now:
            # A slow turn (a scheduler's long step, a slow callback) may have let a deadline pass while
            # the trial's confirmation waited to be read: read what arrived before ending anything.
            for trial, msg in self._backend.wait(0):
                process(trial, msg)
        self._lifecycle.end_overdue_stops(now)
        self._warn_if_slow_or_stuck(now, busy_s)
        if self._reporter is not None and self._reporter.should_report(table.trials, done=False):
            self._reporter.report(table.trials, False, *self._sys_info())
        self._check_time_budget(now)
        if self._stopper is not None and not run.stop_all and self._stopper.stop_all():
            self._lifecycle.stop_experiment("stopper")
        if _write_error() is not None and run.raise_error is None:
            self._lifecycle.on_write_error(_write_error())
        self._snapshot.maybe_save()

    def _start_time_budget(self) -> None:
        budget, spent = self._cfg.time_budget_s, self._cfg.time_budget_spent_s
        self._time_budget_since = self._clock() - spent
        self._time_budget_deadline = self._time_budget_since + budget if budget else None

    def _check_time_budget(self, now: float) -> None:
        if self._time_budget_deadline is not None and now >= self._time_budget_deadline and not self._run.stop_all:
            self._lifecycle.stop_experiment("time budget")

    def _next_timeout(self, now: float) -> float:
        """Seconds until the loop's next timer: the housekeeping tick, a deadline or the next snapshot."""
        timeout = min(HOUSEKEEPING_S, self._snapshot.due_in())
        run, table = self._run, self._table
        if run.stop_all:
            # Past the time budget the trials are stopping: the next timer is their deadline.
            timeout = min(timeout, run.stop_deadline - now)
        elif self._time_budget_deadline is not None:
            timeout = min(timeout, self._time_budget_deadline - now)
        if table.stopping:
            timeout = min(timeout, self._lifecycle.next_stop_deadline() - now)
        if not table.count(Trial.RUNNING) and not table.stopping:
            # No trial event can come: only the searcher or other experiments can change things.
            if self._searcher_waiting:
                timeout = min(timeout, SEARCHER_RETRY_S)
            if self._backend.contended():
                timeout = min(timeout, CONTENDED_RETRY_S)
        return max(0.0, timeout)

    def _shutdown_keeping_state(self, interrupted: bool) -> None:
        """Shuts down; a second Ctrl+C only hurries it, so the saved state stays consistent."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            self._shutdown(interrupted)
            return

        def hurry(signum, frame):
            if signum != signal.SIGINT:
                self.terminated = self.terminated or signum
            self._settings.cleanup_grace_s = 0.0
            self._run.stop_deadline = 0.0
            print("Stopping now; the experiment's state is being saved...", flush=True)

        previous = {signal.SIGINT: signal.signal(signal.SIGINT, hurry)}
        for sig in self._ending_signals:
            previous[sig] = signal.signal(sig, hurry)
        try:
            self._shutdown(interrupted)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _install_stop_signals(self):
        """Ctrl+C, SIGUSR1, SIGTERM and SIGHUP stop the run between events, never in the middle of one.

        A result is logged, its checkpoint registered and the scheduler asked as one
        unit; the signal only sets a flag that the loop checks. A second Ctrl+C while
        the first waits (a driver stuck in user code) interrupts at once. SIGTERM and SIGHUP
        are taken only where nothing else handles them; after the state is saved, the process
        ends by the signal as it would have (``terminated``, see ``run_experiment``).
        Returns what restores the previous handlers.
        """
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        self._stop_requested = False

        def request_stop(signum, frame):
            if signum in self._ending_signals:
                self.terminated = self.terminated or signum
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = {}
        wanted = [signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else []
        if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "1":
            wanted.append(signal.SIGINT)
        # SIGTERM (a stopped container, a batch system) and SIGHUP (the terminal closed; the trials'
        # processes are not in its process group) end the run as Ctrl+C does, then the process ends
        # by the signal; taken only where nothing else handles them (nohup ignores SIGHUP).
        self._ending_signals = [
            sig for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL
        ]
        wanted.extend(self._ending_signals)
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

    def _warn_if_slow_or_stuck(self, now: float, busy_s: float) -> None:
        warn_threshold_s = self._settings.warn_threshold_s
        if busy_s > warn_threshold_s and now - self._last_slow_warning > 60:
            self._last_slow_warning = now
            logger.warning(
                "Processing trial events and callbacks took %.2f s in one turn of the event loop "
                "(TUNE_WARN_THRESHOLD_S=%s). A slow callback or logger delays every trial.",
                busy_s, warn_threshold_s,
            )
        table, warn_idle_s = self._table, self._settings.warn_idle_s
        if table.count(Trial.RUNNING) or not table.num_live():
            self._last_running = now
        elif now - self._last_running > warn_idle_s and now - self._last_idle_warning > warn_idle_s:
            self._last_idle_warning = now
            waiting = table.first_with_status(Trial.PENDING) or table.first_with_status(Trial.PAUSED)
            logger.warning(
                "No trial has been running for %.0f s. The next trial (%s) asks for %s; this experiment's "
                "own trials leave %s of its resources unused. %s Lower the request or make more resources "
                "available.",
                now - self._last_running, waiting,
                waiting.placement_group_factory.required_resources if waiting else {},
                getattr(self._backend, "available", {}), self._backend.sharing_summary(),
            )

    def _sys_info(self) -> tuple:
        return (
            self._scheduler.debug_string(),
            f"Resources requested: {self._used_resources_str()}",
            f"Result logdir: {self._storage.experiment_path}",
        )

    def _used_resources_str(self) -> str:
        total = getattr(self._backend, "total", {})
        avail = getattr(self._backend, "available", {})
        parts = []
        for key in ("CPU", "GPU"):
            if total.get(key):
                parts.append(f"{total[key] - avail.get(key, 0):g}/{total[key]:g} {key}s")
        return ", ".join(parts)

    # -- experiment state ---------------------------------------------------------------------------------
    def _describe(self) -> dict:
        cfg = self._cfg
        return {
            "version": EXPERIMENT_STATE_VERSION,
            "experiment_name": self._storage.experiment_dir_name,
            "timestamp": self._clock(),
            "trainable_name": cfg.trainable_name,
            "metric": cfg.metric,
            "mode": cfg.mode,
            "id_prefix": self._id_prefix,
            "search_finished": self._run.search_finished,
            "time_budget_spent_s": self._clock() - self._time_budget_since,
            **(cfg.experiment_state_extra or {}),
        }

    def save_experiment_state(self) -> None:
        """Commits the experiment to storage: result rows first, then the state that names checkpoints.

        The order is the durability contract: every result row the state implies
        is written before the state, and checkpoints that the new state no longer
        names are deleted only after it is written.
        """
        self._snapshot.save()

    # -- shutdown -------------------------------------------------------------------------------------------
    def _shutdown(self, interrupted: bool) -> None:
        run, table, lifecycle = self._run, self._table, self._lifecycle
        if interrupted:
            run.stop_all = run.interrupted = True
            run.search_finished = True
        # After Ctrl+C, trials get a moment to pause at a result; then they are stopped and
        # resume from their latest checkpoint on restore.
        grace = self._settings.cleanup_grace_s
        grace = min(grace, 2.0) if interrupted else grace
        grace_deadline = min(self._clock() + grace, run.stop_deadline)
        running = table.with_status(Trial.RUNNING)
        if running and self._by_signal:
            # Results the trials sent before the signal are taken in first (on Ray, report() waits for
            # the driver, so none is in flight): they reached the driver, and are logged.
            try:
                for _ in range(10):  # what is there now (a read takes at most 64 KiB a worker)
                    events = self._backend.wait(0)
                    for trial, msg in events:
                        lifecycle.process_event(trial, msg)
                    if not events:
                        break
            except (KeyboardInterrupt, CallbackError) as exc:
                logger.warning("Stopping the remaining trials at once: %s", exc)
        if running:
            for trial in list(running):
                if interrupted:
                    # Interrupted trials keep their status-to-resume: they are restarted on restore.
                    lifecycle.request_pause_for_interrupt(trial)
                else:
                    lifecycle.stop_trial(trial)
            try:
                while running and self._clock() < min(grace_deadline, run.stop_deadline):
                    for trial, msg in self._backend.wait(0.1):
                        # A result sent before the stop arrived is dropped, unless a class
                        # trial's pause or final checkpoint will hold its step (process_event).
                        lifecycle.process_event(trial, msg)
            except (KeyboardInterrupt, CallbackError) as exc:
                logger.warning("Stopping the remaining trials at once: %s", exc)
            for trial in list(running):
                lifecycle.end_by_force(trial, interrupted)
        self._backend.shutdown()
        failed_before = self._snapshot.failed
        try:
            self.save_experiment_state()
        except StateSaveError as exc:
            if not failed_before:
                raise
            # The run is ending with that first failure; this one would only hide it.
            logger.error("The final save of the experiment state failed too: %s", exc.__cause__)
        finally:
            if self._reporter is not None and self._reporter.should_report(table.trials, done=True):
                self._reporter.report(table.trials, True, *self._sys_info())
            end_live = getattr(self._reporter, "_end_live", None)
            if end_live is not None:
                end_live()  # the streams go back to the program even when the last report was skipped
            self._callbacks.on_experiment_end(trials=table.trials)
            self._snapshot.final_sync()  # everything, at the end (remote storage)


class _ResourceView:
    """The totals of the resources trials may use, as Ray's ``_ResourceUpdater`` gives them."""

    def __init__(self, controller: TuneController):
        self._controller = controller

    def get_num_cpus(self) -> int:
        return int(self._controller.total_resources.get("CPU", 0))

    def get_num_gpus(self) -> int:
        return int(self._controller.total_resources.get("GPU", 0))
