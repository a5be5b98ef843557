"""The suite's own guard: before a test times out, the workers below it print their stacks."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import ask_workers_for_stacks

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="needs SIGUSR2 and /proc")

CATCHER = """
import signal, sys, time
signal.signal(signal.SIGUSR2, lambda *a: print("asked", flush=True))
print("ready", flush=True)
sys.stdin.readline()
"""


def test_only_processes_that_handle_sigusr2_are_asked():
    catcher = subprocess.Popen([sys.executable, "-c", CATCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    plain = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    try:
        assert catcher.stdout.readline() == "ready\n"
        asked = ask_workers_for_stacks()
        assert catcher.pid in asked and plain.pid not in asked
        assert catcher.stdout.readline() == "asked\n"
        assert plain.poll() is None  # SIGUSR2's default action would have killed it
    finally:
        for proc in (catcher, plain):
            proc.stdin.close()
            proc.wait(timeout=60)
    assert catcher.returncode == 0 and plain.returncode == 0
