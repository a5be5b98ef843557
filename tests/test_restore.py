"""Tuner.restore continues an experiment from its directory."""
from __future__ import annotations

import os
import tempfile

import pytest

import tunesmith
from _trainables import report_step, restore_step

from tunesmith import tune


def flaky_until_fixed(config):
    with open(os.path.join(config["dir"], f"runs_{config['i']}"), "a") as f:
        f.write("x")
    step = restore_step()
    while step < 4:
        step += 1
        report_step(step)
        if config["i"] == 1 and step == 2 and not os.path.exists(os.path.join(config["dir"], "fixed")):
            raise RuntimeError("not fixed yet")


def _runs(tmp_path, i):
    with open(tmp_path / f"runs_{i}") as f:
        return len(f.read())


@pytest.mark.parametrize("mode", ["resume_errored", "restart_errored"])
def test_restore_reruns_only_errored_trials(tmp_path, mode):
    storage = str(tmp_path / "storage")
    space = {"dir": str(tmp_path), "i": tune.grid_search([0, 1])}
    grid = tune.Tuner(flaky_until_fixed, param_space=space,
                      run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0)).fit()
    assert grid.num_errors == 1
    (tmp_path / "fixed").touch()
    path = os.path.join(storage, "exp")
    assert tune.Tuner.can_restore(path)
    restored = tune.Tuner.restore(path, trainable=flaky_until_fixed, **{mode: True}).fit()
    assert restored.num_errors == 0 and len(restored) == 2
    by_i = {r.config["i"]: r for r in restored}
    assert by_i[1].metrics["step"] == 4
    # The finished trial was not run again; the errored one ran once more.
    assert _runs(tmp_path, 0) == 1 and _runs(tmp_path, 1) == 2
    if mode == "resume_errored":
        # It continued from its step-2 checkpoint: two more iterations, counting on.
        assert by_i[1].metrics["training_iteration"] == 4
        assert list(by_i[1].metrics_dataframe["step"]) == [1, 2, 3, 4]
    else:
        assert by_i[1].metrics["training_iteration"] == 4


def test_restore_of_a_missing_experiment_is_a_clear_error(tmp_path):
    assert not tune.Tuner.can_restore(str(tmp_path))
    with pytest.raises(ValueError, match="experiment_state.json"):
        tune.Tuner.restore(str(tmp_path), trainable=flaky_until_fixed)
    # Given the state file itself, it says so (it said the file "has no experiment_state.json").
    state = tmp_path / "experiment_state.json"
    state.write_text("{}")
    with pytest.raises(ValueError, match=f"it is a file. Pass the experiment directory .*{tmp_path}"):
        tune.Tuner.restore(str(state), trainable=flaky_until_fixed)


class CountingCallback(tune.Callback):
    """Counts results across restores and writes the count when the experiment ends."""

    def __init__(self, out_file):
        self.out_file = out_file
        self.results = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results += 1

    def on_experiment_end(self, trials, **info):
        with open(self.out_file, "w") as f:
            f.write(str(self.results))

    def get_state(self):
        return {"results": self.results}

    def set_state(self, state):
        self.results = state["results"]


def test_callback_state_is_restored(tmp_path):
    storage = str(tmp_path / "storage")
    out = tmp_path / "count.txt"
    space = {"dir": str(tmp_path), "i": tune.grid_search([0, 1])}
    tune.Tuner(flaky_until_fixed, param_space=space,
               run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0,
                                         callbacks=[CountingCallback(str(out))])).fit()
    assert out.read_text() == "6"  # 4 results of trial 0, 2 of trial 1 before it failed
    (tmp_path / "fixed").touch()
    tune.Tuner.restore(os.path.join(storage, "exp"), trainable=flaky_until_fixed, resume_errored=True).fit()
    # The restored callback went on counting from where it was.
    assert out.read_text() == "8"


_UNFINISHED_SCRIPT = r"""
import os, signal, sys, time
from tunesmith import train, tune
from tunesmith.tune.search import ConcurrencyLimiter
from tunesmith.tune.search.optuna import OptunaSearch

storage, phase = sys.argv[1], sys.argv[2]


def slow(config):
    for i in range(40):
        time.sleep(0.05)
        train.report({"loss": config["x"] + 1.0 / (i + 1)})


class InterruptOnce(tune.Callback):
    # Restore brings the run's callbacks back: a marker file keeps this to the first run.
    def on_trial_result(self, iteration, trials, trial, result, **info):
        marker = os.path.join(storage, "interrupted")
        if result["training_iteration"] == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGINT)


if phase == "run":
    searcher = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2)
    tuner = tune.Tuner(
        slow, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=5),
        run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0, callbacks=[InterruptOnce()]),
    )
else:
    tuner = tune.Tuner.restore(os.path.join(storage, "exp"), trainable=slow, resume_unfinished=False)
grid = tuner.fit()
print("TRIALS", len(grid), sorted(r.metrics.get("training_iteration", 0) for r in grid), flush=True)
"""


def test_restore_without_resuming_unfinished_trials_frees_the_searchers_slots(tmp_path):
    """Trials that restore does not resume are over for the searcher too.

    A ConcurrencyLimiter that still counted them as running would suggest
    nothing more, and the rest of the search would never run.
    """
    import subprocess
    import sys

    script = tmp_path / "unfinished.py"
    script.write_text(_UNFINISHED_SCRIPT)
    storage = str(tmp_path / "storage")
    first = subprocess.run([sys.executable, str(script), storage, "run"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "TRIALS" in first.stdout
    before = int(first.stdout.split("TRIALS ")[1].split()[0])
    assert before < 5  # interrupted with trials left to suggest
    second = subprocess.run([sys.executable, str(script), storage, "restore"], capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    line = second.stdout.split("TRIALS ")[1]
    assert int(line.split()[0]) == 5
    iterations = eval(line.split(" ", 1)[1])  # the sorted list printed by the script
    # The trials interrupted at their second iteration stay there; the rest ran to the end.
    assert iterations.count(40) >= 5 - before


def _first_trainable(config):
    tune.report({"x": config["x"]})


def _other_trainable(config):
    tune.report({"acc": 1})


def test_a_tuner_built_on_an_experiments_name_leaves_its_restore_file_alone(tmp_path):
    run_config = tune.RunConfig(name="kept", storage_path=str(tmp_path), verbose=0)
    tune.Tuner(_first_trainable, param_space={"x": tune.grid_search([1, 2])}, run_config=run_config).fit()
    # Another script builds a Tuner with the same name but never runs it (or is refused the lock).
    tune.Tuner(_other_trainable, param_space={"y": tune.choice(["a", "b"])}, run_config=run_config)
    grid = tune.Tuner.restore(os.path.join(str(tmp_path), "kept"), trainable=_first_trainable).fit()
    assert grid.errors == [] and sorted(r.metrics["x"] for r in grid) == [1, 2]


class _Model:
    """Stands for an object a script re-creates on restore (a model, an object reference)."""

    def __init__(self, weight):
        self.weight = weight


def _uses_model(config):
    from tunesmith import train

    if config["model"].weight == 1 and config["fail"]:
        raise RuntimeError("the first model's trial fails")
    train.report({"weight": config["model"].weight, "data": config["data"], "lr": config["lr"]})


class _StopAtFirstResult(tune.Stopper):
    """Ends the experiment at its first result until the file ``go_on`` exists."""

    def __init__(self, go_on):
        self.go_on = go_on
        self.results = 0

    def __call__(self, trial_id, result):
        self.results += 1
        return False

    def stop_all(self):
        return self.results >= 1 and not os.path.exists(self.go_on)


def test_restore_with_a_re_specified_param_space_uses_its_new_objects(tmp_path):
    """Seed 004, "Tune Experiment Restoration with Ray Object References": the objects are re-created
    and the param_space passed again; trials that run after the restore use the new ones."""
    def space(weights, data):
        return {"model": tune.grid_search([_Model(w) for w in weights]), "data": data,
                "lr": tune.uniform(0, 1), "fail": True}

    run_config = tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0, stop=_StopAtFirstResult(str(tmp_path / "go_on")))
    first = tune.Tuner(_uses_model, param_space=space([1, 2, 3, 4], "old data"),
                       tune_config=tune.TuneConfig(max_concurrent_trials=1), run_config=run_config).fit()
    assert [(r.error is not None, r.metrics.get("weight")) for r in first] == [(True, None), (False, 2)]

    (tmp_path / "go_on").touch()
    restored = tune.Tuner.restore(str(tmp_path / "exp"), _uses_model, resume_errored=True,
                                  param_space={**space([10, 20, 30, 40], "new data"), "fail": False})
    results = sorted(restored.fit(), key=lambda r: r.path)
    # The errored trial resumes with the new first model; the finished one keeps what it ran with;
    # the two trials created after the restore take the new third and fourth models.
    assert [(r.metrics["weight"], r.metrics["data"]) for r in results] == [
        (10, "new data"), (2, "old data"), (30, "new data"), (40, "new data")]
    assert [r.config["model"].weight for r in results] == [10, 2, 30, 40]
    # Sampled values stay as they were drawn.
    assert results[0].config["lr"] == first[0].config["lr"]


def _reports_x(config):
    tune.report({"s": config["x"]})


def test_restore_keeps_the_trial_directories_of_earlier_runs_under_the_same_name(tmp_path):
    """Running fit() twice under one name, then restoring, must not delete the first run's trials;
    what the restored run itself wrote after its saved state is still removed."""
    import shutil

    run_config = tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)
    tune.Tuner(_reports_x, param_space={"x": tune.grid_search([1, 2])},
               tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: f"first_{t.config['x']}"),
               run_config=run_config).fit()
    tune.Tuner(_reports_x, param_space={"x": tune.grid_search([3])}, run_config=run_config).fit()
    exp = tmp_path / "exp"
    (latest,) = [p for p in exp.iterdir() if p.is_dir() and p.name.startswith("_reports_x_")]
    # A trial directory the second run wrote after its last saved state (the state does not name it).
    shutil.copytree(latest, exp / "unsaved_trial")
    before = sorted(p.name for p in exp.iterdir() if p.is_dir())

    tune.Tuner.restore(str(exp), _reports_x).fit()
    after = sorted(p.name for p in exp.iterdir() if p.is_dir())
    assert after == [name for name in before if name != "unsaved_trial"]
    assert {"first_1", "first_2"} <= set(after)
    assert (exp / "first_1" / "result.json").read_text().count("\n") == 1


def _writes_an_artifact_or_fails_once(config):
    if config["x"] == 0:
        os.makedirs("checkpoint_best_model", exist_ok=True)  # the trial's working directory is its own
        with open("checkpoint_best_model/weights.txt", "w") as f:
            f.write("best")
        tune.report({"m": 1})
        return
    if not os.path.exists(config["failed_once"]):
        open(config["failed_once"], "w").close()
        raise RuntimeError("transient")
    tune.report({"m": 2})


def test_restore_leaves_a_trials_own_checkpoint_named_directories_alone(tmp_path):
    space = {"x": tune.grid_search([0, 1]), "failed_once": str(tmp_path / "failed_once")}
    grid = tune.Tuner(_writes_an_artifact_or_fails_once, param_space=space,
                      run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    (artifact_trial,) = [r for r in grid if r.config["x"] == 0]
    artifact = os.path.join(artifact_trial.path, "checkpoint_best_model", "weights.txt")
    assert os.path.exists(artifact) and grid.num_errors == 1
    restored = tune.Tuner.restore(str(tmp_path / "exp"), _writes_an_artifact_or_fails_once, resume_errored=True).fit()
    assert restored.num_errors == 0
    assert open(artifact).read() == "best"


def _reports_its_cpus_and_fails_first(config):
    from tunesmith import train as _train

    cpus = _train.get_context().get_trial_resources().required_resources.get("CPU")
    marker = os.path.join(config["dir"], f"failed_{config['x']}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("fails the first time")
    tune.report({"cpus": cpus})


def test_restore_takes_the_resources_of_the_trainable_it_is_given(tmp_path):
    """As on Ray: the trainable passed to Tuner.restore wrapped in tune.with_resources sets the
    resources of the trials that run again (the saved ones were kept, and a restore on a smaller
    machine waited forever)."""
    kwargs = dict(run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path / "r"), verbose=0))
    tune.Tuner(tune.with_resources(_reports_its_cpus_and_fails_first, {"cpu": 2}),
               param_space={"x": tune.grid_search([1, 2]), "dir": str(tmp_path)}, **kwargs).fit()
    exp = str(tmp_path / "r" / "exp")
    with pytest.raises(ValueError, match="asks for"):
        tunesmith.init(num_cpus=1)
        try:
            tune.Tuner.restore(exp, tune.with_resources(_reports_its_cpus_and_fails_first, {"cpu": 2}),
                               resume_errored=True).fit()
        finally:
            tunesmith.shutdown()
    grid = tune.Tuner.restore(exp, tune.with_resources(_reports_its_cpus_and_fails_first, {"cpu": 1}),
                              resume_errored=True).fit()
    assert grid.num_errors == 0 and [r.metrics["cpus"] for r in grid] == [1.0, 1.0]


def _one_report(config):
    tune.report({"x": config["x"]})


def test_a_spent_time_budget_is_not_given_again_on_restore(tmp_path):
    """TuneConfig(time_budget_s) started over on every restore: a run that had used up its budget
    sampled a whole new budget's worth of trials. As on Ray, the time used is kept."""
    tuner = tune.Tuner(
        _one_report, param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=-1, time_budget_s=1.0),
        run_config=tune.RunConfig(name="budget", storage_path=str(tmp_path), verbose=0),
    )
    first = len(tuner.fit())
    assert first > 0
    again = tune.Tuner.restore(str(tmp_path / "budget"), _one_report).fit()
    assert len(again) == first


def test_a_run_killed_before_its_first_state_restores_with_the_users_generator_once(tmp_path):
    """With search_alg=BasicVariantGenerator(...), the tuner file held the generator after it took the
    run's configurations: a restore of a run that had saved no state yet ran them all twice."""
    from tunesmith.tune.search.basic_variant import BasicVariantGenerator

    tune.Tuner(
        _one_report, param_space={"x": tune.uniform(0, 1), "g": tune.grid_search(["a", "b"])},
        tune_config=tune.TuneConfig(num_samples=3, search_alg=BasicVariantGenerator(random_state=1)),
        run_config=tune.RunConfig(name="early", storage_path=str(tmp_path), verbose=0),
    ).fit()
    os.remove(tmp_path / "early" / "experiment_state.json")  # as if killed before its first save
    grid = tune.Tuner.restore(str(tmp_path / "early"), _one_report).fit()
    assert len(grid) == 6 and sorted(r.config["g"] for r in grid) == ["a"] * 3 + ["b"] * 3


class _Shape:
    """A config value JSON keeps only as text."""

    def __init__(self, dims):
        self.dims = dims


def _fails_until_allowed(config):
    from tunesmith import train

    if not os.path.exists(config["allow"]):
        raise RuntimeError("not yet")
    train.report({"lr_seen": config["lr"], "dims": list(config["shape"].dims)})


def test_restore_takes_plain_config_values_from_the_state_when_params_pkl_is_newer(tmp_path):
    """params.pkl is written when a trial starts: after a PBT exploit that the state saved before it
    does not know of, a restore ran the trial with the exploited config on its own checkpoint."""
    import cloudpickle

    allow = tmp_path / "allow"
    grid = tune.Tuner(
        _fails_until_allowed, param_space={"lr": 0.1, "shape": _Shape((2, 3)), "allow": str(allow)},
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0),
    ).fit()
    (trial_dir,) = [r.path for r in grid]
    with open(os.path.join(trial_dir, "params.pkl"), "rb") as f:
        config = cloudpickle.load(f)
    config["lr"] = 1.0  # a newer config than the state's, as an exploit's restart leaves it
    with open(os.path.join(trial_dir, "params.pkl"), "wb") as f:
        cloudpickle.dump(config, f)
    allow.touch()
    (result,) = tune.Tuner.restore(str(tmp_path / "exp"), _fails_until_allowed, resume_errored=True).fit()
    assert result.error is None
    assert result.metrics["lr_seen"] == 0.1  # the state's value
    assert result.metrics["dims"] == [2, 3]  # the object came back from the pickle
    assert isinstance(result.config["shape"], _Shape) and result.config["lr"] == 0.1


class _FailsOnceOnAResult(tune.search.Searcher):
    def __init__(self, flag: str):
        super().__init__(metric="loss", mode="min")
        self.flag = flag
        self.n = 0
        self.told = 0

    def suggest(self, trial_id):
        self.n += 1
        return {"x": self.n / 10}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told += 1
        if self.told == 3 and os.path.exists(self.flag):
            os.remove(self.flag)
            raise KeyError("the searcher failed on a result")


def _loss_is_x(config):
    return {"loss": config["x"]}


def test_a_searcher_failing_on_a_result_does_not_leave_its_trial_running_for_a_restore(tmp_path):
    """The ConcurrencyLimiter counted the trial as running when the searcher it wraps failed on its
    result; the state saved then made the restored run wait for that trial forever."""
    flag = tmp_path / "flag"
    flag.touch()
    with pytest.raises(KeyError, match="failed on a result"):
        tune.Tuner(_loss_is_x, tune_config=tune.TuneConfig(
            search_alg=_FailsOnceOnAResult(str(flag)), num_samples=6, max_concurrent_trials=1),
            run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
    grid = tune.Tuner.restore(str(tmp_path / "exp"), _loss_is_x).fit()
    assert sorted(r.config["x"] for r in grid) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert not grid.errors


class _CountsResults(tune.Callback):
    def __init__(self):
        self.results = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results += 1

    def get_state(self):
        return {"results": self.results}

    def set_state(self, state):
        self.results = state["results"]


class _HoldsALock(tune.Callback):
    def __init__(self):
        import threading

        self.lock = threading.Lock()


def _reports_three_then_fails_once(config):
    import os

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        start = int(open(os.path.join(checkpoint.path, "i")).read())
    for i in range(start, 3):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "i"), "w").write(str(i + 1))
            tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))
        if i == 1 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("first run fails")


def test_a_callback_that_cannot_be_saved_is_named_up_front_and_the_others_are_restored_with_their_state(
        tmp_path, caplog):
    """One callback holding a lock made the restored run go on with no callbacks at all: the others and
    their saved state were lost, and nothing said so until the restore."""
    counter = _CountsResults()
    with caplog.at_level("WARNING"):
        grid = tune.Tuner(
            _reports_three_then_fails_once, param_space={"marker": str(tmp_path / "failed")},
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="cbs", verbose=0,
                                      callbacks=[counter, _HoldsALock()]),
        ).fit()
    assert "run_config.callbacks[1] (_HoldsALock)" in caplog.text and "cannot pickle" in caplog.text
    assert grid.errors and counter.results == 2
    restored = tune.Tuner.restore(str(tmp_path / "cbs"), trainable=_reports_three_then_fails_once,
                                  resume_errored=True)
    (kept, stand_in) = restored._local_tuner._input.run_config.callbacks
    assert isinstance(kept, _CountsResults) and "_HoldsALock" in repr(stand_in)
    grid = restored.fit()
    assert not grid.errors
    assert kept.results == 3  # its saved count, and the one result of the resumed trial


class _StateHoldsALock(tune.Callback):
    def get_state(self):
        import threading

        return {"lock": threading.Lock()}


class _StateRaises(tune.Callback):
    def get_state(self):
        raise RuntimeError("no state today")


def test_a_callback_state_that_cannot_be_saved_is_left_out_and_the_run_still_returns(tmp_path, caplog):
    """The experiment's last save raised a bare 'cannot pickle' from fit(): no results, and the saved state
    showed the finished trials as RUNNING."""
    counter = _CountsResults()
    with caplog.at_level("WARNING"):
        grid = tune.Tuner(
            _reports_three_then_fails_once, param_space={"marker": str(tmp_path / "failed")},
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="cbs", verbose=0,
                                      callbacks=[counter, _StateHoldsALock(), _StateRaises()]),
        ).fit()
    assert grid.errors and counter.results == 2
    assert "callback _StateHoldsALock cannot be saved" in caplog.text
    assert "callback _StateRaises cannot be saved" in caplog.text and "no state today" in caplog.text
    restored = tune.Tuner.restore(str(tmp_path / "cbs"), trainable=_reports_three_then_fails_once,
                                  resume_errored=True)
    kept = restored._local_tuner._input.run_config.callbacks[0]
    assert not restored.fit().errors and kept.results == 3  # its saved count, and the resumed result


def _errored_run(tmp_path, name, scheduler=None):
    """A run whose one trial logged rows 0 and 1 (a checkpoint with each), then failed."""
    tune.Tuner(
        _reports_three_then_fails_once, param_space={"marker": str(tmp_path / f"{name}-failed")},
        tune_config=tune.TuneConfig(scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0),
    ).fit()
    return tmp_path / name


def _rows(experiment) -> list[int]:
    import json

    (result_file,) = experiment.glob("*/result.json")
    return [json.loads(line)["i"] for line in result_file.read_text().splitlines() if line.strip()]


def _rewrite_state(experiment, change) -> None:
    import json

    state_file = experiment / "experiment_state.json"
    state = json.loads(state_file.read_text())
    change(state)
    state_file.write_text(json.dumps(state))


def _as_version_one(state) -> None:
    """The state as the first release wrote it: no row counts of results or checkpoints."""
    state["version"] = 1
    for trial in state["trials"]:
        for key in ("num_results", "restore_checkpoint_rows", "started_from_rows"):
            trial.pop(key, None)
        for entry in trial.get("checkpoints") or []:
            entry.pop("rows", None)


def test_a_state_of_version_one_restores_without_losing_the_rows_logged_before(tmp_path):
    """Its checkpoints have no row counts: each was taken as at row 0, and resuming a trial cut its
    result.json and progress.csv down to nothing."""
    experiment = _errored_run(tmp_path, "v1")
    assert _rows(experiment) == [0, 1]
    _rewrite_state(experiment, _as_version_one)
    grid = tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once, resume_errored=True).fit()
    assert not grid.errors
    assert _rows(experiment) == [0, 1, 2]
    assert list(grid[0].metrics_dataframe["i"]) == [0, 1, 2]


def test_a_state_a_newer_release_wrote_is_refused_and_changes_nothing(tmp_path):
    experiment = _errored_run(tmp_path, "v99")
    _rewrite_state(experiment, lambda state: state.update(version=99))
    before = sorted((p, p.stat().st_size) for p in experiment.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="experiment state version 99; this tunesmith reads versions up to 2"):
        tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once, resume_errored=True).fit()
    assert sorted((p, p.stat().st_size) for p in experiment.rglob("*") if p.is_file()) == before


@pytest.mark.parametrize("damaged", ["basic-variant-state", "scheduler_state"])
def test_a_search_or_scheduler_state_that_cannot_be_read_is_named_and_the_logs_are_left_as_they_were(
        tmp_path, damaged):
    """Restore cut the logs of the trials it was about to resume, then failed on the searcher's or the
    scheduler's state (the searcher's with a bare UnpicklingError)."""
    from tunesmith.tune.schedulers import AsyncHyperBandScheduler

    experiment = _errored_run(tmp_path, "sched", AsyncHyperBandScheduler(metric="i", mode="max", max_t=10))
    for state_file in experiment.glob(f"{damaged}*.pkl"):
        state_file.write_bytes(b"\x80\x04garbage")
    # (checkpoints at row 1: a resume from either would cut the logs back to one row)
    _rewrite_state(experiment, lambda state: [e.update(rows=1) for t in state["trials"] for e in t["checkpoints"]])
    message = ("The search algorithm's state in .* cannot be restored: UnpicklingError" if damaged != "scheduler_state"
               else "could not read the scheduler state file .*scheduler_state-.\\.pkl")
    with pytest.raises(ValueError, match=message):
        tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once, resume_errored=True).fit()
    assert _rows(experiment) == [0, 1]


class _KeepsItsOwnRecord(tune.schedulers.FIFOScheduler):
    """A user's scheduler that sets up each trial's record in on_trial_add and reads it on results."""

    def __init__(self):
        super().__init__()
        self.records = {}

    def on_trial_add(self, tune_controller, trial):
        self.records[trial.trial_id] = []

    def on_trial_result(self, tune_controller, trial, result):
        self.records[trial.trial_id].append(result["i"])
        return self.CONTINUE


def test_a_users_scheduler_is_told_of_restored_trials_and_the_default_one_ignores_an_old_state(tmp_path):
    """The restored trials were taken as known to every scheduler with a restore(path, trials) (all
    subclasses), so a user's one that records trials in on_trial_add failed with KeyError; and the default
    FIFOScheduler refused a state of another release, although it keeps nothing."""
    experiment = tmp_path / "users"
    tune.Tuner(
        _reports_three_then_fails_once,
        param_space={"marker": str(tmp_path / "users-failed"), "n": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(scheduler=_KeepsItsOwnRecord(), max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="users", verbose=0),
    ).fit()  # the first trial fails once (and stays failed), the second finishes
    tuner = tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once, resume_errored=True)
    grid = tuner.fit()
    assert not grid.errors
    # The scheduler saved with the experiment, as restored: told of both trials (the finished one too, as on
    # Ray), and of the resumed trial's one new result.
    records = tuner._local_tuner._input.tune_config.scheduler.records
    assert sorted(records.values()) == [[], [2]]

    experiment = _errored_run(tmp_path, "fifo")
    for state_file in experiment.glob("scheduler_state*.pkl"):
        state_file.write_bytes(b"\x80\x04garbage")
    grid = tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once, resume_errored=True).fit()
    assert not grid.errors and _rows(experiment) == [0, 1, 2]


@pytest.mark.parametrize("damage", ["status", "metric_analysis"])
def test_a_trial_state_with_a_status_or_analysis_of_the_wrong_kind_is_named_as_unreadable(tmp_path, damage):
    """These gave a bare KeyError ('BOGUS') or AttributeError from deep inside restore."""
    experiment = _errored_run(tmp_path, damage)
    value = {"status": "BOGUS", "metric_analysis": "not a dict"}[damage]
    _rewrite_state(experiment, lambda state: state["trials"][0].update({damage: value}))
    with pytest.raises(ValueError, match="experiment_state.json: a trial's saved state cannot be read"):
        tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once).fit()


def test_a_restore_refused_for_its_resources_leaves_the_logs_as_they_were(tmp_path):
    """The logs of the trials to resume were cut before the restored trials' resources were checked."""
    experiment = _errored_run(tmp_path, "big")
    with pytest.raises(ValueError, match="more than this machine has"):
        tune.Tuner.restore(str(experiment), trainable=tune.with_resources(
            _reports_three_then_fails_once, lambda config: {"cpu": 512}), restart_errored=True).fit()
    assert _rows(experiment) == [0, 1]
    grid = tune.Tuner.restore(str(experiment), trainable=_reports_three_then_fails_once, resume_errored=True).fit()
    assert not grid.errors and _rows(experiment) == [0, 1, 2]
