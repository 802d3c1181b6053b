"""The local executor turns a trial process's failure into a reason."""

from __future__ import annotations

from hasten.executors import LocalExecutor
from hasten.store import Store


def test_a_failing_trial_process_gives_its_last_line(tmp_path):
    Store(tmp_path).close()  # a study folder without a config: the trial cannot start
    reason = LocalExecutor().run(tmp_path, "torch/eager/fp32", "screen", ["b1"], 120)
    assert reason.startswith("the trial process exited with code 1: ")
    log = tmp_path / "logs" / "torch_eager_fp32.screen.log"
    assert "Traceback" in log.read_text()
    assert reason.endswith(log.read_text().strip().splitlines()[-1][:200])


def test_a_trial_past_its_time_limit_is_stopped(tmp_path):
    Store(tmp_path).close()
    reason = LocalExecutor().run(tmp_path, "torch/eager/fp32", "screen", ["b1"], 0.05)
    assert reason == "ran past its time limit of 0 s and was stopped"
