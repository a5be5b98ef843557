"""Two experiments running at once on one machine share its CPUs instead of overcommitting them."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tunesmith._internal.machine_ledger import MachineLedger

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import tunesmith
    from tunesmith import tune

    tunesmith.init(num_cpus=2)

    def sleeper(config):
        start = time.time()
        time.sleep(0.6)
        tune.report({"start": start, "end": time.time()})

    grid = tune.Tuner(sleeper, param_space={"i": tune.grid_search(list(range(4)))},
                      run_config=tune.RunConfig(verbose=0, storage_path=sys.argv[1])).fit()
    print("SPANS", json.dumps([[r.metrics["start"], r.metrics["end"]] for r in grid]))
    """
)


def _max_overlap(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def test_concurrent_experiments_share_the_cpus(tmp_path):
    script = tmp_path / "exp.py"
    script.write_text(SCRIPT)
    env = {"TUNESMITH_LEDGER_DIR": str(tmp_path / "ledger")}
    import os

    env = dict(os.environ, **env)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / f"r{i}")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    spans = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        line = [ln for ln in out.splitlines() if ln.startswith("SPANS")][0]
        spans.append(json.loads(line.split(" ", 1)[1]))
    # Never more than the 2 CPUs' worth of trials across both experiments...
    assert _max_overlap(spans[0] + spans[1]) <= 2
    # ...and neither waited for the other to finish: their runs interleaved.
    first_start = [min(s for s, _ in exp) for exp in spans]
    last_end = [max(e for _, e in exp) for exp in spans]
    assert max(first_start) < min(last_end)


def test_ledger_ignores_dead_processes_and_reports_what_others_hold(tmp_path):
    ours = MachineLedger(str(tmp_path))
    other = MachineLedger(str(tmp_path))
    other.update({"CPU": 2.0}, {"0": 0.5})
    ours.refresh()  # usage is read afresh (under the lock) before each reservation
    assert ours.held_by_others() == ({"CPU": 2.0}, {"0": 0.5})
    # A file left by a process that no longer exists is dropped.
    (tmp_path / "exp-999999-dead.json").write_text(json.dumps({"pid": 999999, "held": {"CPU": 8}}))
    assert ours.held_by_others()[0] == {"CPU": 2.0}
    assert not (tmp_path / "exp-999999-dead.json").exists()
    # While another experiment waits, one holding its share does not grow past it.
    other.update({}, {})
    other.set_waiting(True)
    ours.refresh()
    assert ours.fair_share_exceeded({"CPU": 4.0}, {"CPU": 2.0}, {"CPU": 1.0})
    assert not ours.fair_share_exceeded({"CPU": 4.0}, {"CPU": 1.0}, {"CPU": 1.0})
    assert not ours.fair_share_exceeded({"CPU": 4.0}, {}, {"CPU": 4.0})  # holding nothing: may start
    other.close()
    assert ours.held_by_others() == ({}, {})


def test_entry_of_a_reused_pid_is_ignored(tmp_path):
    import os

    ours = MachineLedger(str(tmp_path))
    # Our own pid, but written by a process that started at another time: a stale entry.
    stale = {"pid": os.getpid(), "started": 12345.0, "held": {"CPU": 8}}
    (tmp_path / f"exp-{os.getpid()}-stale.json").write_text(json.dumps(stale))
    assert ours.held_by_others() == ({}, {})
    ours.close()


def test_experiment_runs_without_sharing_when_the_ledger_cannot_be_written(monkeypatch, caplog):
    from tunesmith import tune

    monkeypatch.setenv("TUNESMITH_LEDGER_DIR", "/proc/no-such-dir/ledger")
    grid = tune.Tuner(lambda config: {"x": 1}, run_config=tune.RunConfig(verbose=0)).fit()
    assert grid[0].metrics["x"] == 1
    assert "without sharing the machine" in caplog.text
