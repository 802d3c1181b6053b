"""What hasten reads is bounded: a data file over the size limit, an image over the pixel limit
and a huge trial log each stay small in memory, and a study stores where its data came from,
not the data itself."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import pytest
from test_cli import _one_error_line
from test_cli import hasten as hasten_cli

import hasten
from hasten import data, executors, images
from hasten.errors import HastenError
from hasten.infer import run
from hasten.infer.workload import SAMPLES_FILE, Workload
from hasten.store import read_study

BASE = "torch/eager/fp32"


def test_a_data_file_over_the_limit_is_one_sentence(tmp_path, monkeypatch):
    path = tmp_path / "reviews.csv"
    with path.open("w") as f:
        f.write("text\n")
        line = "A review that says the same thing again and again, at some length.\n"
        f.write(line * (50 * 2**20 // len(line)))
    assert path.stat().st_size >= 50 * 2**20 - len(line)
    monkeypatch.setattr(data, "MAX_DATA_MB", 40)
    with pytest.raises(HastenError) as caught:
        data.read_texts(path, "text")
    assert str(caught.value) == (
        f"{path} is 50 MB, and hasten reads data files up to 40 MB; pass a sample of it, such "
        "as its first 10,000 lines (head -n 10000 reviews.csv > sample.csv).")
    monkeypatch.setattr(data, "MAX_DATA_MB", 64)
    assert len(data.read_texts(path, "text")[0]) > 700_000


def test_the_real_limit_refuses_a_huge_file_before_reading_it(tmp_path, tiny_bert_spec):
    path = tmp_path / "reviews.csv"
    with path.open("wb") as f:
        f.write(b"text\nfirst\n")
        f.truncate(int(1.2 * 2**30))  # sparse: its size without its bytes
    line = _one_error_line(hasten_cli("infer", "--model", tiny_bert_spec, "--data", str(path),
                                      "--out", str(tmp_path / "runs"), cwd=tmp_path))
    assert line == (f"error: {path} is 1.2 GB, and hasten reads data files up to "
                    f"{data.MAX_DATA_MB} MB; pass a sample of it, such as its first 10,000 lines "
                    "(head -n 10000 reviews.csv > sample.csv).")


def test_a_study_stores_its_datas_origin_and_its_samples_apart(tmp_path, tiny_bert_spec,
                                                              only_candidates, monkeypatch):
    """The settings hold the file's path, size and hash and how many texts of how many the
    study used; the texts go to samples.json, whence the trial processes read them."""
    only_candidates(BASE)
    monkeypatch.setattr(run, "MAX_TEXTS", {True: 20, False: 20})
    path = tmp_path / "texts.txt"
    texts = [f"Sentence number {i} is {'quite ' * (i % 7)}short." for i in range(50)]
    path.write_text("\n".join(texts) + "\n")
    logged: list[str] = []
    study = hasten.optimize_inference(tiny_bert_spec, data=path, quick=True, batch_sizes=[1, 2],
                                      seq_lengths=[16], out=tmp_path / "runs",
                                      log=logged.append)
    config = read_study(study.folder)["meta"]["config"]
    assert not any(t in json.dumps(config) for t in texts)
    assert config["workload"]["data"] == {
        "path": str(path.resolve()), "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "column": None,
        "label_column": None, "found": 50, "used": 20,
        "samples_sha256": hashlib.sha256((study.folder / SAMPLES_FILE).read_bytes()).hexdigest()}
    assert f"{path.resolve()} holds 50 texts; the study uses a fixed random sample of 20 of " \
           "them." in logged
    used = study.settings.workload.texts
    assert len(used) == 20 and set(used) < set(texts) and used != texts[:20]
    assert json.loads((study.folder / SAMPLES_FILE).read_text())["texts"] == used
    # The trial processes rebuilt the workload from samples.json: the corpus job ran them all.
    corpus = [t for t in study.trials if t["point"].startswith("dataset/")]
    assert corpus and all(t["status"] == "ok" and t["items"] == 20 for t in corpus)
    assert study.to_dict()["corpus_size"] == 20
    (study.folder / SAMPLES_FILE).write_text(json.dumps({"texts": ["other"], "labels": None,
                                                         "images": []}))
    with pytest.raises(HastenError, match="does not hold the samples the study"):
        type(study)(study.folder)


def test_a_text_study_on_ray_sends_its_samples_to_the_node(tmp_path, tiny_bert_spec,
                                                          texts_file, sentences,
                                                          only_candidates, monkeypatch):
    """A node runs the trial on its own copy of the study folder: samples.json goes with it.
    Without `ray_address` the study starts a local cluster of its own, even where RAY_ADDRESS
    names another (or another test's cluster runs on this machine)."""
    ray = pytest.importorskip("ray")
    from hasten.ray_executor import WORKDIR_ENV

    only_candidates(BASE)
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path / "node"))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens there
    try:
        study = hasten.optimize_inference(tiny_bert_spec, data=texts_file, quick=True,
                                          batch_sizes=[1, 2], seq_lengths=[16],
                                          out=tmp_path / "runs", executor="ray")
    finally:
        ray.shutdown()
    copies = list((tmp_path / "node").glob(f"*/{SAMPLES_FILE}"))
    assert [c.read_bytes() for c in copies] == [(study.folder / SAMPLES_FILE).read_bytes()]
    corpus = [t for t in study.trials if t["point"].startswith("dataset/")]
    assert corpus and all(t["status"] == "ok" and t["items"] == len(sentences) for t in corpus)


def test_a_workload_reads_both_stored_shapes(tmp_path):
    workload = Workload(texts=["One.", "Two."], labels=[0, 1], batch_sizes=[1], seq_lengths=[8],
                        eval_samples=2, dataset_batch_size=1, max_length=16,
                        data={"path": "/data/t.csv", "found": 9})
    stored = workload.describe()
    assert not {"texts", "labels", "images"} & set(stored)
    assert stored["data"]["used"] == 2 and stored["data"]["found"] == 9
    back = Workload.from_dict(stored)
    assert back.describe() == stored  # unread, it describes the same samples
    with pytest.raises(HastenError, match="is missing; start the study over with `fresh`"):
        back.read_samples(tmp_path)
    workload.write_samples(tmp_path)
    back.read_samples(tmp_path)
    assert back == workload
    assert Workload.from_dict(workload.to_dict()) == workload  # an export's candidate.json


def test_a_failed_trials_last_line_is_read_from_the_end_of_its_log(tmp_path, monkeypatch):
    log = tmp_path / "trial.log"
    with log.open("w") as f:
        f.write("a line a model printed\n" * 400_000)  # 9 MB
        f.write("ValueError: the reason\n")
    seen: list[int] = []  # the size of each read
    opened = Path.open

    class Spy:
        """The opened file, its reads counted."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.f.close()

        def seek(self, *args) -> int:
            return self.f.seek(*args)

        def read(self, *args) -> bytes:
            chunk = self.f.read(*args)
            seen.append(len(chunk))
            return chunk

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Spy(opened(self, *a, **k)))
    tail = executors.read_tail(log, executors.TAIL_BYTES)
    assert tail.strip().splitlines()[-1] == "ValueError: the reason"
    assert seen == [executors.TAIL_BYTES]
    assert executors.read_tail(log, 10**9).count("\n") == 400_001  # a shorter file: all of it


def test_a_huge_log_comes_back_from_a_ray_node_cut_to_its_end(tmp_path, monkeypatch):
    ray_executor = pytest.importorskip("hasten.ray_executor")
    monkeypatch.setattr(ray_executor, "LOG_BYTES", 100)
    log = tmp_path / "trial.log"
    text = "x" * 1000 + "\nValueError: the reason\n"
    log.write_text(text)
    assert ray_executor._log_end(log) == (
        f"[hasten: the first {len(text) - 100:,} bytes of this log were left out]\n"
        + text[-100:])
    log.write_text(text[-100:])
    assert ray_executor._log_end(log) == text[-100:]


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG file that claims width x height RGB pixels and holds none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_one_sentence(tmp_path):
    _png_header(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(HastenError) as caught:
        images.read_folder(tmp_path)
    assert str(caught.value) == (
        f"Image {tmp_path / 'bomb.png'} has more than 179 million pixels, the most hasten "
        "decodes from one file (a guard against decompression bombs); shrink it, or take it "
        "out of the folder.")


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    from PIL import Image

    Image.new("RGB", (20, 10)).save(tmp_path / "wide.png")
    prep = images.preparation(3, (4, 4))
    assert images.load([str(tmp_path / "wide.png")], prep).shape == (1, 3, 4, 4)
    monkeypatch.setattr(images, "MAX_PIXELS", 199)
    with pytest.raises(HastenError, match=r"wide.png has more than .* million pixels"):
        images.load([str(tmp_path / "wide.png")], prep)
