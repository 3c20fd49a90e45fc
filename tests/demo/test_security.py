"""Nobody reaches what is not theirs: Gradio's file route serves no file outside what it cached itself (not
/etc/passwd, not the app's source, not another session's folder), an API call cannot pass a server path as an
"upload", uploads over the size limit are refused, and the code never unpickles or runs remote code."""
import http.client
import json
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import timm
from gradio.utils import get_upload_folder
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from demo.workspace import Workspaces
from engine.export import save_model_folder
from tests.live_app import client, live_app

ROOT = Path(__file__).resolve().parents[2]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` byte for byte (http.client neither normalises '..' nor re-encodes '%2F', unlike httpx)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw_post(url: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "snapfitboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def app_with_a_model(tmp_path_factory):
    """A server where session A has loaded a model into its own folder: (url, A's model folder)."""
    folder = tmp_path_factory.mktemp("security")
    model = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    saved = save_model_folder(model, folder / "model", ["cat", "dog"], dict(input_size=(3, 32, 32), mean=(0.5,) * 3,
                                                                             std=(0.5,) * 3), {})
    archive = folder / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in saved.iterdir():
            z.write(f, f.name)
    workspaces = Workspaces(folder / "home")
    with live_app(workspaces=workspaces) as url:
        assert "Loaded: 2 classes" in client(url).predict([handle_file(archive)], api_name="/load_model")
        (owned,) = [p for p in (folder / "home").glob("*/uploaded-model-*") if p.is_dir()]
        yield url, owned


def test_the_probe_can_read_what_gradio_may_serve(app_with_a_model):
    """Positive control: a file uploaded through Gradio is served back, so the refusals below mean something."""
    url, _ = app_with_a_model
    status, body = raw_post(url, "/gradio_api/upload", *multipart("hello.txt", b"hello snapfit"))
    assert status == 200, body
    (served,) = json.loads(body)
    assert raw_get(url, f"/gradio_api/file={served}") == (200, b"hello snapfit")


def probes(model_dir: Path) -> list[str]:
    upload = get_upload_folder()
    ups = "/.." * 12
    weights = model_dir / "model.safetensors"
    return [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        f"/gradio_api/file={upload}{ups}/etc/passwd",
        f"/gradio_api/file={upload}{ups.replace('..', '%2e%2e')}/etc/passwd",
        f"/gradio_api/file={upload}{ups.replace('/', '%2F')}%2Fetc%2Fpasswd",
        "/gradio_api/file=..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/gradio_api/file=file:///etc/passwd",
        "/gradio_api/file=/proc/self/environ",
        "/file=/etc/passwd",
        "/gradio_api/file=app.py",
        f"/gradio_api/file={ROOT / 'app.py'}",
        f"/gradio_api/file={weights}",  # another session's model
        f"/gradio_api/file={model_dir / 'config.json'}",
        f"/gradio_api/file={upload}{ups}{weights}",
    ]


def test_the_file_route_serves_nothing_outside_gradios_own_cache(app_with_a_model):
    url, model_dir = app_with_a_model
    secrets = (b"root:", b"import argparse", b"__metadata__", b"label_names", b"PATH=")
    for path in probes(model_dir):
        status, body = raw_get(url, path)
        assert status in (400, 403, 404) and not any(s in body for s in secrets), (path, status, body[:200])


def test_an_api_call_cannot_pass_a_server_path_as_an_upload(app_with_a_model):
    """A crafted call naming another session's files as "uploaded" is refused before any handler runs."""
    url, model_dir = app_with_a_model
    files = [{"path": str(model_dir / name), "meta": {"_type": "gradio.FileData"}} for name in ("model.safetensors", "config.json")]
    status, body = raw_post(url, "/gradio_api/call/load_model", json.dumps({"data": [files]}).encode(), "application/json")
    assert status == 200, body
    event_id = json.loads(body)["event_id"]
    status, stream = raw_get(url, f"/gradio_api/call/load_model/{event_id}")
    assert b"event: error" in stream and b"Loaded:" not in stream, stream[:500]


def test_uploads_over_the_size_limit_are_refused_and_the_app_keeps_serving(monkeypatch):
    monkeypatch.setenv("SNAPFIT_MAX_UPLOAD", "1kb")
    with live_app() as url:
        status, body = raw_post(url, "/gradio_api/upload", *multipart("big.zip", b"x" * 4096))
        assert status == 413 and b"maximum allowed size" in body, (status, body)
        assert raw_post(url, "/gradio_api/upload", *multipart("small.zip", b"x" * 512))[0] == 200
        assert "900 images" in client(url).predict("builtin:shapes", api_name="/load_data")[0]


def test_the_default_limits(monkeypatch):
    from demo import launch_kwargs

    monkeypatch.delenv("SNAPFIT_MAX_UPLOAD", raising=False)
    kwargs = launch_kwargs()
    assert kwargs["max_file_size"] == "500mb" and "allowed_paths" not in kwargs


def test_a_pickle_is_never_loaded_as_a_model(app_with_a_model, tmp_path):
    url, _ = app_with_a_model
    pickled = tmp_path / "model.safetensors"  # a pickle under the right name
    pickled.write_bytes(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n.")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architecture": "resnet10t", "num_classes": 2, "label_names": ["a", "b"]}))
    with pytest.raises(AppError, match="Could not load that model folder"):
        client(url).predict([handle_file(pickled), handle_file(config)], api_name="/load_model")


FORBIDDEN = [
    (r"trust_remote_code\s*=\s*True", "remote code"),
    # within the call's parentheses, one level of nested calls allowed: torch.load(source_file(arch), weights_only=True)
    (r"torch\.load\((?!(?:[^()]|\([^()]*\))*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
    (r"weights_only\s*=\s*False", "weights_only=False"),
    (r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load\(", "unpickling"),
    (r"allowed_paths\s*=", "allowed_paths (serves folders to everyone)"),
]


def test_the_code_never_unpickles_runs_remote_code_or_widens_what_is_served():
    sources = [ROOT / "app.py", *sorted((ROOT / "engine").rglob("*.py")), *sorted((ROOT / "demo").rglob("*.py"))]
    found = [f"{path.relative_to(ROOT)}: {why}" for path in sources for pattern, why in FORBIDDEN
             if re.search(pattern, path.read_text(encoding="utf-8"))]
    assert not found, found
