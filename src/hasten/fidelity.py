"""Compare a candidate's outputs with the fp32 baseline's, and gate on a tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CLASSIFIER_TASKS = ("sequence-classification", "image-classification")
EMBEDDING_TASKS = ("feature-extraction", "image-feature-extraction")


def pooled(outputs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> np.ndarray:
    """One vector per sample: masked mean over tokens for sequence outputs, else flattened."""
    rows = []
    for out, mask in zip(outputs, masks, strict=True):
        out = out.float()
        if mask is not None and out.dim() == 3:
            weights = mask.unsqueeze(-1).float()
            rows.append((out * weights).sum(1) / weights.sum(1).clamp(min=1))
        else:
            rows.append(out.reshape(out.shape[0], -1))
    return torch.cat(rows).numpy()


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(x: np.ndarray) -> np.ndarray:
    """Index of each sample's nearest other sample by cosine similarity."""
    unit = _normalize(x)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def compare(
    reference: list[torch.Tensor],
    candidate: list[torch.Tensor],
    masks: list[torch.Tensor | None],
    task: str,
    labels: list[int] | None = None,
) -> dict:
    """Max absolute difference, pooled cosine (mean, min) and the task metric; a tensor model
    with labels (a `py:` classifier fed an image folder) is scored as a classifier."""
    max_abs = 0.0
    for ref, out, mask in zip(reference, candidate, masks, strict=True):
        diff = (ref.float() - out.float()).abs()
        if mask is not None and diff.dim() == 3:
            diff = diff[mask.bool()]
        max_abs = max(max_abs, float(diff.max()) if diff.numel() else 0.0)
    ref_pooled, out_pooled = pooled(reference, masks), pooled(candidate, masks)
    cos = (_normalize(ref_pooled) * _normalize(out_pooled)).sum(1)
    metrics = {
        "max_abs_diff": max_abs,
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "finite": bool(np.isfinite(out_pooled).all()),
    }
    if task in EMBEDDING_TASKS and len(ref_pooled) > 1:
        agree = nearest_neighbours(ref_pooled) == nearest_neighbours(out_pooled)
        metrics["nn_agreement"] = float(agree.mean())
    if task in CLASSIFIER_TASKS or (task == "tensor" and labels is not None):
        metrics["top1_agreement"] = float((ref_pooled.argmax(1) == out_pooled.argmax(1)).mean())
        if labels is not None:
            metrics["accuracy"] = float((out_pooled.argmax(1) == np.asarray(labels)).mean())
    return metrics


def gate(metrics: dict, baseline: dict, max_drop: float) -> tuple[bool, str]:
    """Pass when the task metric dropped at most `max_drop` relative to the baseline's (with
    labels), otherwise when the mean pooled cosine is at least 1 - max_drop."""
    if not metrics["finite"]:
        return False, "outputs contain NaN or infinity"
    if "accuracy" in metrics and "accuracy" in baseline:
        base = baseline["accuracy"]
        drop = (base - metrics["accuracy"]) / base if base else 0.0
        if drop > max_drop:
            return False, f"accuracy dropped {drop:.1%} (tolerance {max_drop:.1%})"
        return True, ""
    if metrics["cosine_mean"] < 1 - max_drop:
        return False, f"pooled cosine {metrics['cosine_mean']:.4f} < {1 - max_drop:.4f}"
    return True, ""


def save_reference(path: Path, outputs: list[torch.Tensor]) -> None:
    """Save the baseline's evaluation outputs once, as plain arrays (no pickle)."""
    np.savez(path, **{f"out_{i}": o.float().numpy() for i, o in enumerate(outputs)})


def load_reference(path: Path) -> list[torch.Tensor]:
    with np.load(path, allow_pickle=False) as data:
        count = sum(1 for k in data.files if k.startswith("out_"))
        return [torch.from_numpy(data[f"out_{i}"]) for i in range(count)]
