"""`hasten lint --fix` run as a careless user runs it: line endings and encodings kept byte for
byte, links and environments left alone, odd folders and bad paths refused before anything is
written, and a file changed meanwhile or a write cut short never damaged."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hasten.cli import app
from hasten.lint import files

LOAD = b'import torch\nsd = torch.load("w.pt")  # the checkpoint\n'
FIXED = b'import torch\nsd = torch.load("w.pt", weights_only=True)  # the checkpoint\n'


def _lint(*args: str):
    return CliRunner().invoke(app, ["lint", *args], catch_exceptions=False)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def test_line_endings_bom_and_declared_encoding_are_kept_byte_for_byte(tmp_path):
    crlf = tmp_path / "crlf.py"
    crlf.write_bytes(_crlf(LOAD))
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbf" + _crlf(LOAD))
    head = b"# -*- coding: latin-1 -*-\n# caf\xe9\n"
    latin = tmp_path / "latin.py"
    latin.write_bytes(head + _crlf(LOAD))
    result = _lint("--fix", str(tmp_path))
    assert (result.exit_code, result.stdout) == (0, "")
    assert crlf.read_bytes() == _crlf(FIXED)
    assert bom.read_bytes() == b"\xef\xbb\xbf" + _crlf(FIXED)
    assert latin.read_bytes() == head + _crlf(FIXED)


def test_fix_writes_a_synced_file_beside_the_original_and_renames_it_over(tmp_path, monkeypatch):
    path = tmp_path / "a.py"
    path.write_bytes(LOAD)
    path.chmod(0o750)
    calls: list[tuple[str, Path, Path | None]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync",
                        lambda fd: (calls.append(("fsync", path, None)), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda src, dst: (
        calls.append(("replace", Path(src), Path(dst))), real_replace(src, dst))[1])
    assert _lint("--fix", str(path)).exit_code == 0
    assert [c[0] for c in calls] == ["fsync", "replace"]
    _, temp, target = calls[1]
    assert target == path and temp.parent == path.parent and temp != path
    assert path.read_bytes() == FIXED
    assert path.stat().st_mode & 0o777 == 0o750
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("cut", [OSError(errno.ENOSPC, "No space left on device"),
                                 KeyboardInterrupt()], ids=["disk-full", "interrupted"])
def test_a_write_cut_short_leaves_the_original_whole(tmp_path, monkeypatch, cut):
    path = tmp_path / "a.py"
    path.write_bytes(LOAD)

    def fail(fd: int) -> None:
        assert path.read_bytes() == LOAD  # while the new text is written, the old is whole
        raise cut

    monkeypatch.setattr(files.os, "fsync", fail)
    result = _lint("--fix", str(path))
    assert path.read_bytes() == LOAD
    assert list(tmp_path.iterdir()) == [path]
    if isinstance(cut, OSError):
        assert result.exit_code == 1 and "HST112" in result.stdout
        assert (f"{path.as_posix()}: not fixed: it cannot be written (No space left on device)"
                in result.stdout)
    else:
        assert result.exit_code == 130


def test_a_process_killed_while_writing_leaves_the_original_whole(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(LOAD)
    code = ("import os, signal, sys\nfrom hasten.cli import main\n"
            "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"sys.argv = ['hasten', 'lint', '--fix', {str(path)!r}]\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == -9
    assert path.read_bytes() == LOAD
    # What is left beside it is a hidden temporary file that no later walk reads as code.
    assert [p.name for p in tmp_path.iterdir() if p != path][0].startswith(".a.py.")
    assert _lint("--fix", str(tmp_path)).exit_code == 0 and path.read_bytes() == FIXED


@pytest.mark.parametrize("same_size_and_time", [False, True])
def test_a_file_changed_after_it_was_read_is_not_overwritten(tmp_path, monkeypatch,
                                                             same_size_and_time):
    path = tmp_path / "a.py"
    path.write_bytes(LOAD)
    edited = LOAD.replace(b"w.pt", b"v.pt") if same_size_and_time else LOAD + b"x = 1\n"
    real_fsync = os.fsync

    def edit_then_sync(fd: int) -> None:
        status = path.stat()
        path.write_bytes(edited)  # the user saves in their editor meanwhile
        if same_size_and_time:
            os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", edit_then_sync)
    result = _lint("--fix", str(path))
    assert path.read_bytes() == edited
    assert result.exit_code == 1 and "HST112" in result.stdout
    assert f"{path.as_posix()}: not fixed: it changed after hasten read it" in result.stdout
    assert list(tmp_path.iterdir()) == [path]


def test_links_are_not_walked_nor_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target.py"
    target.write_bytes(LOAD)
    project = tmp_path / "project"
    project.mkdir()
    link = project / "link.py"
    link.symlink_to(target)
    (project / "linked").symlink_to(outside, target_is_directory=True)
    own = project / "own.py"
    own.write_bytes(LOAD)
    result = _lint("--fix", str(project))
    assert (result.exit_code, result.stdout) == (0, "")
    assert own.read_bytes() == FIXED and target.read_bytes() == LOAD
    # Named on the command line, the link is linted, and --fix says why it leaves it.
    result = _lint("--fix", str(link))
    assert result.exit_code == 1 and f"{link.as_posix()}:2:6 HST112" in result.stdout
    assert f"{link.as_posix()}: not fixed: it is a symbolic link to {target}" in result.stdout
    assert link.is_symlink() and target.read_bytes() == LOAD
    notes = json.loads(_lint("--fix", "--format", "json", str(link)).stdout)["notes"]
    assert [n["path"] for n in notes] == [link.as_posix()]


def test_a_hard_linked_file_is_left_with_a_note(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(LOAD)
    os.link(path, tmp_path / "backup.txt")
    result = _lint("--fix", str(path))
    assert result.exit_code == 1 and "not fixed: it has other hard links" in result.stdout
    assert path.read_bytes() == LOAD


def test_environments_and_caches_are_not_walked_but_named_files_are_linted(tmp_path,
                                                                           monkeypatch):
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "conda" / "conda-meta").mkdir(parents=True)
    inside = [tmp_path / p for p in (
        "venv/lib/python3.11/site-packages/pkg/mod.py", "venv/bin/tool.py", "conda/lib/os.py",
        "vendor/site-packages/pkg.py", "web/node_modules/x.py", ".git/hooks/x.py",
        "pkg/__pycache__/x.py")]
    for path in inside:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(LOAD)
    own = tmp_path / "train.py"
    own.write_bytes(LOAD)
    monkeypatch.chdir(tmp_path)
    result = _lint("--fix", ".")
    assert (result.exit_code, result.stdout) == (0, "")
    assert own.read_bytes() == FIXED
    assert all(path.read_bytes() == LOAD for path in inside)
    result = _lint(str(inside[0]))
    assert result.exit_code == 1 and "HST112" in result.stdout


def test_a_folder_named_like_a_python_file_is_walked_as_a_folder(tmp_path):
    own = tmp_path / "a.py"
    own.write_bytes(LOAD)
    folder = tmp_path / "x.py"
    folder.mkdir()
    inner = folder / "inner.py"
    inner.write_bytes(LOAD)
    (tmp_path / "empty.py").mkdir()
    result = _lint("--fix", str(tmp_path))
    assert (result.exit_code, result.stdout) == (0, ""), result.output
    assert own.read_bytes() == FIXED and inner.read_bytes() == FIXED
    assert _lint(str(folder)).exit_code == 0


@pytest.mark.parametrize(("bad", "says"), [
    ("missing.py", "does not exist"),
    ("dangling.py", "is a symbolic link to"),
    ("fifo.py", "is neither a file nor a folder"),
    ("locked", "cannot be read: Permission denied"),
])
def test_bad_input_is_one_sentence_and_leaves_every_file_untouched(tmp_path, monkeypatch, bad,
                                                                   says):
    good = tmp_path / "good.py"
    good.write_bytes(LOAD)
    (tmp_path / "dangling.py").symlink_to(tmp_path / "gone.py")
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(folder):
        if Path(folder).name == "locked":  # as an unreadable folder does for a user (not root)
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real_scandir(folder)

    monkeypatch.setattr(files.os, "scandir", scandir)
    result = _lint("--fix", str(good), str(tmp_path / bad))
    assert result.exit_code == 2 and says in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
    assert good.read_bytes() == LOAD
