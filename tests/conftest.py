from __future__ import annotations

import os
import sys

import pytest

# Tests import helper modules that live next to them.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path, monkeypatch):
    """Every test writes its results under its own temporary directory."""
    monkeypatch.setenv("TUNE_RESULT_DIR", str(tmp_path / "results"))
    # Experiments of other processes on this machine must not change what a test sees.
    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(tmp_path / "ledger"))
    monkeypatch.delenv("TUNE_DISABLE_DATED_SUBDIR", raising=False)
    monkeypatch.delenv("TUNE_MAX_LEN_IDENTIFIER", raising=False)
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR", raising=False)
    from tunesmith._internal import resources

    resources._overrides.clear()
    yield
    resources._overrides.clear()


@pytest.fixture
def storage(tmp_path):
    return str(tmp_path / "storage")
