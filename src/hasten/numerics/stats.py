"""Running statistics of tensors: magnitudes, and what fp16 and bf16 would do to each value.

The edges where a cast overflows, flushes to zero or lands in subnormals come from the formats'
exact definitions (ties to even included), so the counts are what a cast would do. One
bucketize pass counts every value against all edges; the mean relative rounding error is
measured by casting a strided sample of up to 65,536 values per tensor.
"""

from __future__ import annotations

import math

import torch

from hasten.numerics.formats import Format, get

HALF_FORMATS = {"float16": torch.float16, "bfloat16": torch.bfloat16}
EXP_MIN, EXP_MAX = -150, 128  # floor(log2 |v|) over nonzero finite fp32 values
OUTCOMES = ("overflow", "zero", "subnormal")
REL_ERROR_SAMPLE = 65536


def _edges(f: Format) -> dict[str, float]:
    """|v| <= zero flushes; zero < |v| < normal is subnormal; |v| >= overflow overflows."""
    return {
        "zero": float(f.smallest_subnormal / 2),
        "normal": float(f.smallest_normal - f.smallest_subnormal / 2),
        "overflow": float(f.max + f.ulp(f.max) / 2),
    }


EDGES = {name: _edges(get(name)) for name in HALF_FORMATS}


def _below(edge: float) -> float:
    """The largest float32 below edge, so that 'a <= _below(edge)' means 'a < edge'."""
    return float(torch.nextafter(torch.tensor(edge), torch.tensor(0.0)))


# Per format, the values counted as at most zero (flushed), below normal, below overflow.
_AT_MOST = {name: {"zero": e["zero"], "normal": _below(e["normal"]),
                   "overflow": _below(e["overflow"])} for name, e in EDGES.items()}
_BOUNDS = sorted({0.0} | {v for edges in _AT_MOST.values() for v in edges.values()})
BOUNDARIES = torch.tensor(_BOUNDS, dtype=torch.float32)
# Where each format's edges sit among the boundaries, found once rather than per tensor.
_INDEX = {name: {k: _BOUNDS.index(v) for k, v in edges.items()}
          for name, edges in _AT_MOST.items()}


class TensorStats:
    """Everything one audit keeps about one kind of tensor (say, activations) at one module."""

    def __init__(self) -> None:
        self.count = 0
        self.nonzero = 0
        self.nonfinite = 0
        self.max_abs = 0.0
        self.min_nonzero = math.inf
        self.outcomes = {f"{f}_{o}": 0 for f in HALF_FORMATS for o in OUTCOMES}
        self.rel_err_sum = dict.fromkeys(HALF_FORMATS, 0.0)
        self.rel_err_count = dict.fromkeys(HALF_FORMATS, 0)
        self.histogram = torch.zeros(EXP_MAX - EXP_MIN + 1, dtype=torch.int64)

    def update(self, tensor: torch.Tensor) -> None:
        """Add one tensor's values."""
        a = tensor.detach().float().flatten().abs()
        n = a.numel()
        self.count += n
        finite = torch.isfinite(a)
        nonfinite = n - int(finite.sum())
        if nonfinite:
            self.nonfinite += nonfinite
            a = torch.where(finite, a, 0.0)
        at_most = torch.bincount(torch.bucketize(a, BOUNDARIES), minlength=len(_BOUNDS) + 1)
        at_most = at_most.cumsum(0).tolist()
        zeros = at_most[_BOUNDS.index(0.0)]
        if zeros == n:
            return
        self.nonzero += n - zeros
        self.max_abs = max(self.max_abs, float(a.max()))
        self.min_nonzero = min(self.min_nonzero, float(torch.where(a > 0, a, math.inf).min()))
        size = self.histogram.numel()
        _, exponent = torch.frexp(a)
        self.histogram += torch.bincount((exponent.long() - 1 - EXP_MIN).clamp(0, size - 1),
                                         minlength=size)
        self.histogram[-1 - EXP_MIN] -= zeros  # frexp puts zeros at exponent 0, the bin of 2^-1
        for name, index in _INDEX.items():
            flushed = at_most[index["zero"]]
            self.outcomes[f"{name}_zero"] += flushed - zeros
            self.outcomes[f"{name}_subnormal"] += at_most[index["normal"]] - flushed
            self.outcomes[f"{name}_overflow"] += n - at_most[index["overflow"]]
        self._rel_error(a[:: max(1, n // REL_ERROR_SAMPLE)].contiguous())

    def _rel_error(self, a: torch.Tensor) -> None:
        """Mean relative rounding error of the values each format holds as normal numbers."""
        for name, dtype in HALF_FORMATS.items():
            normal = (a >= EDGES[name]["normal"]) & (a < EDGES[name]["overflow"])
            rel = torch.where(normal, (a.to(dtype).float() - a).abs() / a, 0.0)
            self.rel_err_sum[name] += float(rel.sum(dtype=torch.float64))
            self.rel_err_count[name] += int(normal.sum())

    def share(self, key: str) -> float:
        """The share of nonzero values with this outcome, e.g. 'float16_overflow'."""
        return self.outcomes[key] / self.nonzero if self.nonzero else 0.0

    def share_below(self, threshold_exponent: int, shift: int = 0) -> float:
        """The share of nonzero values below 2^threshold_exponent after scaling by 2^shift."""
        if not self.nonzero:
            return 0.0
        cut = threshold_exponent - shift - EXP_MIN
        return float(self.histogram[: max(cut, 0)].sum()) / self.nonzero

    def merge(self, other: TensorStats) -> None:
        """Fold another's values into these."""
        self.count += other.count
        self.nonzero += other.nonzero
        self.nonfinite += other.nonfinite
        self.max_abs = max(self.max_abs, other.max_abs)
        self.min_nonzero = min(self.min_nonzero, other.min_nonzero)
        for key in self.outcomes:
            self.outcomes[key] += other.outcomes[key]
        for name in HALF_FORMATS:
            self.rel_err_sum[name] += other.rel_err_sum[name]
            self.rel_err_count[name] += other.rel_err_count[name]
        self.histogram += other.histogram

    def to_dict(self) -> dict:
        """The numbers a report shows, and the nonzero bins of the log2 histogram."""
        out = {
            "count": self.count, "nonzero": self.nonzero, "nonfinite": self.nonfinite,
            "max_abs": self.max_abs,
            "min_nonzero": self.min_nonzero if self.nonzero else None,
        }
        for key in self.outcomes:
            out[f"{key}_share"] = self.share(key)
        for name in HALF_FORMATS:
            n = self.rel_err_count[name]
            out[f"{name}_rel_error"] = self.rel_err_sum[name] / n if n else None
        out["log2_histogram"] = {
            str(i + EXP_MIN): int(c) for i, c in enumerate(self.histogram.tolist()) if c
        }
        return out


class UpdateStats:
    """Whether one optimizer step's updates would survive being added to half-precision weights."""

    def __init__(self) -> None:
        self.nonzero = 0
        self.lost = dict.fromkeys(HALF_FORMATS, 0)

    def update(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """Compare a parameter before and after the step."""
        step = (after - before).float().flatten()
        weight = before.float().flatten()
        moved = step != 0
        self.nonzero += int(moved.sum())
        for name, dtype in HALF_FORMATS.items():
            w = weight[moved].to(dtype)
            self.lost[name] += int(((w.float() + step[moved]).to(dtype) == w).sum())

    def merge(self, other: UpdateStats) -> None:
        """Fold another's counts into these."""
        self.nonzero += other.nonzero
        for name in HALF_FORMATS:
            self.lost[name] += other.lost[name]

    def to_dict(self) -> dict:
        out: dict = {"nonzero": self.nonzero}
        for name in HALF_FORMATS:
            out[f"{name}_lost_share"] = self.lost[name] / self.nonzero if self.nonzero else 0.0
        return out
