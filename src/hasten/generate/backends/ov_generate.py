"""Greedy generation with a stateful OpenVINO decoder, exactly as hasten measures it.

The IR keeps its KV cache as state: each call feeds only the new tokens, with `input_ids`,
`attention_mask` (ones over past and new tokens), `position_ids`, `logits_to_keep` (the
positions whose logits to compute, so a prompt costs one vocabulary projection) and `beam_idx`
(the identity order; OpenVINO's CPU plugin fuses the cache into its attention kernel only when
the cache is reordered by such an input). This file needs only numpy and openvino, so that it
can sit beside an exported IR:

    compiled = compile_decoder("model.xml", threads=8)
    tokens = generate(compiled.create_infer_request(), prompt_ids, new_tokens=32)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

PRECISIONS = ("f32", "bf16")


def compile_decoder(xml: str | Path, threads: int, precision: str = "f32") -> ov.CompiledModel:
    """The IR compiled for the CPU on `threads` threads, computing and keeping its KV cache in
    `precision` (f32 or bf16). The cache precision is set because the plugin's default (u8 on
    recent CPUs) is lossy in a way one teacher-forced pass cannot show. Raises RuntimeError
    when the plugin does not take a setting."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    compiled = ov.Core().compile_model(str(xml), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision,
        "KV_CACHE_PRECISION": precision, "PERFORMANCE_HINT": "LATENCY"})
    for key in ("INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION"):
        actual = compiled.get_property(key).get_type_name()
        if actual != precision:
            raise RuntimeError(f"OpenVINO was asked for {key}={precision} but compiled to {actual}")
    return compiled


def _run(request: ov.InferRequest, ids: np.ndarray, past: int, keep: np.ndarray) -> np.ndarray:
    """Feed `ids` (batch, length) after `past` cached tokens and return the logits at the
    positions `keep` of the new tokens: a view of the request's output, valid until its next
    call."""
    batch, length = ids.shape
    request.infer({
        "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
        "attention_mask": np.ones((batch, past + length), dtype=np.int64),
        "position_ids": np.tile(np.arange(past, past + length, dtype=np.int64), (batch, 1)),
        "logits_to_keep": keep.astype(np.int64),
        "beam_idx": np.arange(batch, dtype=np.int32),
    })
    return request.get_tensor("logits").data


def logits(request: ov.InferRequest, ids: np.ndarray) -> np.ndarray:
    """Teacher-forced logits at every position of `ids` (batch, length), from an empty cache:
    (batch, length, vocab) float32."""
    request.reset_state()
    return np.array(_run(request, ids, 0, np.arange(ids.shape[1])), dtype=np.float32)


def generate(request: ov.InferRequest, ids: np.ndarray, new_tokens: int) -> np.ndarray:
    """Exactly `new_tokens` greedy tokens after each prompt of `ids` (batch, length), never
    stopping at an end-of-text token: the prompt fills the cache in one call, then each token
    is fed back alone. Returns (batch, new_tokens) int64."""
    request.reset_state()
    batch, length = ids.shape
    tokens = np.zeros((batch, new_tokens), dtype=np.int64)
    if new_tokens == 0:
        return tokens
    step = _run(request, ids, 0, np.array([length - 1]))
    for i in range(new_tokens):
        tokens[:, i] = step[:, -1].argmax(axis=-1)
        if i + 1 < new_tokens:
            step = _run(request, tokens[:, i:i + 1], length + i, np.array([0]))
    return tokens
