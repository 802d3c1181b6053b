"""The Keras menu and the lines each candidate recommends; read without Keras."""

from __future__ import annotations

from hasten.train.keras.candidates import (
    BASELINE,
    HALF_MODES,
    KerasCandidate,
    code_lines,
    menu,
    skip_reason,
)


def test_the_menu_holds_every_policy_and_switch():
    names = {c.name: quick for c, quick in menu()}
    assert all(names[p] for p in (BASELINE, *HALF_MODES))
    assert names["mixed_float16/float32-output"] and not names["mixed_bfloat16/float32-output"]
    assert {"mixed_float16/no-loss-scale", "float32/xla",
            "float32/steps-per-execution-8"} <= names.keys()
    assert all(KerasCandidate.from_settings(c.settings()) == c for c, _ in menu())


def test_the_lines_set_the_policy_the_optimizer_and_the_last_layer():
    lines = "\n".join(code_lines(KerasCandidate("mixed_float16", ("float32-output",)),
                                 "tensorflow"))
    assert 'set_global_policy("mixed_float16")' in lines
    assert "LossScaleOptimizer(optimizer)" in lines
    assert 'Activation("linear", dtype="float32")' in lines
    unscaled = "\n".join(code_lines(KerasCandidate("mixed_float16", ("no-loss-scale",)),
                                    "torch"))
    assert "auto_scale_loss=False" in unscaled and "LossScaleOptimizer" not in unscaled
    assert 'KERAS_BACKEND"] = "torch"' in unscaled
    fast = "\n".join(code_lines(KerasCandidate(BASELINE, ("steps-per-execution-8",), 64),
                                "tensorflow"))
    assert "steps_per_execution=8" in fast and "batch_size=64" in fast
    assert "set_global_policy" not in fast


def test_what_cannot_run_says_why():
    xla = KerasCandidate(BASELINE, ("xla",))
    assert "torch.compile" in skip_reason(xla, "torch", {}, False, False)
    assert skip_reason(xla, "tensorflow", {}, False, False) is None
    assert skip_reason(xla, "tensorflow", {}, True, False) == "not in quick mode"
    steps = KerasCandidate(BASELINE, ("steps-per-execution-8",))
    assert "must be 1" in skip_reason(steps, "torch", {}, False, False)
    out = KerasCandidate("mixed_float16", ("float32-output",))
    assert skip_reason(out, "tensorflow", {"output_dtype": {"mixed_float16": "float16"}},
                       False, True) is None
    assert "already computes in float32" in skip_reason(
        out, "tensorflow", {"output_dtype": {"mixed_float16": "float32"}}, False, True)
