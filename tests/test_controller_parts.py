"""The controller's parts on their own: trial table, checkpoint book, state snapshotter, error writer."""
from __future__ import annotations

import json
import os

from tunesmith._internal.storage import StorageContext
from tunesmith.train import CheckpointConfig
from tunesmith.tune.callback import CallbackList
from tunesmith.tune.execution.checkpoint_book import CheckpointBook
from tunesmith.tune.execution.error_writer import load_exception, write_trial_error
from tunesmith.tune.execution.state_snapshot import StateSnapshotter
from tunesmith.tune.execution.trial_table import STOP, TrialTable
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.schedulers import FIFOScheduler
from tunesmith.tune.search.basic_variant import BasicVariantGenerator


def _trial(tmp_path, i, **kw):
    return Trial("f", {"x": i}, trial_id=f"t_{i:05d}", experiment_path=str(tmp_path / "exp"), **kw)


def test_trial_table_indexes_by_status_and_skips_trials_being_stopped(tmp_path):
    table = TrialTable()
    a, b = _trial(tmp_path, 0), _trial(tmp_path, 1)
    table.add(a)
    table.add(b)
    table.resources_changed = False
    for t in (a, b):
        table.set_status(t, Trial.RUNNING)
    assert not table.resources_changed
    table.stopping[a] = STOP
    assert table.first_with_status(Trial.RUNNING) is b and table.count(Trial.RUNNING) == 2
    table.set_status(a, Trial.PAUSED)
    assert table.resources_changed and table.num_live() == 2
    table.set_status(b, Trial.TERMINATED)
    assert table.live() == [a] and list(table.with_status(Trial.TERMINATED)) == [b]


def test_checkpoint_book_deletes_dropped_checkpoints_only_when_asked_and_not_one_a_trial_will_start_from(tmp_path):
    trial = _trial(tmp_path, 0, checkpoint_config=CheckpointConfig(num_to_keep=1))
    book = CheckpointBook()
    paths = []
    for i in range(3):
        os.makedirs(os.path.join(trial.local_path, f"checkpoint_{i:06d}"))
        trial.num_results = i + 1
        paths.append(book.register(trial, f"checkpoint_{i:06d}", {"training_iteration": i + 1}).path)
    assert book.next_index(trial) == 3
    # Dropped from the trial, but still on disk until a saved state no longer names them.
    assert [c.path for c in book.pending_deletes] == paths[:2] and all(os.path.isdir(p) for p in paths)
    other = _trial(tmp_path, 1)
    other.restore_checkpoint = book.pending_deletes[0]  # e.g. PBT cloned it
    book.delete_dropped([trial, other])
    assert os.path.isdir(paths[0]) and not os.path.exists(paths[1]) and os.path.isdir(paths[2])
    assert book.metrics_of(other.restore_checkpoint)["training_iteration"] == 1
    other.restore_checkpoint = None
    book.delete_dropped([trial, other])
    assert not os.path.exists(paths[0]) and book.pending_deletes == []


def test_a_finished_trial_does_not_name_a_deleted_checkpoint_to_restore_from(tmp_path):
    """A trial that resumed from a checkpoint and then finished kept naming it in the saved state after
    num_to_keep deleted it."""
    trial = _trial(tmp_path, 0, checkpoint_config=CheckpointConfig(num_to_keep=1))
    book = CheckpointBook()
    for i in range(2):
        os.makedirs(os.path.join(trial.local_path, f"checkpoint_{i:06d}"))
        trial.num_results = i + 1
        checkpoint = book.register(trial, f"checkpoint_{i:06d}", {"training_iteration": i + 1})
        if i == 0:
            trial.restore_checkpoint = checkpoint  # it resumed from this one
    trial.status = Trial.TERMINATED
    book.delete_dropped([trial])
    assert not os.path.exists(os.path.join(trial.local_path, "checkpoint_000000"))
    assert trial.restore_checkpoint.path == trial.checkpoint.path
    assert os.path.isdir(trial.restore_checkpoint.path)


def test_snapshot_reencodes_exactly_the_trials_that_changed(tmp_path):
    trials = [_trial(tmp_path, i) for i in range(3)]
    snap = StateSnapshotter(
        StorageContext(str(tmp_path), "exp"), BasicVariantGenerator(), FIFOScheduler(), CallbackList([]),
        CheckpointBook(), describe=lambda: {"version": 2, "id_prefix": "t"}, trials=lambda: trials,
        on_write_error=print,
    )

    def saved():
        snap.save()
        with open(os.path.join(snap.path, "experiment_state.json")) as f:
            return json.load(f)

    for t in trials:
        t.set_status(Trial.TERMINATED)
    trials[0].update_last_result({"m": 1.0, "training_iteration": 1})
    state = saved()
    assert state["version"] == 2 and [t["status"] for t in state["trials"]] == ["TERMINATED"] * 3
    # A finished trial brought back (resume_errored), a new result, a new config: all show.
    trials[1].set_status(Trial.PENDING)
    trials[0].update_last_result({"m": 2.0, "training_iteration": 2})
    trials[2].config = {"x": 99}
    state = saved()
    assert [t["status"] for t in state["trials"]] == ["TERMINATED", "PENDING", "TERMINATED"]
    assert state["trials"][0]["last_result"]["m"] == 2.0 and state["trials"][0]["num_results"] == 2
    assert state["trials"][2]["config"] == {"x": 99}


def test_snapshot_of_a_running_trial_follows_its_start_point(tmp_path):
    """A PBT exploit restarts a trial from the donor's checkpoint while it stays RUNNING: the new
    start point changed nothing the cache looked at, so the state kept "started_from": null until the
    trial's next checkpoint, and a restore after a crash then resumed it from its own old checkpoint."""
    from tunesmith.train import Checkpoint

    trial = _trial(tmp_path, 0)
    trial.set_status(Trial.RUNNING)
    snap = StateSnapshotter(
        StorageContext(str(tmp_path), "exp"), BasicVariantGenerator(), FIFOScheduler(), CallbackList([]),
        CheckpointBook(), describe=lambda: {"version": 2, "id_prefix": "t"}, trials=lambda: [trial],
        on_write_error=print,
    )

    def saved():
        snap.save()
        with open(os.path.join(snap.path, "experiment_state.json")) as f:
            return json.load(f)["trials"][0]

    assert saved()["started_from"] is None
    donor = tmp_path / "exp" / "donor" / "checkpoint_000002"
    donor.mkdir(parents=True)
    trial.started_from = Checkpoint(str(donor))
    trial.restored_iteration = 2
    state = saved()
    assert state["started_from"] == "donor/checkpoint_000002" and state["restored_iteration"] == 2


def test_auto_snapshot_period_keeps_saving_near_five_percent_of_the_time(tmp_path):
    snap = StateSnapshotter(
        StorageContext(str(tmp_path), "exp"), BasicVariantGenerator(), FIFOScheduler(), CallbackList([]),
        CheckpointBook(), describe=lambda: {"version": 2}, trials=list, on_write_error=print,
    )
    snap.save()
    # The period is twenty times the last save's duration, and at least a second.
    for duration, period in [(0.001, 1.0), (0.2, 4.0), (2.0, 40.0)]:
        snap.last_duration = duration
        due = snap.due_in()
        assert period - 0.5 < due <= period, (duration, due)
    # A fixed TUNE_GLOBAL_CHECKPOINT_S is kept as it is.
    fixed = StateSnapshotter(
        StorageContext(str(tmp_path), "exp2"), BasicVariantGenerator(), FIFOScheduler(), CallbackList([]),
        CheckpointBook(), describe=lambda: {"version": 2}, trials=list, on_write_error=print, period=60.0,
    )
    fixed.save()
    fixed.last_duration = 2.0
    assert 59.5 < fixed.due_in() <= 60.0


def test_error_writer_appends_failures_and_keeps_the_exception(tmp_path):
    trial = _trial(tmp_path, 0)
    import cloudpickle

    for n, exc in ((1, ValueError("first")), (2, KeyError("second"))):
        trial.num_failures = n
        write_trial_error(trial, f"Traceback...\n{type(exc).__name__}: {exc}\n", cloudpickle.dumps(exc))
    with open(trial.error_file) as f:
        text = f.read()
    assert text.count("Failure # ") == 2 and trial.error_msg == "KeyError: 'second'"
    with open(trial.pickled_error_file, "rb") as f:
        assert isinstance(load_exception(f.read(), ""), KeyError)
    assert type(load_exception(b"not a pickle", "the text")).__name__ == "TuneError"


def _one_result(config):
    from tunesmith import tune

    tune.report({"x": 1})


def test_the_driver_collects_garbage_less_often_only_while_an_experiment_runs(tmp_path):
    import gc

    from tunesmith import tune
    from tunesmith.tune.execution.tune_controller import _GC_YOUNG_THRESHOLD

    seen = []

    class Look(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(gc.get_threshold())

    saved = gc.get_threshold()
    try:
        for mine in ((700, 10, 10), (50_000, 10, 10)):
            gc.set_threshold(*mine)
            tune.Tuner(_one_result, run_config=tune.RunConfig(
                storage_path=str(tmp_path), verbose=0, callbacks=[Look()])).fit()
            assert seen.pop() == (max(mine[0], _GC_YOUNG_THRESHOLD), 10, 10)
            assert gc.get_threshold() == mine  # the user's own setting comes back
    finally:
        gc.set_threshold(*saved)
