"""Read back what the experiment trackers recorded, from their own files and APIs."""
from __future__ import annotations

import glob
import json
import os
import struct
import zipfile


def wandb_records(run_file: str):
    """The protobuf records of a W&B run file (``run-<id>.wandb``), in order.

    The file is W&B's transaction log: a 7-byte header, then 32 KiB blocks of
    records, each with a 7-byte header (checksum, length, kind) and split
    across blocks as first/middle/last parts.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    with open(run_file, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    block = 32768
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            payload = chunk
        elif kind == 2:
            parts = chunk
            continue
        elif kind == 3:
            parts += chunk
            continue
        else:
            payload, parts = parts + chunk, b""
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def wandb_run(trial_dir: str) -> dict:
    """The run W&B kept offline in a trial directory: id, name, config, history, artifacts, exit code."""
    files = glob.glob(os.path.join(trial_dir, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(files) == 1, f"expected one offline W&B run in {trial_dir}, found {files}"
    run = {"history": [], "artifacts": [], "config": {}, "exit_code": None, "tags": []}
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, name=record.run.display_name, project=record.run.project,
                       group=record.run.run_group, tags=list(record.run.tags))
            run["config"].update({c.key: json.loads(c.value_json) for c in record.run.config.update})
        elif kind == "config":
            run["config"].update({c.key: json.loads(c.value_json) for c in record.config.update})
        elif kind == "history":
            row = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            run["history"].append(row)
        elif kind == "artifact":
            run["artifacts"].append({"name": record.artifact.name, "type": record.artifact.type,
                                     "files": [e.path for e in record.artifact.manifest.contents]})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def comet_archives(directory: str) -> list[dict]:
    """Comet's offline archives in ``directory``: experiment metadata, messages and stored files."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.zip"))):
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("experiment.json"))
            messages = [json.loads(line) for line in z.read("messages.json").decode().splitlines() if line.strip()]
            names = z.namelist()
        others = {m["payload"]["key"]: m["payload"]["value"] for m in messages if m["type"] == "log_other"}
        metrics = [m["payload"]["metric"] for m in messages if m["type"] == "metric_msg"]
        params = {m["payload"]["param"]["paramName"]: m["payload"]["param"]["paramValue"]
                  for m in messages if m["type"] == "parameter_msg"
                  and m["payload"]["param"].get("source") != "auto-logged"}
        system = {m["payload"]["system_info"]["key"]: m["payload"]["system_info"]["value"]
                  for m in messages if m["type"] == "system_info"}
        files = [m["payload"] for m in messages if "file_path" in m.get("payload", {})]
        out.append({"meta": meta, "others": others, "metrics": metrics, "params": params, "system": system,
                    "files": files, "zip_names": names})
    return out
