"""DataParallelTrainer end to end: worker groups of real processes, their reports, checkpoints and errors."""
from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

import tunesmith
from tunesmith import train, tune
from tunesmith.train import (
    Checkpoint,
    DataParallelTrainer,
    Result,
    ScalingConfig,
    TrainingFailedError,
    WorkerGroupError,
)


def quiet(**kw) -> train.RunConfig:
    return train.RunConfig(verbose=0, **kw)


# -- results, return value, context ------------------------------------------------------------------
def loop_with_context(config):
    ctx = train.get_context()
    rank = ctx.get_world_rank()
    for step in range(config["steps"]):
        with tempfile.TemporaryDirectory() as d:
            info = {
                "world_rank": rank, "world_size": ctx.get_world_size(), "local_rank": ctx.get_local_rank(),
                "local_world_size": ctx.get_local_world_size(), "node_rank": ctx.get_node_rank(),
                "trial_name": ctx.get_trial_name(), "experiment_name": ctx.get_experiment_name(),
                "trial_dir": ctx.get_storage().trial_dir, "metadata": ctx.get_metadata(),
                "pid": os.getpid(),
            }
            Path(d, f"rank_{rank}.json").write_text(json.dumps(info))
            Path(d, "shared.txt").write_text(f"written by rank {rank}")
            os.makedirs(os.path.join(d, "sub"))
            Path(d, "sub", "shared.txt").write_text(f"rank {rank}")
            train.report({"step": step, "rank": rank, "loss": 10 - step}, checkpoint=Checkpoint.from_directory(d))
    # A dict is a return value, not a last result.
    return {"rank": rank, "steps": config["steps"]}


def test_fit_merges_reports_and_checkpoints_of_all_workers(tmp_path):
    trainer = DataParallelTrainer(
        loop_with_context,
        train_loop_config={"steps": 3},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), name="ctx"),
        metadata={"owner": "me"},
    )
    result = trainer.fit()
    assert isinstance(result, Result) and result.error is None
    # One result per round of reports, with rank 0's metrics.
    assert result.metrics["training_iteration"] == 3
    assert result.metrics["rank"] == 0 and result.metrics["step"] == 2
    assert list(result.metrics_dataframe["step"]) == [0, 1, 2]
    assert result.return_value == {"rank": 0, "steps": 3}
    # Every round's checkpoints are merged into one directory; rank 0 wins same-named files.
    names = sorted(os.listdir(result.path))
    assert [n for n in names if n.startswith("checkpoint_")] == [
        "checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    assert not any(n.startswith(".") for n in names)  # the staging area is gone
    ckpt = result.checkpoint
    assert os.path.basename(ckpt.path) == "checkpoint_000002"
    files = sorted(os.listdir(ckpt.path))
    assert {"rank_0.json", "rank_1.json", "shared.txt", "sub"} <= set(files)
    assert Path(ckpt.path, "shared.txt").read_text() == "written by rank 0"
    assert Path(ckpt.path, "sub", "shared.txt").read_text() == "rank 0"
    assert ckpt.get_metadata() == {"owner": "me"}
    infos = [json.loads(Path(ckpt.path, f"rank_{r}.json").read_text()) for r in (0, 1)]
    for rank, info in enumerate(infos):
        assert info["world_rank"] == rank and info["local_rank"] == rank
        assert info["world_size"] == 2 and info["local_world_size"] == 2 and info["node_rank"] == 0
        assert info["trial_name"].startswith("DataParallelTrainer_")
        assert info["experiment_name"] == "ctx"
        assert info["trial_dir"] == result.path
        assert info["metadata"] == {"owner": "me"}
    assert infos[0]["pid"] != infos[1]["pid"]  # two processes
    # Ray's layout: <storage>/<name>/<Trainer>_<id>_00000_0_...
    assert os.path.dirname(result.path) == str(tmp_path / "ctx")
    assert os.path.basename(result.path).startswith("DataParallelTrainer_")


def test_result_from_path_reads_a_finished_run_back(tmp_path):
    keep_two = train.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss", checkpoint_score_order="max")
    result = DataParallelTrainer(
        loop_with_context, train_loop_config={"steps": 4}, scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), checkpoint_config=keep_two),
    ).fit()
    # CheckpointConfig decides which merged checkpoints stay: the two best by loss are listed,
    # and the latest stays on disk as the checkpoint to resume from.
    best = sorted(os.path.basename(c.path) for c, _ in result.best_checkpoints)
    assert best == ["checkpoint_000000", "checkpoint_000001"]
    on_disk = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))
    assert on_disk == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000003"]
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000003"
    assert result.get_best_checkpoint("loss", "max").path.endswith("checkpoint_000000")
    restored = Result.from_path(result.path)
    assert restored.metrics["training_iteration"] == 4 and restored.metrics["rank"] == 0
    assert restored.checkpoint.path == result.checkpoint.path
    assert sorted(c.path for c, _ in restored.best_checkpoints) == sorted(c.path for c, _ in result.best_checkpoints)
    assert list(restored.metrics_dataframe["loss"]) == [10, 9, 8, 7]
    assert restored.error is None
    assert restored.get_best_checkpoint("loss", "max").path == result.get_best_checkpoint("loss", "max").path
    # Saved with the run's state: read back too (it was None), and by a restored Tuner's results.
    assert restored.return_value == result.return_value == {"rank": 0, "steps": 4}
    experiment = os.path.dirname(result.path)
    (again,) = list(tune.Tuner.restore(experiment, trainable=DataParallelTrainer(loop_with_context)).get_results())
    assert again.return_value == {"rank": 0, "steps": 4}


# -- the seed's "Inspecting Training Results" examples --------------------------------------------------------------
def seed_train_fn(config):
    for i in range(3):
        with tempfile.TemporaryDirectory() as temp_checkpoint_dir:
            Path(temp_checkpoint_dir).joinpath("model.pt").touch()
            train.report({"loss": i}, checkpoint=train.Checkpoint.from_directory(temp_checkpoint_dir))


def seed_error_train_fn(config):
    raise RuntimeError("Simulated training error")


def test_seed_examples_of_inspecting_results_run_unchanged(tmp_path, capsys):
    import pyarrow

    trainer = DataParallelTrainer(
        seed_train_fn, scaling_config=train.ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    # __result_metrics_start__
    result = trainer.fit()
    print("Observed metrics:", result.metrics)
    # __result_dataframe_start__
    df = result.metrics_dataframe
    print("Minimum loss", min(df["loss"]))
    # __result_checkpoint_start__
    print("Last checkpoint:", result.checkpoint)
    with result.checkpoint.as_directory() as tmpdir:
        assert os.listdir(tmpdir) == ["model.pt"]
    # __result_best_checkpoint_start__
    for checkpoint, metrics in result.best_checkpoints:
        print("Loss", metrics["loss"], "checkpoint", checkpoint)
    best_checkpoint = min(result.best_checkpoints, key=lambda checkpoint: checkpoint[1]["loss"])[0]
    with best_checkpoint.as_directory() as tmpdir:
        assert os.path.basename(tmpdir) == "checkpoint_000000"
    # __result_path_start__
    result_path: str = result.path
    result_filesystem: pyarrow.fs.FileSystem = result.filesystem
    print(f"Results location (fs, path) = ({result_filesystem}, {result_path})")
    # __result_restore_start__
    restored_result = Result.from_path(result_path)
    print("Restored loss", result.metrics["loss"])
    assert restored_result.metrics["loss"] == 2
    # __result_error_start__ (the older form)
    if result.error:
        raise AssertionError("no error expected")

    out = capsys.readouterr().out
    assert "Minimum loss 0" in out and "Restored loss 2" in out
    assert out.count("Loss ") == 3 and str(tmp_path) in out

    # __result_error_start__ (the newer form)
    trainer = DataParallelTrainer(
        seed_error_train_fn, scaling_config=train.ScalingConfig(num_workers=1),
        run_config=train.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    with pytest.raises(train.TrainingFailedError) as info:
        trainer.fit()
    e = info.value
    assert isinstance(e, train.WorkerGroupError)
    assert isinstance(e.worker_failures[0], RuntimeError)
    assert str(e.worker_failures[0]) == "Simulated training error"


# -- failures -------------------------------------------------------------------------------------------------------
def rank1_raises(config):
    train.report({"x": 1})
    if train.get_context().get_world_rank() == 1:
        raise ValueError("bad batch on rank 1")
    time.sleep(60)  # rank 0 would go on: the group must be ended, not waited for
    train.report({"x": 2})


def test_a_worker_error_ends_the_group_and_fit_raises_it(tmp_path):
    start = time.time()
    with pytest.raises(WorkerGroupError) as info:
        DataParallelTrainer(
            rank1_raises, scaling_config=ScalingConfig(num_workers=2), run_config=quiet(storage_path=str(tmp_path)),
        ).fit()
    assert time.time() - start < 30
    err = info.value
    assert isinstance(err, TrainingFailedError)
    assert isinstance(err.original_error, ValueError) and err.__cause__ is err.original_error
    assert set(err.worker_failures) == {1}
    assert "rank 1" in str(err) and "bad batch on rank 1" in str(err)
    assert "in rank1_raises" in str(err)  # the worker's own traceback
    # The Tuner view of the same failure: the error is on the Result, fit() does not raise.
    grid = tune.Tuner(
        DataParallelTrainer(rank1_raises, scaling_config=ScalingConfig(num_workers=2)),
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    result = grid[0]
    assert isinstance(result.error, WorkerGroupError) and result.return_value is None
    assert result.metrics["training_iteration"] == 1
    assert "bad batch on rank 1" in Path(result.path, "error.txt").read_text()


def rank1_raises_as_rank0_returns(config):
    train.report({"x": 1})
    if train.get_context().get_world_rank() == 1:
        raise ValueError("bad batch on rank 1")
    train.report({"x": 2})  # rank 0 reports once more and returns normally


def test_the_failing_worker_is_blamed_not_a_peer_that_returned_meanwhile(tmp_path):
    for _ in range(3):  # the order in which the two ends arrive varies
        with pytest.raises(WorkerGroupError) as info:
            DataParallelTrainer(
                rank1_raises_as_rank0_returns, scaling_config=ScalingConfig(num_workers=2),
                run_config=quiet(storage_path=str(tmp_path)),
            ).fit()
        err = info.value
        assert set(err.worker_failures) == {1}, str(err)
        assert isinstance(err.original_error, ValueError) and "bad batch on rank 1" in str(err)
        assert "exited" not in str(err) and "in rank1_raises_as_rank0_returns" in str(err)


def prints_in_pieces(config):
    rank = train.get_context().get_world_rank()
    for i in range(20):
        print("rank", rank, "line", i, "of", "twenty")  # several writes per line
    train.report({"ok": 1})


def test_each_workers_lines_stay_whole_and_name_the_rank(tmp_path, capfd):
    DataParallelTrainer(prints_in_pieces, scaling_config=ScalingConfig(num_workers=2),
                        run_config=quiet(storage_path=str(tmp_path))).fit()
    lines = [line for line in capfd.readouterr().out.splitlines() if "twenty" in line]
    assert len(lines) == 40
    for line in lines:
        tag = line.split("[rank ", 1)[1].split("]", 1)[0]
        assert line.endswith(f"] rank {tag} line {line.split(' line ')[1].split(' ')[0]} of twenty"), line


def uneven_at_the_end(config):
    rank = train.get_context().get_world_rank()
    for step in range(3 if rank == 0 else 2):
        train.report({"step": step})


def rank1_reports_on(config):
    rank = train.get_context().get_world_rank()
    step = 0
    while rank == 1 or step < 2:
        train.report({"step": step})
        step += 1
        time.sleep(0.01)


@pytest.mark.parametrize("loop, expected", [
    (uneven_at_the_end, ["rank 0: 3 reports", "rank 1: 2 reports (returned)"]),
    (rank1_reports_on, ["rank 0 returned after 2 reports", "rank 0: 2 reports (returned)", "(running)"]),
])
def test_workers_that_report_a_different_number_of_times_fail_clearly(tmp_path, loop, expected):
    start = time.time()
    with pytest.raises(TrainingFailedError) as info:
        DataParallelTrainer(loop, scaling_config=ScalingConfig(num_workers=2),
                            run_config=quiet(storage_path=str(tmp_path))).fit()
    assert time.time() - start < 30  # Ray would hang here
    message = str(info.value)
    assert "different number of times" in message
    for part in expected:
        assert part in message


def checkpoints_then_dies_once(config):
    ctx = train.get_context()
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = json.loads(Path(d, "state.json").read_text())["epoch"] + 1
    for epoch in range(start, 5):
        marker = os.path.join(config["dir"], "killed")
        if epoch == 3 and ctx.get_world_rank() == 1 and not os.path.exists(marker):
            # report() is no barrier, so rank 0 may lag behind on a loaded machine: wait
            # until it has reported the checkpoint of epoch 2, then die.
            deadline = time.time() + 120
            while not os.path.exists(os.path.join(config["dir"], "rank0_reported_2")) and time.time() < deadline:
                time.sleep(0.01)
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        with tempfile.TemporaryDirectory() as d:
            Path(d, "state.json").write_text(json.dumps({"epoch": epoch}))
            train.report({"epoch": epoch, "resumed_at": start, "worker_pid": os.getpid()},
                         checkpoint=Checkpoint.from_directory(d) if ctx.get_world_rank() == 0 else None)
        if epoch == 2 and ctx.get_world_rank() == 0:
            Path(config["dir"], "rank0_reported_2").touch()


def test_a_killed_worker_restarts_the_group_from_the_latest_checkpoint(tmp_path):
    result = DataParallelTrainer(
        checkpoints_then_dies_once, train_loop_config={"dir": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), failure_config=train.FailureConfig(max_failures=1)),
    ).fit()
    df = result.metrics_dataframe
    # The second group resumed from the latest checkpoint the first one completed (the ranks do
    # not run in lock-step, so that may be any epoch before 3): every epoch appears once.
    assert list(df["epoch"]) == [0, 1, 2, 3, 4]
    resumed = int(df["resumed_at"].iloc[-1])
    assert 1 <= resumed <= 3
    assert list(df["resumed_at"]) == [0] * resumed + [resumed] * (5 - resumed)
    assert list(df["training_iteration"]) == [1, 2, 3, 4, 5]  # the count goes on
    assert df["worker_pid"].iloc[resumed - 1] != df["worker_pid"].iloc[resumed]  # a new group
    assert result.metrics["training_iteration"] == 5
    assert "rank 1" in Path(result.path, "error.txt").read_text()
    assert "killed by signal 9" in Path(result.path, "error.txt").read_text()


def test_a_killed_worker_without_retries_fails_the_run(tmp_path):
    with pytest.raises(WorkerGroupError, match="killed by signal 9"):
        DataParallelTrainer(
            checkpoints_then_dies_once, train_loop_config={"dir": str(tmp_path)},
            scaling_config=ScalingConfig(num_workers=2), run_config=quiet(storage_path=str(tmp_path)),
        ).fit()


# -- resuming, stopping -------------------------------------------------------------------------------------------------
def counts_from_checkpoint(config):
    checkpoint = train.get_checkpoint()
    start = 0
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = int(Path(d, "n").read_text()) + 1
    for n in range(start, start + 2):
        with tempfile.TemporaryDirectory() as d:
            Path(d, "n").write_text(str(n))
            train.report({"n": n, "had_checkpoint": checkpoint is not None}, checkpoint=Checkpoint.from_directory(d))


def test_resume_from_checkpoint_starts_every_rank_from_it(tmp_path):
    first = DataParallelTrainer(counts_from_checkpoint, scaling_config=ScalingConfig(num_workers=2),
                                run_config=quiet(storage_path=str(tmp_path))).fit()
    assert first.metrics["n"] == 1 and first.metrics["training_iteration"] == 2
    second = DataParallelTrainer(
        counts_from_checkpoint, scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path)), resume_from_checkpoint=first.checkpoint,
    ).fit()
    assert list(second.metrics_dataframe["n"]) == [2, 3]
    assert second.metrics["had_checkpoint"] is True
    # A new run: its iterations count from 1 (as on Ray), so stop criteria see its own progress.
    assert list(second.metrics_dataframe["training_iteration"]) == [1, 2]
    # Rank 1 got the checkpoint too: its files were merged from the same starting point.
    assert Path(second.checkpoint.path, "n").read_text() == "3"


def reports_forever():  # no config argument
    step = 0
    while True:
        train.report({"step": step})
        step += 1


def test_stop_criteria_end_the_group(tmp_path):
    result = DataParallelTrainer(
        reports_forever, scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), stop={"training_iteration": 4}),
    ).fit()
    assert result.metrics["training_iteration"] == 4 and result.error is None


# -- datasets --------------------------------------------------------------------------------------------------------
def sums_its_shard(config):
    shard = train.get_dataset_shard("train")
    items = list(shard)
    train.report({"items": items, "again": list(shard) == items, "rank": train.get_context().get_world_rank()})
    return items


def test_each_worker_gets_its_share_of_the_datasets(tmp_path):
    grid = tune.Tuner(
        DataParallelTrainer(sums_its_shard, datasets={"train": list(range(10))}),
        # The scaling config as a dict of its fields can hold search spaces.
        param_space={"scaling_config": {"num_workers": tune.grid_search([1, 2])}},
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    by_workers = {r.config["scaling_config"]["num_workers"]: r for r in grid}
    assert by_workers[1].metrics["items"] == list(range(10))
    result = by_workers[2]
    assert result.metrics["items"] == [0, 2, 4, 6, 8] and result.metrics["again"] is True
    assert result.return_value == [0, 2, 4, 6, 8]


def shards_of_each(config):
    shards = {name: list(train.get_dataset_shard(name)) for name in ("train", "val")}
    Path(config["out"], f"{train.get_context().get_world_rank()}.json").write_text(json.dumps(shards))
    train.report({"done": 1})


def test_shards_are_equal_and_a_data_config_keeps_a_dataset_whole(tmp_path):
    """10 rows among 3 workers gave shares of 4, 3 and 3: DDP steps of one rank paired with another rank's next
    epoch, then the group failed. As Ray's DataConfig (equal=True), each worker gets 3 rows; a dataset left out
    of datasets_to_split reaches every worker whole."""
    from tunesmith.train import DataConfig

    tunesmith.init(num_cpus=3)
    result = DataParallelTrainer(
        shards_of_each, train_loop_config={"out": str(tmp_path)},
        datasets={"train": list(range(10)), "val": ["a", "b"]},
        dataset_config=DataConfig(datasets_to_split=["train"]),
        scaling_config=ScalingConfig(num_workers=3), run_config=quiet(storage_path=str(tmp_path), name="dc"),
    ).fit()
    assert result.error is None
    shards = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(3)]
    assert [s["train"] for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert [s["val"] for s in shards] == [["a", "b"]] * 3
    with pytest.raises(TypeError, match="datasets_to_split"):
        DataConfig(datasets_to_split="train")


def test_a_ray_data_dataset_is_refused_up_front():
    """A ray.data Dataset failed inside the workers with "Ray has not been started yet"."""
    class Dataset:  # stands in for ray.data.Dataset (its module is what is checked)
        pass

    Dataset.__module__ = "ray.data.dataset"
    with pytest.raises(TypeError, match="'train' is a Ray Data Dataset.*to_pandas"):
        DataParallelTrainer(sums_its_shard, datasets={"train": Dataset()})


def test_a_path_or_a_dict_of_columns_is_refused_up_front():
    """A path was split character by character, a dict of columns into a view that failed on its first
    item; Ray refuses both ("not a ray.data.Dataset")."""
    with pytest.raises(TypeError, match=r"'train' is a path \(str\).*pandas.read_csv"):
        DataParallelTrainer(sums_its_shard, datasets={"train": "/data/train.csv"})
    with pytest.raises(TypeError, match=r"'train' is a dict.*DataFrame"):
        DataParallelTrainer(sums_its_shard, datasets={"train": {"x": [1, 2], "y": [0, 1]}})


# -- scaling -----------------------------------------------------------------------------------------------------------
def records_its_span(config):
    start = time.time()
    time.sleep(0.3)
    train.report({"start": start, "end": time.time(), "world_size": train.get_context().get_world_size()})


def test_tuner_runs_each_trial_as_a_whole_group(tmp_path):
    tunesmith.init(num_cpus=3)
    grid = tune.Tuner(
        DataParallelTrainer(records_its_span, scaling_config=ScalingConfig(num_workers=1)),
        param_space={
            "scaling_config": ScalingConfig(num_workers=2),
            "train_loop_config": {"i": tune.grid_search([0, 1, 2])},
        },
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    assert grid.num_errors == 0 and len(grid) == 3
    assert all(r.metrics["world_size"] == 2 for r in grid)
    # 2 + 2 CPUs never fit in 3: the trials ran one after another, never with part of a group.
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in grid)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end


def test_the_number_of_workers_can_be_tuned_in_the_param_space(tmp_path):
    tunesmith.init(num_cpus=3)
    grid = tune.Tuner(
        DataParallelTrainer(records_its_span, scaling_config=ScalingConfig(num_workers=1)),
        param_space={"scaling_config": ScalingConfig(num_workers=tune.grid_search([1, 2]))},
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    assert grid.num_errors == 0
    assert sorted(r.metrics["world_size"] for r in grid) == [1, 2]
    assert sorted(r.config["scaling_config"]["num_workers"] for r in grid) == [1, 2]
    # Outside a param space a search space is no ScalingConfig a trainer can run with.
    with pytest.raises(ValueError, match="param_space"):
        DataParallelTrainer(records_its_span, scaling_config=ScalingConfig(num_workers=tune.choice([1, 2])))


def test_resources_per_worker_are_all_a_worker_asks_for(tmp_path):
    # As on Ray: a resources_per_worker dict implies no CPU, so three workers of a custom
    # resource run on a machine with two CPUs.
    tunesmith.init(num_cpus=2, resources={"custom": 4})
    result = DataParallelTrainer(
        records_its_span, scaling_config=ScalingConfig(num_workers=3, resources_per_worker={"custom": 1}),
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    assert result.error is None and result.metrics["world_size"] == 3
    assert ScalingConfig(num_workers=2, use_gpu=True).total_resources == {"GPU": 2.0}


def test_a_group_the_machine_can_never_hold_is_an_error_before_anything_starts(tmp_path):
    tunesmith.init(num_cpus=2)
    trainer = DataParallelTrainer(records_its_span, scaling_config=ScalingConfig(num_workers=3),
                                  run_config=quiet(storage_path=str(tmp_path)))
    with pytest.raises(ValueError, match="num_workers=3"):
        trainer.fit()
    trainer = DataParallelTrainer(records_its_span, scaling_config=ScalingConfig(num_workers=1, use_gpu=True),
                                  run_config=quiet(storage_path=str(tmp_path)))
    with pytest.raises(ValueError, match="0 GPUs"):
        trainer.fit()
    assert not os.path.exists(tmp_path) or os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="use_gpu is False"):
        ScalingConfig(num_workers=2, resources_per_worker={"GPU": 1})
    with pytest.raises(ValueError, match="STRICT_SPREAD"):
        ScalingConfig(num_workers=2, placement_strategy="STRICT_SPREAD")


def test_declared_gpus_are_given_one_per_worker(tmp_path):
    tunesmith.init(num_cpus=2, num_gpus=2)
    result = DataParallelTrainer(
        loop_with_gpu_files, scaling_config=ScalingConfig(num_workers=2, use_gpu=True),
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    seen = {r: Path(result.checkpoint.path, f"gpus_{r}").read_text() for r in (0, 1)}
    assert seen == {0: "0", 1: "1"}
    result = DataParallelTrainer(
        loop_with_gpu_files, scaling_config=ScalingConfig(num_workers=1),
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    assert Path(result.checkpoint.path, "gpus_0").read_text() == ""


def loop_with_gpu_files(config):
    rank = train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory() as d:
        Path(d, f"gpus_{rank}").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
        train.report({"x": 1}, checkpoint=Checkpoint.from_directory(d))


# -- bad input, worker start methods ------------------------------------------------------------------------------------------
def two_args(config, extra):
    pass


def test_bad_trainer_input_is_rejected_with_the_field_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="no argument or one"):
        DataParallelTrainer(two_args)
    with pytest.raises(TypeError, match="scaling_config"):
        DataParallelTrainer(records_its_span, scaling_config={"num_workers": 2})
    with pytest.raises(TypeError, match="datasets"):
        DataParallelTrainer(records_its_span, datasets=[1, 2])
    with pytest.raises(ValueError, match="train_loop_config"):
        tune.Tuner(DataParallelTrainer(records_its_span), param_space={"lr": 0.1},
                   run_config=quiet(storage_path=str(tmp_path))).fit()
    with pytest.raises(ValueError, match="with_resources"):
        tune.with_resources(DataParallelTrainer(records_its_span), {"cpu": 2})


def test_workers_started_as_fresh_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_TRAIN_WORKER_START", "spawn")
    result = DataParallelTrainer(
        loop_with_context, train_loop_config={"steps": 2}, scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path)),
    ).fit()
    assert result.metrics["training_iteration"] == 2 and result.return_value == {"rank": 0, "steps": 2}
    info = json.loads(Path(result.checkpoint.path, "rank_1.json").read_text())
    assert info["world_rank"] == 1


# -- schedulers pause and resume trainer trials ----------------------------------------------------------------------
def climbs_by_lr(config):
    value = 0.0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            value = float(Path(d, "value").read_text())
    while True:
        value += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            Path(d, "value").write_text(repr(value))
            train.report({"value": value, "restored": checkpoint is not None}, checkpoint=Checkpoint.from_directory(d))


def test_pbt_pauses_trainer_trials_and_clones_the_better_one(tmp_path):
    import random

    from tunesmith.tune.schedulers import PopulationBasedTraining

    random.seed(0)
    tunesmith.init(num_cpus=2)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=2, synch=True, quantile_fraction=0.5,
        resample_probability=0.0, hyperparam_mutations={"train_loop_config": {"lr": [0.01, 0.02, 1.0, 2.0]}},
    )
    grid = tune.Tuner(
        DataParallelTrainer(climbs_by_lr, scaling_config=ScalingConfig(num_workers=1)),
        param_space={"train_loop_config": {"lr": tune.grid_search([0.01, 1.0])}},
        tune_config=tune.TuneConfig(metric="value", mode="max", scheduler=pbt),
        run_config=quiet(storage_path=str(tmp_path), stop={"training_iteration": 6}),
    ).fit()
    assert grid.num_errors == 0
    results = sorted(grid, key=lambda r: r.metrics["value"])
    low = results[0]
    df = low.metrics_dataframe
    assert list(df["training_iteration"]) == [1, 2, 3, 4, 5, 6]
    # The slow trial was paused, restarted from the fast trial's checkpoint, and went on from there.
    assert df["restored"].iloc[-1]
    assert low.metrics["value"] > 1.0 > 6 * 0.01


# -- report is not a barrier; stalls and orphans ---------------------------------------------------------------------------
def rank0_runs_ahead(config):
    rank = train.get_context().get_world_rank()
    if rank == 1:
        time.sleep(1.0)
    for step in range(5):
        train.report({"step": step, "at": time.time()})


def test_report_is_not_a_barrier(tmp_path):
    result = DataParallelTrainer(rank0_runs_ahead, scaling_config=ScalingConfig(num_workers=2),
                                 run_config=quiet(storage_path=str(tmp_path))).fit()
    df = result.metrics_dataframe
    assert list(df["step"]) == [0, 1, 2, 3, 4]
    # Rank 0 made its five reports without waiting for rank 1, which started a second later.
    assert df["at"].iloc[-1] - df["at"].iloc[0] < 0.5
    assert df["time_total_s"].iloc[0] > 0.9  # iteration 1 was recorded once rank 1 reported too


def rank1_stalls(config):
    if train.get_context().get_world_rank() == 0:
        train.report({"x": 1})
        return
    time.sleep(120)


def test_a_worker_that_stalls_after_another_returned_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_TRAIN_UNEVEN_REPORT_TIMEOUT_S", "1")
    start = time.time()
    with pytest.raises(TrainingFailedError, match="made no report for 1 s") as info:
        DataParallelTrainer(rank1_stalls, scaling_config=ScalingConfig(num_workers=2),
                            run_config=quiet(storage_path=str(tmp_path))).fit()
    assert time.time() - start < 30
    assert "rank 0: 1 reports (returned), rank 1: 0 reports (running)" in str(info.value)


def kills_its_supervisor(config):
    rank = train.get_context().get_world_rank()
    Path(config["dir"], f"worker_{rank}").write_text(str(os.getpid()))
    if rank == 1:
        while not os.path.exists(os.path.join(config["dir"], "worker_0")):
            time.sleep(0.01)
        os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(120)


def test_workers_die_with_their_supervising_process(tmp_path):
    import psutil

    with pytest.raises(TrainingFailedError, match="killed by signal 9"):
        DataParallelTrainer(kills_its_supervisor, train_loop_config={"dir": str(tmp_path)},
                            scaling_config=ScalingConfig(num_workers=2),
                            run_config=quiet(storage_path=str(tmp_path))).fit()
    for rank in (0, 1):
        pid = int(Path(tmp_path, f"worker_{rank}").read_text())
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"worker {rank} (pid {pid}) outlived its supervising process")


def _checkpoints_the_working_directory(config):
    rank = train.get_context().get_world_rank()
    for step in range(2):
        Path(f"model_rank{rank}.txt").write_text(f"step {step}")  # the working directory is the trial's
        train.report({"step": step}, checkpoint=Checkpoint.from_directory("."))


def test_a_checkpoint_of_the_working_directory_holds_what_the_workers_wrote(tmp_path):
    # As on Ray (whose trials run in a directory of their own): the checkpoint holds the workers'
    # files, not tunesmith's results, staging area or earlier checkpoints.
    result = DataParallelTrainer(_checkpoints_the_working_directory, scaling_config=ScalingConfig(num_workers=2),
                                 run_config=quiet(storage_path=str(tmp_path))).fit()
    assert sorted(os.listdir(result.checkpoint.path)) == ["model_rank0.txt", "model_rank1.txt"]
    assert Path(result.checkpoint.path, "model_rank0.txt").read_text() == "step 1"


def _function_checkpoints_the_working_directory(config):
    for step in range(3):
        Path("model.txt").write_text(f"step {step}")
        Path("weights.tmp").write_text(f"step {step}")  # a user's file, not one of tunesmith's temporaries
        train.report({"step": step}, checkpoint=Checkpoint.from_directory("."))


def test_a_function_trials_checkpoint_of_its_working_directory_does_not_nest_earlier_ones(tmp_path):
    grid = tune.Tuner(_function_checkpoints_the_working_directory,
                      run_config=quiet(storage_path=str(tmp_path))).fit()
    (result,) = grid
    checkpoints = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))
    assert len(checkpoints) == 3
    for name in checkpoints:
        assert sorted(os.listdir(os.path.join(result.path, name))) == ["model.txt", "weights.tmp"]


def _reports_its_loop_config(config):
    train.report({"seen": json.dumps(config, sort_keys=True)})


def test_a_tuned_nested_value_keeps_the_trainers_other_nested_values(tmp_path):
    trainer = DataParallelTrainer(_reports_its_loop_config,
                                  train_loop_config={"opt": {"lr": 1.0, "momentum": 0.9}, "epochs": 3},
                                  scaling_config=ScalingConfig(num_workers=1), run_config=quiet())
    grid = tune.Tuner(trainer, param_space={"train_loop_config": {"opt": {"lr": tune.grid_search([0.1])}}},
                      run_config=quiet(storage_path=str(tmp_path))).fit()
    assert json.loads(grid[0].metrics["seen"]) == {"opt": {"lr": 0.1, "momentum": 0.9}, "epochs": 3}


# -- Trainer.restore / can_restore (Ray Train's experiment-level restore) -------------------------------------
def epochs_failing_once(config):
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = json.loads(Path(d, "epoch.json").read_text())["epoch"] + 1
    data = train.get_dataset_shard("train")
    for epoch in range(start, 5):
        if epoch == 3 and os.path.exists(config["flag"]):
            if train.get_context().get_world_rank() == 0:
                os.remove(config["flag"])
            raise RuntimeError("node lost")
        with tempfile.TemporaryDirectory() as d:
            Path(d, "epoch.json").write_text(json.dumps({"epoch": epoch}))
            train.report({"epoch": epoch, "rows": len(data)}, checkpoint=Checkpoint.from_directory(d))


def test_a_failed_trainer_run_continues_with_restore(tmp_path):
    flag = tmp_path / "flag"
    flag.touch()
    data = {"train": list(range(8))}
    trainer = DataParallelTrainer(
        epochs_failing_once, train_loop_config={"flag": str(flag)}, datasets=data,
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(name="run", storage_path=str(tmp_path)),
    )
    with pytest.raises(TrainingFailedError, match="node lost"):
        trainer.fit()
    path = tmp_path / "run"
    assert DataParallelTrainer.can_restore(path) and not DataParallelTrainer.can_restore(tmp_path)
    with pytest.raises(ValueError, match=r"datasets \['train'\]"):
        DataParallelTrainer.restore(str(path))
    with pytest.raises(ValueError, match="No trainer run to restore"):
        DataParallelTrainer.restore(str(tmp_path))

    result = DataParallelTrainer.restore(str(path), datasets=data).fit()
    assert result.error is None
    # On from the epoch-2 checkpoint: epochs 3 and 4, iterations counted on.
    assert [(row["epoch"], row["training_iteration"]) for _, row in result.metrics_dataframe.iterrows()] == [
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert result.metrics["rows"] == 4 and result.path.startswith(str(path))


# -- the note about ranks that returned early -------------------------------------------------------------
def rank_1_fails_after_rank_0(config):
    rank = train.get_context().get_world_rank()
    marker = os.path.join(config["dir"], "rank1_failing")
    train.report({"i": 0})
    train.report({"i": 1})
    if rank == 1:
        if config["rank_0_returns_first"]:
            deadline = time.time() + 120
            while not os.path.exists(os.path.join(config["dir"], "rank0_done")) and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)  # rank 0's return reaches the supervisor first
        Path(marker).touch()
        raise ValueError("rank 1 fails")
    if not config["rank_0_returns_first"]:
        deadline = time.time() + 120
        while not os.path.exists(marker) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # rank 1 has raised by now
        train.report({"i": 2})  # a third report, after rank 1 failed
    Path(config["dir"], "rank0_done").touch()


@pytest.mark.parametrize("rank_0_returns_first", [True, False])
def test_failure_names_a_rank_as_returned_only_if_it_returned_before_the_failure(tmp_path, rank_0_returns_first):
    trainer = DataParallelTrainer(
        rank_1_fails_after_rank_0,
        train_loop_config={"dir": str(tmp_path), "rank_0_returns_first": rank_0_returns_first},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), name="note"),
    )
    with pytest.raises(TrainingFailedError) as info:
        trainer.fit()
    message = str(info.value)
    assert "rank 1 fails" in message
    if rank_0_returns_first:
        assert "rank 0 had returned (after 2 reports)" in message
    else:
        # Rank 0 returned while the failure was being handled: it is not the cause, and not named as one.
        assert "had returned" not in message


def reports_its_storage(config):
    storage = train.get_context().get_storage()
    train.report({"trial_fs_path": storage.trial_fs_path, "experiment_fs_path": storage.experiment_fs_path,
                  "storage_path": storage.storage_path, "trial_dir_name": storage.trial_dir_name,
                  "experiment_dir_name": storage.experiment_dir_name,
                  "working_dir": storage.trial_working_directory,
                  "fs": type(storage.storage_filesystem).__name__})


def test_get_storage_in_a_worker_has_rays_storage_fields(tmp_path):
    result = DataParallelTrainer(
        reports_its_storage, scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), name="st"),
    ).fit()
    m = result.metrics
    assert m["trial_fs_path"] == result.path == m["working_dir"]
    assert m["experiment_fs_path"] == str(tmp_path / "st") and m["storage_path"] == str(tmp_path)
    assert m["trial_dir_name"] == os.path.basename(result.path) and m["experiment_dir_name"] == "st"
    assert m["fs"] == "LocalFileSystem"


# -- get_checkpoint after a report ---------------------------------------------------------------------
def reads_back_its_checkpoints(config):
    rank = train.get_context().get_world_rank()
    seen = []
    waited_out = 0
    for step in range(3):
        with tempfile.TemporaryDirectory() as d:
            Path(d, f"rank{rank}.txt").write_text(str(step))
            checkpoint = Checkpoint.from_directory(d) if rank == 0 or config["every_rank"] else None
            train.report({"step": step}, checkpoint=checkpoint)
        # The temporary directory is gone: get_checkpoint() is this worker's persisted copy (as on Ray).
        latest = train.get_checkpoint()
        if latest is None:
            seen.append(None)
        else:
            with latest.as_directory() as path:
                seen.append(Path(path, f"rank{rank}.txt").read_text())
        if config["barrier"]:
            # A collective call after get_checkpoint(): a get_checkpoint() that waited for the other
            # ranks' reports of the round would never return here.
            Path(config["dir"], f"r{rank}_{step}").touch()
            deadline = time.time() + 60
            while not Path(config["dir"], f"r{1 - rank}_{step}").exists() and time.time() < deadline:
                time.sleep(0.01)
            waited_out += time.time() >= deadline
    return {"rank": rank, "seen": seen, "waited_out": waited_out}


@pytest.mark.parametrize("every_rank", [False, True])
def test_get_checkpoint_after_a_report_is_that_reports_checkpoint(tmp_path, every_rank):
    result = DataParallelTrainer(
        reads_back_its_checkpoints,
        train_loop_config={"every_rank": every_rank, "barrier": False, "dir": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), name="readback"),
    ).fit()
    assert result.error is None
    assert result.return_value["seen"] == ["0", "1", "2"]
    with result.checkpoint.as_directory() as d:
        assert sorted(os.listdir(d)) == (["rank0.txt", "rank1.txt"] if every_rank else ["rank0.txt"])
        assert Path(d, "rank0.txt").read_text() == "2"
    # Merged checkpoints of every round, and no staged copies left behind.
    trial_dir = Path(result.path)
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == [f"checkpoint_00000{i}" for i in range(3)]
    assert not (trial_dir / ".group_staging").exists()


def test_get_checkpoint_right_after_a_report_is_no_barrier(tmp_path):
    """Rank 1 reports only after a collective call that rank 0 reaches after get_checkpoint()."""
    result = DataParallelTrainer(
        reads_back_its_checkpoints,
        train_loop_config={"every_rank": False, "barrier": True, "dir": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=quiet(storage_path=str(tmp_path), name="barrier"),
    ).fit()
    assert result.error is None and result.return_value["seen"] == ["0", "1", "2"]
    assert result.return_value["waited_out"] == 0


def reports_its_tag(config):
    if config["tag"] == "old":
        raise RuntimeError("the old value fails")
    train.report({"tag": config["tag"]})


def test_tuner_restore_takes_the_train_loop_config_of_the_trainer_it_is_given(tmp_path):
    """A trainer's train_loop_config was copied into each trial's config, so Tuner.restore with a new
    trainer still ran the old values (Ray merges the trainer's config in when the trial runs)."""
    def trainer(tag):
        return DataParallelTrainer(reports_its_tag, train_loop_config={"tag": tag},
                                   scaling_config=ScalingConfig(num_workers=1))

    first = tune.Tuner(trainer("old"), run_config=quiet(name="exp", storage_path=str(tmp_path))).fit()
    assert first.num_errors == 1 and first[0].config == {}
    (result,) = tune.Tuner.restore(str(tmp_path / "exp"), trainer("new"), restart_errored=True).fit()
    assert result.error is None and result.metrics["tag"] == "new"


def test_tuner_refuses_a_trainer_class():
    with pytest.raises(TypeError, match="pass a trainer instance"):
        tune.Tuner(DataParallelTrainer)


def test_a_trial_of_a_trainer_that_can_never_fit_names_its_scaling_config(tmp_path):
    """The error told the user to lower tune.with_resources, which a trainer refuses."""
    with pytest.raises(ValueError, match=r"Lower the request \(the trainer's ScalingConfig: num_workers"):
        tune.Tuner(DataParallelTrainer(sums_its_shard, datasets={"train": [1]}),
                   param_space={"scaling_config": ScalingConfig(num_workers=tune.grid_search([1, 64]))},
                   run_config=quiet(storage_path=str(tmp_path))).fit()


def _sets_its_own_metadata_then_exits(config):
    import sys

    for step in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            checkpoint = Checkpoint.from_directory(d)
            checkpoint.set_metadata({"step": step})
            train.report({"step": step}, checkpoint=checkpoint)
    if config["ends_with"] == "exit":
        sys.exit(0)  # as a script written for torchrun ends
    raise StopIteration


@pytest.mark.parametrize("ends_with", ["exit", "stop_iteration"])
def test_a_training_function_may_end_with_sys_exit_0_and_its_checkpoint_metadata_wins(tmp_path, ends_with):
    """As on Ray: sys.exit(0) and StopIteration end a training function as a return does (they failed the run
    and lost what it reported), and metadata the function set on its checkpoint is kept over the trainer's."""
    trainer = DataParallelTrainer(_sets_its_own_metadata_then_exits, train_loop_config={"ends_with": ends_with},
                                  scaling_config=ScalingConfig(num_workers=2),
                                  metadata={"step": 0, "owner": "me"},
                                  run_config=train.RunConfig(storage_path=str(tmp_path), verbose=0))
    result = trainer.fit()
    assert result.error is None and result.metrics["step"] == 2
    assert result.checkpoint.get_metadata() == {"step": 2, "owner": "me"}


def _exits_after_two_reports(config):
    import sys

    tune.report({"step": 1})
    tune.report({"step": 2})
    sys.exit(config["code"])


def test_a_tune_function_ending_with_sys_exit_is_done_or_failed_by_its_status(tmp_path):
    grid = tune.Tuner(_exits_after_two_reports, param_space={"code": tune.grid_search([0, None, 3])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    by_code = {r.config["code"]: r for r in grid}
    assert by_code[0].error is None and by_code[None].error is None and by_code[0].metrics["step"] == 2
    assert by_code[3].error is not None and "SystemExit: 3" in str(by_code[3].error)
