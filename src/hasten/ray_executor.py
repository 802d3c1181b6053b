"""Trials on a Ray cluster (the `ray` extra): each trial is a Ray task that holds a whole node
of the study's machine type while its child process measures, so no two measurements share a
machine. The store stays on the driver: the task runs the child on a copy of the study folder
on its node, and sends back the rows it wrote, its files and its log."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import ray

from hasten import machine
from hasten.errors import HastenError
from hasten.executors import LocalExecutor, read_tail
from hasten.folders import write_whole
from hasten.store import Meta

# A trial whose node is lost runs again on another node of its type, this many times.
RETRIES = 2
# Where a node keeps its copies of study folders (default: a folder in its temp dir).
WORKDIR_ENV = "HASTEN_RAY_WORKDIR"
TOKEN_FILE = ".ray-token"  # in a study folder: seen by a node on a shared path
SHIPPED_FILE = ".shipped.json"  # in a node's copy: the digest of each file it holds
NODE_ID_LABEL = "ray.io/node-id"
# A trial's log comes back to the driver up to this size, else its end only: a model that
# prints gigabytes would otherwise send them all through the object store.
LOG_BYTES = 4 * 2**20


def connect(address: str | None) -> None:
    """Attach to the cluster at `address` ("auto": the one this machine belongs to), or start
    a local one of its own when None, never joining one that RAY_ADDRESS names or that another
    process started here: a study reads artifacts in place only on a cluster it started, and a
    cluster another process owns ends when that process does. Without its dashboard, quietly."""
    if ray.is_initialized():
        return
    try:
        ray.init(address="local" if address is None else address,
                 include_dashboard=False if address is None else None,
                 logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise HastenError(f"Ray cannot attach to the cluster at `ray_address` {address!r} "
                          f"({exc}).") from exc


@ray.remote(num_cpus=0)
def _describe(label: str | None) -> dict:
    """The node this runs on: its machine description and type."""
    described = machine.describe()
    return {"machine": described, "type": machine.machine_type(described, label)}


def cluster_types() -> dict[str, dict]:
    """The machine types of the cluster's alive nodes that can run trials (with CPUs): name ->
    {type, machine, nodes (their ids), cpus, gpus}; each node describes itself in a task."""
    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]
    if not nodes:
        raise HastenError("The Ray cluster has no alive node with a CPU to run trials on.")
    found = ray.get([_describe.options(label_selector={NODE_ID_LABEL: n["NodeID"]}).remote(
        (n.get("Labels") or {}).get(machine.TYPE_LABEL)) for n in nodes])
    types: dict[str, dict] = {}
    for node, seen in zip(nodes, found, strict=True):
        name = seen["type"]["name"]
        while name in types and types[name]["type"] != {**seen["type"], "name": name}:
            name += "+"  # the same name for another type (other flags): keep them apart
        kind = {**seen["type"], "name": name}
        entry = types.setdefault(name, {"type": kind, "machine": seen["machine"], "nodes": [],
                                        "cpus": node["Resources"]["CPU"],
                                        "gpus": node["Resources"].get("GPU", 0)})
        entry["nodes"].append(node["NodeID"])
        entry["cpus"] = min(entry["cpus"], node["Resources"]["CPU"])
        entry["gpus"] = min(entry["gpus"], node["Resources"].get("GPU", 0))
    return types


class RayExecutor:
    """Runs each trial as a Ray task on a node of one machine type (`machine_type`, else the
    cluster's only one), holding the node's CPUs (a GPU with `device` cuda) unless `share`;
    `per_type` ends the study folder's name with @TYPE. A study folder under `shared_path`
    (mounted at the same path on every node; a local cluster this starts shares all of this
    machine's) gives the nodes its artifacts directly; else they travel through the object
    store. `types`: the cluster's machine types, when the caller has found them already."""

    def __init__(self, address: str | None = None, *, share: bool = False,
                 shared_path: str | Path | None = None, machine_type: str | None = None,
                 device: str = "cpu", per_type: bool = False, types: dict | None = None):
        if shared_path is None and address is None and not ray.is_initialized():
            shared_path = "/"
        connect(address)
        types = types or cluster_types()
        if machine_type is None and len(types) > 1:
            raise HastenError(f"The Ray cluster has {len(types)} machine types "
                              f"({', '.join(sorted(types))}); choose one with `machine_type`, "
                              "or run one study per type with `per_machine_type`.")
        name = machine_type or next(iter(types))
        if name not in types:
            raise HastenError(f"The Ray cluster has no node of machine type {name!r}; it has "
                              f"{', '.join(sorted(types))}.")
        self.kind = types[name]
        if device == "cuda" and not self.kind["gpus"]:
            raise HastenError(f"`device` cuda was asked for, and the nodes of machine type "
                              f"{name} have no GPU.")
        self.share, self.device = share, device
        self.shared_path = Path(shared_path).resolve() if shared_path else None
        self.suffix = f"@{name}" if per_type else ""
        self.files = FileCache()

    def threads(self) -> int:
        return int(self.kind["cpus"])

    def machine(self) -> dict:
        return self.kind["machine"]

    def machine_type(self) -> dict:
        return self.kind["type"]

    def resources(self) -> dict:
        """What a trial holds: the whole node (its CPUs, a GPU with cuda), or with `share` one
        CPU (a tenth of a GPU), so that a smoke run may put several trials on one node."""
        cuda = self.device == "cuda"
        if self.share:
            return {"num_cpus": 1, "num_gpus": 0.1 if cuda else 0}
        return {"num_cpus": self.kind["cpus"] // (self.kind["gpus"] if cuda else 1),
                "num_gpus": 1 if cuda else 0}

    def alive(self) -> list[str]:
        """The nodes of the study's type that are alive now."""
        ids = set(self.kind["nodes"])
        return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] in ids]

    def run(self, study: Path, candidate: str, phase: str, points: list[str],
            timeout_s: float, module: str = "hasten.infer.trial",
            watch: Callable[[], str | None] | None = None) -> str | None:
        """Run one candidate's phase on a node of the study's type and bring its rows, files
        and log back into the study folder; return why it failed, or None. A lost node runs
        it again elsewhere (RETRIES); with no node of the type left it fails with that reason.
        `watch` is asked every second, as the local executor does."""
        study = Path(study).resolve()
        nodes = self.alive()
        if not nodes:
            return self._lost()
        shared = bool(self.shared_path and study.is_relative_to(self.shared_path))
        token = _token(study)
        job = {"study": str(study), "token": token, "candidate": candidate, "phase": phase,
               "points": points, "timeout_s": timeout_s, "module": module, "shared": shared,
               "store": _snapshot(study)}
        files = self.files.refs(study, shared)
        ref = _trial.options(**self.resources(), max_retries=RETRIES,
                             label_selector={NODE_ID_LABEL: f"in({','.join(nodes)})"}
                             ).remote(job, files)
        started = time.monotonic()
        stopped = None
        try:
            while not ray.wait([ref], timeout=1.0)[0]:
                stopped = stopped or (watch() if watch else None)
                if stopped or not self.alive():
                    ray.cancel(ref)
                    break
        except BaseException:
            ray.cancel(ref)
            raise
        try:
            back = ray.get(ref)
        except ray.exceptions.RayError as exc:
            if stopped:
                return stopped
            if not self.alive():
                return self._lost()
            if isinstance(exc, ray.exceptions.RayTaskError):
                return f"the trial's Ray task failed on its node: {exc.cause!r}"[:300]
            return (f"its node was lost ({type(exc).__name__}) and Ray's {RETRIES} retries on "
                    f"other nodes of type {self.kind['type']['name']} did not finish it")
        _bring_back(study, back, self.files, {
            "candidate": candidate, "phase": phase, "points": points, "node": back["node"],
            "host": back["host"], "machine_type": self.kind["type"]["name"],
            "shares_node": self.share, "files": "shared path" if shared else "object store",
            "seconds": round(time.monotonic() - started, 3)})
        return back["reason"]

    def _lost(self) -> str:
        return (f"every node of machine type {self.kind['type']['name']} was lost from the Ray "
                "cluster")


class FileCache:
    """The study folder's files that trials read (artifacts, the baseline's reference
    outputs, the samples), each put into the object store once and sent to every node that
    lacks it."""

    def __init__(self):
        self.known: dict[str, tuple[tuple[int, int], str, ray.ObjectRef]] = {}

    def refs(self, study: Path, shared: bool) -> dict[str, tuple[str, ray.ObjectRef]]:
        """Relative path -> (digest, object) of every file a trial may read: the reference
        outputs, the samples (hasten.infer.workload.SAMPLES_FILE, and INPUTS_FILE when the user
        gave input tensors) and, without a shared path, the artifacts (with one, the node reads
        them in place)."""
        paths = [study / "reference.npz", study / "samples.json", study / "samples.safetensors"]
        if not shared:
            paths += [p for p in (study / "artifacts").rglob("*") if p.is_file()]
        out = {}
        for path in paths:
            if not path.is_file():
                continue
            rel = str(path.relative_to(study))
            stat = path.stat()
            seen = self.known.get(rel)
            if seen is None or seen[0] != (stat.st_mtime_ns, stat.st_size):
                data = path.read_bytes()
                seen = ((stat.st_mtime_ns, stat.st_size), _digest(data), ray.put(data))
                self.known[rel] = seen
            out[rel] = (seen[1], seen[2])
        return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _token(study: Path) -> str:
    """The study folder's token: names its copies on the nodes and tells a node that sees the
    folder itself (a shared path) that it is the same one."""
    path = study / TOKEN_FILE
    if not path.is_file():
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


def _snapshot(study: Path) -> bytes:
    """The study's store as it is now, as one database image."""
    db = sqlite3.connect(study / "study.sqlite")
    try:
        return db.serialize()
    finally:
        db.close()


def _tables(db: sqlite3.Connection) -> dict[str, dict[tuple, tuple]]:
    """Every row of every table, keyed by its primary key."""
    out = {}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        info = db.execute(f"PRAGMA table_info('{table}')").fetchall()
        keys = [i for i, column in enumerate(info) if column[5]] or list(range(len(info)))
        out[table] = {tuple(row[i] for i in keys): tuple(row)
                      for row in db.execute(f"SELECT * FROM '{table}'")}
    return out


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """The files a trial may write in a node's copy of a study, with their times and sizes."""
    artifacts = folder / "artifacts"
    paths = [folder / "reference.npz",
             *([] if artifacts.is_symlink() else artifacts.rglob("*"))]
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in paths if p.is_file()}


@ray.remote
def _trial(job: dict, files: dict[str, tuple[str, ray.ObjectRef]]) -> dict:
    """On a node: bring the node's copy of the study up to date, run the trial's child process
    on it under its time limit, and return what the child changed."""
    local = Path(os.environ.get(WORKDIR_ENV) or Path(tempfile.gettempdir()) / "hasten-ray")
    local = local / job["token"]
    local.mkdir(parents=True, exist_ok=True)
    study = Path(job["study"])
    shared = job["shared"] and (study / TOKEN_FILE).is_file() and \
        (study / TOKEN_FILE).read_text().strip() == job["token"]
    for suffix in ("", "-wal", "-shm"):
        (local / f"study.sqlite{suffix}").unlink(missing_ok=True)
    (local / "study.sqlite").write_bytes(job["store"])
    artifacts = local / "artifacts"
    if shared and not artifacts.is_symlink():
        (study / "artifacts").mkdir(exist_ok=True)
        if artifacts.exists():
            shutil.rmtree(artifacts)
        artifacts.symlink_to(study / "artifacts")
    index_file = local / SHIPPED_FILE
    held = json.loads(index_file.read_text()) if index_file.is_file() else {}
    for rel, (digest, ref) in files.items():
        if held.get(rel) != digest or not (local / rel).is_file():
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            (local / rel).write_bytes(ray.get(ref))
            held[rel] = digest
    before_files = _files(local)
    with sqlite3.connect(local / "study.sqlite") as db:
        before = _tables(db)
    reason = LocalExecutor().run(local, job["candidate"], job["phase"], job["points"],
                                 job["timeout_s"], job["module"])
    db = sqlite3.connect(local / "study.sqlite")
    try:
        after = _tables(db)
    finally:
        db.close()
    rows = {table: [row for key, row in after[table].items()
                    if before.get(table, {}).get(key) != row] for table in after}
    changed = {rel: (local / rel).read_bytes() for rel, stamp in _files(local).items()
               if before_files.get(rel) != stamp}
    held.update({rel: _digest(data) for rel, data in changed.items()})
    index_file.write_text(json.dumps(held))
    log = local / "logs" / f"{job['candidate'].replace('/', '_')}.{job['phase']}.log"
    return {"reason": reason, "rows": rows, "files": changed,
            "deleted": sorted(set(before_files) - set(_files(local))),
            "log": _log_end(log) if log.is_file() else "",
            "log_name": log.name, "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname()}


def _log_end(log: Path) -> str:
    """A trial's log, or its last LOG_BYTES with a first line that says what was left out."""
    left_out = log.stat().st_size - LOG_BYTES
    note = f"[hasten: the first {left_out:,} bytes of this log were left out]\n"
    return (note if left_out > 0 else "") + read_tail(log, LOG_BYTES)


def _bring_back(study: Path, back: dict, cache: FileCache, run: dict) -> None:
    """Write a trial's files and log into the study folder, then its rows and where it ran
    (`run`, added to the store's meta `ray_runs`) into the store in one transaction: a kill
    leaves all of them or none."""
    # Each file whole, and an artifact's cost file last: it marks a finished build step
    # (hasten.infer.artifacts.COST_FILE), which is reused only once it is there.
    for rel, data in sorted(back["files"].items(), key=lambda f: f[0].endswith("/cost.json")):
        path = study / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, data)
        stat = path.stat()
        cache.known[rel] = ((stat.st_mtime_ns, stat.st_size), _digest(data), ray.put(data))
    for rel in back["deleted"]:
        (study / rel).unlink(missing_ok=True)
    (study / "logs").mkdir(exist_ok=True)
    (study / "logs" / back["log_name"]).write_text(back["log"])
    db = sqlite3.connect(study / "study.sqlite", timeout=60, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        for table, rows in back["rows"].items():
            for row in rows:
                db.execute(f"INSERT OR REPLACE INTO '{table}' VALUES "
                           f"({', '.join('?' * len(row))})", row)
        row = db.execute("SELECT value FROM meta WHERE key = ?",
                         (Meta.RAY_RUNS.value,)).fetchone()
        runs = [*(json.loads(row[0]) if row else []), run]
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                   (Meta.RAY_RUNS.value, json.dumps(runs)))
        db.execute("COMMIT")
    finally:
        db.close()
