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
    from tunesmith.tune.experiment.trial import sanitize_dirname

    if os.environ.get("TUNE_DISABLE_DATED_SUBDIR", "0") == "1":
        return sanitize_dirname(trainable_name, max_len=255)
    return sanitize_dirname(f"{trainable_name}_{date_str()}", max_len=255)


def check_experiment_name(name: str) -> str:
    """Returns a user's experiment name as given; raises if it would leave the storage path.

    Any character a file name may hold is kept (``trainable_type='function'`` stays
    as it is); an absolute path, ``..``, an empty name or a NUL byte is refused.
    """
    if not isinstance(name, str):
        raise TypeError(f"RunConfig(name=...) must be a string, got {type(name).__name__} ({name!r}).")
    parts = name.replace("\\", "/").split("/")
    if (
        not name.strip()
        or "\x00" in name
        or os.path.isabs(name)
        or name.startswith(("/", "\\"))
        or any(part in ("..", ".") for part in parts)
        or not all(parts)
    ):
        raise ValueError(
            f"RunConfig(name={name!r}): an experiment name must be a directory name inside the "
            "storage path: not empty, not absolute, without '.' or '..' components. To write "
            "elsewhere, set RunConfig(storage_path=...) instead."
        )
    return name


class StorageContext:
    """The experiment directory on storage, and the local directory the driver writes into.

    For local storage both are the same directory. For a remote filesystem the
    driver writes into a local staging directory and uploads it with
    :meth:`sync_up`.
    """

    def __init__(self, storage_path: str | None, experiment_dir_name: str, storage_filesystem=None):
        storage_path = os.fspath(storage_path) if storage_path is not None else default_storage_path()
        self.experiment_dir_name = check_experiment_name(experiment_dir_name)
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
