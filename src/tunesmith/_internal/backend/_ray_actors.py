"""What runs inside Ray actors: a trial's worker runtime, and a trainer's training workers.

These classes are plain Python; the Ray backend wraps them with ``ray.remote``.
Each actor dials back to the process that created it (the driver for a trial
actor, the trial for a training worker) over TCP, authenticates with a shared
key, and from then on speaks the same protocol as a local worker process over
its socket pair, so the trial runs in exactly the same worker code.
"""
from __future__ import annotations

import os
import pickle
import socket
import sys
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

from tunesmith._internal.protocol import PlainConnection

# Set in a trial actor: the index shift of the trial's placement group bundles (-1 when the
# trial's own bundle is empty and therefore not part of the group), read by a trainer's
# worker group to put its workers into the bundles after the trial's own.
BUNDLE_OFFSET_ENV = "TUNESMITH_RAY_BUNDLE_OFFSET"

# Set in a trial actor once the driver has told it where the experiment's storage marker is:
# ``(path, filesystem)``, or None when the run asked for no check. A trainer's worker group
# has each of its workers look for the marker too, since they may run on other nodes.
storage_marker: tuple[str, object] | None = None


def dial(address: tuple[str, int], authkey: bytes, timeout: float = 60.0) -> Connection:
    """Connects to a listening tunesmith process and authenticates both ways."""
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = PlainConnection(sock.detach())
    answer_challenge(conn, authkey)
    deliver_challenge(conn, authkey)
    return conn


def accept(listener: socket.socket, authkey: bytes, timeout: float = 10.0) -> Connection | None:
    """Accepts one connection and authenticates it; None when it does not authenticate in time."""
    import struct

    try:
        sock, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return None
    sock.setblocking(True)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A peer that connects and says nothing must not hold up the caller.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(timeout), 0))
    conn = Connection(sock.detach())
    try:
        deliver_challenge(conn, authkey)
        answer_challenge(conn, authkey)
    except Exception:
        conn.close()
        return None
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
    sock.close()
    return conn


def listen(host: str) -> socket.socket:
    """A listening TCP socket on ``host`` (the node's address), on a free port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(256)
    return listener


def user_sys_path() -> list[str]:
    """The entries of this process's ``sys.path`` that hold the user's own modules.

    The interpreter's and its installed packages' directories are left out: the
    nodes have their own installation, which may live elsewhere.
    """
    prefixes = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    keep = []
    for path in sys.path:
        if not path or "site-packages" in path or "dist-packages" in path:
            continue
        if (os.path.realpath(path) + os.sep).startswith(prefixes):
            continue
        keep.append(os.path.abspath(path))
    return keep


def _add_sys_path(paths: list[str]) -> None:
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def _where() -> tuple[str, str, str]:
    """``(node_id, node_ip, hostname)`` of this actor."""
    import ray

    return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(), socket.gethostname()


class TrialActor:
    """A Ray actor that hosts the worker runtime (``tunesmith._internal.worker.Worker``).

    Args:
        driver: ``(host, port)`` the driver listens on.
        authkey: The experiment's connection key.
        slot_id: Which of the driver's slots this actor is.
        sys_path: The driver's ``sys.path``, so trainables defined in the user's modules import.
        bundle_offset: See ``BUNDLE_OFFSET_ENV``.
    """

    def __init__(self, driver: tuple[str, int], authkey: bytes, slot_id: int, sys_path: list[str],
                 bundle_offset: int):
        self._driver = driver
        self._authkey = authkey
        self._slot_id = slot_id
        os.environ[BUNDLE_OFFSET_ENV] = str(bundle_offset)
        _add_sys_path(sys_path)
        _check_launches_fit(head_in_group=bundle_offset == 0)

    def serve(self) -> int:
        """Runs trials the driver sends until it says EXIT or goes away; returns this process's pid."""
        import signal

        from tunesmith._internal.worker import Worker

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        conn = dial(self._driver, self._authkey)
        conn.send((self._slot_id, os.getpid()) + _where())
        # The driver's first word: the storage marker this node must see before it runs a trial.
        global storage_marker
        _, path, filesystem = conn.recv()
        storage_marker = None if path is None else (path, filesystem)
        conn.send(marker_seen(storage_marker))
        try:
            Worker(conn).serve()
        finally:
            conn.close()
        return os.getpid()


def _check_launches_fit(head_in_group: bool) -> None:
    """Makes a task or actor the trial starts fail at once when no bundle of its placement group can hold it.

    The trial's placement group captures what the trial starts; a request only the trial's own
    bundle could hold (which the trial is using) would wait forever. As on Ray (which also skips
    the check when ``TUNE_DISABLE_RESOURCE_CHECKS`` is set), the trial fails with an error that
    says which bundles to add. Uses the launch hooks Ray's own trainables install.
    """
    if "TUNE_DISABLE_RESOURCE_CHECKS" in os.environ:
        return
    try:
        from ray import actor, remote_function
    except ImportError:
        return
    checked: set[frozenset] = set()

    def check(fn, resources, strategy) -> None:
        wanted = {k: float(v) for k, v in (resources or {}).items() if v}
        key = frozenset(wanted.items())
        if not key or key in checked:
            return
        import ray

        pg = getattr(strategy, "placement_group", None)
        if pg is None:
            return
        current = ray.util.get_current_placement_group()
        if current is None or pg.id != current.id:
            return
        checked.add(key)
        bundles = current.bundle_specs[1:] if head_in_group else current.bundle_specs
        if any(all(bundle.get(k, 0.0) >= v for k, v in wanted.items()) for bundle in bundles):
            return
        what = "actor" if getattr(fn, "class_name", "") else "task"
        name = ".".join(p for p in (getattr(fn, "module_name", ""), getattr(fn, "class_name", ""),
                                    getattr(fn, "function_name", "")) if p)
        head = {k: float(v) for k, v in current.bundle_specs[0].items() if v} if head_in_group else {}
        raise RuntimeError(
            f"The trial started the Ray {what} {name} asking for {wanted}, but no bundle of the trial's "
            f"placement group other than its own can hold it, so it would wait forever. Reserve bundles "
            f"for what the trial starts: tune.with_resources(trainable, tune.PlacementGroupFactory("
            f"[{head}] + [{wanted}] * N)) (or resources_per_trial=...), with N the number of {what}s "
            f"running at once.")

    actor._actor_launch_hook = check
    remote_function._task_launch_hook = check


class GroupWorkerActor:
    """A Ray actor that runs one training worker of a trainer's worker group."""

    def __init__(self, sys_path: list[str]):
        _add_sys_path(sys_path)

    def info(self, marker: tuple[str, object] | None = None) -> tuple[str, str, int, int, str | None]:
        """``(node_id, node_ip, pid, free_port, storage_problem)``: where this worker runs, a port
        rank 0 may offer, and why this node does not see the storage ``marker`` (None when it does)."""
        node_id, ip, _ = _where()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
            port = s.getsockname()[1]
        return node_id, ip, os.getpid(), port, marker_seen(marker)

    def run(self, payload: bytes, address: tuple[str, int], authkey: bytes) -> int:
        """Runs the training worker described by ``payload`` (a pickled ``WorkerSpec``)."""
        import cloudpickle
        import ray

        from tunesmith.train._internal.group_worker import run_worker

        spec = cloudpickle.loads(payload)
        gpus = [str(g) for g in ray.get_gpu_ids()]
        spec.gpu_ids = gpus
        spec.env.pop("CUDA_VISIBLE_DEVICES", None)  # Ray set this worker's own
        conn = dial(address, authkey)
        conn.send_bytes(pickle.dumps(spec.rank))
        cwd = os.getcwd()
        try:
            return run_worker(spec, conn)  # in the trial's working directory
        finally:
            try:
                os.chdir(cwd)  # the actor may run a later trial's worker
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass


def storage_not_shared(experiment_path: str, where: str) -> RuntimeError:
    """The error of a run whose storage some node of the cluster does not see."""
    return RuntimeError(
        f"The storage path {experiment_path!r} is not shared with every node of the Ray cluster: "
        f"{where}. On a multi-node cluster, set RunConfig(storage_path=...) to a URI (s3://bucket/path, "
        "gs://...) or to a network filesystem mounted at the same path on every node."
    )


def marker_seen(marker: tuple[str, object] | None) -> str | None:
    """None when this node sees the storage ``marker`` ``(path, filesystem)`` (or there is none to
    see); otherwise why not."""
    if marker is None:
        return None
    path, filesystem = marker
    try:
        if filesystem is None:
            found = os.path.exists(path)
        else:
            import pyarrow.fs

            found = filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound
    except Exception as exc:  # the filesystem itself fails here (no credentials, no route)
        return f"looking for it failed: {type(exc).__name__}: {exc}"
    return None if found else "it cannot see a file the driver wrote there"
