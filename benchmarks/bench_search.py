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
import gc
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
#: Libraries that take seconds a trial: one lockstep run each, one suggestion per latency figure.
SLOW = ("ax", "hebo", "bayesopt")
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
    """The library's own ask/tell loop on the same problem.

    The first ``next()`` sets the library up (yields None); each further one runs a trial and yields its value.
    """
    names, bounds, f = problem["names"], problem["bounds"], problem["f"]

    def objective(values: dict) -> float:
        return f(*[values[n] for n in names])

    if name == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = {n: optuna.distributions.FloatDistribution(lo, hi) for n, (lo, hi) in zip(names, bounds)}
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        yield None  # set-up done: the trials follow
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
        yield None  # set-up done: the trials follow
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
        yield None  # set-up done: the trials follow
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
        yield None  # set-up done: the trials follow
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
        yield None  # set-up done: the trials follow
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

        yield None  # set-up done: the trials follow
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
        yield None  # set-up done: the trials follow
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
        yield None  # set-up done: the trials follow
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


def searcher_steps(name: str, problem: dict, seed: int, trials: int):
    """The same trials through the searcher's API (the wrapper around the library), as the driver calls it.

    ``suggest``, then ``on_trial_result`` and ``on_trial_complete`` with the result. The first
    ``next()`` builds the searcher and sets it up (yields None); each further one yields a value.
    """
    searcher = make_searcher(name, seed, trials)
    space = tune_space(problem)
    searcher.set_search_properties(METRIC, "min", space)
    searcher._maybe_build()  # what the first suggest would do: part of the set-up, not of a trial
    trial_ids = [f"t_{i:05d}" for i in range(trials)]  # the driver names trials whatever the searcher
    names, f = problem["names"], problem["f"]

    def objective(values: dict) -> float:  # as in bare_steps
        return f(*[values[n] for n in names])

    yield None
    for trial_id in trial_ids:
        config = searcher.suggest(trial_id)
        value = objective(config)
        result = {METRIC: value, "training_iteration": 1, "config": config}
        searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)
        yield value


def driver_steps(name: str, problem: dict, seed: int, trials: int):
    """The same trials through the driver's whole search path: ``SearchGenerator`` around the searcher.

    Besides the searcher, each trial's suggestion is merged into the ``param_space`` (constants and
    nesting kept, anything left sampled) and tagged, as for every search algorithm.
    """
    from tunesmith.tune.search.search_generator import SearchGenerator

    space = tune_space(problem)
    gen = SearchGenerator(make_searcher(name, seed, trials))
    gen.set_search_properties(METRIC, "min", space)
    gen.add_configurations(space, num_samples=trials)
    gen.searcher._maybe_build()
    trial_ids = [f"t_{i:05d}" for i in range(trials)]
    yield None
    for trial_id in trial_ids:
        suggestion = gen.next_trial(trial_id)
        value = evaluate(problem, suggestion.config)
        result = {METRIC: value, "training_iteration": 1, "config": suggestion.config}
        gen.on_trial_result(trial_id, result)
        gen.on_trial_complete(trial_id, result)
        yield value


SIDES = {"library": bare_steps, "wrapper": searcher_steps, "driver": driver_steps}


def overhead(name: str, problem: dict, trials: int, seeds: int, slow: bool) -> dict:
    """Per-trial CPU seconds of the library's own loop, the wrapper and the driver's path, in lockstep.

    Every run uses one seed on all three sides (seeds 0 .. ``seeds`` - 1 in turn), so they solve the
    same problem with the same number of evaluations; where the wrapper draws the library's random
    numbers as the bare loop does, they even make the same suggestions. The three loops advance one
    trial each in turn, the order rotating from trial to trial, and each trial is timed with the
    process's CPU clock (``time.process_time``: every thread of this process, none of the other
    processes that share the machine), so a busy machine slows neither side more than the other.
    Before each timed step the youngest generation of Python's garbage collector is emptied
    (untimed), so a collection inside a step is one that the step's own allocations set off, not
    the other side's. The set-up (building the optimiser, converting the space) is timed apart. Returns the
    medians over the runs: ``seeds`` runs for libraries slower than 20 ms a trial (``slow``: one
    run, for the ones that take seconds), three per seed for the others. A short untimed run of each
    side comes first, to pay imports and first-call costs.
    """
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        for side in SIDES.values():
            for _ in side(name, problem, 0, 12):
                pass
        per_trial: dict = {k: [] for k in SIDES}
        setup: dict = {k: [] for k in SIDES}
        runs = 1 if slow else seeds
        r = 0
        while r < runs:
            seed = r % seeds
            gens = {k: side(name, problem, seed, trials) for k, side in SIDES.items()}
            for k, gen in gens.items():
                t0 = time.process_time()
                next(gen)
                setup[k].append(time.process_time() - t0)
            spent = dict.fromkeys(SIDES, 0.0)
            order = list(SIDES)
            for i in range(trials):
                for k in order[i % 3:] + order[: i % 3]:
                    gc.collect(0)  # untimed: a garbage collection in the step is paid by what the step allocated
                    t0 = time.process_time()
                    next(gens[k])
                    spent[k] += time.process_time() - t0
            for k in SIDES:
                per_trial[k].append(spent[k] / trials)
            r += 1
            if r == runs and not slow and runs == seeds and statistics.median(per_trial["library"]) < 0.02:
                runs = 3 * seeds  # fast libraries: more runs, their figures are small and noisy
    out = {f"{k}_s": statistics.median(v) for k, v in per_trial.items()}
    out.update({f"{k}_setup_s": statistics.median(v) for k, v in setup.items()})
    out["runs"] = r
    return out


def suggest_latency(name: str, history: int, reps: int) -> float:
    """Seconds for one suggest (and its completion) after ``history`` completed trials on Hartmann-6."""
    problem = PROBLEMS["hartmann6"]
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
                timing = cached(f"cpu-lockstep/{name}/{pname}/{args.trials}/{args.seeds}",
                                lambda: overhead(name, problem, args.trials, args.seeds, name in SLOW))
            rows.append((name, pname, median, timing, len(runs)))
            if timing:
                print(f"{name:10s} {pname:10s} median best {median:10.4f} ({len(runs)} seeds)  library "
                      f"{timing['library_s'] * 1e3:9.3f} ms/trial  wrapper {timing['wrapper_s'] * 1e3:9.3f}  "
                      f"driver path {timing['driver_s'] * 1e3:9.3f} ({timing['runs']} runs)", flush=True)
            else:
                print(f"{name:10s} {pname:10s} median best {median:10.4f} ({len(runs)} seeds)", flush=True)

    random_median = {p: m for n, p, m, *_ in rows if n == "random"}
    print()
    print(f"Median best value over the seeds, {args.trials} trials (lower is better). CPU time per trial "
          "(process_time, medians of lockstep runs, set-up excluded) of the library's own ask/tell loop and "
          "of the wrapper (the searcher's suggest/on_trial_result/on_trial_complete around the same library); "
          "the driver's search path (SearchGenerator: merging the suggestion into param_space, the trial's "
          "tag) adds the same for every search algorithm:")
    print("| searcher | seeds | Branin (opt 0.3979) | Hartmann-6 (opt -3.3224) | beats random on both | "
          "library ms/trial (Branin, Hartmann-6) | wrapper ms/trial | wrapper overhead (goal <= 10%) | "
          "driver path, us/trial more | lockstep runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in order:
        mine = {p: (m, t, k) for n, p, m, t, k in rows if n == name}
        seeds = min(v[2] for v in mine.values())
        values = f"{mine['branin'][0]:.4f} | {mine['hartmann6'][0]:.4f}"
        if name == "random":
            print(f"| random | {seeds} | {values} | - | - | - | - | - | - |")
            continue
        beats = "yes" if all(mine[p][0] < random_median[p] for p in PROBLEMS) else "NO"
        timings = [mine[p][1] for p in PROBLEMS]
        if any(t is None for t in timings):
            print(f"| {name} | {seeds} | {values} | {beats} | not measured | | | | |")
            continue

        def pair(fmt, fn):
            return ", ".join(fmt.format(fn(t)) for t in timings)

        print(
            f"| {name} | {seeds} | {values} | {beats} | "
            f"{pair('{:.3f}', lambda t: t['library_s'] * 1e3)} | {pair('{:.3f}', lambda t: t['wrapper_s'] * 1e3)} | "
            f"{pair('{:+.1f}%', lambda t: (t['wrapper_s'] / t['library_s'] - 1) * 100)} | "
            f"{pair('{:+.0f}', lambda t: (t['driver_s'] - t['wrapper_s']) * 1e6)} | "
            f"{pair('{}', lambda t: t['runs'])} |"
        )
    print()
    print("One-time set-up, ms (library's own, wrapper's; Branin then Hartmann-6):")
    for name in order:
        timings = [t for n, p, m, t, k in rows if n == name and t]
        if timings:
            print(f"  {name:10s} " + "; ".join(
                f"{t['library_setup_s'] * 1e3:.1f}, {t['wrapper_setup_s'] * 1e3:.1f}" for t in timings))

    if args.no_latency:
        return
    print()
    print("Suggest latency on Hartmann-6 after N completed trials (given with add_evaluated_point; wall-clock "
          "seconds of one suggest, what the driver waits; median of 5, or 1 for the searchers that take seconds):")
    print("| searcher | 50 trials | 500 trials | growth | note |")
    print("| --- | --- | --- | --- | --- |")
    for name in order:
        if name == "random":
            continue
        slow = name in SLOW
        lat50 = cached(f"lat/{name}/50", lambda: suggest_latency(name, 50, 1 if slow else 5))
        lat500 = cached(f"lat/{name}/500", lambda: suggest_latency(name, 500, 1 if slow else 5))
        if lat50 is None or lat500 is None:
            print(f"| {name} | {'not measured' if lat50 is None else f'{lat50 * 1e3:.1f} ms'} | not measured | | |")
            continue
        notes = []
        if lat500 > 1.5 * lat50:
            notes.append("grows with the history")
        if lat500 > 0.5:
            notes.append("slow: over 0.5 s per suggestion, the driver waits on it; keep trials long next to it")
        print(f"| {name} | {lat50 * 1e3:.1f} ms | {lat500 * 1e3:.1f} ms | x{lat500 / max(lat50, 1e-9):.1f} | "
              f"{'; '.join(notes)} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
