"""Ctrl+C stops an experiment gracefully, keeps its state, and Tuner.restore continues it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

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
