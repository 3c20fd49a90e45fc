"""A local stand-in for the part of the Hugging Face Hub HTTP API that a model push uses.

Point huggingface_hub at it with `HF_ENDPOINT=http://127.0.0.1:PORT`. It answers repo creation, YAML
validation, pre-upload (every file "regular", so no LFS or Xet transfer is involved) and the NDJSON
commit, and keeps what arrives: `server.repos[repo_id]` maps file paths to bytes, `server.requests` lists
every (method, path, lower-cased headers) seen so tests can check what was sent, and never was.
"""
from __future__ import annotations

import base64
import json
import re

from tests.local_server import LocalServer, QuietHandler


class HubStandIn(LocalServer):
    def __init__(self, token: str | None = None) -> None:
        super().__init__(_Handler)
        self.token = token  # when set, requests must carry it (as the Hub, 401 otherwise)
        self.repos: dict[str, dict[str, bytes]] = {}
        self.private: dict[str, bool] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list[bytes] = []

class _Handler(QuietHandler):
    server: HubStandIn

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append(body)
        return body

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        self._reply(404, {"error": f"not in the stand-in: GET {self.path}"})

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = self._body()
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._reply(401, {"error": "Invalid credentials in Authorization header"})
        if self.path == "/api/repos/create":
            spec = json.loads(body)
            repo = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
            self.server.repos.setdefault(repo, {})
            self.server.private[repo] = spec.get("visibility") == "private" or bool(spec.get("private"))
            return self._reply(200, {"url": f"{self.server.endpoint}/{repo}", "name": repo})
        if self.path == "/api/validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", self.path):
            files = json.loads(body)["files"]
            return self._reply(200, {"files": [dict(path=f["path"], uploadMode="regular", shouldIgnore=False) for f in files]})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", self.path):
            repo = m.group(1)
            if repo not in self.server.repos:
                return self._reply(404, {"error": f"Repository {repo} not found"})
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.server.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return self._reply(200, {"commitUrl": f"{self.server.endpoint}/{repo}/commit/{'0' * 40}", "commitOid": "0" * 40})
        self._reply(404, {"error": f"not in the stand-in: POST {self.path}"})
