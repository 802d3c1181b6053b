"""Gradient (activation) checkpointing: recompute activations in the backward pass instead of
keeping them, trading time for memory."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, hf_models, register, repeated_blocks


class Checkpointing(Switch):
    name, order, quick_bases = "checkpointing", 30, (BASELINE,)

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        how = None
        blocks = repeated_blocks(module)
        if any(getattr(m, "supports_gradient_checkpointing", False) for m in hf_models(module)):
            how = "transformers"
        elif blocks:
            how = "blocks: " + ", ".join(t.__name__ for t in blocks)
        return {"checkpointing": how}

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if not facts["checkpointing"]:
            return ("the model has no gradient-checkpointing switch (transformers) and no "
                    "repeated blocks to checkpoint")
        return None

    def model(self, module: nn.Module) -> None:
        switchable = [m for m in hf_models(module)
                      if getattr(m, "supports_gradient_checkpointing", False)]
        for m in switchable:
            enable = (getattr(m, "activation_checkpointing_enable", None)
                      or m.gradient_checkpointing_enable)
            enable()
        if switchable:
            return
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

    def code(self, device: str) -> list[str]:
        return ["model.gradient_checkpointing_enable()  # or activation-checkpoint the "
                "repeated blocks"]


register(Checkpointing())
