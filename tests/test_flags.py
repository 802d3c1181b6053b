"""The command line's vocabulary: what its flags take, and library settings shown as flags."""

from __future__ import annotations

import math

import pytest

from hasten.errors import HastenError
from hasten.flags import parse_duration, parse_memory, parse_shape, parse_size
from hasten.options import flag, with_flags


@pytest.mark.parametrize(("text", "seconds"), [("8m", 480.0), ("90s", 90.0), ("1h", 3600.0),
                                               ("2min", 120.0), ("300", 300.0),
                                               ("None", math.inf)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "8 minutes", "-5m", "0", "inf", "m", "1.5.2s"])
def test_bad_durations_are_one_sentence(text):
    with pytest.raises(HastenError, match=r"^`budget_s` takes a duration such as 8m"):
        parse_duration(text)


def test_memory_sizes():
    assert parse_memory("4GiB") == 4096 and parse_memory("512MiB") == 512
    assert parse_memory("1.5G") == 1536 and parse_memory("300") == 300
    with pytest.raises(HastenError, match="takes a size such as 4GiB"):
        parse_memory("4TB")


@pytest.mark.parametrize(
    ("text", "shape"), [("3x224x224", (3, 224, 224)), ("16", (16,)), ("3X8x8", (3, 8, 8))]
)
def test_shapes(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["", "x", "3x", "axb", "0x3", "3x-1", "3,224,224", "3x2.5"])
def test_bad_shapes(text):
    with pytest.raises(HastenError, match="is not a shape"):
        parse_shape(text)


@pytest.mark.parametrize(("text", "size"), [("224", (224, 224)), ("24x20", (24, 20))])
def test_image_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "2x3x4", "big", "-5"])
def test_bad_image_sizes(text):
    with pytest.raises(HastenError, match="is not a size"):
        parse_size(text)


def test_settings_are_shown_as_their_flags():
    assert flag("max_drop") == "--max-drop" and flag("budget_s") == "--budget"
    assert with_flags("`max_drop` must be between 0 and 1; set `fresh` to start over.") == (
        "--max-drop must be between 0 and 1; set --fresh to start over.")
    # A backticked name that no flag sets, or a command, stays as it is.
    assert with_flags("see `hasten report` and `point_s`") == "see `hasten report` and `point_s`"
