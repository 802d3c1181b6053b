"""Hand-written studies for the report tests: every kind of row, every kind of point."""

from __future__ import annotations

from pathlib import Path

import pytest

from hasten import Study
from hasten.infer.workload import Workload
from hasten.store import Store

BASE = "torch/eager/fp32"
MACHINE = {"hostname": "box", "cpu": "Test CPU", "cores": 2, "physical_cores": 1,
           "memory_gib": 8.0, "flags": {"avx2": True, "amx_bf16": False}, "gpu": None,
           "python": "3.11.7", "libraries": {"torch": "2.13.0", "onnxruntime": "1.31.1"}}
# p50 in ms at batch 1 and sequence length 16; other points scale with batch and length.
P50 = {BASE: 10.0, "fast": 4.0, "wrong": 1.0}


def write_study(folder: Path, model: str = "fake", finished: bool = True, scale: float = 1.0,
                cpu: str = "Test CPU", batch_sizes: tuple[int, ...] = (1, 8),
                measured: bool = True, reason: str = "the trial process was killed by SIGSEGV",
                ) -> Study:
    """A study with a baseline, a faster candidate, one outside the tolerance, a failed one, a
    pending one and a skipped one; latencies times `scale`, spread (IQR) 2% of the median."""
    workload = Workload(texts=["A short one.", "B is a little longer.", "C.", "D, the end."],
                        labels=None, batch_sizes=list(batch_sizes), seq_lengths=[16, 32],
                        eval_samples=4, dataset_batch_size=max(batch_sizes), max_length=128)
    store = Store(folder)
    store.set_meta("config", {"kind": "infer", "spec": f"py:{model}.py:build", "task": None,
                              "input_shape": None, "workload": workload.to_dict(),
                              "max_drop": 0.01, "quick": True, "device": "cpu", "threads": 2,
                              "point_s": 1.0, "baseline": BASE,
                              "model": {"name": model, "kind": "text",
                                        "input_names": ["input_ids"]}})
    store.set_meta("machine", {**MACHINE, "cpu": cpu})
    for i, name in enumerate([BASE, "fast", "wrong", "broken", "later", "skipped"]):
        store.add_candidate(i, name, [], "eager", {},
                            "not on this CPU" if name == "skipped" else None)
    if measured:
        _measure(store, workload, scale, finished, reason)
    store.set_meta("finished", finished)
    store.close()
    return Study(folder)


def _measure(store: Store, workload: Workload, scale: float, finished: bool,
             reason: str) -> None:
    fid = {"cosine_mean": 1.0, "cosine_min": 1.0, "max_abs_diff": 0.0, "finite": True}
    one_time = {"load_s": 0.5, "build_s": 0.2, "first_call_s": 0.1}
    store.put_result(BASE, "ok", fidelity=fid, passed=True, gate_reason="", size_bytes=4 << 20,
                     one_time=one_time)
    store.put_result("fast", "ok", fidelity={**fid, "cosine_mean": 0.9995}, passed=True,
                     gate_reason="", size_bytes=2 << 20, notes=["exported with a fallback"],
                     one_time={**one_time, "onnx_export_s": 1.5})
    store.put_result("wrong", "ok", fidelity={**fid, "cosine_mean": 0.5}, passed=False,
                     gate_reason="pooled cosine 0.5000 < 0.9900", size_bytes=1 << 20,
                     one_time=one_time)
    if finished:
        store.put_result("broken", "failed", error=reason)
        store.put_trial("broken", "b8/s32", "latency", "failed", error=reason)
    for name, ms in P50.items():
        for b in workload.batch_sizes:
            for s in workload.seq_lengths:
                p50 = ms * b * s / 16 * scale
                store.put_trial(name, f"b{b}/s{s}", "latency", "ok",
                                throughput=b / (p50 / 1000), items=b,
                                peak_mb=100.0 * (len(name) + 1), latency={
                                    "p50": p50, "p90": p50 * 1.1, "iqr": p50 * 0.02,
                                    "count": 5, "load_avg": 0.5})
    for name, items_s in ((BASE, 100.0), ("fast", 250.0)):
        for order, gain in (("unsorted", 1.0), ("sorted", 2.0)):
            p50 = 4 / (items_s * gain) * 1000 * scale
            store.put_trial(name, f"dataset/{order}/b{workload.dataset_batch_size}", "corpus", "ok",
                            latency={"p50": p50, "p90": p50, "iqr": p50 * 0.02, "count": 3},
                            throughput=4 / (p50 / 1000), items=4, peak_mb=300.0)


@pytest.fixture
def study_at(tmp_path):
    """Write a hand-written study into a fresh folder under tmp_path; returns the Study."""
    def make(name: str = "study", **kwargs) -> Study:
        return write_study(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def image_study_at(study_at):
    """The hand-written study as an image model's: no texts, no sequence lengths, these
    image files."""
    def make(name: str, images: list[str]) -> Study:
        folder = study_at(name).folder
        store = Store(folder)
        config = store.meta("config")
        config["model"]["kind"] = "image"
        config["workload"].update(texts=[], seq_lengths=[], images=images)
        store.set_meta("config", config)
        store.close()
        return Study(folder)

    return make
