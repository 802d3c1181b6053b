"""The gate against fp32's own runs: pass within their spread, fail clearly outside it, and
"cannot tell" where fp32's runs span too much to judge."""

from __future__ import annotations

import math

from hasten.train.outcome import gate, judged_text, metric_range, phase_kind, seed_of, seed_point


def run(final: float, evaluation: dict | None = None, spread: float = 0.0,
        steps: int = 60) -> dict:
    return {"diverged": None, "final_loss": final, "final_loss_spread": spread,
            "eval": evaluation, "steps": steps}


def acc(*values: float) -> list[dict]:
    return [run(0.5, {"accuracy": v, "loss": 0.4}) for v in values]


def test_one_run_each_is_judged_on_the_first_eval_metric():
    assert gate(acc(0.895), acc(0.90), 0.01) == ("pass", "accuracy 0.895 (fp32 0.9)")
    assert gate(acc(0.88), acc(0.90), 0.01) == ("fail", "accuracy 0.88 against fp32's 0.9")
    lower = [run(0.5, {"loss": 0.40})]
    assert gate([run(0.5, {"loss": 0.403})], lower, 0.01)[0] == "pass"
    assert gate([run(0.5, {"loss": 0.41})], lower, 0.01)[0] == "fail"
    assert gate(acc(math.nan), acc(0.9), 0.01)[0] == "fail"


def test_without_an_eval_the_final_loss_allows_fp32s_batch_to_batch_spread():
    base = [run(1.0, spread=0.05)]
    assert gate([run(1.04)], base, 0.01)[0] == "pass"
    verdict, reason = gate([run(1.06)], base, 0.01)
    assert verdict == "fail" and "allowed 0.05 more" in reason
    assert gate([{**run(1.0), "diverged": "the loss went nan at step 3"}], base, 0.01)[0] == (
        "fail")
    assert gate([run(math.inf)], base, 0.01) == ("fail", "diverged: the final loss is not finite")


def test_a_candidate_inside_fp32s_own_spread_passes():
    # The issue's case: fp32's three seeds at 0.421, 0.358, 0.270; bf16 at 0.345.
    fp32 = acc(0.421, 0.358, 0.270)
    verdict, reason = gate(acc(0.345), fp32, 0.01)
    assert verdict == "pass"
    assert reason == "accuracy 0.345, within fp32's 3 runs 0.27-0.421"


def test_just_below_a_wide_spread_is_cannot_tell_and_far_below_fails():
    fp32 = acc(0.421, 0.358, 0.270)
    verdict, reason = gate(acc(0.20), fp32, 0.01)
    assert verdict == "cannot tell"
    assert reason.startswith("cannot tell after 60 steps: accuracy 0.2 against fp32's 3 runs "
                             "0.27-0.421") and reason.endswith("train longer")
    assert gate(acc(0.098), fp32, 0.01)[0] == "fail"  # chance: clearly outside


def test_a_candidate_is_judged_on_the_mean_of_its_runs():
    fp32 = acc(0.90, 0.91, 0.92)
    verdict, reason = gate(acc(0.95, 0.75), fp32, 0.01)  # mean 0.85: far below, span 0.02
    assert verdict == "fail" and "mean of 2 runs" in reason
    assert gate(acc(0.95, 0.87), fp32, 0.01)[0] == "pass"  # mean 0.91


def test_a_lower_is_better_metric_judges_against_fp32s_worst_run():
    fp32 = [run(0.5, {"loss": v}) for v in (0.40, 0.42, 0.44)]
    assert gate([run(0.5, {"loss": 0.444})], fp32, 0.01)[0] == "pass"
    assert gate([run(0.5, {"loss": 0.47})], fp32, 0.01)[0] == "cannot tell"
    assert gate([run(0.5, {"loss": 0.50})], fp32, 0.01)[0] == "fail"


def test_metric_range_and_its_report_text():
    found = metric_range(acc(0.30, 0.40), acc(0.5))
    assert found == {"metric": "accuracy", "mean": 0.35, "low": 0.30, "high": 0.40, "runs": 2}
    assert judged_text({"metric": found}, "accuracy", 2) == "0.35 (2 runs 0.30-0.40)"
    assert judged_text({"metric": found}, "final loss", 2) is None
    assert judged_text({"metric": metric_range(acc(0.3), acc(0.5))}, "accuracy", 2) is None


def test_seed_points():
    assert [seed_point(k) for k in range(3)] == ["converge", "converge-s1", "converge-s2"]
    assert [seed_of(seed_point(k)) for k in range(3)] == [0, 1, 2]
    assert phase_kind("converge-s2") == "converge" and phase_kind("probe-b128") == "probe"
    assert phase_kind("speed") == "speed"
