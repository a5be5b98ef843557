"""BasicVariantGenerator: random and grid search as the driver sees it."""
from __future__ import annotations

import numpy as np
import pytest

from tunesmith import tune
from tunesmith.tune.search import BasicVariantGenerator, SearchAlgorithm, TrialSuggestion, create_searcher


def drain(algo: BasicVariantGenerator, limit: int = 10_000) -> list[TrialSuggestion]:
    out = []
    for i in range(limit):
        suggestion = algo.next_trial(f"t{i}")
        if suggestion is None:
            break
        out.append(suggestion)
    return out


def run(space: dict, num_samples: int, **kwargs) -> list[TrialSuggestion]:
    algo = BasicVariantGenerator(**kwargs)
    algo.add_configurations(space, num_samples=num_samples)
    suggestions = drain(algo)
    assert algo.is_finished()
    assert algo.total_samples == len(suggestions)
    return suggestions


@pytest.mark.parametrize(
    "space, num_samples, expected",
    [
        ({"x": tune.choice([0, 1, 2])}, 13, 13),
        ({"x": tune.choice([0, 1, 2]), "y": tune.randn(0, 1)}, 13, 13),
        ({"x": tune.grid_search([1, 2, 3, 4])}, 1, 4),
        ({"x": tune.grid_search([1, 2, 3])}, 1, 3),
        ({"x": tune.grid_search([1, 2, 3])}, 2, 6),
        ({"x": tune.grid_search([1, 2, 3]), "y": tune.grid_search(["a", "b", "c"])}, 1, 9),
        ({"x": tune.grid_search([1, 2, 3]), "y": tune.grid_search(["a", "b", "c"])}, 2, 18),
        ({"x": tune.grid_search([1, 2, 3]), "y": tune.grid_search(["a", "b", "c"])}, 5, 45),
        ({"x": tune.sample_from(lambda _: np.random.uniform()), "y": tune.grid_search(["a", "b", "c"])}, 2, 6),
        (
            {
                "alpha": tune.sample_from(lambda spec: np.random.uniform(100)),
                "beta": tune.sample_from(lambda spec: spec.config.alpha * np.random.normal()),
                "nn_layers": [tune.grid_search([16, 64, 256]), tune.grid_search([16, 64, 256])],
            },
            10,
            90,
        ),
    ],
)
def test_number_of_configs_matches_the_documented_counts(space, num_samples, expected):
    suggestions = run(space, num_samples)
    assert len(suggestions) == expected


def test_num_samples_repeats_the_whole_grid_in_order():
    suggestions = run({"x": tune.grid_search([1, 2, 3]), "y": tune.grid_search(["a", "b"])}, 2)
    pairs = [(s.config["x"], s.config["y"]) for s in suggestions]
    one_grid = [(1, "a"), (2, "a"), (3, "a"), (1, "b"), (2, "b"), (3, "b")]
    assert pairs == one_grid + one_grid


def test_random_values_are_resampled_per_trial():
    suggestions = run({"x": tune.uniform(0, 1)}, 13, random_state=0)
    assert len({s.config["x"] for s in suggestions}) == 13


def test_conditional_beta_depends_on_alpha():
    suggestions = run(
        {
            "alpha": tune.uniform(1, 2),
            "beta": tune.sample_from(lambda spec: spec.config.alpha * 10),
        },
        5,
        random_state=1,
    )
    assert all(s.config["beta"] == pytest.approx(s.config["alpha"] * 10) for s in suggestions)


def test_tags_and_evaluated_params():
    suggestions = run(
        {"x": tune.grid_search([1, 2]), "opt": {"lr": tune.choice([0.5])}, "const": "c"}, 1
    )
    assert [s.experiment_tag for s in suggestions] == ["0_lr=0.5,x=1", "1_lr=0.5,x=2"]
    assert suggestions[0].evaluated_params == {"x": 1, "opt/lr": 0.5}
    assert suggestions[1].config == {"x": 2, "opt": {"lr": 0.5}, "const": "c"}


def test_constant_space_gives_plain_index_tags():
    suggestions = run({"a": 1}, 3)
    assert [s.experiment_tag for s in suggestions] == ["0", "1", "2"]
    assert all(s.config == {"a": 1} and s.evaluated_params == {} for s in suggestions)


def test_same_seed_gives_same_configs():
    space = {"a": tune.uniform(0, 1), "b": tune.randint(0, 1000), "g": tune.grid_search([1, 2])}
    first = [s.config for s in run(space, 4, random_state=123)]
    second = [s.config for s in run(space, 4, random_state=123)]
    third = [s.config for s in run(space, 4, random_state=np.random.default_rng(123))]
    different = [s.config for s in run(space, 4, random_state=124)]
    assert first == second == third
    assert first != different


def test_global_numpy_seed_is_used_without_random_state():
    space = {"a": tune.uniform(0, 1)}
    np.random.seed(5)
    first = [s.config for s in run(space, 3)]
    np.random.seed(5)
    assert [s.config for s in run(space, 3)] == first


def test_unlimited_samples_until_the_driver_stops_asking():
    algo = BasicVariantGenerator(random_state=0)
    algo.add_configurations({"x": tune.grid_search([1, 2]), "u": tune.uniform(0, 1)}, num_samples=-1)
    assert algo.total_samples is None
    suggestions = [algo.next_trial(f"t{i}") for i in range(101)]
    assert all(s is not None for s in suggestions)
    assert [s.config["x"] for s in suggestions[:4]] == [1, 2, 1, 2]
    assert not algo.is_finished()


def test_max_concurrent_limits_live_trials():
    algo = BasicVariantGenerator(max_concurrent=2)
    algo.add_configurations({"x": tune.grid_search([1, 2, 3, 4, 5])})
    a, b = algo.next_trial("a"), algo.next_trial("b")
    assert a.config["x"] == 1 and b.config["x"] == 2
    assert algo.next_trial("c") is None
    assert not algo.is_finished()
    algo.on_trial_complete("a", {"loss": 1.0})
    assert algo.next_trial("c").config["x"] == 3
    assert algo.next_trial("d") is None
    algo.on_trial_complete("b", error=True)
    algo.on_trial_complete("c")
    assert [algo.next_trial("d").config["x"], algo.next_trial("e").config["x"]] == [4, 5]
    algo.on_trial_complete("d")
    assert algo.next_trial("f") is None
    assert algo.is_finished()


def test_points_to_evaluate_run_first_and_count_as_samples():
    points = [{"a": 0.25}, {"a": 0.75, "b": 7}]
    algo = BasicVariantGenerator(points_to_evaluate=points, random_state=0)
    algo.add_configurations({"a": tune.uniform(0, 1), "b": tune.randint(0, 5), "c": "const"}, num_samples=4)
    assert algo.total_samples == 4
    suggestions = drain(algo)
    assert len(suggestions) == 4
    assert suggestions[0].config["a"] == 0.25 and suggestions[0].config["b"] in range(5)
    assert suggestions[1].config == {"a": 0.75, "b": 7, "c": "const"}
    assert suggestions[1].experiment_tag == "1_a=0.75,b=7"
    assert suggestions[1].evaluated_params == {"a": 0.75, "b": 7}
    assert all(s.config["a"] not in (0.25, 0.75) for s in suggestions[2:])


def test_points_to_evaluate_with_a_grid_and_more_points_than_samples():
    points = [{"a": 1}, {"a": 2}, {"a": 3}]
    algo = BasicVariantGenerator(points_to_evaluate=points)
    algo.add_configurations({"a": tune.randint(0, 10), "g": tune.grid_search(["x", "y"])}, num_samples=2)
    suggestions = drain(algo)
    assert algo.total_samples == 6
    assert [(s.config["a"], s.config["g"]) for s in suggestions] == [
        (1, "x"), (1, "y"), (2, "x"), (2, "y"), (3, "x"), (3, "y")
    ]


def test_points_to_evaluate_unknown_key_is_rejected_up_front():
    algo = BasicVariantGenerator(points_to_evaluate=[{"nope": 1}])
    with pytest.raises(ValueError, match="'nope', which is not a key of the param space"):
        algo.add_configurations({"a": tune.uniform(0, 1)})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points_to_evaluate": {"a": 1}}, "`points_to_evaluate` must be a list of dicts"),
        ({"max_concurrent": -1}, r"`max_concurrent` must be an integer >= 0.*got -1"),
        ({"random_state": "seed"}, "`random_state` must be None, an int seed"),
    ],
)
def test_invalid_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BasicVariantGenerator(**kwargs)


@pytest.mark.parametrize("num_samples", [0, -2, 1.5])
def test_invalid_num_samples(num_samples):
    with pytest.raises(ValueError, match="`num_samples` must be a positive integer or -1"):
        BasicVariantGenerator().add_configurations({}, num_samples=num_samples)


def test_save_and_restore_midway_gives_the_same_remaining_configs(tmp_path):
    space = {
        "x": tune.grid_search([1, 2, 3]),
        "u": tune.uniform(0, 1),
        "f": tune.sample_from(lambda spec: spec.config.u + spec.config.x),
    }
    reference = BasicVariantGenerator(random_state=9)
    reference.add_configurations(space, num_samples=3)
    expected = drain(reference)
    assert len(expected) == 9

    algo = BasicVariantGenerator(random_state=9, max_concurrent=5)
    algo.add_configurations(space, num_samples=3)
    first = [algo.next_trial(f"t{i}") for i in range(4)]
    algo.on_trial_complete("t0")
    assert not algo.has_checkpoint(str(tmp_path))
    algo.save_to_dir(str(tmp_path), session_str="2024-01-01_00-00-00")
    assert algo.has_checkpoint(str(tmp_path))
    assert algo.next_trial("lost") is not None  # created after the save, then lost in a crash

    restored = BasicVariantGenerator(random_state=9, max_concurrent=5)
    restored.restore_from_dir(str(tmp_path))
    restored.add_configurations(space, num_samples=3)  # the driver adds the space again; ignored
    assert restored.total_samples == 9
    # t1..t3 are still live: only two slots are free
    rest = [restored.next_trial("t4"), restored.next_trial("t5")]
    assert restored.next_trial("t6") is None
    for tid in ("t1", "t2", "t3", "t4", "t5"):
        restored.on_trial_complete(tid)
    rest += drain(restored)
    got = first + rest
    assert [s.config for s in got] == [s.config for s in expected]
    assert [s.experiment_tag for s in got] == [s.experiment_tag for s in expected]
    assert restored.is_finished()


def test_restore_with_constant_grid_search_midway(tmp_path):
    space = {"x": tune.grid_search([1, 2, 3]), "u": tune.uniform(0, 1)}
    reference = BasicVariantGenerator(constant_grid_search=True, random_state=4)
    reference.add_configurations(space, num_samples=2)
    expected = [s.config for s in drain(reference)]
    assert len({c["u"] for c in expected[:3]}) == 1

    algo = BasicVariantGenerator(constant_grid_search=True, random_state=4)
    algo.add_configurations(space, num_samples=2)
    head = [algo.next_trial(f"t{i}").config for i in range(2)]
    algo.save_to_dir(str(tmp_path))
    restored = BasicVariantGenerator()
    restored.add_configurations(space, num_samples=2)
    restored.restore_from_dir(str(tmp_path))  # after add_configurations works too
    assert head + [s.config for s in drain(restored)] == expected


def test_restore_without_state_raises(tmp_path):
    with pytest.raises(RuntimeError, match="no saved state"):
        BasicVariantGenerator().restore_from_dir(str(tmp_path))


def test_is_a_search_algorithm_and_created_by_name():
    assert isinstance(BasicVariantGenerator(), SearchAlgorithm)
    algo = create_searcher("variant_generator", max_concurrent=3, metric="ignored")
    assert isinstance(algo, BasicVariantGenerator) and algo.max_concurrent == 3
    assert isinstance(create_searcher("Random"), BasicVariantGenerator)
    with pytest.raises(ValueError, match=r"'nosuch'.*must be one of \[.*'random', 'variant_generator'"):
        create_searcher("nosuch")


def test_tune_namespace_exports_the_space_functions():
    assert tune.grid_search([1]) == {"grid_search": [1]}
    assert isinstance(tune.create_searcher("random"), BasicVariantGenerator)
    assert tune.sample_from(lambda: 1).sample() == 1
