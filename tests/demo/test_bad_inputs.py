"""Every endpoint, fed wrong types, empty, huge and negative values, absurd settings, unknown names and
malformed files, answers each with a clear message (never Gradio's bare error or a traceback) and goes on
serving. The list of endpoints comes from the app's own API description, so a new endpoint without bad-input
cases fails here. One training slot is kept busy, so an input that turns out to be valid only queues."""
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.workspace import Workspaces
from tests.bad_inputs import JUNK, NO_PARAMS, STREAMS, Files, baseline, call, catalog, unclear
from tests.demo.test_security import raw_get, raw_post
from tests.live_app import TrackingJobs, client, live_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """(client, endpoints from view_api, catalog, baseline, jobs) on a server whose one training slot is busy."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    jobs, release = TrackingJobs(max_running=1), threading.Event()

    def occupy(token):  # holds the slot until the module ends
        while not token.stopped and not release.wait(0.05):
            pass
        yield "released"

    with live_app(jobs, Workspaces(folder / "home")) as url:
        blocker = jobs.submit("blocker", "train", occupy)
        c = client(url)
        endpoints = c.view_api(print_info=False, return_format="dict")["named_endpoints"]
        files = Files(folder / "files")
        yield dict(client=c, url=url, endpoints=endpoints, catalog=catalog(files), baseline=baseline(files), jobs=jobs,
                   blocker=blocker)
        release.set()


def test_every_endpoint_has_bad_input_cases(suite):
    endpoints, cases = suite["endpoints"], suite["catalog"]
    assert set(endpoints) == set(cases), "endpoints without bad-input cases (or cases for endpoints that are gone)"
    for name, ep in endpoints.items():
        assert {p["parameter_name"] for p in ep["parameters"]} == set(cases[name]), name


def run_cases(suite, names):
    c, tried, problems = suite["client"], 0, []
    for name in names:
        params = suite["catalog"][name]
        if not params:
            kind, text = call(c, name, {})
            tried += 1
            problems += [f"{name}(): {why}: {text[:300]}"] if (why := unclear(kind, text)) else []
        for param, values in params.items():
            for value in values:
                kwargs = dict(suite["baseline"].get(name, {}), **{param: value})
                kind, text = call(c, name, kwargs)
                tried += 1
                if why := unclear(kind, text):
                    problems.append(f"{name}({param}={str(value)[:60]!r}): {why}: {text[:300]}")
    return tried, problems


@pytest.mark.parametrize("names", [
    ["/load_data", "/load_zip", "/preview_augmentation", "/cell_images", "/use_lr", "/use_run", *NO_PARAMS],
    ["/predict", "/predict_sketch", "/load_model", "/push_to_hub"],
    list(STREAMS),
], ids=["data-and-small", "files-and-hub", "training"])
def test_each_bad_input_gets_a_clear_answer(suite, names):
    tried, problems = run_cases(suite, names)
    assert not problems, f"{len(problems)} of {tried} unclear:\n" + "\n".join(problems)
    assert "900 images" in suite["client"].predict("builtin:shapes", api_name="/load_data")[0]  # still serving


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_values_for_any_setting_get_clear_answers(suite, data):
    names = sorted(n for n, params in suite["catalog"].items() if params and n not in ("/load_zip", "/predict", "/predict_sketch",
                                                                                       "/load_model"))
    name = data.draw(st.sampled_from(names), label="endpoint")
    param = data.draw(st.sampled_from(sorted(suite["catalog"][name])), label="parameter")
    value = data.draw(JUNK, label="value")
    kind, text = call(suite["client"], name, dict(suite["baseline"].get(name, {}), **{param: value}))
    assert unclear(kind, text) is None, text


def test_nan_and_infinity_sent_raw_are_refused_clearly(suite):
    """JSON clients cannot send NaN, but a hand-written request can: the server's parser accepts it."""
    url, params = suite["url"], suite["endpoints"]["/train"]["parameters"]
    defaults = [p["parameter_default"] for p in params]
    at = [p["parameter_name"] for p in params].index("lr")
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = json.dumps({"data": defaults[:at] + ["HERE"] + defaults[at + 1:]}).replace('"HERE"', bad).encode()
        status, answer = raw_post(url, "/gradio_api/call/train", body, "application/json")
        assert status == 200, answer
        _, stream = raw_get(url, f"/gradio_api/call/train/{json.loads(answer)['event_id']}")
        assert b"event: error" in stream and b"Learning rate must be a number from" in stream, stream[:400]


def test_bad_inputs_started_no_training(suite):
    jobs = suite["jobs"]
    started = [j for j in jobs.submitted if j is not suite["blocker"]]
    assert all(j.started is None for j in started), [j for j in started if j.started]  # at most queued, then stopped
    assert suite["blocker"].status == "running"
