"""A simulated controller: runs schedulers on synthetic trials without any process.

It implements the controller interface schedulers use (see
:mod:`tunesmith.tune.schedulers.trial_scheduler`) and applies their decisions
to in-memory trials whose "training" is a Python function. Checkpoints are
in-memory snapshots, so pausing, cloning and resuming can be checked exactly.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers.trial_scheduler import TrialScheduler


class SimCheckpoint:
    """An in-memory checkpoint: the trial's iteration and training state at save time."""

    def __init__(self, trial_id: str, iteration: int, state: dict):
        self.trial_id = trial_id
        self.iteration = iteration
        self.state = copy.deepcopy(state)
        self.path = f"sim://{trial_id}/checkpoint_{iteration:06d}"

    def __repr__(self) -> str:
        return f"SimCheckpoint({self.trial_id}, iteration={self.iteration})"


StepFn = Callable[[dict, dict, int], dict]


class SimulatedController:
    """Drives a scheduler over trials whose training step is ``step_fn(config, state, iteration)``.

    ``step_fn`` mutates the trial's training ``state`` (a dict carried by
    checkpoints) and returns the metrics of that iteration. A trial finishes on
    its own after ``max_iterations``.

    Args:
        scheduler: The scheduler under test.
        step_fn: One training iteration.
        max_concurrent: How many trials run at once.
        max_iterations: Iterations after which a trial ends by itself.
        experiment_path: Directory for files schedulers write (policy logs).
        total_resources: What ``total_resources`` reports to resource schedulers.
        async_pause: Complete pauses one round later, as a real driver does: until
            then the trial stays RUNNING and ``first_trial_with_status`` skips it.
        checkpoint_every_result: Record a checkpoint with every result (as a function
            trainable that passes ``checkpoint=`` to each report), so ``trial.checkpoint`` is set.

    Example:
        >>> from tunesmith.tune.schedulers import ASHAScheduler
        >>> sim = SimulatedController(ASHAScheduler(metric="m", mode="max", max_t=4),
        ...                           lambda cfg, st, it: {"m": cfg["x"]})
        >>> _ = [sim.add_trial({"x": x}) for x in (1, 2)]
        >>> sim.run()
        >>> [t.status for t in sim.get_trials()]
        ['TERMINATED', 'TERMINATED']
    """

    def __init__(
        self,
        scheduler: TrialScheduler,
        step_fn: StepFn,
        max_concurrent: int = 1_000_000,
        max_iterations: int = 1_000_000,
        experiment_path: str | None = None,
        total_resources: dict[str, float] | None = None,
        async_pause: bool = False,
        checkpoint_every_result: bool = False,
        search_alg=None,
    ):
        self.scheduler = scheduler
        self.search_alg = search_alg
        self.step_fn = step_fn
        self.max_concurrent = max_concurrent
        self.max_iterations = max_iterations
        self.experiment_path = experiment_path
        self.total_resources = total_resources or {"CPU": 4.0, "GPU": 0.0}
        self._trials: list[Trial] = []
        self._iteration: dict[str, int] = {}
        self._state: dict[str, dict] = {}
        self._processing: Trial | None = None
        self.async_pause = async_pause
        self.checkpoint_every_result = checkpoint_every_result
        self._pausing: dict[Trial, bool] = {}
        # Everything that happened, in order: (event, trial_id, detail).
        self.events: list[tuple[str, str, Any]] = []
        self.decisions: dict[str, list[tuple[int, str]]] = {}
        self.iterations_run = 0

    # -- controller interface -------------------------------------------------
    def get_trials(self) -> list[Trial]:
        return list(self._trials)

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self._trials if not t.is_finished()]

    def first_trial_with_status(self, status: str) -> Trial | None:
        for t in self._trials:
            if t.status == status and t not in self._pausing:
                return t
        return None

    def save_trial(self, trial: Trial) -> SimCheckpoint:
        ckpt = SimCheckpoint(trial.trial_id, self._iteration[trial.trial_id], self._state[trial.trial_id])
        self.events.append(("save", trial.trial_id, ckpt.iteration))
        return ckpt

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        if trial.status == Trial.PENDING:
            trial.set_status(Trial.PAUSED)
            return
        if trial.status != Trial.RUNNING or trial in self._pausing:
            return
        if self.async_pause:
            self._pausing[trial] = should_checkpoint
            return
        self._complete_pause(trial, should_checkpoint)

    def _complete_pause(self, trial: Trial, should_checkpoint: bool) -> None:
        if should_checkpoint:
            trial.restore_checkpoint = self.save_trial(trial)
        trial.set_status(Trial.PAUSED)
        self.events.append(("pause", trial.trial_id, self._iteration[trial.trial_id]))

    def _complete_pauses(self) -> None:
        pausing, self._pausing = self._pausing, {}
        for trial, should_checkpoint in pausing.items():
            if trial.status == Trial.RUNNING:
                self._complete_pause(trial, should_checkpoint)

    def stop_trial(self, trial: Trial) -> None:
        if trial.is_finished():
            return
        self._pausing.pop(trial, None)
        status = trial.status
        trial.set_status(Trial.TERMINATED)
        self.events.append(("stop", trial.trial_id, self._iteration[trial.trial_id]))
        if status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        else:
            self.scheduler.on_trial_remove(self, trial)

    def resume_trial(self, trial: Trial) -> None:
        if trial.status == Trial.PAUSED:
            trial.set_status(Trial.PENDING)
            self.events.append(("resume", trial.trial_id, self._iteration[trial.trial_id]))

    def update_trial_resources(self, trial: Trial, placement_group_factory) -> None:
        trial.placement_group_factory = placement_group_factory
        self.events.append(("resources", trial.trial_id, placement_group_factory.required_resources))

    # -- driving ----------------------------------------------------------------
    def add_trial(self, config: dict, trial_id: str | None = None) -> Trial:
        trial_id = trial_id or f"{len(self._trials):05d}"
        trial = Trial("sim", dict(config), trial_id=trial_id, experiment_tag=str(len(self._trials)),
                      experiment_path=self.experiment_path)
        self._trials.append(trial)
        self._iteration[trial_id] = 0
        self._state[trial_id] = {}
        self.scheduler.on_trial_add(self, trial)
        return trial

    def _start(self, trial: Trial) -> None:
        ckpt = trial.restore_checkpoint
        if isinstance(ckpt, SimCheckpoint):
            self._iteration[trial.trial_id] = ckpt.iteration
            self._state[trial.trial_id] = copy.deepcopy(ckpt.state)
            self.events.append(("restore", trial.trial_id, (ckpt.trial_id, ckpt.iteration)))
        trial.set_status(Trial.RUNNING)
        self.events.append(("start", trial.trial_id, self._iteration[trial.trial_id]))

    def _running(self) -> list[Trial]:
        return [t for t in self._trials if t.status == Trial.RUNNING and t not in self._pausing]

    def _fill(self) -> None:
        while len(self._running()) < self.max_concurrent:
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None:
                return
            if trial.status not in (Trial.PENDING, Trial.PAUSED):
                raise AssertionError(f"scheduler chose {trial} in status {trial.status}")
            self._start(trial)

    def step(self, trial: Trial) -> str:
        """Runs one iteration of a running trial and applies the scheduler's decision."""
        tid = trial.trial_id
        self._iteration[tid] += 1
        it = self._iteration[tid]
        self.iterations_run += 1
        metrics = dict(self.step_fn(trial.config, self._state[tid], it))
        metrics.setdefault("training_iteration", it)
        metrics.setdefault("trial_id", tid)
        self.events.append(("result", tid, it))
        done = it >= self.max_iterations
        if self.checkpoint_every_result:
            ckpt = SimCheckpoint(tid, it, self._state[tid])
            trial.checkpoint_manager.checkpoints = [(ckpt, metrics)]
        self._processing = trial
        decision = self.scheduler.on_trial_result(self, trial, metrics)
        self._processing = None
        trial.update_last_result(metrics)
        self.decisions.setdefault(tid, []).append((it, decision))
        if decision == TrialScheduler.STOP or (done and trial.status == Trial.RUNNING and trial not in self._pausing):
            trial.set_status(Trial.TERMINATED)
            self.events.append(("complete", tid, it))
            self.scheduler.on_trial_complete(self, trial, metrics)
        elif decision == TrialScheduler.PAUSE:
            self.pause_trial(trial, should_checkpoint=True)
        return decision

    def run(self, max_rounds: int = 100_000) -> None:
        """Runs until no trial is running or runnable."""
        if not self.advance(max_rounds):
            raise AssertionError("simulation did not finish")

    def advance(self, rounds: int) -> bool:
        """Runs at most ``rounds`` rounds (each running trial steps once); True once finished."""
        for _ in range(rounds):
            self._complete_pauses()
            self._fill()
            running = self._running()
            if not running:
                if self._pausing:
                    continue
                return True
            for trial in running:
                if trial.status == Trial.RUNNING and trial not in self._pausing:
                    self.step(trial)
        return False

    def fork(self, scheduler: TrialScheduler, as_restored: bool = False) -> "SimulatedController":
        """A controller over fresh ``Trial`` objects with this one's ids, configs, statuses,
        results and checkpoints, driving ``scheduler``, which is not told of them: give them to
        it with ``scheduler.set_state(state, {t.trial_id: t for t in fork.get_trials()})``.

        Training goes on exactly where this controller stands. With ``as_restored``, the
        trials look as after an experiment restore instead: unfinished ones are PENDING and
        start again from the checkpoint a paused trial was to resume from, or else their
        latest checkpoint (from scratch without one).
        """
        other = SimulatedController(
            scheduler,
            self.step_fn,
            max_concurrent=self.max_concurrent,
            max_iterations=self.max_iterations,
            experiment_path=self.experiment_path,
            total_resources=dict(self.total_resources),
            async_pause=self.async_pause,
            checkpoint_every_result=self.checkpoint_every_result,
            search_alg=self.search_alg,
        )
        by_old: dict[Trial, Trial] = {}
        for old in self._trials:
            trial = Trial(
                old.trainable_name,
                copy.deepcopy(old.config),
                trial_id=old.trial_id,
                experiment_tag=old.experiment_tag,
                evaluated_params=copy.deepcopy(old.evaluated_params),
                placement_group_factory=old.placement_group_factory,
                experiment_path=old.experiment_path,
            )
            trial.status = old.status
            trial.last_result = copy.deepcopy(old.last_result)
            trial.checkpoint_manager.checkpoints = list(old.checkpoint_manager.checkpoints)
            trial.restore_checkpoint = old.restore_checkpoint
            tid = trial.trial_id
            other._iteration[tid] = self._iteration[tid]
            other._state[tid] = copy.deepcopy(self._state[tid])
            if as_restored and not trial.is_finished():
                # A trial waiting to start resumes from the checkpoint it was given (a PBT
                # donor's); a running one from its latest.
                waiting = old.status in (Trial.PAUSED, Trial.PENDING) and old not in self._pausing
                trial.restore_checkpoint = (old.restore_checkpoint if waiting else None) or old.checkpoint
                trial.status = Trial.PENDING
                if trial.restore_checkpoint is None:
                    other._iteration[tid] = 0
                    other._state[tid] = {}
            other._trials.append(trial)
            by_old[old] = trial
        if not as_restored:
            other._pausing = {by_old[t]: ckpt for t, ckpt in self._pausing.items()}
        return other

    def iteration_of(self, trial: Trial) -> int:
        return self._iteration[trial.trial_id]
