"""Generation fidelity: perplexity, top-1 agreement, KL and identical continuations."""

from __future__ import annotations

import math

import torch

from hasten.generate import fidelity


def _case(vocab: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 12, vocab, generator=g) * 3
    windows = torch.randint(0, vocab, (3, 12), generator=g)
    continuations = torch.randint(0, vocab, (2, 8), generator=g)
    return logits, windows, continuations


def test_the_baseline_against_itself_is_perfect():
    logits, windows, cont = _case()
    m = fidelity.compare(fidelity.reference(logits, windows, cont), logits, windows, cont)
    assert m["perplexity_increase"] == 0 and m["top1_agreement"] == 1
    assert m["kl"] < 1e-9 and m["same_first"] == 1 and m["same_all"] == 1
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, windows[:, 1:, None]).mean()
    assert math.isclose(m["perplexity"], math.exp(nll.item()), rel_tol=1e-6)


def test_kl_is_the_full_kl_when_the_top_k_covers_the_vocabulary():
    logits, windows, cont = _case(vocab=fidelity.TOP_K)
    other = logits + torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    m = fidelity.compare(fidelity.reference(logits, windows, cont), other, windows, cont)
    p = torch.log_softmax(logits[:, :-1].double(), -1)
    q = torch.log_softmax(other[:, :-1].double(), -1)
    full = (p.exp() * (p - q)).sum(-1).mean().item()
    assert math.isclose(m["kl"], full, rel_tol=1e-6)
    assert m["top1_agreement"] < 1 and m["covered"] > 0.999


def test_kl_over_the_top_k_and_the_rest_is_a_lower_bound():
    logits, windows, cont = _case(vocab=200)
    other = logits + torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    m = fidelity.compare(fidelity.reference(logits, windows, cont), other, windows, cont)
    p = torch.log_softmax(logits[:, :-1].double(), -1)
    q = torch.log_softmax(other[:, :-1].double(), -1)
    assert 0 < m["kl"] <= (p.exp() * (p - q)).sum(-1).mean().item() + 1e-9


def test_continuations_are_compared_over_the_first_tokens_and_all():
    logits, windows, cont = _case()
    changed = cont.clone()
    changed[0, -1] += 1  # the first row differs at its last token only
    changed[1, 0] += 1  # the second at its first
    m = fidelity.compare(fidelity.reference(logits, windows, cont), logits, windows, changed)
    assert m["first_tokens"] == 8 and m["same_all"] == 0
    cont16 = torch.zeros(2, 20, dtype=torch.long)
    later = cont16.clone()
    later[0, 18] = 1
    m = fidelity.compare(fidelity.reference(logits, windows, cont16), logits, windows, later)
    assert (m["first_tokens"], m["same_first"], m["same_all"]) == (16, 1.0, 0.5)


def test_the_gate_is_the_rise_of_perplexity():
    assert fidelity.gate({"perplexity": 10.05, "reference_perplexity": 10.0,
                          "perplexity_increase": 0.005}, 0.01)[0]
    passed, reason = fidelity.gate({"perplexity": 10.5, "reference_perplexity": 10.0,
                                    "perplexity_increase": 0.05}, 0.01)
    assert not passed and "+5.00%" in reason and "more than 1.0%" in reason
