"""Image folders: listing (class folders as labels, flat folders), preparing images (channels,
resize, crop, rescale, normalize) against hand computations and Hugging Face's own processors,
and the errors for folders that cannot feed a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hasten import images
from hasten.errors import HastenError


def _save(path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def _random(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_class_folders_are_labels_in_sorted_name_order(tmp_path):
    for label, count in (("zebra", 2), ("ant", 3), ("moth", 1)):
        for i in range(count):
            _save(tmp_path / label / f"{i}.png", _random((4, 4, 3), i))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    paths, labels = images.read_folder(tmp_path)
    assert len(paths) == 6
    by_class = {p.split("/")[-2]: label for p, label in zip(paths, labels, strict=True)}
    assert by_class == {"ant": 0, "moth": 1, "zebra": 2}
    # A fixed shuffle, so the first images (the fidelity subset) mix the classes.
    assert images.read_folder(tmp_path) == (paths, labels)
    assert paths != sorted(paths)


def test_flat_folder_has_no_labels(tmp_path):
    for i, suffix in enumerate((".png", ".jpg", ".JPEG", ".bmp")):
        _save(tmp_path / f"{i}{suffix}", _random((5, 6, 3), i))
    paths, labels = images.read_folder(tmp_path)
    assert labels is None
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["0.png", "1.jpg", "2.JPEG", "3.bmp"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "holds no images"),
        ({"readme.txt": b"text"}, "holds no images"),
        ({"a.png": None, "cats/b.png": None}, "both images and folders"),
        ({"cats/a.png": None, "dogs/readme.txt": b"x"}, "Class folder .*dogs holds no images"),
        ({"broken.png": b"not really a png"}, "Image .*broken.png cannot be read"),
    ],
)
def test_bad_folders(tmp_path, layout, message):
    for name, content in layout.items():
        path = tmp_path / name
        if content is None:
            _save(path, _random((4, 4, 3)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    with pytest.raises(HastenError, match=message):
        images.read_folder(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(HastenError, match="does not exist"):
        images.read_folder(tmp_path / "nope")


def test_normalization_matches_a_hand_computation(tmp_path):
    pixels = np.array([[[0, 128, 255], [10, 20, 30]], [[255, 255, 255], [1, 2, 3]]])
    _save(tmp_path / "a.png", pixels)
    prep = images.override(images.preparation(3, (2, 2)), mean=[0.5, 0.25, 0.0],
                           std=[0.5, 0.25, 2.0])
    (x,) = images.load([str(tmp_path / "a.png")], prep)
    assert x.shape == (3, 2, 2) and x.dtype == torch.float32
    # Channel first; (pixel / 255 - mean) / std by hand for two of the values.
    assert x[0, 0, 0].item() == pytest.approx((0 / 255 - 0.5) / 0.5)
    assert x[1, 0, 0].item() == pytest.approx((128 / 255 - 0.25) / 0.25)
    assert x[2, 1, 1].item() == pytest.approx((3 / 255 - 0.0) / 2.0)
    expected = (pixels.transpose(2, 0, 1) / 255 - np.array([0.5, 0.25, 0])[:, None, None]) \
        / np.array([0.5, 0.25, 2.0])[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_grayscale_and_rgb_conversion(tmp_path):
    _save(tmp_path / "rgb.png", [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [90, 90, 90]]])
    _save(tmp_path / "gray.png", [[0, 51], [102, 255]])
    gray = images.load([str(tmp_path / "rgb.png")], images.preparation(1, (2, 2)))
    # ITU-R 601-2 luma, as Pillow's "L" conversion: L = R * 299/1000 + G * 587/1000 + B * 114/1000.
    expected = np.array([[76, 150], [29, 90]]) / 255
    np.testing.assert_allclose(gray[0, 0].numpy(), expected, atol=1 / 255)
    rgb = images.load([str(tmp_path / "gray.png")], images.preparation(3, (2, 2)))
    assert rgb.shape == (1, 3, 2, 2)
    assert torch.equal(rgb[0, 0], rgb[0, 2])
    np.testing.assert_allclose(rgb[0, 1].numpy(), np.array([[0, 51], [102, 255]]) / 255,
                               atol=1e-7)


def test_resize_and_center_crop(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, 10:30] = 255  # a white center half as wide as the image
    _save(tmp_path / "wide.png", pixels)
    nearest = dict(images.preparation(1, (10, 10)), resample=0)  # exact pixels to check
    straight = images.load([str(tmp_path / "wide.png")], nearest)
    assert straight.shape == (1, 1, 10, 10)
    cropped_prep = dict(nearest, shortest_edge=10)
    cropped = images.load([str(tmp_path / "wide.png")], cropped_prep)
    # Shortest edge to 10 (the image becomes 10x20), then the center 10x10: all white.
    assert cropped.shape == (1, 1, 10, 10)
    assert cropped.min().item() == 1.0
    # Straight to 10x10 squeezes the whole width in: black columns on both sides.
    assert straight[0, 0, :, 0].max().item() == 0.0 and straight[0, 0, :, 5].min().item() == 1.0


@pytest.mark.parametrize(
    ("processor", "options"),
    [
        ("ConvNextImageProcessorPil", {"size": {"shortest_edge": 32}, "crop_pct": 0.875}),
        ("ViTImageProcessorPil", {"size": {"height": 24, "width": 20}}),
    ],
)
def test_preparation_matches_hugging_face_processors(tmp_path, processor, options):
    import transformers

    hf = getattr(transformers, processor)(**options)
    hf.save_pretrained(tmp_path)
    _save(tmp_path / "photo.png", _random((45, 60, 3)))
    prep = images.hf_preparation(tmp_path, 3, (224, 224))
    ours = images.load([str(tmp_path / "photo.png")], prep)
    theirs = hf(Image.open(tmp_path / "photo.png"), return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    # Resampling rounds differently by a pixel level here and there.
    assert (ours - theirs).abs().mean().item() < 0.02


def test_hf_preparation_reads_rescale_and_normalize(tmp_path):
    config = {"size": 16, "do_rescale": False, "do_normalize": True,
              "image_mean": [0.5], "image_std": [2.0], "resample": 3}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    prep = images.hf_preparation(tmp_path, 3, (224, 224))
    assert prep == {"size": [16, 16], "shortest_edge": None, "channels": 3,
                    "mean": [0.5] * 3, "std": [2.0] * 3, "rescale": 1.0, "resample": 3}
    assert images.hf_preparation(tmp_path / "none", 1, (8, 8)) == images.preparation(1, (8, 8))


def test_flags_override_the_config():
    prep = dict(images.preparation(3, (32, 32)), shortest_edge=36)
    out = images.override(prep, image_size=(24, 20), mean=[0.1], std=[0.2, 0.3, 0.4])
    assert (out["size"], out["shortest_edge"]) == ([24, 20], None)
    assert out["mean"] == [0.1] * 3 and out["std"] == [0.2, 0.3, 0.4]
    assert prep["size"] == [32, 32]
    with pytest.raises(HastenError, match="`mean` has 2 values, and the model takes 3"):
        images.override(prep, mean=[0.1, 0.2])
    with pytest.raises(HastenError, match="standard deviation of 0"):
        images.override(prep, std=[0.0])


def test_image_input_of_a_model():
    assert images.image_input({"x": torch.zeros(1, 3, 16, 12)}) == (3, (16, 12))
    with pytest.raises(HastenError, match="one float input shaped"):
        images.image_input({"x": torch.zeros(1, 8)})
    with pytest.raises(HastenError, match="one float input shaped"):
        images.image_input({"a": torch.zeros(1, 3, 4, 4), "b": torch.zeros(1, 3, 4, 4)})
    with pytest.raises(HastenError, match="takes 4"):
        images.image_input({"x": torch.zeros(1, 4, 8, 8)})
