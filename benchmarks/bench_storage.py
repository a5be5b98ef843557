"""Remote storage against local disk: seed 004's "durable trainable" benchmark, scaled to this machine.

Each of ``--trials`` trials reports a result with a ``--ckpt-mb`` MB checkpoint
every ``--every`` seconds for ``--duration`` seconds. The same experiment runs
twice, one after the other: on local disk, then on ``s3://`` against moto's S3
server on 127.0.0.1. The script prints the wall time of each run side by side,
the overhead of S3 against local, and the bytes each kind of process sent to
the S3 server. Those bytes are counted by a TCP relay in front of the server
that looks up, for every connection, which process opened it: the driver's
share shows whether it relays checkpoint bytes (it must not; workers upload
their own). The load average is printed with the figures, since this machine
is shared.

Run: ``python benchmarks/bench_storage.py [--trials 8] [--duration 60] [--every 2] [--ckpt-mb 10]``
(needs ``moto[server]`` and ``boto3``, which the ``test`` extra installs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
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
    print(json.dumps({"wall_s": wall, "results": sum(r.metrics["step"] for r in grid), "driver_pid": os.getpid()}))
""")


class CountingRelay:
    """A TCP relay to the S3 server that adds up the bytes each client process sends through it."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.sent_by_pid: dict[int, int] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _owner(self, peer_port: int) -> int:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == peer_port and conn.raddr and conn.raddr.port == self.port:
                return conn.pid or -1
        return -1

    def _accept(self) -> None:
        while True:
            client, (_, peer_port) = self.sock.accept()
            pid = self._owner(peer_port)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, pid), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pid: int | None) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if pid is not None:
                    with self._lock:
                        self.sent_by_pid[pid] = self.sent_by_pid.get(pid, 0) + len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _run(storage: str, args, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RUN, storage, str(args.trials), str(args.duration), str(args.every), str(args.ckpt_mb)],
        env=env, capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"the run on {storage} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    relay = CountingRelay(server.port)
    tmp = tempfile.mkdtemp(prefix="bench_storage_")
    try:
        bucket = server.create_bucket()
        env = dict(os.environ, **server.env(), TUNESMITH_STAGING_DIR=os.path.join(tmp, "staging"))
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{relay.port}"
        ceiling = _server_ceiling(server, bucket, args.ckpt_mb)
        load_before = os.getloadavg()
        local = _run(os.path.join(tmp, "local"), args, env)
        s3 = _run(f"s3://{bucket}/bench", args, env)
        load_after = os.getloadavg()
        total = sum(relay.sent_by_pid.values())
        driver = relay.sent_by_pid.get(s3["driver_pid"], 0)
        checkpoint_bytes = s3["results"] * args.ckpt_mb * 1024 * 1024
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
        print(f"bytes sent to S3: {total / 1e6:.1f} MB in all; checkpoints reported: {checkpoint_bytes / 1e6:.1f} MB")
        print(f"  by the driver: {driver / 1e6:.3f} MB ({100 * driver / max(total, 1):.2f}%; goal: no checkpoint bytes)")
        print(f"  by worker processes: {(total - driver) / 1e6:.1f} MB")
        print(f"bytes left in the bucket: {stored / 1e6:.1f} MB")
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
