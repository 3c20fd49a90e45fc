"""The connection to the Hub lost mid-download, through the app's API: a Hub dataset streamed by the Data tab, and
pretrained weights fetched by a training job. Each leaves one plain line and the app serving; once the connection
is back the same request works. The Hub is a local stand-in over real HTTP (tests/hub_read_standin.py)."""
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from demo.workspace import Workspaces
from engine import hub_data
from tests.demo.test_faults import assert_one_clear_line
from tests.hub_read_standin import DATASET, MODEL, TRAIN_FILE, WEIGHTS, WEIGHTS_CUT
from tests.live_app import GENERIC_ERROR, TINY_TRAIN, TrackingJobs, client, colour_zip, live_app

pytestmark = pytest.mark.slow
PRETRAINED = dict(TINY_TRAIN, model=MODEL, weights="pretrained")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One server for the module: (url, jobs, a tiny dataset .zip)."""
    folder = tmp_path_factory.mktemp("hub-faults")
    jobs = TrackingJobs(max_running=1)
    with live_app(jobs, Workspaces(folder / "home")) as url:
        yield url, jobs, colour_zip(folder / "colours.zip")


def load_pets(c):
    return c.predict(DATASET, 2, "", "", "", "", api_name="/load_hub")[0]


def test_a_hub_dataset_cut_mid_stream_says_so_and_the_app_keeps_serving(app, hub_online):
    c = client(app[0])
    hub_online.cut[TRAIN_FILE] = 5000
    with pytest.raises(AppError) as caught:
        load_pets(c)
    message = str(caught.value)
    assert message == hub_data.lost_message(DATASET)
    assert_one_clear_line(message)
    assert "Internal error" not in message and GENERIC_ERROR not in message
    assert "900 images in 6 classes" in c.predict("builtin:shapes", api_name="/load_data")[0]  # the next request is answered
    hub_online.heal()
    summary = load_pets(c)  # and the same dataset loads once the connection is back
    assert "12 images in 3 classes" in summary and DATASET in summary, summary


def test_pretrained_weights_cut_mid_download_fail_the_job_with_the_models_name(app, hub_online):
    url, jobs, archive = app
    c = client(url)
    assert "36 images in 3 classes" in c.predict(handle_file(archive), api_name="/load_zip")[0]
    hub_online.cut[WEIGHTS] = WEIGHTS_CUT
    status, *_, log, _, _ = c.submit(**PRETRAINED, api_name="/train").result(timeout=300)
    assert status.startswith(f"Training failed: The download of the pretrained weights for {MODEL} was interrupted"), status
    assert "try again" in status
    assert_one_clear_line(status)
    assert "Internal error" not in status and "Traceback" not in log
    assert jobs.submitted[-1].status == "failed"
    hub_online.heal()
    status, *_, log, _, _ = c.submit(**PRETRAINED, api_name="/train").result(timeout=300)
    assert status.startswith("Finished"), status
    assert f"{MODEL}: Loaded" in log and "from the Hugging Face Hub" in log, log  # the served weights, not a random start
