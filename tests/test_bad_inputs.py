"""A corpus of bad inputs to every verb of the command line, as a hostile or careless user
gives them: each ends in one plain sentence on stderr, exit code 2 and no traceback.

Every case runs the real `hasten` in its own process; the processes run a few at a time, as
each spends most of its life importing PyTorch.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_cli import HASTEN, hasten

from hasten.store import SCHEMA_VERSION, read_study


@dataclass(frozen=True)
class Case:
    """One bad command line ({root} is the corpus folder) and what its message must say."""

    id: str
    args: tuple[str, ...]
    says: str


def case(id_: str, command: str, says: str) -> Case:
    """A case from its command line written as one string (no argument holds a space)."""
    return Case(id_, tuple(command.split()), says)


TINY_RECIPE = textwrap.dedent(
    """
    import torch


    def model():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 2)


    def train_data():
        g = torch.Generator().manual_seed(0)
        return torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g))


    def loss(model, batch):
        (x,) = batch
        return model(x).pow(2).mean()
    """
)

CASES = [
    # infer: the model spec
    case("hf config.json not JSON", "infer --model hf:{root}/bad-json",
         "config.json is not valid JSON"),
    case("hf config.json without model_type", "infer --model hf:{root}/no-model-type",
         "names no model_type"),
    case("hf truncated safetensors", "infer --model hf:{root}/truncated-weights",
         "model.safetensors cannot be loaded"),
    case("onnx truncated", "infer --model onnx:{root}/truncated.onnx",
         "ONNX Runtime cannot load"),
    case("py factory that exits", "infer --model py:{root}/exits.py:build",
         "exits.py called exit(3) while it was imported"),
    # infer: the data
    case("binary data file", "infer --model {text} --data {root}/binary.txt",
         "is not UTF-8 text"),
    case("csv in latin-1", "infer --model {text} --data {root}/latin1.csv",
         "is not UTF-8 text"),
    case("csv in utf-16", "infer --model {text} --data {root}/utf16.csv", "UTF-16"),
    case("csv with semicolons", "infer --model {text} --data {root}/semicolons.csv",
         "separated by ';'"),
    case("jsonl line not an object", "infer --model {text} --data {root}/list.jsonl",
         "line 2 is not a JSON object"),
    case("jsonl invalid json", "infer --model {text} --data {root}/invalid.jsonl",
         "is not valid JSON lines"),
    case("unknown column", "infer --model {text} --data {root}/good.csv --column body",
         "has no column 'body'"),
    case("corrupt image", "infer --model py:{root}/cnn.py:build --data {root}/corrupt-images",
         "cannot be read"),
    case("one class of images", "infer --model py:{root}/cnn.py:build --data {root}/one-class",
         "only one class folder"),
    # infer: the numbers
    case("batch size 100000", "infer --model py:{root}/cnn.py:build --batch-sizes 100000",
         "Batch sizes must be between 1 and 4096"),
    case("budget in words", "infer --model py:{root}/cnn.py:build --budget 8minutes",
         "--budget takes a duration such as 8m"),
    case("sequence length 100000", "infer --model {text} --seq-lengths 100000",
         "Sequence lengths must be between 2 and 512"),
    case("max length 1", "infer --model {text} --max-length 1",
         "--max-length must be between 2 and 512 tokens"),
    case("max drop 2", "infer --model py:{root}/cnn.py:build --max-drop 2",
         "--max-drop must be between 0 and 1"),
    case("input shape 0x0", "infer --model py:{root}/cnn.py:build_module_only --input-shape 0x0",
         "--input-shape '0x0' is not a shape"),
    case("huge input shape",
         "infer --model py:{root}/cnn.py:build_module_only --input-shape 3x1000000x1000000",
         "One input sample shaped 3x1000000x1000000 takes"),
    case("infer device tpu", "infer --model py:{root}/cnn.py:build --device tpu",
         "--device must be cpu or cuda, not 'tpu'"),
    case("calibration samples 0",
         "infer --model py:{root}/cnn.py:build --calibration-samples 0",
         "--calibration-samples must be at least 1"),
    # infer: the study folder
    case("out under a regular file",
         "infer --model py:{root}/cnn.py:build --out {root}/texts.txt/sub",
         "cannot be created"),
    case("infer into garbage study.sqlite",
         "infer --model py:{root}/cnn.py:build --out {root} --name garbage-db",
         "is not a SQLite database"),
    # train
    case("empty recipe", "train {root}/empty.py", "has no model(), train_data(), loss()"),
    case("recipe with a syntax error", "train {root}/syntax.py",
         "Importing syntax.py failed (SyntaxError"),
    case("recipe without model()", "train {root}/no-model.py", "has no model()"),
    case("recipe that exits", "train {root}/exits.py",
         "exits.py called exit(3) while it was imported"),
    case("loss NaN from step 1", "train {root}/nan.py --steps 2 --batch-size 4 --out {root}/runs",
         "loss is nan at step 1"),
    case("train negative steps", "train {root}/recipe.py --steps -1", "must each be at least 1"),
    case("train zero steps", "train {root}/recipe.py --steps 0", "must each be at least 1"),
    case("train batch size 0", "train {root}/recipe.py --batch-size 0",
         "must each be at least 1"),
    case("train device tpu", "train {root}/recipe.py --device tpu",
         "--device must be cpu or cuda"),
    # numerics
    case("numerics value abc", "numerics value abc", "'abc' is not a finite number"),
    case("numerics value huge exponent", "numerics value 1e-999999999", "too far"),
    case("audit samples 0", "numerics audit --model py:{root}/cnn.py:build --samples 0",
         "--samples and --batch-size must be at least 1"),
    case("audit recipe with NaN loss", "numerics audit {root}/nan.py --batch-size 4",
         "loss is nan at step 1"),
    # report, export, compare: folders that are not studies, or not this version's
    case("report plain folder", "report {root}/images", "is not a hasten study folder"),
    case("report garbage study.sqlite", "report {root}/garbage-db", "is not a SQLite database"),
    case("report future schema", "report {root}/future-db",
         f"schema version {SCHEMA_VERSION + 1}"),
    case("report foreign database", "report {root}/foreign-db", "not a hasten study database"),
    case("report other columns", "report {root}/other-columns-db",
         "another version of hasten"),
    case("export unknown objective", "export {root}/study --objective fastest --to {root}/fast",
         "Unknown objective 'fastest'"),
    case("export unknown candidate", "export {root}/study --candidate onnx/ort/best "
         "--to {root}/fast", "onnx/ort/best is not a finished candidate"),
    case("export out under a regular file", "export {root}/study --to {root}/texts.txt/fast",
         "cannot be created"),
    case("compare with future schema", "compare {root}/study {root}/future-db",
         f"schema version {SCHEMA_VERSION + 1}"),
    case("compare html under a regular file",
         "compare {root}/study {root}/study --html {root}/texts.txt/a.html", "Cannot write"),
]


def _write_hf_folders(root: Path, bert: Path) -> None:
    """hf: folders broken in three ways, from the tiny BERT folder (config and tokenizer)."""
    import torch
    from safetensors.torch import save_file

    (root / "bad-json").mkdir()
    (root / "bad-json" / "config.json").write_text('{"model_type": "bert", "hidden_size": ')
    (root / "no-model-type").mkdir()
    (root / "no-model-type" / "config.json").write_text('{"hidden_size": 32}')
    shutil.copytree(bert, root / "truncated-weights")
    weights = root / "truncated-weights" / "model.safetensors"
    save_file({"embeddings.word_embeddings.weight": torch.zeros(64, 32)}, weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _write_text_model(folder: Path, bert: Path) -> None:
    """The cheapest model that takes text: an ONNX graph from token ids to floats, with the tiny
    BERT's tokenizer beside it, so the data cases need not build a BERT to get to the data."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
              for name in ("input_ids", "attention_mask")]
    output = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq"])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input_ids", "attention_mask"], ["ids"]),
         helper.make_node("Cast", ["ids"], ["hidden"], to=TensorProto.FLOAT)],
        "text", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    shutil.copytree(bert, folder, ignore=shutil.ignore_patterns("config.json", "*.safetensors"))
    onnx.save(model, folder / "model.onnx")


def _write_data(root: Path, sentences: list[str]) -> None:
    """Text data files that are wrong in encoding, layout or content."""
    rows = "text,label\n" + "".join(f'"{s}",{i % 2}\n' for i, s in enumerate(sentences))
    (root / "good.csv").write_text(rows)
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "latin1.csv").write_bytes(("text\n" + "Crème brûlée à la carte.\n" * 4)
                                      .encode("latin-1"))
    (root / "utf16.csv").write_bytes(rows.encode("utf-16"))
    (root / "semicolons.csv").write_text(rows.replace(",", ";"))
    (root / "list.jsonl").write_text(json.dumps({"text": sentences[0]}) + "\n"
                                     + json.dumps(sentences[1:3]) + "\n")
    (root / "invalid.jsonl").write_text(json.dumps({"text": sentences[0]}) + "\n{text: 1}\n")


def _write_images(root: Path, images: Path) -> None:
    """An image folder with a corrupt image, and one with a single class."""
    shutil.copytree(images, root / "images")
    shutil.copytree(images, root / "corrupt-images")
    (root / "corrupt-images" / "dog" / "1.png").write_bytes(
        (images / "dog" / "1.png").read_bytes()[:60])
    (root / "one-class").mkdir()
    shutil.copytree(images / "cat", root / "one-class" / "cat")


def _write_code(root: Path, cnn: Path) -> None:
    """Model files and recipes: a syntax error, one that exits, one empty, one going NaN."""
    shutil.copy(cnn, root / "cnn.py")
    (root / "syntax.py").write_text("def build(:\n    return 1\n")
    (root / "exits.py").write_text("import sys\n\nsys.exit(3)\n")
    (root / "empty.py").write_text("")
    (root / "recipe.py").write_text(TINY_RECIPE)
    (root / "no-model.py").write_text(TINY_RECIPE.replace("def model", "def net"))
    (root / "nan.py").write_text(TINY_RECIPE.replace(".pow(2).mean()",
                                                     '.pow(2).mean() * float("nan")'))


def _fake_study(folder: Path) -> None:
    """A finished study of one candidate, written through the store as a study writes it, so
    report, export and compare have a valid study to be given bad options with."""
    from hasten import folders, machine
    from hasten.infer.workload import Workload
    from hasten.measure import stats
    from hasten.store import Store

    folders.claim(folder, "study", "`name`")  # made by this account, as a run makes it
    workload = Workload(texts=[], labels=None, batch_sizes=[1, 2], seq_lengths=[],
                        eval_samples=16, dataset_batch_size=2, max_length=128)
    store = Store(folder)
    store.set_meta("config", {
        "kind": "infer", "spec": "py:cnn.py:build", "task": None, "input_shape": None,
        "workload": workload.to_dict(), "max_drop": 0.01, "quick": True, "device": "cpu",
        "threads": 1, "point_s": 1.0, "baseline": "torch/eager/fp32",
        "model": {"spec": "py:cnn.py:build", "name": "cnn", "kind": "tensor", "task": "tensor",
                  "input_names": ["input_0"], "model_type": None, "parameters": 127,
                  "random_weights": False}})
    store.set_meta("machine", machine.describe())
    store.add_candidate(0, "torch/eager/fp32", [], "eager", {}, None)
    store.put_result("torch/eager/fp32", "ok", fidelity={"cosine_mean": 1.0}, passed=True,
                     gate_reason="", one_time={"load_s": 0.1}, size_bytes=1000, notes=[])
    for batch in (1, 2):
        store.put_trial("torch/eager/fp32", f"b{batch}", "latency", "ok",
                        latency=stats([0.001 * batch, 0.0011 * batch, 0.0012 * batch]),
                        throughput=900.0 / batch, items=batch, peak_mb=300.0)
    store.set_meta("finished", True)
    store.close()


def _write_databases(root: Path) -> None:
    """Study folders whose study.sqlite is random bytes, from a future version of hasten,
    another program's database, or holds hasten's tables with other columns."""
    (root / "garbage-db").mkdir()
    (root / "garbage-db" / "study.sqlite").write_bytes(os.urandom(4096))
    _fake_study(root / "future-db")
    with sqlite3.connect(root / "future-db" / "study.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                   (json.dumps(SCHEMA_VERSION + 1),))
    db.close()
    (root / "foreign-db").mkdir()
    with sqlite3.connect(root / "foreign-db" / "study.sqlite") as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    db.close()
    (root / "other-columns-db").mkdir()
    with sqlite3.connect(root / "other-columns-db" / "study.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE results (candidate TEXT PRIMARY KEY, median_ms REAL)")
    db.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_bert_dir, cnn_file, cnn_onnx, image_folder,
           sentences) -> Path:
    """One folder holding every bad input of the corpus (and the good ones they spoil)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "texts.txt").write_text("\n".join(sentences) + "\n")
    (root / "truncated.onnx").write_bytes(cnn_onnx.read_bytes()[: cnn_onnx.stat().st_size // 2])
    _write_hf_folders(root, tiny_bert_dir)
    _write_text_model(root / "text", tiny_bert_dir)
    _write_data(root, sentences)
    _write_images(root, image_folder)
    _write_code(root, cnn_file)
    _fake_study(root / "study")
    _write_databases(root)
    return root


def _run(root: Path, c: Case) -> subprocess.CompletedProcess:
    """Run one case's command line in a folder of its own ({text}: the ONNX text model)."""
    cwd = root / "cwd" / c.id.replace(" ", "-")
    cwd.mkdir(parents=True)
    args = [a.replace("{text}", "onnx:{root}/text/model.onnx").replace("{root}", str(root))
            for a in c.args]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["COLUMNS"] = "400"
    return subprocess.run([HASTEN, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def outcomes(corpus) -> dict[str, subprocess.CompletedProcess]:
    """Every case run through the command line, three processes at a time."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = pool.map(lambda c: (c.id, _run(corpus, c)), CASES)
        return dict(done)


def test_the_corpus_covers_every_verb():
    """Every verb that takes input has bad inputs in the corpus, at least 40 in all."""
    verbs = {c.args[0] if c.args[0] != "numerics" else " ".join(c.args[:2]) for c in CASES}
    assert verbs == {"infer", "train", "numerics value", "numerics audit", "report", "export",
                     "compare"}
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_plain_sentence(outcomes, c):
    """Exit code 2, no traceback, at most three lines that start with the sentence."""
    proc = outcomes[c.id]
    shown = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and lines[0].startswith("error: "), shown
    assert c.says in " ".join(lines), shown


def test_an_unknown_option_is_a_short_plain_usage_error(corpus):
    """A mistyped option gets click's plain three lines, not a drawn panel."""
    proc = _run(corpus, case("unknown option", "numerics formats --bogus", ""))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) <= 3, proc.stderr
    assert lines[-1] == "Error: No such option: --bogus"


def test_the_study_given_bad_options_is_itself_good(corpus):
    """The written study reports, so the export and compare cases fail on their bad option."""
    proc = hasten("report", str(corpus / "study"), cwd=corpus)
    assert proc.returncode == 0, proc.stderr
    assert (corpus / "study" / "report.html").is_file()


def test_a_study_from_before_the_schema_version_still_opens(corpus, tmp_path):
    """A study written before the store recorded its version has this version's tables."""
    shutil.copytree(corpus / "study", tmp_path / "old")
    with sqlite3.connect(tmp_path / "old" / "study.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key = 'schema_version'")
    db.close()
    assert read_study(tmp_path / "old")["meta"]["config"]["baseline"] == "torch/eager/fp32"


def test_debug_shows_where_a_bad_input_was_found(corpus):
    """--debug adds the traceback that leads to the place that found the bad input."""
    proc = hasten("infer", "--model", f"hf:{corpus / 'bad-json'}", "--debug", cwd=corpus)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "HastenError" in proc.stderr
