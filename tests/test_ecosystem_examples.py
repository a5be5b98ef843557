"""The tracker and framework examples run as a newcomer runs them, each in its own process."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.slow
@pytest.mark.parametrize("script, module, expected", [
    ("tracking_mlflow.py", "mlflow", "FINISHED, loss="),
    ("tracking_wandb.py", "wandb", "4 offline W&B runs"),
    ("tracking_aim.py", "aim", "FINISHED, 10 loss values"),
    ("tracking_comet.py", "comet_ml", "4 offline Comet experiments"),
    ("tune_xgboost.py", "xgboost", "the best booster, loaded from its checkpoint: {rounds} rounds"),
    ("tune_lightgbm.py", "lightgbm", "the best model, loaded from its checkpoint: {rounds} rounds"),
    ("tune_lightning.py", "lightning", "the best model, loaded from its checkpoint"),
])
def test_example_runs(script, module, expected, tmp_path):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    env = dict(os.environ, TUNE_RESULT_DIR=str(tmp_path), TUNESMITH_LEDGER_DIR=str(tmp_path / "ledger"),
               TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, script)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "best config:" in out.stdout
    if "{rounds}" in expected:
        # The best trial ran all 50 rounds or was stopped by ASHA at a rung (its checkpoints come every 10
        # rounds and at the end): the model loaded from its checkpoint has the rounds its result says.
        rounds = int(re.search(r"after (\d+) rounds", out.stdout).group(1))
        assert rounds in (10, 40, 50)
        expected = expected.format(rounds=rounds)
    assert expected in out.stdout
