"""Every form of the function API, run through Tuner.fit() in real worker processes."""
from __future__ import annotations

import json
import os
import tempfile

import pytest

from tunesmith import train, tune
from tunesmith.air import session


def _fit(trainable, param_space=None, **tune_kwargs):
    run_config = tune_kwargs.pop("run_config", tune.RunConfig(verbose=0))
    return tune.Tuner(
        trainable,
        param_space=param_space or {},
        tune_config=tune.TuneConfig(**tune_kwargs),
        run_config=run_config,
    ).fit()


def with_tune_report(config):
    for i in range(3):
        tune.report({"score": config["x"] * i})


def with_train_report(config):
    for i in range(3):
        train.report({"score": config["x"] * i})


def with_session_report(config):
    for i in range(3):
        session.report({"score": config["x"] * i})


def with_keyword_report(config):
    for i in range(3):
        tune.report(score=config["x"] * i)


def with_track_log(config):
    for i in range(3):
        tune.track.log(score=config["x"] * i)


def with_reporter(config, reporter):
    for i in range(3):
        reporter(score=config["x"] * i)


def with_yield(config):
    for i in range(3):
        yield {"score": config["x"] * i}


@pytest.mark.parametrize(
    "fn",
    [with_tune_report, with_train_report, with_session_report, with_keyword_report, with_track_log,
     with_reporter, with_yield],
)
def test_every_report_form_gives_the_same_results(fn):
    grid = _fit(fn, {"x": tune.grid_search([1, 2])})
    assert len(grid) == 2
    by_x = {r.config["x"]: r.metrics for r in grid}
    assert by_x[1]["score"] == 2 and by_x[2]["score"] == 4
    assert by_x[2]["training_iteration"] == 3
    assert grid.num_errors == 0 and grid.num_terminated == 2


def test_returned_dict_is_the_final_result():
    grid = _fit(lambda config: {"score": config["x"] + 1}, {"x": 41})
    assert grid[0].metrics["score"] == 42
    assert grid[0].metrics["training_iteration"] == 1


def returns_value(config):
    train.report({"score": 1})
    return "finished-value"


def test_non_dict_return_value_is_kept():
    grid = _fit(returns_value)
    assert grid[0].return_value == "finished-value"
    assert grid[0].metrics["score"] == 1


def _reports_then_returns_falsy(config):
    for i in range(3):
        train.report({"score": i + 1})
    if config["kind"] == "generator":
        return _falsy_items()
    return {"dict": {}, "zero": 0, "zero_float": 0.0}[config["kind"]]


def _falsy_items():
    yield None
    yield {}
    yield 0


def test_a_falsy_return_value_adds_no_result(tmp_path):
    """As on Ray: `return {}` or `return 0` after the reports added an empty last row, and with
    TuneConfig(metric=...) fit() failed on a result without the metric."""
    grid = tune.Tuner(
        _reports_then_returns_falsy,
        param_space={"kind": tune.grid_search(["dict", "zero", "zero_float", "generator"])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path)),
    ).fit()
    assert grid.num_errors == 0
    for result in grid:
        assert result.metrics["score"] == 3 and result.metrics["training_iteration"] == 3
        assert list(result.metrics_dataframe["score"]) == [1, 2, 3]


def _yields_a_message(config):
    yield {"score": 1}
    yield "epoch 2 done"


def test_yielding_something_other_than_metrics_fails_the_trial(tmp_path):
    """As on Ray: a yielded string was logged as {"_metric": "epoch 2 done"}, and the trial's metrics lost
    their score."""
    (result,) = tune.Tuner(_yields_a_message, run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path))).fit()
    assert "yielded 'epoch 2 done' (str)" in str(result.error)
    assert result.metrics["score"] == 1


def test_auto_filled_metrics_are_present():
    grid = _fit(with_tune_report, {"x": 1})
    metrics = grid[0].metrics
    for key in ("training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
                "iterations_since_restore", "timestamp", "date", "trial_id", "experiment_tag",
                "hostname", "node_ip", "pid", "done", "config"):
        assert key in metrics, key
    assert metrics["pid"] != os.getpid()  # ran in a worker process
    assert metrics["config"] == {"x": 1}


def context_reporter(config):
    ctx = train.get_context()
    train.report({
        "trial_dir": ctx.get_trial_dir(),
        "trial_name": ctx.get_trial_name(),
        "trial_id": ctx.get_trial_id(),
        "experiment_name": ctx.get_experiment_name(),
        "rank": ctx.get_world_rank(),
        "size": ctx.get_world_size(),
        "track_dir": tune.track.trial_dir(),
        "track_name": tune.track.trial_name(),
        "track_id": tune.track.trial_id(),
        "cwd": os.getcwd(),
    })


def test_context_describes_the_trial():
    grid = _fit(context_reporter, run_config=tune.RunConfig(name="ctx_exp", verbose=0))
    m = grid[0].metrics
    assert m["trial_dir"] == grid[0].path
    assert m["trial_id"] == m["track_id"]
    assert m["trial_name"] == m["track_name"]
    assert m["experiment_name"] == "ctx_exp"
    assert (m["rank"], m["size"]) == (0, 1)
    assert os.path.realpath(m["cwd"]) == os.path.realpath(grid[0].path)


def test_chdir_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    grid = _fit(context_reporter)
    assert os.path.realpath(grid[0].metrics["cwd"]) != os.path.realpath(grid[0].path)


def checkpointing(config):
    import tempfile

    start = 0
    ckpt = train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["step"] + 1
    for step in range(start, 4):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(d))


def test_reported_checkpoints_are_persisted_in_the_trial_dir():
    grid = _fit(checkpointing)
    result = grid[0]
    names = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))
    assert names == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    assert result.checkpoint.path == os.path.join(result.path, "checkpoint_000003")
    with open(os.path.join(result.checkpoint.path, "state.json")) as f:
        assert json.load(f) == {"step": 3}
    assert [m["step"] for _, m in result.best_checkpoints] == [0, 1, 2, 3]


def test_trial_files_are_written():
    grid = _fit(with_tune_report, {"x": 2})
    path = grid[0].path
    for name in ("result.json", "progress.csv", "params.json", "params.pkl"):
        assert os.path.exists(os.path.join(path, name)), name
    with open(os.path.join(path, "result.json")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["score"] for r in rows] == [0, 2, 4]
    with open(os.path.join(path, "params.json")) as f:
        assert json.load(f) == {"x": 2}
    assert os.path.exists(os.path.join(os.path.dirname(path), "experiment_state.json"))


def test_with_parameters_passes_large_objects():
    import numpy as np

    data = np.arange(100_000)

    def trainable(config, data=None):
        tune.report({"total": int(data.sum()) * config["k"]})

    grid = _fit(tune.with_parameters(trainable, data=data), {"k": tune.grid_search([1, 2])})
    assert sorted(r.metrics["total"] for r in grid) == [int(data.sum()), 2 * int(data.sum())]


def test_registered_trainable_by_name():
    tune.register_trainable("my_registered_fn", with_tune_report)
    grid = _fit("my_registered_fn", {"x": 3})
    assert grid[0].metrics["score"] == 6
    assert "my_registered_fn" in os.path.basename(grid[0].path)


def failing(config):
    tune.report({"score": 1})
    if config["fail"]:
        raise RuntimeError("this trial fails on purpose")
    tune.report({"score": 2})


def test_failing_trial_keeps_traceback_and_others_finish():
    grid = _fit(failing, {"fail": tune.grid_search([True, False])})
    assert grid.num_errors == 1 and grid.num_terminated == 1
    failed = [r for r in grid if r.error][0]
    assert "this trial fails on purpose" in str(failed.error)
    with open(os.path.join(failed.path, "error.txt")) as f:
        text = f.read()
    assert "RuntimeError: this trial fails on purpose" in text and "Traceback" in text
    assert os.path.exists(os.path.join(failed.path, "error.pkl"))
    ok = [r for r in grid if not r.error][0]
    assert ok.metrics["score"] == 2


def test_strict_metric_checking_names_reported_metrics():
    with pytest.raises(ValueError, match=r"accuracy.*score"):
        _fit(with_tune_report, {"x": 1}, metric="accuracy", mode="max")


def test_strict_metric_checking_can_be_disabled(monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    grid = _fit(with_tune_report, {"x": 1}, metric="accuracy", mode="max")
    assert grid[0].metrics["score"] == 2


def test_error_traceback_shows_user_code_only(monkeypatch):
    grid = _fit(failing, {"fail": True})
    with open(os.path.join(grid[0].path, "error.txt")) as f:
        text = f.read()
    assert "in failing" in text and "_internal" not in text
    monkeypatch.setenv("RAY_AIR_FULL_TRACEBACKS", "1")
    grid = _fit(failing, {"fail": True})
    with open(os.path.join(grid[0].path, "error.txt")) as f:
        assert "_internal" in f.read()


def _reports_tensors(config):
    import torch

    from tunesmith import train

    for i in range(3):
        train.report({"loss": torch.tensor(1.0 / (i + 1)), "weights": torch.arange(3) * i})


def test_metrics_that_are_tensors_arrive_as_numbers(tmp_path):
    """A loss reported as a PyTorch tensor is read by the driver, logged and compared as a number."""
    pytest.importorskip("torch")
    import numpy as np

    results = tune.Tuner(
        _reports_tensors,
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="tensors", verbose=0),
    ).fit()
    assert not results.errors
    result = results.get_best_result()
    assert isinstance(result.metrics["loss"], float) and result.metrics["loss"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(result.metrics["weights"], [0, 2, 4])
    assert list(result.metrics_dataframe["loss"]) == pytest.approx([1.0, 0.5, 1 / 3])


def _keeps_tensors_in_its_state(config):
    import torch

    state = {"best": {"loss": torch.tensor(10.0)}, "w": torch.zeros(2)}
    for i in range(3):
        loss = torch.tensor(1.0 / (i + 1))
        state["best"]["loss"] = torch.minimum(state["best"]["loss"], loss)  # a float here would raise
        train.report({"loss": loss, "state": state})
    assert isinstance(state["w"], torch.Tensor)


def test_report_leaves_the_trainables_own_nested_dicts_alone(tmp_path):
    """report() turned the tensors inside the caller's own nested dicts into floats and arrays, so the
    trainable's next step failed on them."""
    pytest.importorskip("torch")
    (result,) = tune.Tuner(
        _keeps_tensors_in_its_state,
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="state", verbose=0),
    ).fit()
    assert result.error is None
    assert result.metrics["state"]["best"]["loss"] == pytest.approx(1 / 3)
    assert list(result.metrics["state"]["w"]) == [0, 0]


def _leaves_a_reporting_thread(config):
    import threading
    import time

    marker = os.path.join(config["dir"], "second_done")
    if config["x"] == 0:
        def keeps_reporting():
            deadline = time.time() + 30
            while not os.path.exists(marker) and time.time() < deadline:
                tune.report({"loss": -1000.0})
                time.sleep(0.01)

        threading.Thread(target=keeps_reporting, daemon=True).start()
        tune.report({"loss": 5.0})
        return
    for _ in range(5):
        time.sleep(0.05)
        tune.report({"loss": 1.0})
    open(marker, "w").close()


def test_a_thread_an_earlier_trial_left_running_does_not_report_into_the_next_trial(tmp_path):
    grid = tune.Tuner(_leaves_a_reporting_thread,
                      param_space={"x": tune.grid_search([0, 1]), "dir": str(tmp_path)},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1),
                      run_config=tune.RunConfig(verbose=0)).fit()
    second = next(r for r in grid if r.config["x"] == 1)
    assert list(second.metrics_dataframe["loss"]) == [1.0] * 5
    assert second.metrics["training_iteration"] == 5


_POOL = None


def _reports_through_a_module_pool(config):
    """The training loop runs in a pool the module keeps across trials (one thread, reused)."""
    from concurrent.futures import ThreadPoolExecutor

    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1)

    def loop():
        for i in range(3):
            tune.report({"score": config["x"] * 10 + i})

    _POOL.submit(loop).result()


def test_a_pool_thread_idle_at_a_trials_end_reports_for_the_next_trial(tmp_path):
    """Every trial after the first on a reused worker ended with no metrics: the pool's idle
    thread counted as left over by the first trial, and its reports were dropped."""
    grid = tune.Tuner(_reports_through_a_module_pool,
                      param_space={"x": tune.grid_search([1, 2, 3, 4])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
                      run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path))).fit()
    by_x = {r.config["x"]: r for r in grid}
    assert {x: r.metrics.get("score") for x, r in by_x.items()} == {1: 12, 2: 22, 3: 32, 4: 42}
    assert all(r.metrics["training_iteration"] == 3 for r in grid)
    assert len({r.metrics["pid"] for r in grid}) == 1  # one reused worker ran them all


def _starts_a_process_and_leaves_it(config):
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    tune.report({"child": child.pid})


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads child processes from /proc")
def test_processes_a_trial_leaves_running_end_with_its_worker():
    import time

    grid = tune.Tuner(_starts_a_process_and_leaves_it, run_config=tune.RunConfig(verbose=0)).fit()
    pid = grid[0].metrics["child"]
    deadline = time.time() + 30  # the worker ends them as it leaves, just after fit() returns
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _counts_steps_and_fails_once(config):
    import tempfile

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = json.load(open(os.path.join(d, "s.json")))["i"]
    for i in range(start + 1, 6):
        if i == 4 and os.path.exists(config["flag"]):
            os.remove(config["flag"])
            raise RuntimeError("boom")
        with tempfile.TemporaryDirectory() as d:
            json.dump({"i": i}, open(os.path.join(d, "s.json"), "w"))
            train.report({"i": i, "timesteps_this_iter": 10, "episodes_this_iter": 1},
                         checkpoint=train.Checkpoint.from_directory(d))


def test_timesteps_and_episodes_totals_carry_over_a_restore(tmp_path):
    """Seed 003: the counters are preserved across checkpoint/restore; a function trial retried from its
    checkpoint went on from 0 (PBT's timesteps_total went backwards after an exploit)."""
    flag = tmp_path / "flag"
    flag.touch()
    grid = _fit(_counts_steps_and_fails_once, {"flag": str(flag)},
                run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=1)))
    assert not grid.errors
    rows = [json.loads(line) for line in open(os.path.join(grid[0].path, "result.json"))]
    assert [(r["i"], r["timesteps_total"], r["episodes_total"]) for r in rows] == [
        (1, 10, 1), (2, 20, 2), (3, 30, 3), (4, 40, 4), (5, 50, 5)]
    assert [r["timesteps_since_restore"] for r in rows[3:]] == [10, 20]


def _claims_long_iterations(config):
    for i in range(10):
        train.report({"i": i, "time_this_iter_s": 100.0})


def test_a_reported_time_this_iter_s_counts_in_the_time_totals(tmp_path):
    """Seed 003: time_this_iter_s may be overridden to replace the measured time; stop on time_total_s then
    uses it (before, the value was replaced by the clock's and all 10 iterations ran)."""
    grid = _fit(_claims_long_iterations, run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0, stop={"time_total_s": 250}))
    metrics = grid[0].metrics
    assert metrics["training_iteration"] == 3
    assert (metrics["time_this_iter_s"], metrics["time_total_s"]) == (100.0, pytest.approx(300.0, abs=1))


def _cleans_up_on_stop_iteration(config, reporter):
    try:
        for i in range(1000):
            reporter(mean_accuracy=i / 1000)
    except StopIteration:
        open(config["mark"], "w").write("cleaned up")
        raise


def test_a_stopped_reporter_raises_stop_iteration(tmp_path):
    """Seed 003, StatusReporter.__call__: StopIteration is raised once the trial is signalled to stop."""
    mark = tmp_path / "mark"
    grid = _fit(_cleans_up_on_stop_iteration, {"mark": str(mark)},
                run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"training_iteration": 3}))
    assert not grid.errors and grid[0].metrics["training_iteration"] == 3
    assert mark.read_text() == "cleaned up"


def test_node_ip_is_the_outward_address(tmp_path):
    """Seed 003: node_ip is the IP of the machine hosting the trial; the host name may resolve to 127.0.1.1
    in /etc/hosts, so (as Ray) it is the address of the interface that routes outward."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 80))
            outward = probe.getsockname()[0]
    except OSError:
        pytest.skip("this machine has no outward route")
    grid = _fit(with_tune_report, {"x": 1}, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    assert grid[0].metrics["node_ip"] == outward


def _reports_in_finally(config):
    import time

    try:
        for i in range(1, 1000):
            train.report({"i": i})
            time.sleep(0.01)
    finally:
        train.report({"i": -1})  # after the stop: returns at once, and is dropped
        with open(config["marker"], "w") as f:
            f.write("cleaned up")


def test_a_report_after_the_stop_returns_at_once(tmp_path, monkeypatch):
    """A report in a finally block after the trial was stopped waited for an answer the driver never
    sent, until the worker was killed: the code after it never ran. On Ray it returns with a warning."""
    monkeypatch.setenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", "5")
    marker = tmp_path / "marker"
    (result,) = tune.Tuner(
        _reports_in_finally, param_space={"marker": str(marker)},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="fin", verbose=0,
                                  stop={"training_iteration": 3}),
    ).fit()
    assert result.error is None and result.metrics["i"] == 3
    assert list(result.metrics_dataframe["i"]) == [1, 2, 3]
    assert marker.read_text() == "cleaned up"


def _misspells_checkpoint(config):
    with tempfile.TemporaryDirectory() as d:
        train.report({"i": 1}, checkpont=train.Checkpoint.from_directory(d))


def _names_its_checkpoint(config):
    with tempfile.TemporaryDirectory() as d:
        train.report({"i": 1}, checkpoint=train.Checkpoint.from_directory(d), checkpoint_dir_name="best")


def test_a_misspelled_report_keyword_is_an_error(tmp_path):
    """report({...}, checkpont=ckpt) stored the checkpoint as a metric named "checkpont" and saved none;
    Ray raises a TypeError. Ray's checkpoint_dir_name= is accepted."""
    (result,) = tune.Tuner(_misspells_checkpoint, run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path))).fit()
    assert "unexpected keyword argument(s) 'checkpont'" in str(result.error)
    (result,) = tune.Tuner(_names_its_checkpoint, run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path))).fit()
    assert result.error is None and result.checkpoint is not None
    assert result.metrics["checkpoint_dir_name"] == "checkpoint_000000"  # not taken for a metric
