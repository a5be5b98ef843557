"""Search space domains and resolving param spaces into configs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tunesmith import tune
from tunesmith.tune.search.basic_variant import BasicVariantGenerator
from tunesmith.tune.search.sample import Categorical, Float, Integer, LogUniform, Normal, Quantized, Uniform
from tunesmith.tune.search.variant_generator import (
    apply_point,
    flatten_dict,
    format_vars,
    generate_variants,
    has_unresolved_values,
    make_experiment_tag,
    parse_spec_vars,
    unflatten_dict,
)

N = 3000


def _is_multiple(value, q, tol=1e-9):
    return abs(value / q - round(value / q)) < tol


def test_randint_upper_is_exclusive_and_all_values_reached():
    values = tune.randint(-9, 15).sample(size=N, random_state=0)
    assert all(isinstance(v, int) for v in values)
    assert set(values) == set(range(-9, 15))


def test_qrandint_upper_is_inclusive_and_values_are_multiples():
    values = tune.qrandint(-21, 12, 3).sample(size=N, random_state=0)
    assert all(isinstance(v, int) for v in values)
    assert set(values) == set(range(-21, 13, 3))


def test_qrandint_with_q_1_is_randint():
    values = tune.qrandint(0, 5).sample(size=N, random_state=0)
    assert set(values) == {0, 1, 2, 3, 4}


def test_lograndint_and_qlograndint_bounds():
    values = tune.lograndint(1, 10).sample(size=N, random_state=0)
    assert set(values) == set(range(1, 10))
    # log sampling favours small values
    assert values.count(1) > values.count(9)
    q_values = tune.qlograndint(1, 10, 2).sample(size=N, random_state=0)
    assert set(q_values) == {2, 4, 6, 8, 10}


def test_uniform_and_quniform():
    values = tune.uniform(-5, -1).sample(size=N, random_state=0)
    assert all(-5 <= v <= -1 for v in values)
    assert all(isinstance(v, float) for v in values)
    q_values = tune.quniform(3.2, 5.4, 0.2).sample(size=N, random_state=0)
    assert all(isinstance(v, float) for v in q_values)
    assert all(_is_multiple(v, 0.2) for v in q_values)
    assert all(3.2 - 1e-9 <= v <= 5.4 + 1e-9 for v in q_values)
    # multiples are exact decimals, not 3.4000000000000004
    assert set(q_values) == {round(3.2 + 0.2 * i, 1) for i in range(12)}


@pytest.mark.parametrize("domain, values", [
    (tune.quniform(0.1, 0.7, 0.1), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
    (tune.quniform(0.0, 0.3, 0.1), [0.0, 0.1, 0.2, 0.3]),
    (tune.quniform(0.07, 0.12, 0.01), [0.07, 0.08, 0.09, 0.1, 0.11, 0.12]),
    (tune.quniform(2.1, 3.0, 0.3), [2.1, 2.4, 2.7, 3.0]),
    (tune.qloguniform(0.1, 0.7, 0.1), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
])
def test_a_bound_that_is_a_multiple_of_q_up_to_float_error_is_sampled(domain, values):
    """0.7 / 0.1 is 6.999...: the upper bound 0.7 was never drawn (nor 0.07 of 0.07 / 0.01 = 7.000...1),
    by the default sampler or any library searcher, and a points_to_evaluate value there was refused."""
    assert sorted(set(domain.sample(size=N, random_state=0))) == values


def test_loguniform_and_qloguniform():
    values = tune.loguniform(1e-4, 1e-2).sample(size=N, random_state=0)
    assert all(1e-4 <= v <= 1e-2 for v in values)
    # log-uniform: about half the mass below the geometric mean 1e-3
    below = sum(v < 1e-3 for v in values) / N
    assert 0.45 < below < 0.55
    base2 = tune.loguniform(1, 1024, base=2).sample(size=N, random_state=0)
    assert all(1 <= v <= 1024 for v in base2)
    q_values = tune.qloguniform(1e-4, 1e-1, 5e-5).sample(size=N, random_state=0)
    assert all(_is_multiple(v, 5e-5, 1e-6) for v in q_values)
    assert all(1e-4 <= v <= 1e-1 for v in q_values)


def test_randn_and_qrandn():
    values = np.array(tune.randn(10, 2).sample(size=N, random_state=0))
    assert abs(values.mean() - 10) < 0.2
    assert abs(values.std() - 2) < 0.2
    q_values = tune.qrandn(10, 2, 0.2).sample(size=N, random_state=0)
    assert all(_is_multiple(v, 0.2) for v in q_values)


def test_choice_returns_the_objects_given():
    marker = object()
    values = tune.choice(["a", 2, marker]).sample(size=300, random_state=0)
    assert {"a", 2} <= set(v for v in values if v is not marker)
    assert any(v is marker for v in values)


def test_sample_size_one_returns_a_scalar():
    assert isinstance(tune.uniform(0, 1).sample(), float)
    assert isinstance(tune.randint(0, 3).sample(), int)


def test_same_seed_same_samples_with_generator_and_randomstate():
    for make in (np.random.default_rng, np.random.RandomState):
        a = tune.uniform(0, 1).sample(size=5, random_state=make(7))
        b = tune.uniform(0, 1).sample(size=5, random_state=make(7))
        assert a == b
    assert tune.randint(0, 1000).sample(size=5, random_state=3) == tune.randint(0, 1000).sample(
        size=5, random_state=3
    )


def test_domain_builder_methods_like_ray():
    dom = Float(1e-3, 1.0).loguniform().quantized(1e-3)
    assert isinstance(dom.get_sampler(), Quantized)
    assert isinstance(dom.get_sampler().get_sampler(), LogUniform)
    assert isinstance(Integer(0, 5).uniform().get_sampler(), Uniform)
    normal = Float(None, None).normal(1.0, 3.0).get_sampler()
    assert isinstance(normal, Normal) and (normal.mean, normal.sd) == (1.0, 3.0)
    cat = Categorical([1, 2]).grid()
    assert cat.is_grid() and len(cat) == 2 and cat[1] == 2
    with pytest.raises(ValueError, match="only choose one sampler"):
        Float(0.5, 1).uniform().loguniform()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: tune.loguniform(0, 1), r"loguniform: `lower` must be > 0.*got 0"),
        (lambda: tune.loguniform(-1, 1), r"loguniform: `lower` must be > 0"),
        (lambda: tune.loguniform(1e-2, 1e-4), r"`lower` must be less than `upper`"),
        (lambda: tune.loguniform(1e-4, 1e-2, base=1), r"`base` must be > 0 and != 1"),
        (lambda: tune.uniform(2, 1), r"uniform: `lower` must be less than `upper`.*lower=2, upper=1"),
        (lambda: tune.uniform("a", 1), r"uniform: `lower` must be a number, got 'a'"),
        (lambda: tune.quniform(0, 1, 0), r"quniform: `q` must be > 0, got 0"),
        (lambda: tune.quniform(0.1, 0.2, 1), r"lower bound 0.1 is not divisible by the quantization factor q=1"),
        (lambda: tune.qloguniform(0, 1, 0.1), r"qloguniform: `lower` must be > 0"),
        (lambda: tune.randn(0, 0), r"randn: `sd` must be > 0, got 0"),
        (lambda: tune.randn(0, -1), r"randn: `sd` must be > 0, got -1"),
        (lambda: tune.randn([0, 1], 1), r"randn: `mean` must be a number"),
        (lambda: tune.qrandn(0, 1, -0.5), r"qrandn: `q` must be > 0"),
        (lambda: tune.randint(5, 5), r"randint: `lower` must be less than `upper`"),
        (lambda: tune.randint(0.5, 5), r"randint: `lower` must be an integer, got 0.5"),
        (lambda: tune.qrandint(0, 10, 0), r"qrandint: `q` must be a positive integer, got 0"),
        (lambda: tune.qrandint(0, 10, 2.5), r"qrandint: `q` must be a positive integer"),
        (lambda: tune.qrandint(1, 2, 5), r"no multiple of `q`=5"),
        (lambda: tune.lograndint(0, 10), r"lograndint: `lower` must be > 0"),
        (lambda: tune.qlograndint(0, 10, 2), r"qlograndint: `lower` must be > 0"),
        (lambda: tune.choice([]), r"choice: `categories` must not be empty"),
        (lambda: tune.choice("abc"), r"choice: `categories` must be a list"),
        (lambda: tune.sample_from(3), r"sample_from: `func` must be callable"),
        (lambda: tune.sample_from(lambda a, b: 1), r"sample_from: `func` must accept no argument or one"),
        (lambda: tune.grid_search([]), r"grid_search: `values` must not be empty"),
        (lambda: tune.grid_search(5), r"grid_search: `values` must be a list"),
    ],
)
def test_invalid_domains_raise_value_error_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_grid_search_marker():
    assert tune.grid_search([1, 2]) == {"grid_search": [1, 2]}
    assert tune.grid_search(range(3)) == {"grid_search": [0, 1, 2]}


def test_constants_nested_dicts_and_lists_are_resolved():
    space = {
        "const": "hello",
        "obj": {"nested": {"lr": tune.uniform(0, 1), "name": "adam"}},
        "layers": [tune.randint(1, 4), 7, {"units": tune.choice([8, 16])}],
        "empty": {},
    }
    [(resolved, config)] = list(generate_variants(space, random_state=0))
    assert config["const"] == "hello"
    assert config["obj"]["nested"]["name"] == "adam"
    assert 0 <= config["obj"]["nested"]["lr"] <= 1
    assert config["layers"][0] in (1, 2, 3) and config["layers"][1] == 7
    assert config["layers"][2]["units"] in (8, 16)
    assert config["empty"] == {}
    assert set(resolved) == {("obj", "nested", "lr"), ("layers", 0), ("layers", 2, "units")}
    # the space itself is untouched
    assert isinstance(space["obj"]["nested"]["lr"], Float)


def test_grid_is_a_cartesian_product_first_parameter_fastest():
    space = {"x": tune.grid_search([1, 2, 3]), "y": tune.grid_search(["a", "b"])}
    configs = [c for _, c in generate_variants(space)]
    assert configs == [
        {"x": 1, "y": "a"}, {"x": 2, "y": "a"}, {"x": 3, "y": "a"},
        {"x": 1, "y": "b"}, {"x": 2, "y": "b"}, {"x": 3, "y": "b"},
    ]


def test_nested_grid_search_in_a_list():
    space = {"nn_layers": [tune.grid_search([16, 64, 256]), tune.grid_search([16, 64, 256])]}
    configs = [c["nn_layers"] for _, c in generate_variants(space)]
    assert len(configs) == 9 and len({tuple(c) for c in configs}) == 9


def test_grid_option_with_its_own_grid_and_domain():
    space = {"model": tune.grid_search([{"kind": "a", "w": tune.grid_search([1, 2])}, {"kind": "b", "u": tune.uniform(0, 1)}])}
    configs = [c["model"] for _, c in generate_variants(space, random_state=0)]
    assert [c["kind"] for c in configs] == ["a", "a", "b"]
    assert [c.get("w") for c in configs[:2]] == [1, 2]
    assert 0 <= configs[2]["u"] <= 1


def test_sample_from_reads_other_values_in_dependency_order():
    space = {
        # declared before the value it reads
        "b": tune.sample_from(lambda spec: spec.config.a * 2),
        "c": tune.sample_from(lambda spec: spec.config.b + spec["config"]["nested"]["d"]),
        "a": tune.sample_from(lambda spec: spec.config.x + 1),
        "x": tune.grid_search([10, 20]),
        "nested": {"d": tune.randint(100, 101)},
        "no_arg": tune.sample_from(lambda: "plain"),
        "listy": tune.sample_from(lambda spec: list(spec.config.layers)),
        "layers": [tune.choice([5]), 6],
    }
    configs = [c for _, c in generate_variants(space)]
    assert [(c["x"], c["a"], c["b"], c["c"]) for c in configs] == [(10, 11, 22, 122), (20, 21, 42, 142)]
    assert all(c["no_arg"] == "plain" and c["listy"] == [5, 6] for c in configs)


def test_sample_from_cycle_is_a_clear_error():
    space = {"a": tune.sample_from(lambda s: s.config.b), "b": tune.sample_from(lambda s: s.config.a)}
    with pytest.raises(ValueError, match=r"'a' needs 'b', 'b' needs 'a'.*cycle"):
        list(generate_variants(space))


def test_sample_from_missing_key_names_the_available_keys():
    space = {"a": 1, "b": tune.sample_from(lambda s: s.config.nope)}
    with pytest.raises(AttributeError, match=r"no key 'nope'.*\['a', 'b'\]"):
        list(generate_variants(space))


def test_constant_grid_search_keeps_random_values_across_grid():
    space = {
        "x": tune.grid_search([1, 2, 3]),
        "u": tune.uniform(0, 1),
        "f": tune.sample_from(lambda s: np.random.uniform()),
        "g": tune.sample_from(lambda s: s.config.x * 2),
    }
    constant = [c for _, c in generate_variants(space, constant_grid_search=True, random_state=0)]
    assert len({c["u"] for c in constant}) == 1
    assert len({c["f"] for c in constant}) == 1
    assert [c["g"] for c in constant] == [2, 4, 6]
    varying = [c for _, c in generate_variants(space, random_state=0)]
    assert len({c["u"] for c in varying}) == 3


def test_generate_variants_reproducible_with_seed():
    space = {"a": tune.uniform(0, 1), "b": tune.choice(list(range(100))), "g": tune.grid_search([1, 2])}
    first = [c for _, c in generate_variants(space, random_state=42)]
    second = [c for _, c in generate_variants(space, random_state=42)]
    other = [c for _, c in generate_variants(space, random_state=43)]
    assert first == second
    assert first != other


def test_parse_spec_vars_and_has_unresolved_values():
    space = {"a": 1, "b": {"c": tune.uniform(0, 1)}, "g": tune.grid_search([1, 2])}
    resolved, domains, grids = parse_spec_vars(space)
    assert resolved == [(("a",), 1)]
    assert [p for p, _ in domains] == [("b", "c")]
    assert grids == [(("g",), [1, 2])]
    assert has_unresolved_values(space)
    assert not has_unresolved_values({"a": 1, "b": {"c": [1, 2]}})


def test_flatten_and_unflatten():
    nested = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    flat = flatten_dict(nested)
    assert flat == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert unflatten_dict(flat) == nested


def test_experiment_tag_format():
    resolved = {("width",): 13.88512, ("activation",): "tanh", ("height",): -53.11634, ("model", "steps"): 100}
    assert make_experiment_tag(7, resolved) == "7_activation=tanh,height=-53.116,steps=100,width=13.885"
    assert make_experiment_tag(3, {}) == "3"
    assert format_vars({("path",): "a/b c"}) == "path=a_b_c"


def test_apply_point_fills_partial_points_and_rejects_unknown_keys():
    space = {"a": tune.uniform(0, 1), "b": {"c": tune.randint(0, 10), "d": 5}, "g": tune.grid_search([1, 2])}
    new_space, preset = apply_point(space, {"a": 0.5, "b": {"c": 3}})
    assert new_space["a"] == 0.5 and new_space["b"]["c"] == 3 and new_space["b"]["d"] == 5
    assert preset == {("a",): 0.5, ("b", "c"): 3}
    flat_space, _ = apply_point(space, {"b/c": 4})
    assert flat_space["b"]["c"] == 4
    with pytest.raises(ValueError, match=r"sets 'b/zzz', which is not a key of the param space"):
        apply_point(space, {"b": {"zzz": 1}})


def test_is_valid():
    assert tune.randint(0, 3).is_valid(2) and not tune.randint(0, 3).is_valid(3)
    assert tune.qrandint(0, 12, 3).is_valid(12)
    assert tune.uniform(0, 1).is_valid(0.5) and not tune.uniform(0, 1).is_valid(2)
    assert tune.choice(["a"]).is_valid("a") and not tune.choice(["a"]).is_valid("b")
    assert math.isinf(tune.randn().lower)


def test_domains_inside_a_chosen_value_are_sampled_and_the_choice_keeps_them():
    from tunesmith.tune.search.variant_generator import generate_variants

    adam_lr = tune.loguniform(1e-4, 1e-1)
    space = {"opt": tune.choice([{"name": "adam", "lr": adam_lr}, {"name": "sgd", "lr": tune.uniform(0.1, 1.0)}])}
    configs = [next(iter(generate_variants(space, random_state=seed)))[1] for seed in range(40)]
    for config in configs:
        lr = config["opt"]["lr"]
        assert isinstance(lr, float)
        assert (1e-4 <= lr <= 1e-1) if config["opt"]["name"] == "adam" else (0.1 <= lr <= 1.0)
    assert {c["opt"]["name"] for c in configs} == {"adam", "sgd"}
    assert space["opt"].categories[0]["lr"] is adam_lr  # the space itself is unchanged


def test_sample_takes_rays_arguments():
    # Ray's Domain.sample(config=None, size=1, random_state=None); a sample_from reads the config.
    assert len(tune.uniform(0, 1).sample(config=None, size=2, random_state=0)) == 2
    dependent = tune.sample_from(lambda spec: spec.config.x + 1)
    assert dependent.sample({"x": 3}) == 4
    assert dependent.sample(config={"x": 3}) == 4


# -- spaces as Ray resolves them ------------------------------------------------------------------------
def _configs(space, num_samples=1):
    from tunesmith.tune.search.basic_variant import BasicVariantGenerator

    gen = BasicVariantGenerator(random_state=0)
    gen.add_configurations(space, num_samples=num_samples)
    out = []
    while (suggestion := gen.next_trial()) is not None:
        out.append(suggestion.config)
    return out


def test_domains_inside_a_tuple_are_sampled_and_the_tuple_stays_a_tuple():
    config = _configs({"hidden": (tune.randint(16, 64), tune.choice([8, 16]), "relu"), "grid": tune.grid_search([1])})[0]
    assert isinstance(config["hidden"], tuple)
    width, other, act = config["hidden"]
    assert 16 <= width < 64 and other in (8, 16) and act == "relu"


def test_a_sample_from_function_may_pick_a_domain():
    space = {"big": tune.grid_search([False, True]),
             "units": tune.sample_from(lambda spec: tune.randint(256, 512) if spec.config.big else tune.randint(8, 32))}
    small, big = _configs(space)
    assert 8 <= small["units"] < 32 and 256 <= big["units"] < 512


def test_grid_variants_come_in_rays_order():
    """Ray orders grid parameters by path: the first name varies fastest, so trial N has Ray's values."""
    space = {"lr": tune.grid_search([0.1, 0.01]), "batch": tune.grid_search([32, 64])}
    assert [(c["batch"], c["lr"]) for c in _configs(space)] == [(32, 0.1), (64, 0.1), (32, 0.01), (64, 0.01)]


def test_a_grid_inside_a_sampled_choice_expands_that_sample_as_on_ray():
    """A sample that picks a tune.choice option holding a grid_search becomes one configuration per
    point of that grid (Ray 2.60 gives 6 trials for num_samples=3 of a one-option choice)."""
    space = {"m": tune.choice([{"a": tune.grid_search([1, 2]), "u": tune.uniform(0, 1)}]), "k": 7}
    algo = BasicVariantGenerator(random_state=0)
    algo.add_configurations(space, num_samples=3)
    configs = []
    while (suggestion := algo.next_trial(f"t{len(configs)}")) is not None:
        configs.append(suggestion.config)
    assert [c["m"]["a"] for c in configs] == [1, 2, 1, 2, 1, 2]
    assert all(c["k"] == 7 and 0 <= c["m"]["u"] < 1 for c in configs)
    assert algo.is_finished()
    # The space itself keeps its grid for the next sample.
    assert space["m"].categories[0]["a"] == {"grid_search": [1, 2]}


def test_a_sampled_choice_mixing_grid_and_plain_options(tmp_path):
    def f(config):
        return {"score": 1}

    results = tune.Tuner(
        f,
        param_space={"m": tune.choice([{"a": tune.grid_search([1, 2])}, {"a": 5}])},
        tune_config=tune.TuneConfig(num_samples=4, search_alg=BasicVariantGenerator(random_state=3)),
        run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path)),
    ).fit()
    values = sorted(r.config["m"]["a"] for r in results)
    assert len(values) == 4 + values.count(1)  # each sample that took the grid option became two trials
    assert values.count(1) == values.count(2)


def test_qlograndint_is_log_uniform_over_the_multiples_as_on_ray():
    """It drew a log-uniform float and rounded it: the lowest multiple was less likely than the next."""
    values = np.asarray(tune.qlograndint(2, 64, 2).sample(size=20000, random_state=0))
    assert values.min() == 2 and values.max() == 64 and not (values % 2).any()
    share = {v: float(np.mean(values == v)) for v in (2, 4, 6)}
    assert share[2] > share[4] > share[6]
    assert share[2] == pytest.approx(math.log(2) / math.log(33), abs=0.01)


@pytest.mark.parametrize("name", ["HyperOptSearch", "HEBOSearch", "BayesOptSearch", "ZOOptSearch", "OptunaSearch"])
def test_a_searchers_converted_space_given_back_gives_values_of_the_tune_space(name):
    """convert_search_space's output passed back as `space` gave log-space numbers, category indices and
    floats for integers; it is searched as the Tune space it came from."""
    import importlib

    module = {"HyperOptSearch": "hyperopt", "HEBOSearch": "hebo", "BayesOptSearch": "bayesopt",
              "ZOOptSearch": "zoopt", "OptunaSearch": "optuna"}[name]
    cls = getattr(importlib.import_module(f"tunesmith.tune.search.{module}"), name)
    space = {"lr": tune.loguniform(1e-4, 1e-1), "act": tune.choice(["relu", "tanh"]), "units": tune.randint(1, 5)}
    native = cls.convert_search_space(space)
    kwargs = {"dim_dict": native, "budget": 5} if name == "ZOOptSearch" else {"space": native}
    if name == "ZOOptSearch":
        kwargs["algo"] = "Asracos"  # Ray's own example spells it so
    searcher = cls(metric="m", mode="min", **kwargs)
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        assert 1e-4 <= config["lr"] <= 1e-1 and config["act"] in ("relu", "tanh")
        assert type(config["units"]) is int and 1 <= config["units"] < 5
        searcher.on_trial_complete(f"t{i}", {"m": float(i)})


def test_a_grid_of_whole_configs_as_the_param_space(tmp_path):
    """Ray runs one trial per option; fit() failed with a bare IndexError."""
    grid = tune.Tuner(lambda config: {"a": config["a"]}, param_space=tune.grid_search([{"a": 1}, {"a": 2, "b": 3}]),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(r.config["a"] for r in grid) == [1, 2]
    assert [r.config for r in grid if r.config["a"] == 2] == [{"a": 2, "b": 3}]


def test_a_choice_option_that_is_a_domain_is_sampled_in_turn():
    """A tune.choice option that is itself a domain, a sample_from, a choice or a tuple holding domains
    reached the trainable as the unsampled object (Float(...), Function(...), (Integer(...), 5))."""
    space = {"lr": tune.choice([tune.loguniform(1e-5, 1e-3), tune.uniform(0.1, 0.2)]),
             "x": tune.choice([tune.sample_from(lambda spec: 42)]),
             "t": tune.choice([(tune.randint(0, 3), 5)]),
             "cc": tune.choice([tune.choice([1, 2])])}
    for seed in range(20):
        (_, config), = generate_variants(space, random_state=seed)
        assert 1e-5 <= config["lr"] < 1e-3 or 0.1 <= config["lr"] < 0.2
        assert config["x"] == 42
        assert type(config["t"]) is tuple and config["t"][0] in (0, 1, 2) and config["t"][1] == 5
        assert config["cc"] in (1, 2)


def test_a_sample_from_can_loop_over_the_config_skipping_itself():
    """The common run-name pattern read every key of spec.config, its own unresolved one included, and
    failed as "'run_name' needs 'run_name' ... in a cycle" (Ray gives the function's own key as is)."""
    space = {"lr": tune.grid_search([0.1]), "layers": 3, "pair": (1, 2),
             "run_name": tune.sample_from(
                 lambda spec: "_".join(f"{k}={v}" for k, v in spec.config.items() if k != "run_name"))}
    (_, config), = generate_variants(space)
    assert config["run_name"] == "lr=0.1_layers=3_pair=(1, 2)"
    # A real cycle is still said.
    with pytest.raises(ValueError, match="cycle"):
        list(generate_variants({"a": tune.sample_from(lambda s: s.config.b),
                                "b": tune.sample_from(lambda s: s.config.a)}))


def test_sampler_builders_return_a_new_domain_as_ray_does():
    """.quantized()/.uniform()/.loguniform() changed the domain they were called on: a domain shared by
    two keys was quantized for both, and choosing a sampler twice on one Float raised."""
    from tunesmith.tune.search.sample import Float, Integer, Quantized

    lr = tune.uniform(0, 1)
    quantized = lr.quantized(0.25)
    assert quantized is not lr and not isinstance(lr.get_sampler(), Quantized)
    assert isinstance(quantized.get_sampler(), Quantized)
    f = Float(1e-3, 1)
    assert f.uniform().sampler is not None and f.loguniform().sampler is not None and f.sampler is None
    n = Integer(0, 10)
    assert n.quantized(2) is not n and n.sampler is None
    values = {x for x in lr.sample(size=50)}
    assert len(values) > 5  # still a plain uniform draw


def test_a_sample_from_reading_a_grid_inside_a_chosen_dict_gets_each_grid_value():
    """It failed with a false "depend on each other in a cycle" error: the grid the chosen option
    brought in had not been expanded yet when the function was called."""
    from tunesmith.tune.search.variant_generator import generate_variants

    space = {
        "opt": tune.choice([{"name": "sgd", "lr": tune.grid_search([0.1, 0.2])}]),
        "desc": tune.sample_from(lambda spec: f"{spec.config.opt['name']}-lr{spec.config.opt['lr']}"),
    }
    assert [config["desc"] for _, config in generate_variants(space)] == ["sgd-lr0.1", "sgd-lr0.2"]
    cycle = {"a": tune.sample_from(lambda spec: spec.config.b), "b": tune.sample_from(lambda spec: spec.config.a)}
    with pytest.raises(ValueError, match="depend on each other in a cycle"):
        list(generate_variants(cycle))


def test_a_categorical_with_the_grid_sampler_is_expanded_as_a_grid():
    """Categorical([...]).grid() was sampled once instead of giving one variant per value (Ray expands it)."""
    from tunesmith.tune.search.sample import Categorical
    from tunesmith.tune.search.variant_generator import generate_variants

    configs = [c for _, c in generate_variants({"a": Categorical([1, 2, 3]).grid(), "b": tune.grid_search([0, 1])})]
    assert sorted((c["a"], c["b"]) for c in configs) == [(a, b) for a in (1, 2, 3) for b in (0, 1)]
