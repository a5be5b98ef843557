"""Local execution: parallelism, resources, worker reuse, pause and resume."""
from __future__ import annotations

import os
import time

import pytest
from _trainables import report_step, restore_step

import tunesmith
from tunesmith import train, tune
from tunesmith.tune.schedulers import FIFOScheduler, TrialScheduler


def _fit(trainable, param_space=None, run_config=None, **tune_kwargs):
    return tune.Tuner(
        trainable,
        param_space=param_space or {},
        tune_config=tune.TuneConfig(**tune_kwargs),
        run_config=run_config or tune.RunConfig(verbose=0),
    ).fit()


def sleeper(config):
    start = time.time()
    time.sleep(config.get("sleep", 0.5))
    tune.report({"start": start, "end": time.time(), "pid": os.getpid(),
                 "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")})


def _max_overlap(results) -> int:
    events = []
    for r in results:
        events.append((r.metrics["start"], 1))
        events.append((r.metrics["end"], -1))
    current = best = 0
    for _, delta in sorted(events):
        current += delta
        best = max(best, current)
    return best


def test_trials_run_in_parallel_up_to_the_cpus():
    tunesmith.init(num_cpus=2)
    grid = _fit(sleeper, {"i": tune.grid_search(list(range(4)))})
    assert _max_overlap(grid) == 2


def test_fractional_cpus_pack_more_trials():
    tunesmith.init(num_cpus=1)
    grid = _fit(tune.with_resources(sleeper, {"cpu": 0.5}), {"i": tune.grid_search(list(range(4)))})
    assert _max_overlap(grid) == 2


def test_max_concurrent_trials_limits_parallelism():
    tunesmith.init(num_cpus=4)
    grid = _fit(sleeper, {"sleep": 0.2, "i": tune.grid_search(list(range(4)))}, max_concurrent_trials=1)
    assert _max_overlap(grid) == 1


def test_custom_resources_serialise_trials():
    tunesmith.init(num_cpus=4, resources={"license": 1})
    grid = _fit(tune.with_resources(sleeper, {"cpu": 1, "license": 1}),
                {"sleep": 0.2, "i": tune.grid_search(list(range(3)))})
    assert _max_overlap(grid) == 1


def test_gpus_are_handed_out_through_cuda_visible_devices():
    tunesmith.init(num_cpus=4, num_gpus=2)
    grid = _fit(tune.with_resources(sleeper, {"cpu": 1, "gpu": 1}), {"i": tune.grid_search(list(range(4)))})
    assert sorted({r.metrics["cuda"] for r in grid}) == ["0", "1"]
    assert _max_overlap(grid) == 2
    cpu_only = _fit(sleeper, {"sleep": 0.0})
    assert cpu_only[0].metrics["cuda"] == ""


def _waits_for_all(config):
    """Marks itself running and waits (at most 60 s) until every trial of the grid runs at once."""
    open(os.path.join(config["dir"], str(config["i"])), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(config["dir"])) < config["n"] and time.monotonic() < deadline:
        time.sleep(0.01)
    train.report({"together": len(os.listdir(config["dir"])), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "resources": train.get_context().get_trial_resources().required_resources})


def test_a_gpu_request_takes_no_cpu(tmp_path):
    # As on Ray (and seed 004: "If you have 8 GPUs, this will run 8 trials at once"): {"gpu": 1}
    # asks for one GPU and nothing else, so 4 GPUs run 4 trials on 2 CPUs.
    tunesmith.init(num_cpus=2, num_gpus=4)
    (tmp_path / "running").mkdir()
    grid = _fit(tune.with_resources(_waits_for_all, {"gpu": 1}),
                {"dir": str(tmp_path / "running"), "n": 4, "i": tune.grid_search(list(range(4)))})
    assert [r.metrics["together"] for r in grid] == [4, 4, 4, 4]
    assert sorted(r.metrics["cuda"] for r in grid) == ["0", "1", "2", "3"]
    assert all(r.metrics["resources"] == {"GPU": 1.0} for r in grid)


def _lists_sibling_workers(config):
    import psutil

    me = os.getpid()
    # Workers are the children of one process (the fork server, or the driver when spawned).
    siblings = [p.pid for p in psutil.Process(os.getppid()).children() if p.pid != me and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    open(os.path.join(config["dir"], str(config["i"])), "w").close()
    deadline = time.monotonic() + 60
    while config["g"] < 1 and len(os.listdir(config["dir"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the two half-GPU trials run side by side
    train.report({"siblings": siblings, "pid": me})


def test_a_whole_gpu_trial_has_no_idle_worker_beside_it_on_its_gpu(tmp_path):
    # Two half-GPU trials run in two workers; the whole-GPU trials after them must not leave the
    # other worker (which may hold device memory) alive and idle on the same GPU.
    tunesmith.init(num_cpus=2, num_gpus=1)
    (tmp_path / "running").mkdir()
    grid = _fit(tune.with_resources(_lists_sibling_workers, lambda spec: {"cpu": 1, "gpu": spec.config.g}),
                {"dir": str(tmp_path / "running"), "i": tune.grid_search([0, 1, 2, 3]),
                 "g": tune.sample_from(lambda spec: 0.5 if spec.config.i < 2 else 1)},
                max_concurrent_trials=2)
    by_i = {r.config["i"]: r.metrics for r in grid}
    assert by_i[0]["pid"] != by_i[1]["pid"]
    for i in (2, 3):
        assert by_i[i]["siblings"] == [], f"trial {i} ran next to idle workers {by_i[i]['siblings']}"


def test_workers_are_reused_across_trials():
    tunesmith.init(num_cpus=2)
    grid = _fit(sleeper, {"sleep": 0.0, "i": tune.grid_search(list(range(10)))})
    pids = {r.metrics["pid"] for r in grid}
    assert len(pids) <= 2


def test_reuse_actors_false_starts_fresh_workers():
    tunesmith.init(num_cpus=1)
    grid = _fit(sleeper, {"sleep": 0.0, "i": tune.grid_search(list(range(3)))}, reuse_actors=False)
    assert len({r.metrics["pid"] for r in grid}) == 3


def test_resource_request_too_large_fails_before_any_trial():
    tunesmith.init(num_cpus=2)
    with pytest.raises(ValueError, match="asks for"):
        _fit(tune.with_resources(sleeper, {"cpu": 64}))


class PauseOnce(FIFOScheduler):
    """Pauses every trial once, at iteration 2."""

    def __init__(self):
        super().__init__()
        self.paused = set()

    def on_trial_result(self, tune_controller, trial, result):
        if result["training_iteration"] == 2 and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE


def counting_with_checkpoints(config):
    step = restore_step()
    restored = train.get_checkpoint() is not None
    while step < 4:
        step += 1
        report_step(step, restored=restored)


def test_paused_function_trials_resume_from_their_checkpoint():
    grid = _fit(counting_with_checkpoints, {"i": tune.grid_search([0, 1])}, scheduler=PauseOnce())
    for result in grid:
        assert result.metrics["step"] == 4
        assert result.metrics["training_iteration"] == 4  # counting went on, it did not restart
        assert result.metrics["restored"] is True
        df = result.metrics_dataframe
        assert list(df["step"]) == [1, 2, 3, 4]


def test_resource_callable_receives_the_spec():
    tunesmith.init(num_cpus=2)
    request = tune.with_resources(sleeper, lambda spec: {"cpu": 2} if spec.config.big else {"cpu": 1})
    grid = _fit(request, {"sleep": 0.3, "big": tune.grid_search([True, False, False])})
    by_big = {}
    for r in grid:
        by_big.setdefault(r.config["big"], []).append(r)
    big = by_big[True][0].metrics
    # The 2-CPU trial ran alone; the two 1-CPU trials could share the machine.
    for small in by_big[False]:
        m = small.metrics
        assert m["end"] <= big["start"] or m["start"] >= big["end"]


def test_memory_is_a_resource():
    tunesmith.init(num_cpus=4, memory=1000)
    grid = _fit(tune.with_resources(sleeper, {"cpu": 1, "memory": 600}),
                {"sleep": 0.2, "i": tune.grid_search([0, 1])})
    assert _max_overlap(grid) == 1


@pytest.mark.parametrize("space, sampled", [("{}", False), ("{'i': tune.grid_search([1, 2])}", False),
                                            ("{'i': tune.uniform(0, 1)}", True)])
def test_imports_stay_light(tmp_path, space, sampled):
    import subprocess
    import sys

    # numpy is imported by the driver only when a value is sampled (a grid alone needs none).
    code = (
        "import sys\n"
        "from tunesmith import tune, train\n"
        "def f(config):\n"
        "    tune.report({'x': 1})\n"
        f"grid = tune.Tuner(f, param_space={space}, run_config=tune.RunConfig(storage_path={str(tmp_path)!r}, verbose=0)).fit()\n"
        "assert grid[0].metrics['x'] == 1 and not grid.errors\n"
        "heavy = [m for m in ('pandas', 'torch', 'pyarrow.fs', 'tensorboardX', 'sklearn', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("['numpy']" if sampled else "[]"), out.stdout + out.stderr


class HookRecorder(tune.Callback):
    def __init__(self):
        self.calls = []

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.calls.append("restore")

    def on_trial_save(self, iteration, trials, trial, **info):
        self.calls.append("save")

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.calls.append(("checkpoint", os.path.basename(checkpoint.path)))

    def on_step_begin(self, iteration, trials, **info):
        if "step" not in self.calls:
            self.calls.append("step")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.calls.append("error")

    def get_state(self):
        return {"calls": len(self.calls)}


def test_checkpoint_and_restore_hooks_are_called():
    recorder = HookRecorder()
    _fit(counting_with_checkpoints, {"i": 0}, scheduler=PauseOnce(),
         run_config=tune.RunConfig(verbose=0, callbacks=[recorder]))
    assert recorder.calls.count("restore") == 1  # resumed once after the pause
    assert recorder.calls.count("save") == 4  # one per reported checkpoint
    assert ("checkpoint", "checkpoint_000003") in recorder.calls
    assert "step" in recorder.calls and "error" not in recorder.calls


def test_worker_output_is_forwarded_line_by_line_and_a_huge_line_in_pieces(capsys):
    import select

    from tunesmith._internal.backend._output import _MAX_LINE, OutputForwarder

    read_end, write_end = os.pipe()
    poller = select.poll()
    forwarder = OutputForwarder(poller)
    forwarder.add(os.fdopen(read_end, "rb"), False, lambda: "w pid=1")
    huge = b"y" * (3 * _MAX_LINE + 5)
    data = b"first line\nsecond " + huge + b" end\nlast, unterminated"
    view = memoryview(data)
    while view:  # more than a pipe holds: write what fits, then let the forwarder read
        try:
            os.set_blocking(write_end, False)
            view = view[os.write(write_end, view[:65536]):]
        except BlockingIOError:
            pass
        forwarder.read(read_end)
    os.close(write_end)
    forwarder.drain()
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == "(w pid=1) first line"
    assert all(line.startswith("(w pid=1) ") for line in lines if line)
    assert all(len(line) <= _MAX_LINE + 65536 + len("(w pid=1) ") for line in lines)  # a read at most past it
    body = "".join(line[len("(w pid=1) "):] for line in lines[1:-2])
    assert body == "second " + huge.decode() + " end"
    assert lines[-2] == "(w pid=1) last, unterminated" and lines[-1] == ""


def _changes_its_process(config):
    import logging

    import numpy as np

    seen = {"pid": os.getpid(), "env": os.environ.get("SET_BY_A_TRIAL"), "cwd": os.getcwd(),
            "first_random": float(np.random.rand())}
    os.environ["SET_BY_A_TRIAL"] = str(config["i"])
    logging.basicConfig(filename=os.path.join(config["logs"], f"{config['i']}.log"), level=logging.INFO)
    logging.info("trial %s", config["i"])
    np.random.seed(0)
    os.chdir(config["elsewhere"])
    train.report(seen)


def test_a_trial_starts_as_in_a_new_process_in_a_reused_worker(tmp_path, monkeypatch):
    # As on Ray, where each trial has a process of its own: what a trial changes in its process
    # does not reach the next trial that the same worker runs.
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    (tmp_path / "logs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    tunesmith.init(num_cpus=1)
    grid = _fit(_changes_its_process, {"i": tune.grid_search([1, 2, 3]), "logs": str(tmp_path / "logs"),
                                       "elsewhere": str(tmp_path / "elsewhere")})
    seen = [r.metrics for r in sorted(grid, key=lambda r: r.config["i"])]
    assert len({s["pid"] for s in seen}) == 1  # one worker ran them all
    assert [s["env"] for s in seen] == [None, None, None]
    assert len({s["cwd"] for s in seen}) == 1 and seen[0]["cwd"] != str(tmp_path / "elsewhere")
    assert all(abs(s["first_random"] - 0.5488135039273248) > 1e-12 for s in seen[1:])
    for i in (1, 2, 3):  # each trial's logging.basicConfig wrote its own file
        assert (tmp_path / "logs" / f"{i}.log").read_text().strip() == f"INFO:root:trial {i}"


class _CountsItsCalls:
    def __init__(self):
        self.calls = 0

    def __call__(self, config):
        self.calls += 1
        tune.report({"seen": self.calls, "pid": os.getpid()})


def test_each_trial_in_a_reused_worker_gets_its_own_copy_of_the_trainable():
    """As in a process of its own: a callable object's attributes, the class attributes of a class and the
    variables a function of the user's script keeps did carry over from one trial to the next."""
    history = []

    def remembers(config):  # not importable: sent by value, as a function of the user's script is
        history.append(config["i"])
        tune.report({"seen": len(history), "pid": os.getpid()})

    class Counts(tune.Trainable):
        count = 0

        def setup(self, config):
            type(self).count += 1

        def step(self):
            return {"seen": type(self).count, "pid": os.getpid(), "done": True}

    tunesmith.init(num_cpus=1)
    for trainable in (_CountsItsCalls(), remembers, Counts):
        grid = _fit(trainable, {"i": tune.grid_search([0, 1, 2])})
        assert len({r.metrics["pid"] for r in grid}) == 1  # one worker ran them all
        assert [r.metrics["seen"] for r in grid] == [1, 1, 1], trainable


def test_the_copies_of_earlier_trials_go_with_them():
    """Every copy stayed alive (a cache of call forms held them, and the trial's frames were kept in a cycle
    until a garbage collection): a worker's memory grew by the trainable's size with each trial."""
    data = list(range(1000))

    def counts_copies(config):  # not importable: each trial gets a copy of its own, holding `data`
        import gc

        copies = [o for o in gc.get_objects() if getattr(o, "__qualname__", None) == counts_copies.__qualname__
                  and len(data) == 1000]
        tune.report({"copies": len(copies), "pid": os.getpid()})

    tunesmith.init(num_cpus=1)
    grid = _fit(counts_copies, {"i": tune.grid_search(list(range(6)))})
    assert len({r.metrics["pid"] for r in grid}) == 1
    assert max(r.metrics["copies"] for r in grid) <= 2  # the one loaded, and this trial's


def _changes_process_settings(config):
    import decimal
    import signal
    import sys
    import warnings

    import numpy as np
    import torch

    import logging
    import socket

    mylib = logging.getLogger("made.by.a.trial")
    seen = {"pid": os.getpid(), "warnings_error": any(f[0] == "error" for f in warnings.filters),
            "np_divide": np.geterr()["divide"], "dtype": str(torch.get_default_dtype()),
            "grad": torch.is_grad_enabled(), "path_added": "/added/by/a/trial" in sys.path,
            "umask": os.umask(0o022), "usr1_default": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
            "precision": decimal.getcontext().prec,
            "omp": os.environ.get("OMP_NUM_THREADS"), "threads": torch.get_num_threads(),
            "logging_disabled": logging.root.manager.disable, "file_handlers": len(mylib.handlers),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "socket_timeout": socket.getdefaulttimeout(), "excepthook": sys.excepthook is sys.__excepthook__}
    mylib.addHandler(logging.FileHandler(os.path.join(os.getcwd(), "mylib.log")))
    logging.disable(logging.WARNING)
    torch.use_deterministic_algorithms(True)
    socket.setdefaulttimeout(3.0)
    sys.excepthook = lambda *args: None
    warnings.simplefilter("error")
    np.seterr(all="raise")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    sys.path.append("/added/by/a/trial")
    os.umask(0o077)
    signal.signal(signal.SIGUSR1, lambda *_: None)
    decimal.getcontext().prec = 5
    train.report(seen)


def test_process_wide_settings_a_trial_changes_do_not_reach_the_next_trial(monkeypatch):
    """A trial that made warnings errors (or numpy raise, or torch use float64) made every later trial
    of its worker do the same; on Ray each trial has a process of its own."""
    pytest.importorskip("torch")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    tunesmith.init(num_cpus=2)
    grid = _fit(tune.with_resources(_changes_process_settings, {"cpu": 2}), {"i": tune.grid_search([1, 2, 3])})
    seen = [r.metrics for r in grid]
    umask = os.umask(0o022)
    os.umask(umask)
    assert len({s["pid"] for s in seen}) == 1  # one worker ran them all
    # sys.path entries stay: a module a trial imported (and that stays imported) may rely on them.
    assert sorted(s["path_added"] for s in seen) == [False, True, True]
    for s in seen:
        assert (s["warnings_error"], s["np_divide"], s["dtype"], s["grad"]) == (
            False, "warn", "torch.float32", True)
        assert (s["umask"], s["usr1_default"], s["precision"]) == (umask, True, 28)
        assert (s["omp"], s["threads"]) == ("2", 2)  # as on Ray: the trial's CPUs
        assert (s["logging_disabled"], s["file_handlers"], s["deterministic"], s["socket_timeout"],
                s["excepthook"]) == (0, 0, False, None, True)


def test_omp_num_threads_of_the_driver_wins(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    tunesmith.init(num_cpus=2)
    (result,) = _fit(_changes_process_settings, {"i": 1})
    assert (result.metrics["omp"], result.metrics["threads"]) == ("2", 2)


def _closes_stdout_and_lowers_the_recursion_limit(config):
    import sys

    seen = {"limit": sys.getrecursionlimit(), "stdout_closed": sys.stdout.closed}
    print(f"trial {config['i']} prints")
    sys.setrecursionlimit(200)
    sys.stdout.close()
    train.report(seen)


def test_a_trial_that_closes_stdout_does_not_break_the_next_one(monkeypatch):
    """A trial that closed sys.stdout made every later trial of its worker fail on print(), and a
    lowered recursion limit stayed for them."""
    tunesmith.init(num_cpus=1)
    grid = _fit(_closes_stdout_and_lowers_the_recursion_limit, {"i": tune.grid_search([1, 2, 3])})
    assert not grid.errors
    seen = [r.metrics for r in sorted(grid, key=lambda r: r.config["i"])]
    assert len({s["pid"] for s in seen}) == 1  # one worker ran them all
    assert [s["stdout_closed"] for s in seen] == [False, False, False]
    assert len({s["limit"] for s in seen}) == 1 and seen[0]["limit"] > 200


def test_more_gpus_than_cuda_visible_devices_shows_is_an_error(monkeypatch):
    """As on Ray: with CUDA_VISIBLE_DEVICES=0,1, num_gpus=3 handed out a GPU the user had hidden."""
    import tunesmith

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    try:
        with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES='0,1' makes 2 GPU"):
            tunesmith.init(num_gpus=3)
            from tunesmith._internal.resources import detect_resources

            detect_resources()
    finally:
        tunesmith.shutdown()


def test_cuda_visible_devices_on_a_machine_without_gpus_makes_none(monkeypatch):
    """CUDA_VISIBLE_DEVICES=0 on a machine with no GPU made a GPU up: a gpu=1 trial ran on the CPU
    believing it had one. As on Ray, the variable narrows the machine's GPUs; it adds none."""
    from tunesmith._internal import resources

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(resources, "_physical_gpu_ids", lambda: [])
    total, ids = resources.detect_resources()
    assert total["GPU"] == 0 and ids == []
    with pytest.raises(ValueError, match="more than this machine has .*'GPU': 0.0"):
        _fit(tune.with_resources(sleeper, {"cpu": 1, "gpu": 1}))
    monkeypatch.setattr(resources, "_physical_gpu_ids", lambda: ["0", "1"])
    assert resources.detect_resources() == (total | {"GPU": 1.0}, ["0"])


def _starts_a_ray_of_its_own(config):
    import sys
    import types

    # Stands in for a trainable whose ray.remote call started Ray inside its worker process.
    ray = types.ModuleType("ray")
    ray.is_initialized = lambda: True
    sys.modules["ray"] = ray
    train.report({"x": 1})


def test_a_trial_that_starts_ray_in_its_worker_is_told_how_to_share_one(capfd):
    """A trainable using Ray in a script that never called ray.init started a private Ray in every worker,
    silently (each with all of the machine's CPUs)."""
    grid = _fit(_starts_a_ray_of_its_own, reuse_actors=False)  # the worker ends with the trial
    assert not grid.errors
    out, err = capfd.readouterr()
    assert "call ray.init() in the script before Tuner.fit()" in out + err


def _big_results_and_a_stubborn_child(config):
    import subprocess
    import sys

    subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "time.sleep(300)"])
    for i in range(5):
        tune.report({"it": i, "per_class": [0.5] * 10_000})  # about 100 KB: read in several pieces


def test_a_program_with_over_a_thousand_files_open_runs_fit(tmp_path, caplog):
    """select() takes no descriptor number above 1023: a result over 64 KiB, the fork server's loop and
    the check that leftover processes ended all failed in a program that had many files open (a server,
    a loader keeping shards open), and the failure at shutdown left the run's CPUs booked."""
    import logging
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("the hard limit on open files is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with caplog.at_level(logging.INFO):
            (result,) = _fit(_big_results_and_a_stubborn_child,
                             run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
        assert result.error is None and result.metrics["it"] == 4
        assert "forking is unsafe" not in caplog.text and "fork server" not in caplog.text.lower()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    ledger = os.environ["TUNESMITH_LEDGER_DIR"]
    assert [n for n in os.listdir(ledger) if n.startswith("exp-")] == []


def _reports_a_large_array(config):
    import numpy as np

    values = np.arange(config["n"], dtype=np.float64)
    tune.report({"big": values, "first": float(values[1]), "count": len(values)})
    tune.report({"after": 1})


def test_large_results_arrive_whole_and_the_next_ones_after_them(tmp_path):
    """A message of many megabytes was read with a copy of all that had arrived at every read (quadratic:
    a 40 MB exception held the driver for minutes)."""
    n = 2_000_000  # 16 MB
    (result,) = tune.Tuner(_reports_a_large_array, param_space={"n": n},
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert result.error is None and result.metrics["after"] == 1
    frame = result.metrics_dataframe
    assert list(frame["count"].dropna()) == [n] and list(frame["first"].dropna()) == [1.0]
