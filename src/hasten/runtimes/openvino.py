"""OpenVINO on the CPU, with the inference precision set explicitly and checked.

On CPUs with AMX, OpenVINO runs bf16 unless told otherwise; hasten always sets the precision
hint and verifies what the compiled model reports, so bf16 is never passed off as f32. With
the setting `shapes: static`, the model is compiled once per input shape it meets (a fixed
workload point, or a corpus bucketed by length), so the CPU plugin plans for that shape
instead of for any.
"""

from __future__ import annotations

import torch

from hasten.machine import cpu_flags
from hasten.passes import Artifact
from hasten.runtimes import Runner, needs_package, register


def _available(model, device: str, settings: dict) -> str | None:
    missing = needs_package("openvino")(model, device, settings)
    if missing:
        return missing
    if device != "cpu":
        return "hasten runs OpenVINO on the CPU only"
    if settings.get("precision") == "bf16" and not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return "this CPU has no native bf16 (AVX512_BF16 or AMX), so OpenVINO would run f32"
    return None


@register("openvino", ("openvino",), _available, library="openvino")
def openvino_runtime(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    import openvino as ov

    precision = settings.get("precision", "f32")
    core = ov.Core()
    model = core.read_model(str(artifact.path))

    def compile_for(shapes: tuple | None):
        source = model
        if shapes is not None:
            source = model.clone()
            source.reshape({i: ov.PartialShape(list(s)) for i, s in enumerate(shapes)})
        compiled = core.compile_model(
            source, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if actual != {"f32": "<Type: 'float32'>", "bf16": "<Type: 'bfloat16'>"}[precision]:
            raise RuntimeError(f"OpenVINO was asked for {precision} but compiled to {actual}")
        return compiled, compiled.create_infer_request()

    static = settings.get("shapes") == "static"
    by_shape = {} if static else {None: compile_for(None)}

    def run(inputs: list[torch.Tensor]) -> torch.Tensor:
        key = tuple(tuple(t.shape) for t in inputs) if static else None
        if key not in by_shape:
            by_shape[key] = compile_for(key)
        compiled, request = by_shape[key]
        result = request.infer([t.numpy() for t in inputs])
        return torch.from_numpy(result[compiled.output(0)].copy())

    return run
