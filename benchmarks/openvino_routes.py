"""Where the gap to optimum-intel comes from: OpenVINO reached through ONNX against OpenVINO
straight from PyTorch, in f32 and NNCF int8 with each overflow fix, on the demo model at batch
8 x 128 tokens, timed against eager fp32 in interleaved rounds in one process.

    .venv/bin/python benchmarks/openvino_routes.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import nncf
import openvino as ov
import torch

from hasten.data import demo_corpus
from hasten.infer import passes
from hasten.infer.passes import Artifact, PassContext
from hasten.machine import cpu_flags, describe, usable_cores
from hasten.models import load_model

ROUNDS = 12
PAUSE_S = 0.05  # the runtimes' worker threads settle between forms


def main() -> None:
    torch.set_num_threads(usable_cores())
    model = load_model("demo")
    texts = demo_corpus()
    inputs = model.tokenize(texts[1000:1008], 128, 128)
    check = [model.tokenize(texts[i:i + 8], 128, 128) for i in range(1008, 1072, 8)]
    calibration = [model.tokenize(texts[i:i + 8], 128, 128) for i in range(256, 384, 8)]
    mask = model.input_names.index("attention_mask")
    with torch.inference_mode():
        reference = [_pooled(model.module(*b), b[mask]) for b in check]

    folder = Path(tempfile.mkdtemp())
    context = PassContext(model, inputs, folder)
    via_onnx = passes.REGISTRY["onnx_export"].apply(Artifact("torch", module=model.module),
                                                    context)
    core = ov.Core()
    direct = ov.convert_model(model.module, example_input=tuple(inputs))
    for port, name in zip(direct.inputs, model.input_names, strict=True):
        port.get_tensor().set_names({name})
    sources = {"onnx": core.read_model(str(via_onnx.path)), "direct": direct}
    feeds = [{n: t.numpy() for n, t in zip(model.input_names, b, strict=True)}
             for b in calibration]
    forms, cosine = {}, {}
    for route, source in sources.items():
        forms[f"{route} f32"] = _runner(core, source)
        for fix in ("FIRST_LAYER", "ENABLE", "DISABLE"):
            quantized = nncf.quantize(
                source.clone(), nncf.Dataset(feeds), subset_size=len(feeds),
                model_type=nncf.ModelType.TRANSFORMER,
                advanced_parameters=nncf.AdvancedQuantizationParameters(
                    overflow_fix=getattr(nncf.OverflowFix, fix)))
            forms[f"{route} int8, overflow fix {fix.lower()}"] = _runner(core, quantized)
    for name, run in forms.items():
        pooled = [_pooled(run(b), b[mask]) for b in check]
        cosine[name] = statistics.fmean(
            torch.nn.functional.cosine_similarity(p, r).mean().item()
            for p, r in zip(pooled, reference, strict=True))
    with torch.inference_mode():
        forms["eager fp32"] = lambda b: model.module(*b)
        cosine["eager fp32"] = 1.0
        times = _interleaved(forms, inputs)
    base = statistics.median(times["eager fp32"])
    machine = describe()
    print(f"{machine['cpu']}, {usable_cores()} cores, flags: "
          f"{', '.join(sorted(cpu_flags())) or 'none that matter'}")
    print(f"{'form at b8 x 128':40s} {'p50 ms':>8s} {'x eager':>8s} {'cosine':>8s}")
    for name, t in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
        p50 = statistics.median(t)
        print(f"{name:40s} {p50 * 1000:8.1f} {base / p50:8.2f} {cosine[name]:8.4f}")


def _pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1)


def _runner(core, source):
    compiled = core.compile_model(source, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": usable_cores(),
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda b: torch.from_numpy(
        request.infer([t.numpy() for t in b])[compiled.output(0)].copy())


def _interleaved(forms: dict, inputs: list) -> dict[str, list[float]]:
    for run in forms.values():
        run(inputs)
        run(inputs)
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(ROUNDS):
        for name, run in forms.items():
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            run(inputs)
            times[name].append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    main()
