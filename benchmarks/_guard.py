"""What every benchmark here does around its figures, so that a figure cannot lie.

- :func:`isolated_env`: each workload runs in a fresh Python process with its
  own results directory and its own machine-sharing ledger
  (``TUNESMITH_LEDGER_DIR``), so that another tunesmith experiment on the
  machine neither waits for it nor makes it wait.
- :func:`check_experiment`: after a run, the rows on disk (``result.json``
  lines and ``progress.csv`` records of every trial) and the trial statuses in
  ``experiment_state.json`` are counted; a run that lost a result or left a
  trial unfinished stops the benchmark instead of printing a figure.
- :func:`load`: the load average, printed next to the figures, since the
  machine these run on is shared; :func:`machine` adds how fast this machine is
  right now at plain Python and at creating files where the workloads write.
  On a shared virtual machine both swing (a fixed loop by up to 3x between
  runs; creating a file from about 15 to 200 microseconds, with the state of
  the file system's block groups), so figures from different runs compare only
  together with these.
- A workload's files are deleted when the script ends, not right after the
  workload: ext4 skips recently freed inodes when it creates files, so a run
  that starts just after thousands of files were deleted pays several times
  the system time per created file (the per-trial workload writes six files
  per trial), and in an alternating A/B run every run after the first did.
"""
from __future__ import annotations

import atexit
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f})"


def cpu_probe() -> float:
    """Milliseconds a fixed pure-Python loop takes (best of three): the host's speed right now."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def fs_probe(files: int = 200) -> float:
    """Microseconds to create and write one small file in a fresh directory under the temp dir."""
    where = tempfile.mkdtemp(prefix="tunesmith-bench-probe-")
    atexit.register(shutil.rmtree, where, True)  # at the end of the script (see the module docstring)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    start = time.perf_counter()
    for i in range(files):
        fd = os.open(os.path.join(where, f"f{i}"), flags, 0o644)
        os.write(fd, b"x" * 64)
        os.close(fd)
    return (time.perf_counter() - start) / files * 1e6


def machine(files: bool = True) -> str:
    """The load average, :func:`cpu_probe` and (with ``files``) :func:`fs_probe`, as one line."""
    text = f"{load()}; python loop {cpu_probe():.0f} ms"
    if files:
        text += f"; file creation {fs_probe():.0f} us"
    return text


def isolated_env(tmp: str, src: str | None = None) -> dict[str, str]:
    """Environment of one workload process: results and ledger under ``tmp``; ``src`` first on the path."""
    ledger = os.path.join(tmp, "ledger")
    os.makedirs(ledger, mode=0o700, exist_ok=True)
    env = dict(os.environ, TUNE_RESULT_DIR=os.path.join(tmp, "results"), TUNESMITH_LEDGER_DIR=ledger)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # run as an installed package does: bytecode cached
    if src is not None:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def with_workload(code: str, args: list[str], check, src: str | None = None, timeout: float = 900) -> dict:
    """Runs ``code`` (``sys.argv[1]`` is a fresh storage path, then ``args``) and ``check(storage, figures)``.

    ``check`` raises if what the workload claims did not happen on disk.
    """
    tmp = tempfile.mkdtemp(prefix="tunesmith-bench-")
    atexit.register(shutil.rmtree, tmp, True)  # at the end of the script (see the module docstring)
    storage = os.path.join(tmp, "storage")
    env = isolated_env(tmp, src)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, storage, *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"the workload failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    figures: dict = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            figures.update(json.loads(line))
    figures["whole_process_s"] = wall
    check(storage, figures)
    return figures


class BenchmarkCheckFailed(AssertionError):
    """What a workload claims did not happen: its figure would be wrong."""


def check_experiment(storage: str, trials: int, rows: int | None = None, name: str = "b",
                     statuses: tuple[str, ...] = ("TERMINATED",)) -> int:
    """Checks an experiment on disk: ``trials`` trials, all in ``statuses``, ``rows`` result rows in all.

    Both ``result.json`` and ``progress.csv`` are counted (when ``rows`` is None they
    must agree with each other and with the trials' last ``training_iteration``).
    Returns the number of rows.
    """
    exp = os.path.join(storage, name)
    with open(os.path.join(exp, "experiment_state.json")) as f:
        state = json.load(f)
    found = state["trials"]
    if len(found) != trials:
        raise BenchmarkCheckFailed(f"{len(found)} trials in the experiment state, expected {trials}")
    bad = [t["status"] for t in found if t["status"] not in statuses]
    if bad:
        raise BenchmarkCheckFailed(f"{len(bad)} trials ended {sorted(set(bad))}, expected {statuses}")
    iterations = 0
    for trial in found:
        last = trial.get("last_result") or {}
        iterations += int(last.get("training_iteration", 0) or 0)
    return check_rows(storage, iterations if rows is None else rows, name)


def check_rows(storage: str, expected: int, name: str = "b") -> int:
    """Checks that the trial directories of experiment ``name`` hold ``expected`` rows in all, in both
    ``result.json`` and ``progress.csv``; returns the number of rows."""
    exp = os.path.join(storage, name)
    json_rows = csv_rows = 0
    for entry in os.scandir(exp):
        if not entry.is_dir():
            continue
        result = os.path.join(entry.path, "result.json")
        if os.path.exists(result):
            with open(result, "rb") as f:
                json_rows += sum(1 for line in f if line.strip())
        progress = os.path.join(entry.path, "progress.csv")
        if os.path.exists(progress):
            with open(progress, newline="") as f:
                csv_rows += max(0, sum(1 for _ in csv.reader(f)) - 1)
    if not (json_rows == csv_rows == expected):
        raise BenchmarkCheckFailed(
            f"rows on disk: result.json {json_rows}, progress.csv {csv_rows}; expected {expected}"
        )
    return json_rows


def baseline_src(rev: str, into: str) -> str:
    """Extracts ``src/`` of revision ``rev`` into ``into`` (no checkout, no worktree); returns its path."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", repo, "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return os.path.join(into, "src")
