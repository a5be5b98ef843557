"""Searcher, SearchGenerator, ConcurrencyLimiter and Repeater with a toy searcher."""
from __future__ import annotations

import math
import os

import pytest

from tunesmith import tune
from tunesmith.tune.search import (
    ConcurrencyLimiter,
    Repeater,
    SearchAlgorithm,
    SearchGenerator,
    Searcher,
)


class ListSearcher(Searcher):
    """Suggests the given configs in order, then FINISHED; records what it was told."""

    def __init__(self, configs, metric="loss", mode="min", take_space=True):
        super().__init__(metric=metric, mode=mode)
        self.configs = list(configs)
        self.position = 0
        self.completed: list[tuple[str, dict | None, bool]] = []
        self.results: list[tuple[str, dict]] = []
        self.space = None
        self.take_space = take_space

    def set_search_properties(self, metric, mode, config, **spec):
        super().set_search_properties(metric, mode, config)
        self.space = config
        return self.take_space

    def suggest(self, trial_id):
        if self.position >= len(self.configs):
            return Searcher.FINISHED
        config = self.configs[self.position]
        self.position += 1
        return dict(config)

    def on_trial_result(self, trial_id, result):
        self.results.append((trial_id, result))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, result, error))


class SelfLimitingSearcher(ListSearcher):
    def set_max_concurrency(self, max_concurrent):
        self.own_limit = max_concurrent
        return True


def drain(algo, limit=1000):
    out = []
    for i in range(limit):
        s = algo.next_trial(f"t{i}")
        if s is None:
            break
        out.append(s)
    return out


# ---------------------------------------------------------------- Searcher


def test_searcher_validates_mode():
    with pytest.raises(ValueError, match=r"`mode` must be 'min' or 'max'.*got 'maximize'"):
        ListSearcher([], mode="maximize")
    searcher = ListSearcher([], metric=None, mode=None)
    with pytest.raises(ValueError, match="`mode` must be 'min' or 'max'"):
        searcher.set_search_properties("acc", "best", {})


def test_base_set_search_properties_fills_missing_metric_and_mode_only():
    class Plain(Searcher):
        pass

    plain = Plain()
    assert plain.set_search_properties("acc", "max", {"x": 1}) is False
    assert (plain.metric, plain.mode) == ("acc", "max")
    fixed = Plain(metric="loss", mode="min")
    fixed.set_search_properties("acc", "max", {})
    assert (fixed.metric, fixed.mode) == ("loss", "min")
    assert Plain().set_max_concurrency(3) is False
    with pytest.raises(NotImplementedError):
        Plain().suggest("t")
    with pytest.raises(NotImplementedError, match="add_evaluated_point"):
        Plain().add_evaluated_point({"x": 1}, 1.0)


def test_searcher_save_restore_and_dirs(tmp_path):
    searcher = ListSearcher([{"x": 1}, {"x": 2}, {"x": 3}])
    searcher.suggest("a")
    path = tmp_path / "state.pkl"
    searcher.save(str(path))
    other = ListSearcher([])
    other.restore(str(path))
    assert other.suggest("b") == {"x": 2}

    assert not searcher.has_checkpoint(str(tmp_path))
    searcher.save_to_dir(str(tmp_path), session_str="s1")
    assert sorted(os.listdir(tmp_path)) == ["searcher-state-s1.pkl", "state.pkl"]
    assert searcher.has_checkpoint(str(tmp_path))
    fresh = ListSearcher([])
    fresh.restore_from_dir(str(tmp_path))
    assert fresh.suggest("c") == {"x": 2}
    with pytest.raises(RuntimeError, match="found no saved state"):
        ListSearcher([]).restore_from_dir(str(tmp_path / "missing"))


def test_add_evaluated_trials_feeds_finished_trials():
    class Recorder(Searcher):
        def __init__(self):
            super().__init__()
            self.points = []

        def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
            self.points.append((parameters, value, error))

    class FakeTrial:
        def __init__(self, config, status, last_result):
            self.config, self.status, self.last_result = config, status, last_result

    recorder = Recorder()
    recorder.add_evaluated_trials(
        [
            FakeTrial({"x": 1}, "TERMINATED", {"loss": 0.5, "done": True}),
            FakeTrial({"x": 2}, "ERROR", {}),
            FakeTrial({"x": 3}, "RUNNING", {"loss": 0.1}),
        ],
        "loss",
    )
    assert recorder.points == [({"x": 1}, 0.5, False), ({"x": 2}, None, True)]
    # A misspelled metric is refused before anything is added (it used to be after the errored trials were).
    recorder.points.clear()
    with pytest.raises(ValueError, match="reported the metric 'acc'"):
        recorder.add_evaluated_trials([FakeTrial({"x": 2}, "ERROR", {}),
                                       FakeTrial({"x": 1}, "TERMINATED", {"loss": 1})], "acc")
    assert recorder.points == []
    # Trials that all errored are added as errors, as on Ray (they raised before).
    recorder.add_evaluated_trials([FakeTrial({"x": 2}, "ERROR", {}), FakeTrial({"x": 4}, "ERROR", {})], "loss")
    assert recorder.points == [({"x": 2}, None, True), ({"x": 4}, None, True)]


# ---------------------------------------------------------- SearchGenerator


def test_search_generator_merges_suggestions_into_the_space():
    searcher = ListSearcher([{"lr": 0.1, "net": {"width": 32}}, {"lr": 0.2, "net/width": 64}])
    gen = SearchGenerator(searcher)
    assert isinstance(gen, SearchAlgorithm)
    space = {
        "lr": tune.loguniform(1e-3, 1),
        "net": {"width": tune.randint(8, 128), "depth": 3},
        "epochs": 10,
        "tags": ["a", "b"],
    }
    assert gen.set_search_properties("acc", "max", space) is True
    assert searcher.space is space
    assert (gen.metric, gen.mode) == ("loss", "min")
    gen.add_configurations(space, num_samples=5)
    first, second = drain(gen)
    assert first.config == {"lr": 0.1, "net": {"width": 32, "depth": 3}, "epochs": 10, "tags": ["a", "b"]}
    assert second.config["net"] == {"width": 64, "depth": 3}
    assert first.evaluated_params == {"lr": 0.1, "net/width": 32}
    assert first.experiment_tag == "1_epochs=10,lr=0.1,depth=3,width=32,tags=a_b"
    assert gen.is_finished()  # the searcher said FINISHED


def test_search_generator_stops_at_num_samples():
    gen = SearchGenerator(ListSearcher([{"x": i} for i in range(10)]))
    gen.add_configurations({"x": 0}, num_samples=3)
    assert gen.total_samples == 3
    assert [s.config["x"] for s in drain(gen)] == [0, 1, 2]
    assert gen.is_finished()


def test_search_generator_waits_on_none():
    class Sometimes(Searcher):
        def __init__(self):
            super().__init__()
            self.ready = False

        def suggest(self, trial_id):
            return {"x": 1} if self.ready else None

    searcher = Sometimes()
    gen = SearchGenerator(searcher)
    gen.add_configurations({}, num_samples=2)
    assert gen.next_trial("a") is None and not gen.is_finished()
    searcher.ready = True
    assert gen.next_trial("a").config == {"x": 1}


def test_search_generator_samples_values_the_searcher_left_out():
    gen = SearchGenerator(ListSearcher([{"a": 0.5}]))
    gen.set_search_properties(None, None, {})
    gen.add_configurations({"a": tune.uniform(0, 1), "b": tune.sample_from(lambda spec: spec.config.a * 2)})
    assert drain(gen)[0].config == {"a": 0.5, "b": 1.0}


def test_search_generator_rejects_grid_search():
    gen = SearchGenerator(ListSearcher([]))
    with pytest.raises(ValueError, match=r"tune.grid_search at 'opt/lr'.*ListSearcher cannot use"):
        gen.add_configurations({"opt": {"lr": tune.grid_search([0.1, 0.2])}})
    with pytest.raises(ValueError, match="grid_search"):
        gen.set_search_properties("loss", "min", {"x": tune.grid_search([1])})


def test_search_generator_rejects_a_space_the_searcher_did_not_take():
    gen = SearchGenerator(ListSearcher([{"x": 1}], take_space=False))
    assert gen.set_search_properties("loss", "min", {"x": tune.uniform(0, 1)}) is False
    with pytest.raises(ValueError, match="did not take it"):
        gen.add_configurations({"x": tune.uniform(0, 1)})
    gen.add_configurations({"const": 1})  # constants are fine
    assert drain(gen)[0].config == {"const": 1, "x": 1}


def test_search_generator_forwards_results():
    searcher = ListSearcher([{"x": 1}])
    gen = SearchGenerator(searcher)
    gen.add_configurations({})
    gen.next_trial("a")
    gen.on_trial_result("a", {"loss": 2.0})
    gen.on_trial_complete("a", {"loss": 1.0})
    gen.on_trial_complete("b", error=True)
    assert searcher.results == [("a", {"loss": 2.0})]
    assert searcher.completed == [("a", {"loss": 1.0}, False), ("b", None, True)]


def test_search_generator_rejects_non_searchers_and_bad_suggestions():
    with pytest.raises(TypeError, match="must be a tune Searcher"):
        SearchGenerator(object())

    class Bad(Searcher):
        def suggest(self, trial_id):
            return [1, 2]

    gen = SearchGenerator(Bad())
    gen.add_configurations({})
    with pytest.raises(TypeError, match="Bad.suggest\\(\\) must return a dict, None or Searcher.FINISHED"):
        gen.next_trial("a")
    # Behind the limiter max_concurrent_trials puts around it, the error still names the user's searcher.
    from tunesmith.tune.search import ConcurrencyLimiter

    gen = SearchGenerator(ConcurrencyLimiter(Bad(), max_concurrent=2))
    gen.add_configurations({})
    with pytest.raises(TypeError, match="Bad.suggest\\(\\)"):
        gen.next_trial("a")


def test_search_generator_save_and_restore(tmp_path):
    configs = [{"x": i} for i in range(6)]
    gen = SearchGenerator(ListSearcher(configs))
    gen.add_configurations({"c": 1}, num_samples=4)
    assert [s.config["x"] for s in drain(gen, limit=2)] == [0, 1]
    gen.save_to_dir(str(tmp_path), "s")
    assert gen.has_checkpoint(str(tmp_path))
    restored = SearchGenerator(ListSearcher(configs))
    restored.restore_from_dir(str(tmp_path))
    restored.add_configurations({"c": 1}, num_samples=4)
    rest = drain(restored)
    assert [s.config for s in rest] == [{"c": 1, "x": 2}, {"c": 1, "x": 3}]
    assert rest[0].experiment_tag == "3_c=1,x=2"
    assert restored.is_finished()


# -------------------------------------------------------- ConcurrencyLimiter


def test_concurrency_limiter_limits_live_trials():
    searcher = ListSearcher([{"x": i} for i in range(5)])
    limiter = ConcurrencyLimiter(searcher, max_concurrent=2)
    assert (limiter.metric, limiter.mode) == ("loss", "min")
    limiter.set_search_properties("loss", "min", {})
    assert limiter.suggest("a") == {"x": 0}
    assert limiter.suggest("b") == {"x": 1}
    assert limiter.suggest("c") is None
    limiter.on_trial_complete("a", {"loss": 1})
    assert searcher.completed == [("a", {"loss": 1}, False)]
    assert limiter.suggest("c") == {"x": 2}
    limiter.on_trial_complete("unknown", {"loss": 3})  # not one of ours: ignored
    assert len(searcher.completed) == 1


def test_concurrency_limiter_batch_reports_when_the_batch_is_done():
    searcher = ListSearcher([{"x": i} for i in range(4)])
    limiter = ConcurrencyLimiter(searcher, max_concurrent=2, batch=True)
    limiter.suggest("a"), limiter.suggest("b")
    limiter.on_trial_complete("a", {"loss": 1})
    assert searcher.completed == []
    assert limiter.suggest("c") is None  # batch not over yet
    limiter.on_trial_complete("b", {"loss": 2})
    assert [c[0] for c in searcher.completed] == ["a", "b"]
    assert limiter.suggest("c") == {"x": 2}


def test_concurrency_limiter_passes_through_a_self_limiting_searcher():
    searcher = SelfLimitingSearcher([{"x": i} for i in range(3)])
    limiter = ConcurrencyLimiter(searcher, max_concurrent=1)
    limiter.set_search_properties("loss", "min", {})
    assert searcher.own_limit == 1
    assert [limiter.suggest(t) for t in "abc"] == [{"x": 0}, {"x": 1}, {"x": 2}]


def test_concurrency_limiter_through_search_generator_and_finished():
    gen = SearchGenerator(ConcurrencyLimiter(ListSearcher([{"x": 1}, {"x": 2}]), max_concurrent=1))
    gen.add_configurations({}, num_samples=-1)
    assert gen.next_trial("a").config == {"x": 1}
    assert gen.next_trial("b") is None and not gen.is_finished()
    gen.on_trial_complete("a", {"loss": 0})
    assert gen.next_trial("b").config == {"x": 2}
    gen.on_trial_complete("b", {"loss": 0})
    assert gen.next_trial("c") is None and gen.is_finished()


def test_concurrency_limiter_validation_and_state(tmp_path):
    with pytest.raises(ValueError, match=r"`max_concurrent` must be a positive integer, got 0"):
        ConcurrencyLimiter(ListSearcher([]), max_concurrent=0)
    with pytest.raises(TypeError, match="must be a tune Searcher"):
        ConcurrencyLimiter(object(), max_concurrent=1)
    limiter = ConcurrencyLimiter(ListSearcher([{"x": 1}, {"x": 2}]), max_concurrent=1)
    limiter.suggest("a")
    limiter.save_to_dir(str(tmp_path))
    restored = ConcurrencyLimiter(ListSearcher([]), max_concurrent=1)
    restored.restore_from_dir(str(tmp_path))
    assert restored.suggest("b") is None  # "a" is still live
    restored.on_trial_complete("a", {"loss": 1})
    assert restored.suggest("b") == {"x": 2}


# ---------------------------------------------------------------- Repeater


def test_repeater_repeats_and_reports_the_mean():
    searcher = ListSearcher([{"x": 1}, {"x": 2}])
    repeater = Repeater(searcher, repeat=3)
    configs = [repeater.suggest(f"t{i}") for i in range(6)]
    assert configs[:3] == [{"x": 1, "__trial_index__": i} for i in range(3)]
    assert configs[3:] == [{"x": 2, "__trial_index__": i} for i in range(3)]
    assert repeater.suggest("t6") == Searcher.FINISHED

    repeater.on_trial_complete("t1", {"loss": 2.0})
    repeater.on_trial_complete("t0", {"loss": 1.0})
    assert searcher.completed == []
    repeater.on_trial_complete("t2", {"loss": 6.0})
    assert searcher.completed == [("t0", {"loss": 3.0}, False)]

    repeater.on_trial_complete("t3", {"loss": 4.0})
    repeater.on_trial_complete("t4", None, error=True)  # no metric: left out of the mean
    repeater.on_trial_complete("t5", {"loss": 8.0})
    assert searcher.completed[1] == ("t3", {"loss": 6.0}, False)


def test_repeater_all_failed_reports_error_and_nan():
    searcher = ListSearcher([{"x": 1}])
    repeater = Repeater(searcher, repeat=2, set_index=False)
    assert repeater.suggest("a") == {"x": 1}
    assert repeater.suggest("b") == {"x": 1}
    repeater.on_trial_complete("a", error=True)
    repeater.on_trial_complete("b", error=True)
    trial_id, result, error = searcher.completed[0]
    assert trial_id == "a" and error and math.isnan(result["loss"])


def test_repeater_with_search_generator_warns_on_uneven_num_samples():
    gen = SearchGenerator(Repeater(ListSearcher([{"x": 1}, {"x": 2}]), repeat=2))
    with pytest.warns(UserWarning, match="not a multiple of Repeater's repeat=2"):
        gen.add_configurations({}, num_samples=3)
    assert [s.config["x"] for s in drain(gen)] == [1, 1, 2]


def test_repeater_validation():
    with pytest.raises(ValueError, match=r"`repeat` must be a positive integer, got 0"):
        Repeater(ListSearcher([]), repeat=0)


class RayStyleSaving(ListSearcher):
    """A user's searcher that writes its own file format in save()/restore(), as Ray's docs show."""

    def save(self, checkpoint_path):
        import json

        with open(checkpoint_path, "w") as f:
            json.dump({"position": self.position, "completed": len(self.completed)}, f)

    def restore(self, checkpoint_path):
        import json

        with open(checkpoint_path) as f:
            data = json.load(f)
        self.position, self.restored_completed = data["position"], data["completed"]


@pytest.mark.parametrize("limit", ["max_concurrent_trials", "ConcurrencyLimiter"])
def test_restore_from_dir_of_a_run_whose_searcher_was_wrapped(tmp_path, limit):
    """Seed 004: `search_alg2 = ...; search_alg2.restore_from_dir(experiment_dir)`, after a run that
    limited concurrency: the searcher gets back its own saved state."""
    from tunesmith.tune.search.optuna import OptunaSearch

    configs = [{"x": i} for i in range(4)]
    searcher = RayStyleSaving(configs)
    search_alg = ConcurrencyLimiter(searcher, max_concurrent=2) if limit == "ConcurrencyLimiter" else searcher
    tune.Tuner(lambda config: {"loss": config["x"]}, param_space={},
               tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=4,
                                           max_concurrent_trials=2 if limit != "ConcurrencyLimiter" else None),
               run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    again = RayStyleSaving(configs)
    again.restore_from_dir(str(tmp_path / "exp"))
    assert (again.position, again.restored_completed) == (4, 4)

    optuna_first = OptunaSearch(seed=1)
    tune.Tuner(lambda config: {"loss": config["x"] ** 2}, param_space={"x": tune.uniform(-1, 1)},
               tune_config=tune.TuneConfig(search_alg=optuna_first, metric="loss", mode="min", num_samples=3,
                                           max_concurrent_trials=2),
               run_config=tune.RunConfig(name="optuna", storage_path=str(tmp_path), verbose=0)).fit()
    optuna_again = OptunaSearch()
    optuna_again.restore_from_dir(str(tmp_path / "optuna"))
    assert (optuna_again.metric, optuna_again.mode) == ("loss", "min")
    assert len(optuna_again._study.trials) == 3


def test_a_wrapper_restores_from_its_searchers_own_file(tmp_path):
    searcher = ListSearcher([{"x": 1}, {"x": 2}])
    searcher.suggest("a")
    searcher.save(str(tmp_path / "inner.pkl"))
    limiter = ConcurrencyLimiter(ListSearcher([{"x": 1}, {"x": 2}]), max_concurrent=1)
    limiter.restore(str(tmp_path / "inner.pkl"))
    assert limiter.searcher.position == 1


def test_max_concurrent_trials_and_a_concurrency_limiter_that_disagree_are_an_error():
    with pytest.raises(ValueError, match="disagree"):
        tune.Tuner(lambda config: {"loss": 1}, param_space={},
                   tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(ListSearcher([{}]), max_concurrent=2),
                                               max_concurrent_trials=5)).fit()


# ---------------------------------------------------------------- what searchers are told in a run


def test_a_nested_metric_reaches_the_searcher_when_a_trial_completes(tmp_path):
    """With metric="val/loss" and results {"val": {"loss": v}}, on_trial_complete got no value, so no
    searcher learned anything (Ray gives searchers the flattened result)."""
    searcher = ListSearcher([{"x": 1}, {"x": 2}], metric="val/loss")
    tune.Tuner(lambda config: tune.report({"val": {"loss": float(config["x"])}}), param_space={},
               tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2),
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(result["val/loss"] for _, result, _ in searcher.completed) == [1.0, 2.0]
    assert [result["val/loss"] for _, result in searcher.results] in ([1.0, 2.0], [2.0, 1.0])


def _fails_after_reporting(config):
    tune.report({"loss": 1000.0})
    if config["x"] == 2:
        raise RuntimeError("fails after a report")


def test_a_failed_trials_partial_result_is_not_its_outcome(tmp_path):
    searcher = ListSearcher([{"x": 1}, {"x": 2}, {"x": 3}])
    repeated = ListSearcher([{"x": 1}])
    for alg in (searcher, Repeater(repeated, repeat=3, set_index=True)):
        space = {} if alg is searcher else {"x": tune.sample_from(lambda spec: spec.config["__trial_index__"] + 1)}
        tune.Tuner(_fails_after_reporting, param_space=space,
                   tune_config=tune.TuneConfig(search_alg=alg, num_samples=3),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    # As on Ray: the failed trial completes with result=None, and a repeat group's mean leaves it out.
    assert sorted((r is None, e) for _, r, e in searcher.completed) == [(False, False), (False, False), (True, True)]
    assert [(r, e) for _, r, e in repeated.completed] == [({"loss": 1000.0}, False)]


def test_a_repeater_forwards_only_its_groups_and_lets_a_limiter_count_trials(tmp_path):
    import json
    import time

    log = tmp_path / "spans.jsonl"

    def slow(config):
        start = time.time()
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(json.dumps([start, time.time()]) + "\n")
        tune.report({"loss": config["x"]})

    inner = SelfLimitingSearcher([{"x": 1}, {"x": 2}])
    limiter = ConcurrencyLimiter(Repeater(inner, repeat=3), max_concurrent=2)
    tune.Tuner(tune.with_resources(slow, {"cpu": 0.1}), param_space={},
               tune_config=tune.TuneConfig(search_alg=limiter, num_samples=6),
               run_config=tune.RunConfig(storage_path=str(tmp_path / "r"), verbose=0)).fit()
    spans = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(spans) == 6
    # The limiter limits trials: the wrapped searcher would have counted repeat groups.
    assert max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans) <= 2
    assert inner.results == []  # the repeats' ids were never ones it suggested
    assert sorted(r["loss"] for _, r, _ in inner.completed) == [1.0, 2.0]


def test_a_wrapped_searcher_with_its_own_file_format_restores(tmp_path):
    configs = [{"x": i} for i in range(3)]
    limiter = ConcurrencyLimiter(RayStyleSaving(configs), max_concurrent=1)
    tune.Tuner(lambda config: {"loss": config["x"]}, param_space={},
               tune_config=tune.TuneConfig(search_alg=limiter, num_samples=3),
               run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    # As on Ray, the limiter's file is the searcher's own: the searcher alone restores from it.
    limiter.save(str(tmp_path / "saved"))
    alone = RayStyleSaving(configs)
    alone.restore(str(tmp_path / "saved"))
    assert (alone.position, alone.restored_completed) == (3, 3)
    again = ConcurrencyLimiter(RayStyleSaving(configs), max_concurrent=1)
    again.restore_from_dir(str(tmp_path / "exp"))
    assert again.searcher.position == 3
    restored = tune.Tuner.restore(str(tmp_path / "exp"), lambda config: {"loss": config["x"]}).fit()
    assert len(restored) == 3 and restored.num_errors == 0


class TwoObjectives(ListSearcher):
    def __init__(self, configs):
        Searcher.__init__(self, metric=["a", "b"], mode=["min", "max"])
        ListSearcher.__init__(self, configs, metric=["a", "b"], mode=["min", "max"])


def test_a_multi_objective_searcher_takes_lists_of_metrics_and_modes(tmp_path):
    searcher = TwoObjectives([{"x": 1}, {"x": 2}])
    grid = tune.Tuner(lambda config: {"a": config["x"], "b": -config["x"]}, param_space={},
                      tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert len(grid) == 2 and (searcher.metric, searcher.mode) == (["a", "b"], ["min", "max"])
    with pytest.raises(ValueError, match="'min' or 'max'"):
        Searcher(metric=["a", "b"], mode=["min", "up"])


def _counts(config):
    for i in range(10):
        tune.report({"loss": 1.0 / (i + 1)})


def test_the_result_a_trial_stops_at_reaches_the_searcher_once():
    """As on Ray: on_trial_result is for results of a trial that goes on; the stopping one came to
    on_trial_result and again to on_trial_complete."""
    searcher = ListSearcher([{"x": 1}])
    tune.Tuner(_counts, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=1),
               run_config=tune.RunConfig(verbose=0, stop={"training_iteration": 3})).fit()
    assert [r["training_iteration"] for _, r in searcher.results] == [1, 2]
    assert [r["training_iteration"] for _, r, _ in searcher.completed] == [3]
