"""Data to batches: the demo corpus, reading text files, points and their inputs."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from hasten.data import demo_corpus, read_texts
from hasten.errors import HastenError
from hasten.infer.workload import Workload, eval_batches, parse_point, point_inputs
from hasten.models import load_model


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return load_model(f"hf:{tiny_bert_dir}")


@pytest.fixture(scope="module")
def cnn(cnn_spec):
    return load_model(cnn_spec)


def _workload(texts, **kwargs) -> Workload:
    values = dict(texts=list(texts), labels=None, batch_sizes=[1, 8], seq_lengths=[32, 128],
                  eval_samples=64, dataset_batch_size=8, max_length=128)
    values.update(kwargs)
    return Workload(**values)


def test_demo_corpus_is_large_varied_and_fixed():
    corpus = demo_corpus()
    assert len(corpus) >= 1000
    assert len(set(corpus)) == len(corpus)
    words = [len(s.split()) for s in corpus]
    assert statistics.stdev(words) > 3
    assert min(words) >= 3 and max(words) <= 90
    assert all(s[0].isupper() and s[-1] in ".!?:" for s in corpus)
    assert demo_corpus() == corpus


def test_demo_corpus_refuses_too_few_sentences():
    with pytest.raises(HastenError, match="sentences of documentation"):
        demo_corpus(minimum=10**7)


def test_read_txt_drops_blank_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("First line.\n\n   \n  Second line.  \n")
    assert read_texts(path) == (["First line.", "Second line."], None)


def test_read_txt_has_no_label_column(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("A line.\n")
    with pytest.raises(HastenError, match="no columns"):
        read_texts(path, label_column="label")


def test_read_csv_with_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('review,label\n"Great, really.",1\nBad.,0\n,1\nFine.,1\n')
    texts, labels = read_texts(path, column="review", label_column="label")
    assert texts == ["Great, really.", "Bad.", "Fine."]
    assert labels == [1, 0, 1]


def test_read_csv_default_column_is_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,text\n1,Hello there.\n")
    assert read_texts(path) == (["Hello there."], None)


def test_read_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"sentence": "One.", "y": 0}, {"sentence": "Two.", "y": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_texts(path, column="sentence", label_column="y") == (["One.", "Two."], [0, 1])


def test_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,review,stars\n1,Good.,5\n")
    with pytest.raises(HastenError, match="no column 'text'; its columns are id, review, stars"):
        read_texts(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", "holds no rows"),
        ("blank.txt", "\n  \n", "holds no rows"),
        ("header.csv", "text,label\n", "holds no rows"),
        ("empty.jsonl", "", "holds no rows"),
        ("blanks.csv", "text\n\"\"\n\"  \"\n", "is empty"),
        ("bad.jsonl", "{not json}\n", "not valid JSON lines"),
        ("data.parquet", "x", "must be .txt, .csv or .jsonl"),
    ],
)
def test_bad_data_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(HastenError, match=message):
        read_texts(path)


def test_missing_data_file(tmp_path):
    with pytest.raises(HastenError, match="does not exist"):
        read_texts(tmp_path / "nope.csv")


def test_label_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nGood.,yes\n")
    with pytest.raises(HastenError, match="no label column 'stars'"):
        read_texts(path, label_column="stars")
    with pytest.raises(HastenError, match="must be integers"):
        read_texts(path, label_column="label")


def test_points_and_their_names(bert, cnn):
    workload = _workload(["A."])
    assert workload.latency_points(bert.kind) == ["b1/s32", "b8/s32", "b1/s128", "b8/s128"]
    assert workload.dataset_points(bert.kind) == ["dataset/sorted/b8", "dataset/unsorted/b8"]
    assert workload.dataset_points(bert.kind, 4) == [
        "dataset/sorted/b8", "dataset/sorted/b4", "dataset/unsorted/b8"]
    assert workload.latency_points(cnn.kind) == ["b1", "b8"]
    assert workload.dataset_points(cnn.kind) == []
    assert parse_point("b8/s128") == {"dataset": False, "batch": 8, "seq": 128}
    assert parse_point("b4") == {"dataset": False, "batch": 4, "seq": None}
    assert parse_point("dataset/sorted/b64") == {"dataset": True, "order": "sorted", "batch": 64}


def test_workload_roundtrips_through_a_dict(sentences):
    workload = _workload(sentences, labels=[0] * len(sentences))
    assert Workload.from_dict(json.loads(json.dumps(workload.to_dict()))) == workload


def test_text_latency_point_inputs(bert, sentences):
    batches = point_inputs(bert, _workload(sentences[:3]), "b8/s32")
    assert len(batches) == 1
    assert [tuple(t.shape) for t in batches[0]] == [(8, 32)] * 3
    ids = batches[0][0]
    # The 3 texts repeat to fill the batch.
    assert torch.equal(ids[0], ids[3]) and torch.equal(ids[1], ids[4])


def test_tensor_point_inputs_tile_the_examples(cnn):
    (batch,) = point_inputs(cnn, _workload([]), "b5")
    example = cnn.example_inputs["input_0"]
    assert batch[0].shape == (5, 3, 16, 16)
    assert torch.equal(batch[0][2], example[0]) and torch.equal(batch[0][3], example[1])
    assert cnn.tile(1)[0].shape == (1, 3, 16, 16)


@pytest.mark.parametrize("order", ["sorted", "unsorted"])
def test_dataset_batches_cover_all_texts(bert, sentences, order):
    workload = _workload(sentences, dataset_batch_size=5)
    batches = point_inputs(bert, workload, f"dataset/{order}/b5")
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 5, 4]
    mask_index = bert.input_names.index("attention_mask")
    got = sorted(int(n) for b in batches for n in b[mask_index].sum(1))
    expected = sorted(len(ids) for ids in bert.tokenizer(sentences)["input_ids"])
    assert got == expected
    if order == "unsorted":
        first = bert.tokenizer(sentences[:5], padding=True, return_tensors="pt")["input_ids"]
        assert torch.equal(batches[0][0], first)


def test_sorted_dataset_batches_grow_in_padded_length(bert, sentences):
    workload = _workload(sentences, dataset_batch_size=4)
    sorted_widths = [b[0].shape[1] for b in point_inputs(bert, workload, "dataset/sorted/b4")]
    unsorted = [b[0].shape[1] for b in point_inputs(bert, workload, "dataset/unsorted/b4")]
    assert sorted_widths == sorted(sorted_widths)
    # Sorting by length pads less in total.
    assert sum(sorted_widths) < sum(unsorted)
    # Each batch is padded to its longest text.
    lengths = sorted(len(ids) for ids in bert.tokenizer(sentences)["input_ids"])
    assert sorted_widths == [max(lengths[i:i + 4]) for i in range(0, len(lengths), 4)]


def test_text_eval_batches_are_sorted_by_length(bert, sentences):
    workload = _workload(sentences, eval_samples=20)
    batches, order = eval_batches(bert, workload)
    assert sorted(order) == list(range(20))
    assert [len(sentences[i]) for i in order] == sorted(len(s) for s in sentences[:20])
    assert len(batches) == 1 and batches[0][0].shape[0] == 20


def test_tensor_eval_batches_are_fixed(cnn):
    workload = _workload([], eval_samples=48)
    batches, order = eval_batches(cnn, workload)
    assert len(batches) == 3 and order == list(range(48))
    assert batches[0][0].shape == (16, 3, 16, 16)
    again, _ = eval_batches(cnn, workload)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    assert not torch.equal(batches[0][0], batches[1][0])


def _image_workload(folder, model, **kwargs):
    from hasten import images

    paths, labels = images.read_folder(folder)
    return _workload([], labels=labels, images=paths, image=model.image_preparation(), **kwargs)


def test_image_points_are_batches_of_the_real_images(cnn, image_folder):
    from hasten import images

    workload = _image_workload(image_folder, cnn)
    (batch,) = point_inputs(cnn, workload, "b16")
    assert len(batch) == 1 and batch[0].shape == (16, 3, 16, 16)
    # 12 images cycle to fill the batch, in the workload's order.
    first = images.load(workload.images[:4], workload.image)
    torch.testing.assert_close(batch[0][12:], first)
    assert workload.latency_points(cnn.kind) == ["b1", "b8"]
    assert workload.dataset_points(cnn.kind) == []
    assert Workload.from_dict(json.loads(json.dumps(workload.to_dict()))) == workload


def test_image_eval_batches_follow_the_labels(cnn, image_folder):
    workload = _image_workload(image_folder, cnn, eval_samples=10)
    batches, order = eval_batches(cnn, workload)
    assert order == list(range(10))
    assert [b[0].shape[0] for b in batches] == [10]
    assert len(workload.labels) == 12 and set(workload.labels) == {0, 1, 2}


def test_image_calibration_avoids_the_eval_subset_when_it_can(cnn, image_folder):
    from hasten.infer.workload import calibration_batches

    workload = _image_workload(image_folder, cnn, eval_samples=4, calibration_samples=8)
    batches = calibration_batches(cnn, workload, batch_size=3)
    # Every batch has one shape: the last is filled from the first calibration images.
    assert [b[0].shape for b in batches] == [(3, 3, 16, 16)] * 3
    (expected,) = point_inputs(cnn, workload, "b12")
    torch.testing.assert_close(torch.cat([b[0] for b in batches]),
                               torch.cat([expected[0][4:], expected[0][4:5]]))
    # Too few images beyond the fidelity subset: calibrate from the start.
    workload.calibration_samples = 10
    again = torch.cat([b[0] for b in calibration_batches(cnn, workload)])
    torch.testing.assert_close(again[:10], expected[0][:10])
    assert again.shape[0] == 16


@pytest.mark.parametrize("name", ["resnet", "convnext", "vit"])
def test_hf_image_models_run_on_an_image_folder(tiny_vision_dirs, image_folder, name):
    model = load_model(f"hf:{tiny_vision_dirs[name]}")
    workload = _image_workload(image_folder, model)
    (batch,) = point_inputs(model, workload, "b2")
    assert batch[0].shape == (2, 3, *model.image["size"])
    with torch.inference_mode():
        out = model.module(*batch)
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_texts_are_cut_where_asked_else_where_the_model_stops(bert):
    from hasten.infer.run import _workload as build

    long = " ".join(["word"] * 400)
    for asked, cut in ((None, bert.max_length), (16, 16)):
        workload = build(bert, None, None, None, [2], [16], True, asked)
        assert workload.max_length == cut
        workload.texts = [long, long]
        (batch,), _ = eval_batches(bert, workload)
        assert batch[0].shape == (2, cut)
