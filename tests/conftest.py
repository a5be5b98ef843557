from __future__ import annotations

import os
import signal
import sys
import threading

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
    # comet_ml, once a test imported it, logs every MLflow run of the process into ./.cometml-runs.
    monkeypatch.setenv("COMET_DISABLE_AUTO_LOGGING", "1")
    from tunesmith._internal import resources

    resources._overrides.clear()
    yield
    resources._overrides.clear()


@pytest.fixture
def storage(tmp_path):
    return str(tmp_path / "storage")


def _descendants(pid: int) -> list[int]:
    """The pids of every live process below ``pid`` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _catches_sigusr2(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGUSR2 - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def ask_workers_for_stacks() -> list[int]:
    """Sends SIGUSR2 to this process's descendants that handle it (tunesmith's workers print their stacks).

    A process that does not handle SIGUSR2 (a server a test started, say) is left alone: the
    signal's default action would kill it.
    """
    asked = []
    for pid in _descendants(os.getpid()):
        if _catches_sigusr2(pid):
            try:
                os.kill(pid, signal.SIGUSR2)
                asked.append(pid)
            except OSError:
                pass
    return asked


@pytest.fixture(autouse=True)
def _stacks_before_timeout(request):
    """Shortly before pytest-timeout fails a test, the workers below it print where they are.

    The driver forwards what its workers print, so a test that hangs in a trial shows every
    worker thread's stack in its captured output, next to pytest-timeout's stack of the driver.
    """
    marker = request.node.get_closest_marker("timeout")
    try:
        timeout = float(marker.args[0]) if marker and marker.args else float(request.config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout is not installed: no timeout to come before
        timeout = 0.0
    if timeout <= 0 or not hasattr(signal, "SIGUSR2") or not os.path.isdir("/proc"):
        yield
        return
    lead = min(20.0, timeout / 10)

    def ask() -> None:
        asked = ask_workers_for_stacks()
        print(f"\n[conftest] {timeout - lead:g} s into the test: asked processes {asked} for their stacks",
              file=sys.__stderr__, flush=True)

    timer = threading.Timer(timeout - lead, ask)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
