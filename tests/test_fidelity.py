"""Comparisons with the baseline's outputs, the task metrics, and the tolerance gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hasten.fidelity import (
    compare,
    gate,
    load_reference,
    nearest_neighbours,
    pooled,
    save_reference,
)


def _embeddings(seed: int = 0, batches: int = 2):
    gen = torch.Generator().manual_seed(seed)
    outputs = [torch.randn(8, 6, 16, generator=gen) for _ in range(batches)]
    masks = []
    for _ in range(batches):
        mask = torch.ones(8, 6, dtype=torch.long)
        mask[::2, 4:] = 0  # every other sample has two padding tokens
        masks.append(mask)
    return outputs, masks


def test_identical_outputs():
    outputs, masks = _embeddings()
    m = compare(outputs, [o.clone() for o in outputs], masks, "feature-extraction")
    assert m["max_abs_diff"] == 0.0
    assert m["cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert m["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert m["finite"] is True
    assert m["nn_agreement"] == 1.0
    assert gate(m, m, 0.01) == (True, "")


def test_perturbed_outputs_lower_the_cosine():
    outputs, masks = _embeddings()
    gen = torch.Generator().manual_seed(1)
    noisy = [o + 0.5 * torch.randn(o.shape, generator=gen) for o in outputs]
    m = compare(outputs, noisy, masks, "feature-extraction")
    assert 0.5 < m["cosine_mean"] < 0.999
    assert m["cosine_min"] <= m["cosine_mean"]
    assert m["max_abs_diff"] > 0.5
    small = [o + 1e-3 for o in outputs]
    m_small = compare(outputs, small, masks, "feature-extraction")
    assert m_small["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)
    assert m_small["cosine_mean"] > m["cosine_mean"]


def test_padding_positions_are_ignored():
    outputs, masks = _embeddings()
    changed = [o.clone() for o in outputs]
    for out, mask in zip(changed, masks, strict=True):
        out[mask == 0] = 1000.0
    m = compare(outputs, changed, masks, "feature-extraction")
    assert m["max_abs_diff"] == 0.0
    assert m["cosine_mean"] == pytest.approx(1.0, abs=1e-6)


def test_pooled_is_a_masked_mean():
    out = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    np.testing.assert_allclose(pooled([out], [mask]), [[2.0, 2.0]])
    np.testing.assert_allclose(pooled([torch.ones(2, 3)], [None]), np.ones((2, 3)))


def test_nearest_neighbours():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert nearest_neighbours(x).tolist() == [1, 0, 3, 2]


def test_nn_agreement_drops_when_neighbours_change():
    ref = [torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])]
    swapped = [torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])]
    m = compare(ref, swapped, [None], "feature-extraction")
    assert m["nn_agreement"] < 1.0


def test_gate_fails_on_nan():
    outputs, masks = _embeddings()
    bad = [o.clone() for o in outputs]
    bad[1][0, 0, 0] = float("nan")
    m = compare(outputs, bad, masks, "feature-extraction")
    assert m["finite"] is False
    passed, reason = gate(m, m, 0.5)
    assert not passed and "NaN" in reason


def test_gate_on_cosine():
    outputs, masks = _embeddings()
    gen = torch.Generator().manual_seed(2)
    noisy = [o + 0.5 * torch.randn(o.shape, generator=gen) for o in outputs]
    m = compare(outputs, noisy, masks, "feature-extraction")
    passed, reason = gate(m, m, 0.01)
    assert not passed
    assert reason.startswith("pooled cosine") and "< 0.9900" in reason
    assert gate(m, m, 1 - m["cosine_mean"] + 1e-3) == (True, "")


def test_classification_metrics_and_accuracy_gate():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    labels = [0, 1, 0, 1]
    base = compare([logits], [logits], [None], "sequence-classification", labels)
    assert base["accuracy"] == 1.0 and base["top1_agreement"] == 1.0
    assert "nn_agreement" not in base
    one_wrong = logits.clone()
    one_wrong[0] = torch.tensor([0.0, 2.0])
    m = compare([logits], [one_wrong], [None], "sequence-classification", labels)
    assert m["accuracy"] == 0.75 and m["top1_agreement"] == 0.75
    passed, reason = gate(m, base, 0.1)
    assert not passed and "accuracy dropped 25.0%" in reason
    assert gate(m, base, 0.3) == (True, "")


def test_with_labels_accuracy_decides_over_cosine():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = [0, 1]
    # Same predictions, very different directions.
    tilted = torch.tensor([[5.0, 4.0], [4.0, 5.0]])
    base = compare([logits], [logits], [None], "sequence-classification", labels)
    m = compare([logits], [tilted], [None], "sequence-classification", labels)
    assert m["accuracy"] == 1.0 and m["cosine_mean"] < 0.8
    assert gate(m, base, 0.01) == (True, "")
    unlabelled = compare([logits], [tilted], [None], "sequence-classification")
    assert "accuracy" not in unlabelled and unlabelled["top1_agreement"] == 1.0
    passed, reason = gate(unlabelled, unlabelled, 0.01)
    assert not passed and "pooled cosine" in reason


def test_zero_baseline_accuracy_never_fails_the_gate():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    m = compare([logits], [logits], [None], "sequence-classification", [1, 0])
    assert m["accuracy"] == 0.0
    assert gate(m, m, 0.01) == (True, "")


def test_reference_roundtrip_as_plain_float32(tmp_path):
    outputs = [torch.randn(3, 4), torch.randn(2, 5, 6).to(torch.bfloat16)]
    path = tmp_path / "reference.npz"
    save_reference(path, outputs)
    back = load_reference(path)
    assert [b.dtype for b in back] == [torch.float32, torch.float32]
    torch.testing.assert_close(back[0], outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(back[1], outputs[1].float(), rtol=0, atol=0)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["out_0", "out_1"]


@pytest.mark.parametrize(("task", "labels", "scored"), [
    ("image-classification", None, "top1 only"),
    ("image-classification", [0, 1, 1], "accuracy"),
    ("tensor", [0, 1, 1], "accuracy"),
    ("tensor", None, "neither"),
    ("feature-extraction", [0, 1, 1], "neither"),
])
def test_image_and_tensor_classifiers_are_scored(task, labels, scored):
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    m = compare([logits], [logits], [None], task, labels)
    assert ("top1_agreement" in m) == (scored != "neither")
    assert ("accuracy" in m) == (scored == "accuracy")
    if scored == "accuracy":
        assert m["accuracy"] == pytest.approx(2 / 3)


def test_image_features_get_neighbour_agreement():
    features = torch.randn(6, 4, 1, 1, generator=torch.Generator().manual_seed(0))
    m = compare([features], [features], [None], "image-feature-extraction")
    assert m["nn_agreement"] == 1.0 and "top1_agreement" not in m
