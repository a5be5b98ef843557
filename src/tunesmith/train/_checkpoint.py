"""A checkpoint: a directory of files on local disk or on any ``pyarrow.fs`` filesystem."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import tempfile
import uuid
from typing import Any, Iterator

_METADATA_FILE = ".metadata.json"
_DICT_FILE = "dict_checkpoint.pkl"


def _resolve_filesystem(path: str | os.PathLike, filesystem=None):
    """Returns ``(filesystem, fs_path)`` for a local path or a URI such as ``s3://bucket/key``."""
    path = os.fspath(path)
    if filesystem is not None and not _is_local(filesystem):
        return filesystem, path[path.index("://") + 3:] if "://" in path else path
    if "://" not in path:  # the common case stays free of imports
        return None, os.path.abspath(os.path.expanduser(path))
    from tunesmith._internal.storage import resolve_storage

    return resolve_storage(path, None)


def _download_timeout() -> float:
    """Seconds a checkpoint download is retried (``TUNESMITH_STORAGE_TIMEOUT_S``, default 300)."""
    try:
        return float(os.environ.get("TUNESMITH_STORAGE_TIMEOUT_S", "300"))
    except ValueError:
        return 300.0


def _is_local(filesystem) -> bool:
    if filesystem is None:
        return True
    import pyarrow.fs

    return isinstance(filesystem, pyarrow.fs.LocalFileSystem)


class Checkpoint:
    """A reference to a directory of checkpoint files.

    The directory may be local or on any ``pyarrow.fs`` filesystem (S3, GCS, ...).
    A checkpoint handed to :func:`tunesmith.train.report` is copied into the
    trial's directory on the experiment's storage.

    Args:
        path: Directory path or URI of the checkpoint.
        filesystem: Optional ``pyarrow.fs.FileSystem`` the path lives on.

    Example:
        >>> import tempfile, os
        >>> from tunesmith.train import Checkpoint
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "model.txt"), "w") as f:
        ...     _ = f.write("weights")
        >>> ckpt = Checkpoint.from_directory(d)
        >>> with ckpt.as_directory() as local:
        ...     open(os.path.join(local, "model.txt")).read()
        'weights'
    """

    def __init__(self, path: str | os.PathLike, filesystem=None):
        fs, fs_path = _resolve_filesystem(path, filesystem)
        self._filesystem = fs
        self.path = fs_path

    @property
    def filesystem(self):
        """The ``pyarrow.fs.FileSystem`` the checkpoint lives on."""
        if self._filesystem is None:
            import pyarrow.fs

            self._filesystem = pyarrow.fs.LocalFileSystem()
        return self._filesystem

    @property
    def _local(self) -> bool:
        return _is_local(self._filesystem)

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> "Checkpoint":
        """Creates a checkpoint from a local directory."""
        return cls(os.path.abspath(os.fspath(path)))

    @classmethod
    def from_dict(cls, data: dict) -> "Checkpoint":
        """Creates a checkpoint holding a dictionary (the older AIR form)."""
        path = tempfile.mkdtemp(prefix="tunesmith_ckpt_")
        with open(os.path.join(path, _DICT_FILE), "wb") as f:
            pickle.dump(data, f)
        return cls(path)

    def to_dict(self) -> dict:
        """Returns the dictionary of a checkpoint made by :meth:`from_dict`."""
        with self.as_directory() as d:
            file = os.path.join(d, _DICT_FILE)
            if not os.path.exists(file):
                raise ValueError(f"Checkpoint at {self.path} was not created with Checkpoint.from_dict().")
            with open(file, "rb") as f:
                return pickle.load(f)

    def to_directory(self, path: str | os.PathLike | None = None) -> str:
        """Copies the checkpoint's files into a local directory and returns its path."""
        target = os.fspath(path) if path is not None else os.path.join(
            tempfile.gettempdir(), "tunesmith_checkpoints", uuid.uuid4().hex
        )
        os.makedirs(target, exist_ok=True)
        if self._local:
            if os.path.abspath(target) != os.path.abspath(self.path):
                from tunesmith._internal.fsutil import copy_tree

                copy_tree(self.path, target, dirs_exist_ok=True)
        else:
            from tunesmith._internal.storage import download_dir

            download_dir(self.filesystem, self.path.rstrip("/"), target, timeout=_download_timeout())
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Yields a local directory with the checkpoint's files.

        A local checkpoint is yielded in place (do not modify it); a remote one
        is downloaded to a temporary directory that is removed afterwards.
        """
        if self._local:
            yield self.path
            return
        tmp = self.to_directory()
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get_metadata(self) -> dict[str, Any]:
        """Returns the metadata dictionary stored with the checkpoint."""
        meta = os.path.join(self.path, _METADATA_FILE)
        if self._local:
            if not os.path.exists(meta):
                return {}
            with open(meta) as f:
                return json.load(f)
        import pyarrow.fs

        info = self.filesystem.get_file_info(meta)
        if info.type == pyarrow.fs.FileType.NotFound:
            return {}
        with self.filesystem.open_input_stream(meta) as f:
            return json.loads(f.read().decode())

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replaces the checkpoint's metadata (must be JSON serialisable)."""
        data = json.dumps(metadata).encode()
        meta = os.path.join(self.path, _METADATA_FILE)
        if self._local:
            with open(meta, "wb") as f:
                f.write(data)
        else:
            with self.filesystem.open_output_stream(meta) as f:
                f.write(data)

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Merges ``metadata`` into the checkpoint's metadata."""
        current = self.get_metadata()
        current.update(metadata)
        self.set_metadata(current)

    def __fspath__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Checkpoint(filesystem={'local' if self._local else type(self.filesystem).__name__}, path={self.path})"

    def __getstate__(self):
        state = dict(self.__dict__)
        fs = state.pop("_filesystem")
        state["_fs_uri"] = None if _is_local(fs) else fs
        return state

    def __setstate__(self, state):
        fs = state.pop("_fs_uri", None)
        self.__dict__.update(state)
        self._filesystem = fs
