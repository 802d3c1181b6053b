"""The command line's own vocabulary: how it reads what its flags take (durations, memory
sizes, shapes, image sizes, lists of numbers). Which flag sets which option is declared with
the option (hasten.options)."""

from __future__ import annotations

import math
from collections.abc import Callable

from hasten.errors import HastenError


def parse_duration(text: str) -> float:
    """A time budget such as 8m, 90s, 1h or 300 (seconds) in seconds; 'none' is no limit."""
    clean = text.strip().lower()
    if clean == "none":
        return math.inf
    units = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}
    number = clean.rstrip("smhin")
    try:
        value = float(number) * units[clean[len(number):]]
    except (ValueError, KeyError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise HastenError(f"`budget_s` takes a duration such as 8m, 90s or 1h (or none for no "
                          f"limit), not {text!r}.")
    return value


def parse_memory(text: str) -> float:
    """A memory size such as 4GiB, 512MiB, 2G or 1500 (MiB) in MiB."""
    units = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024}
    number = text.strip().rstrip("iBbGgMm")
    unit = text.strip()[len(number):].lower()
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise HastenError(f"`memory_budget_mb` takes a size such as 4GiB or 512MiB, "
                          f"not {text!r}.") from None
    if not math.isfinite(value):
        raise HastenError(f"`memory_budget_mb` takes a size such as 4GiB, not {text!r}.")
    return value


def parse_size(text: str) -> tuple[int, int]:
    """'224' -> (224, 224); '224x160' -> (224, 160), height then width."""
    try:
        size = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) < 1:
        raise HastenError(f"`image_size` {text!r} is not a size; write it like 224 or 224x160.")
    return (size[0], size[-1])


def parse_shape(text: str) -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise HastenError(f"`input_shape` {text!r} is not a shape; write it like 3x224x224.")
    return shape


def integers(setting: str) -> Callable[[str], list[int]]:
    """A reader of comma-separated integers, such as 1,8,32, for `setting`."""
    return lambda text: _numbers(text, setting, int)


def floats(setting: str) -> Callable[[str], list[float]]:
    """A reader of comma-separated numbers, such as 0.5,0.5,0.5, for `setting`."""
    return lambda text: _numbers(text, setting, float)


def _numbers(text: str, setting: str, kind: type) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "integers, such as 1,8,32" if kind is int else "numbers, such as 0.5,0.5,0.5"
        raise HastenError(f"`{setting}` takes comma-separated {what}.") from None
