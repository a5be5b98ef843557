"""The simulated backend: scripted trials on a virtual clock, driven by the real controller.

No process is started. A trial is a :class:`ScriptedTrainable`: a function of
its config (and a training state that checkpoints carry) that gives each
iteration's metrics, and how many virtual seconds each iteration takes. The
backend's clock, which the controller's timers read too, jumps from one event
to the next, so hours of virtual training pass in seconds and schedulers,
searchers and the controller's bookkeeping can be tested and measured at
scales no machine here has.

Trials behave as function trainables do on a real worker: a result waits for
the controller's answer; ``PAUSE`` or ``STOP`` arriving while an iteration
runs takes effect at its next result; with ``checkpoint_every`` a result
carries a checkpoint, and a paused or restored trial continues from its
latest one (or, with ``class_like``, checkpoints on pause and on ``SAVE`` as a
``Trainable`` class does). Checkpoints are kept in memory under the path the
controller expects; nothing is written but what the controller itself writes.
"""
from __future__ import annotations

import copy
import os
import heapq
import inspect
import itertools
from typing import Any, Callable

from tunesmith._internal import protocol as P
from tunesmith._internal.backend.base import ExecutorBackend, TrialEvent, WorkerLocation

_EPS = 1e-9
_LOCATION = WorkerLocation("simulated", "127.0.0.1", None)


class ScriptedTrainable:
    """A trial's script for the simulated backend.

    Args:
        step_fn: ``step_fn(config, iteration)`` or ``step_fn(config, state, iteration)`` returns
            the metrics of iteration ``iteration`` (1-based); ``state`` is a dict the trial
            keeps across iterations and that checkpoints carry.
        iterations: The trial ends on its own after this many iterations (or a callable of the config).
        seconds: Virtual seconds one iteration takes: a number or ``seconds(config, iteration)``.
        checkpoint_every: Every this many iterations a result carries a checkpoint (0: never).
        class_like: Also checkpoint on pause, on ``STOP(save=True)`` and on ``SAVE``, as a
            ``Trainable`` class does (run the controller with ``is_class_trainable=True``).
        fail_at: ``fail_at(config, iteration)`` true makes that iteration raise instead of reporting.

    Example:
        >>> script = ScriptedTrainable(lambda config, i: {"loss": config["lr"] / i}, iterations=3)
        >>> script.metrics({"lr": 1.0}, {}, 2)
        {'loss': 0.5}
    """

    def __init__(
        self,
        step_fn: Callable[..., dict],
        iterations: int | Callable[[dict], int] = 100,
        seconds: float | Callable[[dict, int], float] = 1.0,
        checkpoint_every: int = 0,
        class_like: bool = False,
        fail_at: Callable[[dict, int], bool] | None = None,
    ):
        self.step_fn = step_fn
        try:
            n_params = len(inspect.signature(step_fn).parameters)
        except (TypeError, ValueError):
            n_params = 3
        self._with_state = n_params >= 3
        self.iterations = iterations
        self.seconds = seconds
        self.checkpoint_every = checkpoint_every
        self.class_like = class_like
        self.fail_at = fail_at
        self.__name__ = getattr(step_fn, "__name__", "scripted")

    def metrics(self, config: dict, state: dict, iteration: int) -> dict:
        """The metrics of one iteration (``state`` may be changed by the script)."""
        if self._with_state:
            return dict(self.step_fn(config, state, iteration))
        return dict(self.step_fn(config, iteration))

    def num_iterations(self, config: dict) -> int:
        its = self.iterations
        return int(its(config)) if callable(its) else int(its)

    def duration(self, config: dict, iteration: int) -> float:
        s = self.seconds
        return float(s(config, iteration)) if callable(s) else float(s)


class SimCheckpoint:
    """What a simulated checkpoint holds: whose it is, its iteration and totals, the training state."""

    __slots__ = ("trial_id", "iteration", "time_total", "state")

    def __init__(self, trial_id: str, iteration: int, time_total: float, state: dict):
        self.trial_id = trial_id
        self.iteration = iteration
        self.time_total = time_total
        self.state = copy.deepcopy(state) if state else {}


class _Run:
    """A trial while it holds a (virtual) worker."""

    __slots__ = ("trial", "tid", "config", "iteration", "last_iteration", "time_total", "since_restore",
                 "time_since_restore", "state", "ckpt_index", "trial_dir", "awaiting", "control", "gen")

    def __init__(self, trial, spec: P.TrialSpec, script: ScriptedTrainable):
        self.trial = trial
        self.tid = trial.trial_id
        self.config = spec.config
        self.iteration = spec.start_iteration
        self.last_iteration = script.num_iterations(spec.config)
        self.time_total = spec.start_time_total
        self.since_restore = 0
        self.time_since_restore = 0.0
        self.state: dict = {}
        self.ckpt_index = spec.checkpoint_index
        self.trial_dir = spec.trial_info.trial_dir
        self.awaiting = False  # a result was sent and waits for the controller's answer
        self.control: Any = None  # PAUSE or STOP that arrived during an iteration
        self.gen = 0  # bumped to invalidate what is scheduled for this run


class SimulatedBackend(ExecutorBackend):
    """Runs :class:`ScriptedTrainable` trials on a virtual clock; see the module docstring.

    Args:
        trainable: The script every trial runs (the controller's trainable when None
            and it is a ``ScriptedTrainable``; see :meth:`start_trial`).
        total_resources: What there is to hand out, e.g. ``{"CPU": 1000}``.
        start_time: The virtual clock's start.
        startup_s: Virtual seconds from a trial's start to its first iteration's start.
        record: Keep :attr:`log` and :attr:`answers` (what happened, for tests).

    Attributes:
        log: ``(event, trial_id, detail)`` in order: ``start`` (iteration), ``restore``
            ((checkpoint's trial id, iteration)), ``resources`` (what a trial restarts with,
            when it changed), ``result`` (iteration), ``pause``, ``stop``, ``save``, ``error``,
            ``kill`` (iteration).
        answers: Per trial id, ``(iteration, answer)`` for each result: the controller's
            ``"CONTINUE"``, ``"PAUSE"`` or ``"STOP"``.
        results: How many results were delivered.

    Example:
        >>> backend = SimulatedBackend(ScriptedTrainable(lambda c, i: {"m": i}), total_resources={"CPU": 2})
        >>> backend.time(), backend.has_resources({"CPU": 3})
        (0.0, False)
    """

    def __init__(
        self,
        trainable: ScriptedTrainable | None = None,
        total_resources: dict[str, float] | None = None,
        start_time: float = 0.0,
        startup_s: float = 0.0,
        record: bool = True,
    ):
        self.script = trainable
        self.total = {k: float(v) for k, v in (total_resources or {"CPU": 8.0}).items()}
        self.total.setdefault("CPU", 0.0)
        self.total.setdefault("GPU", 0.0)
        self.available = dict(self.total)
        self._held: dict[Any, dict[str, float]] = {}
        self._runs: dict[Any, _Run] = {}
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._now = float(start_time)
        self._startup_s = startup_s
        self.checkpoints: dict[str, SimCheckpoint] = {}
        self.record = record
        self.log: list[tuple[str, str, Any]] = []
        self.answers: dict[str, list[tuple[int, str]]] = {}
        self.results = 0
        # Per trial id, the iteration it has trained to (kept after the trial ends).
        self.iterations: dict[str, int] = {}
        self._resources_of: dict[str, dict[str, float]] = {}
        # When set, wait() never moves the clock past it (SimulatedExperiment.advance).
        self.horizon = float("inf")

    # -- clock and resources ----------------------------------------------------------
    def time(self) -> float:
        return self._now

    def can_ever_fit(self, resources: dict[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + _EPS >= v for k, v in resources.items() if v > 0)

    def has_resources(self, resources: dict[str, float]) -> bool:
        avail = self.available
        for key, value in resources.items():
            if value > 0 and avail.get(key, 0.0) + _EPS < value:
                return False
        return True

    def worker_location(self, trial: Any) -> WorkerLocation:
        return _LOCATION

    # -- trials ------------------------------------------------------------------------
    def start_trial(self, trial: Any, spec: P.TrialSpec, trainable_key: str, payload: bytes) -> None:
        script = self.script
        if script is None:
            raise TypeError(
                "SimulatedBackend has no script for its trials: pass SimulatedBackend(trainable="
                "ScriptedTrainable(...))."
            )
        resources = dict(trial.placement_group_factory.required_resources)
        for key, value in resources.items():
            self.available[key] = self.available.get(key, 0.0) - value
        self._held[trial] = resources
        run = _Run(trial, spec, script)
        if spec.checkpoint_path:
            ckpt = self.checkpoints.get(spec.checkpoint_path)
            if ckpt is None:
                self._push(self._now, run, (P.ERROR, f"Traceback (most recent call last):\nFileNotFoundError: "
                                                      f"no simulated checkpoint at {spec.checkpoint_path}\n",
                                            None, P.RESTORE_PHASE))
                self._runs[trial] = run
                return
            run.iteration, run.time_total = ckpt.iteration, ckpt.time_total
            run.state = copy.deepcopy(ckpt.state)
            if self.record:
                self.log.append(("restore", run.tid, (ckpt.trial_id, ckpt.iteration)))
        if self.record:
            before = self._resources_of.get(run.tid)
            if before is not None and before != resources:
                self.log.append(("resources", run.tid, resources))
            self._resources_of[run.tid] = resources
            self.log.append(("start", run.tid, run.iteration))
        self.iterations[run.tid] = run.iteration
        self._runs[trial] = run
        self._schedule_next(run, self._startup_s)

    def _push(self, when: float, run: _Run, message: tuple | None) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), run, run.gen, message))

    def _schedule_next(self, run: _Run, delay: float = 0.0) -> None:
        if run.iteration >= run.last_iteration:
            self._push(self._now + delay, run, (P.DONE, None, None))
            return
        self._push(self._now + delay + self.script.duration(run.config, run.iteration + 1), run, None)

    def _checkpoint(self, run: _Run) -> str:
        name = f"checkpoint_{run.ckpt_index:06d}"
        run.ckpt_index += 1
        self.checkpoints[os.path.join(run.trial_dir, name)] = SimCheckpoint(run.tid, run.iteration, run.time_total, run.state)
        return name

    def _control(self, run: _Run, message: Any) -> None:
        """Applies PAUSE / STOP to a trial that waits for its answer: it ends now."""
        run.awaiting = False
        run.gen += 1
        name = None
        if message == P.PAUSE:
            if self.script.class_like:
                name = self._checkpoint(run)
            self._push(self._now, run, (P.PAUSED, name))
            what = "pause"
        else:
            if self.script.class_like and message[1]:
                name = self._checkpoint(run)
            self._push(self._now, run, (P.DONE, None, name))
            what = "stop"
        if self.record:
            self.log.append((what, run.tid, run.iteration))

    def _answer(self, run: _Run, answer: str) -> None:
        if self.record:
            self.answers.setdefault(run.tid, []).append((run.iteration, answer))

    def send(self, trial: Any, message: Any) -> None:
        run = self._runs.get(trial)
        if run is None:
            return
        if message == P.CONTINUE:
            if run.awaiting:
                run.awaiting = False
                self._answer(run, "CONTINUE")
                self._schedule_next(run)
            return
        if message == P.SAVE:
            return  # only answered through call()
        if message == P.PAUSE or (isinstance(message, tuple) and message[0] == P.STOP):
            if run.awaiting:
                self._answer(run, "PAUSE" if message == P.PAUSE else "STOP")
                self._control(run, message)
            elif run.control is None or message != P.PAUSE:
                run.control = message  # takes effect at the next result
            return
        raise ValueError(f"SimulatedBackend cannot send {message!r}: not a driver-to-worker message.")

    def call(self, trial: Any, message: Any) -> tuple:
        run = self._runs[trial]
        if message != P.SAVE:
            raise ValueError(f"SimulatedBackend.call supports P.SAVE only, got {message!r}.")
        name = self._checkpoint(run) if self.script.class_like else None
        if self.record:
            self.log.append(("save", run.tid, run.iteration))
        return (P.SAVED, name)

    def release_trial(self, trial: Any, reuse: bool = True) -> None:
        run = self._runs.pop(trial, None)
        if run is not None:
            run.gen += 1
        for key, value in self._held.pop(trial, {}).items():
            self.available[key] = self.available.get(key, 0.0) + value

    def kill_trial_worker(self, trial: Any) -> None:
        run = self._runs.get(trial)
        if run is not None:
            run.gen += 1
            if self.record:
                self.log.append(("kill", run.tid, run.iteration))

    def _deliver(self, run: _Run, message: tuple | None) -> tuple:
        if message is not None:
            return message
        script = self.script
        it = run.iteration + 1
        if script.fail_at is not None and script.fail_at(run.config, it):
            run.gen += 1
            if self.record:
                self.log.append(("error", run.tid, it))
            return (P.ERROR, f"Traceback (most recent call last):\nRuntimeError: scripted failure of "
                             f"{run.tid} at iteration {it}\n", None)
        metrics = script.metrics(run.config, run.state, it)
        dt = script.duration(run.config, it)
        run.iteration = it
        self.iterations[run.tid] = it
        run.since_restore += 1
        run.time_total += dt
        run.time_since_restore += dt
        metrics.setdefault("training_iteration", it)
        metrics["time_this_iter_s"] = dt
        metrics["time_total_s"] = run.time_total
        metrics["time_since_restore"] = run.time_since_restore
        metrics["iterations_since_restore"] = run.since_restore
        metrics["timestamp"] = int(self._now)
        every = script.checkpoint_every
        name = self._checkpoint(run) if every and it % every == 0 else None
        run.awaiting = True
        self.results += 1
        if self.record:
            self.log.append(("result", run.tid, it))
        control, run.control = run.control, None
        if control is not None:
            # The trial was asked to pause or stop during this iteration: its report returns
            # that answer at once (the controller drops the result of a trial it is stopping).
            self._answer(run, "PAUSE" if control == P.PAUSE else "STOP")
            self._control(run, control)
        return (P.RESULT, metrics, name)

    def next_event_time(self) -> float:
        """When the next event is due (infinity when none is scheduled)."""
        heap = self._heap
        while heap and heap[0][2].gen != heap[0][3]:
            heapq.heappop(heap)
        return heap[0][0] if heap else float("inf")

    def advance_to(self, when: float) -> None:
        """Moves the clock forward to ``when`` (never back)."""
        self._now = max(self._now, when)

    def wait(self, timeout: float | None) -> list[TrialEvent]:
        heap = self._heap
        while heap and heap[0][2].gen != heap[0][3]:
            heapq.heappop(heap)
        deadline = float("inf") if timeout is None else self._now + max(0.0, timeout)
        deadline = min(deadline, max(self._now, self.horizon))
        if not heap or heap[0][0] > deadline:
            if deadline != float("inf"):
                self._now = max(self._now, deadline)
            return []
        when = heap[0][0]
        if when > self._now:
            self._now = when
        events = []
        while heap and heap[0][0] <= when:
            _, _, run, gen, message = heapq.heappop(heap)
            if run.gen != gen:
                continue
            events.append(TrialEvent(run.trial, self._deliver(run, message)))
        return events

    def fork(self, trials: dict, keep_running: bool = True) -> "SimulatedBackend":
        """A backend at this one's time with its checkpoints, for the new ``Trial`` objects ``trials``
        (old trial -> new); with ``keep_running`` running trials go on exactly where they stand."""
        other = SimulatedBackend(self.script, total_resources=self.total, start_time=self._now,
                                 startup_s=self._startup_s, record=self.record)
        other.checkpoints = dict(self.checkpoints)
        other.iterations = dict(self.iterations)
        other._resources_of = dict(self._resources_of)
        seq = next(self._seq)
        other._seq = itertools.count(seq + 1)
        if not keep_running:
            return other
        runs: dict[int, _Run] = {}
        for old_trial, run in self._runs.items():
            new_trial = trials[old_trial]
            copied = copy.copy(run)
            copied.trial = new_trial
            copied.state = copy.deepcopy(run.state)
            copied.gen = 0
            runs[id(run)] = copied
            other._runs[new_trial] = copied
            other._held[new_trial] = dict(self._held.get(old_trial, {}))
        other.available = dict(self.available)
        for when, order, run, gen, message in self._heap:
            if run.gen == gen and id(run) in runs:
                other._heap.append((when, order, runs[id(run)], 0, message))
        heapq.heapify(other._heap)
        return other

    def shutdown(self) -> None:
        for run in self._runs.values():
            run.gen += 1
        self._runs.clear()
        self._heap.clear()
        self.available = dict(self.total)
        self._held.clear()


def _remove_after_writes(path: str, scope) -> None:
    """Removes a temporary experiment directory once the I/O thread of its write scope wrote what it had.

    The trials' params files are written in that thread: removing the directory under it would
    make a write fail, and a failed write fails the experiment that made it.
    """
    import shutil

    scope.writer.submit(None, shutil.rmtree, path, True)  # after the writes queued before it
    scope.writer.stop()


class _NoMoreTrials:
    """The search algorithm of a :class:`SimulatedExperiment`: trials are added by hand.

    ``searcher`` is what schedulers find behind it (as behind a ``SearchGenerator``), e.g. a
    searcher that BOHB tells of pauses.
    """

    total_samples = 0

    def __init__(self, searcher=None):
        self.searcher = searcher

    def next_trial(self, trial_id: str):
        return None

    def is_finished(self) -> bool:
        return True

    def set_finished(self) -> None:
        pass

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass

    def save_to_dir(self, path: str, session_str: str = "") -> None:
        pass


class SimulatedExperiment:
    """Drives a scheduler through the real ``TuneController`` on a :class:`SimulatedBackend`.

    Trials are added by hand and train with ``step_fn`` (one virtual second per
    iteration), so the scheduler's decisions, pauses, checkpoints and restores are
    the controller's own. Between calls of :meth:`advance` the experiment can be
    inspected and forked as after an experiment restore.

    Args:
        scheduler: The scheduler under test.
        step_fn: ``step_fn(config, state, iteration)`` gives an iteration's metrics (see
            :class:`ScriptedTrainable`).
        max_concurrent: How many trials run at once.
        max_iterations: Iterations after which a trial ends by itself.
        experiment_path: The experiment directory (a new temporary one when None).
        total_resources: What the backend has (64 CPUs when None).
        checkpoint_every_result: Every result carries a checkpoint.
        search_alg: Returned by :attr:`search_alg` to schedulers that ask for it.
        class_like: Trials also checkpoint on pause and on ``save_trial``, as ``Trainable``
            classes do (the controller runs them as class trainables).
        seconds: Virtual seconds one iteration takes: a number or ``seconds(config, iteration)``
            (trials of different speeds report in a chosen order).
        fail_at: ``fail_at(config, iteration)`` true makes that iteration fail (see
            :class:`ScriptedTrainable`).

    Attributes:
        events: ``(event, trial_id, detail)`` in order (:attr:`SimulatedBackend.log`).
        decisions: Per trial id, ``(iteration, "CONTINUE" | "PAUSE" | "STOP")`` for each
            result: the answer the controller gave the trial.

    Example:
        >>> from tunesmith.tune.schedulers import ASHAScheduler
        >>> sim = SimulatedExperiment(ASHAScheduler(metric="m", mode="max", max_t=4),
        ...                           lambda cfg, st, it: {"m": cfg["x"]})
        >>> _ = [sim.add_trial({"x": x}) for x in (1, 2)]
        >>> sim.run()
        >>> [t.status for t in sim.get_trials()]
        ['TERMINATED', 'TERMINATED']
    """

    def __init__(
        self,
        scheduler,
        step_fn: Callable[..., dict],
        max_concurrent: int = 1_000_000,
        max_iterations: int = 1_000_000,
        experiment_path: str | None = None,
        total_resources: dict[str, float] | None = None,
        checkpoint_every_result: bool = False,
        search_alg=None,
        class_like: bool = True,
        seconds: float | Callable[[dict, int], float] = 1.0,
        fail_at: Callable[[dict, int], bool] | None = None,
        _backend: SimulatedBackend | None = None,
    ):
        import tempfile

        from tunesmith.tune.logger._util import WriteScope

        self._write_scope = WriteScope()  # the controller's, once it is built
        self.scheduler = scheduler
        self.step_fn = step_fn
        self.max_concurrent = max_concurrent
        self.max_iterations = max_iterations
        if experiment_path is None:
            import weakref

            experiment_path = tempfile.mkdtemp(prefix="tunesmith_sim_")
            weakref.finalize(self, _remove_after_writes, experiment_path, self._write_scope)
        self.experiment_path = experiment_path
        self.total_resources = dict(total_resources or {"CPU": 64.0, "GPU": 0.0})
        self.checkpoint_every_result = checkpoint_every_result
        self.class_like = class_like
        self._search_alg = search_alg
        self.seconds = seconds
        self.fail_at = fail_at
        self.script = ScriptedTrainable(step_fn, iterations=max_iterations, seconds=seconds,
                                        checkpoint_every=1 if checkpoint_every_result else 0, class_like=class_like,
                                        fail_at=fail_at)
        self.backend = _backend or SimulatedBackend(self.script, total_resources=self.total_resources)
        self._trials: list = []
        self._controller = None
        self._stopping: dict = {}  # carried into the controller when it is built (fork)
        self._status_order: dict[str, list] = {}

    # -- what schedulers see before the controller exists ---------------------------------------------
    @property
    def controller(self):
        """The ``TuneController``; built at the first :meth:`advance` with the trials as they are then."""
        if self._controller is None:
            from tunesmith._internal.storage import StorageContext
            from tunesmith.tune.execution.controller_config import ControllerConfig
            from tunesmith.tune.execution.tune_controller import TuneController

            path = self.experiment_path.rstrip("/")
            storage = StorageContext(os.path.dirname(path), os.path.basename(path))
            self._controller = TuneController(ControllerConfig(
                trainable=self.script, trainable_name="sim", trainable_payload=b"",
                search_alg=_NoMoreTrials(self._search_alg),
                scheduler=self.scheduler, storage=storage, executor=self.backend,
                max_concurrent_trials=self.max_concurrent if self.max_concurrent < 1_000_000 else None,
                is_class_trainable=self.class_like, trials=list(self._trials), scheduler_restored=True,
            ))
            self._controller.write_scope = self._write_scope
            table = self._controller._table
            for trial, how in self._stopping.items():
                table.stopping[trial] = how
            for status, order in self._status_order.items():
                # Trials wait in the order they reached their status, as in the experiment forked.
                bucket = table.by_status[status]
                ordered = {t: None for t in order if t in bucket}
                ordered.update(bucket)
                table.by_status[status] = ordered
            self._controller._run.search_finished = True
        return self._controller

    @property
    def search_alg(self):
        return self._search_alg

    @property
    def events(self) -> list[tuple[str, str, Any]]:
        return self.backend.log

    @property
    def decisions(self) -> dict[str, list[tuple[int, str]]]:
        return self.backend.answers

    @property
    def iterations_run(self) -> int:
        return self.backend.results

    def get_trials(self) -> list:
        return list(self._trials)

    def get_live_trials(self) -> list:
        return [t for t in self._trials if not t.is_finished()]

    def first_trial_with_status(self, status: str):
        if self._controller is not None:
            return self._controller.first_trial_with_status(status)
        for t in self._trials:
            if t.status == status and t not in self._stopping:
                return t
        return None

    def __getattr__(self, name: str):
        if name in ("pause_trial", "stop_trial", "resume_trial", "save_trial", "update_trial_resources"):
            return getattr(self.controller, name)
        raise AttributeError(name)

    def iteration_of(self, trial) -> int:
        """The iteration the trial has trained to (where a restore left it, before it ran again)."""
        return self.backend.iterations.get(trial.trial_id, 0)

    # -- driving -----------------------------------------------------------------------------------
    def add_trial(self, config: dict, trial_id: str | None = None):
        from tunesmith.tune.experiment.trial import Trial

        trial_id = trial_id or f"{len(self._trials):05d}"
        trial = Trial("sim", dict(config), trial_id=trial_id, experiment_tag=str(len(self._trials)),
                      experiment_path=self.experiment_path)
        self._trials.append(trial)
        self.backend.iterations.setdefault(trial_id, 0)
        if self._controller is None:
            self.scheduler.on_trial_add(self, trial)
        else:
            self._controller.add_trial(trial)
        return trial

    def _finished(self) -> bool:
        table = self.controller._table
        return table.num_live() == 0 and not table.stopping

    def advance(self, rounds: int) -> bool:
        """Runs ``rounds`` virtual seconds (each running trial trains an iteration in ``seconds``).

        Returns True once no trial is running or waiting to run.
        """
        from tunesmith.tune.logger._util import run_scope

        controller, backend = self.controller, self.backend
        target = backend.time() + rounds
        backend.horizon = target
        try:
            with run_scope(controller.write_scope):
                while not self._finished():
                    if backend.next_event_time() > target and not controller._table.resources_changed:
                        backend.advance_to(target)
                        return False
                    controller.step()
            return True
        finally:
            backend.horizon = float("inf")

    def run(self, max_rounds: int = 100_000) -> None:
        """Runs until no trial is running or waiting to run."""
        if not self.advance(max_rounds):
            raise AssertionError("simulation did not finish")

    def fork(self, scheduler, as_restored: bool = False) -> "SimulatedExperiment":
        """An experiment over fresh ``Trial`` objects with this one's ids, configs, statuses,
        results and checkpoints, driving ``scheduler``, which is not told of them: give them to
        it with ``scheduler.set_state(state, {t.trial_id: t for t in fork.get_trials()})``.

        Training goes on exactly where this experiment stands (running trials keep running,
        pauses asked for complete). With ``as_restored``, the trials come back as
        ``Tuner.restore`` brings them: unfinished ones PENDING, to start from the checkpoint a
        paused trial was to resume from, or else their latest (from scratch without one).
        """
        from tunesmith.tune.experiment.trial import Trial

        stopping = self._controller._table.stopping if self._controller is not None else self._stopping
        by_old: dict = {}
        trials = []
        for old in self._trials:
            trial = Trial.from_json_state(old.get_json_state(), experiment_path=self.experiment_path)
            trial.config = copy.deepcopy(old.config)
            trial.evaluated_params = copy.deepcopy(old.evaluated_params)
            trial.last_result = copy.deepcopy(old.last_result)
            trial.placement_group_factory = old.placement_group_factory
            trial.dir_created = old.dir_created
            if as_restored and not trial.is_finished():
                waiting = old.status in (Trial.PAUSED, Trial.PENDING) and old not in stopping
                trial.restore_checkpoint = (trial.restore_checkpoint if waiting else None) or trial.checkpoint
                trial.status = Trial.PENDING
            by_old[old] = trial
            trials.append(trial)
        backend = self.backend.fork(by_old, keep_running=not as_restored)
        if as_restored:
            for trial in trials:
                if not trial.is_finished():
                    ckpt = backend.checkpoints.get(trial.restore_checkpoint.path) if trial.restore_checkpoint else None
                    backend.iterations[trial.trial_id] = ckpt.iteration if ckpt else 0
        other = SimulatedExperiment(
            scheduler, self.step_fn, max_concurrent=self.max_concurrent, max_iterations=self.max_iterations,
            experiment_path=self.experiment_path, total_resources=self.total_resources,
            checkpoint_every_result=self.checkpoint_every_result, search_alg=self._search_alg,
            class_like=self.class_like, seconds=self.seconds, fail_at=self.fail_at, _backend=backend,
        )
        other._trials = trials
        if not as_restored:
            other._stopping = {by_old[t]: how for t, how in stopping.items()}
            if self._controller is not None:
                other._status_order = {
                    status: [by_old[t] for t in bucket] for status, bucket in self._controller._table.by_status.items()
                }
        return other
