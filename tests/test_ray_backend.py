"""The Ray backend on a real local Ray cluster of 3 nodes (``ray.cluster_utils.Cluster``).

Trials run as Ray actors through ``Tuner.fit()``; what a user sees is checked
in the results and in Ray's own actor and placement group tables.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")

import tunesmith  # noqa: E402
from tunesmith import train, tune  # noqa: E402
from tunesmith.train import Checkpoint  # noqa: E402

pytestmark = [pytest.mark.ray_cluster, pytest.mark.timeout(600)]

NODE_CPUS = 2


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.pop("RAY_ADDRESS", None)
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": NODE_CPUS, "resources": {"head": 1}, "include_dashboard": False,
    })
    nodes = {"head": c.head_node}
    for name in ("n1", "n2"):
        nodes[name] = c.add_node(num_cpus=NODE_CPUS, resources={name: 1})
    c.wait_for_nodes()
    tunesmith.init(address=c.address)
    c.named = nodes
    try:
        yield c
    finally:
        tunesmith.init()
        ray.shutdown()
        c.shutdown()


def _node_id(cluster, name):
    return cluster.named[name].node_id


def _actors(class_name):
    """Ray's actor table (from the GCS; the state API would need the dashboard): ``(node_id, pid, start)``."""
    from ray._private import state

    return [
        (a["Address"]["NodeID"], a["Pid"], a["StartTime"])
        for a in state.actors().values() if a["ActorClassName"] == class_name
    ]


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


# -- trials spread over the nodes ------------------------------------------------------------------------
def meet_then_report(config):
    """Each trial waits until all of its siblings run, so that the three run at once."""
    import ray as _ray

    here = config["dir"]
    open(os.path.join(here, f"{config['i']}.started"), "w").close()
    deadline = time.time() + 120
    while len([f for f in os.listdir(here) if f.endswith(".started")]) < config["n"] and time.time() < deadline:
        time.sleep(0.05)
    tune.report({"node": _ray.get_runtime_context().get_node_id(), "pid": os.getpid()})


def test_trials_spread_over_nodes_as_ray_actors(cluster, tmp_path):
    meet = tmp_path / "meet"
    meet.mkdir()
    trainable = tune.with_resources(meet_then_report, {"cpu": NODE_CPUS})  # one trial fills a node
    grid = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search([0, 1, 2]), "n": 3, "dir": str(meet)},
        tune_config=tune.TuneConfig(reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert not grid.errors
    results = [r.metrics for r in grid]
    nodes = {r["node"] for r in results}
    assert nodes == {_node_id(cluster, n) for n in ("head", "n1", "n2")}
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    for r in results:
        assert r["node_ip"] == ips[r["node"]]
        assert r["hostname"] == socket.gethostname()
    # Ray's actor table shows the trial actors on those nodes, with the pids the results name.
    actors = {(node, pid) for node, pid, _ in _actors("TrialActor")}
    assert {(r["node"], r["pid"]) for r in results} <= actors
    # The storage marker each actor looked for is gone with the run.
    experiment = os.path.dirname(grid[0].path)
    assert not [f for f in os.listdir(experiment) if f.startswith(".tunesmith_storage_check")]


def where_am_i(config):
    import ray as _ray

    pg = _ray.util.get_current_placement_group()
    table = _ray.util.placement_group_table(pg)
    tune.report({
        "node": _ray.get_runtime_context().get_node_id(),
        "strategy": table["strategy"],
        "bundles": json.dumps([table["bundles"][i] for i in sorted(table["bundles"])]),
        "bundle_nodes": json.dumps([table["bundles_to_node_id"][i] for i in sorted(table["bundles_to_node_id"])]),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
    })


@pytest.mark.parametrize("strategy", ["STRICT_SPREAD", "STRICT_PACK"])
def test_placement_groups_are_honoured(cluster, tmp_path, strategy):
    pgf = tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1, "n1": 0.5}], strategy=strategy)
    grid = tune.Tuner(
        tune.with_resources(where_am_i, pgf), param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert not grid.errors
    for result in grid:
        m = result.metrics
        assert m["strategy"] == strategy
        assert json.loads(m["bundles"]) == [{"CPU": 1.0}, {"CPU": 1.0, "n1": 0.5}]
        bundle_nodes = json.loads(m["bundle_nodes"])
        assert bundle_nodes[1] == _node_id(cluster, "n1")  # the custom resource lives on n1 only
        assert m["node"] == bundle_nodes[0]  # the trial's actor sits in the first bundle
        if strategy == "STRICT_SPREAD":
            assert bundle_nodes[0] != bundle_nodes[1]
        else:
            assert bundle_nodes[0] == bundle_nodes[1]


def test_custom_resources_pin_trials_and_actors_are_reused(cluster, tmp_path):
    def on_n2(config):
        import ray as _ray

        tune.report({"node": _ray.get_runtime_context().get_node_id(), "pid": os.getpid()})

    grid = tune.Tuner(
        tune.with_resources(on_n2, {"cpu": 1, "custom_resources": {"n2": 1}}),
        param_space={"x": tune.grid_search(list(range(4)))},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert not grid.errors
    metrics = [r.metrics for r in grid]
    assert {m["node"] for m in metrics} == {_node_id(cluster, "n2")}
    assert len({m["pid"] for m in metrics}) == 1  # n2 holds one such trial at a time: one actor ran all four


# -- a node dies mid-run ---------------------------------------------------------------------------------------
def checkpointing_trial(config):
    import ray as _ray

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.load(open(os.path.join(d, "state.json")))["step"]
    node = _ray.get_runtime_context().get_node_id()
    for step in range(start + 1, config["steps"] + 1):
        time.sleep(0.2)
        d = os.path.join(config["scratch"], f"{train.get_context().get_trial_id()}_{step}_{os.getpid()}")
        os.makedirs(d)
        json.dump({"step": step}, open(os.path.join(d, "state.json"), "w"))
        tune.report({"step": step, "node": node, "resumed_from": start}, checkpoint=Checkpoint.from_directory(d))
        if step >= 3:
            open(os.path.join(config["scratch"], f"{node}.{train.get_context().get_trial_id()}.past3"), "a").close()


def test_a_node_killed_mid_run_and_every_trial_still_finishes(cluster, tmp_path):
    victim = cluster.add_node(num_cpus=NODE_CPUS, resources={"victim": 1})
    cluster.wait_for_nodes()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    n = 4 * NODE_CPUS  # every CPU of the four nodes runs a trial

    def kill_when_its_trials_checkpointed():
        past = lambda: [f for f in os.listdir(scratch) if f.startswith(victim.node_id) and f.endswith(".past3")]  # noqa: E731
        _wait_for(lambda: len(past()) >= 1, timeout=300)
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=kill_when_its_trials_checkpointed, daemon=True)
    killer.start()
    start = time.monotonic()
    grid = tune.Tuner(
        checkpointing_trial,
        param_space={"x": tune.grid_search(list(range(n))), "steps": 12, "scratch": str(scratch)},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "results"), verbose=0, failure_config=tune.FailureConfig(max_failures=3),
        ),
    ).fit()
    killer.join(timeout=5)
    assert not killer.is_alive()
    assert time.monotonic() - start < 300
    assert not grid.errors
    assert all(r.metrics["step"] == 12 for r in grid)
    moved = [r for r in grid if r.metrics["resumed_from"] > 0]
    assert moved, "no trial was retried after its node died"
    for result in moved:
        df = result.metrics_dataframe
        assert result.metrics["node"] != victim.node_id
        # It went on from its latest checkpoint: every step once, none lost, none repeated.
        assert sorted(df["step"]) == list(range(1, 13))
    # The node died after one of its trials had checkpointed step 3 (others may have been behind).
    assert max(r.metrics["resumed_from"] for r in moved) >= 3
    assert {r.metrics["node"] for r in grid} <= {_node_id(cluster, k) for k in ("head", "n1", "n2")}


# -- a TorchTrainer over two nodes -------------------------------------------------------------------------
def allreduce_loop(config):
    import ray as _ray
    import torch
    import torch.distributed as dist

    ctx = train.get_context()
    rank = ctx.get_world_rank()
    where = {
        "node": _ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "node_rank": ctx.get_node_rank(),
        "pg": _ray.util.get_current_placement_group().id.hex(), "cwd": os.getcwd(),
    }
    with open(os.path.join(config["scratch"], f"rank{rank}.json"), "w") as f:
        json.dump(where, f)
    for step in range(2):
        t = torch.tensor([float(rank + 1)])
        dist.all_reduce(t)
        train.report({"sum": t.item(), "world": dist.get_world_size(), "step": step})


def test_torch_trainer_with_two_workers_on_two_nodes(cluster, tmp_path):
    pytest.importorskip("torch")
    from tunesmith.train import ScalingConfig
    from tunesmith.train.torch import TorchTrainer

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    trainer = TorchTrainer(
        allreduce_loop, train_loop_config={"scratch": str(scratch)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1},
                                     placement_strategy="STRICT_SPREAD"),
        run_config=train.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    )
    result = trainer.fit()
    assert result.error is None
    assert result.metrics["sum"] == 3.0 and result.metrics["world"] == 2  # ranks 0 and 1 joined one group
    assert len(result.metrics_dataframe) == 2
    ranks = [json.load(open(scratch / f"rank{r}.json")) for r in (0, 1)]
    # One actor per worker, on two nodes (STRICT_SPREAD), in the trial's one placement group.
    assert ranks[0]["node"] != ranks[1]["node"]
    assert sorted(r["node_rank"] for r in ranks) == [0, 1]
    assert ranks[0]["pg"] == ranks[1]["pg"]
    assert {(r["node"], r["pid"]) for r in ranks} <= {(n, p) for n, p, _ in _actors("GroupWorkerActor")}
    # Both ranks work in the trial's directory (they ran in the Ray worker's own, shared by every trial).
    assert [r["cwd"] for r in ranks] == [result.path, result.path]


def rank_one_exits(config):
    if train.get_context().get_world_rank() == 1:
        os._exit(7)
    time.sleep(60)


def test_a_group_worker_that_exits_on_ray_is_not_called_killed_by_sigkill(cluster, tmp_path):
    """Any end of a worker's actor was reported as "killed by signal 9 (SIGKILL) ... out-of-memory killer"."""
    from tunesmith.train import DataParallelTrainer, ScalingConfig

    with pytest.raises(train.TrainingFailedError) as info:
        DataParallelTrainer(rank_one_exits, scaling_config=ScalingConfig(num_workers=2),
                            run_config=train.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    text = str(info.value)
    assert "rank 1" in text and "ended when its Ray actor died" in text
    assert "SIGKILL" not in text and "out-of-memory" not in text


# -- Tuner.restore on the cluster -------------------------------------------------------------------------
def fails_once(config):
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.load(open(os.path.join(d, "state.json")))["step"]
    for step in range(start + 1, 7):
        d = os.path.join(config["scratch"], f"{train.get_context().get_trial_id()}_{step}_{time.time_ns()}")
        os.makedirs(d)
        json.dump({"step": step}, open(os.path.join(d, "state.json"), "w"))
        tune.report({"step": step}, checkpoint=Checkpoint.from_directory(d))
        if step == 3 and os.path.exists(config["fail_flag"]):
            raise RuntimeError("failing on purpose at step 3")


def test_tuner_restore_on_the_cluster(cluster, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    flag = tmp_path / "fail"
    flag.touch()
    storage = str(tmp_path / "results")
    space = {"x": tune.grid_search([0, 1, 2]), "scratch": str(scratch), "fail_flag": str(flag)}
    grid = tune.Tuner(
        fails_once, param_space=space,
        run_config=tune.RunConfig(name="restore_me", storage_path=storage, verbose=0),
    ).fit()
    assert len(grid.errors) == 3
    flag.unlink()
    path = os.path.join(storage, "restore_me")
    assert tune.Tuner.can_restore(path)
    grid = tune.Tuner.restore(path, trainable=fails_once, resume_errored=True).fit()
    assert not grid.errors
    for result in grid:
        assert result.metrics["step"] == 6
        assert sorted(result.metrics_dataframe["step"]) == [1, 2, 3, 4, 5, 6]


# -- storage every node must see ------------------------------------------------------------------------------
def test_storage_that_the_nodes_do_not_share_fails_up_front(cluster, tmp_path):
    import fsspec
    import pyarrow.fs

    # fsspec's memory filesystem lives in one process: the nodes' processes cannot see it.
    fs = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fsspec.filesystem("memory")))
    ran = tmp_path / "ran"
    ran.mkdir()

    def touch(config):
        open(os.path.join(str(ran), "x"), "w").close()
        tune.report({"x": 1})

    with pytest.raises(RuntimeError, match="not shared with every node of the Ray cluster"):
        tune.Tuner(touch, run_config=tune.RunConfig(
            storage_path="/unshared", storage_filesystem=fs, name="exp", verbose=0)).fit()
    assert not os.listdir(ran)  # no trial ran


def test_a_node_that_misses_the_marker_says_why(tmp_path):
    from tunesmith._internal.backend import _ray_actors as A

    marker = tmp_path / ".marker"
    assert A.marker_seen(None) is None
    assert A.marker_seen((str(marker), None)) == "it cannot see a file the driver wrote there"
    marker.touch()
    assert A.marker_seen((str(marker), None)) is None

    class Unreachable:
        def get_file_info(self, path):
            raise OSError("no route to host")

    assert A.marker_seen(("bucket/x", Unreachable())) == "looking for it failed: OSError: no route to host"
    error = A.storage_not_shared("/data/exp", "node 10.0.0.2 (abc): it cannot see a file the driver wrote there")
    assert "'/data/exp' is not shared with every node of the Ray cluster: node 10.0.0.2" in str(error)


# -- choosing the backend --------------------------------------------------------------------------------------
_SCRIPT = """
import sys
from tunesmith import tune
if len(sys.argv) > 2:  # the seed's distributed run: the script connects to the cluster itself
    import ray
    ray.init(address=sys.argv[2])
def f(config):
    tune.report({"ray_in_trial": "ray" in sys.modules})
grid = tune.Tuner(f, run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0)).fit()
print("RESULT", grid[0].metrics["ray_in_trial"], "ray" in sys.modules, grid[0].metrics["pid"])
"""


def _run_script(tmp_path, env_extra, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TUNESMITH_ADDRESS")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "results"), *args], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")][-1]
    return line.split()[1:]


def test_the_environment_picks_the_ray_backend_and_without_it_nothing_imports_ray(cluster, tmp_path):
    in_trial, in_driver, _ = _run_script(tmp_path, {"RAY_ADDRESS": cluster.address})
    assert (in_trial, in_driver) == ("True", "True")  # the trial ran inside a Ray actor
    in_trial, in_driver, _ = _run_script(tmp_path, {"TUNESMITH_ADDRESS": cluster.address})
    assert (in_trial, in_driver) == ("True", "True")
    in_trial, in_driver, _ = _run_script(tmp_path, {"RAY_ADDRESS": cluster.address, "TUNESMITH_ADDRESS": "local"})
    assert (in_trial, in_driver) == ("False", "False")
    in_trial, in_driver, _ = _run_script(tmp_path, {})
    assert (in_trial, in_driver) == ("False", "False")


_SHUTDOWN_SCRIPT = """
import sys
import ray
import tunesmith
ray.init(address=sys.argv[1])
ref = ray.put(41)
tunesmith.init(address=sys.argv[1])  # the same cluster, named to tunesmith too
tunesmith.shutdown()
print("RESULT", ray.is_initialized(), ray.get(ref) + 1)
"""


def test_tunesmith_shutdown_leaves_a_connection_the_script_made(cluster):
    """tunesmith.shutdown() closed the script's own ray.init connection (its objects lost) whenever an address
    was also given to tunesmith or in RAY_ADDRESS."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TUNESMITH_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", _SHUTDOWN_SCRIPT, cluster.address], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESULT True 42" in out.stdout


def test_a_script_that_connects_to_ray_itself_runs_its_trials_there(cluster, tmp_path):
    """Seed 004's distributed run calls ray.init(address=...) before Tuner.fit(): the trials ran on this
    machine's worker pool instead, and ray.get of the script's objects failed in them."""
    from tunesmith._internal.backend.ray_backend import connect

    connect(cluster.address)
    _, _, pid = _run_script(tmp_path, {}, cluster.address)
    assert int(pid) in {p for _, p, _ in _actors("TrialActor")}  # the trial ran in a Ray actor
    # TUNESMITH_ADDRESS=local (or tunesmith.init(address="local")) still keeps them here.
    _, _, pid = _run_script(tmp_path, {"TUNESMITH_ADDRESS": "local"}, cluster.address)
    assert int(pid) not in {p for _, p, _ in _actors("TrialActor")}


def test_put_and_get_on_the_cluster(cluster):
    """`import tunesmith as ray`: put() gives a Ray object reference on a cluster, and get() takes it."""
    ref = tunesmith.put({"weights": [1, 2, 3]})
    assert type(ref).__module__ == "ray"
    assert tunesmith.get(ref) == {"weights": [1, 2, 3]}
    assert tunesmith.get([ref, ref])[1]["weights"] == [1, 2, 3]


def _reads_refs(config, table=None):
    value = tunesmith.get(config["ref"], timeout=60)
    extra = tunesmith.get(table, timeout=60) if table is not None else None
    train.report({"weights": value["weights"], "table": extra})


def test_trials_read_object_references_of_their_config(cluster, tmp_path):
    """A config (a grid of them too) and tune.with_parameters may hold references from put(); the trial's
    get() reads them on its node. Sent without their owner, get() waited forever."""
    refs = [tunesmith.put({"weights": [i, i]}) for i in (1, 2)]
    table = tunesmith.put("shared")
    grid = tune.Tuner(
        tune.with_parameters(_reads_refs, table=table),
        param_space={"ref": tune.grid_search(refs)},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
    ).fit()
    assert not grid.errors
    assert sorted((r.metrics["weights"], r.metrics["table"]) for r in grid) == [([1, 1], "shared"), ([2, 2], "shared")]

    from tunesmith.train.torch import TorchTrainer

    result = TorchTrainer(
        _reads_refs, train_loop_config={"ref": refs[0]},
        scaling_config=train.ScalingConfig(num_workers=2),
        run_config=train.RunConfig(storage_path=str(tmp_path / "train"), verbose=0),
    ).fit()
    assert result.error is None and result.metrics["weights"] == [1, 1]


def _reports_its_node(config):
    import ray as _ray

    train.report({"node": _ray.get_runtime_context().get_node_id()})


def _starts_a_task(config):
    import ray as _ray

    @_ray.remote(num_cpus=1)
    def where():
        pg = _ray.util.get_current_placement_group()
        return pg.id.hex() if pg is not None else None

    tune.report({"task_pg": _ray.get(where.remote(), timeout=60),
                 "trial_pg": _ray.util.get_current_placement_group().id.hex()})


def test_tasks_a_trial_starts_run_in_its_placement_group(cluster, tmp_path):
    """Seed 004 (FAQ): PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}]) gives a trial a CPU for its own tasks;
    they ran outside it (and on a full cluster never ran)."""
    grid = tune.Tuner(
        tune.with_resources(_starts_a_task, tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert not grid.errors
    assert grid[0].metrics["task_pg"] == grid[0].metrics["trial_pg"]


def test_a_task_no_bundle_of_the_trial_can_hold_fails_the_trial_and_says_what_to_reserve(cluster, tmp_path):
    """A trial with one bundle that started a 1-CPU task waited forever (its own bundle is in use);
    on Ray the launch fails at once with an error naming the PlacementGroupFactory to use."""
    grid = tune.Tuner(
        _starts_a_task, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    (error,) = grid.errors
    assert "tune.PlacementGroupFactory([{'CPU': 1.0}] + [{'CPU': 1.0}] * N)" in str(error)
    assert "where" in str(error)


def _sees_the_free_cpus(config):
    import time as _time

    import ray as _ray

    total = _ray.cluster_resources()["CPU"]
    deadline, free = _time.monotonic() + 30, 0.0
    while _time.monotonic() < deadline:
        free = max(free, _ray.available_resources().get("CPU", 0.0))
        if free >= total - 0.5:  # all but this trial's half CPU
            break
        _time.sleep(0.1)
    tune.report({"free": free, "total": total})


def test_no_idle_actor_holds_cpus_a_trial_with_other_resources_could_use(cluster, tmp_path):
    """Actors of one CPU were started ahead whatever the trials asked for: with 0.5-CPU trials one sat
    idle for the whole run, and Ray work a trial started outside its placement group (Ray Data) waited."""
    (result,) = tune.Tuner(
        tune.with_resources(_sees_the_free_cpus, {"cpu": 0.5}),
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert result.metrics["free"] == result.metrics["total"] - 0.5


def test_a_trial_waits_for_a_node_that_has_what_it_asks_for(cluster, tmp_path):
    """As on Ray (and its autoscaler): a request beyond the cluster of now waits for nodes; it was refused."""
    grids = []
    fit = threading.Thread(target=lambda: grids.append(tune.Tuner(
        tune.with_resources(_reports_its_node, {"cpu": 1, "late": 1}),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()))
    fit.start()
    time.sleep(3)  # the trial is waiting (a node cannot be added from another thread than this one)
    late = cluster.add_node(num_cpus=1, resources={"late": 1})
    try:
        fit.join(timeout=240)
        assert grids and not grids[0].errors and grids[0][0].metrics["node"] == late.node_id
    finally:
        cluster.remove_node(late)


def test_a_trainers_resources_are_checked_against_the_cluster(cluster, tmp_path):
    """A worker asking for a resource only a cluster node has runs there (this machine has none of it)."""
    from tunesmith.train import ScalingConfig
    from tunesmith.train.data_parallel_trainer import DataParallelTrainer

    trainer = DataParallelTrainer(
        _reports_its_node,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1, "n1": 1}),
        run_config=train.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    result = trainer.fit()
    assert result.metrics["node"] == _node_id(cluster, "n1")
    # More than the cluster has now: said, not refused (as on Ray, nodes that have it may join).
    with pytest.warns(UserWarning, match="the Ray cluster has.*waits for such nodes"):
        DataParallelTrainer._check_resources(ScalingConfig(num_workers=1, resources_per_worker={"n1": 5}))
