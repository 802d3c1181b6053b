"""Batches grouped by length for variable-length text: samples of similar length go into one
batch, and each batch is cut to its longest sample, so that less of each step is spent on
padding. Grouping is bucketed, not a full sort: each epoch shuffles, sorts within chunks of
CHUNK batches and shuffles the batches again, which keeps most of the randomness of random
batches. The checklist's caution holds: where labels correlate with length, batches that are
less random can cost accuracy; the candidate always trains to the end so that the convergence
run shows whether it does."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings
from hasten.train.switches import BASELINE, Switch, register

CHUNK = 50  # batches sorted together: the bucket within which lengths are grouped
MIN_PADDING = 0.1  # the share of padding below which there is nothing to gain


def _is_mask(value: Any) -> bool:
    """A 1-D tensor of zeros and ones with every one before every zero."""
    if not (isinstance(value, torch.Tensor) and value.dim() == 1 and len(value) > 1
            and not value.is_floating_point() and value.min() >= 0 and value.max() <= 1):
        return False
    length = int(value.sum())
    return bool(value[:length].all()) and not bool(value[length:].any())


def _mask_position(dataset: Any, samples: int = 64) -> int | str | None:
    """Where the samples keep their attention mask: the position (or key) that holds a mask
    (see _is_mask) in each of the first `samples` samples, padded in at least one; None when
    there is none."""
    first = [dataset[i] for i in range(min(samples, len(dataset)))]
    keys = (first[0].keys() if isinstance(first[0], dict) else
            range(len(first[0])) if isinstance(first[0], list | tuple) else ())
    for key in keys:
        values = [sample[key] for sample in first]
        if all(map(_is_mask, values)) and any(not bool(v.all()) for v in values):
            return key
    return None


def lengths(dataset: Any, position: int | str) -> list[int]:
    """Each sample's length: the ones in its attention mask."""
    tensors = getattr(dataset, "tensors", None)
    if isinstance(position, int) and tensors is not None:
        return tensors[position].sum(1).tolist()
    return [int(dataset[i][position].sum()) for i in range(len(dataset))]


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Batches of indices grouped by length: each epoch, a seeded shuffle, a sort by length
    within chunks of `chunk` batches, and a shuffle of the batches."""

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator,
                 drop_last: bool = True, chunk: int = CHUNK):
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator
        self.drop_last, self.chunk = drop_last, chunk

    def __len__(self) -> int:
        whole, rest = divmod(len(self.lengths), self.batch_size)
        return whole if self.drop_last or not rest else whole + 1

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.batch_size * self.chunk
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk),
                                                                     self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def trim_padding(batch: Any, position: int | str) -> Any:
    """The batch with every [batch, length] tensor cut to the batch's longest sample."""
    mask = batch[position]
    longest = int(mask.sum(1).max())
    width = mask.shape[1]
    if longest == width:
        return batch

    def cut(t: Any) -> Any:
        return t[:, :longest] if isinstance(t, torch.Tensor) and t.dim() >= 2 \
            and t.shape[:2] == mask.shape[:2] and t.shape[1] == width else t

    if isinstance(batch, dict):
        return {k: cut(v) for k, v in batch.items()}
    return type(batch)(cut(v) for v in batch)


class LengthGrouped(Switch):
    name, order, stage, converges = "length-grouped", 150, "after", True
    quick_bases = (BASELINE,)

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        position = _mask_position(dataset)
        if position is None:
            return {"lengths": None}
        found = lengths(dataset, position)
        return {"lengths": {"mask": position, "mean": statistics.fmean(found),
                            "padded_to": len(dataset[0][position])}}

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        found = facts["lengths"]
        if settings.devices > 1:
            return ("grouping by length brings its own batch sampler, which one process only "
                    "can use here; run with one device")
        if found is None:
            return ("grouping by length needs text padded to a fixed length, with an attention "
                    "mask (ones, then zeros) in each training sample")
        padding = 1 - found["mean"] / found["padded_to"]
        if padding < MIN_PADDING:
            return (f"the training samples are nearly all as long as their padding (mean "
                    f"{found['mean']:.1f} of {found['padded_to']} tokens): little to gain")
        return None

    def loader(self, kwargs: dict, dataset: Any) -> dict:
        # Kept for batch(): a trial process trains one candidate, with one training set.
        self.position = _mask_position(dataset)
        rest = {k: v for k, v in kwargs.items()
                if k not in ("batch_size", "shuffle", "drop_last", "generator")}
        return {**rest, "batch_sampler": LengthGroupedSampler(
            lengths(dataset, self.position), kwargs["batch_size"], kwargs["generator"],
            kwargs.get("drop_last", False))}

    def batch(self, batch: Any) -> Any:
        return trim_padding(batch, self.position)

    def code(self, device: str) -> list[str]:
        return ["from hasten.train.switches.length_grouped import LengthGroupedSampler, "
                "lengths, trim_padding",
                "loader = DataLoader(dataset, batch_sampler=LengthGroupedSampler("
                "lengths(dataset, MASK), batch_size, torch.Generator()))",
                "# and each batch: batch = trim_padding(batch, MASK)  (MASK: where a sample "
                "keeps its attention mask)"]


register(LengthGrouped())
