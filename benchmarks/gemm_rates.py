"""This CPU's matrix-multiply rates in fp32, bf16 and int8 at the demo model's shapes: the
limit any inference candidate can reach on it.

    .venv/bin/python benchmarks/gemm_rates.py

MiniLM at batch 8 x 128 tokens multiplies 1,024 token rows by its 384x384 attention
projections and its 384x1536 and 1536x384 feed-forward weights. Each rate is the median of
interleaved rounds. fp32 and bf16 are PyTorch's matmul; int8 is ONNX Runtime's MatMulInteger
(uint8 activations x int8 weights -> int32, the kernel its int8 models run), beside its own
fp32 MatMul; "OV int8" is OpenVINO running one Linear layer quantized by NNCF (activations
quantized on the way in, as in hasten's int8 candidates), the kernel of its int8 models.
"""

from __future__ import annotations

import statistics
import time

import nncf
import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from onnx import TensorProto, helper

from hasten.infer.runtimes.openvino import properties
from hasten.machine import cpu_flags, describe

SHAPES = [(1024, 384, 384), (1024, 384, 1536), (1024, 1536, 384)]  # (rows, inner, outputs)
ROUNDS = 20
# ONNX Runtime's, OpenVINO's and OpenMP's worker threads spin for a while after a call and slow
# whatever runs next: each timed call starts after this pause.
PAUSE_S = 0.05


def main() -> None:
    machine = describe()
    print(f"{machine['cpu']}, {torch.get_num_threads()} threads, flags: "
          f"{', '.join(sorted(cpu_flags())) or 'none that matter'}")
    print("GFLOP/s (int8: GOP/s)")
    print(f"{'m x k x n':18s} {'torch fp32':>11s} {'torch bf16':>11s} {'ORT fp32':>9s} "
          f"{'ORT int8':>9s} {'ORT int8/fp32':>14s} {'OV int8':>8s}")
    for m, k, n in SHAPES:
        calls = {
            "fp32": _mm(torch.randn(m, k), torch.randn(k, n)),
            "bf16": _mm(torch.randn(m, k, dtype=torch.bfloat16),
                        torch.randn(k, n, dtype=torch.bfloat16)),
            "ort_fp32": _ort(m, k, n, int8=False),
            "ort_int8": _ort(m, k, n, int8=True),
            "ov_int8": _openvino_int8(m, k, n),
        }
        times = _interleaved(calls)
        rate = {name: 2 * m * k * n / statistics.median(t) / 1e9 for name, t in times.items()}
        print(f"{f'{m} x {k} x {n}':18s} {rate['fp32']:11.1f} {rate['bf16']:11.1f} "
              f"{rate['ort_fp32']:9.1f} {rate['ort_int8']:9.1f} "
              f"{rate['ort_int8'] / rate['ort_fp32']:14.2f} {rate['ov_int8']:8.1f}")


def _mm(a: torch.Tensor, b: torch.Tensor):
    return lambda: a @ b


def _ort(m: int, k: int, n: int, int8: bool):
    """One ONNX Runtime session holding a single MatMul (fp32) or MatMulInteger (int8)."""
    rng = np.random.default_rng(0)
    if int8:
        weight = helper.make_tensor("w", TensorProto.INT8, [k, n],
                                    rng.integers(-128, 127, (k, n)).astype(np.int8).tobytes(),
                                    raw=True)
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        feed = rng.integers(0, 255, (m, k)).astype(np.uint8)
    else:
        weight = helper.make_tensor("w", TensorProto.FLOAT, [k, n],
                                    rng.standard_normal((k, n)).astype(np.float32).tobytes(),
                                    raw=True)
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        feed = rng.standard_normal((m, k)).astype(np.float32)
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", a_type, [m, k])],
                              [helper.make_tensor_value_info("y", y_type, [m, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": feed})


def _openvino_int8(m: int, k: int, n: int):
    """One Linear layer (no bias) converted to OpenVINO and quantized to int8 by NNCF."""
    layer = torch.nn.Linear(k, n, bias=False).eval()
    feed = torch.randn(m, k)
    source = ov.convert_model(layer, example_input=feed)
    samples = [torch.randn(m, k).numpy() for _ in range(4)]
    quantized = nncf.quantize(source, nncf.Dataset(samples), subset_size=len(samples))
    compiled = ov.Core().compile_model(quantized, "CPU",
                                       properties("f32", torch.get_num_threads(), streams=1))
    request = compiled.create_infer_request()
    array = feed.numpy()
    return lambda: request.infer([array])


def _interleaved(calls: dict) -> dict[str, list[float]]:
    for call in calls.values():
        call()
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    main()
