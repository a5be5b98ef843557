"""Where an experiment's files go: a local directory or any ``pyarrow.fs`` filesystem.

This is the one storage layer of tunesmith. Local paths (and NFS mounts) are
used in place with ``os`` calls and never import pyarrow. Remote storage
(``s3://``, ``gs://``, any URI pyarrow resolves, or a user's
``storage_filesystem``) goes through ``pyarrow.fs``: workers upload their own
checkpoints (:class:`RemoteTarget`), the driver uploads its files from a local
staging directory when they change (:meth:`StorageContext.sync`), and results,
checkpoints and restores read back from the store. Every transfer is retried
with backoff and fails with a :class:`StorageError` naming the store and path.
"""
from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_STORAGE_DIRNAME = "tunesmith_results"
_STAGING_DIRNAME = "tunesmith_staging"
# The shortest time between two of the driver's uploads (seconds), whatever the sync_period.
STATE_UPLOAD_MIN_S = 10.0
# ... and between two uploads while the store holds trial checkpoints that no uploaded state names:
# a restore after the driver dies resumes from them rather than from an older state, or from scratch.
CHECKPOINT_STATE_UPLOAD_MIN_S = 1.0


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


class StorageError(OSError):
    """Remote storage kept refusing an upload, download or delete; the message names the store and path.

    Example:
        >>> import pyarrow.fs
        >>> def refused():
        ...     raise OSError("connection refused")
        >>> try:
        ...     with_retries(refused, "upload to", pyarrow.fs.LocalFileSystem(), "/b/k", timeout=0)
        ... except StorageError as exc:
        ...     print(str(exc)[:43])
        Could not upload to /b/k on LocalFileSystem
    """


# Object stores put a whole object in one request, so a write there is atomic by itself.
_OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
# Files of the experiment directory the driver never uploads.
_NEVER_SYNCED = (".tunesmith.lock",)
# Files of a trial directory that are its results (uploaded without sync_artifacts).
_TRIAL_OUTPUTS = frozenset({
    "result.json", "progress.csv", "params.json", "params.pkl", "error.txt", "error.pkl",
})
_TRIAL_OUTPUT_PREFIXES = ("events.out.tfevents",)
# Staging directory of a group trainer's checkpoints before they are merged (train/_internal).
_GROUP_STAGING = ".group_staging"
# A trial's checkpoint directories (checkpoint_000003), which workers upload themselves; a directory of
# the trial's own with a name like it (checkpoint_best) is one of its artifacts.
_CHECKPOINT_DIR = re.compile(r"checkpoint_\d{6,}(\.tmp)?$")  # .tmp: one being written; checkpoint_5 is the trial's

_logger = logging.getLogger(__name__)


def _is_local_filesystem(filesystem) -> bool:
    if filesystem is None:
        return True
    import pyarrow.fs

    return isinstance(filesystem, pyarrow.fs.LocalFileSystem)


def resolve_storage(path: str | os.PathLike, filesystem=None) -> tuple[Any, str]:
    """Returns ``(filesystem, path on it)``; the filesystem is None for a local path.

    Local paths (and a ``LocalFileSystem``) never import pyarrow: they are used
    in place, with ``os`` calls. A URI (``s3://``, ``gs://``, any scheme pyarrow
    resolves) gives its filesystem; with ``filesystem`` given, ``path`` is a path
    on it (a URI's scheme is dropped).
    """
    path = os.fspath(path)
    if filesystem is not None:
        if _is_local_filesystem(filesystem):
            if path.startswith("file://"):
                path = path[len("file://"):]
            return None, os.path.abspath(os.path.expanduser(path))
        if "://" in path:
            path = path.split("://", 1)[1]
        return filesystem, path.rstrip("/") or path
    if path.startswith("file://"):
        return None, os.path.abspath(os.path.expanduser(path[len("file://"):]))
    if "://" in path:
        import pyarrow.fs

        filesystem, fs_path = _filesystem_from_uri(path)
        if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            return None, os.path.abspath(fs_path)
        return filesystem, fs_path.rstrip("/") or fs_path
    return None, os.path.abspath(os.path.expanduser(path))


_FILESYSTEMS: dict[tuple[str, str], Any] = {}


def _filesystem_from_uri(uri: str):
    """``pyarrow.fs.FileSystem.from_uri``, with one filesystem kept per scheme, bucket and options
    (resolving one asks the store for the bucket's region)."""
    import pyarrow.fs
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    key = (f"{parts.scheme}://{parts.netloc}?{parts.query}", os.environ.get("AWS_ENDPOINT_URL", ""))
    filesystem = _FILESYSTEMS.get(key)
    if filesystem is None:
        filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(uri)
        if not isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            _FILESYSTEMS[key] = filesystem
        return filesystem, fs_path
    return filesystem, f"{parts.netloc}{parts.path}"


_OWN_TEMPORARY = re.compile(r"\.tmp\d+\Z")


def is_own_temporary(name: str) -> bool:
    """Whether a file name is one of tunesmith's temporary files (``<name>.tmp<pid>``, renamed when
    complete); a user's ``data.tmp`` or ``model.tmpl`` is not."""
    return _OWN_TEMPORARY.search(name) is not None


def split_experiment_path(path: str) -> tuple[str, str]:
    """``(storage_path, experiment name)`` of an experiment directory's path or URI; a URI's query
    (``s3://bucket/runs/exp?endpoint_override=...``) stays with the storage path.

    Example:
        >>> split_experiment_path("s3://bucket/runs/exp?scheme=http")
        ('s3://bucket/runs?scheme=http', 'exp')
    """
    if "://" not in path:
        path = path.rstrip(os.sep)
        return os.path.dirname(path), os.path.basename(path)
    path, sep, query = path.partition("?")
    path = path.rstrip("/")
    return posixpath.dirname(path) + sep + query, posixpath.basename(path)


def join_experiment_path(storage_path: str, name: str) -> str:
    """The experiment directory ``name`` under ``storage_path``; a URI's query stays at its end.

    Example:
        >>> join_experiment_path("s3://bucket/runs?scheme=http", "exp")
        's3://bucket/runs/exp?scheme=http'
    """
    if "://" not in storage_path:
        return os.path.join(storage_path, name)
    path, sep, query = storage_path.partition("?")
    return f"{path.rstrip('/')}/{name}{sep}{query}"


def storage_uri(filesystem, path: str) -> str:
    """``path`` on ``filesystem`` as a URI where the filesystem has a scheme (``s3://bucket/key``)."""
    if filesystem is None:
        return path
    scheme = {"s3": "s3", "gcs": "gs", "hdfs": "hdfs", "abfs": "abfs"}.get(getattr(filesystem, "type_name", ""), "")
    return f"{scheme}://{path}" if scheme else path


def _store_name(filesystem) -> str:
    return f"{type(filesystem).__name__} ({getattr(filesystem, 'type_name', '?')})"


# Errors of a store that waiting does not mend: a bucket that does not exist, credentials it refuses.
_PERMANENT_ERRORS = ("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist", "INVALID_ACCESS_KEY_ID",
                     "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch", "ACCESS_DENIED",
                     "AccessDenied")


def with_retries(action: Callable[[], Any], what: str, filesystem, path: str, timeout: float) -> Any:
    """Runs ``action`` until it succeeds, retrying ``OSError`` with exponential backoff.

    Raises:
        StorageError: It kept failing for ``timeout`` seconds; the message names
            the store, the path and the last error.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except FileNotFoundError:
            raise
        except OSError as exc:
            remaining = deadline - time.monotonic()
            if any(marker in str(exc) for marker in _PERMANENT_ERRORS):
                raise StorageError(
                    f"Could not {what} {storage_uri(filesystem, path)} on {_store_name(filesystem)}: {exc}. "
                    "Check the bucket's name and that it exists, and the credentials of "
                    "RunConfig(storage_path=..., storage_filesystem=...)."
                ) from exc
            if remaining <= 0:
                raise StorageError(
                    f"Could not {what} {storage_uri(filesystem, path)} on {_store_name(filesystem)}: "
                    f"{attempt} attempts over {timeout:.0f} s failed; the last error was: {exc}. "
                    "Check that the store is reachable and writable (endpoint, bucket, credentials "
                    "of RunConfig(storage_path=..., storage_filesystem=...)), or allow a longer outage "
                    "with SyncConfig(sync_timeout=...)."
                ) from exc
            if attempt == 1:
                _logger.warning("Could not %s %s (%s); retrying for up to %.0f s.",
                                what, storage_uri(filesystem, path), exc, remaining)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)


def _ensure_parent(filesystem, fs_path: str) -> None:
    if filesystem.type_name not in _OBJECT_STORES:  # object stores have no directories to create
        parent = posixpath.dirname(fs_path)
        if parent:
            filesystem.create_dir(parent, recursive=True)


def put_file(filesystem, fs_path: str, data: bytes) -> None:
    """Writes ``data`` to ``fs_path``: one object put on object stores, temporary name and move elsewhere."""
    _ensure_parent(filesystem, fs_path)
    if filesystem.type_name in _OBJECT_STORES:
        with filesystem.open_output_stream(fs_path) as out:
            out.write(data)
        return
    tmp = f"{fs_path}.tmp{os.getpid()}"
    with filesystem.open_output_stream(tmp) as out:
        out.write(data)
    filesystem.move(tmp, fs_path)


def upload_file(local_path: str, filesystem, fs_path: str, timeout: float) -> int:
    """Uploads one local file (retrying); returns the number of bytes sent."""
    with open(local_path, "rb") as f:
        data = f.read()
    return upload_bytes(data, filesystem, fs_path, timeout)


def upload_bytes(data: bytes, filesystem, fs_path: str, timeout: float) -> int:
    """Writes ``data`` to ``fs_path`` (retrying); returns the number of bytes sent."""
    with_retries(lambda: put_file(filesystem, fs_path, data), "upload to", filesystem, fs_path, timeout)
    return len(data)


def upload_dir(local_dir: str, filesystem, fs_path: str, timeout: float) -> int:
    """Uploads every file under ``local_dir`` to ``fs_path`` (retrying each); returns the bytes sent.

    Symbolic links are uploaded as what they point to; empty directories are created.
    """
    from tunesmith._internal.fsutil import local_tree

    files, empty_dirs = local_tree(local_dir)
    for rel in empty_dirs if files else ["."]:
        # An empty directory (an empty checkpoint, or a folder in one) is stored as the directory
        # itself (a marker on an object store), so that it reads back as empty rather than as missing.
        path = fs_path if rel == "." else f"{fs_path}/{rel}"
        with_retries(lambda: filesystem.create_dir(path, recursive=True), "create", filesystem, path, timeout)
    if not files:
        return 0

    def one(rel: str) -> int:
        return upload_file(os.path.join(local_dir, *rel.split("/")), filesystem, f"{fs_path}/{rel}", timeout)

    if len(files) <= 2:
        return sum(one(rel) for rel in files)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        return sum(pool.map(one, files))


def list_files(filesystem, fs_path: str, timeout: float) -> list[str]:
    """Paths relative to ``fs_path`` of every file under it; empty if it does not exist."""
    return _list_tree(filesystem, fs_path, timeout)[0]


def _list_tree(filesystem, fs_path: str, timeout: float) -> tuple[list[str], list[str]]:
    """Paths relative to ``fs_path`` of every file and every directory under it."""
    import pyarrow.fs

    def listing():
        selector = pyarrow.fs.FileSelector(fs_path, recursive=True, allow_not_found=True)
        return filesystem.get_file_info(selector)

    base = fs_path.rstrip("/") + "/"
    files, dirs = [], []
    for info in with_retries(listing, "list", filesystem, fs_path, timeout):
        if info.path.startswith(base):
            if info.type == pyarrow.fs.FileType.File:
                files.append(info.path[len(base):])
            elif info.type == pyarrow.fs.FileType.Directory:
                dirs.append(info.path[len(base):].rstrip("/"))
    return files, dirs


def download_file(filesystem, fs_path: str, local_path: str, timeout: float) -> None:
    def get():
        with filesystem.open_input_stream(fs_path) as f:
            return f.read()

    data = with_retries(get, "download", filesystem, fs_path, timeout)
    os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
    write_bytes_atomic(local_path, data)


def download_dir(filesystem, fs_path: str, local_dir: str, timeout: float,
                 skip: Callable[[str], bool] | None = None) -> list[str]:
    """Downloads every file under ``fs_path`` into ``local_dir``; returns the relative paths fetched.

    Raises:
        FileNotFoundError: Nothing is stored under ``fs_path``.
    """
    files, dirs = _list_tree(filesystem, fs_path, timeout)
    files = [rel for rel in files if not (skip and skip(rel))]
    if not files:
        import pyarrow.fs

        if filesystem.get_file_info(fs_path).type != pyarrow.fs.FileType.Directory:
            raise FileNotFoundError(f"Nothing is stored at {storage_uri(filesystem, fs_path)}.")
    os.makedirs(local_dir, exist_ok=True)
    for rel in dirs:  # empty ones included
        if rel and not (skip and skip(rel + "/")):
            os.makedirs(os.path.join(local_dir, *rel.split("/")), exist_ok=True)

    def one(rel: str) -> None:
        download_file(filesystem, f"{fs_path}/{rel}", os.path.join(local_dir, *rel.split("/")), timeout)

    if len(files) <= 2:
        for rel in files:
            one(rel)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            list(pool.map(one, files))
    return files


def delete_dir(filesystem, fs_path: str, timeout: float) -> None:
    """Deletes a directory (every object under a prefix) on remote storage; a missing one is fine."""
    import pyarrow.fs

    def delete():
        if filesystem.get_file_info(fs_path).type == pyarrow.fs.FileType.NotFound:
            return  # (some stores answer a delete of nothing with an error that is not "not found")
        try:
            filesystem.delete_dir(fs_path)
        except FileNotFoundError:
            pass

    with_retries(delete, "delete", filesystem, fs_path, timeout)


def path_exists(filesystem, fs_path: str, timeout: float = 60.0) -> bool:
    import pyarrow.fs

    info = with_retries(lambda: filesystem.get_file_info(fs_path), "look up", filesystem, fs_path, timeout)
    return info.type != pyarrow.fs.FileType.NotFound


def checkpoint_missing(checkpoint) -> bool:
    """Whether a checkpoint's directory is gone (deleted, or never fully written)."""
    if checkpoint._local:
        return not os.path.isdir(checkpoint.path)
    return not path_exists(checkpoint.filesystem, checkpoint.path)


@dataclass
class RemoteTarget:
    """What a worker needs to persist checkpoints straight to remote storage.

    Attributes:
        filesystem: The store's ``pyarrow.fs.FileSystem`` (pickled to the worker).
        experiment_path: The experiment directory on it.
        timeout: Seconds an upload is retried before it fails (``SyncConfig.sync_timeout``).

    Example:
        >>> import pyarrow.fs
        >>> RemoteTarget(pyarrow.fs.LocalFileSystem(), "/bucket/exp").trial_path("trial_1")
        '/bucket/exp/trial_1'
    """

    filesystem: Any
    experiment_path: str
    timeout: float = 1800.0

    def trial_path(self, trial_dirname: str) -> str:
        return f"{self.experiment_path}/{trial_dirname}"


@dataclass(eq=False)
class Upload:
    """One upload of the experiment directory's changed files (see ``StorageContext.start_sync``)."""

    changed: list[tuple[str, tuple[int, int]]]
    contents: dict[str, bytes]  # the experiment directory's own files, as read when it started
    unnamed: bool  # checkpoints were on the store that no uploaded state named
    slot: str | None = None  # the slot the uploaded experiment state names (None: no state in it)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class StorageContext:
    """The experiment directory on storage, and the local directory the driver writes into.

    For local storage (and NFS) both are one directory and nothing is copied.
    For remote storage (``s3://``, ``gs://``, a user ``storage_filesystem``) the
    driver writes its files into a local staging directory and uploads what
    changed every ``SyncConfig.sync_period`` seconds and at the end (:meth:`sync`);
    workers upload their checkpoints themselves (:class:`RemoteTarget`).

    Args:
        storage_path: Local directory, URI, or path on ``storage_filesystem``
            (``~/tunesmith_results`` when None).
        experiment_dir_name: The experiment's directory name.
        storage_filesystem: Optional ``pyarrow.fs.FileSystem`` of ``storage_path``.
        sync_config: The run's ``SyncConfig`` (period, timeout, artifacts).
        trial_output_names: Extra trial file names always uploaded (``log_to_file`` outputs).

    Example:
        >>> import os, tempfile
        >>> ctx = StorageContext(tempfile.mkdtemp(), "exp")
        >>> ctx.is_remote, ctx.experiment_local_path == ctx.experiment_fs_path, ctx.sync()
        (False, True, 0)
    """

    def __init__(self, storage_path: str | None, experiment_dir_name: str, storage_filesystem=None,
                 sync_config=None, trial_output_names: tuple[str, ...] = ()):
        storage_path = os.fspath(storage_path) if storage_path is not None else default_storage_path()
        self.experiment_dir_name = check_experiment_name(experiment_dir_name)
        filesystem, storage_path = resolve_storage(storage_path, storage_filesystem)
        self.storage_filesystem = filesystem
        self.is_remote = filesystem is not None
        self.storage_path = storage_path
        if self.is_remote:
            self.experiment_fs_path = f"{storage_path.rstrip('/')}/{self.experiment_dir_name}"
            # One staging directory per run: two drivers never share one.
            self._staging_root = (os.environ.get("TUNESMITH_STAGING_DIR")
                                  or os.path.join(tempfile.gettempdir(), _STAGING_DIRNAME))
            self.experiment_local_path = os.path.join(
                self._staging_root, f"{self.experiment_dir_name.replace('/', '_')}-{uuid.uuid4().hex[:8]}",
            )
        else:
            self.experiment_fs_path = os.path.join(storage_path, self.experiment_dir_name)
            self.experiment_local_path = self.experiment_fs_path
        self.sync_period = float(getattr(sync_config, "sync_period", 300) if sync_config is not None else 300)
        self.sync_timeout = float(getattr(sync_config, "sync_timeout", 1800) if sync_config is not None else 1800)
        self.sync_artifacts = bool(getattr(sync_config, "sync_artifacts", False)) if sync_config is not None else False
        self._trial_outputs = _TRIAL_OUTPUTS | {n for n in trial_output_names if n}
        self._uploaded: dict[str, tuple[int, int]] = {}
        self._last_sync = -math.inf  # the first state saved goes up at once
        self._last_sync_s = 0.0  # how long the last upload took
        self.unnamed_checkpoints = False  # trial checkpoints on the store that no uploaded state names
        # Which state slot the saved experiment_state.json names (see ``slot_file``).
        self.state_slot: str | None = None
        # Which slot the experiment state last uploaded names (remote storage): snapshots go to the
        # other one, so an upload never overwrites the files of the state on the store.
        self.uploaded_slot: str | None = None
        self.bytes_uploaded = 0
        self._upload: Upload | None = None  # the background upload in flight
        self._to_delete: list = []  # checkpoints (on the store) waiting for the background deleter
        self._delete_lock = threading.Lock()
        self._deleter: threading.Thread | None = None
        self._deletes_failing = False  # the store refused the last delete

    def remote_lock_file(self) -> str:
        """The file on this machine whose lock stands for the experiment directory on the store."""
        import hashlib

        directory = os.path.join(self._staging_root, ".locks")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return os.path.join(directory, hashlib.sha1(self.experiment_path.encode()).hexdigest() + ".lock")

    @property
    def experiment_path(self) -> str:
        """The experiment directory as users see it (a URI for remote storage)."""
        return storage_uri(self.storage_filesystem, self.experiment_fs_path)

    @property
    def remote_experiment_path(self) -> str | None:
        """The experiment directory on the remote store (None for local storage)."""
        return self.experiment_fs_path if self.is_remote else None

    def remote_target(self) -> RemoteTarget | None:
        """What workers need to upload checkpoints (None for local storage)."""
        if not self.is_remote:
            return None
        return RemoteTarget(self.storage_filesystem, self.experiment_fs_path, self.sync_timeout)

    def make_dirs(self) -> None:
        os.makedirs(self.experiment_local_path, exist_ok=True)

    def upload_now(self, name: str, timeout: float | None = None) -> None:
        """Uploads one file of the experiment directory at once (the tuner file, when a Tuner is built)."""
        if not self.is_remote:
            return
        local = os.path.join(self.experiment_local_path, name)
        st = os.stat(local)
        self.bytes_uploaded += upload_file(
            local, self.storage_filesystem, f"{self.experiment_fs_path}/{name}",
            self.sync_timeout if timeout is None else timeout,
        )
        self._uploaded[name] = (st.st_mtime_ns, st.st_size)

    # -- the driver's uploads ---------------------------------------------------
    def _sync_interval(self) -> float:
        """Seconds between the driver's uploads: at most ``sync_period``; as on Ray, where the state
        goes up as it is saved, as little as 10 s, and at least twenty times the last upload's time.
        With trial checkpoints on the store that no uploaded state names, as little as 1 s and five
        times the last upload's time: the uploads run in the background, and a restore after the
        driver dies goes on from the checkpoints the state names (a 0.25 s upload made that 5 s)."""
        if self.unnamed_checkpoints:
            return min(self.sync_period, max(CHECKPOINT_STATE_UPLOAD_MIN_S, 5 * self._last_sync_s))
        return min(self.sync_period, max(STATE_UPLOAD_MIN_S, 20 * self._last_sync_s))

    def sync_due(self) -> bool:
        return (self.is_remote and self._upload is None
                and time.monotonic() - self._last_sync >= self._sync_interval())

    def sync_due_in(self) -> float:
        """Seconds until the next upload is due (infinite for local storage); while one runs, when
        to look again."""
        if not self.is_remote:
            return float("inf")
        if self._upload is not None:
            return self._sync_interval()
        return self._last_sync + self._sync_interval() - time.monotonic()

    def sync(self) -> int:
        """Uploads the files of the staging directory that changed since the last sync, and returns
        how many (after the background upload in flight, if any, has ended).

        Result logs and other files go first and the experiment state last, so the
        state on the store never names rows or files that are not there. Trial
        checkpoints are not touched (workers upload them); a trial's other files
        go up only with ``SyncConfig(sync_artifacts=True)``, except its results,
        errors and ``log_to_file`` outputs.

        Raises:
            StorageError: An upload kept failing for ``sync_timeout`` seconds.
        """
        if not self.is_remote:
            return 0
        self.finish_sync(wait=True)
        upload = self._prepare_upload()
        self._run_upload(upload)
        if upload.error is not None:
            raise upload.error
        return len(upload.changed)

    def start_sync(self) -> bool:
        """Starts :meth:`sync` in a background thread, so that an upload (a slow link, a store that
        is down for a while) holds up nothing; False when one is still running.

        The experiment directory's own files (its state, and the searcher's, scheduler's and
        callbacks' states it names) are read at once: the store gets them as they are now, whole,
        whatever the driver writes while the upload runs. :meth:`finish_sync` collects it.
        """
        if not self.is_remote or self._upload is not None:
            return False
        upload = self._prepare_upload()
        self._upload = upload
        threading.Thread(target=self._run_upload, args=(upload,), name="tunesmith-upload", daemon=True).start()
        return True

    def finish_sync(self, wait: bool = False) -> Upload | None:
        """The background upload once it has ended (its ``error`` is None when it succeeded); None
        while it runs (unless ``wait``) or when none was started."""
        upload = self._upload
        if upload is None or not (wait or upload.done.is_set()):
            return None
        upload.done.wait()
        self._upload = None
        return upload

    def delete_later(self, checkpoints: list) -> None:
        """Deletes checkpoints from the store in a background thread, each retried for ``sync_timeout``
        seconds: a slow or unreachable store holds up nothing (see :meth:`wait_for_deletes`)."""
        if not checkpoints:
            return
        with self._delete_lock:
            self._to_delete.extend(checkpoints)
            if self._deleter is None:
                self._deleter = threading.Thread(target=self._delete_queued, name="tunesmith-delete", daemon=True)
                self._deleter.start()

    def _delete_queued(self) -> None:
        while True:
            with self._delete_lock:
                if not self._to_delete:
                    self._deleter = None
                    return
                checkpoint = self._to_delete.pop(0)
            # Once the store refused a delete, the next ones get one try each (not sync_timeout apiece)
            # until one succeeds.
            failing = self._deletes_failing
            try:
                delete_dir(checkpoint.filesystem, checkpoint.path, 0.0 if failing else self.sync_timeout)
                self._deletes_failing = False
            except Exception as exc:  # noqa: BLE001 - said, and the run goes on
                self._deletes_failing = True
                if not failing:
                    _logger.warning(
                        "Could not delete the dropped checkpoint %s from the store (%s); it stays there, as do "
                        "the next ones while the store refuses (a Tuner.restore of the experiment removes "
                        "checkpoints its state does not name).", storage_uri(checkpoint.filesystem, checkpoint.path),
                        exc)

    def wait_for_deletes(self) -> None:
        """Waits until the checkpoints handed to :meth:`delete_later` are deleted (or given up on), at
        most ``sync_timeout`` seconds in all."""
        deleter = self._deleter
        if deleter is not None:
            deleter.join(self.sync_timeout)

    def _prepare_upload(self) -> Upload:
        unnamed = self.unnamed_checkpoints
        self.unnamed_checkpoints = False  # the state uploaded now names them
        from tunesmith.tune.result import EXPERIMENT_STATE_FILE

        changed, contents = [], {}
        kept_slot = None if self.uploaded_slot is None else re.compile(
            rf"-{re.escape(self.uploaded_slot)}\.pkl(\.wrapper\d+)?\Z")
        for rel, stamp in self._scan():
            if self._uploaded.get(rel) == stamp:
                continue
            if kept_slot is not None and "/" not in rel and kept_slot.search(rel):
                # A state of the slot the state on the store names, saved while that state's upload ran:
                # it waits for an upload of a state naming its slot (saved anew by then).
                continue
            if "/" not in rel:
                try:
                    with open(os.path.join(self.experiment_local_path, rel), "rb") as f:
                        contents[rel] = f.read()
                except FileNotFoundError:
                    continue
            changed.append((rel, stamp))
        state = contents.get(EXPERIMENT_STATE_FILE)
        slot = state_slot_of(state) if state is not None else None
        if slot is not None and slot == self.uploaded_slot:
            # That state names the slot whose files were just held back: it waits too (the next
            # snapshot writes the other slot and a state naming it).
            del contents[EXPERIMENT_STATE_FILE]
            changed = [item for item in changed if item[0] != EXPERIMENT_STATE_FILE]
            slot = None
            self.unnamed_checkpoints, unnamed = unnamed, False  # no state uploaded now names them
        return Upload(changed, contents, unnamed, slot=slot)

    def _run_upload(self, upload: Upload) -> None:
        try:
            self._upload_files(upload.changed, upload.contents)
        except BaseException as exc:  # handed to whoever collects the upload
            upload.error = exc
            self.unnamed_checkpoints = self.unnamed_checkpoints or upload.unnamed
            self._last_sync = time.monotonic()  # the next try comes an interval later
        else:
            self._last_sync = time.monotonic()
            self._last_sync_s = self._last_sync - upload.started
            if upload.slot is not None:
                self.uploaded_slot = upload.slot
        finally:
            upload.seconds = time.monotonic() - upload.started
            upload.done.set()

    def _upload_files(self, changed: list[tuple[str, tuple[int, int]]], contents: dict[str, bytes]) -> None:
        """Uploads the changed files (those in ``contents`` as read then), the experiment state last."""
        fs, base = self.storage_filesystem, self.experiment_fs_path

        def one(item) -> None:
            rel, stamp = item
            target = f"{base}/{rel}"
            if rel in contents:
                self.bytes_uploaded += upload_bytes(contents[rel], fs, target, self.sync_timeout)
            else:
                local = os.path.join(self.experiment_local_path, *rel.split("/"))
                try:
                    self.bytes_uploaded += upload_file(local, fs, target, self.sync_timeout)
                except FileNotFoundError:
                    return  # replaced or removed since the scan; the next sync takes the new one
            self._uploaded[rel] = stamp

        files = [item for item in changed if not _is_state_file(item[0])]
        if len(files) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
                list(pool.map(one, files))  # re-raises the first failure
        else:
            for item in files:
                one(item)
        for item in changed:  # the state last, once everything it names is there
            if _is_state_file(item[0]):
                one(item)

    def _scan(self) -> list[tuple[str, tuple[int, int]]]:
        """``(relative path, (mtime_ns, size))`` of each file the driver uploads."""
        out = []
        root = self.experiment_local_path
        try:
            top = list(os.scandir(root))
        except FileNotFoundError:
            return out
        for entry in top:
            if entry.is_file(follow_symlinks=False):
                if entry.name not in _NEVER_SYNCED and not is_own_temporary(entry.name):
                    st = entry.stat()
                    out.append((entry.name, (st.st_mtime_ns, st.st_size)))
            elif entry.is_dir(follow_symlinks=False):
                out.extend(self._scan_trial(entry.path, entry.name))
        return out

    def _scan_trial(self, path: str, dirname: str):
        for root, dirs, files in os.walk(path):
            rel_root = os.path.relpath(root, path)
            if rel_root == ".":
                # Checkpoints are the workers' uploads; a group's staging is not a result.
                dirs[:] = [d for d in dirs if not _CHECKPOINT_DIR.match(d) and d != _GROUP_STAGING]
                if not self.sync_artifacts:
                    dirs[:] = []
            for name in files:
                if is_own_temporary(name):
                    continue
                if rel_root == "." and not self.sync_artifacts and not (
                    name in self._trial_outputs or name.startswith(_TRIAL_OUTPUT_PREFIXES)
                ):
                    continue
                full = os.path.join(root, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                rel = name if rel_root == "." else f"{rel_root.replace(os.sep, '/')}/{name}"
                yield f"{dirname}/{rel}", (st.st_mtime_ns, st.st_size)

    # -- restore ---------------------------------------------------------------------
    def download_experiment(self) -> list[str]:
        """Fetches the experiment's files (not its checkpoints) from the store into the staging directory.

        What is fetched counts as uploaded, so the next sync sends only what changes after.
        """
        if not self.is_remote:
            return []

        def skip(rel: str) -> bool:
            parts = rel.split("/")
            return len(parts) > 2 and (bool(_CHECKPOINT_DIR.match(parts[1])) or parts[1] == _GROUP_STAGING)

        os.makedirs(self.experiment_local_path, exist_ok=True)
        try:
            files = download_dir(self.storage_filesystem, self.experiment_fs_path, self.experiment_local_path,
                                 self.sync_timeout, skip=skip)
        except FileNotFoundError:
            return []
        for rel in files:
            st = os.stat(os.path.join(self.experiment_local_path, *rel.split("/")))
            self._uploaded[rel] = (st.st_mtime_ns, st.st_size)
        return files

    def checkpoint_path(self, trial_dirname: str, name: str, local_trial_dir: str) -> str:
        """Where checkpoint ``name`` of a trial lives: on the store for remote storage."""
        if self.is_remote:
            return f"{self.experiment_fs_path}/{trial_dirname}/{name}"
        return os.path.join(local_trial_dir, name)


def slot_file(name: str, slot: str | None) -> str:
    """The name of state file ``name`` (``scheduler_state.pkl``...) in state slot ``slot``.

    A snapshot writes the searcher's, scheduler's, stopper's and callbacks' states
    under the slot the saved ``experiment_state.json`` does not name, then the state
    file naming that slot: whatever interrupts a snapshot (a kill, a full disk), the
    state file and the states it names always belong together. ``None`` (runs saved
    before slots) is the plain name.
    """
    if slot is None:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{slot}.{ext}" if dot else f"{name}-{slot}"


def committed_state_slot(experiment_dir: str) -> str | None:
    """The state slot that ``experiment_dir``'s saved experiment state names (None for none).
    Reads only the head of the state file."""
    from tunesmith.tune.result import EXPERIMENT_STATE_FILE

    try:
        with open(os.path.join(experiment_dir, EXPERIMENT_STATE_FILE), "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    return state_slot_of(head)


def state_slot_of(state: bytes) -> str | None:
    """The slot named at the head of an ``experiment_state.json``'s bytes (None for none)."""
    match = re.match(rb'\{"state_slot": "([a-z])"', state)
    return match.group(1).decode() if match else None


def _is_state_file(rel: str) -> bool:
    return "/" not in rel and rel.startswith("experiment_state")



def write_json_atomic(path: str, data: Any) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename."""
    text = json.dumps(data, allow_nan=True)  # one-shot encoding runs in C; json.dump does not
    write_bytes_atomic(path, text.encode("utf-8", "surrogatepass"))


def write_atomic(path: str, write: Callable[[Any], None], mode: str = "wb", **open_kwargs: Any) -> None:
    """Calls ``write(file)`` on a temporary file next to ``path``, then renames it to ``path``; a failed
    write (a full disk) leaves ``path`` as it was and no temporary file behind."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **open_kwargs) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda f: f.write(data))


def write_output_file(destination: str, data: bytes, timeout: float = 60.0) -> str:
    """Writes a file the user asked for (a CLI ``--output``, a report) to a local path, its directory
    made if new, or to a URI (``s3://bucket/out.csv``; ``file://`` is a local path); returns where
    it went."""
    filesystem, fs_path = resolve_storage(destination)
    if filesystem is None:
        os.makedirs(os.path.dirname(fs_path), exist_ok=True)
        write_bytes_atomic(fs_path, data)
        return fs_path
    upload_bytes(data, filesystem, fs_path, timeout)
    return destination
