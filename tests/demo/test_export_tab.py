"""The Export tab through the app's API (ONNX, Hub push to a local stand-in), and the app on a Space."""
import os

import huggingface_hub.constants
import onnx
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from demo.space import Limits, Place, detect
from engine.errors import UserError
from engine.export import zip_model_folder
from engine.train import TrainConfig
from tests.demo.test_app import TRAIN_ARGS
from tests.hub_push_standin import HubStandIn
from tests.live_app import client, live_app

TOKEN = "hf_ExportTabSecret0987654321"


@pytest.fixture(scope="module")
def app_url():
    with live_app() as url:
        yield url


@pytest.fixture(scope="module")
def with_model(app_url, builtin_model, tmp_path_factory):
    """A client session holding a trained model (uploaded as the zip the Train tab offers)."""
    archive = zip_model_folder(builtin_model[0], tmp_path_factory.mktemp("zip") / "model")
    c = client(app_url)
    assert "Loaded: 6 classes" in c.predict([handle_file(str(archive))], api_name="/load_model")
    return c


def test_onnx_export_gives_a_loadable_file(with_model):
    path = with_model.predict(api_name="/export_onnx")["value"]
    model = onnx.load(path)
    assert {p.key for p in model.metadata_props} >= {"label_names", "mean", "std"}


def test_push_from_the_page_reaches_the_hub_and_keeps_no_token(with_model, monkeypatch, tmp_path):
    with HubStandIn(token=TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        message = with_model.predict("bob/shapes", TOKEN, True, api_name="/push_to_hub")
        assert "Pushed to" in message and "bob/shapes" in message and "private" in message and TOKEN not in message
        assert {"model.safetensors", "config.json", "README.md", "confusion_matrix.png"} <= set(hub.repos["bob/shapes"])
        with pytest.raises(AppError, match="refused the token") as refused:
            with_model.predict("bob/shapes", "hf_wrong", True, api_name="/push_to_hub")
        assert "hf_wrong" not in str(refused.value)
    for root in (os.environ["SNAPFIT_HOME"], os.environ["GRADIO_TEMP_DIR"]):  # nothing the server wrote holds the token
        for dirpath, _, files in os.walk(root):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    assert TOKEN.encode() not in f.read(), os.path.join(dirpath, name)


def test_push_offline_says_so_at_once(with_model):
    with pytest.raises(AppError, match="Offline: the Hugging Face Hub"):
        with_model.predict("bob/shapes", TOKEN, True, api_name="/push_to_hub")


def test_export_without_a_model_says_what_to_do(app_url):
    for api_name, args in [("/export_onnx", ()), ("/push_to_hub", ("bob/x", TOKEN, True))]:
        with pytest.raises(AppError, match="No model to export yet"):
            client(app_url).predict(*args, api_name=api_name)


def test_space_detection():
    assert not detect({}).on_space
    assert detect({"SYSTEM": "spaces", "SPACE_ID": "alice/snapfit"}) == Place("alice/snapfit", False)
    assert detect({"SPACE_ID": "alice/snapfit", "SPACES_ZERO_GPU": "true"}).zero_gpu
    assert detect({"SPACE_ID": "a/b"}).limits.max_epochs < Limits().max_epochs


def test_on_a_space_the_page_says_storage_is_wiped_and_runs_are_capped():
    place = Place("alice/snapfit")
    with live_app(place=place) as url:
        c = client(url)
        props = [comp["props"] for comp in c.config["components"]]
        notes = [p.get("value") for p in props if p.get("elem_id") == "space-note"]
        assert len(notes) == 2 and all("wiped" in n and "alice/snapfit" in n for n in notes)  # Train and Export tabs
        sliders = {p.get("label"): p for p in props if "maximum" in p}
        assert sliders["Epochs"]["maximum"] == place.limits.max_epochs
        with pytest.raises(AppError, match=r"at most 10 for epochs|maximum"):
            c.submit(**dict(TRAIN_ARGS, epochs=11), api_name="/train").result(timeout=120)
        assert "900 images" in c.predict("builtin:shapes", api_name="/load_data")[0]  # under the cap: loads
    with pytest.raises(UserError, match=r"at most 500 images per dataset \(this one has 900\)"):
        Limits(max_images=500).check_dataset(900, place.name)
    with pytest.raises(UserError, match="allows at most 224 for image size"):
        place.limits.check(TrainConfig(img_size=256, epochs=5), place.name)
    # a head on cached features may take the quick recipe's 30 epochs; epochs through the whole network stay few
    assert place.limits.check(TrainConfig(strategy="head", epochs=30, img_size=224), place.name).epochs == 30
    with pytest.raises(UserError, match="allows at most 10 for epochs through the whole network"):
        place.limits.check(TrainConfig(strategy="full", epochs=11), place.name)
