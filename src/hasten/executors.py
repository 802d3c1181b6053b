"""Executors decide where a trial runs. The local executor starts one child process per
candidate and phase, with a time limit; crashes and kills become reasons, not exceptions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class LocalExecutor:
    """Runs trials one at a time in fresh Python processes on this machine."""

    def run(self, study: Path, candidate: str, phase: str, points: list[str],
            timeout_s: float, module: str = "hasten.trial") -> str | None:
        """Run one candidate's trials with `python -m module`; return why the process failed,
        or None."""
        logs = study / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{candidate.replace('/', '_')}.{phase}.log"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", module, str(study), candidate, phase,
               ",".join(points)]
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                # The trial leads its own process group: compile workers go with it.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return f"ran past its time limit of {timeout_s:.0f} s and was stopped"
        if proc.returncode == 0:
            return None
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            hint = " (likely out of memory)" if sig == "SIGKILL" else ""
            return f"the trial process was killed by {sig}{hint}"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return f"the trial process exited with code {proc.returncode}: {tail[0][:200]}"
