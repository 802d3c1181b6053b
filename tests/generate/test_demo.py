"""The demo decoder: its texts split for training and holding out, a build with a tiny recipe
(a valid decoder folder, the loss lowered), the cache it is kept in, and builds that are
reused, killed or run twice at once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from hasten.folders import MARKER, marker
from hasten.generate import demo
from hasten.generate.decoder import is_decoder, load_decoder
from hasten.generate.demo import DEMO, HELD_OUT, KIND, VERSION, Recipe, _build, cache_dir

TINY = Recipe(vocab=300, hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64,
              positions=128, window=32, batch=4, steps=8, lr=1e-2, warmup=2)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return demo.demo_texts()[0][:300]


@pytest.fixture(scope="module")
def built(tmp_path_factory, texts) -> tuple[Path, list[str]]:
    lines: list[str] = []
    folder = _build(tmp_path_factory.mktemp("cache") / "demo-decoder-t", TINY, texts,
                    lines.append)
    return folder, lines


def fake_train(calls: list[Path], pause: float = 0.0):
    """A trainer that only writes the weights' file, counting its calls."""

    def train(folder: Path, recipe: Recipe, texts: list[str], log) -> dict:
        calls.append(folder)
        time.sleep(pause)
        (folder / "model.safetensors").write_bytes(b"")
        return {"first": 1.0, "last": 0.5}

    return train


def test_demo_texts_are_split_in_a_fixed_order():
    train, held = demo.demo_texts()
    assert not set(train) & set(held)
    assert abs(len(held) / (len(train) + len(held)) - HELD_OUT) < 0.01
    assert sum(map(len, held)) > 130_000  # about 4 characters a token: 60 windows of 512
    train.clear()
    assert demo.demo_texts()[0] and demo.demo_texts()[1] == held


def test_build_makes_a_decoder_and_lowers_the_loss(built):
    folder, lines = built
    decoder = load_decoder(folder)
    assert is_decoder(f"hf:{folder}")
    assert decoder.has_weights and decoder.architecture == "LlamaForCausalLM"
    assert decoder.max_length == TINY.positions and decoder.vocab_size == TINY.vocab
    assert decoder.eos_token_id is not None
    assert (folder / "generation_config.json").is_file()
    found = marker(folder)
    assert found["kind"] == KIND and found["recipe"]["steps"] == TINY.steps
    assert found["loss"]["last"] < found["loss"]["first"]
    assert lines[0].startswith("Training the demo decoder") and "once" in lines[0]
    assert sorted(p.name for p in folder.parent.iterdir()) == [
        ".demo-decoder-t.lock", "demo-decoder-t"]


def test_second_build_reuses_the_folder(built, texts, monkeypatch):
    folder, _ = built

    def refuse(*args) -> dict:
        raise AssertionError("trained again")

    monkeypatch.setattr(demo, "_train", refuse)
    assert _build(folder, TINY, texts, print) == folder


def test_a_killed_builds_folder_is_not_the_decoder(tmp_path, texts, monkeypatch):
    leftover = tmp_path / ".demo-decoder-t.x1y2.tmp"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    (leftover / MARKER).write_text(json.dumps({"kind": KIND}))
    calls: list[Path] = []
    monkeypatch.setattr(demo, "_train", fake_train(calls))
    folder = _build(tmp_path / "demo-decoder-t", TINY, texts, print)
    assert len(calls) == 1 and calls[0] != leftover
    assert marker(folder)["loss"] == {"first": 1.0, "last": 0.5}
    assert not leftover.exists()


def test_a_failed_build_leaves_nothing(tmp_path, texts, monkeypatch):
    def fail(folder: Path, *args) -> dict:
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")

    monkeypatch.setattr(demo, "_train", fail)
    with pytest.raises(RuntimeError):
        _build(tmp_path / "demo-decoder-t", TINY, texts, print)
    assert [p.name for p in tmp_path.iterdir()] == [".demo-decoder-t.lock"]


def test_two_builds_at_once_train_once(tmp_path, texts, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(demo, "_train", fake_train(calls, pause=0.5))
    lines: list[str] = []
    found: list[Path] = []

    def build() -> None:
        found.append(_build(tmp_path / "demo-decoder-t", TINY, texts, lines.append))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and found == [tmp_path / "demo-decoder-t"] * 2
    assert any("waiting" in line for line in lines)


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HASTEN_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.setattr(demo, "_build", lambda folder, recipe, texts, log: (folder, recipe))
    folder, recipe = demo.demo_decoder_dir()
    assert folder.parent == tmp_path / "cache" and recipe == DEMO
    assert folder.name.startswith(f"{KIND}-v{VERSION}-")
    monkeypatch.delenv("HASTEN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hasten"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "hasten"
