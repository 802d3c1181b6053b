"""Train the digits CNN on scikit-learn's handwritten digits (1,797 real 8x8 images) and write
what a hasten study needs: the weights, and the held-out images as a labelled image folder.

    python examples/digits/train.py [--out DIR]     # DIR defaults to examples/digits/out

writes DIR/weights.pt and DIR/heldout/<label>/<i>.png (30% of the digits, split with a fixed
seed, never seen in training), and prints the held-out accuracy. The training pixels are the
PNGs' own 8-bit values scaled to [0, 1], which is how hasten prepares the images by default.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from digits_data import SEED, split
from model import DEFAULT_WEIGHTS, net
from PIL import Image

EPOCHS = 15


def main(out: Path) -> float:
    """Train, save and return the held-out accuracy."""
    started = time.perf_counter()
    # One thread: a model this small trains no faster on more, and it stays quick on a busy CPU.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    # 8-bit pixels, which the PNGs below store exactly.
    train_x, held_x, train_y, held_y = split()
    x = torch.tensor(train_x, dtype=torch.float32).unsqueeze(1) / 255
    y = torch.tensor(train_y)
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    shuffle = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        for index in torch.randperm(len(x), generator=shuffle).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.eval()
    with torch.inference_mode():
        held = torch.tensor(held_x, dtype=torch.float32).unsqueeze(1) / 255
        accuracy = float((model(held).argmax(1).numpy() == held_y).mean())
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    folder = out / "heldout"
    shutil.rmtree(folder, ignore_errors=True)
    for i, (image, label) in enumerate(zip(held_x, held_y, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i}.png")
    print(f"Trained on {len(train_x)} digits in {time.perf_counter() - started:.1f} s; "
          f"held-out accuracy {accuracy:.4f} on {len(held_x)} digits.")
    print(f"Wrote {out / 'weights.pt'} and {len(held_x)} images under {folder}.")
    weights = "" if out.resolve() == DEFAULT_WEIGHTS.parent else (
        f"DIGITS_WEIGHTS={(out / 'weights.pt').resolve()} ")
    print(f"Run the study: {weights}hasten infer --model py:{Path(__file__).parent / 'model.py'}"
          f":build --data {folder}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS.parent,
                        help="folder for weights.pt and heldout/ (default: %(default)s)")
    main(parser.parse_args().out)
