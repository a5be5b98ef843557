"""The older ``tune.run`` / ``tune.Experiment`` arguments, as a Ray Tune 2.x script passes them."""
from __future__ import annotations

import json
import os

import pyarrow.fs
import pytest

from _trainables import STATE_FILE, report_step, restore_step
from tunesmith import tune


def _counts_from_checkpoint(config):
    start = restore_step()
    if config.get("fail_once") and not os.path.exists(config["fail_once"]):
        open(config["fail_once"], "w").close()
        raise RuntimeError("fails once, before it saves a checkpoint of its own")
    for i in range(start, start + 2):
        tune.report({"i": i, "start": start})


@pytest.fixture
def initial_checkpoint(tmp_path):
    path = tmp_path / "initial"
    path.mkdir()
    (path / STATE_FILE).write_text(json.dumps({"step": 10}))
    return str(path)


def test_a_misspelled_argument_is_an_error_naming_the_right_one(tmp_path):
    with pytest.raises(TypeError, match=r"'stopping' \(did you mean 'stop'\?\)"):
        tune.run(_counts_from_checkpoint, storage_path=str(tmp_path / "results"), verbose=0,
                 stopping={"training_iteration": 1})
    with pytest.raises(TypeError, match=r"'chekpoint_freq' \(did you mean 'checkpoint_freq'\?\)"):
        tune.Experiment("typo", _counts_from_checkpoint, chekpoint_freq=1)
    assert not os.path.exists(tmp_path / "results")  # nothing ran


def test_arguments_of_earlier_versions_are_accepted_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="ignores arguments of earlier versions.*server_port"):
        analysis = tune.run(_counts_from_checkpoint, storage_path=str(tmp_path), verbose=0, server_port=4321)
    assert analysis.trials[0].last_result["i"] == 1


def test_an_empty_restore_means_no_checkpoint(tmp_path):
    """An argparse --restore option defaulting to "" gave the trial the working directory as checkpoint."""
    analysis = tune.run(_counts_from_checkpoint, restore="", storage_path=str(tmp_path), verbose=0)
    assert analysis.trials[0].last_result["start"] == 0


def test_a_retry_before_the_trials_own_checkpoint_starts_from_restore(tmp_path, initial_checkpoint):
    analysis = tune.run(_counts_from_checkpoint, config={"fail_once": str(tmp_path / "failed")},
                        restore=initial_checkpoint, max_failures=1, storage_path=str(tmp_path), verbose=0)
    (trial,) = analysis.trials
    assert trial.status == "TERMINATED" and trial.last_result["start"] == 10


def test_resume_errored_before_the_trials_own_checkpoint_starts_from_restore(tmp_path, initial_checkpoint):
    kwargs = dict(config={"fail_once": str(tmp_path / "failed")}, name="exp", restore=initial_checkpoint,
                  storage_path=str(tmp_path), verbose=0, raise_on_failed_trial=False)
    assert tune.run(_counts_from_checkpoint, **kwargs).trials[0].status == "ERROR"
    (trial,) = tune.run(_counts_from_checkpoint, resume="AUTO+ERRORED", **kwargs).trials
    assert trial.status == "TERMINATED" and trial.last_result["start"] == 10


def _fails_after_checkpoints(config):
    start = restore_step()
    for i in range(start, 5):
        if i == 3 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("fails at 3")
        report_step(i + 1, i=i, start=start)


def test_resume_with_a_storage_filesystem_continues_the_same_experiment(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    fs = pyarrow.fs.SubTreeFileSystem(str(root), pyarrow.fs.LocalFileSystem())
    kwargs = dict(config={"marker": str(tmp_path / "failed")}, name="exp", storage_path="exps",
                  storage_filesystem=fs, verbose=0, raise_on_failed_trial=False)
    (first,) = tune.run(_fails_after_checkpoints, **kwargs).trials
    assert first.status == "ERROR"
    (again,) = tune.run(_fails_after_checkpoints, resume="AUTO+ERRORED", **kwargs).trials
    assert again.trial_id == first.trial_id
    assert again.status == "TERMINATED" and again.last_result["start"] == 3
    assert len([n for n in os.listdir(root / "exps" / "exp") if n.startswith("_fails_after")]) == 1


class Counter(tune.Trainable):
    def setup(self, config):
        self.i = 0

    def step(self):
        self.i += 1
        return {"score": self.i}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i"), "w") as f:
            f.write(str(self.i))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i")) as f:
            self.i = int(f.read())

    def _export_model(self, export_formats, export_dir):
        path = os.path.join(export_dir, "model.txt")
        with open(path, "w") as f:
            f.write(f"{','.join(export_formats)} at {self.i}")
        return {fmt: path for fmt in export_formats}


def test_export_formats_export_each_trials_model_when_it_ends(tmp_path):
    analysis = tune.run(Counter, config={"x": tune.grid_search([1, 2])}, stop={"training_iteration": 2},
                        export_formats=["txt"], storage_path=str(tmp_path), verbose=0)
    for trial in analysis.trials:
        with open(os.path.join(trial.path, "model.txt")) as f:
            assert f.read() == "txt at 2"


def test_an_experiment_takes_its_checkpoint_config_as_a_dict(tmp_path):
    (trial,) = tune.run_experiments({
        "dict_spec": {"run": Counter, "stop": {"training_iteration": 3}, "storage_path": str(tmp_path),
                      "checkpoint_config": {"checkpoint_frequency": 1, "num_to_keep": 1}},
    }, verbose=0)
    assert trial.status == "TERMINATED"
    assert sorted(n for n in os.listdir(trial.path) if n.startswith("checkpoint_")) == ["checkpoint_000002"]


def test_older_checkpoint_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="num_to_keep"):
        tune.run(Counter, keep_checkpoints_num=0, storage_path=str(tmp_path), verbose=0)
    # A negative frequency saves no periodic checkpoint (as on Ray), rather than one every iteration.
    (trial,) = tune.run(Counter, checkpoint_freq=-1, stop={"training_iteration": 3}, storage_path=str(tmp_path),
                        verbose=0).trials
    assert not [n for n in os.listdir(trial.path) if n.startswith("checkpoint_")]


def _score(config):
    tune.report({"score": config["x"]})


def test_run_takes_a_list_of_experiments(tmp_path):
    first = tune.Experiment("first", _score, config={"x": 1}, storage_path=str(tmp_path / "results"))
    second = tune.Experiment("second", _score, config={"x": 2}, storage_path=str(tmp_path / "results"))
    analysis = tune.run([first, second], verbose=0)
    assert sorted(t.last_result["score"] for t in analysis.trials) == [1, 2]
    assert analysis.get_best_trial("score", "max").last_result["score"] == 2
    assert sorted(os.listdir(tmp_path / "results")) == ["first", "second"]


def _saves_after_its_last_report(config, checkpoint_dir=None):
    for i in range(2):
        tune.report(i=i)
    with tune.checkpoint_dir(step=2) as d:  # the older API: a final checkpoint as the function ends
        with open(os.path.join(d, "i"), "w") as f:
            f.write("2")


def test_a_checkpoint_dir_written_after_the_last_report_is_kept(tmp_path):
    """The block's checkpoint was written to disk but never registered: the trial had no checkpoint."""
    analysis = tune.run(_saves_after_its_last_report, storage_path=str(tmp_path), name="exp", verbose=0)
    (trial,) = analysis.trials
    assert trial.checkpoint is not None
    with trial.checkpoint.as_directory() as d, open(os.path.join(d, "i")) as f:
        assert f.read() == "2"
    assert analysis.get_last_checkpoint(trial).path == trial.checkpoint.path


def _reads_env(config):
    tune.report(env=config["env"])


def _always_fails(config):
    raise RuntimeError("broken")


def test_run_experiments_runs_every_experiment_and_takes_the_dict_forms(tmp_path):
    """A failed trial of the first experiment raised before the second ran; "env" and a sync_config dict in a
    spec were refused."""
    ran = []

    class Seen(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            ran.append(trial.last_result.get("env"))

    specs = {
        "bad": {"run": _always_fails, "storage_path": str(tmp_path)},
        "good": {"run": _reads_env, "env": "CartPole-v1", "sync_config": {"sync_period": 60},
                 "storage_path": str(tmp_path)},
    }
    with pytest.raises(tune.TuneError):
        tune.run_experiments(specs, verbose=0, callbacks=[Seen()])
    assert ran == ["CartPole-v1"]


_LOGGED: list = []


class _RecordingLogger(tune.logger.Logger):
    def on_result(self, result):
        _LOGGED.append((self.trial.trial_id if self.trial else None, result.get("env")))


def test_loggers_are_used_whichever_form_the_experiments_come_in(tmp_path):
    """tune.run(loggers=[...]) was dropped without a word for an Experiment, a list of them and
    run_experiments (seed 003: the loggers argument of tune.run sets the per-trial loggers)."""
    def experiment(name):
        return tune.Experiment(name, _reads_env, config={"env": name}, storage_path=str(tmp_path))

    _LOGGED.clear()
    tune.run(experiment("one"), loggers=[_RecordingLogger], verbose=0)
    assert [env for _, env in _LOGGED] == ["one"]
    _LOGGED.clear()
    tune.run([experiment("two"), experiment("three")], loggers=[_RecordingLogger], verbose=0)
    assert sorted(env for _, env in _LOGGED) == ["three", "two"]
    _LOGGED.clear()
    tune.run_experiments({"four": {"run": _reads_env, "config": {"env": "four"}, "storage_path": str(tmp_path)}},
                         loggers=[_RecordingLogger], verbose=0)
    assert [env for _, env in _LOGGED] == ["four"]


def test_fail_fast_ends_a_list_of_experiments_at_the_first_failed_trial(tmp_path):
    """As one run of them all (on Ray), the experiments after a failed trial do not start."""
    bad = tune.Experiment("bad", _always_fails, storage_path=str(tmp_path))
    good = tune.Experiment("good", _reads_env, config={"env": "x"}, storage_path=str(tmp_path))
    analysis = tune.run([bad, good], fail_fast=True, raise_on_failed_trial=False, verbose=0)
    assert [t.status for t in analysis.trials] == ["ERROR"]
    assert not (tmp_path / "good").exists()
    with pytest.raises(tune.TuneError):
        tune.run_experiments([bad, good], fail_fast=True, verbose=0)
    assert not (tmp_path / "good").exists()


def test_an_experiment_describes_itself_as_on_ray(tmp_path):
    def stop_fn(trial_id, result):
        return False

    exp = tune.Experiment("exp", _reads_env, stop={"training_iteration": 2}, config={"env": "x"},
                          num_samples=3, storage_path=str(tmp_path), max_failures=2)
    assert exp.spec["run"] == exp.run_identifier == "_reads_env"
    assert (exp.spec["stop"], exp.spec["config"], exp.spec["num_samples"], exp.spec["max_failures"]) == (
        {"training_iteration": 2}, {"env": "x"}, 3, 2)
    assert exp.public_spec == {"stop": {"training_iteration": 2}, "num_samples": 3, "time_budget_s": None}
    assert exp.stopper is None and exp.path == str(tmp_path / "exp") and exp.remote_path is None
    assert isinstance(exp.checkpoint_config, tune.CheckpointConfig)
    assert tune.Experiment("e", _reads_env, stop=stop_fn).stopper is stop_fn
    assert tune.Experiment("e", _reads_env, storage_path="s3://bucket/runs").remote_path == "s3://bucket/runs/e"


def _fails_inside_its_checkpoint_block_once(config, checkpoint_dir=None):
    start = 0
    if checkpoint_dir:
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            start = json.load(f)["i"] + 1
    for i in range(start, 3):
        with tune.checkpoint_dir(step=i) as d:
            if i == 1 and not os.path.exists(config["marker"]):
                open(config["marker"], "w").close()
                with open(os.path.join(d, "half_written.pt"), "w") as f:
                    f.write("garbage")
                raise RuntimeError("failed while writing the checkpoint")
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"i": i}, f)
        tune.report(i=i)


def test_a_checkpoint_block_of_a_retry_starts_empty(tmp_path):
    """The retry reused the failed attempt's checkpoint directory, and its half-written files became part
    of the stored checkpoint (loaded by every later restore from it)."""
    analysis = tune.run(_fails_inside_its_checkpoint_block_once, config={"marker": str(tmp_path / "marker")},
                        max_failures=1, storage_path=str(tmp_path), name="exp", verbose=0)
    (trial,) = analysis.trials
    assert trial.status == "TERMINATED" and trial.last_result["i"] == 2
    checkpoints = sorted(p for p in os.listdir(trial.local_path) if p.startswith("checkpoint_"))
    for name in checkpoints:
        assert os.listdir(os.path.join(trial.local_path, name)) == ["state.json"], name
