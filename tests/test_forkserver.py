"""The fork server starts trial processes from one that has imported their libraries: each
child runs its module's main() with its own argv, environment and log, and is stopped or
reaped like a subprocess."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from hasten.executors import _stop
from hasten.forkserver import ForkServer

PROBE = """
import os, sys, time

def main():
    print("argv", sys.argv[1:], "env", os.environ.get("PROBE"), flush=True)
    if sys.argv[1] == "sleep":
        time.sleep(60)
    if sys.argv[1] == "fail":
        raise ValueError("the probe failed")
    sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[ForkServer]:
    (tmp_path / "probe.py").write_text(PROBE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(tmp_path), os.environ.get("PYTHONPATH")])))
    made = ForkServer(("probe",))
    yield made
    if made.proc is not None:  # the server would otherwise live as long as the test process
        made.proc.kill()
        made.proc.wait()


def test_a_child_runs_main_with_its_argv_environment_and_log(server, tmp_path):
    log = tmp_path / "child.log"
    child = server.start("probe", ["3"], log, {**os.environ, "PROBE": "seen"})
    assert child.wait(60) == 3
    assert log.read_text().strip() == "argv ['3'] env seen"
    # The next child gets its own environment, not the last one's.
    assert server.start("probe", ["0"], log, dict(os.environ)).wait(60) == 0
    assert log.read_text().strip() == "argv ['0'] env None"


def test_an_exception_in_a_child_is_exit_code_1_with_its_traceback(server, tmp_path):
    log = tmp_path / "child.log"
    assert server.start("probe", ["fail"], log, dict(os.environ)).wait(60) == 1
    assert log.read_text().strip().splitlines()[-1] == "ValueError: the probe failed"


def test_a_stopped_child_reports_the_signal_and_the_server_goes_on(server, tmp_path):
    log = tmp_path / "child.log"
    child = server.start("probe", ["sleep"], log, dict(os.environ))
    assert child.poll() is None
    started = time.monotonic()
    while not (log.exists() and "argv" in log.read_text()) and time.monotonic() - started < 60:
        time.sleep(0.05)
    _stop(child)
    assert child.returncode == -signal.SIGKILL
    assert server.start("probe", ["0"], log, dict(os.environ)).wait(60) == 0


def test_a_server_that_died_is_started_again(server, tmp_path):
    log = tmp_path / "child.log"
    assert server.start("probe", ["0"], log, dict(os.environ)).wait(60) == 0
    first = server.proc
    first.kill()
    first.wait()
    assert server.start("probe", ["5"], log, dict(os.environ)).wait(60) == 5
    assert server.proc is not first


def test_an_exit_read_before_a_ctrl_c_is_not_lost(server, tmp_path):
    """A Ctrl-C that lands after the server's exit reply was read, before the caller used it:
    the reply was recorded as it was read, so stopping the trial does not wait forever."""
    log = tmp_path / "child.log"
    child = server.start("probe", ["5"], log, dict(os.environ))
    started = time.monotonic()
    while child.pid not in server.exited and time.monotonic() - started < 60:
        server.pump(1.0)  # what a wait interrupted right after its read had done
    assert child.returncode is None and child.pid in server.exited
    _stop(child)
    assert child.returncode == 5
    assert server.start("probe", ["0"], log, dict(os.environ)).wait(60) == 0


def test_only_the_server_signals_its_children(server, tmp_path, monkeypatch):
    """The client cannot know when the server reaped a child, after which its pid may be
    another process's: it asks the server, which still holds the pid, to kill it."""
    log = tmp_path / "child.log"
    child = server.start("probe", ["sleep"], log, dict(os.environ))
    started = time.monotonic()
    while not (log.exists() and "argv" in log.read_text()) and time.monotonic() - started < 60:
        time.sleep(0.05)

    def refuse(*_):
        raise AssertionError("the client signalled a pid itself")

    with monkeypatch.context() as patch:
        patch.setattr(os, "killpg", refuse)
        patch.setattr(os, "kill", refuse)
        _stop(child)
        assert child.returncode == -signal.SIGKILL
        done = server.start("probe", ["4"], log, dict(os.environ))
        assert done.wait(60) == 4
        _stop(done)  # an ended child is not signalled at all
        assert done.returncode == 4
