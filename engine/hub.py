"""Knowing, once and fast, whether the Hugging Face Hub can be reached.

Offline, huggingface_hub retries a download for 23-46 s before failing. Its offline flag (`HF_HUB_OFFLINE`)
is read once, when the library is first imported (and `datasets` copies it at its own import), so the
probe must run before anything imports timm, datasets or huggingface_hub. `app.py` and the CLI call
`detect_offline()` first thing. If the hub libraries were already imported (tests, notebooks), we also
patch their constants so the flag still takes effect.
"""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def is_offline() -> bool:
    """True when the hub libraries are (or will be) in offline mode."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def probe(timeout: float = 1.5) -> bool:
    """Can a TCP connection to the Hub endpoint be opened? (DNS failure answers in milliseconds.)"""
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def set_offline() -> None:
    """Put huggingface_hub and datasets in offline mode, whether or not they are imported yet."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
        datasets.config.HF_DATASETS_OFFLINE = True


def connection_failure(exc: BaseException) -> str | None:
    """How a Hub request failed on the network: "unreachable" (no connection could be opened, or offline mode),
    "lost" (a connection broke mid-request: dropped, cut short, timed out), or None (not a network failure).

    Looks down the chain of causes: datasets and huggingface_hub wrap these in their own errors (a plain
    ConnectionError "Server Disconnected", a LocalEntryNotFoundError "please check your connection")."""
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import httpx as hub_httpx  # huggingface_hub's own httpx (httpx2), not gradio's

    seen, kind = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (hub_httpx.ConnectError, hub_httpx.ConnectTimeout, OfflineModeIsEnabled)):
            return "unreachable"
        if isinstance(exc, hub_httpx.TransportError):
            return "lost"
        if isinstance(exc, ConnectionError):
            kind = "unreachable"  # the wrapper's own words; its cause, if any, tells more
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return kind


def detect_offline(timeout: float = 1.5) -> bool:
    """Probe the Hub once unless the environment already decided; go offline if unreachable.

    Returns True when offline. Also turns off Gradio's and huggingface_hub's telemetry when offline,
    since both would otherwise try huggingface.co in background threads.
    """
    offline = is_offline() or not probe(timeout)
    if offline:
        set_offline()
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return offline


OFFLINE_MESSAGE = (
    "Offline: the Hugging Face Hub cannot be reached from this machine. Transfer learning still works: ImageNet-pretrained "
    "EfficientNet-Lite weights are built in, and training starts from them. Only Hub datasets, other models' pretrained "
    "weights and pushing to the Hub need the Hub; the built-in shapes, your own folders and zips, training, the LR "
    "finder, classifying and exporting all work here."
)
