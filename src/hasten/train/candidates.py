"""Training candidates: one precision mode with switches on top (hasten.train.switches) and,
for the batch-size search, a larger batch; with a stable name, the reason a candidate cannot run
here, and the code lines that reproduce it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hasten.train import switches
from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, STAGES, Switch

HALF_MODES = ("16-mixed", "bf16-mixed", "16-true", "bf16-true")


@dataclass(frozen=True)
class TrainCandidate:
    """A training configuration: a Fabric precision string, the switches on top of it, and the
    batch size when it is not the study's."""

    precision: str = BASELINE
    switches: tuple[str, ...] = ()
    batch_size: int | None = None

    @property
    def name(self) -> str:
        parts = [*self.switches, *([f"batch-{self.batch_size}"] if self.batch_size else [])]
        return f"{self.precision}/{'+'.join(parts)}" if parts else self.precision

    def uses(self) -> list[Switch]:
        """The candidate's switches, in the order they apply."""
        return [switches.REGISTRY[s] for s in self.switches]

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step."""
        return max((s.accumulation for s in self.uses()), default=1)

    @property
    def converges(self) -> bool:
        """Whether it always trains to the end: it changes what is trained (a switch that may
        trade accuracy, or a larger batch), so only the convergence run shows the trade."""
        return self.batch_size is not None or any(s.converges for s in self.uses())

    def settings(self) -> dict:
        """The fields to store."""
        return {"precision": self.precision, "switches": list(self.switches),
                "batch_size": self.batch_size}

    @classmethod
    def from_settings(cls, settings: dict) -> TrainCandidate:
        return cls(settings["precision"], tuple(settings["switches"]), settings["batch_size"])


def menu() -> list[tuple[TrainCandidate, bool]]:
    """Every candidate, with whether quick mode measures it: fp32, every precision mode, and
    each switch on each precision mode it is measured on."""
    out = [(TrainCandidate(mode), True) for mode in (BASELINE, *HALF_MODES)]
    for switch in switches.menu():
        out.extend((TrainCandidate(base, (switch.name,)), base in switch.quick_bases)
                   for base in switch.bases)
    return out


def batch_candidate(precision: str, batch_size: int) -> TrainCandidate:
    """The candidate the batch-size search adds: its precision at the largest batch that fits."""
    return TrainCandidate(precision, (), batch_size)


# A larger batch ramps its learning rate up from the recipe's over this share of its steps (the
# warm-up of Goyal et al., 2017): the scaled rate at once can diverge in the first steps.
LR_WARMUP_SHARE = 0.2


def lr_scaling(optimizer: torch.optim.Optimizer, factor: float) -> tuple[float, str]:
    """The learning-rate multiplier for a batch `factor` times the recipe's, and its rule:
    linear for plain SGD (Goyal et al., 2017), the square root for adaptive optimizers such as
    Adam and AdamW (Malladi et al., 2022); the recipe's rate at its batch kept, a larger batch
    takes fewer steps over the same samples and learns less."""
    if type(optimizer) is torch.optim.SGD:
        return factor, "linear"
    return math.sqrt(factor), "square-root"


def lr_warmup_steps(steps: int) -> int:
    """Steps over which a larger batch's learning rate ramps up to its scaled value."""
    return max(1, round(LR_WARMUP_SHARE * steps))


def combine(precision: str, winners: list[TrainCandidate]) -> TrainCandidate:
    """The precision mode with every winning switch at once, named by its switches."""
    return TrainCandidate(precision, tuple(s for w in winners for s in w.switches))


def skip_reason(c: TrainCandidate, settings: TrainSettings, in_quick: bool) -> str | None:
    """Why this candidate cannot run on this recipe (`settings.model`: what it offers) with
    these settings, or None when it can."""
    if settings.quick and not in_quick:
        return "not in quick mode"
    if (settings.device == "cuda" and "bf16" in c.precision
            and not torch.cuda.is_bf16_supported()):
        return "this GPU has no bfloat16 support"
    for switch in c.uses():
        reason = switch.unavailable(settings.model, settings)
        if reason:
            return reason
    return None


def code_lines(c: TrainCandidate, device: str, devices: int) -> list[str]:
    """The lines that set this candidate up with Lightning Fabric, as a user would write them."""
    accelerator = "cuda" if device == "cuda" else "cpu"
    staged = {stage: [line for s in c.uses() if s.stage == stage for line in s.code(device)]
              for stage in STAGES}
    fabric_args = f'accelerator="{accelerator}", devices={devices}'
    if devices > 1:
        fabric_args += ', strategy="ddp"'
    lines = list(staged["setup"])
    if c.precision == "16-mixed" and accelerator == "cpu":
        # Fabric(precision="16-mixed") silently falls back to bf16 on a CPU; the plugin does not.
        lines.append("from lightning.fabric.plugins.precision import MixedPrecision")
        lines.append(f"fabric = Fabric({fabric_args}, plugins=[MixedPrecision("
                     '"16-mixed", "cpu", torch.amp.GradScaler("cpu"))])')
    else:
        lines.append(f'fabric = Fabric({fabric_args}, precision="{c.precision}")')
    lines += staged["model"] + staged["optimizer"] + staged["wrap"]
    lines.append("model, optimizer = fabric.setup(model, optimizer)")
    loader = [*([f"batch_size={c.batch_size}"] if c.batch_size else []),
              *(arg for s in c.uses() for arg in s.loader_code())]
    if loader:
        lines.append(f"loader = DataLoader(dataset, {', '.join(loader)}, shuffle=True)")
    return lines + staged["after"]
