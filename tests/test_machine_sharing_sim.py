"""Randomised simulation of machine sharing: 2-8 experiments on a simulated machine.

The experiments use the real ledger (its files, lock and rule) with a simulated
clock and a simulated liveness check, and mirror what the local backend does:
check their own bookkeeping, start alone without the lock, otherwise ask the
ledger, and record what their trials hold when a trial starts or ends. Some
experiments are "SIGKILLed": they stop acting and their process counts as dead,
while their entry file stays behind for the others to reclaim.
"""
from __future__ import annotations

import os
import random

import pytest

from tunesmith._internal.machine_ledger import ALIVE_RECHECK_S, WAIT_TTL_S, MachineLedger

_EPS = 1e-9
DT = 0.05  # simulated seconds per step


class Sim:
    def __init__(self, directory: str, rng: random.Random, total: dict[str, float], gpu_ids: list[str]):
        self.directory = directory
        self.rng = rng
        self.total = total
        self.gpu_ids = gpu_ids
        self.now = 0.0
        self.dead: set[str] = set()
        self.live: list[Experiment] = []
        self.started = 0  # trials started, all experiments together

    def clock(self) -> float:
        return self.now

    def alive(self, entry) -> bool:
        return entry.name not in self.dead


class Experiment:
    """What LocalExecutor does with the ledger, on simulated trials."""

    def __init__(self, sim: Sim, name: str, sizes: list[dict[str, float]], durations: tuple[float, float],
                 trials: int | None, period: float):
        self.sim = sim
        self.name = name
        self.total = dict(sim.total)
        self.available = dict(sim.total)
        self.gpu_free = {g: 1.0 for g in sim.gpu_ids}
        self.sizes, self.durations, self.period = sizes, durations, period
        self.left = trials  # None: never runs out of trials
        self.pending = self._next_request()
        self.running: list[tuple[float, dict[str, float], list[tuple[str, float]]]] = []
        self.next_ask = sim.now
        self.ledger = MachineLedger(sim.directory, total=self.total, clock=sim.clock, alive=sim.alive, name=name)

    def _next_request(self) -> dict[str, float] | None:
        if self.left is not None:
            if self.left == 0:
                return None
            self.left -= 1
        return dict(self.sim.rng.choice(self.sizes))

    @property
    def held(self) -> dict[str, float]:
        return {k: self.total[k] - self.available.get(k, 0.0) for k in self.total}

    def fits_locally(self, request: dict[str, float]) -> bool:
        return all(self.available.get(k, 0.0) + _EPS >= v for k, v in request.items() if v > 0)

    def _pick_gpus(self, amount: float) -> list[tuple[str, float]] | None:
        free = dict(self.gpu_free)
        if not self.ledger.alone():
            for g, used in self.ledger.held_by_others()[1].items():
                if g in free:
                    free[g] -= used
        if amount >= 1:
            whole = [g for g, f in free.items() if f >= 1 - _EPS]
            n = int(round(amount))
            return [(g, 1.0) for g in whole[:n]] if len(whole) >= n else None
        for g, f in free.items():
            if f + _EPS >= amount:
                return [(g, amount)]
        return None

    def _place(self) -> dict[str, float] | None:
        picked = self._pick_gpus(self.pending.get("GPU", 0.0))
        if picked is None:
            return None
        after = {g: 1.0 - f for g, f in self.gpu_free.items()}
        for g, amount in picked:
            after[g] += amount
        return after

    def has_resources(self, request: dict[str, float]) -> bool:
        if not self.fits_locally(request):
            self.ledger.stop_waiting()
            return False
        claim = {k: v + request.get(k, 0.0) for k, v in self.held.items()}
        self.ledger.update(claim, {g: 1.0 - f for g, f in self.gpu_free.items()})
        if not self.ledger.alone():
            return self.ledger.try_start(request, self.held, self._place)
        if request.get("GPU") and self._pick_gpus(request["GPU"]) is None:
            self._report()
            return False
        return True

    def ask(self) -> None:
        """One turn of the driver's loop: start trials while they may start."""
        while self.pending is not None and self.has_resources(self.pending):
            request = self.pending
            picked = self._pick_gpus(request["GPU"]) if request.get("GPU") else []
            assert picked is not None, "the ledger let a GPU trial start that cannot be placed"
            for k, v in request.items():
                self.available[k] -= v
            for g, amount in picked:
                self.gpu_free[g] -= amount
            self.running.append((self.sim.now + self.sim.rng.uniform(*self.durations), request, picked))
            self.sim.started += 1
            self._report()
            self.pending = self._next_request()
        self.next_ask = self.sim.now + self.period

    def finish_due(self) -> bool:
        done = [t for t in self.running if t[0] <= self.sim.now + _EPS]
        for trial in done:
            self.running.remove(trial)
            for k, v in trial[1].items():
                self.available[k] += v
            for g, amount in trial[2]:
                self.gpu_free[g] += amount
        if done:
            self._report()
        return bool(done)

    def _report(self) -> None:
        self.ledger.update(self.held, {g: 1.0 - f for g, f in self.gpu_free.items()})

    @property
    def finished(self) -> bool:
        return self.pending is None and not self.running

    def waits_for_a_fitting_request(self) -> bool:
        return self.pending is not None and self.fits_locally(self.pending)


def _check_not_overcommitted(sim: Sim) -> None:
    for key, cap in sim.total.items():
        used = sum(e.held.get(key, 0.0) for e in sim.live)
        assert used <= cap + 1e-6, f"{key}: {used} held of {cap} at t={sim.now:.2f}"
    for g in sim.gpu_ids:
        used = sum(1.0 - e.gpu_free[g] for e in sim.live)
        assert used <= 1.0 + 1e-6, f"GPU {g} {used} held at t={sim.now:.2f}"


def _step(sim: Sim) -> None:
    sim.now += DT
    order = list(sim.live)
    sim.rng.shuffle(order)
    for exp in order:
        if exp.finish_due():
            exp.ask()  # the driver tries to start the next trial in the same turn as a release
    for exp in order:
        if sim.now + _EPS >= exp.next_ask:
            exp.ask()
    for exp in list(sim.live):
        if exp.finished:
            exp.ledger.close()
            sim.live.remove(exp)


def _kill(sim: Sim, exp: Experiment) -> None:
    """SIGKILL: the process and its workers are gone; its entry file stays behind."""
    sim.live.remove(exp)
    sim.dead.add(exp.name)
    for fd in (exp.ledger._fd, exp.ledger._lock_fd):  # the kernel closes a dead process's files
        if fd is not None:
            os.close(fd)
    exp.ledger._fd = exp.ledger._lock_fd = None


CHAOS_SEEDS = list(range(40))


@pytest.mark.parametrize("seed", CHAOS_SEEDS)
def test_some_experiment_always_progresses(tmp_path, seed):
    rng = random.Random(seed)
    gpu_ids = [str(i) for i in range(rng.choice([0, 0, 1, 2]))]
    total = {"CPU": float(rng.choice([2, 3, 4, 8])), "GPU": float(len(gpu_ids)), "memory": 16.0}
    sim = Sim(str(tmp_path / "ledger"), rng, total, gpu_ids)
    menu = [{"CPU": 1.0}, {"CPU": 2.0}, {"CPU": 0.5}, {"CPU": 1.0, "memory": 4.0}]
    if gpu_ids:
        menu += [{"CPU": 1.0, "GPU": 0.5}, {"CPU": 1.0, "GPU": 1.0}]
    max_duration, max_period = 2.0, 0.5
    n = rng.randint(2, 8)
    plans = []
    for i in range(n):
        sizes = [s for s in rng.sample(menu, rng.randint(1, 3)) if all(v <= total[k] for k, v in s.items())]
        plans.append(dict(
            arrive=rng.uniform(0.0, 10.0), name=f"exp-{i:02d}-{seed}", sizes=sizes or [{"CPU": 1.0}],
            trials=rng.randint(1, 25), period=rng.uniform(DT, max_period),
            kill=rng.uniform(0.0, 20.0) if rng.random() < 0.3 else None,
        ))
    # Without a start for this long while an experiment waits, the machine is stuck (the
    # bound argued in machine_ledger: D + R + max(WAIT_TTL_S, A), plus a step either side).
    bound = max_duration + max_period + max(WAIT_TTL_S, ALIVE_RECHECK_S) + 2 * DT
    pending = sorted(plans, key=lambda p: p["arrive"])
    last_progress = 0.0
    killed = []
    while sim.now < 120.0 and (pending or sim.live):
        started_before = sim.started
        while pending and pending[0]["arrive"] <= sim.now:
            p = pending.pop(0)
            exp = Experiment(sim, p["name"], p["sizes"], (0.1, max_duration), p["trials"], p["period"])
            exp.kill_at = p["kill"] if p["kill"] is None else sim.now + p["kill"]
            sim.live.append(exp)
        for exp in list(sim.live):
            if exp.kill_at is not None and sim.now >= exp.kill_at:
                _kill(sim, exp)
                killed.append(exp.name)
        _step(sim)
        _check_not_overcommitted(sim)
        if sim.started > started_before or not any(e.waits_for_a_fitting_request() for e in sim.live):
            last_progress = sim.now
        stuck = {e.name: (e.held, e.pending, e.ledger.waiting) for e in sim.live}
        assert sim.now - last_progress <= bound, f"seed {seed}: no trial started for {bound} s: {stuck}"
    assert not sim.live, f"seed {seed}: experiments still running at t={sim.now}"
    # Entries of killed experiments were reclaimed: a newcomer sees none of them.
    observer = MachineLedger(sim.directory, total=total, clock=sim.clock, alive=sim.alive)
    assert observer.others() == []
    assert [n for n in os.listdir(sim.directory) if n.startswith("exp-")] == [observer.name + ".json"]
    observer.close()


CONVERGENCE_SEEDS = list(range(20))


@pytest.mark.parametrize("seed", CONVERGENCE_SEEDS)
def test_identical_experiments_converge_to_equal_shares(tmp_path, seed):
    rng = random.Random(1000 + seed)
    n = rng.randint(2, 8)
    cpus = float(rng.choice([n, n + 1, 2 * n, 2 * n + 1, 3 * n, 12]))
    total = {"CPU": cpus, "memory": 16.0}
    sim = Sim(str(tmp_path / "ledger"), rng, total, [])
    size = {"CPU": 1.0}
    # Identical long-running experiments arrive at random times ...
    arrivals = sorted((rng.uniform(0.0, 5.0), i) for i in range(n))
    # ... while short ones come and go, and some of those are killed.
    churn = [(rng.uniform(0.0, 15.0), rng.randint(1, 6), rng.random() < 0.5) for _ in range(rng.randint(0, 3))]
    steady: list[Experiment] = []
    settle_at = 25.0
    full_at = settle_at
    while sim.now < settle_at + 15.0:
        while arrivals and arrivals[0][0] <= sim.now:
            _, i = arrivals.pop(0)
            exp = Experiment(sim, f"exp-steady-{i}", [size], (0.5, 3.0), None, rng.uniform(DT, 0.5))
            steady.append(exp)
            sim.live.append(exp)
        for when, trials, kill in list(churn):
            if when <= sim.now:
                churn.remove((when, trials, kill))
                exp = Experiment(sim, f"exp-churn-{when:.3f}", [{"CPU": 1.0}, {"CPU": 2.0}], (0.2, 2.0),
                                 trials, rng.uniform(DT, 0.5))
                exp.kill_at = sim.now + rng.uniform(0.5, 5.0) if kill else None
                sim.live.append(exp)
        for exp in list(sim.live):
            if getattr(exp, "kill_at", None) is not None and sim.now >= exp.kill_at:
                _kill(sim, exp)
        _step(sim)
        _check_not_overcommitted(sim)
        if sim.now >= settle_at:
            assert set(steady) <= set(sim.live)
            held = [e.held["CPU"] for e in steady]
            # Within one trial of equal shares, at every step once settled...
            assert max(held) - min(held) <= size["CPU"] + _EPS, f"seed {seed}: {held} of {cpus} CPUs"
            # ... and a free CPU is taken within one ask period (at most 0.5 s, asked on a step).
            if sum(e.held["CPU"] for e in sim.live) <= cpus - size["CPU"] + _EPS:
                assert sim.now - full_at <= 0.5 + 3 * DT, f"seed {seed}: a CPU idle since {full_at:.2f}"
            else:
                full_at = sim.now
    for exp in sim.live:
        exp.ledger.close()


def test_a_newcomer_gets_the_resources_freed_next_before_experiments_that_freed_them(tmp_path):
    """Two experiments that had waited for a second trial since they started took back the CPU each of
    them freed, before a newcomer that waited meanwhile: it lost a whole trial's length per experiment."""
    now = [0.0]
    a, b, c = (MachineLedger(str(tmp_path), total={"CPU": 2.0}, clock=lambda: now[0], alive=lambda entry: True,
                             name=f"exp-{name}") for name in "abc")
    one = {"CPU": 1.0}
    assert a.try_start(one, {}) and b.try_start(one, {})
    for t in (0.1, 1.0, 2.0, 2.5, 3.0, 4.0):  # each keeps asking for a second trial; c comes at 2.5
        now[0] = t
        assert not a.try_start(one, one) and not b.try_start(one, one)
        if t >= 2.5:
            assert not c.try_start(one, {})
    now[0] = 4.5
    a.update({}, {})  # a's trial ended
    assert not a.try_start(one, {})  # the freed CPU is the newcomer's
    assert c.try_start(one, {})
