"""Workers forked from a preloaded fork server: isolation, devices, and the fallback to spawning."""
from __future__ import annotations

import logging
import os

import pytest
from _forkserver_trainables import where

import tunesmith
from tunesmith import tune


def _fit(trainable, n, **tune_kwargs):
    return tune.Tuner(trainable, param_space={"i": tune.grid_search(list(range(n)))},
                      tune_config=tune.TuneConfig(**tune_kwargs),
                      run_config=tune.RunConfig(verbose=0)).fit()


def _imports(path) -> list[str]:
    return open(path).read().split() if os.path.exists(path) else []


def test_workers_are_forked_from_one_process_that_imported_the_trainable_once(tmp_path, monkeypatch):
    imports = tmp_path / "imports"
    monkeypatch.setenv("FORK_TEST_IMPORTS", str(imports))
    tunesmith.init(num_cpus=2)
    grid = _fit(where, 4, reuse_actors=False)
    assert not grid.errors
    pids = {r.metrics["pid"] for r in grid}
    parents = {r.metrics["ppid"] for r in grid}
    assert len(pids) == 4  # one fresh process per trial
    assert len(parents) == 1 and os.getpid() not in parents  # all forked by the fork server
    # The trainable's module was imported by the fork server only, not once per worker.
    assert _imports(imports) == [str(p) for p in parents]
    assert len({r.metrics["draw"] for r in grid}) == 4  # forked workers do not share random state


def test_forked_workers_get_their_own_cuda_visible_devices():
    tunesmith.init(num_cpus=4, num_gpus=2)
    grid = _fit(tune.with_resources(where, {"cpu": 1, "gpu": 1}), 4)
    assert sorted({r.metrics["cuda"] for r in grid}) == ["0", "1"]
    assert os.getpid() not in {r.metrics["ppid"] for r in grid}


def test_a_trainable_that_starts_threads_at_import_is_spawned_and_the_log_says_why(tmp_path, monkeypatch, caplog):
    imports = tmp_path / "imports"
    monkeypatch.setenv("FORK_TEST_IMPORTS", str(imports))
    monkeypatch.setenv("FORK_TEST_START_THREAD", "1")
    tunesmith.init(num_cpus=2)
    with caplog.at_level(logging.INFO, logger="tunesmith._internal.backend._forkserver"):
        grid = _fit(where, 3)
    assert not grid.errors
    assert {r.metrics["ppid"] for r in grid} == {os.getpid()}  # spawned by the driver
    assert "forking is unsafe: the trainable started threads while it was loaded (import-time-thread)" in caplog.text


@pytest.mark.timeout(300)
def test_forked_workers_run_torch_after_torch_math_at_import_and_draw_their_own_numbers(monkeypatch):
    """The trainable's module ran torch math when the fork server imported it, which started torch's
    OpenMP pool there: every forked worker then waited forever in its first parallel operation. And
    every forked worker inherited the server's torch generator, so all trials drew the same numbers."""
    pytest.importorskip("torch")
    from _torch_at_import import torch_worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    tunesmith.init(num_cpus=2)
    grid = _fit(torch_worker, 4, reuse_actors=False)
    assert not grid.errors
    assert all(r.metrics["finite"] for r in grid)
    assert len({r.metrics["pid"] for r in grid}) == 4
    assert len({r.metrics["draw"] for r in grid}) == 4
    # Each trial has the thread count of its one CPU; what the server set for itself does not leak.
    assert {(r.metrics["omp"], r.metrics["threads"], r.metrics["openblas"]) for r in grid} == {("1", 1, None)}


@pytest.mark.parametrize("how", ["spawn"])
def test_worker_start_spawn_turns_the_fork_server_off(monkeypatch, how):
    monkeypatch.setenv("TUNESMITH_WORKER_START", how)
    tunesmith.init(num_cpus=2)
    grid = _fit(where, 2)
    assert {r.metrics["ppid"] for r in grid} == {os.getpid()}


def test_a_bad_worker_start_setting_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("TUNESMITH_WORKER_START", "forkserver")
    with pytest.raises(ValueError, match="TUNESMITH_WORKER_START must be 'fork' or 'spawn'"):
        _fit(where, 1)


def test_a_killed_fork_server_falls_back_to_spawning(monkeypatch):
    import signal
    import time

    from tunesmith import train

    def kills_its_parent_once(config):
        marker = os.path.join(os.environ["TUNE_RESULT_DIR"], "killed")
        if config["i"] == 0 and not os.path.exists(marker) and os.getppid() != config["driver"]:
            open(marker, "w").close()
            os.kill(os.getppid(), signal.SIGKILL)  # the fork server; this worker dies with it
            time.sleep(60)
        train.report({"ppid": os.getppid()})

    tunesmith.init(num_cpus=1)
    grid = tune.Tuner(kills_its_parent_once, param_space={"i": tune.grid_search([0, 1]), "driver": os.getpid()},
                      tune_config=tune.TuneConfig(),
                      run_config=tune.RunConfig(verbose=0, failure_config=tune.FailureConfig(max_failures=1))).fit()
    assert not grid.errors
    assert {r.metrics["ppid"] for r in grid} == {os.getpid()}  # after the fork server died: spawned


@pytest.mark.timeout(300)
def test_numpy_and_openmp_pools_loaded_before_a_trial_take_its_cpu_count(monkeypatch):
    """numpy and scikit-learn imported by the trainable's module (so in the fork server) kept the pool
    sizes the server had: OpenBLAS on every core for a 1-CPU trial, OpenMP on one thread for a 2-CPU
    trial. On Ray each trial's process loads them after OMP_NUM_THREADS is set to its CPUs."""
    pytest.importorskip("sklearn")
    from _numeric_at_import import pool_sizes

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("TUNESMITH_RESOURCES", '{"CPU": 4}')
    tunesmith.init(num_cpus=4)
    trainable = tune.with_resources(pool_sizes, lambda config: {"cpu": config["cpus"]})
    # One trial at a time: a worker that ran a 4-CPU trial runs a 1-CPU one, and back.
    grid = tune.Tuner(
        trainable,
        param_space={"cpus": tune.grid_search([1, 4, 1, 4])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(verbose=0),
    ).fit()
    assert not grid.errors
    seen = sorted((r.metrics["cpus"], r.metrics["omp"], tuple(r.metrics["blas"]), tuple(r.metrics["openmp"]))
                  for r in grid)
    assert seen == [(1, "1", (1,), (1,))] * 2 + [(4, "4", (4,), (4,))] * 2
    assert all(r.metrics["product"] == 64.0 ** 3 for r in grid)


@pytest.mark.timeout(300)
def test_pool_sizes_a_trial_set_itself_do_not_reach_the_next_trial(monkeypatch):
    pytest.importorskip("sklearn")
    from _numeric_at_import import limits_pools_then_reports

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("TUNESMITH_RESOURCES", '{"CPU": 4}')
    tunesmith.init(num_cpus=4)
    grid = tune.Tuner(
        tune.with_resources(limits_pools_then_reports, {"cpu": 4}), param_space={"i": tune.grid_search([0, 1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1), run_config=tune.RunConfig(verbose=0),
    ).fit()
    assert not grid.errors
    assert len({r.metrics["pid"] for r in grid}) == 1  # one worker ran them one after another
    assert [r.metrics["sizes"] for r in grid] == [[4]] * 3
