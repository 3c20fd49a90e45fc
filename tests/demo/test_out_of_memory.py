"""Running out of memory for real, not injected: the app runs in its own process whose address space is capped
a few GB above what it uses once serving (RLIMIT_AS), so a huge batch makes torch's allocator fail exactly as
it does when a machine's memory is full. The job must end with the plain out-of-memory advice, and the same
server must go on to train and classify."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from gradio_client import handle_file

from demo.jobs import OUT_OF_MEMORY
from tests.live_app import TINY_TRAIN, client, colour_png, colour_zip, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HEADROOM_GB = 3  # a tiny training fits in it many times over; a batch of 256 images at 384 px does not (~20 GB)

SERVER = textwrap.dedent("""
    import resource, sys
    from engine.hub import detect_offline
    detect_offline()
    from demo import build_demo, launch_kwargs

    demo = build_demo(offline=True)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True,
                **launch_kwargs())
    status = open("/proc/self/status").read()
    used = int(next(line for line in status.splitlines() if line.startswith("VmSize:")).split()[1]) * 1024
    cap = used + int(sys.argv[2]) * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    print("capped", flush=True)
    demo.block_thread()
""")


@pytest.fixture
def capped_server():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(HEADROOM_GB)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().strip() == "capped", "the server did not start"
        yield f"http://127.0.0.1:{port}/", server
    finally:
        server.terminate()
        server.wait(30)


def test_a_batch_too_big_for_memory_is_reported_and_the_app_keeps_serving(capped_server, tmp_path):
    url, server = capped_server
    c = client(url)
    summary = c.predict(handle_file(colour_zip(tmp_path / "colours.zip", per_class=80)), api_name="/load_zip")[0]
    assert "240 images in 3 classes" in summary, summary

    huge = dict(TINY_TRAIN, batch_size=256, img_size=384)
    status = c.submit(**huge, api_name="/train").result(timeout=300)[0]
    assert status == f"Training failed: {OUT_OF_MEMORY}", status

    time.sleep(0.5)
    assert server.poll() is None  # the process survived its failed allocation
    assert c.submit(**TINY_TRAIN, api_name="/train").result(timeout=300)[0].startswith("Finished")
    label = c.predict(handle_file(colour_png(tmp_path / "red.png")), api_name="/predict")[0]
    assert label["label"] in ("red", "green", "blue")
