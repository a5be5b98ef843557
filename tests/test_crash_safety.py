"""Nothing lost: worker and driver crashes, restore, corrupt files and bad input.

The checks read what a user reads: every trial's ``result.json`` and
``progress.csv`` hold iterations 1..N exactly once and only the trial's own
rows, whatever was killed on the way. Tests marked ``long`` run the same
checks at a larger scale (``.ci/run`` runs them).
"""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tunesmith import train, tune

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "_crash_driver.py")
sys.path.insert(0, HERE)

from _crash_driver import counting  # noqa: E402
from _trainables import STATE_FILE, report_step, restore_step  # noqa: E402


# -- what a user reads back ------------------------------------------------------------
def trial_dirs(exp_dir: str) -> list[str]:
    return sorted(
        os.path.join(exp_dir, d) for d in os.listdir(exp_dir)
        if os.path.isfile(os.path.join(exp_dir, d, "params.json"))
    )


def assert_each_iteration_once(exp_dir: str, iters: int, trials: int) -> None:
    dirs = trial_dirs(exp_dir)
    assert len(dirs) == trials, os.listdir(exp_dir)
    for d in dirs:
        with open(os.path.join(d, "params.json")) as f:
            owner = json.load(f)["id"]
        with open(os.path.join(d, "result.json")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        assert [r["training_iteration"] for r in rows] == list(range(1, iters + 1)), d
        assert all(r["step"] == r["training_iteration"] and r["owner"] == owner for r in rows), d
        with open(os.path.join(d, "progress.csv"), newline="") as f:
            table = list(csv.DictReader(f))
        assert [int(r["training_iteration"]) for r in table] == list(range(1, iters + 1)), d
        assert {r["owner"] for r in table} == {str(owner)}, d


def _workers() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "tunesmith._internal.worker" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            pass
    return out


class WorkerKiller(threading.Thread):
    """SIGKILLs a random worker of this process every so often, ``kills`` times in all."""

    def __init__(self, kills: int, seed: int, interval=(0.05, 0.4)):
        super().__init__(daemon=True)
        self.kills, self.rng, self.interval = kills, random.Random(seed), interval
        self.done = threading.Event()
        self.killed = 0

    def run(self) -> None:
        while self.killed < self.kills and not self.done.wait(self.rng.uniform(*self.interval)):
            workers = _workers()
            if workers:
                try:
                    self.rng.choice(workers).kill()
                    self.killed += 1
                except psutil.Error:
                    pass


def _space(trials: int, iters: int, sleep: float = 0.01, every: int = 3) -> dict:
    return {"id": tune.grid_search(list(range(trials))), "iters": iters, "sleep": sleep, "every": every}


def _run_with_worker_kills(tmp_path, trials, iters, kills, seed, cpus_per_trial=1, num_cpus=None):
    import tunesmith

    if num_cpus:
        tunesmith.init(num_cpus=num_cpus)
    trainable = counting if cpus_per_trial == 1 else tune.with_resources(counting, {"cpu": cpus_per_trial})
    killer = WorkerKiller(kills, seed)
    tuner = tune.Tuner(
        trainable, param_space=_space(trials, iters),
        run_config=tune.RunConfig(name="kills", storage_path=str(tmp_path), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=-1)),
    )
    killer.start()
    try:
        grid = tuner.fit()
    finally:
        killer.done.set()
        killer.join()
    assert grid.num_errors == 0
    assert killer.killed > 0
    assert_each_iteration_once(str(tmp_path / "kills"), iters, trials)


def test_random_worker_kills_lose_and_duplicate_nothing(tmp_path):
    _run_with_worker_kills(tmp_path, trials=6, iters=30, kills=8, seed=1)


@pytest.mark.long
@pytest.mark.parametrize("cpus_per_trial", [1, 2])
def test_random_worker_kills_at_scale(tmp_path, cpus_per_trial):
    _run_with_worker_kills(tmp_path, trials=20, iters=30, kills=30, seed=cpus_per_trial,
                           cpus_per_trial=cpus_per_trial, num_cpus=4)


# -- the driver dies ---------------------------------------------------------------------
def _default_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal (under nohup it is ignored)


def _start_driver(storage: str, name: str, mode: str, opts: dict, own_group: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, DRIVER, mode, storage, name, json.dumps(opts)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=own_group,
        preexec_fn=_default_sighup if hasattr(signal, "SIGHUP") else None,
    )


def _rows_on_disk(exp_dir: str) -> int:
    total = 0
    for d in trial_dirs(exp_dir) if os.path.isdir(exp_dir) else []:
        try:
            with open(os.path.join(d, "result.json"), "rb") as f:
                total += f.read().count(b"\n")
        except OSError:
            pass
    return total


def _saved_checkpoints(exp_dir: str) -> int:
    """The most checkpoints any trial has in the saved experiment state."""
    try:
        with open(os.path.join(exp_dir, "experiment_state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return -1
    return max((len(t["checkpoints"]) for t in state["trials"]), default=0)


def _kill_driver_after(proc: subprocess.Popen, exp_dir: str, rows: int, timeout: float = 120,
                       checkpoints: int = 0) -> None:
    """SIGKILLs the driver once ``rows`` result rows are on disk and a state is saved.

    With ``checkpoints``, the saved state must also name that many checkpoints of one trial.
    """
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if _rows_on_disk(exp_dir) >= rows and _saved_checkpoints(exp_dir) >= checkpoints:
            break
        time.sleep(0.02)
    proc.kill()
    proc.communicate()


def _finish(storage: str, name: str, opts: dict) -> str:
    proc = _start_driver(storage, name, "restore", opts)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def _kill_and_restore(tmp_path, opts: dict, kill_at_rows: list[int]) -> str:
    storage, name = str(tmp_path / "storage"), "crash"
    exp_dir = os.path.join(storage, name)
    proc = _start_driver(storage, name, "run", opts)
    _kill_driver_after(proc, exp_dir, kill_at_rows[0])
    for rows in kill_at_rows[1:]:  # restore, and kill it again
        proc = _start_driver(storage, name, "restore", opts)
        _kill_driver_after(proc, exp_dir, rows)
    _finish(storage, name, opts)
    assert_each_iteration_once(exp_dir, opts["iters"], opts["trials"])
    return exp_dir


def test_driver_sigkill_then_restore_loses_and_duplicates_nothing(tmp_path):
    _kill_and_restore(tmp_path, {"trials": 3, "iters": 30, "sleep": 0.02, "every": 4}, [20, 55])


def test_driver_sigkill_with_num_to_keep_restores_from_kept_checkpoints(tmp_path):
    exp_dir = _kill_and_restore(
        tmp_path, {"trials": 3, "iters": 30, "sleep": 0.02, "every": 2, "num_to_keep": 2}, [25, 60]
    )
    for d in trial_dirs(exp_dir):
        assert len([c for c in os.listdir(d) if c.startswith("checkpoint_")]) <= 3, os.listdir(d)


@pytest.mark.parametrize("to_group", [False, True], ids=["driver", "process_group"])
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_saves_the_state_then_ends_the_process_and_restore_finishes(tmp_path, to_group, sig):
    """SIGTERM (a stopped container, a preempted machine) pauses the trials and saves the state first.

    Sent to the whole process group, as Slurm and systemd do, it reaches the workers too: they
    leave it to the driver, so no trial counts as failed. SIGHUP (the terminal closed) does the
    same: the driver died of it at once, and what the trials had started kept running.
    """
    sig = getattr(signal, sig)
    storage, name, opts = str(tmp_path / "storage"), "term", {"trials": 3, "iters": 60, "sleep": 0.05, "every": 4}
    exp_dir = os.path.join(storage, name)
    proc = _start_driver(storage, name, "run", opts, own_group=to_group)
    deadline = time.time() + 120
    while _rows_on_disk(exp_dir) < 20 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -sig, out  # the process still ends by the signal
    assert f"Stopping the experiment ({signal.Signals(sig).name})" in out and "Tuner.restore(" in out, out
    with open(os.path.join(exp_dir, "experiment_state.json")) as f:
        trials = json.load(f)["trials"]
    # The last save came after the trials stopped: none is left RUNNING, and it counts every row.
    statuses = [t["status"] for t in trials]
    assert len(trials) == 3 and not {"RUNNING", "ERROR"} & set(statuses) and "PAUSED" in statuses, statuses
    assert sum(t["num_results"] for t in trials) == _rows_on_disk(exp_dir) >= 20
    _finish(storage, name, opts)
    assert_each_iteration_once(exp_dir, opts["iters"], opts["trials"])


@pytest.mark.long
@pytest.mark.parametrize("moments", [[1], [10, 40], [35, 70, 100], [110]])
@pytest.mark.parametrize("num_to_keep", [None, 2])
def test_driver_sigkill_at_many_moments(tmp_path, moments, num_to_keep):
    _kill_and_restore(
        tmp_path, {"trials": 4, "iters": 30, "sleep": 0.01, "every": 3, "num_to_keep": num_to_keep}, moments
    )


def _results_text(exp_dir: str) -> dict[str, str]:
    out = {}
    for d in trial_dirs(exp_dir):
        path = os.path.join(d, "result.json")
        out[d] = open(path).read() if os.path.exists(path) else ""
    return out


def test_moved_and_copied_experiments_restore_from_their_own_files(tmp_path):
    storage, name = str(tmp_path / "storage"), "crash"
    opts = {"trials": 2, "iters": 20, "sleep": 0.03, "every": 2}
    proc = _start_driver(storage, name, "run", opts)
    _kill_driver_after(proc, os.path.join(storage, name), 15)
    moved_storage = str(tmp_path / "elsewhere")
    os.makedirs(moved_storage)
    shutil.move(os.path.join(storage, name), os.path.join(moved_storage, name))
    copy_storage = str(tmp_path / "copy")
    shutil.copytree(moved_storage, copy_storage)
    before = _results_text(os.path.join(moved_storage, name))

    _finish(copy_storage, name, opts)
    assert_each_iteration_once(os.path.join(copy_storage, name), 20, 2)
    # Restoring the copy left the moved original as it was.
    after = _results_text(os.path.join(moved_storage, name))
    assert after == before
    _finish(moved_storage, name, opts)
    assert_each_iteration_once(os.path.join(moved_storage, name), 20, 2)
    with open(os.path.join(moved_storage, name, "experiment_state.json")) as f:
        state = f.read()
    assert str(tmp_path / "storage") not in state  # paths are relative to the experiment


SNAPSHOT_CUT_SCRIPT = """
import json, os, signal, sys, time
import tunesmith.tune.execution.state_snapshot as snapshot
from tunesmith import tune


def trainable(config):
    for i in range(5):
        time.sleep(0.02)
        tune.report({{"it": i + 1}})


path = os.path.join({storage!r}, "cut")
if sys.argv[1] == "run":
    write = snapshot._write_text_atomic

    def dies_before_the_state_file(target, pieces):
        # A kill (or a full disk) inside a snapshot: the searcher's state is written, the state file not yet.
        if target.endswith("experiment_state.json") and os.path.exists(target):
            if len(json.loads("".join(pieces))["trials"]) > len(json.load(open(target))["trials"]):
                os.kill(os.getpid(), signal.SIGKILL)
        return write(target, pieces)

    snapshot._write_text_atomic = dies_before_the_state_file
    tuner = tune.Tuner(trainable, param_space={{"x": tune.uniform(0, 1)}},
                       tune_config=tune.TuneConfig(num_samples=6, max_concurrent_trials=2),
                       run_config=tune.RunConfig(name="cut", storage_path={storage!r}, verbose=0))
else:
    tuner = tune.Tuner.restore(path, trainable)
grid = tuner.fit()
print("RESULTS", json.dumps(sorted(r.metrics.get("it", 0) for r in grid)))
"""


def test_a_snapshot_cut_short_leaves_a_state_that_restores_the_whole_run(tmp_path):
    """A kill between the searcher's state and the experiment state of one snapshot left a searcher that
    counted trials the state did not have: the restore waited for them forever (or ended with fewer trials,
    their directories deleted). The searcher's state now goes into the slot the saved state does not name."""
    storage = str(tmp_path / "storage")
    script = tmp_path / "cut.py"
    script.write_text(SNAPSHOT_CUT_SCRIPT.format(storage=storage))
    first = subprocess.run([sys.executable, str(script), "run"], capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    restored = subprocess.run([sys.executable, str(script), "restore"], capture_output=True, text=True, timeout=300)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "RESULTS [5, 5, 5, 5, 5, 5]" in restored.stdout
    assert not [f for root, _, files in os.walk(storage) for f in files if ".tmp" in f]


# -- limits --------------------------------------------------------------------------------
DESCRIPTOR_SCRIPT = """
import json, os, resource, sys
sys.path.insert(0, {here!r})
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
import tunesmith
from tunesmith import tune
from _crash_driver import counting
tunesmith.init(num_cpus={trials})
grid = tune.Tuner(
    tune.with_resources(counting, {{"cpu": 1}}),
    param_space={{"id": tune.grid_search(list(range({trials}))), "iters": 5, "sleep": 0.2, "every": 5}},
    run_config=tune.RunConfig(name="fds", storage_path={storage!r}, verbose=0),
).fit()
print("ERRORS", grid.num_errors)
"""


def _run_under_descriptor_limit(tmp_path, limit: int, trials: int) -> None:
    storage = str(tmp_path / "storage")
    script = tmp_path / "fds.py"
    script.write_text(DESCRIPTOR_SCRIPT.format(here=HERE, limit=limit, trials=trials, storage=storage))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERRORS 0" in proc.stdout
    assert "Too many open files" not in proc.stderr
    assert_each_iteration_once(os.path.join(storage, "fds"), 5, trials)


def test_more_trials_than_descriptors_allow_lose_nothing(tmp_path):
    _run_under_descriptor_limit(tmp_path, limit=128, trials=24)


@pytest.mark.long
def test_200_trials_under_a_1024_descriptor_limit(tmp_path):
    _run_under_descriptor_limit(tmp_path, limit=1024, trials=200)


# -- damaged experiment directories -----------------------------------------------------------
def _interrupted_experiment(tmp_path, opts=None) -> tuple[str, str, dict]:
    storage, name = str(tmp_path / "storage"), "crash"
    opts = opts or {"trials": 2, "iters": 30, "sleep": 0.05, "every": 2}
    proc = _start_driver(storage, name, "run", opts)
    _kill_driver_after(proc, os.path.join(storage, name), 16, checkpoints=2)
    return storage, name, opts


def test_a_truncated_state_file_cannot_be_restored_and_the_error_names_it(tmp_path):
    storage, name, _ = _interrupted_experiment(tmp_path)
    exp_dir = os.path.join(storage, name)
    state_file = os.path.join(exp_dir, "experiment_state.json")
    with open(state_file, "r+") as f:
        f.truncate(len(f.read()) // 2)
    assert tune.Tuner.can_restore(exp_dir) is False
    with pytest.raises(ValueError, match="experiment_state.json"):
        tune.Tuner.restore(exp_dir, trainable=counting)


def test_a_bad_params_pickle_does_not_block_the_restore(tmp_path, caplog):
    storage, name, opts = _interrupted_experiment(tmp_path)
    exp_dir = os.path.join(storage, name)
    with open(os.path.join(trial_dirs(exp_dir)[0], "params.pkl"), "wb") as f:
        f.write(b"not a pickle")
    grid = tune.Tuner.restore(exp_dir, trainable=counting).fit()
    assert grid.num_errors == 0
    assert "params.pkl" in caplog.text
    assert_each_iteration_once(exp_dir, opts["iters"], opts["trials"])


def test_a_deleted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    storage, name, opts = _interrupted_experiment(tmp_path)
    exp_dir = os.path.join(storage, name)
    with open(os.path.join(exp_dir, "experiment_state.json")) as f:
        state = json.load(f)
    victim = next(t for t in state["trials"] if len(t["checkpoints"]) >= 2)
    shutil.rmtree(os.path.join(exp_dir, victim["checkpoints"][-1]["path"]))
    grid = tune.Tuner.restore(exp_dir, trainable=counting).fit()
    assert grid.num_errors == 0
    assert "is missing" in caplog.text
    assert_each_iteration_once(exp_dir, opts["iters"], opts["trials"])


def test_a_result_line_cut_by_a_crash_does_not_swallow_the_next_row(tmp_path):
    storage, name, opts = _interrupted_experiment(tmp_path)
    exp_dir = os.path.join(storage, name)
    path = os.path.join(trial_dirs(exp_dir)[0], "result.json")
    with open(path, "a") as f:
        f.write('{"training_iteration": 99, "ste')  # a write cut short
    grid = tune.Tuner.restore(exp_dir, trainable=counting).fit()
    assert grid.num_errors == 0
    assert_each_iteration_once(exp_dir, opts["iters"], opts["trials"])


def test_a_crafted_trial_directory_in_the_state_cannot_lead_outside(tmp_path):
    storage, name, _ = _interrupted_experiment(tmp_path)
    exp_dir = os.path.join(storage, name)
    state_file = os.path.join(exp_dir, "experiment_state.json")
    with open(state_file) as f:
        state = json.load(f)
    state["trials"][0]["trial_dirname"] = "../../escaped"
    with open(state_file, "w") as f:
        json.dump(state, f)
    with pytest.raises(ValueError, match="not a plain directory name"):
        tune.Tuner.restore(exp_dir, trainable=counting).fit()
    assert not os.path.exists(tmp_path / "escaped")


# -- one experiment directory, one driver --------------------------------------------------------
def test_a_second_run_with_the_same_name_fails_naming_the_first(tmp_path):
    storage, name = str(tmp_path / "storage"), "same"
    first = _start_driver(storage, name, "run", {"trials": 2, "iters": 400, "sleep": 0.05, "every": 50})
    try:
        exp_dir = os.path.join(storage, name)
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(exp_dir, ".tunesmith.lock")) and time.time() < deadline:
            time.sleep(0.02)
        while _rows_on_disk(exp_dir) < 1 and time.time() < deadline:
            time.sleep(0.02)
        with pytest.raises(RuntimeError, match=f"in use by another run \\(pid {first.pid}"):
            tune.Tuner(counting, param_space=_space(2, 3),
                       run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0)).fit()
    finally:
        first.kill()
        first.communicate()
    # Once the first run is gone (even killed), its experiment can be continued.
    assert tune.Tuner.can_restore(os.path.join(storage, name))


# -- bad input ------------------------------------------------------------------------------------
def test_failure_config_takes_only_integer_retries():
    with pytest.raises(ValueError, match="max_failures='3'"):
        tune.FailureConfig(max_failures="3")
    with pytest.raises(ValueError, match="-1 to retry forever"):
        tune.FailureConfig(max_failures=-2)


def test_a_nan_stop_threshold_is_refused():
    with pytest.raises(ValueError, match="not NaN"):
        tune.Tuner(counting, param_space=_space(1, 3),
                   run_config=tune.RunConfig(stop={"step": float("nan")}, verbose=0)).fit()


def _reports_text(config):
    train.report("hello")


def test_reporting_a_string_fails_the_trial_with_a_clear_error():
    grid = tune.Tuner(_reports_text, run_config=tune.RunConfig(verbose=0)).fit()
    assert "report() takes a dict of metrics" in str(grid[0].error)


def test_log_to_file_stays_inside_the_trial_directory():
    with pytest.raises(ValueError, match="inside each trial's directory"):
        tune.Tuner(counting, param_space=_space(1, 3),
                   run_config=tune.RunConfig(log_to_file="../../out.txt", verbose=0)).fit()


def _reports_id(config):
    tune.report({"id": config["id"]})


def test_trials_given_one_directory_name_keep_their_files_apart(tmp_path, monkeypatch):
    # A trial_dirname_creator that names every trial alike, and names cut short by
    # TUNE_MAX_LEN_IDENTIFIER: each trial still gets a directory of its own (as on Ray), also
    # when a directory of that name is left from an earlier run.
    run_config = tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)
    same = tune.TuneConfig(trial_dirname_creator=lambda trial: "same")
    for _ in range(2):
        grid = tune.Tuner(_reports_id, param_space={"id": tune.grid_search([1, 2, 3])},
                          tune_config=same, run_config=run_config).fit()
        assert sorted(r.metrics["id"] for r in grid) == [1, 2, 3]
        assert all(len(r.metrics_dataframe) == 1 for r in grid)
    assert len({r.path for r in grid}) == 3
    assert len([p for p in (tmp_path / "exp").iterdir() if p.name.startswith("same")]) == 6
    monkeypatch.setenv("TUNE_MAX_LEN_IDENTIFIER", "10")
    grid = tune.Tuner(_reports_id, param_space={"id": tune.grid_search([1, 2, 3])},
                      run_config=tune.RunConfig(name="short", storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(json.load(open(os.path.join(r.path, "params.json")))["id"] for r in grid) == [1, 2, 3]
    assert all(len(r.metrics_dataframe) == 1 for r in grid)


WRITE_FAILURE_SCRIPT = """
import resource, signal, sys
sys.path.insert(0, {here!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
from tunesmith import tune
from _crash_driver import counting
tune.Tuner(counting, param_space={{"id": 0, "iters": 200, "sleep": 0.0, "every": 1000}},
           run_config=tune.RunConfig(name="writes", storage_path={storage!r}, verbose=0)).fit()
"""


def test_a_failing_result_write_fails_the_run_loudly(tmp_path):
    script = tmp_path / "writes.py"
    script.write_text(WRITE_FAILURE_SCRIPT.format(here=HERE, storage=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert "ResultWriteError" in last_line and "File too large" in last_line, proc.stderr
    assert "result.json" in last_line or "progress.csv" in last_line


LATER_RUN_SCRIPT = """
import resource, signal, sys
sys.path.insert(0, {here!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from tunesmith import tune
from _crash_driver import counting
resource.setrlimit(resource.RLIMIT_FSIZE, (6000, resource.RLIM_INFINITY))
try:
    tune.Tuner(counting, param_space={{"id": 0, "iters": 200, "sleep": 0.0, "every": 1000}},
               run_config=tune.RunConfig(name="full", storage_path={storage!r}, verbose=0)).fit()
except OSError as exc:
    print("FIRST", type(exc).__name__)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
grid = tune.Tuner(counting, param_space={{"id": 1, "iters": 5, "sleep": 0.0, "every": 1000}},
                  run_config=tune.RunConfig(name="later", storage_path={storage!r}, verbose=0)).fit()
print("SECOND", grid[0].metrics["training_iteration"], grid.num_errors)
"""


def test_a_later_experiment_in_the_same_process_runs_after_a_failed_write(tmp_path):
    script = tmp_path / "later.py"
    script.write_text(LATER_RUN_SCRIPT.format(here=HERE, storage=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "FIRST ResultWriteError" in proc.stdout, proc.stdout + proc.stderr
    assert "SECOND 5 0" in proc.stdout, proc.stdout + proc.stderr


def _reports_until_flag(config):
    open(config["started"], "w").close()
    i = 0
    deadline = time.monotonic() + 120
    while not os.path.exists(config["flag"]) and time.monotonic() < deadline:
        i += 1
        train.report({"i": i})
        time.sleep(0.01)
    for _ in range(3):
        i += 1
        train.report({"i": i})


def _wait_for_start(marker, thread: threading.Thread, failure: str) -> None:
    """Waits until the experiment running in ``thread`` has made ``marker`` (its trial started)."""
    deadline = time.monotonic() + 120
    while not marker.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), failure


def test_experiments_in_two_threads_keep_their_failed_writes_apart(tmp_path):
    """One experiment's failed write fails that experiment alone, even when another runs beside it."""
    from tunesmith.tune.logger._util import ResultWriteError

    started, flag = tmp_path / "b-started", tmp_path / "a-done"
    outcome: dict = {}

    def run_b():
        outcome["b"] = tune.Tuner(
            _reports_until_flag, param_space={"started": str(started), "flag": str(flag)},
            run_config=tune.RunConfig(name="b", storage_path=str(tmp_path), verbose=0),
        ).fit()

    thread_b = threading.Thread(target=run_b)
    thread_b.start()
    try:
        _wait_for_start(started, thread_b, "the other experiment's trial never started")
        # A's only trial cannot write its progress.csv: a directory is in the way.
        (tmp_path / "a" / "t0" / "progress.csv").mkdir(parents=True)
        with pytest.raises(ResultWriteError, match="progress.csv"):
            tune.Tuner(counting, param_space={"id": 0, "iters": 5, "sleep": 0.0, "every": 1000},
                       tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: "t0"),
                       run_config=tune.RunConfig(name="a", storage_path=str(tmp_path), verbose=0)).fit()
        assert thread_b.is_alive(), "the other experiment ended while A failed"
    finally:
        flag.touch()
        thread_b.join(timeout=300)
    grid = outcome["b"]
    assert grid.num_errors == 0
    last = grid[0].metrics["i"]
    with open(os.path.join(grid[0].path, "progress.csv"), newline="") as f:
        rows = [int(row["i"]) for row in csv.DictReader(f)]
    assert rows == list(range(1, last + 1))


def test_an_experiment_waits_for_its_own_disk_alone(tmp_path):
    """Experiments in threads of one process write through their own I/O threads: one whose file
    blocks (here a FIFO nobody reads yet, as a stuck network mount would) does not hold up another."""
    started = tmp_path / "a-started"
    (tmp_path / "a" / "t0").mkdir(parents=True)
    fifo = tmp_path / "a" / "t0" / "result.json"
    os.mkfifo(fifo)
    outcome: dict = {}
    unblocked = threading.Event()
    read: list[bytes] = []

    def unblock():  # opening the FIFO for reading lets A's writes through
        if not unblocked.is_set():
            unblocked.set()
            with open(fifo, "rb") as f:
                read.append(f.read())

    def run_a():
        outcome["a"] = tune.Tuner(
            counting, param_space={"id": 0, "iters": 5, "sleep": 0.0, "every": 1000},
            tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: "t0"),
            run_config=tune.RunConfig(name="a", storage_path=str(tmp_path), verbose=0,
                                      callbacks=[_TouchOnStart(str(started))]),
        ).fit()

    thread_a = threading.Thread(target=run_a)
    thread_a.start()
    fallback = threading.Timer(240, unblock)  # lets a B that waits for A's disk end
    fallback.start()
    try:
        _wait_for_start(started, thread_a, "experiment A's trial never started")
        grid_b = tune.Tuner(counting, param_space={"id": 1, "iters": 5, "sleep": 0.0, "every": 2},
                            run_config=tune.RunConfig(name="b", storage_path=str(tmp_path), verbose=0)).fit()
        assert not unblocked.is_set(), "B's fit() returned only once A's file was unblocked"
        assert thread_a.is_alive(), "A finished although its result file could not be written"
    finally:
        fallback.cancel()
        threading.Thread(target=unblock, daemon=True).start()
        thread_a.join(timeout=300)
    assert grid_b.num_errors == 0
    assert_each_iteration_once(os.path.join(tmp_path, "b"), 5, 1)
    assert outcome["a"].num_errors == 0
    deadline = time.monotonic() + 60
    while not read and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [json.loads(line)["step"] for line in read[0].splitlines()] == [1, 2, 3, 4, 5]


class _TouchOnStart(tune.Callback):
    def __init__(self, path: str):
        self.path = path

    def on_trial_start(self, iteration, trials, trial, **info):
        open(self.path, "w").close()


def _prints_steps(config):
    step = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            step = int(open(os.path.join(d, "s")).read())
    while step < 6:
        step += 1
        print(f"step {step}", flush=True)
        with __import__("tempfile").TemporaryDirectory() as d:
            open(os.path.join(d, "s"), "w").write(str(step))
            train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(d))


class _InterruptAfter(tune.Callback):
    """Presses Ctrl+C once, after ``results`` results (``marker`` says it has)."""

    def __init__(self, results: int, marker: str):
        self.left, self.marker = results, marker

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.left -= 1
        if self.left == 0 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise KeyboardInterrupt


def test_restored_trials_keep_their_settings(tmp_path):
    run_config = tune.RunConfig(
        name="settings", storage_path=str(tmp_path), verbose=0, log_to_file=("out.txt", "err.txt"),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=[_InterruptAfter(3, str(tmp_path / "pressed"))],
        failure_config=tune.FailureConfig(max_failures=2),
    )
    tune.Tuner(tune.with_resources(_prints_steps, {"cpu": 0.5}), run_config=run_config).fit()
    exp_dir = os.path.join(str(tmp_path), "settings")
    grid = tune.Tuner.restore(exp_dir, trainable=tune.with_resources(_prints_steps, {"cpu": 0.5})).fit()
    result = grid[0]
    assert result.error is None and result.metrics["step"] == 6
    assert list(result.metrics_dataframe["step"]) == [1, 2, 3, 4, 5, 6]
    with open(os.path.join(result.path, "out.txt")) as f:
        printed = [line.strip() for line in f if line.startswith("step")]
    assert printed[-1] == "step 6" and "step 1" in printed  # both runs wrote to the trial's file
    assert len([d for d in os.listdir(result.path) if d.startswith("checkpoint_")]) == 1  # num_to_keep=1
    with open(os.path.join(exp_dir, "experiment_state.json")) as f:
        state = json.load(f)["trials"][0]
    assert state["status"] == "TERMINATED"
    assert state["resources"] == [{"CPU": 0.5}] and state["max_failures"] == 2


# -- the driver itself fails -----------------------------------------------------------------------------------------
def reports_then_waits(config):
    """Two results (a checkpoint with the first), then, when not resumed, waits for a flag the test never sets."""
    import tempfile

    if train.get_checkpoint() is not None:
        train.report({"step": 3, "resumed": True})
        return
    with tempfile.TemporaryDirectory() as d:
        train.report({"step": 1, "resumed": False}, checkpoint=train.Checkpoint.from_directory(d))
    train.report({"step": 2, "resumed": False})
    deadline = time.monotonic() + 600
    while not os.path.exists(config["flag"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    train.report({"step": 3, "resumed": False})


class BreaksOnce(tune.schedulers.FIFOScheduler):
    """Raises at the second result it sees in this process; restored, it works."""

    broke = False

    def on_trial_result(self, tune_controller, trial, result):
        if result["step"] == 2 and not BreaksOnce.broke:
            BreaksOnce.broke = True
            raise RuntimeError("the scheduler broke")
        return super().on_trial_result(tune_controller, trial, result)


def test_a_failing_scheduler_ends_the_run_at_once_and_it_restores(tmp_path):
    """An exception in the driver's loop ends fit() at once, and the unfinished trial resumes on restore.

    Before, fit() waited up to TUNE_FORCE_TRIAL_CLEANUP_S (600 s) for the busy trial to report
    again, then marked it TERMINATED, so that restore never finished it.
    """
    flag = tmp_path / "flag"
    fallback = threading.Timer(240, flag.touch)  # lets a run that waits for the trial end
    fallback.start()
    try:
        with pytest.raises(RuntimeError, match="the scheduler broke"):
            tune.Tuner(
                reports_then_waits, param_space={"flag": str(flag)},
                tune_config=tune.TuneConfig(scheduler=BreaksOnce()),
                run_config=tune.RunConfig(name="broke", storage_path=str(tmp_path), verbose=0),
            ).fit()
        assert not flag.exists(), "fit() waited for the trial to report again"
    finally:
        fallback.cancel()
    assert _workers() == [], "the trial's worker outlived fit()"
    # The trial was paused with its checkpoint; restored, it resumes from it and finishes.
    grid = tune.Tuner.restore(str(tmp_path / "broke"), trainable=reports_then_waits).fit()
    assert grid.num_errors == 0 and grid.num_terminated == 1
    assert grid[0].metrics["resumed"] is True and grid[0].metrics["step"] == 3


def test_a_full_disk_while_saving_the_state_is_one_clear_error_and_the_run_restores(tmp_path, monkeypatch):
    """The state save's OSError came out bare, after a second failing save at shutdown hid it; temporary
    files stayed behind."""
    import errno

    import tunesmith.tune.execution.state_snapshot as snapshot
    from tunesmith.tune.execution.state_snapshot import StateSaveError

    write, calls = snapshot._write_text_atomic, []

    def full_from_the_second(path, pieces):
        calls.append(path)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, pieces)

    monkeypatch.setattr(snapshot, "_write_text_atomic", full_from_the_second)
    space = {"id": tune.grid_search([0, 1]), "iters": 40, "sleep": 0.05, "every": 3}
    with pytest.raises(StateSaveError, match=r"No space left on device.*Tuner.restore") as info:
        tune.Tuner(counting, param_space=space,
                   run_config=tune.RunConfig(name="full", storage_path=str(tmp_path), verbose=0)).fit()
    assert isinstance(info.value.__cause__, OSError) and info.value.__context__ is info.value.__cause__
    monkeypatch.setattr(snapshot, "_write_text_atomic", write)
    with pytest.raises(TypeError):  # a write cut short leaves the file as it was, and no temporary file
        write(str(tmp_path / "full" / "experiment_state.json"), ["{", None])
    assert not [f for f in os.listdir(tmp_path / "full") if ".tmp" in f]
    grid = tune.Tuner.restore(str(tmp_path / "full"), trainable=counting).fit()
    assert sorted(r.metrics["step"] for r in grid) == [40, 40]
    assert_each_iteration_once(str(tmp_path / "full"), 40, 2)


def _checkpoints_every_step_and_waits_for_old_ones_to_go(config):
    import glob
    import tempfile

    trial_dir = train.get_context().get_trial_dir()
    waited_out = 0
    for i in range(12):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state"), "w") as f:
                f.write(str(i))
            train.report({"i": i, "waited_out": waited_out}, checkpoint=train.Checkpoint.from_directory(d))
        deadline = time.time() + 20
        while len(glob.glob(os.path.join(trial_dir, "checkpoint_*"))) > 5 and time.time() < deadline:
            time.sleep(0.02)
        waited_out += time.time() >= deadline


def test_checkpoints_dropped_by_num_to_keep_do_not_pile_up_until_the_next_periodic_save(tmp_path, monkeypatch):
    """With num_to_keep=1 and TUNE_GLOBAL_CHECKPOINT_S=60, every checkpoint of the last minute stayed on
    disk (deletion waits for a saved state that no longer names them); a save now comes early."""
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "60")
    (result,) = tune.Tuner(
        _checkpoints_every_step_and_waits_for_old_ones_to_go,
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    ).fit()
    assert result.error is None and result.metrics["i"] == 11
    assert result.metrics["waited_out"] == 0  # never more than five checkpoint directories at once
    assert sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_")) == ["checkpoint_000011"]


def _counts_to_three_with_checkpoints(config):
    start = restore_step()
    for i in range(start, 3):
        report_step(i + 1, i=i + 1, start=start, x=config["x"])


def _edit_state(exp_dir, edit):
    path = os.path.join(exp_dir, "experiment_state.json")
    with open(path) as f:
        state = json.load(f)
    edit(state)
    with open(path, "w") as f:
        json.dump(state, f)


def test_a_trial_whose_stop_was_decided_when_the_driver_died_stays_ended(tmp_path):
    """The state saved between the stop decision and the worker's confirmation says RUNNING; restore
    ran the trial past its stop criterion."""
    exp = str(tmp_path / "exp")
    tune.Tuner(_counts_to_three_with_checkpoints, param_space={"x": 1},
               run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                         stop={"i": 2})).fit()

    def as_if_killed(state):
        (trial,) = state["trials"]
        assert trial["last_result"]["done"] is True
        trial["status"] = "RUNNING"

    _edit_state(exp, as_if_killed)
    (result,) = tune.Tuner.restore(exp, _counts_to_three_with_checkpoints).fit()
    assert result.metrics["i"] == 2
    assert list(result.metrics_dataframe["i"]) == [1, 2]


def test_restore_keeps_the_checkpoint_a_paused_trial_starts_from_in_another_trials_directory(tmp_path):
    """PBT's exploit: trial B is paused to start from trial A's checkpoint, which A itself has dropped
    (num_to_keep). Restore deleted it as a checkpoint A's state no longer names, and B failed."""
    exp = str(tmp_path / "exp")
    grid = tune.Tuner(_counts_to_three_with_checkpoints, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                                checkpoint_config=tune.CheckpointConfig(num_to_keep=5))).fit()
    donor = next(r for r in grid if r.config["x"] == 1)
    donor_checkpoint = os.path.join(donor.path, "checkpoint_000000")  # holds i=1

    def exploit(state):
        a, b = sorted(state["trials"], key=lambda t: t["config"]["x"])
        a["checkpoints"] = [c for c in a["checkpoints"] if not c["path"].endswith("checkpoint_000000")]
        b["status"] = "PAUSED"
        b["restore_checkpoint"] = os.path.relpath(donor_checkpoint, exp)
        b["restore_checkpoint_rows"] = None

    _edit_state(exp, exploit)
    restored = tune.Tuner.restore(exp, _counts_to_three_with_checkpoints).fit()
    assert restored.num_errors == 0
    resumed = next(r for r in restored if r.config["x"] == 2)
    assert resumed.metrics["start"] == 1  # it started from the donor's checkpoint


def _fails_once_before_its_own_checkpoint(config):
    start = restore_step()
    tune.report({"i": start + 1})
    if not os.path.exists(config["marker"]):
        open(config["marker"], "w").close()
        raise RuntimeError("fails once")
    tune.report({"i": start + 2})


def test_a_retry_from_tune_run_restore_logs_each_iteration_once(tmp_path):
    initial = tmp_path / "initial"
    initial.mkdir()
    (initial / STATE_FILE).write_text(json.dumps({"step": 100}))
    analysis = tune.run(_fails_once_before_its_own_checkpoint, config={"marker": str(tmp_path / "m")},
                        restore=str(initial), max_failures=1, storage_path=str(tmp_path / "r"), verbose=0)
    (trial,) = analysis.trials
    rows = [json.loads(line) for line in open(os.path.join(trial.path, "result.json"))]
    assert [(r["training_iteration"], r["i"]) for r in rows] == [(1, 101), (2, 102)]
