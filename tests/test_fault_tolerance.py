"""A worker that dies is noticed at once, and a retried trial resumes from its checkpoint."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from _trainables import process_alive, report_from_a_thread_until_stopped, report_step, restore_step

from tunesmith import train, tune


def dies_once(config):
    step = restore_step()
    resumed = train.get_checkpoint() is not None
    while step < 6:
        step += 1
        report_step(step, resumed=resumed)
        marker = os.path.join(config["dir"], "killed")
        if step == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path):
    start = time.time()
    grid = tune.Tuner(
        dies_once, param_space={"dir": str(tmp_path)},
        run_config=tune.RunConfig(verbose=0, failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert time.time() - start < 30  # noticed at once, not after a timeout
    result = grid[0]
    assert result.error is None
    assert result.metrics["step"] == 6 and result.metrics["training_iteration"] == 6
    assert result.metrics["resumed"] is True
    with open(os.path.join(result.path, "error.txt")) as f:
        assert "killed by signal 9" in f.read()


def test_killed_worker_without_retries_is_an_error(tmp_path):
    grid = tune.Tuner(
        dies_once, param_space={"dir": str(tmp_path), "i": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(verbose=0),
    ).fit()
    # The first trial's worker was killed; the second ran on a fresh worker and finished.
    assert grid.num_errors == 1 and grid.num_terminated == 1
    failed = [r for r in grid if r.error][0]
    assert "killed by signal 9 (SIGKILL)" in str(failed.error)
    assert "out-of-memory killer" in str(failed.error)  # what a SIGKILL from outside usually is
    assert failed.metrics["step"] == 3


class Unpicklable(Exception):
    def __init__(self, lock):
        super().__init__("an error holding a lock")
        self.lock = lock


def raises_unpicklable(config):
    import threading

    tune.report({"x": 1})
    raise Unpicklable(threading.Lock())


def test_error_that_cannot_be_pickled_keeps_its_traceback():
    grid = tune.Tuner(raises_unpicklable, run_config=tune.RunConfig(verbose=0)).fit()
    assert grid.num_errors == 1
    assert "an error holding a lock" in str(grid[0].error)


DRIVER_SCRIPT = """
import sys, time
sys.path.insert(0, {tests_dir!r})
from _trainables import report_step, restore_step
from tunesmith import tune

def slow(config):
    step = restore_step()
    while step < 20:
        step += 1
        report_step(step)
        time.sleep(0.1)

if sys.argv[1] == "run":
    tune.Tuner(slow, param_space={{"i": tune.grid_search([0, 1])}},
               run_config=tune.RunConfig(name="killed", storage_path=sys.argv[2], verbose=0)).fit()
else:
    grid = tune.Tuner.restore(sys.argv[2] + "/killed", trainable=slow).fit()
    print("RESULT", sorted(r.metrics["step"] for r in grid), grid.num_errors)
"""


def test_killed_driver_takes_its_workers_along_and_restore_finishes(tmp_path):
    import subprocess
    import sys

    import psutil

    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT.format(tests_dir=os.path.dirname(__file__)))
    storage = str(tmp_path / "storage")
    proc = subprocess.Popen([sys.executable, str(script), "run", storage])
    state = os.path.join(storage, "killed", "experiment_state.json")
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(state) and any(
            d.startswith("checkpoint_000005") for _, dirs, _ in os.walk(storage) for d in dirs
        ):
            break
        time.sleep(0.1)
    workers = psutil.Process(proc.pid).children()
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive  # no worker outlives the driver
    done = subprocess.run([sys.executable, str(script), "restore", storage], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RESULT [20, 20] 0" in done.stdout


class FlakyRestore(tune.Trainable):
    """Fails once at iteration 3; its first attempt to load a checkpoint fails too."""

    def setup(self, config):
        self.value = 0
        self.dir = config["dir"]
        self.restored = False

    def step(self):
        self.value += 1
        marker = os.path.join(self.dir, "step_failed")
        if self.value == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("step fails once")
        return {"value": self.value, "restored": self.restored}

    def save_checkpoint(self, checkpoint_dir):
        return {"value": self.value}

    def load_checkpoint(self, checkpoint):
        marker = os.path.join(self.dir, "load_failed")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError("checkpoint storage not reachable yet")
        self.value = checkpoint["value"]
        self.restored = True


def _fit_flaky_restore(tmp_path, max_failures=1):
    return tune.Tuner(
        FlakyRestore, param_space={"dir": str(tmp_path)},
        run_config=tune.RunConfig(
            verbose=0, stop={"training_iteration": 6},
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
        ),
    ).fit()


def test_restore_is_retried_before_starting_over(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_RESTORE_RETRY_NUM", "1")
    result = _fit_flaky_restore(tmp_path)[0]
    assert result.error is None
    assert result.metrics["restored"] is True
    assert result.metrics["value"] == 6  # continued from the iteration-2 checkpoint


def test_a_failed_restore_is_a_failure_of_the_trial_retried_from_the_same_checkpoint(tmp_path):
    """As on Ray: the failed load counts against max_failures (here the second of two), and the retry loads
    the same checkpoint."""
    result = _fit_flaky_restore(tmp_path, max_failures=2)[0]
    assert result.error is None and result.metrics["restored"] is True
    assert result.metrics["value"] == 6  # continued from the iteration-2 checkpoint
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5, 6]


def _bump(path) -> int:
    count = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(count))
    return count


class _RestoresBadlyNowAndThen(tune.Trainable):
    """Fails at steps 3 and 5 (once each); the first load after each failure fails too."""

    def setup(self, config):
        self.i = 0
        self.dir = config["dir"]

    def step(self):
        self.i += 1
        if self.i in (3, 5) and _bump(os.path.join(self.dir, f"failed_{self.i}")) == 1:
            raise RuntimeError(f"fails once at {self.i}")
        return {"i": self.i, "done": self.i >= 6}

    def save_checkpoint(self, checkpoint_dir):
        return {"i": self.i}

    def load_checkpoint(self, checkpoint):
        if _bump(os.path.join(self.dir, "loads")) in (1, 3):
            raise OSError("storage not reachable yet")
        self.i = checkpoint["i"]


def test_restore_retries_start_over_after_a_restore_that_worked(tmp_path, monkeypatch):
    """As on Ray: the retries TUNE_RESTORE_RETRY_NUM allows were used up once for the whole trial, and the
    second failed load counted against max_failures."""
    monkeypatch.setenv("TUNE_RESTORE_RETRY_NUM", "1")
    result = tune.Tuner(_RestoresBadlyNowAndThen, param_space={"dir": str(tmp_path)}, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()[0]
    assert result.error is None and result.metrics["i"] == 6
    assert open(tmp_path / "loads").read() == "4"


class _CannotLoad(FlakyRestore):
    def load_checkpoint(self, checkpoint):
        if not os.path.exists(os.path.join(self.dir, "fixed")):
            raise KeyError("value")  # does not read what save_checkpoint() wrote
        self.value = checkpoint["value"]
        self.restored = True


def test_a_trial_that_cannot_load_its_checkpoint_ends_in_error_with_its_checkpoints(tmp_path):
    """It fell back to older checkpoints and then trained from scratch, reporting success; a later restore
    deleted the checkpoints it had not been able to load."""
    grid = tune.Tuner(_CannotLoad, param_space={"dir": str(tmp_path)}, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="exp", verbose=0, stop={"training_iteration": 6},
        failure_config=tune.FailureConfig(max_failures=1),
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()
    result = grid[0]
    assert isinstance(result.error, Exception) and "KeyError" in str(result.error)
    assert result.metrics["training_iteration"] == 2 and result.checkpoint is not None
    kept = sorted(p.name for p in Path(result.path).glob("checkpoint_*"))
    assert kept == ["checkpoint_000000", "checkpoint_000001"]
    # Fixed, a restore goes on from the checkpoint it kept.
    (tmp_path / "fixed").touch()
    grid = tune.Tuner.restore(str(tmp_path / "exp"), trainable=_CannotLoad, resume_errored=True).fit()
    assert grid[0].error is None and grid[0].metrics["restored"] is True
    assert list(grid[0].metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5, 6]


def _dies_on_its_way_out(config):
    try:
        for step in range(1, 100):
            report_step(step)
            time.sleep(0.01)
    finally:
        marker = os.path.join(config["dir"], "killed")
        if not os.path.exists(marker):  # once: a retry would run on
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_that_dies_after_its_stop_criterion_ends_the_trial_as_told(tmp_path):
    """The trial reached its stop criterion, then its process died as it wound down (a crash at exit):
    it ended in ERROR (max_failures=0), or was retried and trained past the criterion. On Ray it is
    TERMINATED with the results it had."""
    for max_failures in (0, 1):
        os.makedirs(tmp_path / str(max_failures))
        (result,) = tune.Tuner(
            _dies_on_its_way_out, param_space={"dir": str(tmp_path / str(max_failures))},
            run_config=tune.RunConfig(verbose=0, stop={"training_iteration": 3}, name=f"f{max_failures}",
                                      storage_path=str(tmp_path / "results"),
                                      failure_config=tune.FailureConfig(max_failures=max_failures)),
        ).fit()
        assert result.error is None and result.metrics["step"] == 3
        assert list(result.metrics_dataframe["step"]) == [1, 2, 3]
        assert os.path.exists(tmp_path / str(max_failures) / "killed")  # it did die


def _forks_a_helper_then_dies(config):
    """Starts a process that keeps the worker's socket open (as a multiprocessing Manager does), then
    dies once at step 2, as an out-of-memory kill would end it."""
    import multiprocessing

    step = restore_step()
    marker = os.path.join(config["dir"], "killed")
    if not os.path.exists(marker):
        helper = multiprocessing.get_context("fork").Process(
            target=_holds_on, args=(config["dir"],), daemon=False)
        helper.start()
    while step < 4:
        step += 1
        report_step(step)
        if step == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def _holds_on(directory):
    with open(os.path.join(directory, "helper.pid"), "w") as f:
        f.write(str(os.getpid()))
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(directory, "release")) and time.time() < deadline:
        time.sleep(0.05)
    open(os.path.join(directory, "helper_exited"), "w").close()


def test_a_worker_that_dies_beside_a_process_it_forked_is_noticed(tmp_path):
    """The forked process held the worker's socket open, so its death showed no end of file: the run
    waited until that process ended (forever, for a Manager). It is noticed and the trial retried."""
    try:
        (result,) = tune.Tuner(
            _forks_a_helper_then_dies, param_space={"dir": str(tmp_path)},
            run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path / "results"),
                                      failure_config=tune.FailureConfig(max_failures=1)),
        ).fit()
        assert not (tmp_path / "helper_exited").exists()  # noticed while the helper still held the socket
        assert result.error is None and result.metrics["step"] == 4
        with open(os.path.join(result.path, "error.txt")) as f:
            assert "killed by signal 9" in f.read()
    finally:
        (tmp_path / "release").touch()
        try:
            os.kill(int((tmp_path / "helper.pid").read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _checkpoints_at_two_then_fails(config):
    if train.get_checkpoint() is not None:
        raise RuntimeError("fails again at once")
    train.report({"step": 1})
    report_step(2)  # with a checkpoint
    train.report({"step": 3})
    raise RuntimeError("fails after step 3")


def test_a_retry_that_fails_at_once_leaves_the_metrics_of_the_rows_kept(tmp_path):
    """The retry cut the logs back to the checkpoint (rows 1, 2) but Result.metrics still named row 3,
    which no log held any more (and Result.from_path said 2)."""
    from tunesmith.train import Result

    (result,) = tune.Tuner(
        _checkpoints_at_two_then_fails,
        run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path),
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert "fails again at once" in str(result.error)
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 2]
    assert result.metrics["training_iteration"] == 2 and result.metrics["step"] == 2
    assert Result.from_path(result.path).metrics["training_iteration"] == 2


_CHILD = """
import signal, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
time.sleep(300)
"""


def _start_child(directory: str, name: str, kind: str) -> None:
    """Starts a process that outlives its trial unless ended; its pid goes to ``name``.pid."""
    import subprocess
    import sys

    ready = os.path.join(directory, name + ".ready")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, ready, kind])
    with open(os.path.join(directory, name + ".pid"), "w") as f:
        f.write(str(child.pid))
    while not os.path.exists(ready):  # its SIGTERM disposition is set before the worker goes
        time.sleep(0.01)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _pids(directory) -> list[int]:
    return [int(p.read_text()) for p in sorted(directory.glob("*.pid"))]


def _kill_children_left(directory) -> None:
    """Ends what a failed test left running (the children whose pids are in ``directory``)."""
    for pid in _pids(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _starts_children_then_dies(config):
    _start_child(config["dir"], "plain", "plain")
    _start_child(config["dir"], "stubborn", "stubborn")  # ignores SIGTERM: needs SIGKILL
    train.report({"step": 1})
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
def test_processes_a_dead_workers_trial_started_are_ended(tmp_path, capfd):
    """A worker that died (here SIGKILL, as the out-of-memory killer does) could not end what its
    trial started: those processes outlived the experiment, holding memory and devices."""
    try:
        (result,) = tune.Tuner(
            _starts_children_then_dies, param_space={"dir": str(tmp_path)},
            run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path / "results")),
        ).fit()
        assert "killed by signal 9" in str(result.error)
        plain, stubborn = _pids(tmp_path)
        assert _gone_within(plain, 30) and _gone_within(stubborn, 30)
        assert f"left running (pids {sorted([plain, stubborn])})" in capfd.readouterr().err
    finally:
        _kill_children_left(tmp_path)


def _starts_a_child_then_ignores_the_stop(config):
    _start_child(config["dir"], "plain", "plain")
    report_from_a_thread_until_stopped()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
def test_processes_of_a_trial_ended_by_force_are_ended_with_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", "0.5")
    try:
        (result,) = tune.Tuner(
            _starts_a_child_then_ignores_the_stop, param_space={"dir": str(tmp_path)},
            run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path / "results"),
                                      stop={"training_iteration": 2}),
        ).fit()
        assert result.error is None and result.metrics["training_iteration"] == 2
        (plain,) = _pids(tmp_path)
        assert _gone_within(plain, 30)
    finally:
        _kill_children_left(tmp_path)


_POOLS: list = []


def _leaves_a_pool_open(config):
    import multiprocessing

    pool = multiprocessing.get_context("fork").Pool(2)
    _POOLS.append(pool)  # kept open, as a module-level cache would
    assert pool.apply(abs, (-3,)) == 3
    train.report({"worker": os.getpid()})
    if config["fail"]:
        raise RuntimeError("the trial fails with its pool open")


def _starts_a_stubborn_child_then_fails(config):
    _start_child(config["dir"], "stubborn", "stubborn")
    train.report({"worker": os.getpid()})
    raise RuntimeError("the trial fails with its child running")


def _group_gone_within(pgid: int, seconds: float) -> bool:
    from tunesmith._internal.backend._leftovers import group_members

    deadline = time.monotonic() + seconds
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
@pytest.mark.parametrize("fail", [False, True])
def test_a_pool_a_trial_left_open_does_not_outlive_the_experiment(tmp_path, fail):
    """The pool's own thread replaced the workers that were ended as the worker left, and the
    replacements ran on forever."""
    (result,) = tune.Tuner(_leaves_a_pool_open, param_space={"fail": fail},
                           run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path))).fit()
    assert (result.error is not None) == fail
    assert _group_gone_within(result.metrics["worker"], 30)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
@pytest.mark.parametrize("reuse", [True, False])
def test_a_child_that_ignores_sigterm_does_not_outlive_a_failed_trial(tmp_path, reuse):
    """The failed trial's worker was told to leave, and died with the fork server at the end of fit()
    before it killed the child that ignored its SIGTERM."""
    try:
        (result,) = tune.Tuner(_starts_a_stubborn_child_then_fails, param_space={"dir": str(tmp_path)},
                               tune_config=tune.TuneConfig(reuse_actors=reuse),
                               run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path / "results"))).fit()
        assert result.error is not None
        (stubborn,) = _pids(tmp_path)
        assert _gone_within(stubborn, 30)
    finally:
        _kill_children_left(tmp_path)


_DRIVER_KILLED_MID_TRIAL = """
import os, subprocess, sys, time
from tunesmith import train, tune

def trainable(config):
    child = os.path.join(os.path.dirname(config["dir"]), "child.py")
    for kind in ("plain", "stubborn"):
        ready = os.path.join(config["dir"], kind + ".ready")
        proc = subprocess.Popen([sys.executable, child, ready, kind])
        with open(os.path.join(config["dir"], kind + ".pid"), "w") as f:
            f.write(str(proc.pid))
        while not os.path.exists(ready):
            time.sleep(0.01)
    open(os.path.join(config["dir"], "started"), "w").close()
    time.sleep(300)


class ForksAHelper(tune.Callback):
    # forks a long-lived process from the driver during the run (it inherits the driver's descriptors)

    def on_trial_start(self, iteration, trials, trial, **info):
        import multiprocessing

        helper = multiprocessing.get_context("fork").Process(target=time.sleep, args=(300,), daemon=False)
        helper.start()
        with open(os.path.join(sys.argv[1], "helper.pid"), "w") as f:
            f.write(str(helper.pid))


callbacks = [ForksAHelper()] if sys.argv[3] == "fork" else []
tune.Tuner(trainable, param_space={"dir": sys.argv[1]},
           run_config=tune.RunConfig(verbose=0, storage_path=sys.argv[2], callbacks=callbacks)).fit()
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
@pytest.mark.parametrize("driver_forks", [False, True])
def test_processes_trials_started_are_ended_when_the_driver_is_killed(tmp_path, driver_forks):
    """A SIGKILLed driver (the out-of-memory killer) took its workers with it, but what their trials had
    started lived on, holding memory, devices and ports; on Ray they are ended within seconds. (Also when
    a process the driver forked during the run, which holds the driver's descriptors, lives on.)"""
    import subprocess
    import sys

    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    (tmp_path / "child.py").write_text(_CHILD)
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER_KILLED_MID_TRIAL)
    driver = subprocess.Popen([sys.executable, str(script), str(pids_dir), str(tmp_path / "results"),
                               "fork" if driver_forks else "plain"])
    try:
        deadline = time.monotonic() + 120
        while not (pids_dir / "started").exists():
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        if driver_forks:
            while not (pids_dir / "helper.pid").exists():
                time.sleep(0.05)
        helper = [int((pids_dir / "helper.pid").read_text())] if driver_forks else []
        plain, stubborn = [pid for pid in _pids(pids_dir) if pid not in helper]
        driver.kill()
        driver.wait()
        assert _gone_within(plain, 30) and _gone_within(stubborn, 30)
        assert all(process_alive(pid) for pid in helper)  # the driver's own process is not the trials'
    finally:
        driver.kill()
        _kill_children_left(pids_dir)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds processes through /proc")
def test_the_group_of_a_worker_that_is_gone_is_forgotten_once_it_is_empty(tmp_path, monkeypatch):
    """Every worker's group number was kept to the end and swept at shutdown (and by the sentinel):
    once a gone worker's group had emptied, the number could go to an unrelated process group (a shell
    pipeline whose first process exited), whose processes were then killed."""
    import subprocess
    import sys

    from tunesmith._internal.backend import local
    from tunesmith._internal.backend._leftovers import start_time

    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(tmp_path / "ledger"))
    executor = local.LocalExecutor({"CPU": 1})
    try:
        # A gone "worker" whose group is empty, and one whose group still has a member (a trial's child).
        empty = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
        empty_started = start_time(empty.pid)
        empty.wait()
        ready = tmp_path / "ready"
        leader = subprocess.Popen([sys.executable, "-c", _LEAVES_A_CHILD, str(ready)], start_new_session=True)
        leader_started = start_time(leader.pid)
        while not ready.exists():
            time.sleep(0.01)
        leader.wait()
        executor._worker_groups.update({empty.pid: empty_started, leader.pid: leader_started})
        executor._forget_ended_groups()
        assert empty.pid not in executor._worker_groups  # its number is free for anyone now
        assert leader.pid in executor._worker_groups  # its child holds the number: still ours to end
    finally:
        executor.shutdown()
    assert _gone_within(int(ready.read_text()), 30)  # the child was ended at shutdown


_LEAVES_A_CHILD = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(sys.argv[1], "w").write(str(child.pid))
"""


def _fails_once_as_the_run_is_stopped(config):
    for step in range(restore_step() + 1, 6):
        if step == 3 and not os.path.exists(config["failing"]):
            open(config["failing"], "w").close()  # the driver is stopped now: the failure comes meanwhile
            time.sleep(1.0)
            raise ValueError("a failure as the run stops")
        report_step(step)


def test_a_trial_that_fails_while_the_run_is_interrupted_is_resumed_by_the_restore(tmp_path):
    """With retries left it ended ERROR, and Tuner.restore() (without resume_errored) never ran it again;
    on Ray it resumes from its last checkpoint."""
    import threading

    failing = tmp_path / "failing"

    def interrupt():
        while not failing.exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)  # stops the run as Ctrl+C does

    threading.Thread(target=interrupt, daemon=True).start()
    run_config = tune.RunConfig(name="int", storage_path=str(tmp_path), verbose=0,
                                failure_config=train.FailureConfig(max_failures=3))
    (result,) = tune.Tuner(_fails_once_as_the_run_is_stopped, param_space={"failing": str(failing)},
                           run_config=run_config).fit()
    assert result.error is None
    (result,) = tune.Tuner.restore(str(tmp_path / "int"), trainable=_fails_once_as_the_run_is_stopped).fit()
    assert result.error is None
    assert list(result.metrics_dataframe["step"]) == [1, 2, 3, 4, 5]
