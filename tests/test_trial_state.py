"""A trial's kept saved state: statistics survive freezing, thawing, pickling and a restore."""
from __future__ import annotations

import json
import math
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


def test_a_running_trials_saved_text_follows_its_checkpoints_and_encodes_each_once(monkeypatch):
    from tunesmith.train import Checkpoint, CheckpointConfig

    trial = Trial("f", config={"x": 1}, trial_id="t_00001", experiment_path="/tmp/exp",
                  checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
                                                     checkpoint_score_order="min"))
    trial.set_status(Trial.RUNNING)
    encoded = []
    entry = Trial._checkpoint_entry

    def counting_entry(self, e):
        encoded.append(e["path"])
        return entry(self, e)

    monkeypatch.setattr(Trial, "_checkpoint_entry", counting_entry)

    def save(i, loss):
        result = {"loss": loss, "training_iteration": i}
        trial.update_last_result(result)
        path = f"/tmp/exp/t/checkpoint_{i:06d}"
        trial.checkpoint_rows[path] = i
        return trial.checkpoint_manager.register(Checkpoint(path), result)

    def saved():
        encoded.clear()
        text = json.loads(trial.get_json_text())
        made = list(encoded)
        assert text == json.loads(json.dumps(trial._build_state(), allow_nan=True))  # the dict form agrees
        encoded[:] = made
        return [(c["path"], c["metrics"]["loss"], c["rows"], c.get("latest_only", False)) for c in text["checkpoints"]]

    save(1, 3.0)
    save(2, 1.0)
    assert saved() == [("t/checkpoint_000001", 3.0, 1, False), ("t/checkpoint_000002", 1.0, 2, False)]
    assert sorted(encoded) == ["/tmp/exp/t/checkpoint_000001", "/tmp/exp/t/checkpoint_000002"]
    assert saved() and encoded == []  # nothing changed: nothing encoded again
    # A worse third checkpoint is kept only as the latest (num_to_keep=2, best by loss); a fourth,
    # better one drops the first and the third.
    assert save(3, 5.0) == []
    assert saved()[-1] == ("t/checkpoint_000003", 5.0, 3, True)
    assert encoded == ["/tmp/exp/t/checkpoint_000003"]
    assert [c.path for c in save(4, 0.5)] == ["/tmp/exp/t/checkpoint_000001", "/tmp/exp/t/checkpoint_000003"]
    assert saved() == [("t/checkpoint_000002", 1.0, 2, False), ("t/checkpoint_000004", 0.5, 4, False)]
    assert encoded == ["/tmp/exp/t/checkpoint_000004"]
    # The same path saved again with new metrics (a trial rerunning from an earlier checkpoint).
    trial.checkpoint_manager.register(Checkpoint("/tmp/exp/t/checkpoint_000004"), {"loss": 0.25, "training_iteration": 4})
    assert saved()[-1] == ("t/checkpoint_000004", 0.25, 4, False)
    # A finished trial keeps its whole text, and no longer the entries' texts.
    trial.set_status(Trial.TERMINATED)
    assert json.loads(trial.get_json_text())["checkpoints"][-1]["metrics"]["loss"] == 0.25
    assert trial._checkpoint_texts is None


def test_a_restored_trial_averages_its_last_results_on_from_the_real_values():
    """The saved state kept only the averages; a resumed trial averaged new results with stand-ins
    (and a NaN in the window was lost), so get_best_result(scope="last-5-avg") could pick another trial."""
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 50.0]
    trial = _trial_with_results(values)
    restored = Trial.from_json_state(json.loads(trial.get_json_text()), experiment_path="/tmp/exp")
    restored.set_status(Trial.RUNNING)
    for i, v in enumerate([1.0, 1.0], len(values) + 1):
        restored.update_last_result({"loss": v, "training_iteration": i})
    every = values + [1.0, 1.0]
    analysis = restored.metric_analysis["loss"]
    assert analysis["last-5-avg"] == sum(every[-5:]) / 5 == 14.2
    assert abs(analysis["last-10-avg"] - sum(every[-10:]) / 10) < 1e-12

    with_nan = Trial.from_json_state(
        json.loads(_trial_with_results([5.0, float("nan"), 1.0, 1.0, 1.0]).get_json_text()), experiment_path="/tmp/exp"
    )
    assert math.isnan(with_nan.metric_analysis["loss"]["last-5-avg"])


def test_a_flag_is_a_metric():
    trial = Trial("f", config={}, trial_id="t_00002", experiment_path="/tmp/exp")
    trial.set_status(Trial.RUNNING)
    trial.update_last_result({"solved": False, "training_iteration": 1, "done": False})
    trial.update_last_result({"solved": True, "training_iteration": 2, "done": True})
    assert trial.metric_analysis["solved"]["max"] == 1 and trial.metric_analysis["solved"]["last"] == 1
    assert "done" not in trial.metric_analysis


def test_the_counters_at_another_trials_checkpoint_survive_a_restore(tmp_path):
    """A PBT trial paused to start from a donor's checkpoint that the donor had dropped (num_to_keep): after
    a restore nothing knew that checkpoint's iteration, and the trial counted its rows from 1 again."""
    from tunesmith.train import Checkpoint
    from tunesmith.tune.execution.checkpoint_book import CheckpointBook

    donor = Trial("f", config={"x": 1}, trial_id="t_00001", experiment_path=str(tmp_path))
    taker = Trial("f", config={"x": 2}, trial_id="t_00002", experiment_path=str(tmp_path))
    book = CheckpointBook()
    donors = book.register(donor, "checkpoint_000002", {"training_iteration": 6, "time_total_s": 3.0, "loss": 1})
    taker.restore_checkpoint = taker.started_from = Checkpoint(donors.path)
    book.note_start_points(taker)
    donor.checkpoint_manager.checkpoints = []  # the donor dropped it; it stays on disk for the taker
    restored = Trial.from_json_state(json.loads(taker.get_json_text()), experiment_path=str(tmp_path))
    fresh = CheckpointBook()
    fresh.note_restored(restored)
    assert fresh.metrics_of(restored.restore_checkpoint) == {"training_iteration": 6, "time_total_s": 3.0}
