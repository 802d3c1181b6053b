"""ONNX Runtime, with its graph optimization level and intra-op threads matched to the cores."""

from __future__ import annotations

import numpy as np
import torch

from hasten.passes import Artifact
from hasten.runtimes import Runner, needs_package, register

LEVELS = ("disabled", "basic", "extended", "all")


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


@register("ort", ("onnx",), _available, library="onnxruntime")
def ort_runtime(artifact: Artifact, settings: dict, threads: int, device: str) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.get("level", "all")]
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
