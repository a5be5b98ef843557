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
