"""A Hugging Face Hub stand-in on 127.0.0.1: a real HTTP server answering the few
routes huggingface_hub's snapshot_download uses (model info, file tree, resolve with
HEAD and ranged GET), so prefetch's Hub path is tested without the network."""
from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]
    branch: str = "main"


@dataclass
class FakeHub:
    repos: dict[str, Repo]
    token: str | None = None
    truncate_once: set[str] = field(default_factory=set)  # file names cut short on their first GET
    pause_midway: dict[str, float] = field(default_factory=dict)  # file name -> seconds to stall at half
    requests: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    url: str = ""
    _server: Any = None

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self.answer(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self.answer(head=False)

            def answer(self, head: bool) -> None:
                auth = self.headers.get("Authorization")
                hub.requests.append((self.command, self.path, auth, self.headers.get("Range")))
                if hub.token and auth != f"Bearer {hub.token}":
                    return self.reply(401, b"{}", {"X-Error-Code": "GatedRepo"}, head)
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                if path.startswith("/api/models/"):
                    return self.api(path[len("/api/models/"):], head)
                for name, repo in hub.repos.items():
                    prefix = f"/{name}/resolve/"
                    if path.startswith(prefix):
                        rev, _, fname = path[len(prefix):].partition("/")
                        return self.resolve(repo, rev, fname, head)
                self.reply(404, b"{}", {"X-Error-Code": "RepoNotFound"}, head)

            def api(self, rest: str, head: bool) -> None:
                sep = "/tree/" if "/tree/" in rest else "/revision/"
                name, _, rev = rest.partition(sep)
                repo = hub.repos.get(name)
                if repo is None or rev not in (repo.branch, repo.commit):
                    return self.reply(404, b"{}", {"X-Error-Code": "RepoNotFound"}, head)
                if sep == "/tree/":
                    doc: Any = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                for f, d in sorted(repo.files.items())]
                else:
                    doc = {"id": name, "sha": repo.commit,
                           "siblings": [{"rfilename": f, "size": len(d)} for f, d in sorted(repo.files.items())]}
                self.reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"}, head)

            def resolve(self, repo: Repo, rev: str, fname: str, head: bool) -> None:
                data = repo.files.get(fname)
                if data is None or rev not in (repo.branch, repo.commit):
                    return self.reply(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                rng = self.headers.get("Range")
                if rng and not head:
                    start = int(rng.split("=")[1].split("-")[0])
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    return self.reply(206, data[start:], headers, head)
                if not head and fname in hub.truncate_once:
                    hub.truncate_once.discard(fname)
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])  # then the connection drops
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if not head and fname in hub.pause_midway:
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    time.sleep(hub.pause_midway[fname])
                    self.wfile.write(data[len(data) // 2:])
                    return None
                self.reply(200, data, headers, head)

            def reply(self, code: int, body: bytes, headers: dict[str, str], head: bool) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def gets(self, fname: str) -> list[str | None]:
        """The Range header of each GET of a file (None: from the start)."""
        return [rng for method, path, _, rng in self.requests if method == "GET" and path.endswith("/" + fname)]
