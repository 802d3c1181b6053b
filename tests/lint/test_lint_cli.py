"""`hasten lint` on the command line: output, formats, exit codes, fixes, suppression,
configuration, bad input and the recipe link."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hasten.cli import app

TRAIN = textwrap.dedent("""\
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=8)
    sd = torch.load("w.pt")  # the checkpoint
    for x, y in loader:
        loss = f(x, y)
        loss.backward()
""")
INFER = textwrap.dedent("""\
    import torch

    model.eval()


    @torch.no_grad()  # decorated
    def run(x):
        return model(x)


    if __name__ == "__main__":
        with torch.no_grad():  # keep this comment
            print(run(x))
""")


def _lint(*args: str):
    return CliRunner().invoke(app, ["lint", *args], catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "infer.py").write_text(INFER)
    return tmp_path


def test_text_sorted_and_exit_1(files):
    result = _lint(str(files))
    lines = result.stdout.splitlines()
    assert result.exit_code == 1
    assert lines == sorted(lines, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))
    assert f"{files.as_posix()}/train.py:4:10 HST101 " in result.stdout
    assert "HST112" in result.stdout and "HST107" in result.stdout


def test_clean_exit_0(tmp_path):
    (tmp_path / "ok.py").write_text("import torch\nx = torch.zeros(3)\n")
    result = _lint(str(tmp_path))
    assert (result.exit_code, result.stdout) == (0, "")


def test_missing_path_is_one_sentence_exit_2(tmp_path):
    result = _lint(str(tmp_path / "nope.py"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_unparsable_file_is_one_line_and_others_are_checked(files):
    (files / "broken.py").write_text("def f(:\n")
    result = _lint(str(files))
    assert result.exit_code == 2
    assert len([line for line in result.stdout.splitlines() if "cannot parse" in line]) == 1
    assert "HST101" in result.stdout


def test_json_and_sarif(files):
    data = json.loads(_lint("--format", "json", str(files / "train.py")).stdout)
    assert {f["code"] for f in data["findings"]} == {"HST101", "HST112"}
    first = data["findings"][0]
    assert set(first) >= {"path", "line", "column", "code", "message", "fixable", "train"}
    sarif = json.loads(_lint("--format", "sarif", str(files / "train.py")).stdout)
    run = sarif["runs"][0]
    assert sarif["version"] == "2.1.0"
    assert {r["ruleId"] for r in run["results"]} == {"HST101", "HST112"}
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert all(rule_ids[r["ruleIndex"]] == r["ruleId"] for r in run["results"])
    assert run["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] > 0


def test_diff_changes_nothing_then_fix_keeps_comments(files):
    before = (files / "train.py").read_text()
    result = _lint("--diff", str(files))
    assert "+sd = torch.load(\"w.pt\", weights_only=True)  # the checkpoint" in result.stdout
    assert (files / "train.py").read_text() == before
    result = _lint("--fix", str(files))
    assert "HST112" not in result.stdout and "HST107" not in result.stdout
    infer = (files / "pkg" / "infer.py").read_text()
    assert "@torch.inference_mode()  # decorated" in infer
    assert "with torch.inference_mode():  # keep this comment" in infer
    assert infer.replace("inference_mode", "no_grad") == INFER
    assert "HST112" not in _lint(str(files)).stdout


def test_noqa_and_ignore_comments(tmp_path):
    path = tmp_path / "a.py"
    path.write_text("import torch\n"
                    "a = torch.load('a')  # noqa: HST112\n"
                    "b = torch.load('b')  # hasten: ignore[HST112]\n"
                    "c = torch.load('c')  # noqa\n"
                    "d = torch.load('d')  # noqa: HST101\n")
    result = _lint(str(path))
    assert [line.split()[0] for line in result.stdout.splitlines()] == [f"{path.as_posix()}:5:5"]


def test_select_ignore_and_pyproject(files):
    assert "HST112" not in _lint("--select", "HST101", str(files)).stdout
    assert "HST101" not in _lint("--ignore", "hst101", str(files)).stdout
    (files / "pyproject.toml").write_text('[tool.hasten.lint]\nignore = ["HST112"]\n')
    result = _lint(str(files / "train.py"))
    assert "HST112" not in result.stdout and "HST101" in result.stdout
    (files / "pyproject.toml").write_text('[tool.hasten.lint]\nselect = ["HST9"]\n')
    result = _lint(str(files / "train.py"))
    assert result.exit_code == 2 and "HST9" in result.stderr


def test_unknown_code_and_format(files):
    assert _lint("--select", "HST999", str(files)).exit_code == 2
    assert _lint("--format", "xml", str(files)).exit_code == 2


def test_explain():
    result = _lint("--explain", "hst115")
    assert result.exit_code == 0
    assert "32-true/adamw-fused" in result.stdout and "Why:" in result.stdout
    assert _lint("--explain", "HST000").exit_code == 2


def test_recipe_link(tmp_path):
    recipe = tmp_path / "recipe.py"
    recipe.write_text(textwrap.dedent("""\
        import torch
        def model():
            return torch.nn.Linear(2, 2)
        def train_data():
            return torch.load("data.pt")
        def loss(model, batch):
            return model(batch).sum()
        def optimizer(params):
            return torch.optim.AdamW(params)
    """))
    result = _lint("--recipe", str(recipe))
    assert result.exit_code == 1
    assert "hasten train measures it as 32-true/adamw-fused" in result.stdout
    assert "HST112" in result.stdout and "not measured by hasten train" in result.stdout
    (tmp_path / "other.py").write_text("x = 1\n")
    result = _lint("--recipe", str(tmp_path / "other.py"))
    assert result.exit_code == 2 and "not a hasten train recipe" in result.stderr


def test_lint_imports_no_torch(files):
    code = ("import sys\nfrom hasten.cli import main\nsys.argv = ['hasten', 'lint', "
            f"{str(files)!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
