"""The README's "Calling the app from code" examples, run exactly as written against a live app.

Each example is the fenced block after an `<!-- api-example: LANG -->` comment in README.md; only its URL is
replaced by the live server's, and it runs in a folder holding the files it names (colours.zip, photo.png).
"""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import httpx
import pytest

from tests.live_app import colour_png, colour_zip, live_app

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:7860"


def example(lang: str) -> str:
    found = re.findall(rf"<!-- api-example: {lang} -->\n```{lang}\n(.*?)```", README.read_text(), re.S)
    assert len(found) == 1, f"README.md should have one {lang} API example"
    return found[0]


@pytest.fixture(scope="module")
def app_url():
    with live_app() as url:
        yield url.rstrip("/")


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The folder the examples run in: a .zip of red, green and blue squares and a red photo."""
    colour_zip(tmp_path / "colours.zip")
    colour_png(tmp_path / "photo.png", "red")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_loaded_trained_and_predicted(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert "900 images in 6 classes" in text and "36 images in 3 classes" in text
    assert "Finished" in text, text[-2000:]
    # the model of this session, trained on the .zip (not the built-in shapes), classifies the red photo
    assert "red" in lines[-1] and "circle" not in lines[-1], lines[-1]


def test_the_python_example(app_url, files):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    code = example("python").replace(README_URL, app_url)
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().strip().splitlines()
    assert_loaded_trained_and_predicted(lines)
    assert lines[-1].startswith("red [")
    # another Client is another session: no model there
    with pytest.raises(AppError, match="no trained model"):
        Client(app_url, verbose=False, analytics_enabled=False).predict(handle_file(files / "photo.png"), api_name="/predict")


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the HTTP example needs curl and jq")
def test_the_http_example(app_url, files):
    script = example("bash").replace(README_URL, app_url)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=files, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert_loaded_trained_and_predicted(lines)
    assert json.loads(lines[-1])["label"] == "red"
    # the session lives in the session_hash: the same calls under another one find no model
    assert "no trained model" in predict_over_http(app_url, "another-session", files / "photo.png")


def predict_over_http(url: str, session: str, photo: Path) -> str:
    """/predict by the two-step protocol, as the README's `call` does: POST the call, GET its event stream."""
    path = httpx.post(f"{url}/gradio_api/upload", files={"files": photo.open("rb")}).json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, False, True]
    event = httpx.post(f"{url}/gradio_api/call/predict", json={"data": data, "session_hash": session}).json()["event_id"]
    return httpx.get(f"{url}/gradio_api/call/predict/{event}", timeout=60).text
