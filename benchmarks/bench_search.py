"""Search quality and wrapper overhead of the search integrations.

For every searcher, on Branin (2-D, minimum 0.397887) and Hartmann-6 (6-D,
minimum -3.32237), with 60 trials and 5 seeds, this prints:

* the median over the seeds of the best value found, next to random search's
  (tunesmith's ``BasicVariantGenerator``), and whether it is better;
* the per-trial time of tunesmith's wrapper (the driver's path:
  ``SearchGenerator.next_trial`` -> ``Searcher.suggest``, then
  ``on_trial_result`` and ``on_trial_complete``) next to the library's own
  ask/tell loop on the same problem with the same seed, and the difference;
* the latency of one ``suggest`` after 50 and after 500 completed trials
  (given through ``add_evaluated_point``), flagging libraries whose
  suggestions grow slow with the history.

The objective is evaluated in-process (it costs microseconds), so the times
are the search's own. Results are cached per measurement in a JSON file
(``--cache``), so an interrupted run goes on where it stopped.

Run: ``python benchmarks/bench_search.py [--searchers optuna,hyperopt,...] [--seeds 5] [--trials 60]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

ALL = ["random", "optuna", "hyperopt", "bayesopt", "nevergrad", "zoopt", "bohb", "ax", "hebo"]
METRIC = "value"


# ------------------------------------------------------------------------------------- problems

def branin(x1: float, x2: float) -> float:
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                 [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann6(*x: float) -> float:
    x = np.asarray(x)
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


PROBLEMS = {
    "branin": {"names": ["x1", "x2"], "bounds": [(-5.0, 10.0), (0.0, 15.0)], "f": branin, "optimum": 0.397887},
    "hartmann6": {"names": [f"x{i}" for i in range(1, 7)], "bounds": [(0.0, 1.0)] * 6, "f": hartmann6,
                  "optimum": -3.32237},
}


def tune_space(problem: dict) -> dict:
    from tunesmith import tune

    return {n: tune.uniform(lo, hi) for n, (lo, hi) in zip(problem["names"], problem["bounds"])}


def evaluate(problem: dict, config: dict) -> float:
    return problem["f"](*[config[n] for n in problem["names"]])


# ------------------------------------------------------------------------------------- searchers

def make_searcher(name: str, seed: int, trials: int):
    if name == "optuna":
        from tunesmith.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=seed)
    if name == "hyperopt":
        from tunesmith.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=seed)
    if name == "bayesopt":
        from tunesmith.tune.search.bayesopt import BayesOptSearch

        return BayesOptSearch(random_state=seed)
    if name == "nevergrad":
        from tunesmith.tune.search.nevergrad import NevergradSearch

        return NevergradSearch(optimizer_kwargs={"budget": trials}, seed=seed)
    if name == "zoopt":
        from tunesmith.tune.search.zoopt import ZOOptSearch

        return ZOOptSearch(budget=trials, seed=seed)
    if name == "bohb":
        from tunesmith.tune.search.bohb import TuneBOHB

        return TuneBOHB(seed=seed)
    if name == "ax":
        from tunesmith.tune.search.ax import AxSearch

        return AxSearch(seed=seed)
    if name == "hebo":
        from tunesmith.tune.search.hebo import HEBOSearch

        return HEBOSearch(random_state_seed=seed)
    raise ValueError(name)


def run_wrapper(name: str, problem: dict, seed: int, trials: int) -> dict:
    """``trials`` trials through the driver's search path; returns best value and seconds per trial."""
    from tunesmith.tune.search.basic_variant import BasicVariantGenerator
    from tunesmith.tune.search.search_generator import SearchGenerator

    space = tune_space(problem)
    start = time.perf_counter()
    if name == "random":
        gen = BasicVariantGenerator(random_state=seed)
    else:
        gen = SearchGenerator(make_searcher(name, seed, trials))
    gen.set_search_properties(METRIC, "min", space)
    gen.add_configurations(space, num_samples=trials)
    best = math.inf
    eval_s = 0.0
    for i in range(trials):
        suggestion = gen.next_trial(f"t_{i:05d}")
        if suggestion is None:
            break
        t0 = time.perf_counter()
        value = evaluate(problem, suggestion.config)
        eval_s += time.perf_counter() - t0
        best = min(best, value)
        result = {METRIC: value, "training_iteration": 1, "config": suggestion.config}
        gen.on_trial_result(f"t_{i:05d}", result)
        gen.on_trial_complete(f"t_{i:05d}", result)
    elapsed = time.perf_counter() - start - eval_s
    return {"best": best, "per_trial_s": elapsed / max(1, i + 1), "trials": i + 1}


def bare_steps(name: str, problem: dict, seed: int, trials: int):
    """The library's own ask/tell loop on the same problem, one trial per ``next()``; yields the value."""
    names, bounds, f = problem["names"], problem["bounds"], problem["f"]

    def objective(values: dict) -> float:
        return f(*[values[n] for n in names])

    if name == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = {n: optuna.distributions.FloatDistribution(lo, hi) for n, (lo, hi) in zip(names, bounds)}
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        for _ in range(trials):
            trial = study.ask(dists)
            y = objective(trial.params)
            study.tell(trial, y)
            yield y
    elif name == "hyperopt":
        import hyperopt as hpo

        space = {n: hpo.hp.uniform(n, lo, hi) for n, (lo, hi) in zip(names, bounds)}
        domain = hpo.base.Domain(lambda c: c, space)
        hp_trials = hpo.Trials()
        rng = np.random.default_rng(seed)
        for _ in range(trials):
            ids = hp_trials.new_trial_ids(1)
            hp_trials.refresh()
            docs = hpo.tpe.suggest(ids, domain, hp_trials, int(rng.integers(2**31 - 1)))
            hp_trials.insert_trial_docs(docs)
            hp_trials.refresh()
            doc = hp_trials._dynamic_trials[-1]
            y = objective({n: doc["misc"]["vals"][n][0] for n in names})
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"loss": y, "status": hpo.STATUS_OK}
            hp_trials.refresh()
            yield y
    elif name == "bayesopt":
        from bayes_opt import BayesianOptimization, UtilityFunction

        opt = BayesianOptimization(f=None, pbounds=dict(zip(names, bounds)), random_state=seed, verbose=0,
                                   allow_duplicate_points=True)
        utility = UtilityFunction(kind="ucb", kappa=2.576, xi=0.0)
        for i in range(trials):
            x = opt.space.array_to_params(opt.space.random_sample()) if i < 10 else opt.suggest(utility)
            y = objective(x)
            opt.register(params=x, target=-y)
            yield y
    elif name == "nevergrad":
        import nevergrad as ng

        param = ng.p.Dict(**{n: ng.p.Scalar(lower=lo, upper=hi) for n, (lo, hi) in zip(names, bounds)})
        param.random_state = np.random.RandomState(seed)
        opt = ng.optimizers.NGOpt(parametrization=param, budget=trials)
        for _ in range(trials):
            cand = opt.ask()
            y = objective(cand.value)
            opt.tell(cand, y)
            yield y
    elif name == "zoopt":
        import zoopt
        from zoopt.algos.opt_algorithms.racos.sracos import SRacosTune

        dim = zoopt.Dimension2([(zoopt.ValueType.CONTINUOUS, [lo, hi], 1e-10) for lo, hi in bounds])
        np.random.seed(seed)
        opt = SRacosTune(dimension=dim, parameter=zoopt.Parameter(budget=trials), parallel_num=1)
        done = 0
        while done < trials:
            sol = opt.suggest()
            if sol is None:
                opt.semaphore = 1
                continue
            y = objective(dict(zip(names, sol.get_x())))
            opt.complete(sol, y)
            done += 1
            yield y
    elif name == "bohb":
        import ConfigSpace as CS
        from hpbandster.optimizers.config_generators.bohb import BOHB

        cs = CS.ConfigurationSpace(seed=seed)
        cs.add([CS.UniformFloatHyperparameter(n, lo, hi) for n, (lo, hi) in zip(names, bounds)])
        np.random.seed(seed)
        gen = BOHB(cs)

        class Job:
            def __init__(self, config, loss):
                self.kwargs = {"budget": 1.0, "config": config}
                self.result = {"loss": loss}
                self.exception = None

        for _ in range(trials):
            config, _info = gen.get_config(None)
            y = objective(config)
            gen.new_result(Job(config, y))
            yield y
    elif name == "ax":
        from ax.service.ax_client import AxClient
        from ax.service.utils.instantiation import ObjectiveProperties

        client = AxClient(random_seed=seed, verbose_logging=False)
        client.create_experiment(
            parameters=[{"name": n, "type": "range", "bounds": [lo, hi], "value_type": "float"}
                        for n, (lo, hi) in zip(names, bounds)],
            objectives={METRIC: ObjectiveProperties(minimize=True)})
        for _ in range(trials):
            params, index = client.get_next_trial()
            y = objective(params)
            client.complete_trial(index, raw_data={METRIC: (y, None)})
            yield y
    elif name == "hebo":
        import pandas as pd
        import torch
        from hebo.design_space.design_space import DesignSpace
        from hebo.optimizers.hebo import HEBO

        space = DesignSpace().parse([{"name": n, "type": "num", "lb": lo, "ub": hi} for n, (lo, hi) in zip(names, bounds)])
        np.random.seed(seed)
        torch.manual_seed(seed)
        opt = HEBO(space, scramble_seed=seed)
        done = 0
        while done < trials:
            batch = opt.suggest(n_suggestions=min(8, trials - done)).to_dict("records")
            ys = []
            for row in batch:  # handed out one trial at a time, observed as a batch
                ys.append(objective(row))
                done += 1
                yield ys[-1]
            opt.observe(pd.DataFrame(batch), np.array([[y] for y in ys]))
    else:
        raise ValueError(name)


def wrapper_steps(name: str, problem: dict, seed: int, trials: int):
    """The same trials through tunesmith's driver path, one per ``next()``; yields the value."""
    from tunesmith.tune.search.search_generator import SearchGenerator

    space = tune_space(problem)
    gen = SearchGenerator(make_searcher(name, seed, trials))
    gen.set_search_properties(METRIC, "min", space)
    gen.add_configurations(space, num_samples=trials)
    for i in range(trials):
        suggestion = gen.next_trial(f"t_{i:05d}")
        value = evaluate(problem, suggestion.config)
        result = {METRIC: value, "training_iteration": 1, "config": suggestion.config}
        gen.on_trial_result(f"t_{i:05d}", result)
        gen.on_trial_complete(f"t_{i:05d}", result)
        yield value


def overhead(name: str, problem: dict, trials: int) -> dict:
    """Per-trial seconds of the wrapper and of the bare library, run in lockstep.

    The two loops (same seed) advance one trial each in turn, so a busy
    machine slows both alike. A short run of each comes first, untimed, to
    pay imports and first-call costs. Libraries that take under 50 ms a
    trial run three rounds (their times are small and noisy), the others one.
    """
    bare_s = wrap_s = 0.0
    runs = 0
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        for warm in (bare_steps(name, problem, 0, 12), wrapper_steps(name, problem, 0, 12)):
            for _ in warm:
                pass
        while runs < 3:
            bare, wrap = bare_steps(name, problem, 0, trials), wrapper_steps(name, problem, 0, trials)
            for _ in range(trials):
                t0 = time.perf_counter()
                next(bare)
                t1 = time.perf_counter()
                next(wrap)
                t2 = time.perf_counter()
                bare_s += t1 - t0
                wrap_s += t2 - t1
            runs += 1
            if bare_s / (runs * trials) > 0.05:
                break
    return {"wrapper_s": wrap_s / (runs * trials), "bare_s": bare_s / (runs * trials), "rounds": runs}


def suggest_latency(name: str, history: int, reps: int) -> float:
    """Seconds for one suggest (and its completion) after ``history`` completed trials on Hartmann-6."""
    problem = PROBLEMS["hartmann6"]
    if name == "nevergrad":
        # NGOpt picks a meta-model optimiser for this budget, whose prediction step fails
        # under NumPy 2 (nevergrad 1.0.12): measure the default (1+1) strategy instead.
        from tunesmith.tune.search.nevergrad import NevergradSearch

        searcher = NevergradSearch(seed=0)
    else:
        searcher = make_searcher(name, 0, history + reps + 1)
    space = tune_space(problem)
    searcher.set_search_properties(METRIC, "min", space)
    rng = np.random.default_rng(0)
    for _ in range(history):
        config = {n: float(rng.uniform(lo, hi)) for n, (lo, hi) in zip(problem["names"], problem["bounds"])}
        searcher.add_evaluated_point(config, evaluate(problem, config))
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        config = searcher.suggest(f"lat_{i}")
        times.append(time.perf_counter() - t0)
        if isinstance(config, dict):
            searcher.on_trial_complete(f"lat_{i}", {METRIC: evaluate(problem, config), "config": config})
    return statistics.median(times)


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searchers", default=",".join(ALL))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--cache", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".bench_search.json"))
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--table-only", action="store_true",
                        help="print the tables from the cache only, with the seeds measured so far")
    args = parser.parse_args()
    names = [n for n in args.searchers.split(",") if n]
    cache: dict = {}
    if os.path.exists(args.cache):
        with open(args.cache) as fh:
            cache = json.load(fh)

    def cached(key: str, fn):
        if key not in cache:
            if args.table_only:
                return None
            cache[key] = fn()
            with open(args.cache, "w") as fh:
                json.dump(cache, fh, indent=1)
        return cache[key]

    # Random search first: every other searcher is compared with it.
    order = ["random"] + [n for n in names if n != "random"]
    rows = []
    nan = float("nan")
    for name in order:
        for pname, problem in PROBLEMS.items():
            runs = [cached(f"wrap/{name}/{pname}/{seed}/{args.trials}",
                           lambda s=seed: run_wrapper(name, problem, s, args.trials)) for seed in range(args.seeds)]
            runs = [r for r in runs if r is not None]
            median = statistics.median(r["best"] for r in runs) if runs else nan
            timing = None
            if name != "random" and not args.no_overhead:  # random search has no library to compare with
                timing = cached(f"lockstep/{name}/{pname}/{args.trials}", lambda: overhead(name, problem, args.trials))
            wrap_t, bare_t = (timing["wrapper_s"], timing["bare_s"]) if timing else (nan, nan)
            rows.append((name, pname, median, wrap_t, bare_t, len(runs)))
            print(f"{name:10s} {pname:10s} median best {median:10.4f} ({len(runs)} seeds)  wrapper "
                  f"{wrap_t * 1e3:9.2f} ms/trial  library {bare_t * 1e3:9.2f} ms/trial", flush=True)

    random_median = {p: m for n, p, m, *_ in rows if n == "random"}
    print()
    print(f"Median best value over the seeds, {args.trials} trials (lower is better); per-trial time of the "
          "wrapper and of the library's own loop, run in lockstep:")
    print("| searcher | seeds | Branin (opt 0.3979) | Hartmann-6 (opt -3.3224) | beats random on both | "
          "wrapper ms/trial (Branin, Hartmann-6) | library ms/trial | wrapper overhead |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in order:
        mine = {p: (m, w, b, k) for n, p, m, w, b, k in rows if n == name}
        seeds = min(v[3] for v in mine.values())
        if name == "random":
            print(f"| random | {seeds} | {mine['branin'][0]:.4f} | {mine['hartmann6'][0]:.4f} | - | - | - | - |")
            continue
        beats = all(mine[p][0] < random_median[p] for p in PROBLEMS)
        overheads = [(mine[p][1] - mine[p][2]) / mine[p][2] * 100 for p in PROBLEMS]
        extra_ms = [(mine[p][1] - mine[p][2]) * 1e3 for p in PROBLEMS]
        print(
            f"| {name} | {seeds} | {mine['branin'][0]:.4f} | {mine['hartmann6'][0]:.4f} | "
            f"{'yes' if beats else 'NO'} | "
            f"{mine['branin'][1] * 1e3:.2f}, {mine['hartmann6'][1] * 1e3:.2f} | "
            f"{mine['branin'][2] * 1e3:.2f}, {mine['hartmann6'][2] * 1e3:.2f} | "
            f"{overheads[0]:+.1f}%, {overheads[1]:+.1f}% ({extra_ms[0]:+.2f}, {extra_ms[1]:+.2f} ms) |"
        )

    if args.no_latency:
        return
    print()
    print("Suggest latency on Hartmann-6 after N completed trials (given with add_evaluated_point):")
    print("| searcher | 50 trials | 500 trials | growth |")
    print("| --- | --- | --- | --- |")
    for name in order:
        if name == "random":
            continue
        slow = name in ("ax", "hebo", "bayesopt")
        lat50 = cached(f"lat/{name}/50", lambda: suggest_latency(name, 50, 1 if slow else 5))
        lat500 = cached(f"lat/{name}/500", lambda: suggest_latency(name, 500, 1 if slow else 5))
        if lat50 is None or lat500 is None:
            print(f"| {name} | not measured | not measured | |")
            continue
        notes = []
        if lat500 > 0.5:
            notes.append("slow: over 0.5 s per suggestion, the driver waits on it; keep concurrency low")
        if lat500 > 2 * lat50:
            notes.append("grows with the history")
        note = (" " + "; ".join(notes)) if notes else ""
        print(f"| {name} | {lat50 * 1e3:.1f} ms | {lat500 * 1e3:.1f} ms | x{lat500 / max(lat50, 1e-9):.1f}{note} |",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
