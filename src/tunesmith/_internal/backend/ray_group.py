"""A trainer's worker group on a Ray cluster: one actor per training worker, in the trial's placement group.

The trial's actor sits in bundle 0 of the trial's placement group; training
worker ``rank`` goes into bundle ``rank + 1`` (``ScalingConfig`` builds the
bundles in that order), so the group's placement follows the
``ScalingConfig``'s ``placement_strategy``. Each worker actor dials back to the
trial's actor and runs the same ``run_worker`` as a local training worker
process; the supervisor (``train/_internal/supervisor.py``) watches them
through the same connections.
"""
from __future__ import annotations

import os
import pickle
import secrets
import time

from tunesmith._internal.backend import _ray_actors as A
from tunesmith._internal.fsutil import wait_readable


def on_ray() -> bool:
    """True inside a trial that the Ray backend runs (its worker group then uses Ray actors)."""
    return A.BUNDLE_OFFSET_ENV in os.environ


class RayWorkerHandle:
    """One training worker actor, with the interface of a local ``WorkerHandle``."""

    def __init__(self, rank: int, pid: int, conn, actor, ref):
        self.rank = rank
        self.pid = pid
        self.conn = conn
        self.actor = actor
        self.ref = ref
        self.returncode: int | None = None
        self.died_how: str | None = None  # Ray's account of the actor's end, when it died

    def kill(self) -> None:
        import ray

        if self.returncode is None:
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        """The worker's exit code once it has ended (-9 when its actor died), else None after ``timeout``."""
        import ray

        if self.returncode is not None:
            return self.returncode
        ready, _ = ray.wait([self.ref], timeout=timeout)
        if not ready:
            return None
        try:
            self.returncode = int(ray.get(ready[0]))
        except Exception as exc:
            self.returncode = -9
            # How Ray saw the actor end (an exit, a crash, its node's memory monitor): said instead of a signal.
            said = " ".join(str(exc).split())
            said = said if len(said) <= 400 else said[:400] + "..."
            self.died_how = f"ended when its Ray actor died ({said or type(exc).__name__})"
        return self.returncode

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class RayWorkerGroup:
    """Starts one Ray actor per ``WorkerSpec`` in the trial's placement group; ends them together.

    Args:
        specs: One spec per rank.
        resources_per_worker: Each worker's bundle, e.g. ``{"CPU": 1}``.
    """

    def __init__(self, specs: list, resources_per_worker: dict[str, float]):
        self.specs = specs
        self.resources = dict(resources_per_worker)
        self.handles: list[RayWorkerHandle] = []
        self._actors: list = []

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.shutdown(kill=True)
            raise

    def _start(self) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from tunesmith._internal import pickling
        from tunesmith._internal.backend.ray_backend import actor_options

        pg = ray.util.get_current_placement_group()
        offset = int(os.environ.get(A.BUNDLE_OFFSET_ENV, "0"))
        cls = ray.remote(A.GroupWorkerActor)
        sys_path = A.user_sys_path()
        for spec in self.specs:
            options = actor_options(self.resources)
            if pg is not None:
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=spec.rank + 1 + offset,
                    placement_group_capture_child_tasks=False,
                )
            self._actors.append(cls.options(max_restarts=0, **options).remote(sys_path))
        timeout = float(os.environ.get("TUNESMITH_RAY_GROUP_START_TIMEOUT_S", "600"))
        marker = A.storage_marker
        infos = ray.get([a.info.remote(marker) for a in self._actors], timeout=timeout)
        for rank, info in enumerate(infos):
            if info[4] is not None:
                raise A.storage_not_shared(
                    os.path.dirname(marker[0]), f"node {info[1]} ({info[0][:12]}) of rank {rank}: {info[4]}")

        # Ranks on the same node get local ranks; nodes are numbered in the order of their first rank.
        nodes: dict[str, list[int]] = {}
        for rank, (node_id, *_) in enumerate(infos):
            nodes.setdefault(node_id, []).append(rank)
        node_rank = {node: i for i, node in enumerate(nodes)}
        master_ip, master_port = infos[0][1], infos[0][3]
        listener = A.listen(ray.util.get_node_ip_address())
        authkey = secrets.token_bytes(32)
        refs = []
        try:
            for spec, actor, (node_id, *_) in zip(self.specs, self._actors, infos):
                peers = nodes[node_id]
                spec.local_rank = peers.index(spec.rank)
                spec.local_world_size = len(peers)
                spec.node_rank = node_rank[node_id]
                spec.env.update({
                    "MASTER_ADDR": master_ip, "MASTER_PORT": str(master_port),
                    "LOCAL_WORLD_SIZE": str(len(peers)), "NODE_RANK": str(node_rank[node_id]),
                })
                address = listener.getsockname()[:2]
                refs.append(actor.run.remote(pickling.dumps(spec), address, authkey))
            self.handles = self._accept_all(listener, authkey, refs, infos, timeout)
        finally:
            listener.close()

    def _accept_all(self, listener, authkey: bytes, refs: list, infos: list, timeout: float) -> list:
        import ray

        handles: dict[int, RayWorkerHandle] = {}
        deadline = time.monotonic() + timeout
        while len(handles) < len(refs):
            ready = wait_readable([listener], 0.5)
            if ready:
                conn = A.accept(listener, authkey)
                if conn is not None:
                    rank = pickle.loads(conn.recv_bytes())
                    handles[rank] = RayWorkerHandle(rank, infos[rank][2], conn, self._actors[rank], refs[rank])
                continue
            # A worker that ended before it connected failed to start: say why.
            done, _ = ray.wait(refs, num_returns=1, timeout=0)
            for ref in done:
                rank = refs.index(ref)
                if rank not in handles:
                    ray.get(ref)  # raises the actor's error
                    raise RuntimeError(f"Training worker rank {rank} ended before it connected to the trial.")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Only {len(handles)} of {len(refs)} training workers started within {timeout:g} s "
                    "(TUNESMITH_RAY_GROUP_START_TIMEOUT_S)."
                )
        return [handles[r] for r in range(len(refs))]

    def shutdown(self, kill: bool) -> None:
        """Ends every worker: at once with ``kill``, else after it returns on its own (killed after 5 s)."""
        import ray

        for handle in self.handles:
            if not kill:
                handle.wait(5.0)
            handle.close()
        for actor in self._actors:  # an actor's process outlives its worker's return: end it
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
