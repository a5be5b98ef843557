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
            ((checkpoint's trial id, iteration)), ``result`` (iteration), ``pause``,
            ``stop``, ``save``, ``error``, ``kill`` (iteration).
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
            self.log.append(("start", run.tid, run.iteration))
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

    def wait(self, timeout: float | None) -> list[TrialEvent]:
        heap = self._heap
        while heap and heap[0][2].gen != heap[0][3]:
            heapq.heappop(heap)
        deadline = float("inf") if timeout is None else self._now + max(0.0, timeout)
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

    def shutdown(self) -> None:
        for run in self._runs.values():
            run.gen += 1
        self._runs.clear()
        self._heap.clear()
        self.available = dict(self.total)
        self._held.clear()
