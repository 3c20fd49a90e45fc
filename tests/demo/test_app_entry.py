"""`python app.py` as a user runs it."""
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.live_app import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_share_without_a_tunnel_says_so_in_one_line_and_serves_locally():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--share", "--port", str(port)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        lines, deadline = [], time.monotonic() + 120
        while not any(line.startswith("No public link") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        message = next(line for line in lines if line.startswith("No public link"))
        assert "api.gradio.app cannot be reached" in message and f"127.0.0.1:{port}" in message
        assert not any("frpc" in line for line in lines)  # Gradio's multi-line tunnel error was not triggered
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200 and b"Snapfit" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
