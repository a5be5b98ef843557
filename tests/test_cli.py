"""The tunesmith command line reads experiments from disk."""
from __future__ import annotations

import os
import subprocess
import sys

from tunesmith import tune


def scored(config):
    tune.report({"score": config["x"] * 10})


def _cli(*args, check=True, env=None):
    return subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", *args], capture_output=True, text=True,
                          check=check, env=env)


def _table(out: str) -> list[list[str]]:
    """The cells of a printed table, header first."""
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def test_list_trials_and_experiments(storage):
    grid = tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2, 3])},
                      run_config=tune.RunConfig(name="cli_exp", storage_path=storage, verbose=0)).fit()
    # --columns selects the columns shown (it does not add to the default ones)
    table = _table(_cli("list-trials", grid.experiment_path, "--columns", "trial_id,score",
                        "--sort", "score", "--desc").stdout)
    assert table[0] == ["trial_id", "score"]
    assert [row[1] for row in table[1:]] == ["30", "20", "10"]
    # the default columns: trial information, the config, the default result keys
    table = _table(_cli("list-trials", grid.experiment_path).stdout)
    assert table[0][:5] == ["trainable_name", "experiment_tag", "trial_id", "status", "last_update_time"]
    assert "config/x" in table[0] and "training_iteration" in table[0] and "score" not in table[0]
    assert all(row[3] == "TERMINATED" for row in table[1:]) and len(table) == 4
    table = _table(_cli("list-experiments", storage).stdout)
    assert table[0][:2] == ["name", "total_trials"] and table[1][:2] == ["cli_exp", "3"]


def test_list_trials_filter_sort_output_and_result_columns(storage, tmp_path):
    import pandas as pd

    grid = tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2, 3, 4])},
                      run_config=tune.RunConfig(name="cli_opts", storage_path=storage, verbose=0)).fit()
    path = grid.experiment_path
    # Ray's `--desc True` form, a filter on a numeric column, several sort keys, a limit
    out_csv = tmp_path / "trials.csv"
    proc = _cli("ls", path, "--columns", "trial_id,config/x,score", "--filter", "score >= 20",
                "--sort", "config/x,score", "--desc", "True", "--limit", "2", "--output", str(out_csv))
    table = _table(proc.stdout)
    assert [row[1:] for row in table[1:]] == [["4", "40"], ["3", "30"]]
    assert f"Output saved at: {out_csv}" in proc.stdout
    frame = pd.read_csv(out_csv)
    assert list(frame.columns) == ["trial_id", "config/x", "score"] and list(frame["score"]) == [40, 30]
    # --result-columns replaces the default result columns; a string filter compares text
    table = _table(_cli("ls", path, "--result-columns", "score", "--filter", "status == TERMINATED").stdout)
    assert table[0][-1] == "score" and "training_iteration" not in table[0] and len(table) == 5
    out_pkl = tmp_path / "trials.pkl"
    _cli("ls", path, "--columns", "score", "--filter", "score!=20", "--output", str(out_pkl))
    assert sorted(pd.read_pickle(out_pkl)["score"]) == [10, 30, 40]
    # a filter is parsed, never evaluated; bad input names the problem
    marker = tmp_path / "evaluated"
    proc = _cli("ls", path, "--filter", f"score == __import__('os').mkdir({str(marker)!r})", check=False)
    assert proc.returncode != 0 and "holds numbers" in proc.stderr and not marker.exists()
    proc = _cli("ls", path, "--filter", "score ~= 3", check=False)
    assert proc.returncode != 0 and "<column> <operator> <value>" in proc.stderr
    proc = _cli("ls", path, "--columns", "nope", check=False)
    assert proc.returncode != 0 and "no column 'nope'" in proc.stderr and "score" in proc.stderr
    proc = _cli("ls", path, "--output", str(tmp_path / "trials.xlsx"), check=False)
    assert proc.returncode != 0 and "unsupported file type" in proc.stderr
    table = _table(_cli("lsx", storage, "--columns", "name", "--filter", "total_trials > 3").stdout)
    assert table == [["name"], ["cli_opts"]]


def test_list_trials_output_into_a_new_directory(storage, tmp_path):
    """``--output`` makes the file's directory, as ``report -o`` does; a path that cannot be written
    is named in a plain message."""
    grid = tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(name="cli_out", storage_path=storage, verbose=0)).fit()
    out_csv = tmp_path / "new" / "dir" / "trials.csv"
    proc = _cli("ls", grid.experiment_path, "--columns", "config/x,score", "--output", str(out_csv), check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"Output saved at: {out_csv}" in proc.stdout
    assert out_csv.read_text().splitlines() == ["config/x,score", "1,10", "2,20"]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = _cli("lsx", storage, "--output", str(blocker / "experiments.csv"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"--output {str(blocker / 'experiments.csv')!r}: could not write it")


def test_list_experiments_status_columns_when_no_experiment_has_that_status(storage):
    """``running`` or ``error`` can be filtered on and shown while no experiment has such a trial."""
    for name in ("done_a", "done_b"):
        tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2])},
                   run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0)).fit()
    # By default only the statuses that occur are shown.
    assert _table(_cli("lsx", storage).stdout)[0] == ["name", "total_trials", "terminated", "last_updated"]
    proc = _cli("lsx", storage, "--filter", "running > 0", check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(_table(proc.stdout)) == 1  # the header, no experiment
    proc = _cli("lsx", storage, "--columns", "name,running,error", "--filter", "error == 0", check=False)
    assert proc.returncode == 0, proc.stderr
    assert _table(proc.stdout) == [["name", "running", "error"], ["done_a", "0", "0"], ["done_b", "0", "0"]]


def test_seed_cli_examples(storage, tmp_path):
    grid = tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(name="cli_seed", storage_path=storage, verbose=0)).fit()
    # $ tune list-trials [EXPERIMENT_DIR] --output note.csv
    proc = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "list-trials", grid.experiment_path,
                           "--output", "note.csv"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "Output saved at: note.csv" in proc.stdout
    with open(tmp_path / "note.csv") as f:
        header = f.readline().strip().split(",")
    assert header[:3] == ["trainable_name", "experiment_tag", "trial_id"]
    # $ tune list-trials [EXPERIMENT_DIR] --filter "trial_id == 7b99a28a"
    trial_id = grid[1].metrics["trial_id"]
    table = _table(_cli("list-trials", grid.experiment_path, "--filter", f"trial_id == {trial_id}").stdout)
    assert len(table) == 2 and table[1][2] == trial_id and table[1][1] == "1_x=2"


def test_add_note(storage, tmp_path):
    grid = tune.Tuner(scored, param_space={"x": 1},
                      run_config=tune.RunConfig(name="cli_note", storage_path=storage, verbose=0)).fit()
    proc = _cli("add-note", grid.experiment_path, "-m", "lr too high")
    note = os.path.join(grid.experiment_path, "note.txt")
    assert f"Note created at: {note}" in proc.stdout
    # without -m, $EDITOR is opened on the note (here a script that appends a line)
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\necho "second thought" >> "$1"\n')
    editor.chmod(0o755)
    proc = _cli("add-note", grid.experiment_path, env={**os.environ, "EDITOR": str(editor)})
    assert f"Note updated at: {note}" in proc.stdout
    with open(note) as f:
        assert f.read() == "lr too high\nsecond thought\n"
    proc = _cli("add-note", grid.experiment_path, "--filename", "../escape.txt", "-m", "x", check=False)
    assert proc.returncode != 0 and "plain file name" in proc.stderr
    assert not os.path.exists(os.path.join(storage, "escape.txt"))


def test_list_trials_on_a_non_experiment_dir(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "list-trials", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "not an experiment directory" in proc.stderr


def test_rm_removes_trial_directories_only(storage, tmp_path):
    grid = tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(name="rm_exp", storage_path=storage, verbose=0)).fit()
    trial_dir = grid[0].path
    proc = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "rm", "-y", trial_dir],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not os.path.exists(trial_dir)
    stranger = tmp_path / "not_a_trial"
    stranger.mkdir()
    proc = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "rm", "-y", str(stranger)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and stranger.exists()
    assert "neither a trial nor an experiment directory" in proc.stderr
    # A store's URI is refused as such (it was called neither a trial nor an experiment directory).
    for command in (["rm", "-y"], ["add-note", "-m", "note"]):
        proc = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", *command, "s3://bucket/runs/exp"],
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "is on a store" in proc.stderr, proc.stderr
    other = grid[1].path
    proc = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "rm", "-y", f"file://{other}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not os.path.exists(other)


def test_python_m_tunesmith_and_rm_without_a_terminal(tmp_path):
    import subprocess
    import sys

    help_run = subprocess.run([sys.executable, "-m", "tunesmith", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "list-trials" in help_run.stdout
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "experiment_state.json").write_text("{}")
    rm = subprocess.run([sys.executable, "-m", "tunesmith", "rm", str(exp)], stdin=subprocess.DEVNULL,
                        capture_output=True, text=True)
    assert rm.returncode == 1 and "Aborted!" in rm.stderr and "Traceback" not in rm.stderr
    assert exp.exists()
