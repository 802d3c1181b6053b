"""A fork server for trial processes: one process imports PyTorch, Transformers and the trial
modules once, then forks a child for each trial. A fresh interpreter spends about 4 s on
those imports before a trial starts (measured on a 2-core Xeon: 1.8 s for the imports, 2.3 s
more for the first model load, almost all of it imports); a fork takes milliseconds.

Each child is still its own process: it starts a new session (so that stopping it stops its
own children too), writes to its own log, and runs the trial module's `main()` with the
environment of the request. The server has run no tensor operation, so no thread pool is
copied into the child.

Protocol, one JSON object per line: the client writes {"module", "argv", "log", "env"}; the
server answers {"pid"} once the child runs, and {"exit": pid, "code"} when it ends (code as
subprocess gives it: negative for a signal).

Run as `python -m hasten.forkserver MODULE...`, the modules to import before serving.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends


def die_with(parent: int) -> Callable[[], None]:
    """What a new process runs first to have the kernel kill it when `parent` ends (Linux), so
    that a trial never outlives the server or the study that started it and writes rows that
    nobody waits for."""

    def bind() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent ended before the request took hold
            os._exit(1)

    return bind


def parent_bound() -> Callable[[], None] | None:
    """For a process this one starts: die with this one. Only from the main thread, since the
    kernel watches the thread that started it, and a worker thread may end sooner."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return die_with(os.getpid())


def _child(request: dict, server: int) -> int:
    """Become the trial process the request describes and run it; return its exit code."""
    os.setsid()
    die_with(server)()
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    if request["env"].get("PYTHONWARNINGS") == "ignore":
        warnings.simplefilter("ignore")
    sys.argv = [request["module"], *request["argv"]]
    code = 0
    try:
        module = importlib.import_module(request["module"])
        # As under `python -m`: what relaunches the program (Lightning's launcher for more
        # processes) reads the module to run from __main__.
        sys.modules["__main__"] = module
        module.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def serve(modules: list[str]) -> None:
    """Import `modules`, then fork one child per request read from stdin until it closes; a
    request {"kill": pid} kills that child's process group instead. Only the server signals
    its children: it reaps them, so a pid it still holds is never another process's, which
    the client (that cannot know when a child was reaped) could hit once pids wrap around."""
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    requests = os.dup(0)  # read unbuffered: a line read ahead would be one select never sees
    pending = b""
    running: set[int] = set()
    server = os.getpid()
    while True:
        ready = b"\n" in pending or select.select([requests], [], [],
                                                  0.05 if running else None)[0]
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                out.write(json.dumps({"exit": pid,
                                      "code": os.waitstatus_to_exitcode(status)}) + "\n")
        if not ready:
            continue
        if b"\n" not in pending:
            chunk = os.read(requests, 65536)
            if not chunk:
                return
            pending += chunk
            continue
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        if "kill" in request:
            if request["kill"] in running:
                kill_group(request["kill"])
            continue
        pid = os.fork()
        if pid == 0:
            out.close()
            os.close(requests)
            code = 1
            try:
                code = _child(request, server)
            finally:
                os._exit(code)
        running.add(pid)
        out.write(json.dumps({"pid": pid}) + "\n")


def kill_group(pid: int) -> None:
    """SIGKILL a child's process group (compile workers go with it), or the child alone when
    it has not started its own session yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) in this block, in the main thread: what the block reads from
    the server is recorded whole before a KeyboardInterrupt can land, so that the interrupted
    study can still wait for the trial it stops (a lost exit reply left it waiting forever)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class ForkServer:
    """The client side: starts the server on first use (again if it died) and runs one child
    at a time through it, with the same handle a subprocess.Popen gives. The server's replies
    are recorded as they are read (`started`, `exited`, `gone`), never only handed to a caller
    that a Ctrl-C could stop before it used them."""

    def __init__(self, modules: tuple[str, ...]):
        self.modules = modules
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.pending = b""
        self.started: list[int] = []  # children the server started, not yet handed out
        self.exited: dict[int, int] = {}  # pid -> exit code, as subprocess gives it
        self.gone = False  # the server's output ended: it has stopped

    def _server(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hasten.forkserver", *self.modules],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONWARNINGS": "ignore"}, bufsize=0,
                preexec_fn=parent_bound())
            self._reset()
        return self.proc

    def pump(self, timeout: float | None) -> None:
        """Read and record the server's replies that come within `timeout` seconds (None: wait
        for one)."""
        fd = self.proc.stdout.fileno()
        if self.gone or not select.select([fd], [], [], timeout)[0]:
            return
        with _uninterrupted():
            chunk = os.read(fd, 4096)
            if not chunk:
                self.gone = True
            self.pending += chunk
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                reply = json.loads(line)
                if "exit" in reply:
                    self.exited[reply["exit"]] = reply["code"]
                else:
                    self.started.append(reply["pid"])

    def send(self, request: dict) -> None:
        """Write one request line to the server."""
        self.proc.stdin.write((json.dumps(request) + "\n").encode())

    def start(self, module: str, argv: list[str], log: Path, env: dict) -> Child:
        """Fork a child that runs `module`'s main() with `argv`, writing to `log`; the next
        child starts once this one has been waited for."""
        self.lock.acquire()
        try:
            self._server()
            self.send({"module": module, "argv": argv, "log": str(log), "env": env})
            while not self.started and not self.gone:
                self.pump(None)
            with _uninterrupted():
                if not self.started:
                    raise OSError("the trial fork server stopped before it started the trial")
                return Child(self, self.started.pop(0))
        except BaseException:
            self.lock.release()
            raise


class Child:
    """A forked trial process, polled and waited for like a subprocess.Popen."""

    def __init__(self, server: ForkServer, pid: int):
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self._read(0.0)

    def kill(self) -> None:
        """Have the server SIGKILL the child's process group, unless it has ended (a server
        that has gone took it along)."""
        if self.poll() is None:
            with contextlib.suppress(OSError):  # BrokenPipeError: the server has just gone
                self.server.send({"kill": self.pid})

    def wait(self, timeout: float | None = None) -> int:
        code = self._read(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"trial {self.pid}", timeout or 0.0)
        return code

    def _read(self, timeout: float | None) -> int | None:
        """The exit code, once the server has reported it within `timeout` seconds (a server
        that has gone took its children with it)."""
        server = self.server
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None and self.pid not in server.exited and not server.gone:
            server.pump(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                break
        with _uninterrupted():
            if self.returncode is None and (self.pid in server.exited or server.gone):
                self.returncode = server.exited.pop(self.pid, -signal.SIGKILL)
                server.lock.release()
        return self.returncode


if __name__ == "__main__":
    serve(sys.argv[1:])
