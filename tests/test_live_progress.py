"""Progress output as a person sees it: a terminal under tmux, a file, and a Jupyter notebook."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

# Four trials that report slowly enough for several status reports, and print a line each.
_SCRIPT = textwrap.dedent("""
    import sys, time, threading
    from tunesmith import tune

    def train_fn(config):
        print(f"hello from trial x={config['x']}")
        for i in range(6):
            time.sleep(0.15)
            tune.report({"loss": config["x"] / (i + 1)})

    tune.Tuner(
        train_fn,
        param_space={"x": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=sys.argv[1], name="live", verbose=1,
                                  progress_reporter=tune.CLIReporter(max_report_frequency=0.3)),
    ).fit()
    print("ALL DONE")
""")


def _write_script(tmp_path) -> str:
    path = tmp_path / "live_script.py"
    path.write_text(_SCRIPT)
    return str(path)


def _under_tmux(tmp_path, script: str) -> tuple[str, str]:
    """Runs ``script`` (with the storage path as its argument) in a tmux terminal; ``(exit code, screen)``."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    done = tmp_path / "exit_code"
    # A tmux server of its own (-L), without a config file (-f /dev/null): a session of the shared
    # server gets the environment that server was started with (by whichever test run, of whichever
    # worktree, started it first), not this test's. The experiment's environment is set here in full.
    tmux = ["tmux", "-L", f"tunesmith-{uuid.uuid4().hex[:8]}", "-f", os.devnull]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNESMITH_", "TUNE_"))}
    env.update(TUNE_RESULT_DIR=str(tmp_path), TUNESMITH_LEDGER_DIR=str(tmp_path / "ledger"), TERM="tmux-256color")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.isidentifier())
    command = (f"env -i {exports} {shlex.quote(sys.executable)} {shlex.quote(script)} "
               f"{shlex.quote(str(tmp_path / 'storage'))}; echo $? > {shlex.quote(str(done))}; sleep 60")
    subprocess.run([*tmux, "new-session", "-d", "-s", "live", "-x", "200", "-y", "60", command], check=True)
    try:
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.exists(), "the experiment did not finish under tmux"
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "live"],
                                capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return done.read_text().strip(), screen


def test_console_table_redraws_in_place_on_a_terminal(tmp_path):
    code, screen = _under_tmux(tmp_path, _write_script(tmp_path))
    assert code == "0", screen
    lines = screen.splitlines()
    # Several reports were drawn, each over the last: one table is left, at the bottom.
    assert screen.count("== Status ==") == 1, screen
    assert "Number of trials: 4/4 (4 TERMINATED)" in screen
    # The trials' own output is above the table, none of it erased.
    hello = [i for i, line in enumerate(lines) if "hello from trial" in line]
    assert len(hello) == 4
    assert max(hello) < lines.index("== Status ==") < lines.index("ALL DONE")


_LOGGING_SCRIPT = textwrap.dedent("""
    import logging, sys, time
    from tunesmith import tune

    logging.basicConfig(format="LOG %(message)s")  # a handler holding the real stderr, made before the run

    class Logs(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            logging.getLogger("user").warning("result %s of %s", result["training_iteration"], trial)

    class AtTheEndOnly(tune.CLIReporter):  # the seed's TrialTerminationReporter: no final report
        def should_report(self, trials, done=False):
            return not done and super().should_report(trials, done)

    def train_fn(config):
        for i in range(3):
            time.sleep(0.3)
            tune.report({"loss": i})

    tune.Tuner(train_fn, run_config=tune.RunConfig(
        storage_path=sys.argv[1], name="logs", verbose=1, callbacks=[Logs()],
        progress_reporter=AtTheEndOnly(max_report_frequency=0.1))).fit()
    handler = logging.getLogger().handlers[0]
    print("STREAMS", type(sys.stdout).__name__, type(sys.stderr).__name__, type(handler.stream).__name__)
""")


def test_log_lines_survive_the_live_table_and_the_streams_come_back(tmp_path):
    """Lines of a logging handler made before the run were erased by the table's redraws, and a reporter that
    skips the final report left sys.stdout wrapped after fit()."""
    script = tmp_path / "logs.py"
    script.write_text(_LOGGING_SCRIPT)
    code, screen = _under_tmux(tmp_path, str(script))
    assert code == "0", screen
    for i in (1, 2, 3):
        assert f"LOG result {i} of train_fn" in screen, screen
    assert "STREAMS TextIOWrapper TextIOWrapper TextIOWrapper" in screen, screen


def test_console_prints_every_report_when_not_a_terminal(tmp_path):
    script = _write_script(tmp_path)
    env = dict(os.environ, TUNE_RESULT_DIR=str(tmp_path), TUNESMITH_LEDGER_DIR=str(tmp_path / "ledger"))
    out = subprocess.run([sys.executable, script, str(tmp_path / "storage")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("== Status ==") >= 2
    assert "\x1b[" not in out.stdout  # no cursor movement in a file
    assert out.stdout.count("hello from trial") == 4


def test_notebook_reporter_updates_one_output_in_place(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    code = textwrap.dedent(f"""
        import time
        from tunesmith import tune

        def train_fn(config):
            for i in range(5):
                time.sleep(0.1)
                tune.report({{"loss": config["x"] / (i + 1)}})

        reporter = tune.JupyterNotebookReporter(max_report_frequency=0.2)
        results = tune.Tuner(
            train_fn,
            param_space={{"x": tune.grid_search([1, 2, 3])}},
            tune_config=tune.TuneConfig(metric="loss", mode="min"),
            run_config=tune.RunConfig(storage_path={str(tmp_path / "storage")!r}, name="nb",
                                      progress_reporter=reporter),
        ).fit()
        print("best", results.get_best_result().config)
    """)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])

    class CountingClient(nbclient.NotebookClient):
        messages: list = []

        def process_message(self, msg, cell, cell_index):
            self.messages.append(msg["msg_type"])
            return super().process_message(msg, cell, cell_index)

    env = dict(os.environ, TUNE_RESULT_DIR=str(tmp_path), TUNESMITH_LEDGER_DIR=str(tmp_path / "ledger"))
    client = CountingClient(notebook, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)

    outputs = notebook.cells[0].outputs
    tables = [o for o in outputs if o["output_type"] == "display_data"]
    # One table output, updated again and again rather than added each time.
    assert len(tables) == 1, outputs
    assert client.messages.count("update_display_data") >= 2
    assert "Number of trials: 3/3 (3 TERMINATED)" in tables[0]["data"]["text/plain"]
    assert "<pre>" in tables[0]["data"]["text/html"]
    printed = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "best {'x': 1}" in printed


def test_two_runs_at_once_on_one_terminal_give_the_streams_back(monkeypatch):
    """Two fits at once in two threads of a program on a terminal (the first one ending first) left
    sys.stdout and sys.stderr wrapped after both returned, one layer deeper for each such pair."""
    import io

    from tunesmith import tune

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out, err = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delenv("TUNESMITH_REDRAW", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for _ in range(3):
        first, second = tune.CLIReporter(), tune.CLIReporter()
        first.report([], done=False)
        second.report([], done=False)
        print("a line between the tables")
        first.report([], done=True)
        second.report([], done=True)
        assert sys.stdout is out and sys.stderr is err
    text = out.getvalue()
    assert text.count("a line between the tables") == 3
    assert text.count("== Status ==") == 12  # every report shown, the second run's through the first's table
