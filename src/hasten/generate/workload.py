"""What a generation study feeds the decoder: token windows cut from real text (the user's
texts, or the demo's held-out ones), written once to the study folder so that every trial
process reads the very same ids without a tokenizer.

Prompts are windows of each prompt length at the largest batch size (a smaller batch takes
the first rows); the fidelity check reads other windows of the same text: teacher-forced
windows for perplexity, agreement and KL divergence, and prompts whose greedy continuations
are compared with fp32's."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hasten.errors import HastenError
from hasten.folders import write_whole

TOKENS_FILE = "tokens.json"
POINT = re.compile(r"b(\d+)/p(\d+)")


@dataclass(frozen=True)
class GenerateWorkload:
    """The points a generation study measures (batch size x prompt length, each generating
    `new_tokens`) and the size of its fidelity check; `data` says where the text came from and
    holds the SHA-256 of the token windows (TOKENS_FILE)."""

    batch_sizes: list[int]
    prompt_lengths: list[int]
    new_tokens: int
    eval_windows: int
    eval_length: int
    continuations: int
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> GenerateWorkload:
        return cls(**stored)

    def points(self) -> list[str]:
        """Every point, batch 1 first: b1/p128, b1/p512, b8/p128, ..."""
        return [point(b, p) for b in self.batch_sizes for p in self.prompt_lengths]

    def needed(self) -> int:
        """How many tokens of text the windows take."""
        return (max(self.batch_sizes) * sum(self.prompt_lengths)
                + self.eval_windows * self.eval_length
                + self.continuations * min(self.prompt_lengths))


def point(batch: int, prompt: int) -> str:
    return f"b{batch}/p{prompt}"


def parse_point(name: str) -> tuple[int, int]:
    """b8/p128 -> (8, 128)."""
    found = POINT.fullmatch(name)
    if found is None:
        raise HastenError(f"{name!r} is not a generation point (b<batch>/p<prompt length>).")
    return int(found[1]), int(found[2])


def token_stream(tokenizer, texts: list[str], needed: int) -> list[int]:
    """The texts' tokens end to end, an end-of-text token between two texts (where the
    tokenizer has one), until `needed` tokens are there."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            stream.append(eos)
        if len(stream) >= needed:
            break
    return stream


def cut_windows(workload: GenerateWorkload, stream: list[int], source: str) -> dict:
    """The windows every trial reads: {"prompts": {length: rows}, "eval": rows, "continue":
    rows}, cut one after another from `stream`; too little text is one clear error."""
    if len(stream) < workload.needed():
        raise HastenError(f"{source} holds {len(stream):,} tokens, and this study needs "
                          f"{workload.needed():,} (prompts, held-out windows and continuations); "
                          "give more text, or shorter --prompt-lengths.")
    at = 0

    def take(count: int, length: int) -> list[list[int]]:
        nonlocal at
        rows = [stream[at + i * length: at + (i + 1) * length] for i in range(count)]
        at += count * length
        return rows

    prompts = {str(p): take(max(workload.batch_sizes), p) for p in workload.prompt_lengths}
    return {"prompts": prompts, "eval": take(workload.eval_windows, workload.eval_length),
            "continue": take(workload.continuations, min(workload.prompt_lengths))}


def _encode(windows: dict) -> bytes:
    return json.dumps(windows, separators=(",", ":")).encode()


def write_tokens(folder: Path, windows: dict) -> None:
    """Write the windows to the study folder, whole."""
    write_whole(Path(folder) / TOKENS_FILE, _encode(windows))


def windows_sha256(windows: dict) -> str:
    """The SHA-256 of the windows as TOKENS_FILE holds them, which the settings keep."""
    return hashlib.sha256(_encode(windows)).hexdigest()


class Tokens:
    """The study's token windows read back as tensors."""

    def __init__(self, folder: Path, sha256: str | None = None):
        path = Path(folder) / TOKENS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise HastenError(f"{path}, the token windows of the study in {folder}, is "
                              "missing; start the study over with `fresh`.") from None
        if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
            raise HastenError(f"{path} is not the file this study wrote (its SHA-256 differs); "
                              "start the study over with `fresh`.")
        self.windows = json.loads(raw)

    def prompts(self, name: str) -> torch.Tensor:
        """The prompts of a point: (batch, prompt length)."""
        batch, length = parse_point(name)
        return torch.tensor(self.windows["prompts"][str(length)][:batch], dtype=torch.long)

    def eval(self) -> torch.Tensor:
        return torch.tensor(self.windows["eval"], dtype=torch.long)

    def continuations(self) -> torch.Tensor:
        return torch.tensor(self.windows["continue"], dtype=torch.long)
