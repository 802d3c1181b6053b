"""Trials on a Ray cluster: a local cluster of three nodes whose labels stand in for two
machine types (small: one node, big: two), each node with its own working folder, so rows and
artifacts travel through the object store as they do between machines."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import hasten  # noqa: E402
from hasten import machine  # noqa: E402
from hasten.infer import menu  # noqa: E402
from hasten.ray_executor import WORKDIR_ENV  # noqa: E402
from hasten.store import read_study  # noqa: E402

BASE = menu.BASELINE
MIB = 2**20


class LocalCluster:
    """The cluster, its nodes by id with their type and working folder."""

    def __init__(self, root: Path):
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "object_store_memory": 80 * MIB,
            # A killed node is found dead within seconds, not the default tens of seconds.
            "_system_config": {"health_check_period_ms": 500,
                               "health_check_failure_threshold": 2}})
        self.nodes: dict[str, tuple[str, Path, object]] = {}
        for i, kind in enumerate(("small", "big", "big")):
            workdir = root / f"node{i}"
            node = self.cluster.add_node(num_cpus=1, object_store_memory=80 * MIB,
                                         labels={machine.TYPE_LABEL: kind},
                                         env_vars={WORKDIR_ENV: str(workdir)})
            self.nodes[node.node_id] = (kind, workdir, node)
        self.address = self.cluster.address
        ray.init(address=self.address, log_to_driver=False)

    def of(self, kind: str) -> list[str]:
        return [n for n, (k, _, _) in self.nodes.items() if k == kind]

    def kill(self, node_id: str) -> None:
        self.cluster.remove_node(self.nodes[node_id][2], allow_graceful=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made = LocalCluster(tmp_path_factory.mktemp("ray-nodes"))
    yield made
    ray.shutdown()
    made.cluster.shutdown()


def _rows(study) -> dict:
    return {r["candidate"]: r for r in study.table()}


def _runs(folder: Path) -> list[dict]:
    return read_study(folder)["meta"].get("ray_runs", [])


def test_a_study_on_ray_measures_what_the_local_one_does_on_one_machine_type(
        tmp_path, cluster, cnn_spec, only_candidates):
    only_candidates(BASE, "onnx/ort/all")
    kwargs = dict(quick=True, batch_sizes=[1, 2], name="cnn")
    local = hasten.optimize_inference(cnn_spec, out=tmp_path / "local", **kwargs)
    on_ray = hasten.optimize_inference(cnn_spec, out=tmp_path / "ray", executor="ray",
                                       ray_address=cluster.address, machine_type="big",
                                       **kwargs)
    assert on_ray.finished and on_ray.folder.name == "cnn"
    for name, row in _rows(local).items():
        other = _rows(on_ray)[name]
        assert (other["status"], set(other["points"])) == (row["status"], set(row["points"]))
    assert set(on_ray.confirmation["results"]) == set(local.confirmation["results"])
    assert on_ray.meta["machine_type"]["name"] == "big"
    assert on_ray.settings.threads == 1  # a big node's one CPU, held whole
    runs = _runs(on_ray.folder)
    assert {r["node"] for r in runs} <= set(cluster.of("big"))
    assert {r["files"] for r in runs} == {"object store"} and not any(
        r["shares_node"] for r in runs)
    # The ONNX export was built once, in its own run, and came back to the driver; every node
    # that measured it got it through the object store, not by building it again.
    assert [r["phase"] for r in runs].count("build") == 1
    onnx = [p.relative_to(on_ray.folder) for p in on_ray.folder.rglob("*.onnx")]
    assert onnx
    for node in {r["node"] for r in runs if r["candidate"] == "onnx/ort/all"}:
        copy = next(cluster.nodes[node][1].glob("*")) / onnx[0]
        assert copy.read_bytes() == (on_ray.folder / onnx[0]).read_bytes()
    assert (on_ray.folder / "logs" / "onnx_ort_all.screen.log").is_file()
    assert (on_ray.folder / "report.html").is_file()
    # The same call resumes on Ray, and refuses to go on locally: another machine type.
    again = hasten.optimize_inference(cnn_spec, out=tmp_path / "ray", executor="ray",
                                      ray_address=cluster.address, machine_type="big", **kwargs)
    assert len(_runs(again.folder)) == len(runs)
    with pytest.raises(hasten.HastenError, match="measured on machine type big"):
        hasten.optimize_inference(cnn_spec, out=tmp_path / "ray", **kwargs)


def test_a_cluster_of_two_types_needs_one_chosen_or_a_study_per_type(
        tmp_path, cluster, cnn_spec, only_candidates):
    from typer.testing import CliRunner

    from hasten.cli import app

    only_candidates(BASE)
    with pytest.raises(hasten.HastenError, match="2 machine types .big, small.; choose one"):
        hasten.optimize_inference(cnn_spec, executor="ray", ray_address=cluster.address)
    args = ["infer", "--model", cnn_spec, "--quick", "--batch-sizes", "1", "--out",
            str(tmp_path), "--name", "cnn", "--executor", "ray", "--ray-address",
            cluster.address, "--per-machine-type", "--ray-share"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folders = sorted(tmp_path.glob("cnn@*"))
    assert [f.name for f in folders] == ["cnn@big", "cnn@small"]
    for folder, kind in zip(folders, ("big", "small"), strict=True):
        study = hasten.open_study(folder)
        assert study.finished and _rows(study)[BASE]["status"] == "ok"
        runs = _runs(folder)
        assert {r["machine_type"] for r in runs} == {kind}
        assert {r["node"] for r in runs} <= set(cluster.of(kind))
        assert all(r["shares_node"] for r in runs)
    assert (tmp_path / "cnn.machine-types.html").is_file()
    shown = CliRunner().invoke(app, ["compare", *map(str, folders), str(folders[0])])
    assert shown.exit_code == 0, shown.output
    assert "big" in shown.output and "small" in shown.output and "1.00x" in shown.output


# A small CNN whose every call takes 0.2 s: a trial runs for seconds, so that the test can
# kill its node while it runs (a forked trial of the tiny CNN ends within a second).
SLOW_CNN = """
import time

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        time.sleep(0.2)
        return self.head(self.conv(x).mean((2, 3)))


def build():
    return Net(), torch.randn(2, 3, 8, 8)
"""


def test_a_node_lost_mid_trial_is_retried_on_another_and_the_last_one_fails_with_its_reason(
        tmp_path, cluster, only_candidates):
    retried, lost = "torch/eager/int8-dynamic", "torch/eager/channels-last"
    only_candidates(BASE, retried, lost)
    (tmp_path / "slow_cnn.py").write_text(SLOW_CNN)
    done: dict = {}

    def study() -> None:
        done["study"] = hasten.optimize_inference(
            f"py:{tmp_path / 'slow_cnn.py'}:build", quick=True, batch_sizes=[1], out=tmp_path,
            name="cnn", executor="ray", ray_address=cluster.address, machine_type="big")

    def running(name: str) -> str:
        """The big node whose copy of the study has started this candidate's screening."""
        log = f"{name.replace('/', '_')}.screen.log"
        while True:
            for node in cluster.of("big"):
                if any(cluster.nodes[node][1].glob(f"*/logs/{log}")):
                    return node
            assert worker.is_alive(), "the study ended before the node could be killed"
            time.sleep(0.1)

    worker = threading.Thread(target=study)
    worker.start()
    cluster.kill(running(retried))
    cluster.kill(running(lost))
    worker.join(timeout=300)
    rows = _rows(done["study"])
    assert done["study"].finished
    assert rows[BASE]["status"] == rows[retried]["status"] == "ok"
    assert rows[lost]["status"] == "failed"
    assert rows[lost]["reason"] == "every node of machine type big was lost from the Ray cluster"
    with sqlite3.connect(tmp_path / "cnn" / "study.sqlite") as db:
        failed = db.execute("SELECT candidate, error FROM trials WHERE status = 'failed'")
        assert {c for c, _ in failed} == {lost}
