"""Doctests of ``src/tunesmith`` write what they run under a temporary directory, as the tests do
(``tests/conftest.py``), not into the user's ``~/tunesmith_results``."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _doctest_results(request, tmp_path_factory, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        where = tmp_path_factory.mktemp("doctest")
        monkeypatch.setenv("TUNE_RESULT_DIR", str(where / "results"))
        monkeypatch.setenv("TUNESMITH_LEDGER_DIR", str(where / "ledger"))
    yield
