"""Every example is a folder with a README that says how to run it, and every example recipe
runs in the suite (a test in this folder names it)."""

from __future__ import annotations

from pathlib import Path

from example_study import EXAMPLES

HERE = Path(__file__).resolve().parent


def test_every_example_has_a_readme_with_its_command():
    folders = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert {p.name for p in folders} >= {"digits", "hf_text", "keras_digits", "lightning"}
    for folder in folders:
        readme = folder / "README.md"
        assert readme.is_file(), folder
        if (folder / "recipe.py").is_file():
            assert f"hasten train examples/{folder.name}/recipe.py" in readme.read_text(), folder


def test_every_example_recipe_runs_in_the_suite():
    """A test file here names each example's folder and runs its recipe: a quick study, or
    (vit_digits, whose study is slow on a CPU) its steps through hasten's recipe loader."""
    tests = [p.read_text() for p in HERE.glob("test_*.py") if p.name != Path(__file__).name]
    for recipe in EXAMPLES.glob("*/recipe.py"):
        folder = recipe.parent.name
        assert any(f'"{folder}"' in text and ("quick_study(" in text or "load_recipe(" in text)
                   for text in tests), folder
