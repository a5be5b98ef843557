"""Remote storage against local disk: seed 004's "durable trainable" benchmark, scaled to this machine.

Each of ``--trials`` trials reports a result with a ``--ckpt-mb`` MB checkpoint
every ``--every`` seconds for ``--duration`` seconds. The same experiment runs
three times: on local disk, on ``s3://`` against moto's S3 server on
127.0.0.1, and on S3 again through a TCP relay in front of the server that
counts the bytes sent on each connection and whether the driver process opened
it. The first two give the wall times side by side and the overhead of S3
against local; the third gives the bytes the driver sent next to those of the
worker processes (goal: the driver sends no checkpoint bytes). The relay slows
uploads, so its run is not timed against local. The S3 server runs on the same
cores, so the script also measures what one client can put to it, and prints
the load average, since this machine is shared.

Run: ``python benchmarks/bench_storage.py [--trials 8] [--duration 60] [--every 2] [--ckpt-mb 10]``
(needs ``moto[server]`` and ``boto3``, which the ``test`` extra installs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import socket
import tempfile
import textwrap
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

RUN = textwrap.dedent("""
    import json, os, sys, tempfile, time
    import tunesmith
    from tunesmith import train, tune

    storage, trials, duration, every, mb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    tunesmith.init(num_cpus=trials)
    payload = os.urandom(mb * 1024 * 1024)

    def durable(config):
        start = time.time()
        step = 0
        while time.time() - start < duration:
            step += 1
            time.sleep(max(0.0, start + step * every - time.time()))
            d = tempfile.mkdtemp()
            with open(os.path.join(d, "weights.bin"), "wb") as f:
                f.write(payload)
            train.report({"step": step}, checkpoint=train.Checkpoint.from_directory(d))
            import shutil
            shutil.rmtree(d)

    t0 = time.perf_counter()
    grid = tune.Tuner(durable, param_space={"i": tune.grid_search(list(range(trials)))},
                      run_config=tune.RunConfig(name="durable", storage_path=storage, verbose=0,
                                                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                                sync_config=tune.SyncConfig(sync_period=5))).fit()
    wall = time.perf_counter() - t0
    assert not grid.errors, grid.errors
    print(json.dumps({"wall_s": wall, "results": sum(r.metrics["step"] for r in grid)}))
""")


class CountingRelay:
    """A TCP relay to the S3 server that counts the bytes clients send, the driver's apart."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.driver_pid: int | None = None
        self.sent = {"driver": 0, "others": 0}
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _opened_by_driver(self, peer_port: int) -> bool:
        import psutil

        try:  # only the driver's own sockets are looked at: cheap enough for every connection
            conns = psutil.Process(self.driver_pid).net_connections(kind="tcp")
        except (psutil.Error, TypeError, ValueError):
            return False
        return any(c.laddr and c.laddr.port == peer_port and c.raddr and c.raddr.port == self.port for c in conns)

    def _accept(self) -> None:
        while True:
            client, (_, peer_port) = self.sock.accept()
            who = "driver" if self._opened_by_driver(peer_port) else "others"
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, who), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, who: str | None) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if who is not None:
                    with self._lock:
                        self.sent[who] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _run(storage: str, args, env: dict, relay: CountingRelay | None = None) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, storage, str(args.trials), str(args.duration), str(args.every), str(args.ckpt_mb)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if relay is not None:
        relay.driver_pid = proc.pid
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the run on {storage} failed:\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _server_ceiling(server, bucket: str, mb: int) -> float:
    """MB/s one pyarrow client reaches putting checkpoint-sized objects to the server (no tunesmith)."""
    fs = server.filesystem()
    data = os.urandom(mb * 1024 * 1024)
    start = time.perf_counter()
    for i in range(3):
        with fs.open_output_stream(f"{bucket}/ceiling/{i}") as f:
            f.write(data)
    elapsed = time.perf_counter() - start
    fs.delete_dir(f"{bucket}/ceiling")
    return 3 * mb / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--ckpt-mb", type=int, default=10)
    args = parser.parse_args()

    from _s3_server import S3Server

    server = S3Server()
    tmp = tempfile.mkdtemp(prefix="bench_storage_")
    try:
        bucket = server.create_bucket()
        env = dict(os.environ, **server.env(), TUNESMITH_STAGING_DIR=os.path.join(tmp, "staging"))
        ceiling = _server_ceiling(server, bucket, args.ckpt_mb)
        load_before = os.getloadavg()
        local = _run(os.path.join(tmp, "local"), args, env)
        s3 = _run(f"s3://{bucket}/bench", args, env)
        load_after = os.getloadavg()
        relay = CountingRelay(server.port)
        relayed_env = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{relay.port}")
        counted = _run(f"s3://{bucket}/counted", args, relayed_env, relay)
        checkpoint_bytes = counted["results"] * args.ckpt_mb * 1024 * 1024
        stored = sum(o["Size"] for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
                     for o in page.get("Contents", []))
        print(f"{args.trials} trials, a {args.ckpt_mb} MB checkpoint every {args.every:g} s for {args.duration:g} s "
              f"(num_to_keep=2, sync_period=5)")
        demand = args.trials * args.ckpt_mb / args.every
        print(f"checkpoint bytes the trials ask to store: {demand:.1f} MB/s; one client putting "
              f"{args.ckpt_mb} MB objects through pyarrow to this server: {ceiling:.1f} MB/s")
        print(f"load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
        print(f"{'storage':<10}{'wall s':>10}{'results':>10}")
        print(f"{'local':<10}{local['wall_s']:>10.2f}{local['results']:>10}")
        print(f"{'s3':<10}{s3['wall_s']:>10.2f}{s3['results']:>10}")
        print(f"S3 overhead against local: {100 * (s3['wall_s'] / local['wall_s'] - 1):+.1f}% (goal: within 10%)")
        sent = relay.sent
        print(f"counted run (through the relay): {counted['results']} results, "
              f"{checkpoint_bytes / 1e6:.1f} MB of checkpoints reported")
        print(f"  bytes sent to S3 by the driver: {sent['driver'] / 1e6:.3f} MB (goal: no checkpoint bytes)")
        print(f"  bytes sent to S3 by worker processes: {sent['others'] / 1e6:.1f} MB")
        print(f"bytes left in the bucket: {stored / 1e6:.1f} MB")
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
