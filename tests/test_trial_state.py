"""A trial's kept saved state: statistics survive freezing, thawing, pickling and a restore."""
from __future__ import annotations

import json
import pickle

from tunesmith.tune.experiment.trial import Trial


def _trial_with_results(values):
    trial = Trial("f", config={"x": 1}, trial_id="t_00001", experiment_path="/tmp/exp")
    trial.set_status(Trial.RUNNING)
    for i, v in enumerate(values, 1):
        trial.update_last_result({"loss": v, "training_iteration": i, "note": "n"})
    return trial


def test_finished_trial_keeps_its_statistics_in_the_saved_text():
    trial = _trial_with_results([3.0, 1.0, 2.0])
    live = trial.metric_analysis
    trial.set_status(Trial.TERMINATED)
    text = trial.get_json_text()
    assert trial.get_json_text() is text  # kept, not rebuilt
    assert json.loads(text) == trial.get_json_state()
    frozen = trial.metric_analysis
    assert frozen == live
    assert frozen["loss"]["min"] == 1.0 and frozen["loss"]["max"] == 3.0 and frozen["loss"]["_n"] == 3


def test_a_finished_trial_that_runs_again_continues_its_statistics():
    trial = _trial_with_results([3.0, 1.0])
    trial.set_status(Trial.TERMINATED)
    trial.get_json_text()
    trial.set_status(Trial.RUNNING)
    trial.update_last_result({"loss": 0.5, "training_iteration": 3})
    loss = trial.metric_analysis["loss"]
    assert (loss["min"], loss["max"], loss["last"], loss["_n"]) == (0.5, 3.0, 0.5, 3)
    assert abs(loss["avg"] - 1.5) < 1e-12
    trial.set_status(Trial.TERMINATED)
    assert json.loads(trial.get_json_text())["metric_analysis"]["loss"]["_n"] == 3


def test_trial_pickles_and_restores_from_its_saved_state():
    trial = _trial_with_results([2.0, 4.0])
    trial.set_status(Trial.TERMINATED)
    trial.get_json_text()
    trial.user_note = "kept"  # callers may still add their own attributes
    copy = pickle.loads(pickle.dumps(trial))
    assert copy.user_note == "kept"
    assert copy.metric_analysis == trial.metric_analysis
    assert copy.last_result == trial.last_result and copy.status == Trial.TERMINATED
    restored = Trial.from_json_state(json.loads(trial.get_json_text()), experiment_path="/tmp/exp")
    assert restored.metric_analysis["loss"]["max"] == 4.0
    assert restored.num_results == 2 and restored.trial_dirname == trial.trial_dirname


def test_statistics_gathered_in_batches_equal_those_of_one_result_at_a_time():
    import math
    import random

    import numpy as np

    rng = random.Random(1)
    for case in range(200):
        one_by_one, batched = Trial("f", config={}), Trial("f", config={})
        for i in range(rng.randint(1, 60)):
            result = {
                "loss": rng.choice([1, 2.5, float("nan"), -3]) if case % 3 else rng.random(),
                "mixed": rng.choice([None, 1.0, "x", True, np.float32(2.0)]) if case % 5 == 0 else i,
                "nested": {"x": float(i)}, "note": "n", "config": {"a": 1},
            }
            if case % 7 == 0 and i % 5 == 0:
                result["sometimes"] = i  # results with different fields
            one_by_one.update_last_result(result)
            one_by_one._fold()
            batched.update_last_result(result)
        a, b = one_by_one.metric_analysis, batched.metric_analysis
        assert a.keys() == b.keys() and "note" not in a and "nested/x" in a and "config" not in a
        for metric in a:
            for stat, x in a[metric].items():
                y = b[metric][stat]
                assert x == y or (math.isnan(x) and math.isnan(y)) or math.isclose(x, y), (case, metric, stat)
