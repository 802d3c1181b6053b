"""OpenVINO on the CPU, with the inference precision set explicitly and checked.

On CPUs with AMX, OpenVINO runs bf16 unless told otherwise; hasten always sets the precision
hint and verifies what the compiled model reports, so bf16 is never passed off as f32. With
the setting `shapes: static`, the model is compiled once per input shape it meets, so the CPU
plugin plans for that fixed shape instead of for any; the corpus job still runs on the model
compiled for any shape, since a one-pass job over texts of many lengths would spend more on
compiling one model per length than it saves (on the AMX Xeon, 1,816 sentences at batch 64:
477 items/s counting eight compiles, against 1,544 on one model for any shape). With
`streams: N`, the CPU runs N inference streams, each on its share of the cores, and a batch is
split into N parts that run at once: fewer threads per part can beat all threads on one part,
for throughput at large batches.
"""

from __future__ import annotations

import numpy as np
import torch

from hasten.infer.passes import Artifact
from hasten.infer.runtimes import Runner, Tuned, needs_package, register
from hasten.machine import cpu_flags


def _available(model, device: str, settings: dict) -> str | None:
    missing = needs_package("openvino")(model, device, settings)
    if missing:
        return missing
    if device != "cpu":
        return "hasten runs OpenVINO on the CPU only"
    if settings.get("precision") == "bf16" and not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return "this CPU has no native bf16 (AVX512_BF16 or AMX), so OpenVINO would run f32"
    return None


def _snippet(settings: dict, file: str, threads: int) -> tuple[str, list[str]]:
    """load.py's lines: one compiled model (or one per input shape with static shapes, and
    run_corpus on one for any shape), and with several streams the batch split across them,
    as the study measured."""
    static = settings.get("shapes") == "static"
    streams = int(settings.get("streams", 1))
    plugin = properties(settings.get("precision", "f32"), threads, streams)
    lines = ["core = ov.Core()", f"model = core.read_model(str(here / {file!r}))",
             f"properties = {plugin!r}", "compiled = {}", "", "",
             "def compiled_for(arrays, static=True):" if static else
             "def compiled_for(arrays):"]
    if static:
        lines += ["    # Static shapes: one compiled model per input shape (a fixed batch and",
                  "    # length), as the study measured; the corpus job runs on one model",
                  "    # compiled for any shape.",
                  "    key = tuple(x.shape for x in arrays) if static else None",
                  "    if key not in compiled:",
                  "        shaped = model.clone()",
                  "        if static:",
                  "            shaped.reshape({i: x.shape for i, x in enumerate(arrays)})",
                  "        compiled[key] = core.compile_model(shaped, 'CPU', properties)"]
    else:
        lines += ["    key = None",
                  "    if key not in compiled:",
                  "        compiled[key] = core.compile_model(model, 'CPU', properties)"]
    lines += ["    return compiled[key]", "", "",
              "def run(inputs, static=True):" if static else "def run(inputs):"]
    shaped = ", static" if static else ""
    if streams == 1:
        lines += [f"    model = compiled_for(inputs{shaped})",
                  "    return model(inputs)[model.output(0)]"]
        imports = "import openvino as ov\n"
    else:
        lines += [f"    # The batch is split into one part per inference stream ({streams}), "
                  "and the",
                  "    # parts run at once, as the study measured.",
                  f"    parts = list(zip(*(np.array_split(x, min({streams}, len(x))) "
                  "for x in inputs)))",
                  f"    requests = [compiled_for(part{shaped})"
                  ".create_infer_request() for part in parts]",
                  "    for request, part in zip(requests, parts):",
                  "        request.start_async(list(part))",
                  "    for request in requests:",
                  "        request.wait()",
                  "    return np.concatenate([r.get_output_tensor(0).data for r in requests])"]
        imports = "import numpy as np\nimport openvino as ov\n"
    if static:
        lines += ["", "", "def run_corpus(inputs):", "    return run(inputs, static=False)"]
    return imports, lines


def _corpus_settings(settings: dict) -> dict:
    """The corpus job on one model compiled for any shape (see the module's note)."""
    return {k: v for k, v in settings.items() if k != "shapes"}


def _tuned(threads: int) -> tuple[Tuned, ...]:
    """Static shapes, and as many streams as threads where there are several."""
    streams = (Tuned(f"streams-{threads}", {"streams": threads}),) if threads > 1 else ()
    return (Tuned("static-shapes", {"shapes": "static"}), *streams)


@register("openvino", ("openvino",), _available, library="openvino", snippet=_snippet,
          corpus_settings=_corpus_settings, tuned=_tuned)
def openvino_runtime(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    import openvino as ov

    precision = settings.get("precision", "f32")
    streams = int(settings.get("streams", 1))
    core = ov.Core()
    model = core.read_model(str(artifact.path))

    def compile_for(shapes: tuple | None):
        source = model
        if shapes is not None:
            source = model.clone()
            source.reshape({i: ov.PartialShape(list(s)) for i, s in enumerate(shapes)})
        compiled = core.compile_model(source, "CPU", properties(precision, threads, streams))
        actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if actual != {"f32": "<Type: 'float32'>", "bf16": "<Type: 'bfloat16'>"}[precision]:
            raise RuntimeError(f"OpenVINO was asked for {precision} but compiled to {actual}")
        return compiled, [compiled.create_infer_request() for _ in range(streams)]

    static = settings.get("shapes") == "static"
    by_shape = {} if static else {None: compile_for(None)}

    def compiled_for(part: tuple) -> tuple:
        key = tuple(a.shape for a in part) if static else None
        if key not in by_shape:
            by_shape[key] = compile_for(key)
        return by_shape[key]

    def run(inputs: list[torch.Tensor]) -> torch.Tensor:
        parts = list(zip(*(np.array_split(t.numpy(), min(streams, len(t))) for t in inputs),
                         strict=True))
        if len(parts) == 1:
            compiled, requests = compiled_for(parts[0])
            return torch.from_numpy(requests[0].infer(list(parts[0]))[compiled.output(0)].copy())
        started = []
        for i, part in enumerate(parts):
            request = compiled_for(part)[1][i]
            request.start_async(list(part))
            started.append(request)
        for request in started:
            request.wait()
        return torch.from_numpy(np.concatenate([r.get_output_tensor(0).data for r in started]))

    return run


def properties(precision: str, threads: int, streams: int) -> dict:
    """The CPU plugin's settings: the precision, all threads, and one stream for latency or
    `streams` streams that share the threads."""
    hint = {"PERFORMANCE_HINT": "LATENCY"} if streams == 1 else {"NUM_STREAMS": streams}
    return {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, **hint}
