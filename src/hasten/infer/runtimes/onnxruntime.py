"""ONNX Runtime, with its graph optimization level and intra-op threads matched to the cores.

Searched settings: `spinning: False` stops the worker threads from spinning after each call (they
then sleep at once, which frees the cores between calls but adds a wake-up to each), and
`block_base: N` makes the intra-op thread pool hand out work in shrinking blocks (ONNX
Runtime's session.dynamic_block_base), which can balance uneven operators better.
"""

from __future__ import annotations

import numpy as np
import torch

from hasten.infer.passes import Artifact
from hasten.infer.runtimes import Runner, Tuned, needs_package, register

# The `level` setting and the member of ort.GraphOptimizationLevel it names.
LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def providers(device: str) -> list[str]:
    """The CUDA execution provider on a GPU (with CPU as fallback), else the CPU one."""
    if device == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _available(model, device: str, settings: dict) -> str | None:
    missing = needs_package("onnxruntime")(model, device, settings)
    if missing or device != "cuda":
        return missing
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime has no CUDA execution provider (install onnxruntime-gpu)"
    return None


def _snippet(settings: dict, file: str, threads: int) -> tuple[str, list[str]]:
    """load.py's lines: a CPU session with the level, threads and config entries measured."""
    lines = ["options = ort.SessionOptions()",
             "options.graph_optimization_level = "
             f"ort.GraphOptimizationLevel.{LEVELS[settings.get('level', 'all')]}",
             f"options.intra_op_num_threads = {threads}",
             *(f"options.add_session_config_entry({k!r}, {v!r})"
               for k, v in config_entries(settings).items()),
             f"session = ort.InferenceSession(str(here / {file!r}), options,"
             " providers=['CPUExecutionProvider'])",
             "",
             "",
             "def run(inputs):",
             "    feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}",
             "    return session.run(None, feeds)[0]"]
    return "import onnxruntime as ort\n", lines


def _tuned(threads: int) -> tuple[Tuned, ...]:
    """Threads that sleep instead of spinning between calls, and a larger block base."""
    return (Tuned("no-spin", {"spinning": False}), Tuned("block-base-4", {"block_base": 4}))


@register("ort", ("onnx",), _available, library="onnxruntime", snippet=_snippet,
          tuned=_tuned)
def ort_runtime(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               LEVELS[settings.get("level", "all")])
    for key, value in config_entries(settings).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(artifact.path), options, providers=providers(device))
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("ONNX Runtime's CUDA execution provider is not available")
    names = [i.name for i in session.get_inputs()]
    types = {i.name: i.type for i in session.get_inputs()}

    def run(inputs: list[torch.Tensor]) -> torch.Tensor:
        feeds = {}
        for name, t in zip(names, inputs, strict=True):
            array = t.numpy()
            if types[name] == "tensor(int64)" and array.dtype != np.int64:
                array = array.astype(np.int64)
            feeds[name] = array
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


def config_entries(settings: dict) -> dict[str, str]:
    """The session config entries the searched settings set."""
    entries = {}
    if settings.get("spinning") is False:
        entries["session.intra_op.allow_spinning"] = "0"
    if settings.get("block_base"):
        entries["session.dynamic_block_base"] = str(settings["block_base"])
    return entries
