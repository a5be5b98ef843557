"""Callbacks that fail, signals, and what Tuner.restore checks (Ray's behaviour or better)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tunesmith import tune

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "_crash_driver.py")
sys.path.insert(0, HERE)

from _crash_driver import counting  # noqa: E402


def _space(trials: int, iters: int, sleep: float = 0.01, every: int = 3) -> dict:
    return {"id": tune.grid_search(list(range(trials))), "iters": iters, "sleep": sleep, "every": every}


def test_the_seed_logger_callback_finds_the_trial_directory_at_trial_start(tmp_path):
    from tunesmith.tune.logger import LoggerCallback

    class CustomLoggerCallback(LoggerCallback):
        """The seed's example: a file per trial, opened when the trial starts."""

        def __init__(self, filename: str = "log.txt"):
            self._trial_files = {}
            self._filename = filename

        def log_trial_start(self, trial):
            trial_logfile = os.path.join(trial.logdir, self._filename)
            self._trial_files[trial] = open(trial_logfile, "at")

        def log_trial_result(self, iteration, trial, result):
            if trial in self._trial_files:
                self._trial_files[trial].write(json.dumps(result["step"]) + "\n")

        def on_trial_complete(self, iteration, trials, trial, **info):
            if trial in self._trial_files:
                self._trial_files[trial].close()
                del self._trial_files[trial]

    seen = []

    class SeesParams(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            seen.append(os.path.exists(os.path.join(trial.local_path, "params.json")))

    grid = tune.Tuner(counting, param_space=_space(2, 3),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                                callbacks=[SeesParams(), CustomLoggerCallback()])).fit()
    assert grid.num_errors == 0 and seen == [True, True]
    for result in grid:
        with open(os.path.join(result.path, "log.txt")) as f:
            assert f.read().split() == ["1", "2", "3"]


class _FailsOnThirdResult(tune.Callback):
    def __init__(self):
        self.results = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results += 1
        if self.results == 3:
            raise RuntimeError("tracker is down")


def test_a_failing_callback_ends_the_run_at_once_and_it_can_be_restored(tmp_path):
    storage = str(tmp_path)
    tuner = tune.Tuner(counting, param_space=_space(2, 2000, sleep=0.01, every=5),
                       run_config=tune.RunConfig(name="cb", storage_path=storage, verbose=0,
                                                 callbacks=[_FailsOnThirdResult()]))
    with pytest.raises(RuntimeError, match=r"_FailsOnThirdResult raised RuntimeError in on_trial_result\(\)"):
        tuner.fit()
    exp_dir = os.path.join(storage, "cb")
    with open(os.path.join(exp_dir, "experiment_state.json")) as f:
        trials = json.load(f)["trials"]
    # The run ended without waiting for the trials (2,000 steps each) to finish.
    assert {t["status"] for t in trials} == {"PAUSED"}
    assert all(t["last_result"].get("step", 0) < 2000 for t in trials)
    assert tune.Tuner.can_restore(exp_dir)


def _signal_driver(tmp_path, signals: list[int], may_be_interrupted: bool = False) -> dict:
    storage, name = str(tmp_path / "storage"), "sig"
    opts = {"trials": 2, "iters": 2000, "sleep": 0.02, "every": 5}
    proc = subprocess.Popen([sys.executable, DRIVER, "run", storage, name, json.dumps(opts)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    exp_dir = os.path.join(storage, name)
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(exp_dir, "experiment_state.json")):
        time.sleep(0.02)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=60)
    if may_be_interrupted and proc.returncode != 0:
        # The second signal came after fit() had returned, where a Ctrl+C stops the
        # script as Python does; what fit() left on disk must still be whole.
        assert "KeyboardInterrupt" in out or proc.returncode == -signal.SIGINT, out
    else:
        assert proc.returncode == 0, out
    with open(os.path.join(exp_dir, "experiment_state.json")) as f:
        return json.load(f)


def test_sigusr1_stops_the_experiment_gracefully(tmp_path):
    state = _signal_driver(tmp_path, [signal.SIGUSR1])
    assert {t["status"] for t in state["trials"]} == {"PAUSED"}


def test_a_second_ctrl_c_still_leaves_a_consistent_state(tmp_path):
    state = _signal_driver(tmp_path, [signal.SIGINT, signal.SIGINT], may_be_interrupted=True)
    assert "RUNNING" not in {t["status"] for t in state["trials"]}


# -- Tuner.restore ----------------------------------------------------------------------------
def _finished(tmp_path) -> str:
    tune.Tuner(counting, param_space=_space(2, 3),
               run_config=tune.RunConfig(name="done", storage_path=str(tmp_path), verbose=0)).fit()
    return os.path.join(str(tmp_path), "done")


def test_restore_with_a_param_space_of_other_keys_is_an_error(tmp_path):
    path = _finished(tmp_path)
    with pytest.raises(ValueError, match=r"Added: \['extra'\]"):
        tune.Tuner.restore(path, trainable=counting, param_space={**_space(2, 3), "extra": 1})
    with pytest.raises(ValueError, match=r"removed: \['sleep'\]"):
        tune.Tuner.restore(path, trainable=counting,
                           param_space={"id": tune.grid_search([0, 1]), "iters": 3, "every": 3})


def test_restore_with_another_trainable_is_an_error(tmp_path):
    path = _finished(tmp_path)

    def other(config):
        pass

    with pytest.raises(ValueError, match="ran the trainable 'counting'"):
        tune.Tuner.restore(path, trainable=other)


def test_can_restore_once_a_tuner_is_constructed(tmp_path):
    tune.Tuner(counting, param_space=_space(1, 3),
               run_config=tune.RunConfig(name="built", storage_path=str(tmp_path), verbose=0))
    path = os.path.join(str(tmp_path), "built")
    assert tune.Tuner.can_restore(path)
    grid = tune.Tuner.restore(path, trainable=counting).fit()
    assert [r.metrics["step"] for r in grid] == [3]


# -- schedulers that pause trials which never checkpoint -------------------------------------------
def _never_checkpoints(config):
    for i in range(12):
        tune.report({"score": config["lr"] * (i + 1)})


def test_pbt_restarts_trials_without_checkpoints_from_scratch(caplog):
    import logging

    from tunesmith.tune.schedulers import PopulationBasedTraining

    pbt = PopulationBasedTraining(metric="score", mode="max", perturbation_interval=3,
                                  hyperparam_mutations={"lr": [0.1, 0.5, 1.0]})
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        grid = tune.Tuner(_never_checkpoints, param_space={"lr": tune.grid_search([0.1, 0.5, 1.0, 0.2])},
                          tune_config=tune.TuneConfig(scheduler=pbt),
                          run_config=tune.RunConfig(verbose=0)).fit()
    assert grid.num_errors == 0
    for result in grid:
        iterations = list(result.metrics_dataframe["training_iteration"])
        assert iterations == list(range(1, len(iterations) + 1))
    assert sum("no checkpoint" in r.getMessage() for r in caplog.records) <= 1


def test_resource_changing_scheduler_leaves_a_trial_that_cannot_checkpoint_running():
    import tunesmith
    from tunesmith.tune.schedulers import ResourceChangingScheduler

    tunesmith.init(num_cpus=2)
    scheduler = ResourceChangingScheduler(
        resources_allocation_function=lambda controller, trial, result, sched: {"CPU": 2}
    )
    grid = tune.Tuner(_never_checkpoints, param_space={"lr": 0.5},
                      tune_config=tune.TuneConfig(scheduler=scheduler, metric="score", mode="max"),
                      run_config=tune.RunConfig(verbose=0)).fit()
    result = grid[0]
    assert result.error is None
    # It ran once from start to end: never paused, so never restarted.
    assert list(result.metrics_dataframe["training_iteration"]) == list(range(1, 13))
    assert result.metrics["iterations_since_restore"] == 12


# -- a worker that dies while it starts ---------------------------------------------------------
def test_a_worker_killed_while_starting_is_not_counted_as_a_trial_failure(tmp_path, monkeypatch):
    import threading

    import psutil

    monkeypatch.setenv("SLOW_IMPORT_MARKER", str(tmp_path / "slow"))
    from _slow_import_trainable import quick

    killed = threading.Event()

    def kill_while_importing():
        marker = str(tmp_path / "slow")
        deadline = time.time() + 60
        while time.time() < deadline and not killed.is_set():
            if os.path.exists(marker):  # a worker is inside the slow import now
                pid = int(open(marker).read() or 0)
                os.remove(marker)
                try:
                    psutil.Process(pid).kill()
                    killed.set()
                except psutil.Error:
                    pass
            time.sleep(0.01)

    killer = threading.Thread(target=kill_while_importing, daemon=True)
    killer.start()
    grid = tune.Tuner(quick, run_config=tune.RunConfig(
        verbose=0, failure_config=tune.FailureConfig(max_failures=0))).fit()
    killer.join(timeout=60)
    assert killed.is_set()
    assert grid[0].error is None
    assert grid[0].metrics["done"] is True


STACKS_SCRIPT = """
import os, sys, time
from tunesmith import tune

def waits_for_flag(config):
    with open(config["pid_file"] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(config["pid_file"] + ".tmp", config["pid_file"])
    deadline = time.monotonic() + 120
    while not os.path.exists(config["flag"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    tune.report({{"done": 1}})

grid = tune.Tuner(waits_for_flag, param_space={{"pid_file": {pid_file!r}, "flag": {flag!r}}},
                  run_config=tune.RunConfig(storage_path={storage!r}, name="stacks", verbose=0)).fit()
print("ERRORS", grid.num_errors)
"""


def test_a_worker_prints_every_threads_stack_on_sigusr2(tmp_path):
    """`kill -USR2 <worker pid>` tells where a stuck trial is, in the experiment's output."""
    import threading

    pid_file, flag = tmp_path / "pid", tmp_path / "flag"
    script = tmp_path / "stacks.py"
    script.write_text(STACKS_SCRIPT.format(pid_file=str(pid_file), flag=str(flag), storage=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    err_lines: list[str] = []
    dumped = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)
            if "in waits_for_flag" in line:
                dumped.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pid_file.exists(), "the trial never started"
        os.kill(int(pid_file.read_text()), signal.SIGUSR2)
        assert dumped.wait(60), "".join(err_lines)
    finally:
        flag.touch()
    out = proc.stdout.read()
    proc.wait(timeout=120)
    reader.join(timeout=60)
    err = "".join(err_lines)
    assert proc.returncode == 0 and "ERRORS 0" in out, out + err
    assert "most recent call first" in err, err


def starts_a_pool_and_a_child(config):
    import multiprocessing

    # Leaving the block terminates the pool's forked workers with SIGTERM, and waits for them.
    with multiprocessing.get_context("fork").Pool(2) as pool:
        total = sum(pool.map(abs, [-1, -2, 3]))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    child.terminate()
    try:
        code = child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        code = "survived SIGTERM"
    tune.report({"total": total, "child_code": code})


def test_processes_a_trial_starts_still_end_by_sigterm(tmp_path):
    """Workers leave SIGTERM to the driver; the processes their trainables start do not inherit that."""
    grid = tune.Tuner(starts_a_pool_and_a_child,
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0
    assert grid[0].metrics["total"] == 6 and grid[0].metrics["child_code"] == -signal.SIGTERM


def _metrics_of_one_trial(trainable, tmp_path) -> dict:
    """Runs ``trainable`` as one trial; its last metrics (it must not fail)."""
    grid = tune.Tuner(trainable, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0, grid.errors
    return grid[0].metrics


def terminates_children_it_just_forked(config):
    import multiprocessing

    # Pool.terminate() sends SIGTERM to workers that may not have run yet: what the interpreter
    # sees before it has set a forked child up, it drops.
    children = [multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,)) for _ in range(4)]
    for child in children:
        child.start()
        child.terminate()
    deadline = time.monotonic() + 30
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
    codes = [child.exitcode for child in children]
    for child in children:
        child.kill()
        child.join()
    tune.report({"codes": codes})


def test_children_a_trial_terminates_as_soon_as_it_forks_them_end(tmp_path):
    assert _metrics_of_one_trial(terminates_children_it_just_forked, tmp_path)["codes"] == [-signal.SIGTERM] * 4


def _sigterm_blocked() -> bool:
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def forks_from_several_threads(config):
    import threading

    odd = []

    def fork_many():
        for _ in range(50):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                default = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
                os.write(write, b"ok" if default and not _sigterm_blocked() else b"odd")
                os._exit(0)
            os.close(write)
            seen = os.read(read, 8)
            os.close(read)
            os.waitpid(pid, 0)
            if seen != b"ok":
                odd.append(seen)

    threads = [threading.Thread(target=fork_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tune.report({"odd_children": len(odd), "trial_blocks_sigterm": _sigterm_blocked()})


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads signal masks from /proc")
def test_children_forked_by_several_threads_at_once_take_sigterm_as_usual(tmp_path):
    """The signal mask saved before a fork was one for the whole process: threads forking at once mixed their
    masks up, and their children kept SIGTERM blocked (Pool.terminate() waited for them forever)."""
    metrics = _metrics_of_one_trial(forks_from_several_threads, tmp_path)
    assert metrics["odd_children"] == 0 and metrics["trial_blocks_sigterm"] is False


def sums_in_a_pool(config):
    import multiprocessing

    with multiprocessing.get_context(config["context"]).Pool(2) as pool:
        total = sum(pool.map(abs, [-1, 2]))
    tune.report({"total": total})


def test_the_helpers_of_spawn_and_forkserver_pools_end_quietly(tmp_path, capfd):
    """multiprocessing's resource tracker and forkserver, which end with the process that started them, were
    announced as processes a trial had left running."""
    grid = tune.Tuner(sums_in_a_pool, param_space={"context": tune.grid_search(["spawn", "forkserver"])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0 and [r.metrics["total"] for r in grid] == [3, 3]
    assert "left running" not in capfd.readouterr().err


def _exits_3_on_ctrl_c():
    try:
        time.sleep(600)
    except KeyboardInterrupt:
        os._exit(3)


def interrupts_its_children(config):
    import multiprocessing

    started = subprocess.Popen([sys.executable, "-c", "import time, os\ntry:\n    time.sleep(600)\n"
                                "except KeyboardInterrupt:\n    os._exit(3)"])
    forked = multiprocessing.get_context("fork").Process(target=_exits_3_on_ctrl_c)
    forked.start()
    time.sleep(0.5)  # both are in their sleep
    for child in (started, forked):
        os.kill(child.pid, signal.SIGINT)
    for wait in (started.wait, forked.join):
        try:
            wait(30)
        except subprocess.TimeoutExpired:
            pass
    codes = [started.poll(), forked.exitcode]
    started.kill()
    forked.kill()
    tune.report({"codes": codes})


def test_processes_a_trial_starts_take_ctrl_c_as_usual(tmp_path):
    """Workers leave Ctrl+C to the driver; an ignored SIGINT was inherited by every process a trial started."""
    assert _metrics_of_one_trial(interrupts_its_children, tmp_path)["codes"] == [3, 3]


# -- run options as Ray takes them ------------------------------------------------------------------------
def _checkpoints_and_crashes_once(config):
    import tempfile

    checkpoint = tune.get_checkpoint()
    start = json.load(open(os.path.join(checkpoint.path, "s.json")))["i"] + 1 if checkpoint else 0
    for i in range(start, 20):
        d = tempfile.mkdtemp()
        json.dump({"i": i}, open(os.path.join(d, "s.json"), "w"))
        tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))
        if i == 2 and not os.path.exists(config["mark"]):
            raise RuntimeError("crash once")


def test_a_restored_run_keeps_its_stoppers_counts(tmp_path):
    """Ray saves the Stopper (and what it counted) with the experiment; a fresh one let the restored trial run
    on to iteration 9 past MaximumIterationStopper(6)."""
    from tunesmith.tune.stopper import MaximumIterationStopper

    mark = tmp_path / "mark"
    grid = tune.Tuner(_checkpoints_and_crashes_once, param_space={"mark": str(mark)}, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="exp", verbose=0, stop=MaximumIterationStopper(6))).fit()
    assert grid[0].error is not None and grid[0].metrics["training_iteration"] == 3
    mark.touch()
    grid = tune.Tuner.restore(str(tmp_path / "exp"), trainable=_checkpoints_and_crashes_once,
                              resume_errored=True).fit()
    assert grid[0].error is None and grid[0].metrics["training_iteration"] == 6


def _validates_every_other_step(config):
    for i in range(1, 20):
        tune.report({"loss": 1 / i, **({"val_acc": i / 10} if i % 2 == 0 else {})})


def test_a_stop_criterion_reported_now_and_then_stops_the_trial_when_it_comes(tmp_path, caplog):
    """Ray warns when a stop key is missing from a result and stops on it later; it was a fatal error."""
    with caplog.at_level("WARNING", logger="tunesmith"):
        grid = tune.Tuner(_validates_every_other_step, run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0, stop={"val_acc": 0.6})).fit()
    assert grid[0].error is None and grid[0].metrics["training_iteration"] == 6
    assert "'val_acc'" in caplog.text and "RunConfig(stop=...)" in caplog.text


def _counts_to_29(config):
    for i in range(1, 30):
        tune.report({"loss": i})


def test_stop_all_ends_fast_trials_at_the_result_it_turned_true(tmp_path):
    """Pipelined trials sent many results at once, and stop_all() was asked once per batch (29 rows, not 5)."""
    from tunesmith.tune.stopper import Stopper

    class AfterFive(Stopper):
        def __init__(self):
            self.n = 0

        def __call__(self, trial_id, result):
            self.n += 1
            return False

        def stop_all(self):
            return self.n >= 5

    grid = tune.Tuner(_counts_to_29, param_space={"x": tune.grid_search([1, 2])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop=AfterFive())).fit()
    iterations = sorted(r.metrics.get("training_iteration", 0) for r in grid)
    assert iterations[-1] == 5 and sum(iterations) == 5


def test_a_failed_setup_leaves_the_experiment_free_for_the_next_fit(tmp_path):
    """A fit() that failed after taking the experiment's lock (a callback that is not a list) kept it, and the
    corrected fit() in the same process got ExperimentInUseError naming its own pid."""
    class Noop(tune.Callback):
        pass

    run_config = tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0, callbacks=Noop())
    with pytest.raises(TypeError):
        tune.Tuner(_counts_to_29, run_config=run_config).fit()
    run_config.callbacks = [Noop()]
    assert tune.Tuner(_counts_to_29, run_config=run_config).fit()[0].metrics["training_iteration"] == 29


def test_numpy_numbers_and_zero_max_concurrency_are_taken_as_ray_takes_them(tmp_path):
    import numpy as np

    tc = tune.TuneConfig(num_samples=np.int64(2), max_concurrent_trials=np.int64(0), time_budget_s=np.float32(60))
    assert (tc.num_samples, tc.max_concurrent_trials, tc.time_budget_s) == (2, None, 60.0)
    assert type(tc.num_samples) is int
    assert tune.FailureConfig(max_failures=np.int64(2)).max_failures == 2
    assert tune.CheckpointConfig(num_to_keep=np.int32(1)).num_to_keep == 1
    grid = tune.Tuner(_counts_to_29, tune_config=tc, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, stop={"training_iteration": np.int64(5)})).fit()
    assert [r.metrics["training_iteration"] for r in grid] == [5, 5]


def _names(config):
    tune.report({"ok": 1})


def test_trial_directory_names_as_ray_makes_them(tmp_path):
    """A trial_dirname_creator's name is used as given (it was cut to TUNE_MAX_LEN_IDENTIFIER, losing its end);
    without one, the directory starts with trial_name_creator's name."""
    long_name = "trial_" + "x" * 150 + "_end"
    grid = tune.Tuner(_names, tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: long_name),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="a", verbose=0)).fit()
    assert os.path.basename(grid[0].path) == long_name
    grid = tune.Tuner(_names, param_space={"x": tune.grid_search([1, 2])},
                      tune_config=tune.TuneConfig(trial_name_creator=lambda t: f"custom_{t.config['x']}"),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="b", verbose=0)).fit()
    assert sorted(os.path.basename(r.path) for r in grid) == ["custom_1_0_x=1", "custom_2_1_x=2"]


def test_trial_names_in_any_language_are_kept_and_restored(tmp_path):
    """Every character but [A-Za-z0-9_.,=+-[]] became an underscore: 实验_猫 and 实验_狗 both became ____ (one of them
    with a random suffix), and a space or an @ was replaced too. Path separators still are."""
    names = {1: "实验_猫", 2: "实验 狗@home", 3: "a/b"}
    grid = tune.Tuner(_names, param_space={"x": tune.grid_search([1, 2, 3])},
                      tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: names[t.config["x"]]),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="u", verbose=0)).fit()
    assert sorted(os.path.basename(r.path) for r in grid) == sorted(["实验_猫", "实验 狗@home", "a_b"])
    grid = tune.Tuner(_names, param_space={"x": tune.grid_search([1])},
                      tune_config=tune.TuneConfig(trial_name_creator=lambda t: "试验-1-🚀"),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="v", verbose=0)).fit()
    assert os.path.basename(grid[0].path) == "试验-1-🚀_0_x=1"
    restored = tune.Tuner.restore(str(tmp_path / "u"), _names).get_results()
    assert sorted(os.path.basename(r.path) for r in restored) == sorted(["实验_猫", "实验 狗@home", "a_b"])


def test_upload_dir_is_the_older_storage_path(tmp_path):
    target = tmp_path / "uploaded"
    sync = tune.SyncConfig(upload_dir=str(target))
    assert tune.RunConfig(sync_config=sync).storage_path == str(target)
    assert tune.RunConfig(local_dir=str(tmp_path / "local"), sync_config=sync).storage_path == str(target)
    with pytest.raises(ValueError, match="two places"):
        tune.RunConfig(storage_path=str(tmp_path / "other"), sync_config=sync)
    analysis = tune.run(_names, name="old", local_dir=str(tmp_path / "local"), sync_config=sync, verbose=0)
    assert analysis.trials[0].local_path.startswith(str(target / "old"))
    with pytest.warns(UserWarning, match="syncer"):
        tune.SyncConfig(syncer=object())


# -- several runs in one program --------------------------------------------------------------------------
def _sleeps_a_little(config):
    import time as _time

    for i in range(3):
        _time.sleep(0.2)
        tune.report({"i": i})


def test_runs_started_at_once_without_a_name_each_get_a_directory(tmp_path, monkeypatch):
    """Their default name (<trainable>_<date to the second>) was one, and the second run failed with
    ExperimentInUseError although the user never named it."""
    import threading

    monkeypatch.setenv("TUNE_DISABLE_DATED_SUBDIR", "1")  # one name for both, whatever the clock says
    grids, errors = [], []

    def fit():
        try:
            grids.append(tune.Tuner(_sleeps_a_little, run_config=tune.RunConfig(
                storage_path=str(tmp_path), verbose=0)).fit())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(os.path.basename(g.experiment_path) for g in grids) == ["_sleeps_a_little", "_sleeps_a_little_2"]
    assert all(g[0].metrics["i"] == 2 for g in grids)


def test_fit_again_on_a_restored_tuner_goes_on_with_the_restored_trials(tmp_path):
    """It started the experiment over (and dropped the restored trials from its state)."""
    storage, name = str(tmp_path / "storage"), "again"
    grid = tune.Tuner(counting, param_space=_space(2, 5), run_config=tune.RunConfig(
        name=name, storage_path=storage, verbose=0)).fit()
    ids = sorted(r.metrics["trial_id"] for r in grid)
    tuner = tune.Tuner.restore(os.path.join(storage, name), trainable=counting)
    for _ in range(2):
        assert sorted(r.metrics["trial_id"] for r in tuner.fit()) == ids


def test_a_process_forked_during_a_run_does_not_keep_the_experiments_lock(tmp_path):
    from tunesmith._internal.experiment_lock import ExperimentLock

    lock = ExperimentLock(str(tmp_path))
    child = os.fork()
    if child == 0:  # a user's fork-based pool worker, still alive after the run
        time.sleep(3)
        os._exit(0)
    try:
        lock.release()
        ExperimentLock(str(tmp_path)).release()  # before: ExperimentInUseError naming this very process
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_full_disk_as_a_run_starts_is_an_error_naming_the_file(tmp_path, monkeypatch):
    """It was a bare "OSError: [Errno 28] No space left on device" naming no file."""
    import errno

    from tunesmith._internal import storage as storage_module

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_module, "write_bytes_atomic", full)
    with pytest.raises(OSError, match=r"Could not write .*tuner.pkl \(No space left on device\)\. What the "
                                      r"experiment saved before is intact: make room"):
        tune.Tuner(counting, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
