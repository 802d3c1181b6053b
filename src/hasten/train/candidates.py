"""Training candidates: one precision mode and a few switches each, with a stable name, the
reason a candidate cannot run here, and the code lines that reproduce it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

BASELINE = "32-true"
HALF_MODES = ("16-mixed", "bf16-mixed", "16-true", "bf16-true")
ACCUMULATION = 4
WORKERS = 2


@dataclass(frozen=True)
class TrainCandidate:
    """A training configuration: a Fabric precision string plus the switches on top of it."""

    name: str
    precision: str = BASELINE
    tf32: bool = False
    compile: bool = False
    checkpointing: bool = False
    accumulation: int = 1
    optimizer: str | None = None  # None: the recipe's own; else adamw-foreach/-fused/-8bit
    channels_last: bool = False
    attention: str | None = None  # a Hugging Face attention implementation, e.g. "sdpa"
    workers: int = 0
    persistent_workers: bool = False
    pin_memory: bool = False
    qat: bool = False
    batch_size: int | None = None  # None: the study's batch size

    def settings(self) -> dict:
        """The fields to store, without the name."""
        out = asdict(self)
        out.pop("name")
        return out

    @classmethod
    def from_settings(cls, name: str, settings: dict) -> TrainCandidate:
        return cls(name=name, **settings)


def _on(base: str, switch: str, **fields) -> TrainCandidate:
    return TrainCandidate(name=f"{base}/{switch}", precision=base, **fields)


CANDIDATES: tuple[TrainCandidate, ...] = (
    TrainCandidate(BASELINE),
    _on(BASELINE, "tf32", tf32=True),
    *(TrainCandidate(mode, precision=mode) for mode in HALF_MODES),
    _on(BASELINE, "compile", compile=True),
    _on("bf16-mixed", "compile", compile=True),
    _on(BASELINE, "checkpointing", checkpointing=True),
    _on(BASELINE, f"accumulate-{ACCUMULATION}", accumulation=ACCUMULATION),
    _on(BASELINE, "adamw-foreach", optimizer="adamw-foreach"),
    _on(BASELINE, "adamw-fused", optimizer="adamw-fused"),
    _on(BASELINE, "adamw-8bit", optimizer="adamw-8bit"),
    _on(BASELINE, "channels-last", channels_last=True),
    _on("bf16-mixed", "channels-last", channels_last=True),
    _on(BASELINE, "attention-sdpa", attention="sdpa"),
    _on(BASELINE, "attention-eager", attention="eager"),
    _on(BASELINE, f"workers-{WORKERS}", workers=WORKERS),
    _on(BASELINE, f"workers-{WORKERS}-persistent", workers=WORKERS, persistent_workers=True),
    _on(BASELINE, "pinned-memory", pin_memory=True),
    _on(BASELINE, "qat-int8", qat=True),
)


# What --quick measures: every precision mode and the switches most likely to pay.
QUICK = frozenset({BASELINE, *HALF_MODES, "bf16-mixed/compile", "32-true/checkpointing",
                   "32-true/attention-sdpa", "32-true/attention-eager", "32-true/adamw-fused",
                   "bf16-mixed/channels-last", "32-true/qat-int8"})


def batch_candidate(precision: str, batch_size: int) -> TrainCandidate:
    """The candidate the batch-size search adds: its precision at the largest batch that fits."""
    return _on(precision, f"batch-{batch_size}", batch_size=batch_size)


# Switches that only speed a step up (no trade in memory, samples or accuracy), grouped by
# what they set: the combined candidate takes the fastest of each group that paid on its own.
SPEED_GROUPS = {"compile": ("compile",), "optimizer": ("optimizer",),
                "layout": ("channels_last",), "attention": ("attention",),
                "loader": ("workers", "persistent_workers", "pin_memory")}


def speed_group(c: TrainCandidate) -> str | None:
    """Which speed-only group a single-switch candidate belongs to, or None."""
    default = TrainCandidate("default")
    for group, fields in SPEED_GROUPS.items():
        if any(getattr(c, f) != getattr(default, f) for f in fields):
            return group
    return None


def combine(precision: str, winners: list[TrainCandidate]) -> TrainCandidate:
    """The precision mode with every winning switch at once, named by its switches."""
    fields = {f: getattr(w, f) for w in winners for f in SPEED_GROUPS[speed_group(w)]}
    name = "+".join(w.name.split("/", 1)[1] for w in winners)
    return TrainCandidate(name=f"{precision}/{name}", precision=precision, **fields)


def skip_reason(c: TrainCandidate, info: dict, device: str, batch_size: int,
                quick: bool = False) -> str | None:
    """Why this candidate cannot run on this model and device, or None when it can."""
    cuda = device == "cuda"
    if quick and c.name not in QUICK:
        return "not in --quick"
    if c.tf32 and not cuda:
        return "TF32 is a matmul mode of NVIDIA GPUs (Ampere and newer); this study runs on the CPU"
    if c.tf32 and torch.cuda.get_device_capability()[0] < 8:
        return "this GPU is older than Ampere and has no TF32"
    if cuda and "bf16" in c.precision and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16 support"
    if c.pin_memory and not cuda:
        return "pinned memory speeds up copies to a GPU; this study runs on the CPU"
    if c.checkpointing and not info["checkpointing"]:
        return ("the model has no gradient-checkpointing switch (transformers) and no "
                "repeated blocks to checkpoint")
    if c.accumulation > 1 and batch_size % c.accumulation:
        return (f"accumulating {c.accumulation} micro-batches needs a batch size divisible by "
                f"{c.accumulation}, not {batch_size}")
    if c.optimizer and info["optimizer"] not in ("AdamW", "Adam"):
        return (f"the recipe trains with {info['optimizer']}; an AdamW variant would change the "
                "training, not only its speed")
    if c.optimizer == "adamw-8bit" and cuda and not _has("bitsandbytes"):
        return "8-bit AdamW on CUDA needs bitsandbytes (pip install bitsandbytes)"
    if c.channels_last and not info["has_conv"]:
        return "channels-last helps 2-D convolutions, and the model has none"
    if c.attention and not info["attention"]:
        return "the model has no switchable attention implementation (a transformers model)"
    if c.attention and c.attention == info["attention"]:
        return f"the model already uses {c.attention} attention"
    if c.qat and not info["has_linear"]:
        return "quantization-aware training covers nn.Linear layers, and the model has none"
    return None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def code_lines(c: TrainCandidate, device: str, devices: int) -> list[str]:
    """The lines that set this candidate up with Lightning Fabric, as a user would write them."""
    accelerator = "cuda" if device == "cuda" else "cpu"
    lines = []
    if c.tf32:
        lines.append('torch.set_float32_matmul_precision("high")  # TF32 matmuls')
    fabric_args = f'accelerator="{accelerator}", devices={devices}'
    if devices > 1:
        fabric_args += ', strategy="ddp"'
    if c.precision == "16-mixed" and accelerator == "cpu":
        # Fabric(precision="16-mixed") silently falls back to bf16 on a CPU; the plugin does not.
        lines.append("from lightning.fabric.plugins.precision import MixedPrecision")
        lines.append(f"fabric = Fabric({fabric_args}, plugins=[MixedPrecision("
                     '"16-mixed", "cpu", torch.amp.GradScaler("cpu"))])')
    else:
        lines.append(f'fabric = Fabric({fabric_args}, precision="{c.precision}")')
    if c.attention:
        lines.append(f'model.set_attn_implementation("{c.attention}")  # the transformers model')
    if c.checkpointing:
        lines.append("model.gradient_checkpointing_enable()  # or activation-checkpoint the "
                     "repeated blocks")
    if c.channels_last:
        lines.append("model = model.to(memory_format=torch.channels_last)  # and each image batch")
    if c.qat:
        lines.append("from hasten.train import qat; qat.prepare(model)  # then qat.convert "
                     "after training")
    if c.optimizer == "adamw-8bit":
        lines.append("from torchao.optim import AdamW8bit; optimizer = AdamW8bit("
                     "model.parameters(), lr=lr)" if accelerator == "cpu" else
                     "import bitsandbytes as bnb; optimizer = bnb.optim.AdamW8bit("
                     "model.parameters(), lr=lr)")
    elif c.optimizer:
        flag = "fused" if c.optimizer == "adamw-fused" else "foreach"
        lines.append(f"optimizer = torch.optim.AdamW(model.parameters(), lr=lr, {flag}=True)")
    if c.compile:
        lines.append("model = torch.compile(model)")
    lines.append("model, optimizer = fabric.setup(model, optimizer)")
    loader = []
    if c.workers:
        loader.append(f"num_workers={c.workers}")
    if c.persistent_workers:
        loader.append("persistent_workers=True")
    if c.pin_memory:
        loader.append("pin_memory=True")
    if c.batch_size:
        loader.insert(0, f"batch_size={c.batch_size}")
    if loader:
        lines.append(f"loader = DataLoader(dataset, {', '.join(loader)}, shuffle=True)")
    if c.accumulation > 1:
        lines.append(f"# call optimizer.step() every {c.accumulation} micro-batches of "
                     f"batch_size/{c.accumulation}, dividing each loss by {c.accumulation}")
    return lines
