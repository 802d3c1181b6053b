"""hasten report and hasten compare on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HASTEN = str(Path(sys.executable).with_name("hasten"))


def hasten(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HASTEN, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_report_writes_the_file(study_at):
    study = study_at()
    proc = hasten("report", str(study.folder))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"Wrote {study.folder / 'report.html'}\n"
    assert (study.folder / "report.html").stat().st_size > 10_000


def test_compare_prints_and_writes_html(study_at, tmp_path):
    a, b = study_at("a"), study_at("b", scale=0.5, cpu="Other CPU")
    proc = hasten("compare", str(a.folder), str(b.folder), "--html", str(tmp_path / "c.html"))
    assert proc.returncode == 0, proc.stderr
    assert "0.50x" in proc.stdout and "Warning: The machines differ" in proc.stdout
    assert (tmp_path / "c.html").read_text().startswith("<!DOCTYPE html>")


def test_not_a_study_is_one_error_line(tmp_path, study_at):
    for args in (("report", str(tmp_path)), ("compare", str(study_at().folder), str(tmp_path))):
        proc = hasten(*args)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip().splitlines() == [
            f"error: {tmp_path} is not a hasten study folder (no study.sqlite)."]


def test_an_unwritable_html_path_is_one_error_line(study_at, tmp_path):
    a = study_at()
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "c.html"
    proc = hasten("compare", str(a.folder), str(a.folder), "--html", str(target))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: Cannot write {target}: {tmp_path / 'a-file'} is a file, not a folder."]


def test_compare_fails_above_a_ratio_for_ci(study_at):
    a, same, slower = study_at("a"), study_at("same"), study_at("slower", scale=1.3)
    proc = hasten("compare", str(a.folder), str(same.folder), "--fail-above", "1.1")
    assert proc.returncode == 0, proc.stderr
    assert "Regressed" not in proc.stdout
    proc = hasten("compare", str(a.folder), str(slower.folder), "--fail-above", "1.1")
    assert proc.returncode == 1, proc.stderr
    regressed = [line for line in proc.stdout.splitlines() if line.startswith("Regressed: ")]
    assert regressed and all("1.30x the first study's latency" in line for line in regressed)
    assert hasten("compare", str(slower.folder), str(a.folder), "--fail-above",
                  "1.1").returncode == 0  # faster is not a regression
    proc = hasten("compare", str(a.folder), str(slower.folder), "--fail-above", "0.5")
    assert proc.returncode == 2 and "a ratio of at least 1" in proc.stderr


def test_compare_prints_json_and_keeps_other_lines_off_stdout(study_at, tmp_path):
    import json

    a, slower = study_at("a"), study_at("slower", scale=1.3)
    proc = hasten("compare", str(a.folder), str(slower.folder), "--json", "--fail-above", "1.1",
                  "--html", str(tmp_path / "c.html"))
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["studies"] == [str(a.folder), str(slower.folder)]
    assert data["matched"] and all(abs(m["ratio"] - 1.3) < 1e-9 for m in data["matched"])
    assert "Regressed: " in proc.stderr and "Wrote " in proc.stderr
    third = study_at("third", scale=0.5)
    proc = hasten("compare", str(a.folder), str(slower.folder), str(third.folder), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert rows and all(len(r["p50"]) == 3 for r in rows)


def test_report_prints_json_when_asked(study_at):
    import json

    study = study_at()
    proc = hasten("report", str(study.folder), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"report": str(study.folder / "report.html")}
