"""Model specs turned into loaded models, and the errors for specs that cannot load."""

from __future__ import annotations

import pytest
import torch

from hasten.errors import HastenError
from hasten.kinds import OutputAdapter, first_tensor
from hasten.models import load_model


def _run(loaded, texts=("A short sentence.", "A somewhat longer sentence for padding.")):
    enc = loaded.tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.inference_mode():
        return loaded.module(*[enc[n] for n in loaded.input_names]), enc


def test_demo_loads_the_bundled_minilm():
    loaded = load_model("demo")
    assert loaded.name == "demo-minilm"
    assert (loaded.kind, loaded.task) == ("text", "feature-extraction")
    assert loaded.random_weights is False
    assert loaded.model_type == "bert"
    assert "input_ids" in loaded.input_names and "attention_mask" in loaded.input_names
    out, enc = _run(loaded)
    assert out.shape == (2, enc["input_ids"].shape[1], 384)
    assert torch.isfinite(out).all()
    assert loaded.info()["parameters"] > 20_000_000


def test_hf_dir_loads_its_weights(tiny_bert_dir):
    loaded = load_model(f"hf:{tiny_bert_dir}")
    assert loaded.random_weights is False
    assert loaded.name == tiny_bert_dir.name
    assert (loaded.kind, loaded.task, loaded.model_type) == ("text", "feature-extraction", "bert")
    assert (loaded.num_heads, loaded.hidden_size, loaded.max_length) == (2, 32, 128)
    assert loaded.input_names == ["input_ids", "token_type_ids", "attention_mask"]
    out, enc = _run(loaded)
    assert out.shape == (2, enc["input_ids"].shape[1], 32)
    info = loaded.info()
    assert info["random_weights"] is False and info["spec"] == f"hf:{tiny_bert_dir}"


def test_hf_dir_without_weights_is_refused_in_one_sentence(tiny_bert_config_dir):
    with pytest.raises(HastenError) as refused:
        load_model(f"hf:{tiny_bert_config_dir}")
    message = str(refused.value)
    assert message == (f"{tiny_bert_config_dir} holds no weights (model.safetensors or "
                       "pytorch_model.bin, sharded or not); save them there with "
                       "model.save_pretrained, or pass `random_weights` to measure the "
                       "architecture with seeded random weights.")
    # Tokenizer and config only (a trial that runs an artifact on disk) need no weights.
    assert load_model(f"hf:{tiny_bert_config_dir}", with_weights=False).module is None


def test_random_weights_when_asked_are_the_same_on_every_load(tiny_bert_config_dir,
                                                               tiny_bert_dir):
    first = load_model(f"hf:{tiny_bert_config_dir}", random_weights=True)
    assert first.random_weights is True and first.info()["random_weights"] is True
    second = load_model(f"hf:{tiny_bert_config_dir}", random_weights=True)
    torch.testing.assert_close(_run(first)[0], _run(second)[0], rtol=0, atol=0)
    # The shared fixtures saved exactly these seeded weights.
    torch.testing.assert_close(_run(first)[0], _run(load_model(f"hf:{tiny_bert_dir}"))[0],
                               rtol=0, atol=0)
    # Asked for, random weights never replace saved ones.
    assert load_model(f"hf:{tiny_bert_dir}", random_weights=True).random_weights is False


@pytest.mark.parametrize("safe", [True, False])
def test_hf_dir_loads_its_saved_weights_in_either_format(tiny_bert_config_dir, tmp_path, safe):
    # pytorch_model.bin (still common) loads as safetensors does: never silently random.
    source = load_model(f"hf:{tiny_bert_config_dir}", random_weights=True)
    folder = tmp_path / "saved"
    for p in tiny_bert_config_dir.iterdir():
        (folder / p.name).parent.mkdir(exist_ok=True)
        (folder / p.name).write_bytes(p.read_bytes())
    with torch.no_grad():
        for parameter in source.module.parameters():
            parameter.add_(0.5)  # not what a seeded random build would give
    if safe:
        source.module.model.save_pretrained(folder)
    else:  # as older transformers saved it
        torch.save(source.module.model.state_dict(), folder / "pytorch_model.bin")
    assert {p.name for p in folder.iterdir()} >= (
        {"model.safetensors"} if safe else {"pytorch_model.bin"})
    loaded = load_model(f"hf:{folder}")
    assert loaded.random_weights is False
    torch.testing.assert_close(_run(loaded)[0], _run(source)[0])


def test_hf_classifier_dir_is_sequence_classification(tiny_bert_cls_dir):
    loaded = load_model(f"hf:{tiny_bert_cls_dir}")
    assert loaded.task == "sequence-classification"
    out, _ = _run(loaded)
    assert out.shape == (2, 2)


def test_hf_task_can_be_forced(tiny_bert_cls_dir):
    loaded = load_model(f"hf:{tiny_bert_cls_dir}", task="feature-extraction")
    out, enc = _run(loaded)
    assert out.shape == (2, enc["input_ids"].shape[1], 32)


def test_hf_unsupported_task(tiny_bert_dir):
    with pytest.raises(HastenError, match="not supported"):
        load_model(f"hf:{tiny_bert_dir}", task="token-classification")


def test_hf_without_weights_skips_the_module(tiny_bert_dir):
    loaded = load_model(f"hf:{tiny_bert_dir}", with_weights=False)
    assert loaded.module is None and not loaded.is_torch
    assert loaded.tokenizer is not None
    assert loaded.info()["parameters"] is None


def test_py_factory_with_example_inputs(cnn_spec):
    loaded = load_model(cnn_spec)
    assert (loaded.kind, loaded.task, loaded.name) == ("tensor", "tensor", "tiny_cnn")
    assert loaded.input_names == ["input_0"]
    assert loaded.example_inputs["input_0"].shape == (2, 3, 16, 16)
    assert isinstance(loaded.module, OutputAdapter) and not loaded.module.training
    with torch.inference_mode():
        out = loaded.module(loaded.example_inputs["input_0"])
    assert out.shape == (2, 3)
    assert loaded.info()["parameters"] == 4 * 3 * 9 + 4 + 4 * 3 + 3


def test_py_factory_without_example_inputs_needs_a_shape(cnn_file):
    spec = f"py:{cnn_file}:build_module_only"
    with pytest.raises(HastenError, match="`input_shape`"):
        load_model(spec)
    loaded = load_model(spec, input_shape=(3, 16, 16))
    assert loaded.input_names == ["input"]
    assert loaded.example_inputs["input"].shape == (1, 3, 16, 16)
    with torch.inference_mode():
        assert loaded.module(loaded.example_inputs["input"]).shape == (1, 3)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":not_a_module", "must return a torch.nn.Module"),
        (":no_such_factory", "no function named 'no_such_factory'"),
        ("", "must look like py:FILE:FACTORY"),
    ],
)
def test_py_factory_errors(cnn_file, suffix, message):
    spec = f"py:{cnn_file}{suffix}"
    with pytest.raises(HastenError, match=message):
        load_model(spec)


def test_py_missing_file(tmp_path):
    with pytest.raises(HastenError, match="does not exist"):
        load_model(f"py:{tmp_path / 'nope.py'}:build")


def test_py_file_that_fails_to_import(tmp_path):
    path = tmp_path / "bad_import.py"
    path.write_text("import definitely_not_a_module_hasten\n")
    with pytest.raises(HastenError, match="Importing .* failed: ModuleNotFoundError"):
        load_model(f"py:{path}:build")


def test_py_factory_that_raises_is_a_hasten_error(cnn_file):
    with pytest.raises(HastenError):
        load_model(f"py:{cnn_file}:raises")


def test_onnx_file_loads(cnn_onnx):
    loaded = load_model(f"onnx:{cnn_onnx}")
    assert not loaded.is_torch
    assert (loaded.kind, loaded.task, loaded.name) == ("tensor", "tensor", "cnn")
    assert loaded.input_names == ["pixels"]
    assert loaded.example_inputs["pixels"].shape == (1, 3, 16, 16)
    assert loaded.onnx_path == cnn_onnx.resolve()


def test_onnx_missing_and_invalid_files(tmp_path):
    with pytest.raises(HastenError, match="does not exist"):
        load_model(f"onnx:{tmp_path / 'nope.onnx'}")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(HastenError, match="ONNX Runtime cannot load"):
        load_model(f"onnx:{bad}")


@pytest.mark.parametrize("spec", ["foo:bar", "hf:", "py:", "onnx:", "", "bert-base-uncased"])
def test_unknown_spec(spec):
    with pytest.raises(HastenError, match="Unknown model spec"):
        load_model(spec)


def test_a_missing_hf_dir_is_one_sentence(tmp_path):
    with pytest.raises(HastenError, match="is not a model folder on this machine"):
        load_model(f"hf:{tmp_path / 'missing'}")


def test_hf_dir_without_config(tmp_path):
    with pytest.raises(HastenError, match="no config.json"):
        load_model(f"hf:{tmp_path}")


def test_hf_dir_without_tokenizer(tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=16).save_pretrained(tmp_path)
    with pytest.raises(HastenError, match="tokenizer"):
        load_model(f"hf:{tmp_path}")


def test_first_tensor_finds_the_output():
    a, b = torch.ones(1), torch.zeros(1)
    assert first_tensor(a) is a
    assert first_tensor((None, "x", a, b)) is a
    assert first_tensor({"logits": b, "other": a}) is b

    class Output:
        logits = b

        def to_tuple(self):
            return (a,)

    assert first_tensor(Output(), "logits") is b
    assert first_tensor(Output()) is a
    with pytest.raises(HastenError, match="returned no tensor"):
        first_tensor(("no", "tensors"))


def test_output_adapter_calls_by_name_or_position():
    class Named(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return {"last_hidden_state": input_ids * 10 + attention_mask}

    ids, mask = torch.tensor([[1, 2]]), torch.tensor([[1, 0]])
    named = OutputAdapter(Named(), ["input_ids", "attention_mask"], "last_hidden_state")
    assert named(ids, mask).tolist() == [[11, 20]]
    positional = OutputAdapter(torch.nn.Identity(), ["x"], None)
    assert positional(ids) is ids


def test_absolute_spec_makes_paths_absolute(tiny_bert_dir, cnn_file, monkeypatch):
    from hasten.models import absolute_spec

    monkeypatch.chdir(tiny_bert_dir.parent)
    assert absolute_spec(f"hf:{tiny_bert_dir.name}") == f"hf:{tiny_bert_dir.resolve()}"
    monkeypatch.chdir(cnn_file.parent)
    assert absolute_spec("py:tiny_cnn.py:build") == f"py:{cnn_file.resolve()}:build"
    for spec in ("demo", "hf:missing-folder", "py:missing.py:build", "foo:bar"):
        assert absolute_spec(spec) == spec


@pytest.mark.parametrize(
    ("name", "task", "size", "out"),
    [
        ("resnet", "image-classification", (224, 224), (2, 3)),
        ("convnext", "image-feature-extraction", (28, 28), (2, 16)),
        ("vit", "image-classification", (32, 32), (2, 3)),
    ],
)
def test_hf_image_models_load(tiny_vision_dirs, name, task, size, out):
    loaded = load_model(f"hf:{tiny_vision_dirs[name]}")
    assert (loaded.kind, loaded.task, loaded.model_type) == ("image", task, name)
    assert loaded.input_names == ["pixel_values"] and not loaded.random_weights
    assert loaded.image["size"] == list(size) and loaded.image["channels"] == 3
    assert loaded.example_inputs["pixel_values"].shape == (1, 3, *size)
    with torch.inference_mode():
        result = loaded.module(torch.randn(2, 3, *size))
    assert result.shape == out and torch.isfinite(result).all()
    assert loaded.info()["kind"] == "image" and loaded.info()["parameters"] > 0


def test_hf_image_preparation_comes_from_the_preprocessor_config(tiny_vision_dirs):
    prep = load_model(f"hf:{tiny_vision_dirs['convnext']}").image
    # ConvNeXt's processor: shortest edge to 28 / 0.875 = 32, then a center crop to 28.
    assert (prep["size"], prep["shortest_edge"]) == ([28, 28], 32)
    assert prep["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_hf_image_task_and_shape_can_be_forced(tiny_vision_dirs):
    loaded = load_model(f"hf:{tiny_vision_dirs['resnet']}", task="image-feature-extraction",
                        input_shape=(3, 40, 48))
    assert loaded.image["size"] == [40, 48]
    with torch.inference_mode():
        assert loaded.module(loaded.example_inputs["pixel_values"]).shape == (1, 16, 1, 1)
    with pytest.raises(HastenError, match="does not fit the image model"):
        load_model(f"hf:{tiny_vision_dirs['resnet']}", task="sequence-classification")
    with pytest.raises(HastenError, match="must be 3xHxW"):
        load_model(f"hf:{tiny_vision_dirs['resnet']}", input_shape=(1, 32, 32))


def test_hf_image_model_without_weights_needs_random_weights(tiny_vision_dirs, tmp_path):
    (tmp_path / "config.json").write_bytes((tiny_vision_dirs["vit"] / "config.json").read_bytes())
    with pytest.raises(HastenError, match="holds no weights .* pass `random_weights`"):
        load_model(f"hf:{tmp_path}")
    loaded = load_model(f"hf:{tmp_path}", random_weights=True)
    assert loaded.random_weights and loaded.info()["random_weights"]
    with torch.inference_mode():
        assert loaded.module(loaded.example_inputs["pixel_values"]).shape == (1, 3)


def test_hf_image_model_without_weights_keeps_its_inputs(tiny_vision_dirs):
    loaded = load_model(f"hf:{tiny_vision_dirs['vit']}", with_weights=False)
    assert loaded.module is None and loaded.beside_export() == {}
    assert loaded.example_inputs["pixel_values"].shape == (1, 3, 32, 32)


def test_each_kind_of_model_names_its_points_and_axes(tiny_bert_dir, cnn_spec, tiny_vision_dirs):
    text, tensor = load_model(f"hf:{tiny_bert_dir}"), load_model(cnn_spec)
    image = load_model(f"hf:{tiny_vision_dirs['vit']}")
    assert (text.point(8, 128), tensor.point(8, 128), image.point(8)) == ("b8/s128", "b8", "b8")
    assert text.dynamic_axes()["input_ids"] == {0: "batch", 1: "sequence"}
    assert tensor.dynamic_axes() == {name: {0: "batch"} for name in tensor.input_names}
    assert (text.hugging_face, image.hugging_face, tensor.hugging_face) == (True, True, False)
    assert (text.takes_text, image.takes_text, tensor.takes_text) == (True, False, False)


def test_a_text_model_tokenizes_what_a_tensor_model_tiles(tiny_bert_dir, cnn_spec):
    text, tensor = load_model(f"hf:{tiny_bert_dir}"), load_model(cnn_spec)
    ids, types, mask = text.example_batch(["one", "two words here"], 3, 12, 128)
    assert ids.shape == types.shape == mask.shape == (3, 12)
    assert torch.equal(ids[0], ids[2]) and not torch.equal(ids[0], ids[1])  # cycled
    assert torch.equal(text.attention_mask([ids, types, mask]), mask)
    assert text.lengths(["one", "two words here"], 128) == [int(m.sum()) for m in mask[:2]]
    (tiled,) = tensor.example_batch(["ignored"], 3, None, 128)
    (example,) = tensor.example_inputs.values()
    assert tiled.shape == (3, *example.shape[1:]) and torch.equal(tiled[2], example[0])
    assert tensor.attention_mask([tiled]) is None
    batches = tensor.random_batches(5, 2, seed=1)
    assert [b[0].shape[0] for b in batches] == [2, 2, 2]
    assert torch.equal(batches[0][0], tensor.random_batches(5, 2, seed=1)[0][0])


def test_an_export_saves_the_tokenizer_beside_a_text_model_only(tiny_bert_dir, cnn_spec,
                                                                 tmp_path):
    text, tensor = load_model(f"hf:{tiny_bert_dir}"), load_model(cnn_spec)
    assert tensor.beside_export() == {}
    text.beside_export()["tokenizer"](tmp_path / "tokenizer")
    assert (tmp_path / "tokenizer" / "tokenizer_config.json").is_file()
    imports, lines = text.inputs_code(["a"])
    assert "AutoTokenizer" in imports and "here / 'tokenizer'" in lines
    assert "np.random.rand(2, *shape)" in tensor.inputs_code(["a"])[1]


def test_an_image_model_prepares_images_as_its_config_says(tiny_vision_dirs, cnn_spec):
    convnext = load_model(f"hf:{tiny_vision_dirs['convnext']}")
    assert convnext.image_preparation() == convnext.image
    prep = load_model(cnn_spec).image_preparation()
    assert (prep["channels"], prep["size"], prep["mean"]) == (3, [16, 16], [0.0, 0.0, 0.0])
