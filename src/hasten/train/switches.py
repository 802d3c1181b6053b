"""What a training candidate changes about the recipe's model, optimizer and data loader, and
what the model offers to change (a transformers model, convolutions, repeated blocks)."""

from __future__ import annotations

import functools
import sys
from collections import Counter
from typing import Any

import torch
from torch import nn

from hasten.train.candidates import TrainCandidate


def hf_models(module: nn.Module) -> list[nn.Module]:
    """The outermost transformers models inside the module (the module itself included)."""
    transformers = sys.modules.get("transformers")
    if transformers is None:
        # Nothing imported transformers, so the model holds none of its models; importing it
        # here would cost seconds in every trial process.
        return []
    PreTrainedModel = transformers.PreTrainedModel  # noqa: N806
    found: list[nn.Module] = []
    for m in module.modules():
        if isinstance(m, PreTrainedModel) and not any(m in set(f.modules()) for f in found):
            found.append(m)
    return found


def repeated_blocks(module: nn.Module) -> tuple[type, ...]:
    """Classes of the blocks a ModuleList or Sequential repeats: what activation checkpointing
    wraps in a model without a transformers switch."""
    kinds: set[type] = set()
    for m in module.modules():
        if isinstance(m, nn.ModuleList | nn.Sequential):
            counts = Counter(type(c) for c in m.children() if any(True for _ in c.parameters()))
            kinds.update(t for t, n in counts.items() if n >= 2 and t not in (nn.Linear, nn.Conv2d))
    return tuple(sorted(kinds, key=lambda t: t.__name__))


def _optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """AdamW, or Adam without weight decay (the same update), count as AdamW; others by name."""
    if isinstance(optimizer, torch.optim.AdamW):
        return "AdamW"
    if isinstance(optimizer, torch.optim.Adam) and not optimizer.defaults.get("weight_decay"):
        return "AdamW"
    return type(optimizer).__name__


def describe(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """What the model and optimizer offer the candidates, stored with the study."""
    hf = hf_models(module)
    checkpointing = None
    blocks = repeated_blocks(module)
    if any(getattr(m, "supports_gradient_checkpointing", False) for m in hf):
        checkpointing = "transformers"
    elif blocks:
        checkpointing = "blocks: " + ", ".join(t.__name__ for t in blocks)
    return {
        "model": type(module).__name__,
        "parameters": sum(p.numel() for p in module.parameters()),
        "has_conv": any(isinstance(m, nn.Conv2d) for m in module.modules()),
        "has_linear": any(isinstance(m, nn.Linear) for m in module.modules()),
        "attention": hf[0].config._attn_implementation if hf else None,
        "checkpointing": checkpointing,
        "optimizer": _optimizer_kind(optimizer),
    }


def apply_to_model(c: TrainCandidate, module: nn.Module) -> None:
    """Switch attention, gradient checkpointing and memory layout on the model, in place."""
    hf = hf_models(module)
    if c.attention:
        for m in hf:
            m.set_attn_implementation(c.attention)
    if c.checkpointing:
        switchable = [m for m in hf if getattr(m, "supports_gradient_checkpointing", False)]
        for m in switchable:
            enable = (getattr(m, "activation_checkpointing_enable", None)
                      or m.gradient_checkpointing_enable)
            enable()
        if not switchable:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
                CheckpointImpl,
                apply_activation_checkpointing,
                checkpoint_wrapper,
            )

            blocks = repeated_blocks(module)
            apply_activation_checkpointing(
                module, check_fn=lambda m: isinstance(m, blocks),
                checkpoint_wrapper_fn=functools.partial(
                    checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
            )
    if c.channels_last:
        module.to(memory_format=torch.channels_last)


def build_optimizer(c: TrainCandidate, recipe_optimizer: torch.optim.Optimizer,
                    module: nn.Module, device: str) -> torch.optim.Optimizer:
    """The recipe's optimizer, or the candidate's AdamW variant with the recipe's settings."""
    if not c.optimizer:
        return recipe_optimizer
    d = recipe_optimizer.defaults
    args = {"lr": d["lr"], "betas": d["betas"], "eps": d["eps"],
            "weight_decay": d.get("weight_decay", 0.0)}
    if c.optimizer == "adamw-8bit":
        if device == "cuda":
            import bitsandbytes

            return bitsandbytes.optim.AdamW8bit(module.parameters(), **args)
        from torchao.optim import AdamW8bit

        return AdamW8bit(module.parameters(), **args)
    flag = "fused" if c.optimizer == "adamw-fused" else "foreach"
    return torch.optim.AdamW(module.parameters(), **args, **{flag: True})


def loader_settings(c: TrainCandidate) -> dict:
    """DataLoader keyword arguments for the candidate's worker and memory settings."""
    return {"num_workers": c.workers, "persistent_workers": c.persistent_workers,
            "pin_memory": c.pin_memory}


def to_channels_last(batch: Any) -> Any:
    """Every 4-D floating tensor of the batch in channels-last layout."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 4 and batch.is_floating_point():
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: to_channels_last(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_channels_last(v) for v in batch)
    return batch


def batch_length(batch: Any) -> int:
    """How many samples a batch holds: the length of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, dict):
        return batch_length(next(iter(batch.values())))
    if isinstance(batch, list | tuple):
        return batch_length(batch[0])
    raise TypeError(f"cannot tell the size of a batch of type {type(batch).__name__}")
