"""Fidelity for generation, against the fp32 baseline on held-out text.

Teacher-forced, each position's next-token distribution is compared with fp32's: perplexity
(its relative increase is what `max_drop` gates), top-1 agreement, and the mean KL divergence
KL(fp32 || candidate). So that the reference stays small for any vocabulary, the baseline keeps
at each position its TOP_K most likely tokens and the mass of the rest; the KL is taken over
those K tokens plus one bucket for the rest, a lower bound of the full KL that is close to it
when the K tokens hold most of the mass (they do for a trained model: see `covered`).
Free-running, the greedy continuations of held-out prompts are compared token for token: the
share identical to fp32's over the first FIRST tokens and over all new tokens."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

TOP_K = 32
FIRST = 16
REFERENCE_FILE = "generate_reference.npz"


def reference(logits: torch.Tensor, windows: torch.Tensor, continuations: torch.Tensor) -> dict:
    """What the baseline keeps of its own outputs: per predicted position the target token's
    log-probability, its top-K tokens with their log-probabilities, and its continuations."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = logp.gather(-1, windows[:, 1:, None]).squeeze(-1)
    top_logp, top_ids = logp.topk(min(TOP_K, logp.shape[-1]), dim=-1)
    return {"target": target.numpy(), "top_ids": top_ids.numpy(),
            "top_logp": top_logp.numpy(), "continuations": continuations.numpy()}


def save(path: Path, kept: dict) -> None:
    np.savez(path, **kept)


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as found:
        return {k: found[k] for k in found.files}


def compare(kept: dict, logits: torch.Tensor, windows: torch.Tensor,
            continuations: torch.Tensor) -> dict:
    """A candidate's figures against the baseline's kept outputs."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = logp.gather(-1, windows[:, 1:, None]).squeeze(-1).double()
    ref_target = torch.from_numpy(kept["target"]).double()
    ref_ids = torch.from_numpy(kept["top_ids"])
    ref_top = torch.from_numpy(kept["top_logp"]).double()
    cand_top = logp.gather(-1, ref_ids).double()
    p = ref_top.exp()
    p_rest = (1 - p.sum(-1)).clamp_min(0)
    q_rest = (1 - cand_top.exp().sum(-1)).clamp_min(1e-12)
    kl = (p * (ref_top - cand_top)).sum(-1) + torch.where(
        p_rest > 0, p_rest * (p_rest.clamp_min(1e-12).log() - q_rest.log()), 0.0)
    ppl, ref_ppl = math.exp(-target.mean().item()), math.exp(-ref_target.mean().item())
    ref_cont = torch.from_numpy(kept["continuations"])
    first = min(FIRST, ref_cont.shape[1])
    return {
        "perplexity": ppl,
        "reference_perplexity": ref_ppl,
        "perplexity_increase": ppl / ref_ppl - 1,
        "top1_agreement": (logp.argmax(-1) == ref_ids[..., 0]).double().mean().item(),
        "kl": kl.clamp_min(0).mean().item(),
        "covered": p.sum(-1).mean().item(),
        "same_first": (continuations[:, :first] == ref_cont[:, :first]).all(1)
        .double().mean().item(),
        "same_all": (continuations == ref_cont).all(1).double().mean().item(),
        "first_tokens": first,
        "tokens": int(ref_cont.shape[1]),
        "positions": int(target.numel()),
    }


def gate(metrics: dict, max_drop: float) -> tuple[bool, str]:
    """Passed when perplexity rose by at most `max_drop`, relative; with the reason."""
    rise = metrics["perplexity_increase"]
    if rise <= max_drop:
        return True, (f"perplexity {metrics['perplexity']:.4g} against fp32's "
                      f"{metrics['reference_perplexity']:.4g} ({rise:+.2%}), within "
                      f"{max_drop:.1%}")
    return False, (f"perplexity {metrics['perplexity']:.4g} against fp32's "
                   f"{metrics['reference_perplexity']:.4g} ({rise:+.2%}), more than "
                   f"{max_drop:.1%}")
