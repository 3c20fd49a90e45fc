"""A local stand-in for the read side of the Hugging Face Hub HTTP API, with faults on demand.

Point huggingface_hub and datasets at it (`go_online`; the `hub_online` fixture in tests/conftest.py does) and the real
code paths run unchanged: `datasets.load_dataset_builder("owner/name")` (downloaded or streamed) and timm's
pretrained-weights download (`hf_hub_download`). It answers only what those libraries ask for:

- repo info:   GET /api/{models,datasets}/OWNER/NAME[/revision/REV]
- listings:    GET /api/.../tree/REV[/PATH]
- files:       HEAD and GET /[datasets/]OWNER/NAME/resolve/REV/PATH, with Range

Every file is served as a plain ("regular") file: no X-Xet-Hash header and no LFS redirect, so huggingface_hub
downloads it over plain HTTP from here (it takes the Xet path only when that header is present).

Faults, set on the running server:
- `cut[path] = n`: every GET of that file (a Range retry too) sends its headers, promising the whole body, then
  the file's bytes up to offset n, and closes the connection. Resuming from n gets nothing more, so the
  client's retries fail as well, the way a lost connection does.
- `gone = True`: every request is dropped without an answer, as when the network goes away mid-run;
  `go_away_at_cut = True` sets it at the first cut, so the client's retries of a cut file find nobody.
`requests` lists every (method, path, Range header) seen, so a test can tell what was read.

`sample_dataset` and `sample_weights` make what tests serve (the `hub_online` fixture in tests/conftest.py):
the dataset repo DATASET and the weights of timm's MODEL, which timm fetches from the model repo timm/MODEL.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.local_server import LocalServer, QuietHandler

KINDS = {"models": "model", "datasets": "dataset"}
CLASSES = ["cat", "dog", "emu"]
DATASET = "someone/pets"
TRAIN_FILE = "default/train-00000-of-00001.parquet"  # 20 kB: cut at 5 kB, mid-file
MODEL = "resnet10t.c3_in1k"
WEIGHTS = "model.safetensors"  # 21 MB: cut at 15 MB, after huggingface_hub wrote its first 10 MB chunk, so it resumes
WEIGHTS_CUT = 15_000_000


class Repo:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.sha = hashlib.sha1(b"".join(k.encode() + hashlib.sha1(v).digest() for k, v in sorted(files.items()))).hexdigest()

    def etag(self, path: str) -> str:
        return hashlib.sha1(self.files[path]).hexdigest()

    def entry(self, path: str) -> dict:
        if path in self.files:
            return dict(type="file", path=path, size=len(self.files[path]), oid=self.etag(path))
        return dict(type="directory", path=path, size=0, oid=hashlib.sha1(path.encode()).hexdigest())

    def folders(self) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in self.files for i in range(1, p.count("/") + 1)}

    def listing(self, folder: str, recursive: bool) -> list[dict] | None:
        if folder and folder not in self.folders():
            return None
        prefix = f"{folder}/" if folder else ""
        paths = sorted(p for p in self.files.keys() | self.folders() if p.startswith(prefix) and p != folder)
        if not recursive:
            paths = [p for p in paths if "/" not in p[len(prefix):]]
        return [self.entry(p) for p in paths]


class HubReadStandIn(LocalServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.cut: dict[str, int] = {}
        self.gone = self.go_away_at_cut = False
        self.requests: list[tuple[str, str, str | None]] = []

    def add(self, kind: str, repo_id: str, files: dict[str, bytes]) -> None:
        """Serve `files` ({path in the repo: bytes}) as the `kind` ('model' or 'dataset') repo `repo_id`."""
        self.repos[(kind, repo_id)] = Repo(files)

    def add_folder(self, kind: str, repo_id: str, folder: Path) -> None:
        self.add(kind, repo_id, {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()})

    def heal(self) -> None:
        """The connection is back: no more cuts, and requests are answered again."""
        self.cut.clear()
        self.gone = self.go_away_at_cut = False

    def file_gets(self, path: str) -> list[str | None]:
        """The Range header of each GET of a file with this path (None: the whole file)."""
        return [rng for method, url, rng in self.requests if method == "GET" and "/resolve/" in url and url.endswith("/" + path)]

class _Handler(QuietHandler):
    server: HubReadStandIn
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub: a cut then really drops a reused connection

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        if self.server.gone:
            self.close_connection = True  # no answer at all
            return
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/(.+))?", path):
            return self._info(KINDS[m[1]], m[2], m[3] or "main")
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)/?(.*)", path):
            return self._tree(KINDS[m[1]], m[2], m[3], m[4], query.get("recursive", ["false"])[0].lower() == "true")
        if m := re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._file("dataset" if m[1] else "model", m[2], m[3], m[4], body)
        self._json(404, {"error": f"not in the stand-in: {self.command} {self.path}"})

    def _repo(self, kind: str, repo_id: str, revision: str) -> Repo | None:
        """The repo at `revision` (its branch main or its one commit), or None once a 404 is sent."""
        repo = self.server.repos.get((kind, repo_id))
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision not in ("main", repo.sha):
            self._json(404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _info(self, kind: str, repo_id: str, revision: str) -> None:
        if repo := self._repo(kind, repo_id, revision):
            self._json(200, dict(id=repo_id, _id=repo.sha[:24], sha=repo.sha, private=False, gated=False, disabled=False,
                                 downloads=0, likes=0, tags=[], lastModified="2025-01-01T00:00:00.000Z",
                                 createdAt="2025-01-01T00:00:00.000Z", author=repo_id.split("/")[0],
                                 siblings=[dict(rfilename=p) for p in sorted(repo.files)]))

    def _tree(self, kind: str, repo_id: str, revision: str, folder: str, recursive: bool) -> None:
        if repo := self._repo(kind, repo_id, revision):
            entries = repo.listing(folder.strip("/"), recursive)
            if entries is None:
                return self._json(404, {"error": f"{folder} does not exist"}, {"X-Error-Code": "EntryNotFound"})
            self._json(200, entries)

    def _file(self, kind: str, repo_id: str, revision: str, path: str, body: bool) -> None:
        repo = self._repo(kind, repo_id, revision)
        if repo is None:
            return
        commit = {"X-Repo-Commit": repo.sha}
        if path not in repo.files:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", **commit})
        data = repo.files[path]
        start, end = 0, len(data)
        if m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
            start, end = int(m[1]), min(int(m[2]) + 1 if m[2] else len(data), len(data))
            if start >= len(data):
                return self._json(416, {"error": "Range Not Satisfiable"}, commit)
        self.send_response(206 if m else 200)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(end - start), "ETag": f'"{repo.etag(path)}"',
                   "Accept-Ranges": "bytes", **commit}
        if m:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not body:
            return
        cut = self.server.cut.get(path)
        if cut is None:
            self.wfile.write(data[start:end])
            return
        self.wfile.write(data[start:max(start, min(end, cut))])  # the promised body, up to the cut
        self.wfile.flush()
        self.close_connection = True  # ... and the connection drops
        self.server.gone = self.server.gone or self.server.go_away_at_cut

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def go_online(server: HubReadStandIn, monkeypatch, cache: Path) -> None:
    """Point the already-imported hub libraries at `server`, out of the offline mode the tests otherwise run in,
    with fresh caches under `cache`: what HF_ENDPOINT and HF_HOME would do at import. `monkeypatch` undoes it."""
    import datasets.config
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import HfFileSystem

    endpoint = server.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # engine.hub reads the environment (its probe, its offline check)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for module, values in (
        (hub_constants, dict(ENDPOINT=endpoint, HUGGINGFACE_CO_URL_TEMPLATE=endpoint + "/{repo_id}/resolve/{revision}/{filename}",
                             HF_HUB_OFFLINE=False, HF_HUB_CACHE=str(cache / "hub"))),
        (datasets.config, dict(HF_ENDPOINT=endpoint, HUB_DATASETS_URL=endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
                               HF_HUB_OFFLINE=False, HF_DATASETS_OFFLINE=False, HF_DATASETS_CACHE=cache / "datasets",
                               DOWNLOADED_DATASETS_PATH=cache / "datasets" / "downloads",
                               EXTRACTED_DATASETS_PATH=cache / "datasets" / "downloads" / "extracted")),
    ):
        for name, value in values.items():
            monkeypatch.setattr(module, name, value)
    HfFileSystem.clear_instance_cache()  # fsspec keeps one per endpoint, listings included: a later server may reuse the port


class _NoWaits:
    """The `time` module, with `sleep` cut to nothing."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


def quick_retries(monkeypatch) -> None:
    """huggingface_hub's waits between retries cut to nothing (1 s before each of its 5 resumes of a download;
    1, 2, 4, 8, 8 s between the tries of a streamed read), so a test of a lost connection takes a second, not
    half a minute. The retries themselves stay: how many there are, and what each asks for."""
    from huggingface_hub import file_download
    from huggingface_hub.utils import http_backoff

    monkeypatch.setitem(http_backoff.__kwdefaults__, "base_wait_time", 0)
    monkeypatch.setitem(http_backoff.__kwdefaults__, "max_wait_time", 0)
    monkeypatch.setattr(file_download, "time", _NoWaits())


def sample_dataset(root: Path) -> Path:
    """The repo of DATASET: a train split of 6 images of each of CLASSES, a validation split of 2 of each."""
    from datasets import ClassLabel, Features, Image

    from tests.engine.hub_standin import make_repo, make_split

    features = Features({"img": Image(), "label": ClassLabel(names=CLASSES)})
    return make_repo(root, dict(train=make_split([0] * 6 + [1] * 6 + [2] * 6, features, seed=1),
                                validation=make_split([0, 0, 1, 1, 2, 2], features, seed=2)))


def sample_weights() -> tuple[dict, dict[str, bytes]]:
    """Random weights for MODEL, saved as timm saves a Hub repo (model.safetensors, config.json):
    ({name: tensor}, {file: bytes})."""
    import tempfile

    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(MODEL)
    with tempfile.TemporaryDirectory() as folder:
        timm.models.save_for_hf(model, folder, safe_serialization=True)
        files = {name: (Path(folder) / name).read_bytes() for name in (WEIGHTS, "config.json")}
    return {k: v.clone() for k, v in model.state_dict().items()}, files
