"""The command line's own vocabulary: what its flags take (durations, memory sizes, shapes,
image sizes) and which flag sets each library setting. The library's errors name settings in
backticks (`max_drop`); the command line shows them as its flags (--max-drop)."""

from __future__ import annotations

import math
import re

from hasten.errors import HastenError

# Settings whose flag is not the setting's name with dashes.
RENAMED = {"time_budget_s": "--budget", "trial_timeout_s": "--trial-timeout",
           "memory_budget_mb": "--memory-budget", "evaluate": "--eval/--no-eval"}
# The settings the command line has a flag for.
SETTINGS = {
    "batch_size", "batch_sizes", "calibration_samples", "column", "data", "device", "devices",
    "evaluate", "executor", "fresh", "image_size", "input_shape", "keras_backend",
    "label_column", "machine_type", "max_drop", "max_length", "mean", "memory_budget_mb",
    "model", "name",
    "out", "per_machine_type", "quick", "random_weights", "ray_address", "ray_share",
    "ray_shared_path", "samples", "seq_lengths", "std", "steps", "task", "time_budget_s",
    "trial_timeout_s",
}


def flag(setting: str) -> str:
    """The flag that sets a library setting."""
    return RENAMED.get(setting, "--" + setting.replace("_", "-"))


def with_flags(message: str) -> str:
    """A library message with each `setting` it names shown as the flag that sets it."""
    return re.sub(r"`([a-z_]+)`", lambda m: flag(m[1]) if m[1] in SETTINGS else m[0], message)


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
        raise HastenError(f"`time_budget_s` takes a duration such as 8m, 90s or 1h (or none for no "
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
