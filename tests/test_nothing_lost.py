"""hasten played by a hostile or careless user: nothing of the user's is deleted or written
over, two runs never share a study, a kill leaves nothing half-written that is reused, a trial
dies with its server, a study from elsewhere runs none of its code unasked, and reading a study
writes nothing. Each refusal is one sentence with exit code 2."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hasten import folders
from hasten.errors import HastenError
from hasten.forkserver import ForkServer

HASTEN = str(Path(sys.executable).with_name("hasten"))

# A py: model that leaves a line in RAN_FILE each time its code runs.
SPY_SOURCE = textwrap.dedent(
    """
    import os
    import torch

    with open(os.environ["RAN_FILE"], "a") as out:
        out.write("ran\\n")


    def build():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(4, 3))
        return net, torch.randn(2, 3, 16, 16)
    """
)


def hasten(*args: str, home: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "400", **env}
    if home is not None:
        full["HASTEN_HOME"] = str(home)
    return subprocess.run([HASTEN, *args], capture_output=True, text=True, env=full,
                          timeout=300)


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    """The refusal's one line, once it is checked to be one line, exit code 2, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under a folder with its digest and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def spy(tmp_path_factory) -> tuple[Path, Path]:
    """The spy model file and the file its runs are counted in."""
    folder = tmp_path_factory.mktemp("spy")
    (folder / "spy.py").write_text(SPY_SOURCE)
    return folder / "spy.py", folder / "ran.txt"


@pytest.fixture(scope="module")
def spy_study(tmp_path_factory, spy) -> Path:
    """A finished study of the spy model (its baseline only), made by an account whose hasten
    home is `home` beside it."""
    from hasten.infer import menu

    model, ran = spy
    root = tmp_path_factory.mktemp("made")
    env = {"RAN_FILE": str(ran), "HASTEN_HOME": str(root / "home")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setattr(menu, "CANDIDATES", tuple(c for c in menu.CANDIDATES
                                                   if c.name == "torch/eager/fp32"))
        import hasten

        study = hasten.optimize_inference(f"py:{model}:build", quick=True, out=root / "runs",
                                          name="spy", report=False)
    assert study.results["torch/eager/fp32"]["status"] == "ok"
    return study.folder


# 1. Only folders hasten made are written or deleted.

def test_fresh_refuses_a_folder_that_is_not_a_study(tmp_path, cnn_spec):
    mine = tmp_path / "proj" / "mydata"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    for flags in (["--fresh"], []):
        line = one_sentence(hasten("infer", "--model", cnn_spec, "--out", str(tmp_path / "proj"),
                                   "--name", "mydata", "--quick", *flags))
        assert "was not made by hasten" in line
        assert (mine / "notes.txt").read_text() == "my notes"
        assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../up", " padded"])
def test_a_study_name_must_be_one_plain_folder_name(tmp_path, cnn_spec, name):
    with pytest.raises(HastenError, match="cannot be a folder name"):
        folders.study_folder(tmp_path, name)
    (tmp_path / "keep.txt").write_text("kept")
    line = one_sentence(hasten("infer", "--model", cnn_spec, "--out", str(tmp_path / "runs"),
                               "--name", name, "--fresh", "--quick"))
    assert "cannot be a folder name" in line
    assert (tmp_path / "keep.txt").read_text() == "kept"


def test_export_writes_only_into_its_own_folder_and_keeps_the_users_files(spy_study, spy,
                                                                          tmp_path):
    home = spy_study.parent.parent / "home"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "model.onnx").write_text("the user's own model")
    line = one_sentence(hasten("export", str(spy_study), "--to", str(theirs), home=home,
                               RAN_FILE=str(spy[1])))
    assert "was not made by hasten" in line
    assert (theirs / "model.onnx").read_text() == "the user's own model"
    out = tmp_path / "fast"
    proc = hasten("export", str(spy_study), "--to", str(out), "--json", home=home,
                  RAN_FILE=str(spy[1]))
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["folder"] == str(out) and printed["candidate"]
    assert printed["candidate"] == json.loads((out / "candidate.json").read_text())["candidate"]
    (out / "Dockerfile").write_text("FROM python")  # the user adds a file of their own
    (out / "load.py").write_text("half")
    assert hasten("export", str(spy_study), "--to", str(out), home=home,
                  RAN_FILE=str(spy[1])).returncode == 0
    assert (out / "Dockerfile").read_text() == "FROM python"
    assert "def " in (out / "load.py").read_text() or "import" in (out / "load.py").read_text()


# 2. One run at a time on a study folder.

def test_a_second_run_is_refused_while_the_first_holds_the_study(tmp_path, cnn_spec):
    folder = tmp_path / "runs" / "tiny_cnn"
    folders.claim(folder, "study", "`name`")
    (folder / "study.sqlite").write_bytes(b"")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from hasten.folders import StudyLock
        lock = StudyLock({str(folder)!r})
        print("locked", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_sentence(hasten("infer", "--model", cnn_spec, "--out", str(tmp_path / "runs"),
                                   "--quick", "--fresh"))
        assert f"in use by another hasten run (process {holder.pid})" in line
        assert (folder / "study.sqlite").exists()  # --fresh deleted nothing under it
        with pytest.raises(HastenError, match="in use"):
            folders.StudyLock(folder)
    finally:
        holder.kill()  # kill -9: the operating system releases the lock
        holder.wait()
    folders.StudyLock(folder).release()


# 3. A kill during an export leaves nothing that is reused.

DRIVER = """
import sys
from hasten.infer import menu
menu.CANDIDATES = tuple(c for c in menu.CANDIDATES if c.name in ("torch/eager/fp32",
                                                                     "onnx/ort/all"))
import hasten
hasten.optimize_inference(sys.argv[1], quick=True, out=sys.argv[2], name="cnn", report=False,
                          budget_s=float("inf"))
"""


def test_a_kill_during_an_export_leaves_no_half_artifact(tmp_path, cnn_spec):
    runs = tmp_path / "runs"
    onnx = runs / "cnn" / "artifacts" / "onnx_export"
    argv = [sys.executable, "-c", DRIVER, cnn_spec, str(runs)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    started = time.monotonic()
    while not list(onnx.parent.glob("onnx_export.partial-*")):
        assert proc.poll() is None and time.monotonic() - started < 240, "no build started"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # The step's folder holds no artifact: what was written went to the partial folder.
    assert not (onnx / "model.onnx").exists()
    assert subprocess.run(argv, capture_output=True, timeout=600).returncode == 0
    from hasten import Study

    study = Study(runs / "cnn")
    assert study.results["onnx/ort/all"]["status"] == "ok", study.results["onnx/ort/all"]
    assert not list(onnx.parent.glob("*.partial-*"))
    assert (onnx / "model.onnx").stat().st_size > 0


def test_a_truncated_artifact_from_before_is_built_again(tmp_path):
    from hasten.infer import artifacts

    chain = ("onnx_export",)
    where = artifacts.folder(tmp_path, chain)
    where.mkdir(parents=True)
    (where / "model.onnx").write_bytes(b"\x08\x07")  # what a kill left, with no cost file
    assert artifacts.cached(tmp_path, chain)[0] == 0


# 4. A trial dies with its fork server.

def _gone(pid: int) -> bool:
    """Whether a process has ended (a zombie nobody reaped has ended too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def test_a_trial_dies_with_its_fork_server(tmp_path, monkeypatch):
    (tmp_path / "probe.py").write_text("import time\n\ndef main():\n    time.sleep(120)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    server = ForkServer(("probe",))
    child = server.start("probe", [], tmp_path / "child.log", dict(os.environ))
    assert not _gone(child.pid)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    assert child.wait(30) == -signal.SIGKILL  # the parent's view: killed
    deadline = time.monotonic() + 30
    while not _gone(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child.pid), "the trial outlived its fork server"


# 5. A study from elsewhere runs none of its code unasked; reading writes nothing.

def test_a_foreign_study_is_not_exported_without_trust(spy_study, spy, tmp_path):
    model, ran = spy
    before = ran.read_text()
    copied = tmp_path / "downloaded"
    shutil.copytree(spy_study, copied)
    stranger = tmp_path / "stranger-home"
    line = one_sentence(hasten("export", str(copied), "--to", str(tmp_path / "out"),
                               home=stranger, RAN_FILE=str(ran)))
    assert str(model) in line and "--trust-code" in line
    assert ran.read_text() == before  # the file did not run
    assert not (tmp_path / "out").exists()
    trusted = hasten("export", str(copied), "--to", str(tmp_path / "out"), "--trust-code",
                     home=stranger, RAN_FILE=str(ran))
    assert trusted.returncode == 0, trusted.stderr
    assert len(ran.read_text()) > len(before)


def test_reading_a_study_writes_nothing_to_it(spy_study, spy, tmp_path):
    copied = tmp_path / "study"
    shutil.copytree(spy_study, copied)
    before = snapshot(copied)
    report = tmp_path / "elsewhere" / "report.html"
    for args in (["report", str(copied), "--to", str(report)],
                 ["compare", str(copied), str(spy_study)]):
        proc = hasten(*args, RAN_FILE=str(spy[1]))
        assert proc.returncode == 0, proc.stderr
    assert report.is_file()
    assert snapshot(copied) == before
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name
                                                              for p in spy_study.iterdir())


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder as no one may write to it: a read-only bind mount as root (whom file
    permissions do not stop), else its permissions taken away."""
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        for path in paths:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for path in paths:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        return
    view = folder.with_name(folder.name + "-read-only")
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no read-only view as root: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_study_folder_can_be_reported(spy_study, tmp_path):
    copied = tmp_path / "study"
    shutil.copytree(spy_study, copied)
    report = tmp_path / "report.html"
    with read_only(copied) as view:
        with pytest.raises(OSError):
            (view / "probe").write_text("")
        proc = hasten("report", str(view), "--to", str(report))
        assert proc.returncode == 0, proc.stderr
        line = one_sentence(hasten("report", str(view)))
        assert "report.html" in line
    assert "<html" in report.read_text().lower()
