"""Token windows: cut one after another from real text, stored once, read back checked."""

from __future__ import annotations

import pytest

from hasten.errors import HastenError
from hasten.generate.workload import (
    GenerateWorkload,
    Tokens,
    cut_windows,
    parse_point,
    windows_sha256,
    write_tokens,
)


def workload(**changes) -> GenerateWorkload:
    return GenerateWorkload(**{"batch_sizes": [1, 3], "prompt_lengths": [4, 6],
                               "new_tokens": 2, "eval_windows": 2, "eval_length": 5,
                               "continuations": 2, **changes})


def test_windows_are_disjoint_and_in_order():
    w = workload()
    windows = cut_windows(w, list(range(1000)), "text")
    assert windows["prompts"]["4"] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert windows["prompts"]["6"][0] == [12, 13, 14, 15, 16, 17]
    assert windows["eval"][0] == [30, 31, 32, 33, 34]
    assert windows["continue"] == [[40, 41, 42, 43], [44, 45, 46, 47]]
    assert w.needed() == 48
    assert w.points() == ["b1/p4", "b1/p6", "b3/p4", "b3/p6"]


def test_too_little_text_is_one_sentence():
    with pytest.raises(HastenError, match="holds 10 tokens, and this study needs 48"):
        cut_windows(workload(), list(range(10)), "notes.txt")


def test_tokens_read_back_as_tensors_and_checked(tmp_path):
    windows = cut_windows(workload(), list(range(100)), "text")
    write_tokens(tmp_path, windows)
    tokens = Tokens(tmp_path, windows_sha256(windows))
    assert tokens.prompts("b3/p6").shape == (3, 6)
    assert tokens.prompts("b1/p4").tolist() == [[0, 1, 2, 3]]
    assert tokens.eval().shape == (2, 5) and tokens.continuations().shape == (2, 4)
    with pytest.raises(HastenError, match="SHA-256 differs"):
        Tokens(tmp_path, "0" * 64)


def test_points_are_named_b_and_p():
    assert parse_point("b8/p128") == (8, 128)
    with pytest.raises(HastenError, match="not a generation point"):
        parse_point("b8/s128")
