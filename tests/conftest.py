"""Test set-up: offline, quiet, isolated folders; tiny datasets made by the tests themselves."""
import os
import tempfile

# Before anything imports gradio or the hub libraries (they read these once, at import).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_TMP = tempfile.mkdtemp(prefix="snapfit-tests-")
os.environ.setdefault("SNAPFIT_HOME", os.path.join(_TMP, "home"))
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(_TMP, "gradio"))

import pytest  # noqa: E402
import torch  # noqa: E402

import engine  # noqa: E402,F401  (installs the torchvision guard before any test imports timm)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shapes():
    """The built-in dataset, generated once per test session."""
    from engine import data

    return data.load_builtin()


@pytest.fixture(scope="session")
def small_shapes():
    """A quick 3-class subset of the built-in shapes (circle, square, triangle), 40 images each."""
    from engine import data, sample

    images, labels = sample.generate(n_per_class=40, seed=1)
    keep = [i for i, y in enumerate(labels) if y < 3]
    return data.LabelledImages(list(sample.CLASSES[:3]), [images[i] for i in keep], [labels[i] for i in keep], "test")


@pytest.fixture(scope="session")
def builtin_model(shapes, tmp_path_factory):
    """The scratch recipe (TrainConfig's defaults) trained once on the built-in dataset: (model folder, events)."""
    from engine.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("builtin") / "model"
    return out, list(fit(shapes, TrainConfig(), str(out)))


@pytest.fixture(scope="session")
def hub_weights():
    """What the Hub stand-in serves as MODEL's pretrained weights: ({name: tensor}, {file: bytes})."""
    from tests.hub_read_standin import sample_weights

    return sample_weights()


@pytest.fixture
def hub_online(hub_weights, monkeypatch, tmp_path_factory):
    """Online, against a local stand-in for the Hub over HTTP (tests/hub_read_standin.py) serving the sample dataset
    and MODEL's weights: the hub libraries pointed at it, with fresh caches and no waits between their retries."""
    from tests.hub_read_standin import DATASET, MODEL, HubReadStandIn, go_online, quick_retries, sample_dataset

    root = tmp_path_factory.mktemp("hub")
    with HubReadStandIn() as server:
        server.add_folder("dataset", DATASET, sample_dataset(root / "pets"))
        server.add("model", f"timm/{MODEL}", hub_weights[1])
        go_online(server, monkeypatch, root / "cache")
        quick_retries(monkeypatch)
        yield server
