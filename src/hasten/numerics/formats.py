"""Floating-point and int8 formats, derived from the libraries' own definitions, and exact
rounding of any real value into each, so a user sees what a format does to their numbers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

import ml_dtypes
import numpy as np
import torch

from hasten.errors import HastenError


@dataclass(frozen=True)
class Format:
    """One number format: its bit layout and the limits that follow from it."""

    name: str
    sign_bits: int
    exponent_bits: int
    mantissa_bits: int
    max: Fraction
    smallest_normal: Fraction
    smallest_subnormal: Fraction
    eps: Fraction
    has_inf: bool
    integer: bool
    source: str

    @property
    def bits(self) -> int:
        return self.sign_bits + self.exponent_bits + self.mantissa_bits

    @property
    def decimal_digits(self) -> float:
        """Significant decimal digits the significand carries: (mantissa bits + 1) x log10 2."""
        if self.integer:
            return self.mantissa_bits * math.log10(2)
        return (self.mantissa_bits + 1) * math.log10(2)

    def round(self, x: Fraction) -> Fraction | None:
        """The representable value nearest to x (ties to even), or None when x overflows."""
        if x == 0:
            return Fraction(0)
        a = abs(x)
        if self.integer:
            step = Fraction(1)
        else:
            exponent = max(_floor_log2(a), _floor_log2(self.smallest_normal))
            step = Fraction(2) ** (exponent - self.mantissa_bits)
        value = _round_half_even(a / step) * step
        limit = self.max + 1 if self.integer and x < 0 else self.max
        if value > limit:
            return None
        return value if x > 0 else -value

    def ulp(self, x: Fraction) -> Fraction:
        """The spacing between representable values around x (at the largest value, for an x
        beyond it)."""
        if self.integer:
            return Fraction(1)
        a = min(max(abs(x), self.smallest_normal), self.max)
        return Fraction(2) ** (_floor_log2(a) - self.mantissa_bits)


def _floor_log2(a: Fraction) -> int:
    """floor(log2(a)) for a positive fraction, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    return e


def _round_half_even(q: Fraction) -> int:
    whole, rest = divmod(q.numerator, q.denominator)
    twice = 2 * rest
    if twice > q.denominator or (twice == q.denominator and whole % 2 == 1):
        whole += 1
    return whole


def _from_finfo(name: str, dtype: type, has_inf: bool) -> Format:
    info = ml_dtypes.finfo(dtype)
    return Format(
        name=name, sign_bits=1, exponent_bits=int(info.nexp), mantissa_bits=int(info.nmant),
        max=Fraction(float(info.max)), smallest_normal=Fraction(float(info.smallest_normal)),
        smallest_subnormal=Fraction(float(info.smallest_subnormal)),
        eps=Fraction(float(info.eps)), has_inf=has_inf, integer=False,
        source=f"ml_dtypes.finfo({np.dtype(dtype).name})",
    )


def _tf32() -> Format:
    """TF32 has no dtype anywhere: fp32's sign and 8-bit exponent with a 10-bit mantissa."""
    fp32 = torch.finfo(torch.float32)
    mantissa = 10
    emin = _floor_log2(Fraction(fp32.smallest_normal))
    emax = _floor_log2(Fraction(fp32.max))
    return Format(
        name="tf32", sign_bits=1, exponent_bits=8, mantissa_bits=mantissa,
        max=(2 - Fraction(1, 2**mantissa)) * Fraction(2) ** emax,
        smallest_normal=Fraction(2) ** emin,
        smallest_subnormal=Fraction(2) ** (emin - mantissa),
        eps=Fraction(1, 2**mantissa), has_inf=True, integer=False,
        source="bit layout: fp32's exponent (torch.finfo) with 10 mantissa bits",
    )


def _int8() -> Format:
    info = torch.iinfo(torch.int8)
    return Format(
        name="int8", sign_bits=1, exponent_bits=0, mantissa_bits=info.bits - 1,
        max=Fraction(info.max), smallest_normal=Fraction(1), smallest_subnormal=Fraction(1),
        eps=Fraction(1), has_inf=False, integer=True, source="torch.iinfo(torch.int8)",
    )


FORMATS: tuple[Format, ...] = (
    _from_finfo("float64", np.float64, True),
    _from_finfo("float32", np.float32, True),
    _tf32(),
    _from_finfo("float16", np.float16, True),
    _from_finfo("bfloat16", ml_dtypes.bfloat16, True),
    _from_finfo("float8_e4m3fn", ml_dtypes.float8_e4m3fn, False),
    _from_finfo("float8_e5m2", ml_dtypes.float8_e5m2, True),
    _int8(),
)


def get(name: str) -> Format:
    """The format called `name`."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise HastenError(f"No format {name!r}; known: {', '.join(f.name for f in FORMATS)}.")


_POWER = re.compile(r"^([+-]?\d+)\s*(?:\^|\*\*)\s*([+-]?\d+)$")
_EXPONENT = re.compile(r"[eE]\s*([+-]?\d+)\s*$")
# Values beyond 10^±LIMIT are refused: exact arithmetic and printing them take ever longer, and
# every format overflows or flushes to zero long before (float64 ends near 10^±308).
LIMIT = 1000
MAX_CHARS = 200


def parse_value(text: str) -> Fraction:
    """A value exactly as written: a decimal (0.1, 1e-8), a fraction (1/3) or a power (2^-24)."""
    text = text.strip()
    if len(text) > MAX_CHARS:
        raise HastenError(f"The value is {len(text)} characters long; write it in at most "
                          f"{MAX_CHARS}, with an exponent (1e-8) or a power (2^-24).")
    power = _POWER.match(text)
    exponent = _EXPONENT.search(text)
    decades = (abs(int(power.group(2))) * math.log10(max(2, abs(int(power.group(1)))))
               if power else abs(int(exponent.group(1))) if exponent else 0)
    if decades > LIMIT:
        raise HastenError(f"{text!r} is too far outside every format's range to round (beyond "
                          f"10^±{LIMIT}); give a value with a smaller exponent.")
    try:
        if power:
            value = Fraction(int(power.group(1))) ** int(power.group(2))
        else:
            value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise HastenError(
            f"{text!r} is not a finite number; write it as 0.1, 1e-8, 1/3 or 2^-24."
        ) from None
    return value


def dyadic(x: Fraction) -> bool:
    """Whether x = A / 2^B for integers A, B: the only values binary formats can hold exactly."""
    d = x.denominator
    return d & (d - 1) == 0


def significant_bits(x: Fraction) -> int | None:
    """Bits of significand a dyadic x needs to be exact (None when x is not dyadic)."""
    if not dyadic(x) or x == 0:
        return None if x != 0 else 0
    n = abs(x.numerator)
    return (n >> ((n & -n).bit_length() - 1)).bit_length()


def value_row(f: Format, x: Fraction) -> dict:
    """How x fares in format f: nearest value, errors, spacing and what happens to it."""
    nearest = f.round(x)
    row: dict = {"format": f.name, "ulp": float(f.ulp(x))}
    if nearest is None:
        sign = "-" if x < 0 else ""
        if f.has_inf:
            text, then = f"{sign}inf", ""
        elif f.integer:
            text, then = "clamped", "; int8 quantization clamps it to the end of the range"
        else:
            text = "NaN"
            then = "; this format has no inf, so a cast gives NaN (or ±max if it saturates)"
        row.update(nearest=None, nearest_text=text, abs_error=None, rel_error=None, exact=False,
                   status=f"overflows: beyond the largest value {decimal(f.max)}{then}")
        return row
    err = abs(nearest - x)
    row.update(nearest=float(nearest), nearest_text=decimal(nearest), abs_error=float(err),
               rel_error=float(err / abs(x)) if x else 0.0, exact=err == 0)
    if x != 0 and nearest == 0:
        smallest = "step" if f.integer else "subnormal"
        row["status"] = (f"rounds to zero: below half the smallest {smallest} "
                         f"{decimal(f.smallest_subnormal)}")
    elif not f.integer and 0 < abs(nearest) < f.smallest_normal:
        row["status"] = (f"subnormal: below the smallest normal {decimal(f.smallest_normal)}, "
                         "so fewer significant bits")
    else:
        row["status"] = "exact" if err == 0 else "rounded"
    return row


def decimal(x: Fraction, digits: int = 20) -> str:
    """x in decimal with up to `digits` significant digits, trailing zeros dropped."""
    if x == 0:
        return "0"
    with localcontext() as ctx:
        ctx.prec = digits
        d = Decimal(x.numerator) / Decimal(x.denominator)
    text = f"{d:.{digits}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{_trim(mantissa)}e{exp}"
    return _trim(text)


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def power_of_two(x: Fraction) -> int | None:
    """k when x == 2^k, else None."""
    if x <= 0 or not dyadic(x) or (x.numerator & (x.numerator - 1)):
        return None
    return _floor_log2(x)


def table() -> list[dict]:
    """The formats table: layout and limits of every format, as numbers."""
    return [
        {"format": f.name, "bits": f.bits, "sign": f.sign_bits, "exponent": f.exponent_bits,
         "mantissa": f.mantissa_bits, "max": float(f.max),
         "smallest_normal": None if f.integer else float(f.smallest_normal),
         "smallest_subnormal": None if f.integer else float(f.smallest_subnormal),
         "eps": float(f.eps), "decimal_digits": round(f.decimal_digits, 2),
         "has_inf": f.has_inf, "source": f.source}
        for f in FORMATS
    ]


def explain_value(x: Fraction) -> dict:
    """Everything `hasten numerics value` shows for x."""
    bits = significant_bits(x)
    if dyadic(x):
        k = _floor_log2(Fraction(x.denominator))
        form = "an integer" if k == 0 else f"{x.numerator}/2^{k}"
        why = (f"{x} is {form}: dyadic, so exact in any binary format with the range and at "
               f"least {max(bits - 1, 0)} mantissa bits")
    else:
        odd = x.denominator
        while odd % 2 == 0:
            odd //= 2
        why = (f"{x} has the factor {odd} in its denominator: not dyadic, so no binary format "
               "holds it exactly")
    return {"value": decimal(x), "fraction": str(x), "dyadic": dyadic(x),
            "significant_bits": bits, "why": why, "rows": [value_row(f, x) for f in FORMATS]}
