"""The inference study's confirmation: its forms, each in a worker process of its own."""

from __future__ import annotations

import os
import shutil

from hasten import rounds
from hasten.infer import confirm


def test_each_form_is_timed_in_a_worker_process_of_its_own(tiny_study, tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(tiny_study.folder, folder)
    plan = {"b1": [tiny_study.study.baseline, "onnx/ort/all"]}
    forms = {n: rounds.Form(folder, n, ["b1"], confirm.MODULE) for n in plan["b1"]}
    try:
        for form in forms.values():
            form.ready()
        assert len({f.proc.pid for f in forms.values()} | {os.getpid()}) == 3
        per_round = rounds.confirm(plan["b1"], forms, "b1", rounds=2, pause_s=0.0)
        assert all(len(t) == 2 and min(t) > 0 for t in per_round.values())
    finally:
        for form in forms.values():
            form.close()
