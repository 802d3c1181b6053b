"""The local executor turns a trial process's failure into a reason; a study's deadline
decides what fits its time budget."""

from __future__ import annotations

from hasten.executors import Deadline, LocalExecutor, Ran, describe_seconds, ended, past_limit
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


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_lets_a_phase_start_what_it_expects_to_finish_in_its_share():
    clock = FakeClock()
    deadline = Deadline(100.0, clock)
    assert deadline.allows("screen")  # nothing measured yet: the first run may start
    for cost in (10.0, 30.0, 20.0):
        deadline.record("screen", cost)
    clock.now += 39.0
    assert deadline.allows("screen")  # 39 s spent + a median run of 20 s <= 60 s
    clock.now += 2.0
    assert not deadline.allows("screen") and deadline.allows("full")  # full may use 80 s
    deadline.record("full", 50.0)
    assert not deadline.allows("full")
    assert deadline.spent() == 41.0
    # Costs count per unit of the run's scale: the baseline's corpus job took 60 s, so a
    # candidate four times as fast expects 15 s of it, which fits; one as slow does not.
    deadline.record("corpus", 60.0)
    assert deadline.allows("corpus", scale=0.25) and not deadline.allows("corpus")
    fresh = Deadline(100.0, clock)
    fresh.record("corpus", 19.0, scale=0.25)  # 76 s at the baseline's speed
    assert fresh.allows("corpus") and not fresh.allows("corpus", scale=1.1)
    assert deadline.cut("not screened") == (
        "not screened: the study's time budget of 100 s was spent; run the same command again "
        "(or with a larger time budget) to go on")


def test_durations_are_described_as_a_person_would():
    assert [describe_seconds(s) for s in (480, 90, 120, 0.001, 150)] == [
        "8 min", "90 s", "2 min", "0.001 s", "150 s"]


def test_a_run_stopped_at_the_budgets_cap_is_cut_and_at_its_own_limit_failed():
    assert ended(None, 60.0, 30.0) == Ran()
    cut = ended(past_limit(30.0), 60.0, 30.0)
    assert cut.cut and not cut.failed
    # Its own limit was the shorter: the candidate ran too long, a failure.
    own = ended(past_limit(60.0), 60.0, 90.0)
    assert own.failed and not own.cut
    crashed = ended("exited with code 1", 60.0, 30.0)
    assert crashed.failed and crashed.reason == "exited with code 1"
