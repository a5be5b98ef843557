"""Experiments running at the same time on one machine share its CPUs: none overcommits, none hangs."""
from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from tunesmith._internal.machine_ledger import MachineLedger

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import tunesmith
    from tunesmith import tune

    tunesmith.init(num_cpus=2)
    SLEEP_S = float(sys.argv[3])

    def sleeper(config):
        start = time.time()
        time.sleep(SLEEP_S)
        tune.report({"start": start, "end": time.time()})

    grid = tune.Tuner(sleeper, param_space={"i": tune.grid_search(list(range(int(sys.argv[2]))))},
                      run_config=tune.RunConfig(verbose=0, storage_path=sys.argv[1])).fit()
    assert not grid.errors, grid.errors
    print("SPANS", json.dumps([[r.metrics["start"], r.metrics["end"]] for r in grid]))
    """
)


def _max_overlap(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def _run_at_once(tmp_path, count: int, trials: int, sleep_s: float) -> list[list[list[float]]]:
    """Starts ``count`` experiment scripts at once on one ledger; returns each one's trial spans."""
    script = tmp_path / "exp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TUNESMITH_LEDGER_DIR=str(tmp_path / "ledger"), TUNESMITH_RESOURCES='{"CPU": 2}')
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / f"r{i}"), str(trials), str(sleep_s)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(count)
    ]
    spans = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            line = [ln for ln in out.splitlines() if ln.startswith("SPANS")][0]
            spans.append(json.loads(line.split(" ", 1)[1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Each experiment removed its entry when it ended.
    assert [n for n in os.listdir(tmp_path / "ledger") if n.startswith("exp-")] == []
    return spans


def test_concurrent_experiments_share_the_cpus(tmp_path):
    spans = _run_at_once(tmp_path, 2, 4, 0.6)
    # Never more than the 2 CPUs' worth of trials across both experiments...
    assert _max_overlap(spans[0] + spans[1]) <= 2
    # ...and neither waited for the other to finish: their runs interleaved.
    first_start = [min(s for s, _ in exp) for exp in spans]
    last_end = [max(e for _, e in exp) for exp in spans]
    assert max(first_start) < min(last_end)


@pytest.mark.parametrize("count", [3, 5])
def test_more_experiments_than_cpus_all_finish(tmp_path, count):
    # With 1-CPU trials on 2 CPUs, three experiments started at once used to wait for each other forever.
    spans = _run_at_once(tmp_path, count, 3, 0.2)
    assert [len(s) for s in spans] == [3] * count
    assert _max_overlap([span for exp in spans for span in exp]) <= 2


def test_experiments_holding_nothing_do_not_block_each_other(tmp_path):
    ledgers = [MachineLedger(str(tmp_path / "ledger"), total={"CPU": 2.0}) for _ in range(3)]
    # Each holds {"CPU": 0.0}, i.e. nothing: the first two asks start, the third waits.
    results = [ledger.try_start({"CPU": 1.0}, held={"CPU": 0.0, "memory": 0.0}) for ledger in ledgers]
    assert results == [True, True, False]
    assert ledgers[2].waiting
    # The third holds least and waits: it gets the next free CPU, even though the first asks again first.
    ledgers[0].update({}, {})
    assert not ledgers[0].try_start({"CPU": 1.0}, held={})
    assert "it goes first" in ledgers[0].summary()
    assert ledgers[2].try_start({"CPU": 1.0}, held={})
    assert not ledgers[2].waiting and ledgers[0].waiting
    for ledger in ledgers:
        ledger.close()


def test_a_waiting_experiment_is_woken_when_another_frees_resources(tmp_path):
    import select

    from tunesmith._internal.machine_ledger import WakePoller

    d = str(tmp_path / "ledger")
    waiter = MachineLedger(d, total={"CPU": 1.0}, wakeable=True)
    holder = MachineLedger(d, total={"CPU": 1.0})
    assert holder.try_start({"CPU": 1.0}, held={})
    assert not waiter.try_start({"CPU": 1.0}, held={})
    raw = select.poll()
    poller = WakePoller(raw, waiter)
    assert poller.poll(0) == [] and raw.poll(0) == []
    holder.update({}, {})  # the holder's trial ends
    assert raw.poll(0) == [(waiter.wake_fd, select.POLLIN)]
    assert poller.poll(0) == []  # the wake ends a wait, is drained, and is not an event
    assert raw.poll(0) == []
    assert waiter.try_start({"CPU": 1.0}, held={})
    holder.close()
    waiter.close()
    assert os.listdir(d) == ["ledger.lock"]


def test_ledger_reclaims_dead_processes_and_reports_what_others_hold(tmp_path):
    d = tmp_path / "ledger"
    ours = MachineLedger(str(d), total={"CPU": 4.0})
    other = MachineLedger(str(d), total={"CPU": 4.0})
    other.update({"CPU": 2.0}, {"0": 0.5})
    ours.others()
    assert ours.held_by_others() == ({"CPU": 2.0}, {"0": 0.5})
    # A file left by a process that no longer exists is dropped, and what it claimed is free.
    dead = d / "exp-999999-dead.json"
    dead.write_text(json.dumps({"pid": 999999, "held": {"CPU": 2}, "total": {"CPU": 4.0}}))
    assert ours.try_start({"CPU": 2.0}, held={})
    assert not dead.exists()
    assert "pid" in ours.summary() and "{'CPU': 2.0}" in ours.summary()
    other.close()
    assert ours.others() == [] and ours.held_by_others() == ({}, {})
    assert ours.summary() == "No other tunesmith experiment shares this machine."
    ours.close()


def test_entry_of_a_reused_pid_is_ignored(tmp_path):
    ours = MachineLedger(str(tmp_path / "ledger"))
    # Our own pid, but written by a process that started at another time: a stale entry.
    stale = {"pid": os.getpid(), "started": 12345.0, "held": {"CPU": 8}}
    (tmp_path / "ledger" / f"exp-{os.getpid()}-stale.json").write_text(json.dumps(stale))
    assert ours.others() == []
    assert ours.held_by_others() == ({}, {})
    ours.close()


def test_a_damaged_entry_or_a_killed_unreaped_experiment_holds_nothing(tmp_path):
    """An entry file without a usable pid made every fit() raise psutil's "pid must be a positive integer";
    a SIGKILLed experiment whose parent had not reaped it yet (a zombie) kept its resources."""
    d = tmp_path / "ledger"
    ours = MachineLedger(str(d), total={"CPU": 2.0})
    (d / "exp-old.json").write_text(json.dumps({"held": {"CPU": 2}}))  # no pid in its name or its text
    (d / "exp-999999-nopid.json").write_text("{}")
    zombie = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    try:
        import psutil

        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:  # dead, not yet reaped
            pass
        (d / f"exp-{zombie.pid}-killed.json").write_text(json.dumps(
            {"pid": zombie.pid, "started": psutil.Process(zombie.pid).create_time(), "held": {"CPU": 2}}))
        assert ours.try_start({"CPU": 2.0}, held={})
        assert ours.held_by_others() == ({}, {})
    finally:
        zombie.wait()
        ours.close()


def test_a_ledger_lock_that_is_not_a_file_or_a_path_through_a_file_is_said_clearly(tmp_path, monkeypatch, caplog):
    d = tmp_path / "ledger"
    d.mkdir(mode=0o700)
    (d / "ledger.lock").mkdir()
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(d))
    text = _run_one_experiment(caplog)
    assert "without sharing the machine" in text and f"Remove {d / 'ledger.lock'}" in text
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(tmp_path / "afile" / "ledger"))
    caplog.clear()
    text = _run_one_experiment(caplog)
    assert f"{tmp_path / 'afile' / 'ledger'} cannot be made" in text and "TUNESMITH_LEDGER_DIR" in text


def test_ledger_directory_and_entries_are_private(tmp_path):
    d = tmp_path / "fresh" / "ledger"
    ledger = MachineLedger(str(d), total={"CPU": 1.0})
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    entry = d / (ledger.name + ".json")
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600
    ledger.try_start({"CPU": 1.0}, held={})  # takes the lock
    assert stat.S_IMODE(os.stat(d / "ledger.lock").st_mode) == 0o600
    ledger.close()


def _run_one_experiment(caplog) -> str:
    from tunesmith import tune

    with caplog.at_level(logging.WARNING):
        grid = tune.Tuner(lambda config: {"x": 1}, run_config=tune.RunConfig(verbose=0)).fit()
    assert grid[0].metrics["x"] == 1  # the experiment still runs, without sharing
    return caplog.text


def test_ledger_directory_open_to_others_is_refused(tmp_path, monkeypatch, caplog):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o755)
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(d))
    text = _run_one_experiment(caplog)
    assert "without sharing the machine" in text
    assert f"{d} has mode 0755" in text and f"chmod 700 {d}" in text
    assert os.listdir(d) == []  # nothing was written there


def test_ledger_directory_that_is_a_symlink_is_refused(tmp_path, monkeypatch, caplog):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(link))
    text = _run_one_experiment(caplog)
    assert f"{link} is a symbolic link" in text and "TUNESMITH_LEDGER_DIR" in text
    assert os.listdir(target) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a directory away needs root")
def test_ledger_directory_of_another_user_is_refused(tmp_path, monkeypatch, caplog):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(d))
    text = _run_one_experiment(caplog)
    assert f"{d} belongs to uid 65534" in text
    assert os.listdir(d) == []


def test_experiment_runs_without_sharing_when_the_ledger_cannot_be_written(monkeypatch, caplog):
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", "/proc/no-such-dir/ledger")
    assert "without sharing the machine" in _run_one_experiment(caplog)


def test_idle_warning_says_what_the_other_experiments_hold(tmp_path, monkeypatch):
    import tunesmith
    from tunesmith import tune

    tunesmith.init(num_cpus=2)
    monkeypatch.setenv("TUNESMITH_RESOURCES", '{"CPU": 2}')  # a machine of 2 CPUs, whatever this one has
    monkeypatch.setenv("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", "0.2")
    # Another experiment (an entry of this process) holds both CPUs.
    other = MachineLedger(str(tmp_path / "ledger"), total={"CPU": 2.0})
    assert other.try_start({"CPU": 2.0}, held={})
    warned = threading.Event()
    messages = []

    class Handler(logging.Handler):
        def emit(self, record):
            if "No trial has been running" in record.getMessage():
                messages.append(record.getMessage())
                other.close()  # the other experiment ends: its CPUs are free
                warned.set()

    handler = Handler(logging.WARNING)
    logging.getLogger("tunesmith").addHandler(handler)
    try:
        grid = tune.Tuner(lambda config: {"x": 1}, run_config=tune.RunConfig(verbose=0)).fit()
    finally:
        logging.getLogger("tunesmith").removeHandler(handler)
        other.close()
    assert warned.is_set() and grid[0].metrics["x"] == 1
    assert f"1 other tunesmith experiment(s) on this machine hold {{'CPU': 2.0}} (pid {os.getpid()} holds" \
        in messages[0]


def test_two_experiments_never_get_the_same_whole_gpu():
    # Experiment A finds itself alone and decides to start a 1-GPU trial; before it starts it,
    # experiment B appears and starts one. A's entry names the device it picked, so B takes the
    # other one (the ledger directory is this test's own, see conftest).
    from tunesmith._internal.backend.local import LocalExecutor

    total, request = {"CPU": 4.0, "GPU": 2.0}, {"CPU": 1.0, "GPU": 1.0}
    a = LocalExecutor(total_resources=total, gpu_ids=["0", "1"])
    try:
        assert a.has_resources(request)
        b = LocalExecutor(total_resources=total, gpu_ids=["0", "1"])
        try:
            assert b.has_resources(request)
            devices = {b._acquire("trial-b", request), a._acquire("trial-a", request)}
        finally:
            b.shutdown()
    finally:
        a.shutdown()
    assert devices == {"0", "1"}


def test_an_experiment_that_declared_fewer_cpus_still_gets_its_share(tmp_path):
    """init(num_cpus=1) next to an experiment that sees 2 CPUs: the smaller one saw a full machine
    whenever the other held one CPU, and the other kept a CPU free for it that it never took."""
    d = str(tmp_path / "ledger")
    small = MachineLedger(d, total={"CPU": 1.0})
    big = MachineLedger(d, total={"CPU": 2.0})
    assert big.try_start({"CPU": 1.0}, held={})
    # The machine (2 CPUs) has one free, within the small one's own limit of 1.
    assert small.try_start({"CPU": 1.0}, held={})
    assert not small.try_start({"CPU": 1.0}, held={"CPU": 1.0})  # its own limit
    assert not big.try_start({"CPU": 1.0}, held={"CPU": 1.0})  # the machine is full


def test_the_ledger_directory_setting_expands_the_home_directory(monkeypatch, tmp_path):
    """TUNESMITH_LEDGER_DIR="~/x" (quoted, as a .env file or docker -e gives it) made a directory named "~"."""
    from tunesmith._internal.machine_ledger import ledger_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", "~/ledger")
    assert ledger_dir() == str(tmp_path / "ledger")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", "rel")
    assert ledger_dir() == str(tmp_path / "rel")


OTHER = textwrap.dedent(
    """
    import os, sys, time
    import tunesmith
    from tunesmith import tune

    tunesmith.init(num_cpus=2)
    FLAGS = sys.argv[1]

    def holds_a_cpu(config):
        open(os.path.join(FLAGS, "other_running"), "w").close()
        while not os.path.exists(os.path.join(FLAGS, "other_may_end")):
            time.sleep(0.01)

    tune.Tuner(holds_a_cpu, run_config=tune.RunConfig(verbose=0, storage_path=os.path.join(FLAGS, "other"))).fit()
    """
)


def _waits_for_the_other_trial(config):
    import time

    from tunesmith import tune

    flags = config["flags"]
    open(os.path.join(flags, f"started_{config['i']}"), "w").close()
    if config["i"] == 0:  # the first lets the other experiment end
        open(os.path.join(flags, "other_may_end"), "w").close()
    other = os.path.join(flags, f"started_{1 - config['i']}")
    deadline = time.time() + 30
    while not os.path.exists(other) and time.time() < deadline:
        time.sleep(0.01)
    tune.report({"saw_the_other": os.path.exists(other)})


def test_the_last_other_experiment_leaving_starts_a_waiting_trial_at_once(tmp_path, monkeypatch):
    """The other experiment's exit woke this one, but with no one else left it did not look for free
    CPUs: its waiting trial started only when its running trial ended (an hour later for hour-long trials)."""
    import time

    import tunesmith
    from tunesmith import tune

    monkeypatch.setenv("TUNESMITH_RESOURCES", '{"CPU": 2}')  # a machine of 2 CPUs, whatever this one has
    script = tmp_path / "other.py"
    script.write_text(OTHER)
    other = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "other_running").exists():
            assert other.poll() is None and time.time() < deadline, other.communicate()
            time.sleep(0.01)
        tunesmith.init(num_cpus=2)
        grid = tune.Tuner(
            _waits_for_the_other_trial, param_space={"i": tune.grid_search([0, 1]), "flags": str(tmp_path)},
            run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path / "mine")),
        ).fit()
        assert other.wait(60) == 0
    finally:
        tunesmith.shutdown()
        if other.poll() is None:
            other.kill()
            other.wait()
    assert not grid.errors
    # Trial 0 ran beside the other experiment; trial 1 waited for its CPU and started once it left.
    assert [r.metrics["saw_the_other"] for r in sorted(grid, key=lambda r: r.config["i"])] == [True, True]


def test_experiments_that_each_declared_part_of_the_machine_share_all_of_it(tmp_path):
    """tunesmith.init(num_cpus=1) in two experiments on a 2-CPU machine: the two made a 1-CPU machine
    between them and ran one trial at a time; as two ray.init(num_cpus=1), each has 1 CPU of its own."""
    d = str(tmp_path / "ledger")
    one = MachineLedger(d, total={"CPU": 1.0}, machine={"CPU": 2.0})
    two = MachineLedger(d, total={"CPU": 1.0}, machine={"CPU": 2.0})
    assert one.try_start({"CPU": 1.0}, held={})
    assert two.try_start({"CPU": 1.0}, held={})
    assert not two.try_start({"CPU": 1.0}, held={"CPU": 1.0})  # each within its own total
    three = MachineLedger(d, total={"CPU": 1.0}, machine={"CPU": 2.0})
    assert not three.try_start({"CPU": 1.0}, held={})  # the machine is full
    for ledger in (one, two, three):
        ledger.close()


def test_the_machine_is_what_it_has_or_what_tunesmith_resources_says(monkeypatch):
    from tunesmith._internal.resources import machine_resources

    import tunesmith

    tunesmith.init(num_cpus=1)
    try:
        assert machine_resources()["CPU"] == len(os.sched_getaffinity(0))  # init() declares a limit, not the machine
        monkeypatch.setenv("TUNESMITH_RESOURCES", '{"CPU": 8}')
        assert machine_resources()["CPU"] == 8
    finally:
        tunesmith.shutdown()


def test_a_ledger_lock_its_holder_does_not_let_go_does_not_stop_the_others(tmp_path, monkeypatch, caplog):
    """A driver stopped (Ctrl+Z) while it held the ledger's lock froze every other experiment on the
    machine, trials ended and all, until it was continued."""
    import fcntl

    from tunesmith._internal import machine_ledger

    monkeypatch.setattr(machine_ledger, "LOCK_WAIT_S", 0.2)
    ledger = machine_ledger.MachineLedger(str(tmp_path), total={"CPU": 2.0}, name="exp-waits")
    stopped_holder = os.open(str(tmp_path / "ledger.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(stopped_holder, fcntl.LOCK_EX)  # as the stopped driver holds it
    try:
        with caplog.at_level("WARNING"):
            assert ledger.try_start({"CPU": 1.0}, {})
        assert "decides without it meanwhile" in caplog.text
        # Later turns do not wait the whole time again while it is still held.
        monkeypatch.setattr(machine_ledger, "LOCK_WAIT_S", 3600.0)
        assert ledger.try_start({"CPU": 1.0}, {"CPU": 1.0})
    finally:
        os.close(stopped_holder)
        ledger.close()
