"""PyTorch runtimes: eager, TorchScript, and torch.compile."""

from __future__ import annotations

import contextlib

import torch

from hasten.infer.passes import Artifact
from hasten.infer.runtimes import Runner, Tuned, register


def _context(artifact: Artifact, device: str):
    if artifact.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=artifact.autocast)


def _module_runner(module, artifact: Artifact, device: str,
                   config=contextlib.nullcontext) -> Runner:
    """Moves the inputs to the artifact's device, dtype and layout, then calls `module` without
    autograd, under the artifact's autocast and within `config()`."""
    dtype = artifact.dtype
    layout = torch.channels_last if artifact.channels_last else torch.contiguous_format

    def run(inputs: list[torch.Tensor]) -> torch.Tensor:
        moved = [
            (t.to(device, dtype) if t.is_floating_point() else t.to(device)) for t in inputs
        ]
        moved = [t.contiguous(memory_format=layout) if t.dim() == 4 and t.is_floating_point()
                 else t for t in moved]
        with torch.inference_mode(), _context(artifact, device), config():
            return module(*moved)

    return run


def _run_lines(artifact: Artifact, device: str, float_inputs: bool,
               contexts: tuple[str, ...] = ()) -> list[str]:
    """load.py's run(inputs), as _module_runner runs the module: the inputs moved to the
    device, dtype and layout the candidate takes, then `forward` called without autograd,
    under the candidate's autocast and `contexts`."""
    lines = ["", "", "def run(inputs):"]
    dtype = artifact.dtype if float_inputs and artifact.dtype != torch.float32 else None
    if dtype is not None and device == "cpu":
        lines.append(f"    inputs = [x.to({dtype}) if x.is_floating_point() else x "
                     "for x in inputs]")
    elif dtype is not None:
        lines.append(f"    inputs = [x.to({device!r}, {dtype}) if x.is_floating_point() "
                     f"else x.to({device!r}) for x in inputs]")
    elif device != "cpu":
        lines.append(f"    inputs = [x.to({device!r}) for x in inputs]")
    if artifact.channels_last and float_inputs:
        lines += ["    inputs = [x.contiguous(memory_format=torch.channels_last)",
                  "              if x.dim() == 4 and x.is_floating_point() else x for x in inputs]"]
    if artifact.autocast is not None:
        contexts = (f"torch.autocast({device!r}, dtype={artifact.autocast})", *contexts)
    lines += [f"    with {', '.join(('torch.inference_mode()', *contexts))}:",
              "        return forward(*inputs)"]
    return lines


def _eager_snippet(artifact: Artifact, settings: dict, threads: int, device: str,
                   float_inputs: bool) -> tuple[str, list[str]]:
    """load.py's lines for the module in eager mode, on the threads measured."""
    return "import torch\n", [f"torch.set_num_threads({threads})",
                              *_run_lines(artifact, device, float_inputs)]


@register("eager", ("torch",), module_snippet=_eager_snippet)
def eager(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    torch.set_num_threads(threads)
    return _module_runner(artifact.module.to(device), artifact, device)


def _torchscript_snippet(settings: dict, file: str, threads: int) -> tuple[str, list[str]]:
    """load.py's lines: the TorchScript file loaded on the CPU with the threads measured."""
    return "import torch\n", [
        f"torch.set_num_threads({threads})",
        f"module = torch.jit.load(str(here / {file!r}))",
        "",
        "",
        "def run(inputs):",
        "    with torch.inference_mode():",
        "        return module(*[torch.from_numpy(x) for x in inputs]).numpy()"]


@register("torchscript", ("torchscript",), snippet=_torchscript_snippet)
def torchscript(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    torch.set_num_threads(threads)
    module = torch.jit.load(str(artifact.path), map_location=device)
    return _module_runner(module, artifact, device)


def _compile_snippet(artifact: Artifact, settings: dict, threads: int, device: str,
                     float_inputs: bool) -> tuple[str, list[str]]:
    """load.py's lines for torch.compile with the mode measured, and inductor's freezing
    switched on around the calls where the study did."""
    mode = f", mode={settings['mode']!r}" if settings.get("mode") else ""
    freezing = bool(settings.get("freezing"))
    lines = [f"torch.set_num_threads({threads})",
             "# The first call compiles (inductor); later calls run the compiled graph."]
    if freezing:
        lines += ["# Freezing: inductor folds the weights into the graph as constants, which an",
                  "# int8 graph needs to reach int8 kernels with prepacked weights."]
    lines += [f"forward = torch.compile(forward{mode})",
              *_run_lines(artifact, device, float_inputs,
                          ("inductor_config.patch(freezing=True)",) if freezing else ())]
    imports = "import torch\n"
    if freezing:
        imports += "from torch._inductor import config as inductor_config\n"
    return imports, lines


def _compile_tuned(threads: int) -> tuple[Tuned, ...]:
    """Freezing, and max-autotune, which is costly: it benchmarks GEMM templates while it
    compiles (111 s for the demo's pt2e int8 on a 2-core Xeon, which then ran 17% slower)."""
    return (Tuned("freezing", {"freezing": True}),
            Tuned("max-autotune", {"mode": "max-autotune-no-cudagraphs"}, costly=True))


@register("compile", ("torch",), library="torch._inductor.compile_fx",
          module_snippet=_compile_snippet, tuned=_compile_tuned)
def compile_runtime(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    """torch.compile (inductor); the first call compiles and is reported as a one-time cost.
    With the freezing setting, inductor folds the weights as constants, which quantized graphs
    need to reach int8 kernels with prepacked weights. Freezing is switched on only around this
    module's calls (dynamo reads it when tracing, inductor when compiling): set for good in
    inductor's config, it outlived the candidate and broke a decoder compiled later in the
    same process."""
    torch.set_num_threads(threads)
    module = torch.compile(artifact.module.to(device), mode=settings.get("mode"))
    if not settings.get("freezing"):
        return _module_runner(module, artifact, device)
    import torch._inductor.config as inductor_config

    return _module_runner(module, artifact, device,
                          lambda: inductor_config.patch(freezing=True))
