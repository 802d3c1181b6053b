"""hasten.optimize_inference on an nn.Module, as a notebook calls it: the module is captured
with torch.export into a `pt2:` file in its study folder, which every trial loads; a
DataLoader or a list of texts as the data; the passes that cannot work on an exported program
say why; a .pt2 file that loading would run code from is refused."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hasten
from hasten import pt2
from hasten.errors import HastenError
from hasten.infer import menu
from hasten.infer.workload import INPUTS_FILE
from hasten.models import load_model

BASE = menu.BASELINE
INT8 = "torch/eager/int8-dynamic"


def small_cnn() -> torch.nn.Module:
    """A CNN whose class only this function knows, as one a notebook defines: no child
    process could import it."""

    class SmallCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    return SmallCNN()


def _rows(study) -> dict:
    return {r["candidate"]: r for r in study.table()}


def test_a_module_runs_a_study_from_its_exported_program(tmp_path, only_candidates):
    only_candidates(BASE, "onnx/ort/all", INT8)
    module = small_cnn().train()
    kwargs = dict(example_inputs=(torch.randn(2, 3, 16, 16),), quick=True, batch_sizes=[1, 2],
                  out=tmp_path, point_s=0.2)
    study = hasten.optimize_inference(module, **kwargs)
    assert module.training  # captured in eval mode, given back as it was
    file = Path(study.settings.spec.removeprefix("pt2:"))
    assert study.settings.spec.startswith("pt2:") and file.parent == study.folder.resolve()
    assert study.folder.name == "SmallCNN" and study.settings.model["input_names"] == ["x"]
    rows = _rows(study)
    for name in (BASE, "onnx/ort/all"):
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        assert {"b1", "b2"} <= set(rows[name]["points"])  # a dynamic batch: both measured
        assert rows[name]["fidelity"]["cosine_mean"] > 0.999
    assert rows[INT8]["reason"].startswith("torch.ao's dynamic int8 replaces nn.Linear modules")
    # The same module again resumes the study: the same file, nothing measured again.
    stamp = file.stat().st_mtime_ns
    again = hasten.optimize_inference(module, **kwargs)
    assert again.settings.spec == study.settings.spec and file.stat().st_mtime_ns == stamp
    assert len(again.trials) == len(study.trials)
    # Its export is the same program, loaded by a load.py that runs as is.
    out = study.export(tmp_path / "fast", candidate=BASE)
    proc = subprocess.run([sys.executable, str(out / "load.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.pt2").read_bytes() == file.read_bytes()
    assert proc.stdout.strip().startswith("torch.Size([2,")


def test_a_dataloader_feeds_the_study_its_own_samples(tmp_path, only_candidates):
    only_candidates(BASE, "torch/eager/channels-last")
    images = torch.randn(24, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(24) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=5)
    study = hasten.optimize_inference(small_cnn(), example_inputs=images[:1], data=loader,
                                      quick=True, batch_sizes=[1, 2], out=tmp_path, point_s=0.2)
    stored = load_file(study.folder / INPUTS_FILE)
    assert torch.equal(stored["input_0"], images)  # every sample the loader gave, in order
    assert study.settings.workload.labels == labels.tolist()
    rows = _rows(study)
    for name in (BASE, "torch/eager/channels-last"):
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        assert {"accuracy", "top1_agreement"} <= set(rows[name]["fidelity"])
    assert rows["torch/eager/channels-last"]["fidelity"]["top1_agreement"] == 1.0


def test_texts_given_as_a_list_are_the_samples(tmp_path, tiny_bert_spec, only_candidates):
    only_candidates(BASE)
    texts = [f"Review number {i} says the film was {'good' if i % 2 else 'bad'}."
             for i in range(40)]
    study = hasten.optimize_inference(tiny_bert_spec, data=texts, quick=True, batch_sizes=[2],
                                      seq_lengths=[16], out=tmp_path, point_s=0.2)
    assert sorted(study.settings.workload.texts) == sorted(texts)
    assert study.config["workload"]["data"]["given"] == "texts"
    assert _rows(study)[BASE]["status"] == "ok"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"An nn.Module needs `example_inputs`"),
        ({"example_inputs": [1, 2]}, r"`example_inputs` must be a tensor or a tuple of tensors"),
        ({"example_inputs": torch.randn(2, 3, 16, 16), "input_shape": (3, 16, 16)},
         r"`input_shape` does not apply to an nn.Module"),
        ({"example_inputs": torch.randn(2, 3, 16, 16), "data": ["a text"]},
         r"SmallCNN takes tensors; give `data` as batches of input tensors"),
    ],
)
def test_a_module_without_what_it_needs_is_one_sentence(tmp_path, kwargs, message):
    with pytest.raises(HastenError, match=message) as caught:
        hasten.optimize_inference(small_cnn(), out=tmp_path, quick=True, **kwargs)
    assert "\n" not in str(caught.value)
    assert not any(tmp_path.iterdir())


def test_a_module_torch_export_cannot_capture_is_one_sentence(tmp_path):
    class Branchy(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # a branch on the data: torch.export cannot capture it
                return x * 2
            return x

    with pytest.raises(HastenError, match=r"^torch.export could not capture Branchy: ") as caught:
        hasten.optimize_inference(Branchy(), example_inputs=torch.randn(2, 4), out=tmp_path)
    assert "\n" not in str(caught.value)


def test_exported_programs_lack_what_some_passes_need(tmp_path):
    """The reasons the table shows, and that they hold: dynamic int8 finds no nn.Linear to
    replace in an exported program (it would measure fp32 under an int8 name), while
    channels-last finds its convolution in the graph."""
    captured = pt2.capture(small_cnn(), torch.randn(2, 3, 16, 16))
    captured.save(tmp_path / "cnn.pt2")
    model = load_model(f"pt2:{tmp_path / 'cnn.pt2'}")
    reasons = {c.name: menu.skip_reason(c, model, "cpu", quick=False)
               for c in menu.CANDIDATES}
    assert reasons["torch/eager/channels-last"] is None and reasons["onnx/ort/all"] is None
    for name, start in [(INT8, "torch.ao's dynamic int8"),
                        ("torch/compile/int8-dynamic", "torchao's quantize_"),
                        ("torchscript/jit/script", "torch.jit.script compiles"),
                        ("torch/compile/int8-static-pt2e", "torchao's x86 quantizer"),
                        ("onnx/ort/int8-dynamic-aware", "its accuracy search ranks")]:
        assert reasons[name].startswith(start), (name, reasons[name])
    quantized = torch.ao.quantization.quantize_dynamic(model.module, {torch.nn.Linear})
    assert not any("quantized" in type(m).__module__ for m in quantized.modules())


def _rewritten(source: Path, target: Path, name: str, change) -> Path:
    """A copy of a .pt2 archive with one of its files changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info, change(data.decode()).encode() if info.filename.endswith(name)
                         else data)
    target.write_bytes(out.getvalue())
    return target


def test_a_pt2_file_that_loading_would_run_code_from_is_refused(tmp_path, capsys):
    captured = pt2.capture(small_cnn(), torch.randn(2, 3, 16, 16))
    good = tmp_path / "good.pt2"
    captured.save(good)
    archive = zipfile.ZipFile(good)
    text = archive.read(next(n for n in archive.namelist() if n.endswith("models/model.json")))
    shape = "\"Symbol('s77', positive=True, integer=True)\""
    assert shape in text.decode()
    evaluated = _rewritten(good, tmp_path / "evaluated.pt2", "models/model.json",
                           lambda s: s.replace(shape, "\"__import__('builtins').print('RAN') "
                                               "or Symbol('s77')\"", 1))
    pickled = _rewritten(good, tmp_path / "pickled.pt2", "model_weights_config.json",
                         lambda s: s.replace('"use_pickle": false', '"use_pickle": true', 1))
    for path, why in [(evaluated, "holds a shape expression that is not plain arithmetic"),
                      (pickled, "holds tensor subclasses or script objects")]:
        with pytest.raises(HastenError, match=why):
            load_model(f"pt2:{path}")
    assert "RAN" not in capsys.readouterr().out
    assert load_model(f"pt2:{good}").input_names == ["x"]


def test_a_batch_torch_export_cannot_keep_dynamic_is_measured_alone(tmp_path, only_candidates):
    class FixedBatch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(48, 3)

        def forward(self, x):
            return self.fc(x.reshape(2, -1))  # two rows, whatever the batch

    only_candidates(BASE)
    lines: list[str] = []
    study = hasten.optimize_inference(FixedBatch(), example_inputs=torch.randn(2, 3, 4, 4),
                                      quick=True, batch_sizes=[1, 2], out=tmp_path, point_s=0.2,
                                      log=lines.append)
    assert lines[0].startswith("torch.export could not keep FixedBatch's batch dimension "
                               "dynamic: ")
    assert lines[1].startswith("FixedBatch takes batch 2 only")
    assert study.settings.workload.batch_sizes == [2]
    base = _rows(study)[BASE]
    assert base["status"] == "ok" and set(base["points"]) == {"b2"}, base["reason"]
