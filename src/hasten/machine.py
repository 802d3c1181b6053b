"""Describe the machine a study runs on, so numbers are never compared across machines blindly."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path

import psutil

# CPU flags that decide whether bf16, fp16 and int8 matrix work runs natively.
FLAGS_THAT_MATTER = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

LIBRARIES = (
    "torch",
    "transformers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "openvino",
    "torchao",
    "numpy",
)


# A cluster node's label that names its machine type (and splits nodes of one hardware into
# several types, e.g. spot and on-demand); without it a type is named after its hardware.
TYPE_LABEL = "hasten-machine-type"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    return len(os.sched_getaffinity(0))


def _cpuinfo() -> tuple[str, set[str]]:
    path = Path("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), set()
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    return model, flags


def cpu_flags() -> set[str]:
    """The CPU feature flags among FLAGS_THAT_MATTER that this CPU has."""
    return _cpuinfo()[1] & set(FLAGS_THAT_MATTER)


def has_int8_dot() -> bool:
    """Whether this CPU has int8 dot-product instructions (VNNI or AMX). Without them, x86
    int8 kernels multiply u8 by s8 into saturating 16-bit sums, and 8-bit weights can
    overflow them."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def native_half(dtype: str) -> bool:
    """Whether this CPU computes in bf16 or fp16 natively; without it PyTorch emulates them,
    many times slower than fp32 (benchmarks/gemm_rates.py measured 20-35x on an AVX2 CPU)."""
    wanted = {"bf16": {"avx512_bf16", "amx_bf16"}, "fp16": {"avx512_fp16"}}[dtype]
    return bool(cpu_flags() & wanted)


def describe() -> dict:
    """CPU model, cores, memory, the flags that matter, GPU and library versions."""
    import torch

    model, flags = _cpuinfo()
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return {
        "hostname": platform.node(),
        "cpu": model,
        "cores": usable_cores(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "flags": {flag: flag in flags for flag in FLAGS_THAT_MATTER},
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": versions,
    }


def machine_type(described: dict, label: str | None = None) -> dict:
    """What makes two machines measure alike (CPU model, usable cores, the flags that matter,
    GPU, and a cluster node's TYPE_LABEL), with a name fit for a folder: speeds are compared
    only between machines of one type."""
    gpu = (described.get("gpu") or {}).get("name")
    hardware = re.sub(r"\(r\)|\(tm\)|processor|cpu @.*", "", described["cpu"].lower())
    name = label or re.sub(r"[^a-z0-9]+", "-", f"{hardware} {described['cores']}c {gpu or ''}")
    return {"name": name.strip("-"), "cpu": described["cpu"], "cores": described["cores"],
            "flags": sorted(k for k, v in described["flags"].items() if v), "gpu": gpu,
            "label": label}
