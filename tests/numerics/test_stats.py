"""Tensor statistics: what fp16 and bf16 casts do to each value, counted exactly."""

from __future__ import annotations

import math

import pytest
import torch

from hasten.numerics.stats import TensorStats, UpdateStats


def test_outcomes_are_counted_per_value():
    s = TensorStats()
    s.update(torch.tensor([1e5, -1e-9, 1e-6, 1.0, 0.0, math.inf, 3e-39]))
    assert (s.count, s.nonzero, s.nonfinite) == (7, 5, 1)
    assert s.max_abs == pytest.approx(1e5) and s.min_nonzero == pytest.approx(3e-39)
    assert s.outcomes["float16_overflow"] == 1  # 1e5 > 65504
    assert s.outcomes["float16_zero"] == 2  # 1e-9 and 3e-39 flush
    assert s.outcomes["float16_subnormal"] == 1  # 1e-6 lies between 2^-24 and 2^-14
    assert s.outcomes["bfloat16_overflow"] == 0 and s.outcomes["bfloat16_zero"] == 0
    assert s.outcomes["bfloat16_subnormal"] == 1  # 3e-39 is below 2^-126
    assert s.share("float16_overflow") == pytest.approx(0.2)
    d = s.to_dict()
    assert d["float16_rel_error"] == pytest.approx(0.0)  # 1.0 is the only normal fp16 value
    assert d["log2_histogram"]["0"] == 1 and d["log2_histogram"]["16"] == 1


def test_rounding_error_and_histogram_shift():
    s = TensorStats()
    s.update(torch.full((10,), 0.1))
    assert s.to_dict()["float16_rel_error"] == pytest.approx(2.44140625e-4, rel=1e-3)
    assert s.to_dict()["bfloat16_rel_error"] == pytest.approx(9.765625e-4, rel=1e-2)
    tiny = TensorStats()
    tiny.update(torch.full((4,), 2.0**-20))
    assert tiny.share_below(-14) == 1.0
    assert tiny.share_below(-14, shift=6) == 0.0  # scaled by 64 it is 2^-14: normal
    assert tiny.share_below(-14, shift=5) == 1.0
    tiny.merge(s)
    assert tiny.nonzero == 14 and tiny.share_below(-14) == pytest.approx(4 / 14)


def test_updates_lost_in_half_precision():
    u = UpdateStats()
    before = torch.ones(3)
    u.update(before, before + torch.tensor([1e-4, 1e-3, 1e-2]))
    d = u.to_dict()
    # fp16 spacing at 1 is 2^-10: 1e-4 is lost, 1e-3 and 1e-2 survive.
    assert d["float16_lost_share"] == pytest.approx(1 / 3)
    # bf16 spacing at 1 is 2^-7: only 1e-2 survives.
    assert d["bfloat16_lost_share"] == pytest.approx(2 / 3)
    assert d["nonzero"] == 3


def test_counts_match_real_casts():
    g = torch.Generator().manual_seed(0)
    edges = torch.tensor([65504.0, 65519.99, 65520.0, 2.0**-25, 2.0**-24, 2.0**-14,
                          2.0**-14 - 2.0**-25, 2.0**-14 - 2.0**-24, 2.0**-134, 2.0**-126,
                          3e38, 3.39e38, 3.3961775e38])
    x = torch.cat([torch.randn(20000, generator=g) * 10.0 ** torch.randint(-45, 39, (20000,),
                                                                          generator=g), edges])
    x = x[torch.isfinite(x)]
    s = TensorStats()
    s.update(x)
    a = x.abs()
    for name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        r = a.to(dtype)
        assert s.outcomes[f"{name}_overflow"] == int(torch.isinf(r).sum()), name
        assert s.outcomes[f"{name}_zero"] == int(((r == 0) & (a != 0)).sum()), name
        normal = torch.finfo(dtype).smallest_normal
        assert s.outcomes[f"{name}_subnormal"] == int(((r != 0) & (r < normal)).sum()), name
