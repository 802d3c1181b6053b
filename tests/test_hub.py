"""Hub ids (hf:ORG/NAME[@REVISION]) through huggingface_hub, for real: a local HTTP server serves
a tiny model the way the Hub does (the revision, the file tree, each file with its commit and
ETag), HF_ENDPOINT points at it and HF_HOME at a fresh cache. A --quick study runs on the id;
offline, the cache serves it without a request; an empty cache offline, an unknown repository
and an unknown revision are one sentence each."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_cli import _one_error_line, hasten

REPO = "acme/tiny-bert"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Hub:
    """The server's address and the requests it answered."""

    endpoint: str
    requests: list[str] = field(default_factory=list)

    def env(self, home: Path, offline: bool = False) -> dict:
        """The variables a user sets: where the Hub is, where its cache is, offline or not."""
        return {"HF_ENDPOINT": self.endpoint, "HF_HOME": str(home),
                "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HUB_DISABLE_TELEMETRY": "1"}


def _handler(files: dict[str, bytes], hub: Hub) -> type[BaseHTTPRequestHandler]:
    """Answers the Hub API calls snapshot_download makes, for REPO at revision main."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            """Quiet: the test reads `hub.requests` instead."""

        def _reply(self, body: bytes, headers: dict, code: int = 200) -> None:
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value: object) -> None:
            self._reply(json.dumps(value).encode(), {"Content-Type": "application/json"})

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            hub.requests.append(path)
            if path.startswith(f"/api/models/{REPO}/revision/"):
                if path.rpartition("/")[2] not in ("main", COMMIT):
                    return self._reply(b"", {"X-Error-Code": "RevisionNotFound"}, 404)
                return self._json({"id": REPO, "sha": COMMIT,
                                   "siblings": [{"rfilename": name} for name in files]})
            if path.startswith(f"/api/models/{REPO}/tree/"):
                return self._json([{"type": "file", "path": name, "size": len(data),
                                    "oid": hashlib.sha1(data).hexdigest()}
                                   for name, data in files.items()])
            prefix = f"/{REPO}/resolve/"
            name = path[len(prefix):].partition("/")[2] if path.startswith(prefix) else None
            if name in files:
                return self._reply(files[name], {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha256(files[name]).hexdigest()}"'})
            code = "EntryNotFound" if name is not None else "RepoNotFound"
            return self._reply(b"", {"X-Error-Code": code}, 404)

        do_HEAD = do_GET

    return Handler


@pytest.fixture(scope="module")
def hub(tiny_bert_dir: Path) -> Iterator[Hub]:
    """The tiny BERT folder served as REPO (a stray .py file too, which must not be fetched)."""
    files = {str(p.relative_to(tiny_bert_dir)): p.read_bytes()
             for p in tiny_bert_dir.rglob("*") if p.is_file()}
    files["modeling_evil.py"] = b"raise SystemExit('remote code ran')\n"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files, hub := Hub("")))
    hub.endpoint = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield hub
    server.shutdown()


def test_a_hub_id_runs_a_quick_study_then_offline_from_the_cache(hub, tmp_path):
    home, runs = tmp_path / "hf-home", tmp_path / "runs"
    args = ["infer", "--model", f"hf:{REPO}", "--quick", "--batch-sizes", "1",
            "--seq-lengths", "16", "--out", str(runs), "--json", "--no-report"]
    proc = hasten(*args, "--name", "online", extra_env=hub.env(home), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["finished"] is True
    snapshot = home / "hub" / "models--acme--tiny-bert" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file()
    assert not (snapshot / "modeling_evil.py").exists()  # code is never fetched
    before = len(hub.requests)
    proc = hasten(*args, "--name", "offline", extra_env=hub.env(home, offline=True),
                  timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(hub.requests) == before


@pytest.mark.parametrize(("spec", "offline", "says"), [
    (f"hf:{REPO}", True, f"{REPO} is not in the Hugging Face cache and cannot be downloaded"),
    ("hf:acme/nothing", False, "acme/nothing is neither a folder here nor a model on http"),
    (f"hf:{REPO}@v9", False, f"{REPO} has no revision 'v9'"),
])
def test_what_the_hub_cannot_give_is_one_sentence(hub, tmp_path, spec, offline, says):
    line = _one_error_line(hasten("infer", "--model", spec, "--quick", "--out",
                                  str(tmp_path / "runs"),
                                  extra_env=hub.env(tmp_path / "hf-home", offline)))
    assert says in line
    assert not (tmp_path / "runs").exists()
