"""Ctrl+C stops an experiment gracefully, keeps its state, and Tuner.restore continues it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile, time
    from tunesmith import train, tune

    def slow(config):
        step = 0
        ckpt = train.get_checkpoint()
        if ckpt:
            with ckpt.as_directory() as d:
                step = json.load(open(os.path.join(d, "s.json")))["step"]
        while step < 30:
            step += 1
            with tempfile.TemporaryDirectory() as d:
                json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
                train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(d))
            time.sleep(0.1)

    if sys.argv[1] == "run":
        tune.Tuner(slow, param_space={"i": tune.grid_search([0, 1])},
                   run_config=tune.RunConfig(name="interrupted", storage_path=sys.argv[2], verbose=0)).fit()
    else:
        path = os.path.join(sys.argv[2], "interrupted")
        assert tune.Tuner.can_restore(path)
        grid = tune.Tuner.restore(path, trainable=slow).fit()
        print("RESULT", json.dumps(sorted([r.metrics["step"], r.metrics["training_iteration"]] for r in grid)))
    """
)


def test_ctrl_c_saves_state_and_restore_finishes(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    storage = str(tmp_path / "storage")
    proc = subprocess.Popen([sys.executable, str(script), "run", storage], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    exp = os.path.join(storage, "interrupted")
    deadline = time.time() + 60
    while time.time() < deadline:
        ckpts = [c for root, dirs, _ in os.walk(exp) for c in dirs if c.startswith("checkpoint_000003")]
        if len(ckpts) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    with open(os.path.join(exp, "experiment_state.json")) as f:
        state = json.load(f)
    assert len(state["trials"]) == 2
    assert all(t["status"] in ("PAUSED", "PENDING", "RUNNING") for t in state["trials"])
    assert all(t["checkpoints"] for t in state["trials"])

    done = subprocess.run([sys.executable, str(script), "restore", storage], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")][0]
    # Both trials reach step 30 and their iteration count continued across the restore.
    assert json.loads(line.split(" ", 1)[1]) == [[30, 30], [30, 30]]


def test_sigint_handler_can_be_disabled(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    storage = str(tmp_path / "storage")
    env = dict(os.environ, TUNE_DISABLE_SIGINT_HANDLER="1")
    # Python raises KeyboardInterrupt on SIGINT only if SIGINT was not ignored when it started; a
    # test run started in the background of a non-interactive shell ignores it, and so would the script.
    proc = subprocess.Popen([sys.executable, str(script), "run", storage], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    exp = os.path.join(storage, "interrupted")
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        d.startswith("checkpoint_000001") for _, dirs, _ in os.walk(exp) for d in dirs
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    # Execution stopped right away with the interrupt, without the graceful shutdown.
    assert proc.returncode != 0, out
    assert "KeyboardInterrupt" in out
    assert "state is being saved" not in out


CLASS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from tunesmith import train, tune

    storage, gate = sys.argv[2], int(sys.argv[3])

    class Counter(tune.Trainable):
        def setup(self, config):
            self.n = 0

        def step(self):
            if self.iteration + 1 == gate and not os.path.exists(os.path.join(storage, "go")):
                open(os.path.join(storage, "in_step"), "w").close()
                deadline = time.time() + 120
                while not os.path.exists(os.path.join(storage, "go")) and time.time() < deadline:
                    time.sleep(0.01)
            self.n += 1  # the trial's state: one more step
            return {"n": self.n}

        def save_checkpoint(self, d):
            with open(os.path.join(d, "n.json"), "w") as f:
                json.dump(self.n, f)

        def load_checkpoint(self, d):
            with open(os.path.join(d, "n.json")) as f:
                self.n = json.load(f)

    run_config = train.RunConfig(name="class_interrupted", storage_path=storage, verbose=0,
                                 stop={"training_iteration": 8},
                                 checkpoint_config=train.CheckpointConfig(checkpoint_frequency=3))
    if sys.argv[1] == "run":
        tune.Tuner(Counter, run_config=run_config).fit()
    else:
        result = tune.Tuner.restore(os.path.join(storage, "class_interrupted"), trainable=Counter).fit()[0]
        saved = []
        for checkpoint, metrics in result.best_checkpoints:
            with open(os.path.join(checkpoint.path, "n.json")) as f:
                saved.append([metrics["training_iteration"], json.load(f)])
        print("RESULT", json.dumps({"rows": [[r["training_iteration"], r["n"]] for r in
                                             map(json.loads, open(os.path.join(result.path, "result.json")))],
                                    "checkpoints": saved}))
    """
)


@pytest.mark.parametrize("gate", [5, 6])
def test_ctrl_c_during_a_class_trials_step_keeps_that_step(tmp_path, gate):
    # The step running when Ctrl+C comes ends after the driver asked the trial to pause; the
    # pause checkpoint holds its state, so its result is logged, and labels that checkpoint.
    # At 6 the step also saved a checkpoint of its own (frequency 3), which the pause keeps.
    script = tmp_path / "script.py"
    script.write_text(CLASS_SCRIPT)
    storage = tmp_path / "storage"
    storage.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), "run", str(storage), str(gate)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (storage / "in_step").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert (storage / "in_step").exists(), proc.communicate()[0]
    proc.send_signal(signal.SIGINT)
    seen = []
    for line in proc.stdout:  # the step ends once the driver is stopping
        seen.append(line)
        if "Stopping the experiment" in line:
            break
    (storage / "go").touch()
    out = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    trial_dir = next(p for p in (storage / "class_interrupted").iterdir() if p.name.startswith("Counter_"))
    rows = [json.loads(line)["training_iteration"] for line in open(trial_dir / "result.json")]
    assert rows == list(range(1, len(rows) + 1)) and gate in rows

    done = subprocess.run([sys.executable, str(script), "restore", str(storage), str(gate)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")][0].split(" ", 1)[1])
    # Every iteration once, each row the state after that many steps; every checkpoint holds the
    # state its metrics say, and no state was saved twice.
    assert out["rows"] == [[i, i] for i in range(1, 9)]
    assert all(iteration == n for iteration, n in out["checkpoints"])
    iterations = [iteration for iteration, _ in out["checkpoints"]]
    assert len(iterations) == len(set(iterations))
    assert {3, 6, gate} <= set(iterations)


def _counts_to_ten(config):
    import tempfile

    from tunesmith import train

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d, open(os.path.join(d, "i.json")) as f:
            start = json.load(f)
    for i in range(start + 1, 11):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "i.json"), "w") as f:
                json.dump(i, f)
            train.report({"loss": 1.0 / i, "i": i}, checkpoint=train.Checkpoint.from_directory(d))


def test_ctrl_c_right_after_a_scheduler_stop_keeps_the_trial_stopped(tmp_path):
    """Ctrl+C arriving after ASHA had told a trial to stop (at max_t) turned the stop into a pause, so
    Tuner.restore resumed the trial and it trained past max_t."""
    from tunesmith import tune
    from tunesmith.tune.schedulers import ASHAScheduler

    class CtrlCAtThree(tune.Callback):  # the user's Ctrl+C, right when iteration 3 arrives
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["training_iteration"] == 3:
                os.kill(os.getpid(), signal.SIGINT)

    tune.Tuner(_counts_to_ten, tune_config=tune.TuneConfig(
        scheduler=ASHAScheduler(max_t=3, grace_period=1), metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="asha", verbose=0,
                                  callbacks=[CtrlCAtThree()])).fit()
    grid = tune.Tuner.restore(str(tmp_path / "asha"), trainable=_counts_to_ten).fit()
    assert list(grid[0].metrics_dataframe["i"]) == [1, 2, 3]


def _reports_then_interrupts(config):
    from tunesmith import tune

    for step in range(1, 201):  # short iterations: the trial runs ahead of the driver's answers
        tune.report({"step": step})
    os.kill(config["driver"], signal.SIGINT)  # Ctrl+C right after the last report
    time.sleep(30)


def test_results_sent_before_ctrl_c_are_kept(tmp_path):
    """Results in the driver's socket when Ctrl+C was noticed were dropped: the interrupted run lacked
    the last rows the trial had reported (on Ray, report() waits for the driver, so none is lost)."""
    from tunesmith import tune

    (result,) = tune.Tuner(_reports_then_interrupts, param_space={"driver": os.getpid()},
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert list(result.metrics_dataframe["step"]) == list(range(1, 201))
