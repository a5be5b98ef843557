"""Reported checkpoint directories holding symbolic links and empty folders, on local and remote storage."""
from __future__ import annotations

import os
import tempfile

import pytest

from tunesmith import train, tune
from tunesmith.train import Checkpoint, DataParallelTrainer, ScalingConfig


def _subtree(root):
    import pyarrow.fs

    os.makedirs(root, exist_ok=True)
    return pyarrow.fs.SubTreeFileSystem(str(root), pyarrow.fs.LocalFileSystem())


def _run_config(tmp_path, remote: bool, name: str) -> tune.RunConfig:
    if remote:
        return tune.RunConfig(storage_path="store", storage_filesystem=_subtree(tmp_path / "bucket"),
                              name=name, verbose=0)
    return tune.RunConfig(storage_path=str(tmp_path / "local"), name=name, verbose=0)


def _files(checkpoint: Checkpoint) -> dict[str, str]:
    """What a user finds in the checkpoint: each file's text, and each folder, by relative path."""
    out = {}
    with checkpoint.as_directory() as path:
        for root, dirs, files in os.walk(path):
            rel = os.path.relpath(root, path)
            for name in files:
                full = os.path.join(root, name)
                assert not os.path.islink(full), f"{name} is still a link"
                with open(full) as f:
                    out[os.path.normpath(os.path.join(rel, name))] = f.read()
            for name in dirs:
                out[os.path.normpath(os.path.join(rel, name)) + "/"] = ""
    return out


def _links_and_dangling(config):
    elsewhere = config["elsewhere"]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "model.pt"), "w") as f:
            f.write("weights")
        os.symlink(os.path.join(d, "model.pt"), os.path.join(d, "latest.pt"))  # into the temporary folder
        os.symlink(os.path.join(d, "gone.pt"), os.path.join(d, "broken.pt"))  # a link to nothing
        os.symlink(elsewhere, os.path.join(d, "shared"))  # a folder kept elsewhere
        os.mkdir(os.path.join(d, "logs"))  # an empty folder
        train.report({"step": 1}, checkpoint=Checkpoint.from_directory(d))
    train.report({"step": 2})


@pytest.mark.parametrize("remote", [False, True], ids=["local", "remote"])
def test_a_checkpoint_keeps_what_its_links_point_to(tmp_path, remote):
    """A link to nothing failed the trial (its metrics lost); on remote storage the files of a linked
    folder and empty folders were silently left out."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "vocab.txt").write_text("words")
    grid = tune.Tuner(_links_and_dangling, param_space={"elsewhere": str(elsewhere)},
                      run_config=_run_config(tmp_path, remote, "links")).fit()
    (result,) = list(grid)
    assert result.error is None
    assert result.metrics["step"] == 2
    assert _files(result.checkpoint) == {
        "model.pt": "weights", "latest.pt": "weights", "shared/": "", os.path.join("shared", "vocab.txt"): "words",
        "logs/": "",
    }
    if not remote:
        assert not [n for n in os.listdir(result.path) if n.endswith(".tmp")]


def _ranks_link_into_their_temp_dirs(config):
    rank = train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, f"model_{rank}.txt"), "w") as f:
            f.write(f"rank {rank}")
        os.symlink(os.path.join(d, f"model_{rank}.txt"), os.path.join(d, f"latest_{rank}.txt"))
        train.report({"rank": rank}, checkpoint=Checkpoint.from_directory(d))


@pytest.mark.parametrize("remote", [False, True], ids=["local", "remote"])
def test_a_trainers_checkpoint_holds_files_not_links_into_worker_temp_dirs(tmp_path, remote):
    """Workers' links were stored as links into their deleted temporary folders: a broken checkpoint on
    local storage, and a failed run (FileNotFoundError while uploading) on remote storage."""
    run_config = _run_config(tmp_path, remote, "trainer")
    result = DataParallelTrainer(_ranks_link_into_their_temp_dirs, scaling_config=ScalingConfig(num_workers=2),
                                 run_config=train.RunConfig(**{k: getattr(run_config, k) for k in (
                                     "storage_path", "storage_filesystem", "name", "verbose")})).fit()
    assert result.error is None
    assert _files(result.checkpoint) == {"model_0.txt": "rank 0", "latest_0.txt": "rank 0",
                                         "model_1.txt": "rank 1", "latest_1.txt": "rank 1"}


class _Unsendable:
    def __reduce__(self):
        raise TypeError("cannot pickle this metric")


def _catches_a_failed_report(config):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.txt"), "w") as f:
            f.write("first")
        train.report({"v": 1}, checkpoint=Checkpoint.from_directory(d))
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.txt"), "w") as f:
            f.write("never reported")
        try:
            train.report({"v": _Unsendable()}, checkpoint=Checkpoint.from_directory(d))
        except TypeError:
            pass
    seen = train.get_checkpoint()
    with seen.as_directory() as path, open(os.path.join(path, "state.txt")) as f:
        after_failure = f.read()
    train.report({"v": 3, "after_failure": after_failure})


def test_a_report_that_cannot_be_sent_leaves_no_gap_and_no_stray_checkpoint(tmp_path):
    """A report whose metrics could not be pickled (the error caught by the trial) used up an iteration
    number and stored a checkpoint the driver never heard of, which get_checkpoint() then returned."""
    grid = tune.Tuner(_catches_a_failed_report, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="unsent", verbose=0)).fit()
    (result,) = list(grid)
    assert result.error is None
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 2]
    assert result.metrics["after_failure"] == "first"
    assert sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_")) == ["checkpoint_000000"]


class _SavesThroughLinks(tune.Trainable):
    """Rewrites a scratch file each step and saves a link to it; deletes or rewrites the directory it saved
    last time (a "keep my latest local copy only" habit); dies once while saving its second checkpoint."""

    def setup(self, config):
        self.i = 0
        self.scratch = tempfile.mkdtemp()
        self.previous = None

    def step(self):
        self.i += 1
        with open(os.path.join(self.scratch, "weights.bin"), "w") as f:
            f.write(f"weights@{self.i}")
        return {"score": self.i}

    def save_checkpoint(self, checkpoint_dir):
        os.symlink(os.path.join(self.scratch, "weights.bin"), os.path.join(checkpoint_dir, "weights.bin"))
        with open(os.path.join(checkpoint_dir, "step.txt"), "w") as f:
            f.write(str(self.i))
        if self.i == 2 and not os.path.exists(self.config["died"]):
            open(os.path.join(checkpoint_dir, "partial.tmp"), "w").close()
            open(self.config["died"], "w").close()
            os._exit(1)
        if self.previous is not None and os.path.isdir(self.previous):
            if self.config["then"] == "delete":
                import shutil

                shutil.rmtree(self.previous)
            else:
                with open(os.path.join(self.previous, "step.txt"), "w") as f:
                    f.write("overwritten")
        self.previous = checkpoint_dir
        return os.path.realpath(checkpoint_dir)  # the same directory by its resolved name

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "step.txt")) as f:
            self.i = int(f.read())

    def cleanup(self):
        import shutil

        shutil.rmtree(self.scratch, ignore_errors=True)


@pytest.mark.parametrize("then", ["delete", "overwrite"])
def test_a_class_trainables_checkpoints_are_what_it_saved_at_the_time(tmp_path, then):
    """save_checkpoint() wrote into the stored directory itself: its links stayed links (every checkpoint
    read the latest weights, then nothing), a save that died left its files in the next one, and deleting
    or rewriting that directory later destroyed the stored checkpoint. Storage is reached through a link."""
    os.symlink(tmp_path, tmp_path.parent / f"{tmp_path.name}-link")
    grid = tune.Tuner(_SavesThroughLinks, param_space={"died": str(tmp_path / "died"), "then": then},
                      run_config=tune.RunConfig(
                          storage_path=str(tmp_path.parent / f"{tmp_path.name}-link"), verbose=0,
                          stop={"training_iteration": 4}, failure_config=tune.FailureConfig(max_failures=1),
                          checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()
    result = grid[0]
    assert result.error is None and os.path.exists(tmp_path / "died")
    stored = [_files(checkpoint) for checkpoint, _ in result.best_checkpoints]
    assert [(f["weights.bin"], f["step.txt"]) for f in stored] == [
        ("weights@1", "1"), ("weights@2", "2"), ("weights@3", "3"), ("weights@4", "4")]
    assert all(sorted(f) == [".tune_metadata", "step.txt", "weights.bin"] for f in stored), stored
