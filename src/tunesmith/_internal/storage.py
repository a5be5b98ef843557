"""Where an experiment's files go: a local directory or any ``pyarrow.fs`` filesystem."""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

DEFAULT_STORAGE_DIRNAME = "tunesmith_results"


def default_storage_path() -> str:
    """``~/tunesmith_results`` unless ``TUNE_RESULT_DIR`` says otherwise."""
    return os.path.expanduser(os.environ.get("TUNE_RESULT_DIR") or os.path.join("~", DEFAULT_STORAGE_DIRNAME))


def date_str() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def default_experiment_name(trainable_name: str) -> str:
    if os.environ.get("TUNE_DISABLE_DATED_SUBDIR", "0") == "1":
        return trainable_name
    return f"{trainable_name}_{date_str()}"


class StorageContext:
    """The experiment directory on storage, and the local directory the driver writes into.

    For local storage both are the same directory. For a remote filesystem the
    driver writes into a local staging directory and uploads it with
    :meth:`sync_up`.
    """

    def __init__(self, storage_path: str | None, experiment_dir_name: str, storage_filesystem=None):
        from tunesmith.tune.experiment.trial import sanitize_dirname

        storage_path = os.fspath(storage_path) if storage_path is not None else default_storage_path()
        self.experiment_dir_name = sanitize_dirname(experiment_dir_name, max_len=255)
        if storage_filesystem is None and "://" in storage_path and not storage_path.startswith("file://"):
            import pyarrow.fs

            storage_filesystem, storage_path = pyarrow.fs.FileSystem.from_uri(storage_path)
        elif storage_path.startswith("file://"):
            storage_path = storage_path[len("file://"):]
        self.storage_filesystem = storage_filesystem
        self.is_remote = storage_filesystem is not None and type(storage_filesystem).__name__ != "LocalFileSystem"
        if not self.is_remote:
            storage_path = os.path.abspath(os.path.expanduser(storage_path))
        self.storage_path = storage_path
        self.experiment_fs_path = os.path.join(storage_path, self.experiment_dir_name).replace("\\", "/")
        if self.is_remote:
            self.experiment_local_path = os.path.join(
                tempfile.gettempdir(), "tunesmith_staging", self.experiment_dir_name
            )
        else:
            self.experiment_local_path = self.experiment_fs_path

    @property
    def experiment_path(self) -> str:
        """The experiment directory as users see it (a URI for remote storage)."""
        if self.is_remote:
            scheme = {"S3FileSystem": "s3", "GcsFileSystem": "gs"}.get(type(self.storage_filesystem).__name__, "")
            return f"{scheme}://{self.experiment_fs_path}" if scheme else self.experiment_fs_path
        return self.experiment_fs_path

    def make_dirs(self) -> None:
        os.makedirs(self.experiment_local_path, exist_ok=True)
        if self.is_remote:
            self.storage_filesystem.create_dir(self.experiment_fs_path, recursive=True)

    def sync_up(self) -> None:
        """Uploads the local experiment directory to remote storage."""
        if not self.is_remote:
            return
        import pyarrow.fs

        pyarrow.fs.copy_files(
            self.experiment_local_path, self.experiment_fs_path,
            source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=self.storage_filesystem,
        )


def write_json_atomic(path: str, data: Any) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename."""
    text = json.dumps(data, allow_nan=True)  # one-shot encoding runs in C; json.dump does not
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_bytes_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
