"""The Ray backend: trials run as Ray actors on a Ray cluster, with Ray core only.

Each trial gets a placement group made of its ``PlacementGroupFactory``'s
bundles (with the factory's strategy) and a Ray actor in the first bundle that
hosts the same worker runtime as a local worker process
(``tunesmith._internal.worker.Worker``). The actor dials back to the driver
over TCP, authenticates with a key made for this experiment, and from then on
driver and actor speak the protocol of ``protocol.py`` over that socket, so a
result costs one message each way, as locally. A trainer's training workers
go into the remaining bundles of the trial's placement group
(``ray_group.py``).

An actor and its placement group form a *slot*. With ``reuse_actors`` a slot
that finished a trial waits for the next trial with the same request, as a
local worker process does; an idle slot of another request is given back to
the cluster when its resources are needed.

A watcher thread waits on every actor's ``serve`` call: when an actor dies
(its node is lost, it is killed) the call fails, and the driver reports the
trial's failure even where no socket would ever say so.
"""
from __future__ import annotations

import logging
import os
import pickle
import secrets
import select
import threading
import time
import uuid
from typing import Any

from tunesmith._internal import protocol as P
from tunesmith._internal.backend import _ray_actors as A
from tunesmith._internal.backend.base import ExecutorBackend, TrialEvent, WorkerLocation
from tunesmith.tune.execution.controller_config import env_float

logger = logging.getLogger(__name__)

_EPS = 1e-9
_CONTINUE_BYTES = pickle.dumps(P.CONTINUE)
# Resource names of Ray's own that trials do not ask for and the driver does not show.
_HIDDEN = ("object_store_memory",)
_PLACEMENT_PATIENCE_S = 1.0


def import_ray():
    """Imports Ray, or says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "Running trials on a Ray cluster (tunesmith.init(address=...), RAY_ADDRESS or "
            f"TUNESMITH_ADDRESS) needs Ray ({exc}). Install it with pip install 'tunesmith[ray]', "
            "or run on this machine with tunesmith.init(address='local')."
        ) from exc
    return ray


_CONNECT_LOCK = threading.Lock()
# Whether this process's connection to Ray is one connect() made (tunesmith.shutdown() closes only that).
made_connection = False


def connect(address: str):
    """Connects this process to the Ray cluster at ``address`` (once, whichever thread asks first);
    returns the ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    with _CONNECT_LOCK:  # Tuners fitted in threads after tunesmith.init(address=...) connect once
        if ray.is_initialized():
            return ray
        global made_connection
        try:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
            made_connection = True
        except ConnectionError as exc:
            raise ConnectionError(
                f"Could not connect to the Ray cluster at address={address!r}: {exc}. Start one with "
                "`ray start --head`, pass the head's address ('auto' on a cluster node, "
                "'ray://host:10001' from outside), or run on this machine with tunesmith.init(address='local')."
            ) from exc
    return ray


def cluster_total(ray) -> dict[str, float]:
    """What the alive nodes of the cluster offer, without Ray's per-node and internal resources."""
    total = ray.cluster_resources()
    return {
        k: float(v) for k, v in total.items()
        if not k.startswith("node:") and k not in _HIDDEN and not k.startswith("accelerator_type")
    }


def actor_options(resources: dict[str, float]) -> dict[str, Any]:
    """Ray actor options for a bundle such as ``{"CPU": 1, "GPU": 0.5, "license": 1}``."""
    opts: dict[str, Any] = {"num_cpus": resources.get("CPU", 0.0), "num_gpus": resources.get("GPU", 0.0)}
    if resources.get("memory"):
        opts["memory"] = resources["memory"]
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory") and v}
    if custom:
        opts["resources"] = custom
    return opts


class _Slot:
    """One actor and its placement group."""

    __slots__ = ("id", "actor", "pg", "pgf", "serve_ref", "conn", "fd", "pid", "node_id", "node_ip",
                 "hostname", "loaded", "trial", "outbox", "ready", "closing", "dead", "placed", "ready_ref",
                 "assigned_at", "verified")

    def __init__(self, slot_id: int, pgf):
        self.id = slot_id
        self.pgf = pgf
        self.actor = None
        self.pg = None
        self.serve_ref = None
        self.conn = None
        self.fd: int | None = None
        self.pid: int | None = None
        self.node_id = ""
        self.node_ip = ""
        self.hostname = ""
        self.loaded: set[str] = set()
        self.trial = None
        self.outbox: list = []
        self.ready = False
        self.closing = False
        self.dead = False
        self.placed = False  # its placement group is ready
        self.verified = False  # its node sees the experiment's storage (it gets messages only then)
        self.ready_ref = None
        self.assigned_at = 0.0  # when its current trial was given to it


class RayExecutor(ExecutorBackend):
    """Runs trials as Ray actors on the cluster at ``address``.

    Args:
        address: ``"auto"``, ``"ray://host:port"`` or ``"host:port"``, as for ``ray.init``.

    Example:
        >>> import tunesmith
        >>> tunesmith.init(address="auto")  # doctest: +SKIP
        >>> # tune.Tuner(...).fit() now runs its trials on the Ray cluster
    """

    place = "the Ray cluster"
    more_resources_hint = "add nodes that have them to the cluster (ray start --num-cpus/--num-gpus/--resources)"

    def __init__(self, address: str):
        ray = connect(address)
        self._ray = ray
        self.address = address
        self._authkey = secrets.token_bytes(32)
        self._host = ray.util.get_node_ip_address()
        self._listener = A.listen(self._host)
        self._listener.setblocking(False)
        self._listen_address = self._listener.getsockname()[:2]
        self._poller = select.poll()
        self._poller.register(self._listener.fileno(), select.POLLIN)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, select.POLLIN)
        self._next_id = 0
        self._slots: dict[int, _Slot] = {}
        self._by_trial: dict[Any, _Slot] = {}
        self._by_fd: dict[int, _Slot] = {}
        self._idle: dict[Any, list[_Slot]] = {}
        self._connecting = 0  # slots with a trial whose actor has not dialled back yet
        # Slots with a trial whose placement group is not placed yet. One that waits longer
        # than _PLACEMENT_PATIENCE_S may be waiting for room that idle slots hold: then no
        # slot is kept idle (a placement group is usually placed within milliseconds).
        self._unplaced = 0
        self.total = cluster_total(ray)
        self._warned_beyond: set[tuple] = set()
        # TUNE_PLACEMENT_GROUP_PREFIX names this run's placement groups (e.g. to find leftovers);
        # TUNE_STATE_REFRESH_PERIOD is how often the cluster's resources are looked up again.
        self._pg_prefix = os.environ.get("TUNE_PLACEMENT_GROUP_PREFIX") or f"__tune_{uuid.uuid4().hex[:8]}__"
        self._refresh_s = env_float("TUNE_STATE_REFRESH_PERIOD", 1.0)
        self._used: dict[str, float] = {}
        self._totals_checked = time.monotonic()
        self._sys_path = A.user_sys_path()
        # The storage marker every actor looks for before it runs a trial (see check_storage).
        self._marker: tuple[str, Any] | None = None
        self._marker_dir = ""
        self._storage_failed = False
        self._trial_actor = ray.remote(A.TrialActor)
        # The watcher: serve calls that ended (an actor exited or died), handed to the driver's loop.
        self._lock = threading.Lock()
        self._watched: dict[Any, _Slot] = {}
        self._ended: list[_Slot] = []
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="tunesmith-ray-watcher", daemon=True)
        self._watcher.start()

    # -- resources -----------------------------------------------------------------------------
    @property
    def available(self) -> dict[str, float]:
        return {k: v - self._used.get(k, 0.0) for k, v in self.total.items()}

    def can_ever_fit(self, resources: dict[str, float]) -> bool:
        """Always True on a cluster, as on Ray: nodes that have what a trial asks for may still join
        (an autoscaler adds them when a placement group waits). A request beyond the cluster of
        now is said once; the trial waits, and the controller says so while nothing runs."""
        if not all(self.total.get(k, 0.0) + _EPS >= v for k, v in resources.items() if v > 0):
            key = tuple(sorted(resources.items()))
            if key not in self._warned_beyond:
                self._warned_beyond.add(key)
                logger.warning(
                    "A trial asks for %s, more than the Ray cluster has now (%s). It waits for nodes that "
                    "have it (an autoscaler adds them); add such nodes, or lower the request.",
                    resources, self.total,
                )
        return True

    def _fits(self, resources: dict[str, float]) -> bool:
        used, total = self._used, self.total
        return all(total.get(k, 0.0) - used.get(k, 0.0) + _EPS >= v for k, v in resources.items() if v > 0)

    def has_resources(self, resources: dict[str, float]) -> bool:
        for pgf, slots in self._idle.items():
            if slots and pgf.required_resources == resources:
                return True  # an idle slot of this request takes the trial
        if self._fits(resources):
            return True
        # Idle slots of other requests hold resources: give them back, then look again.
        for pgf in list(self._idle):
            while self._idle.get(pgf):
                self._retire(self._idle[pgf].pop())
                if self._fits(resources):
                    return True
        return False

    def contended(self) -> bool:
        """True when the cluster's resources changed (a node joined or left); looked up every
        ``TUNE_STATE_REFRESH_PERIOD`` seconds (1 by default)."""
        now = time.monotonic()
        if now - self._totals_checked < self._refresh_s:
            return False
        self._totals_checked = now
        try:
            total = cluster_total(self._ray)
        except Exception:  # the GCS is briefly unreachable: keep what we know
            return False
        if total != self.total:
            self.total = total
            return True
        return False

    def _hold(self, pgf, sign: float) -> None:
        for key, value in pgf.required_resources.items():
            self._used[key] = self._used.get(key, 0.0) + sign * value

    # -- slots -----------------------------------------------------------------------------------
    def _new_slot(self, pgf) -> _Slot:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        slot = _Slot(self._next_id, pgf)
        self._next_id += 1
        bundles = pgf.bundles
        head = bundles[0]
        group = bundles if head else [b for b in bundles[1:] if b]
        offset = 0 if head else -1
        options = actor_options(head)
        if group:
            slot.pg = placement_group(group, strategy=pgf.strategy, name=f"{self._pg_prefix}{slot.id}")
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                slot.pg, placement_group_bundle_index=0 if head else -1,
                # As Ray Tune: tasks and actors the trial starts go into its placement group's bundles
                # (the seed's PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}, ...]) for a trial's own tasks).
                placement_group_capture_child_tasks=True,
            )
        slot.actor = self._trial_actor.options(max_restarts=0, max_concurrency=1, **options).remote(
            self._listen_address, self._authkey, slot.id, self._sys_path, offset
        )
        slot.serve_ref = slot.actor.serve.remote()
        self._slots[slot.id] = slot
        self._hold(pgf, 1.0)
        with self._lock:
            self._watched[slot.serve_ref] = slot
            if slot.pg is not None:
                slot.ready_ref = slot.pg.ready()
                self._watched[slot.ready_ref] = slot
            else:
                slot.placed = True
        return slot

    def _take_idle(self, pgf) -> _Slot | None:
        slots = self._idle.get(pgf)
        while slots:
            slot = slots.pop()
            if not slot.dead:
                return slot
        return None

    def _send(self, slot: _Slot, message: Any) -> None:
        if not slot.verified:
            slot.outbox.append(message)
            return
        try:
            if message is P.CONTINUE:
                slot.conn.send_bytes(_CONTINUE_BYTES)
            else:
                slot.conn.send(message)
        except OSError:
            pass  # the actor is gone: its socket or the watcher reports it

    def _retire(self, slot: _Slot) -> None:
        """Gives a slot back: its actor exits (or is killed) and its placement group is removed."""
        if slot.closing:
            return
        slot.closing = True
        self._hold(slot.pgf, -1.0)
        self._unpoll(slot)
        if slot.conn is not None:
            try:
                slot.conn.send((P.EXIT,))
            except OSError:
                pass
            self._close_conn(slot)
        else:
            self._kill(slot)  # never connected: nothing to say goodbye to
        if slot.dead or slot.serve_ref is None:
            self._remove(slot)

    def _remove(self, slot: _Slot) -> None:
        """Forgets a slot whose actor has ended; its placement group goes back to the cluster."""
        self._slots.pop(slot.id, None)
        with self._lock:
            self._watched.pop(slot.serve_ref, None)
            self._watched.pop(slot.ready_ref, None)
        self._kill(slot)
        if slot.pg is not None:
            try:
                self._ray.util.remove_placement_group(slot.pg)
            except Exception:
                pass
            slot.pg = None

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is not None:
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass

    def _close_conn(self, slot: _Slot) -> None:
        if slot.conn is not None:
            try:
                slot.conn.close()
            except OSError:
                pass
            slot.conn = None

    def _unpoll(self, slot: _Slot) -> None:
        if slot.fd is not None and self._by_fd.pop(slot.fd, None) is not None:
            try:
                self._poller.unregister(slot.fd)
            except (KeyError, ValueError):
                pass

    def _poll(self, slot: _Slot) -> None:
        if slot.conn is not None and slot.fd not in self._by_fd:
            self._by_fd[slot.fd] = slot
            self._poller.register(slot.fd, select.POLLIN)

    max_prestart = 64

    def prestart(self, count: int, trainable_key: str | None = None, payload: bytes | None = None,
                 resources=None) -> None:
        """Starts ``count`` actors of the trials' resources now (with the trainable loaded), so that they boot
        early; none when the resources depend on the config (an actor no trial takes would hold its CPUs,
        which work a trial starts outside its placement group, such as Ray Data's, then waits for)."""
        pgf = resources
        if pgf is None:
            return
        for _ in range(max(0, count) - sum(len(v) for v in self._idle.values())):
            if not self._fits(pgf.required_resources):
                return
            slot = self._new_slot(pgf)
            if trainable_key is not None:
                self._send(slot, (P.LOAD, trainable_key, payload))
                slot.loaded.add(trainable_key)
            self._idle.setdefault(pgf, []).append(slot)

    # -- trials ------------------------------------------------------------------------------------
    def start_trial(self, trial, spec: P.TrialSpec, trainable_key: str, payload: bytes) -> None:
        pgf = trial.placement_group_factory
        slot = self._take_idle(pgf) or self._new_slot(pgf)
        slot.trial = trial
        slot.assigned_at = time.monotonic()
        self._by_trial[trial] = slot
        if trainable_key not in slot.loaded:
            self._send(slot, (P.LOAD, trainable_key, payload))
            slot.loaded.add(trainable_key)
        self._send(slot, (P.START, P.spec_to_send(spec)))
        if slot.conn is not None:
            self._poll(slot)
        else:
            self._connecting += 1
        if not slot.placed:
            self._unplaced += 1

    def send(self, trial, message: Any) -> None:
        slot = self._by_trial.get(trial)
        if slot is not None:
            self._send(slot, message)

    def call(self, trial, message: Any) -> Any:
        """Sends a message to a trial's actor and waits for its reply (the actor must be waiting)."""
        slot = self._by_trial[trial]
        slot.conn.send(message)
        return slot.conn.recv()

    def release_trial(self, trial, reuse: bool = True) -> None:
        """Frees the trial's slot: it waits for the next trial of the same request, or is given back."""
        slot = self._by_trial.pop(trial, None)
        if slot is None:
            return
        if slot.conn is None and not slot.dead:
            self._connecting -= 1
        if not slot.placed and not slot.dead:
            self._unplaced -= 1
        if slot.verified:
            self._unpoll(slot)  # an unverified slot stays polled until its storage answer comes
        slot.trial = None
        if reuse and not self._starved() and not slot.dead and not slot.closing and (
                slot.conn is not None or not slot.outbox):
            self._idle.setdefault(slot.pgf, []).append(slot)
        else:
            self._retire(slot)

    def _starved(self) -> bool:
        """True when a trial has waited for its placement group longer than _PLACEMENT_PATIENCE_S."""
        if not self._unplaced:
            return False
        limit = time.monotonic() - _PLACEMENT_PATIENCE_S
        return any(not s.placed and s.assigned_at < limit for s in self._by_trial.values())

    def kill_trial_worker(self, trial) -> None:
        slot = self._by_trial.get(trial)
        if slot is not None:
            self._kill(slot)

    def worker_pid(self, trial) -> int | None:
        slot = self._by_trial.get(trial)
        return slot.pid if slot is not None else None

    def worker_location(self, trial) -> WorkerLocation:
        """The node that runs the trial and its actor's pid (the driver's host until the actor started)."""
        slot = self._by_trial.get(trial)
        if slot is None or not slot.node_ip:
            return super().worker_location(trial)
        return WorkerLocation(slot.hostname, slot.node_ip, slot.pid)

    def trial_node_id(self, trial) -> str | None:
        """The Ray node id of the trial's actor (None until it has started)."""
        slot = self._by_trial.get(trial)
        return slot.node_id or None if slot is not None else None

    # -- events ------------------------------------------------------------------------------------
    def wait(self, timeout: float | None) -> list[TrialEvent]:
        ms = None if timeout is None else max(0, int(timeout * 1000))
        events: list[TrialEvent] = []
        for fd, _ in self._poller.poll(ms):
            if fd == self._wake_r:
                self._take_ended(events)
                continue
            if fd == self._listener.fileno():
                self._accept()
                continue
            slot = self._by_fd.get(fd)
            if slot is not None and not slot.verified:
                self._verify(slot, events)
                continue
            if slot is None or slot.trial is None:
                continue
            trial = slot.trial
            try:
                msg = slot.conn.recv()
            except (EOFError, OSError):
                events.append(TrialEvent(trial, self._death(slot, None)))
                continue
            if msg[0] == P.READY:
                slot.ready = True
                continue
            events.append(TrialEvent(trial, msg))
        if self._idle and self._starved():
            # A trial waits for room that idle slots may hold: give them back.
            for slots in self._idle.values():
                while slots:
                    self._retire(slots.pop())
        return events

    def _accept(self) -> None:
        while True:
            conn = A.accept(self._listener, self._authkey)
            if conn is None:
                return
            try:
                slot_id, pid, node_id, node_ip, hostname = conn.recv()
            except Exception:
                conn.close()
                continue
            slot = self._slots.get(slot_id)
            if slot is None or slot.closing or slot.dead:
                try:
                    conn.send((P.EXIT,))
                except OSError:
                    pass
                conn.close()
                continue
            slot.conn, slot.fd, slot.pid = conn, conn.fileno(), pid
            slot.node_id, slot.node_ip, slot.hostname = node_id, node_ip, hostname
            marker = self._marker or (None, None)
            try:
                conn.send(("storage",) + marker)
            except OSError:
                pass  # the actor is gone: its socket or the watcher reports it
            if slot.trial is not None:
                self._connecting -= 1
            self._poll(slot)  # for its storage answer; the outbox waits for it

    def _verify(self, slot: _Slot, events: list) -> None:
        """Reads an actor's answer about the storage marker; sends its outbox when its node sees it."""
        try:
            problem = slot.conn.recv()
        except (EOFError, OSError):
            if slot.trial is not None:
                events.append(TrialEvent(slot.trial, self._death(slot, None)))
            else:
                self._unpoll(slot)
                self._close_conn(slot)  # the watcher reports the idle actor's end
            return
        if problem is not None:
            self._retire(slot)
            if not self._storage_failed:
                self._storage_failed = True
                raise A.storage_not_shared(self._marker_dir, f"node {slot.node_ip} ({slot.node_id[:12]}): {problem}")
            return
        slot.verified = True
        outbox, slot.outbox = slot.outbox, []
        for message in outbox:
            self._send(slot, message)
        if slot.trial is None:
            self._unpoll(slot)

    def _death(self, slot: _Slot, error: BaseException | None) -> tuple:
        """The ERROR message for a trial whose actor died; forgets the slot."""
        trial = slot.trial
        if error is None and slot.serve_ref is not None:
            # The socket closed first: ask Ray why, briefly (a dead node may take a moment to be known).
            ready, _ = self._ray.wait([slot.serve_ref], timeout=2.0)
            if ready:
                try:
                    self._ray.get(ready[0])
                except Exception as exc:
                    error = exc
        where = f"pid {slot.pid}, node {slot.node_ip or '?'} {slot.node_id[:12]}".strip()
        reason = f": {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}" \
            if error is not None else " (its connection to the driver closed)"
        text = f"The Ray actor ({where}) running trial {trial} died before the trial finished{reason}\n"
        was_ready = slot.ready
        slot.dead = True
        if slot.conn is None:
            self._connecting -= 1
        if not slot.placed:
            self._unplaced -= 1
        self._unpoll(slot)
        self._close_conn(slot)
        self._by_trial.pop(trial, None)
        slot.trial = None
        if not slot.closing:
            slot.closing = True
            self._hold(slot.pgf, -1.0)
        self._remove(slot)
        self._totals_checked = 0.0  # a node may have gone: look at the cluster again
        msg = (P.ERROR, text, None)
        return msg if was_ready else msg + (P.STARTUP_PHASE,)

    def _take_ended(self, events: list) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            ended, self._ended = self._ended, []
        for ref, slot in ended:
            if ref is slot.ready_ref:
                if not slot.placed and not slot.dead:
                    slot.placed = True
                    if slot.trial is not None:
                        self._unplaced -= 1
                continue
            if slot.trial is not None and not slot.dead:
                error = None
                try:
                    self._ray.get(slot.serve_ref)
                except Exception as exc:
                    error = exc
                events.append(TrialEvent(slot.trial, self._death(slot, error)))
            elif not slot.dead:
                slot.dead = True
                if not slot.closing:  # an idle actor died
                    slot.closing = True
                    self._hold(slot.pgf, -1.0)
                    self._unpoll(slot)
                    self._close_conn(slot)
                self._remove(slot)

    def _watch(self) -> None:
        ray = self._ray
        while not self._closing.is_set():
            with self._lock:
                refs = list(self._watched)
            if not refs:
                self._closing.wait(0.05)
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.1, fetch_local=False)
            except Exception:
                if self._closing.is_set():
                    return
                self._closing.wait(0.1)
                continue
            if not ready:
                continue
            with self._lock:
                for ref in ready:
                    slot = self._watched.pop(ref, None)
                    if slot is not None:
                        self._ended.append((ref, slot))
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):
                pass

    # -- storage -----------------------------------------------------------------------------------
    def check_storage(self, storage) -> None:
        """Makes every actor prove that its node sees the experiment's storage before it runs a trial.

        The driver writes a marker file into the experiment directory; each actor, when it
        dials back, looks for it and gets no trial unless it sees it (a trainer's workers look
        too). A node that does not see it fails the run with an error that says so. The check
        costs no process of its own: it rides on the actors' start.
        """
        name = f".tunesmith_storage_check_{uuid.uuid4().hex[:12]}"
        fs = storage.storage_filesystem if storage.is_remote else None
        if fs is not None:
            path = f"{storage.experiment_fs_path}/{name}"
            with fs.open_output_stream(path) as f:
                f.write(b"tunesmith")
        else:
            os.makedirs(storage.experiment_local_path, exist_ok=True)
            path = os.path.join(storage.experiment_local_path, name)
            with open(path, "w") as f:
                f.write("tunesmith")
        self._marker = (path, fs)
        self._marker_dir = storage.experiment_path

    def _remove_marker(self) -> None:
        if self._marker is None:
            return
        path, fs = self._marker
        self._marker = None
        try:
            if fs is not None:
                fs.delete_file(path)
            else:
                os.remove(path)
        except OSError:
            pass

    # -- shutdown ----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        if self._closing.is_set():
            return
        slots = list(self._slots.values())
        for slot in slots:
            if slot.trial is not None:
                self._kill(slot)  # still inside user code: it cannot hear EXIT
            elif slot.conn is not None:
                try:
                    slot.conn.send((P.EXIT,))
                except OSError:
                    pass
        refs = [s.serve_ref for s in slots if s.serve_ref is not None and s.trial is None and s.conn is not None]
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=2.0)
        self._closing.set()
        self._watcher.join(timeout=2.0)
        for slot in slots:
            self._unpoll(slot)
            self._close_conn(slot)
            self._remove(slot)
        self._idle.clear()
        self._by_trial.clear()
        self._slots.clear()
        self._used.clear()
        try:
            self._poller.unregister(self._listener.fileno())
        except (KeyError, ValueError):
            pass
        self._listener.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._remove_marker()
