"""The tunesmith command line reads experiments from disk."""
from __future__ import annotations

import os
import subprocess
import sys

from tunesmith import tune


def scored(config):
    tune.report({"score": config["x"] * 10})


def test_list_trials_and_experiments(storage):
    grid = tune.Tuner(scored, param_space={"x": tune.grid_search([1, 2, 3])},
                      run_config=tune.RunConfig(name="cli_exp", storage_path=storage, verbose=0)).fit()
    out = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "list-trials", grid.experiment_path,
                          "--columns", "score", "--sort", "score", "--desc"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert "status" in lines[0] and "score" in lines[0]
    assert len(lines) == 2 + 3
    assert "30" in lines[2] and "10" in lines[-1]
    assert all("TERMINATED" in line for line in lines[2:])
    out = subprocess.run([sys.executable, "-m", "tunesmith.tune.cli", "list-experiments", storage],
                         capture_output=True, text=True, check=True).stdout
    assert "cli_exp" in out and "3" in out


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
