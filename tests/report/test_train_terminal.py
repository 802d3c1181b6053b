"""The terminal's training cells that the HTML report shares."""

from __future__ import annotations

from hasten.report import train_html
from hasten.report.train_terminal import skipped_steps


def test_skipped_steps_agree_between_terminal_and_html():
    speed = {"scales": [65536.0, 32768.0], "skipped_steps": 1}
    rows = {
        # Only the speed run recorded loss scales: both reports show its count.
        "speed only": ({"converge": {"final_loss": 0.5}, "speed": speed}, "1"),
        "both": ({"converge": {"scales": [8.0], "skipped_steps": 3}, "speed": speed}, "3"),
        "no scaler": ({"converge": {"final_loss": 0.5}, "speed": {"final_loss": 0.4}}, ""),
        "not run": ({"converge": None, "speed": None}, ""),
    }
    for name, (row, expected) in rows.items():
        assert skipped_steps(row) == expected, name
        assert train_html._skipped_steps(row) == (expected or "-"), name
