"""Where an OpenVINO candidate's time goes, op by op, and what the int8 levers change.

    .venv/bin/python benchmarks/profile_leader.py fast/                  # an exported folder
    .venv/bin/python benchmarks/profile_leader.py fast/ --levers runs/demo-minilm

The exported model runs at batch 8 x 128 tokens with the precision and threads its load.py
uses and OpenVINO's performance counters on; each op's time is summed over 20 calls and
grouped: matrix work (fully connected layers), attention (the fused scaled-dot-product
subgraphs), layer norm (MVN), data movement (transposes, reorders, gathers) and the rest, with
the kernel each ran (e.g. brgemm_avx512_amx_I8: AMX int8 tiles).

With --levers STUDY, the study's float IR (straight from PyTorch) is quantized again by NNCF
with each variant below and every variant, with the float IR in bf16, is timed in interleaved
rounds (a pause before each call) and checked by mean-pooled cosine against the float IR run
in f32, on sentences of the demo corpus the study never saw.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import openvino as ov

BATCH, LENGTH, CALLS, ROUNDS = 8, 128, 20, 15
PAUSE_S = 0.1
GROUPS = {"FullyConnected": "matrix", "FullyConnectedQuantizedLegacy": "matrix",
          "MatMul": "matrix", "MVN": "layer norm", "Transpose": "data movement",
          "Reorder": "data movement", "Gather": "data movement"}


def _group(info) -> str:
    if info.node_type == "Subgraph" and "attention" in info.node_name:
        return "attention"
    return GROUPS.get(info.node_type, "other")


def _feeds(tokenizer, texts: list[str], names: list[str]) -> list[dict]:
    out = []
    for i in range(0, len(texts) - BATCH + 1, BATCH):
        encoded = tokenizer(texts[i:i + BATCH], padding="max_length", truncation=True,
                            max_length=LENGTH, return_tensors="np")
        out.append({n: encoded[n] for n in names})
    return out


def _compiled(core, model, precision: str, threads: int, counters: bool = False):
    shaped = model.clone()
    shaped.reshape({i: [BATCH, LENGTH] for i in range(len(shaped.inputs))})
    hints = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
             "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": counters}
    return core.compile_model(shaped, "CPU", hints)


def profile(core, model, precision: str, threads: int, feed: dict) -> dict:
    """Per-group and per-kernel milliseconds per call, and the call's median."""
    request = _compiled(core, model, precision, threads, counters=True).create_infer_request()
    for _ in range(5):
        request.infer(feed)
    groups, kernels, calls = Counter(), Counter(), []
    for _ in range(CALLS):
        started = time.perf_counter()
        request.infer(feed)
        calls.append(time.perf_counter() - started)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1000 / CALLS
            groups[_group(info)] += ms
            kernels[f"{info.node_type} {info.exec_type}"] += ms
    return {"call_ms": statistics.median(calls) * 1000, "groups": dict(groups.most_common()),
            "kernels": dict(kernels.most_common(8))}


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(1) / weights.sum(1)


def levers(core, study: Path, threads: int, calibration: list[dict], test: list[dict]) -> dict:
    """NNCF variants of the study's float IR against it in bf16: p50 ms and pooled cosine."""
    import nncf

    source = core.read_model(str(study / "artifacts" / "openvino_convert_torch" / "model.xml"))
    plain = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.DISABLE)
    transformer = nncf.ModelType.TRANSFORMER

    def quantized(**kwargs):
        advanced = kwargs.pop("advanced", plain)
        return nncf.quantize(source.clone(), nncf.Dataset(calibration),
                             subset_size=len(calibration), advanced_parameters=advanced,
                             model_type=transformer, **kwargs)

    variants = {
        "float IR, bf16": (source, "bf16"),
        "NNCF int8 as hasten's leader (transformer, SmoothQuant), bf16 rest":
            (quantized(), "bf16"),
        "same, f32 rest": (quantized(), "f32"),
        "NNCF int8, attention inputs left in float": (quantized(
            ignored_scope=nncf.IgnoredScope(types=["ScaledDotProductAttention"],
                                            validate=False)), "bf16"),
        "NNCF int8 without SmoothQuant": (quantized(advanced=nncf.AdvancedQuantizationParameters(
            overflow_fix=nncf.OverflowFix.DISABLE, smooth_quant_alpha=-1)), "bf16"),
        "NNCF int8, mixed preset": (quantized(preset=nncf.QuantizationPreset.MIXED), "bf16"),
    }
    reference_model = _compiled(core, source, "f32", threads)
    reference = [_pooled(reference_model(f)[0], f["attention_mask"]) for f in test]
    compiled = {name: _compiled(core, model, precision, threads)
                for name, (model, precision) in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for r in range(ROUNDS):
        for name, model in compiled.items():
            time.sleep(PAUSE_S)
            started = time.perf_counter()
            model(test[r % len(test)])
            times[name].append(time.perf_counter() - started)
    out = {}
    for name, model in compiled.items():
        pooled = [_pooled(model(f)[0], f["attention_mask"]) for f in test]
        cosine = np.mean([(a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
                          for a, b in zip(reference, pooled, strict=True)])
        out[name] = {"p50_ms": statistics.median(times[name]) * 1000, "cosine": float(cosine)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder `hasten export` wrote (OpenVINO)")
    parser.add_argument("--levers", type=Path, help="the study folder, to time NNCF variants")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from hasten.data import demo_corpus
    from hasten.machine import describe

    recipe = json.loads((args.folder / "candidate.json").read_text())
    settings = recipe["settings"]
    threads = describe()["cores"]
    tokenizer = AutoTokenizer.from_pretrained(args.folder / "tokenizer")
    corpus = demo_corpus(1400)
    test = _feeds(tokenizer, corpus[1000:1000 + 12 * BATCH], recipe["input_names"])
    core = ov.Core()
    model = core.read_model(str(args.folder / "model.xml"))
    result = {"candidate": recipe["candidate"], "machine": describe(),
              "profile": profile(core, model, settings.get("precision", "f32"), threads,
                                 test[0])}
    if args.levers:
        calibration = _feeds(tokenizer, corpus[256:256 + 38 * BATCH], recipe["input_names"])
        result["levers"] = levers(core, args.levers, threads, calibration, test)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
