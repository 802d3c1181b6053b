"""Image folders as data: listing them (flat, or one folder per class for labels), and preparing
images as a model's config or the user's flags say (resize, crop, channels, rescale, normalize).

A preparation is a plain dict, so a study stores it and its trial processes rebuild the same
batches from image paths alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import torch

from hasten.errors import HastenError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm"}
BILINEAR = 2  # PIL's resampling filter numbers, as image processor configs store them
# ConvNeXt's processor resizes the shortest edge to size / crop_pct and then center-crops only
# below this size; at or above it, it resizes straight to a square.
CROP_PCT_BELOW = 384
# The most pixels hasten decodes from one image file: Pillow's own hard limit (below it, from
# half of it, Pillow only warns, and trial processes hide warnings): 179 million pixels, 537 MB
# decoded as RGB. A 108-megapixel photo passes; a file whose header claims 100,000 x 100,000
# pixels (a decompression bomb, 30 GB once decoded) does not.
MAX_PIXELS = 178_956_970


def preparation(channels: int, size: tuple[int, int]) -> dict:
    """Resize straight to `size`, rescale to [0, 1], no normalization: when nothing says more."""
    return {"size": list(size), "shortest_edge": None, "channels": channels,
            "mean": [0.0] * channels, "std": [1.0] * channels, "rescale": 1 / 255,
            "resample": BILINEAR}


def check_sample_size(shape: tuple[int, ...], flag: str) -> None:
    """A float32 sample of `shape` fits in this machine's memory with room for a batch; else
    an error that names the flag which set the shape, not an allocation that fails or swaps."""
    size = 4 * math.prod(shape)
    if size > psutil.virtual_memory().available / 4:
        raise HastenError(f"One input sample shaped {'x'.join(map(str, shape))} takes "
                          f"{size / 2**30:.1f} GiB, more than a quarter of the memory free here; "
                          f"check {flag}.")


def hf_preparation(folder: Path, channels: int, size: tuple[int, int]) -> dict:
    """The preparation a Hugging Face folder's preprocessor_config.json describes (ResNet and
    ConvNeXt: shortest edge over crop_pct, then center crop; ViT: height and width), else the
    plain one at `size`."""
    path = folder / "preprocessor_config.json"
    prep = preparation(channels, size)
    if not path.is_file():
        return prep
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HastenError(f"{path} is not valid JSON: {exc}.") from exc
    given = cfg.get("size")
    if isinstance(given, int):
        prep["size"] = [given, given]
    elif isinstance(given, dict) and "height" in given and "width" in given:
        prep["size"] = [given["height"], given["width"]]
    elif isinstance(given, dict) and "shortest_edge" in given:
        edge = given["shortest_edge"]
        crop = cfg.get("crop_size") if cfg.get("do_center_crop") else None
        if cfg.get("crop_pct") and edge < CROP_PCT_BELOW:
            prep.update(size=[edge, edge], shortest_edge=int(edge / cfg["crop_pct"]))
        elif isinstance(crop, dict) and "height" in crop:
            prep.update(size=[crop["height"], crop["width"]], shortest_edge=edge)
        else:
            prep["size"] = [edge, edge]
    if cfg.get("do_rescale", True) is False:
        prep["rescale"] = 1.0
    else:
        prep["rescale"] = float(cfg.get("rescale_factor", 1 / 255))
    if cfg.get("do_normalize", True) and "image_mean" in cfg and "image_std" in cfg:
        prep["mean"] = _per_channel(cfg["image_mean"], channels, "image_mean")
        prep["std"] = _per_channel(cfg["image_std"], channels, "image_std")
    prep["resample"] = int(cfg.get("resample", BILINEAR))
    return prep


def override(prep: dict, image_size: tuple[int, int] | None = None,
             mean: list[float] | None = None, std: list[float] | None = None) -> dict:
    """The preparation with the user's flags applied: a size means a straight resize to it."""

    prep = dict(prep)
    if image_size is not None:
        check_sample_size((prep["channels"], *image_size), "`image_size`")
        prep.update(size=list(image_size), shortest_edge=None)
    if mean is not None:
        prep["mean"] = _per_channel(mean, prep["channels"], "`mean`")
    if std is not None:
        prep["std"] = _per_channel(std, prep["channels"], "`std`")
    if any(s == 0 for s in prep["std"]):
        raise HastenError("A standard deviation of 0 cannot normalize images; check `std`.")
    return prep


def _per_channel(values: list[float], channels: int, what: str) -> list[float]:
    values = [float(v) for v in values]
    if not all(map(math.isfinite, values)):
        raise HastenError(f"{what} takes finite numbers, not {values}.")
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise HastenError(f"{what} has {len(values)} values, and the model takes {channels} "
                          "channels; give one value or one per channel.")
    return values


def image_input(example_inputs: dict[str, torch.Tensor]) -> tuple[int, tuple[int, int]]:
    """Channels and (height, width) of a model's one image input, or why images cannot feed it."""
    shapes = [tuple(t.shape) for t in example_inputs.values()]
    t = next(iter(example_inputs.values()), None)
    if len(shapes) != 1 or t.dim() != 4 or not t.is_floating_point():
        raise HastenError("An image folder feeds models with one float input shaped (N, C, H, W); "
                          f"this model's example inputs are shaped {shapes}.")
    if t.shape[1] not in (1, 3):
        raise HastenError(f"Images are prepared as 1 (grayscale) or 3 (RGB) channels, and this "
                          f"model takes {t.shape[1]}.")
    return t.shape[1], (t.shape[2], t.shape[3])


def read_folder(folder: Path) -> tuple[list[str], list[int] | None]:
    """Image paths in a fixed shuffled order, and labels when the folder holds one folder per
    class (DIR/<label>/<image>; labels are the indices of the sorted class-folder names)."""
    if not folder.is_dir():
        raise HastenError(f"Image folder {folder} does not exist.")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    classes = [p for p in entries if p.is_dir()]
    top = [p for p in entries if _is_image(p)]
    if classes and top:
        raise HastenError(f"{folder} holds both images and folders; use one layout: images "
                          "directly in it, or one folder per class (DIR/<label>/<image>).")
    if len(classes) == 1:
        raise HastenError(f"{folder} holds only one class folder ({classes[0].name}), and "
                          "accuracy needs two or more; add the other classes, or put the images "
                          f"directly in {folder} to measure without labels.")
    if classes:
        pairs: list[tuple[Path, int | None]] = []
        for label, sub in enumerate(classes):
            found = [(p, label) for p in sorted(sub.iterdir()) if _is_image(p)]
            if not found:
                raise HastenError(f"Class folder {sub} holds no images.")
            pairs += found
    else:
        pairs = [(p, None) for p in top]
    if not pairs:
        raise HastenError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    for path, _ in pairs:
        _check_readable(path)
    random.Random(0).shuffle(pairs)
    labels = [label for _, label in pairs] if classes else None
    return [str(p.resolve()) for p, _ in pairs], labels


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def _opened(path: Path, advice: str) -> Iterator:
    """An image file opened (its header read, nothing decoded yet); one of more than
    MAX_PIXELS, or one that Pillow fails on in the `with` block, is one sentence naming it.
    Pillow's warning from half that size is left out: the limit here is the one that holds."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            if image.width * image.height > MAX_PIXELS:
                raise Image.DecompressionBombError
            yield image
    except Image.DecompressionBombError:
        raise HastenError(f"Image {path} has more than {MAX_PIXELS / 1e6:.0f} million pixels, "
                          "the most hasten decodes from one file (a guard against "
                          "decompression bombs); shrink it, or take it out of the "
                          "folder.") from None
    except Exception as exc:  # Pillow raises many kinds for a broken file
        raise HastenError(f"Image {path} cannot be read ({type(exc).__name__}: {exc}){advice}."
                          ) from exc


def _check_readable(path: Path) -> None:
    with _opened(path, "; replace it or take it out of the folder") as image:
        image.verify()


def load(paths: list[str], prep: dict) -> torch.Tensor:
    """The images at `paths` as one float32 batch (N, C, H, W), prepared as `prep` says."""
    return torch.stack([_load_one(Path(p), prep) for p in paths])


def _load_one(path: Path, prep: dict) -> torch.Tensor:
    height, width = prep["size"]
    with _opened(path, "") as opened:
        image = opened.convert("L" if prep["channels"] == 1 else "RGB")
    if prep["shortest_edge"]:
        scale = prep["shortest_edge"] / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             prep["resample"])
        left, top = (image.width - width) // 2, (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))
    elif image.size != (width, height):
        image = image.resize((width, height), prep["resample"])
    pixels = np.asarray(image, dtype=np.float32).reshape(height, width, -1) * prep["rescale"]
    mean = np.asarray(prep["mean"], dtype=np.float32)
    std = np.asarray(prep["std"], dtype=np.float32)
    return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy())
