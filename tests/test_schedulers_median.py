"""MedianStoppingRule: stops exactly the trials whose best result is below the running median."""
from __future__ import annotations

import random
import statistics

import pytest

from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import MedianStoppingRule, TrialScheduler

C, S, P = TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.PAUSE


class _Ctrl:
    def __init__(self, waiting=None):
        self.waiting = waiting

    def first_trial_with_status(self, status):
        return self.waiting if status == "PENDING" else None


def _msr(**kw):
    kw.setdefault("time_attr", "training_iteration")
    kw.setdefault("metric", "acc")
    kw.setdefault("mode", "max")
    kw.setdefault("grace_period", 1)
    kw.setdefault("min_samples_required", 2)
    return MedianStoppingRule(**kw)


def test_stops_exactly_the_trials_below_the_median_of_running_means():
    msr = _msr()
    ctrl = _Ctrl()
    trials = {name: Trial("t", {}, trial_id=name) for name in "ABCDE"}
    for t in trials.values():
        msr.on_trial_add(ctrl, t)

    def feed(name, acc, iters):
        return [msr.on_trial_result(ctrl, trials[name], {"training_iteration": i, "acc": acc}) for i in iters]

    assert feed("A", 0.8, range(1, 6)) == [C] * 5  # nobody to compare with
    assert feed("B", 0.5, range(1, 6)) == [C] * 5  # only one other trial
    # C: others at t=1 (the grace period: "at least this old") are A (0.8) and B (0.5): median 0.65 > 0.2
    assert feed("C", 0.2, [1]) == [S]
    # D: others at t=1 are A, B and C: median 0.5 <= 0.6; at t=2 only A and B have got there:
    # median 0.65 > 0.6
    assert feed("D", 0.6, [1, 2]) == [C, S]
    # E: others at t=1: 0.8, 0.5, 0.2, 0.6 -> median 0.55 > 0.45
    assert feed("E", 0.45, [1]) == [S]


def test_the_median_is_of_running_means_and_the_trial_is_judged_by_its_best():
    msr = _msr(min_samples_required=1)
    ctrl = _Ctrl()
    a, b, c = (Trial("t", {}, trial_id=x) for x in "abc")
    for t in (a, b, c):
        msr.on_trial_add(ctrl, t)
    # a's values 1.0, 0.0, 0.0 -> running mean at t=3 is 1/3, though its last value is 0.
    for i, v in enumerate([1.0, 0.0, 0.0], 1):
        msr.on_trial_result(ctrl, a, {"training_iteration": i, "acc": v})
    assert msr.on_trial_result(ctrl, b, {"training_iteration": 3, "acc": 0.3}) == S  # 0.3 < 1/3
    # c had one good result early: its best (0.5) counts, not its latest. (At t=2 the only
    # sample is a's running mean 0.5: not better than c.)
    assert msr.on_trial_result(ctrl, c, {"training_iteration": 2, "acc": 0.5}) == C
    assert msr.on_trial_result(ctrl, c, {"training_iteration": 3, "acc": 0.0}) == C


def test_min_mode():
    msr = _msr(metric="loss", mode="min", min_samples_required=1)
    ctrl = _Ctrl()
    a, b = Trial("t", {}, trial_id="a"), Trial("t", {}, trial_id="b")
    msr.on_trial_add(ctrl, a)
    msr.on_trial_add(ctrl, b)
    for i in (1, 2):
        msr.on_trial_result(ctrl, a, {"training_iteration": i, "loss": 1.0})
    assert msr.on_trial_result(ctrl, b, {"training_iteration": 2, "loss": 2.0}) == S


def test_insufficient_samples_yield_to_waiting_trials_and_soft_stop_pauses():
    waiting = Trial("t", {}, trial_id="w")
    msr = _msr(min_samples_required=3, min_time_slice=2)
    ctrl = _Ctrl(waiting)
    t = Trial("t", {}, trial_id="x")
    msr.on_trial_add(ctrl, t)
    decisions = [msr.on_trial_result(ctrl, t, {"training_iteration": i, "acc": 1.0}) for i in range(1, 7)]
    # Yields at once after the grace period, then every min_time_slice
    assert decisions == [P, C, C, P, C, C]
    msr = _msr(min_samples_required=1, hard_stop=False)
    a, b = Trial("t", {}, trial_id="a"), Trial("t", {}, trial_id="b")
    msr.on_trial_add(_Ctrl(), a)
    msr.on_trial_add(_Ctrl(), b)
    for i in (1, 2):
        msr.on_trial_result(_Ctrl(), a, {"training_iteration": i, "acc": 1.0})
    assert msr.on_trial_result(_Ctrl(), b, {"training_iteration": 2, "acc": 0.0}) == P
    # Once soft-stopped, the trial is left to run FIFO.
    assert msr.on_trial_result(_Ctrl(), b, {"training_iteration": 3, "acc": 0.0}) == C


def test_a_trial_judged_good_enough_continues_even_when_others_wait():
    # Enough samples and not below their median: the trial goes on (it yields its slot only when
    # there are too few samples to judge it).
    msr = _msr(min_samples_required=1, min_time_slice=0)
    ctrl = _Ctrl(waiting=Trial("t", {}, trial_id="w"))
    a, b = Trial("t", {}, trial_id="a"), Trial("t", {}, trial_id="b")
    msr.on_trial_add(ctrl, a)
    msr.on_trial_add(ctrl, b)
    for i in (1, 2, 3):
        msr.on_trial_result(ctrl, a, {"training_iteration": i, "acc": 0.0})
    assert [msr.on_trial_result(ctrl, b, {"training_iteration": i, "acc": 1.0}) for i in (1, 2, 3)] == [C] * 3


def test_nan_running_means_are_no_samples():
    nan = float("nan")
    for min_samples, expected in ((1, S), (2, C)):
        msr = _msr(min_samples_required=min_samples)
        ctrl = _Ctrl()
        a, b, c = (Trial("t", {}, trial_id=x) for x in "abc")
        for t in (a, b, c):
            msr.on_trial_add(ctrl, t)
        msr.on_trial_result(ctrl, a, {"training_iteration": 1, "acc": nan})
        msr.on_trial_result(ctrl, b, {"training_iteration": 1, "acc": 1.0})
        # Only b's mean (1.0) is a sample: c (0.5) is below it with one sample required, and
        # has too few samples to be judged with two.
        assert msr.on_trial_result(ctrl, c, {"training_iteration": 1, "acc": 0.5}) == expected


class _Reference:
    """The rule as the documentation states it, computed from scratch on every result."""

    def __init__(self, grace, min_samples, time_attr, sign):
        self.grace, self.min_samples, self.time_attr, self.sign = grace, min_samples, time_attr, sign
        self.results: dict[str, list[dict]] = {}
        self.stopped: set[str] = set()

    def decide(self, tid, result):
        if tid in self.stopped:
            return C
        self.results.setdefault(tid, []).append(result)
        t = result[self.time_attr]
        if t < self.grace:
            return C
        others = [o for o, rs in self.results.items() if o != tid and rs[-1][self.time_attr] >= t]
        if len(others) < self.min_samples:
            return C
        means = []
        for o in others:
            vals = [self.sign * r["acc"] for r in self.results[o] if self.grace <= r[self.time_attr] <= t]
            if vals:  # a trial without results since the grace period has no running mean
                means.append(sum(vals) / len(vals))
        if len(means) < self.min_samples or not means:
            return C
        best = max(self.sign * r["acc"] for r in self.results[tid])
        if best < statistics.median(means):
            self.stopped.add(tid)
            return S
        return C


@pytest.mark.parametrize("time_attr, mode", [("training_iteration", "max"), ("time_total_s", "min")])
def test_matches_a_from_scratch_reference_on_random_interleavings(time_attr, mode):
    rng = random.Random(7)
    msr = _msr(time_attr=time_attr, mode=mode, grace_period=2, min_samples_required=3)
    ref = _Reference(2, 3, time_attr, 1.0 if mode == "max" else -1.0)
    ctrl = _Ctrl()
    trials = [Trial("t", {}, trial_id=f"{i:03d}") for i in range(25)]
    for t in trials:
        msr.on_trial_add(ctrl, t)
    progress = {t.trial_id: 0 for t in trials}
    elapsed = {t.trial_id: 0.0 for t in trials}
    quality = {t.trial_id: rng.random() for t in trials}
    live = list(trials)
    checked = stops = 0
    while live:
        t = rng.choice(live)
        progress[t.trial_id] += 1
        elapsed[t.trial_id] += rng.uniform(0.5, 1.5)
        it = progress[t.trial_id]
        result = {
            "training_iteration": it,
            "time_total_s": elapsed[t.trial_id],
            "acc": quality[t.trial_id] + rng.gauss(0, 0.2),
        }
        got = msr.on_trial_result(ctrl, t, result)
        assert got == ref.decide(t.trial_id, result)
        checked += 1
        if got == S:
            stops += 1
        if got == S or it >= 15:
            live.remove(t)
    assert checked > 100 and stops > 0



def test_soft_stopped_trials_wait_until_the_others_finish(tmp_path):
    """hard_stop=False: trials below the median are paused and, as on Ray, resumed once the others are
    complete. The paused trial that had waited longest was resumed first, so the trials the rule had put
    last ran to the end while the good ones waited."""
    import json
    import os
    import time

    from tunesmith import tune

    class Climbs(tune.Trainable):
        def setup(self, config):
            self.count = 0

        def step(self):
            time.sleep(0.05)
            self.count += 1
            return {"score": self.config["x"] * self.count, "done": self.count >= 6}

        def save_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "s.json"), "w") as f:
                json.dump(self.count, f)

        def load_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "s.json")) as f:
                self.count = json.load(f)

    order = []

    class Order(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            order.append(trial.config["x"])

    import tunesmith

    tunesmith.init(num_cpus=2)
    try:
        tune.Tuner(
            Climbs, param_space={"x": tune.grid_search([0.4, 0.3, 0.2, 0.1])},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=MedianStoppingRule(
                time_attr="training_iteration", grace_period=2, min_samples_required=2, hard_stop=False)),
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, callbacks=[Order()]),
        ).fit()
    finally:
        tunesmith.init()
    assert sorted(order[:2]) == [0.3, 0.4] and sorted(order[2:]) == [0.1, 0.2], order
