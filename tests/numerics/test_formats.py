"""The formats table against the IEEE 754 and bfloat16 definitions, and exact rounding of
values, cross-checked against the libraries' own casts."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from hasten.errors import HastenError
from hasten.numerics import formats as F

TWO = Fraction(2)


def ieee(exponent_bits: int, mantissa_bits: int) -> dict:
    """Limits of an IEEE-style binary format with this layout."""
    bias = 2 ** (exponent_bits - 1) - 1
    return {
        "max": (2 - TWO**-mantissa_bits) * TWO**bias,
        "smallest_normal": TWO ** (1 - bias),
        "smallest_subnormal": TWO ** (1 - bias - mantissa_bits),
        "eps": TWO**-mantissa_bits,
    }


@pytest.mark.parametrize("name, exponent, mantissa", [
    ("float64", 11, 52), ("float32", 8, 23), ("tf32", 8, 10), ("float16", 5, 10),
    ("bfloat16", 8, 7), ("float8_e5m2", 5, 2),
])
def test_ieee_formats_match_the_definition(name, exponent, mantissa):
    f = F.get(name)
    assert (f.sign_bits, f.exponent_bits, f.mantissa_bits) == (1, exponent, mantissa)
    for key, value in ieee(exponent, mantissa).items():
        assert getattr(f, key) == value, key
    assert f.has_inf


def test_known_limits():
    fp16, bf16, e4m3 = F.get("float16"), F.get("bfloat16"), F.get("float8_e4m3fn")
    assert fp16.max == 65504 and fp16.smallest_normal == TWO**-14
    assert fp16.smallest_subnormal == TWO**-24 and fp16.eps == TWO**-10
    assert bf16.smallest_normal == TWO**-126 and bf16.eps == TWO**-7
    # e4m3fn spends its top code on NaN, not inf: largest 1.75 x 2^8.
    assert e4m3.max == 448 and e4m3.smallest_subnormal == TWO**-9 and not e4m3.has_inf
    assert F.get("int8").max == 127
    assert round(F.get("float32").decimal_digits, 2) == 7.22
    rows = {r["format"]: r for r in F.table()}
    assert list(rows) == ["float64", "float32", "tf32", "float16", "bfloat16", "float8_e4m3fn",
                          "float8_e5m2", "int8"]
    assert rows["float16"]["max"] == 65504.0 and rows["int8"]["smallest_normal"] is None


def rows(text: str) -> dict:
    return {r["format"]: r for r in F.explain_value(F.parse_value(text))["rows"]}


def test_one_tenth():
    info = F.explain_value(F.parse_value("0.1"))
    assert not info["dyadic"] and "factor 5" in info["why"]
    r = {row["format"]: row for row in info["rows"]}
    assert r["float32"]["nearest"] == float(np.float32(0.1))
    assert r["float32"]["nearest_text"] == "0.10000000149011611938"
    assert r["float16"]["nearest"] == 0.0999755859375
    assert r["float16"]["rel_error"] == pytest.approx(2.44140625e-4)
    assert r["bfloat16"]["nearest"] == 0.10009765625
    assert all(not row["exact"] for row in info["rows"])


def test_one_third_is_not_dyadic():
    r = rows("1/3")
    assert not F.dyadic(F.parse_value("1/3"))
    assert r["float16"]["nearest"] == 0.333251953125
    assert r["float16"]["ulp"] == 2.0**-12


def test_fp16_overflow_edge():
    r = rows("65504")
    assert r["float16"]["exact"] and r["float16"]["status"] == "exact"
    assert r["bfloat16"]["nearest"] == 65536.0
    r = rows("65520")  # halfway to the next binade: ties to even, which is inf
    assert r["float16"]["nearest_text"] == "inf" and "overflows" in r["float16"]["status"]
    assert r["float32"]["exact"] and r["bfloat16"]["nearest"] == 65536.0
    assert rows("65519")["float16"]["nearest"] == 65504.0
    assert rows("500")["float8_e4m3fn"]["nearest_text"] == "NaN"


def test_underflow_and_subnormals():
    r = rows("1e-8")
    assert r["float16"]["nearest"] == 0 and "rounds to zero" in r["float16"]["status"]
    assert r["bfloat16"]["status"] == "rounded"
    r = rows("2^-24")
    assert F.dyadic(F.parse_value("2^-24"))
    assert r["float16"]["exact"] and r["float16"]["status"].startswith("subnormal")
    assert r["float8_e4m3fn"]["nearest"] == 0
    assert rows("2**-25")["float16"]["nearest"] == 0  # a tie, to even: zero
    assert F.get("float16").round(Fraction(3, 2**26)) == TWO**-24


def test_int8_rounds_and_clamps():
    assert rows("-128.4")["int8"]["nearest"] == -128
    assert rows("2.5")["int8"]["nearest"] == 2
    assert rows("128")["int8"]["nearest_text"] == "clamped"


@pytest.mark.parametrize("name, dtype", [
    ("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16),
    ("float8_e4m3fn", ml_dtypes.float8_e4m3fn), ("float8_e5m2", ml_dtypes.float8_e5m2),
])
def test_rounding_matches_the_library_casts(name, dtype):
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.standard_normal(2000) * 10.0 ** rng.integers(-12, 6, 2000),
        [65504, 65519.9, 65520, 448, 464, 465, 57344, 61440, 2.0**-24, 2.0**-25, 2.0**-9],
    ]).astype(np.float32)
    f = F.get(name)
    for v in values:
        ours = f.round(Fraction(float(v)))
        with np.errstate(over="ignore"):
            theirs = float(np.array(v).astype(dtype).astype(np.float64))
        if ours is None:
            assert not np.isfinite(theirs), v
        else:
            assert float(ours) == theirs, v


def test_float32_rounding_matches_numpy():
    rng = np.random.default_rng(1)
    f = F.get("float32")
    for v in rng.standard_normal(500) * 10.0 ** rng.integers(-40, 38, 500):
        assert float(f.round(Fraction(float(v)))) == float(np.float32(v))


def test_parse_value():
    assert F.parse_value("2^-24") == F.parse_value("2**-24") == Fraction(1, 2**24)
    assert F.parse_value(" -3.75 ") == Fraction(-15, 4)
    assert F.significant_bits(Fraction(-15, 4)) == 4
    for bad in ("abc", "nan", "inf", "1/0", ""):
        with pytest.raises(HastenError, match="not a finite number"):
            F.parse_value(bad)
