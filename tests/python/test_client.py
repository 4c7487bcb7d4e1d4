"""The Python client against the real server: the journey, pagination, errors, auth, retries."""
import math
import threading
import time

import numpy as np
import pytest
import requests

from conftest import ADMIN_KEY, CLIENT_KEY
from metaserve import Client, JobFailed, ProblemError


def truth(x):
    return 2 * np.sin(x - 0.5)


def test_journey_adapts_toward_the_task(server, sine_model):
    ms = Client(server.url)
    xs = np.linspace(-4.5, 4.5, 10)
    a = ms.adapt(sine_model, xs, truth(xs), steps=10)
    assert a["support_loss_after"] < a["support_loss_before"]
    q = np.array([0.0, 1.5, 3.0])
    adapted = ms.predict_adapted(a["id"], q)
    meta = ms.predict(sine_model, q)
    assert isinstance(adapted, np.ndarray) and adapted.shape == (3, 1)
    err = lambda y: float(np.sum((y[:, 0] - truth(q)) ** 2))
    assert err(adapted) < err(meta), (adapted, meta)
    # adapt-and-predict in one call is the same computation as the stored adaptation
    inline = ms.predict(sine_model, q, support_x=xs, support_y=truth(xs), steps=10)
    np.testing.assert_array_equal(inline, adapted)
    # the adaptation is readable, then gone after delete
    assert ms.get_adaptation(a["id"])["model"] == sine_model
    ms.delete_adaptation(a["id"])
    with pytest.raises(ProblemError) as e:
        ms.get_adaptation(a["id"])
    assert e.value.status == 404 and e.value.slug == "not-found"


def test_models_versions_aliases_and_weights(server, sine_model):
    ms = Client(server.url)
    names = [m["name"] for m in ms.iter_models()]
    assert sine_model in names
    v = ms.get_version(sine_model, 1)
    assert v["version"] == 1
    # the version's metrics are its job's final metrics, the validation figure named by what it is
    job = ms.get_job(v["job_id"])
    assert v["metrics"] == job["metrics"]
    assert isinstance(v["metrics"]["val_mse"], float) and v["metrics"]["tasks_per_s"] is not None
    assert "val_loss" not in v["metrics"] and "val_metric" not in v["metrics"]
    ms.set_alias(sine_model, "prod", 1)
    w1, wp = ms.weights(f"{sine_model}@1"), ms.weights(f"{sine_model}@prod")
    assert w1 == wp
    ms.delete_alias(sine_model, "prod")
    with pytest.raises(ProblemError) as e:
        ms.weights(f"{sine_model}@prod")
    assert e.value.status == 404


def test_list_iterators_follow_every_page(server):
    ms = Client(server.url)
    made = set()
    for i in range(5):
        d = ms.create_classes_dataset(f"pages-{i}", [[float(i), 1.0]] * 4 + [[2.0, float(i)]] * 4,
                                      [0] * 4 + [1] * 4)
        made.add(d["id"])
    first = ms._request("GET", "/v1/datasets", params={"page_size": 2})
    assert len(first["datasets"]) == 2 and first["next_page_token"]
    seen = [d["id"] for d in ms.iter_datasets(page_size=2)]
    assert len(seen) == len(set(seen)), "a page repeated an item"
    assert made <= set(seen)
    for i in made:
        ms.delete_dataset(i)


def test_problems_become_exceptions_with_the_document(server, sine_model):
    ms = Client(server.url)
    with pytest.raises(ProblemError) as e:
        ms.predict(sine_model, [[0.0]], support_x=[[1.0, 2.0]], support_y=[[0.0]])
    p = e.value
    assert p.status == 422 and p.slug == "validation"
    assert p.detail == "support.x[0]: must be an array of 1 numbers"
    assert len(p.request_id) > 0 and p.request_id == ms.last_request_id
    with pytest.raises(ProblemError) as e:
        ms.get_model("no-such-model")
    assert e.value.status == 404 and "no-such-model" in e.value.detail
    with pytest.raises(ProblemError) as e:
        ms.create_job({"name": "bad", "iterations": 0})
    assert e.value.status == 422 and e.value.problem["status"] == 422


def test_a_failed_job_raises_job_failed(server):
    ms = Client(server.url)
    # a dataset whose classes cannot fill 5-way tasks is refused at submit (422), so make the job
    # fail instead by cancelling it while queued or running
    job = ms.create_job({
        "name": "to-cancel", "architecture": {"sizes": [1, 8, 1], "head": "regression"},
        "iterations": 1000000, "tasks": {"family": "sinusoid", "k_support": 5, "k_query": 5}})
    job.cancel()
    with pytest.raises(JobFailed) as e:
        job.wait(timeout_s=30, poll_s=0.1)
    assert e.value.job["state"] == "cancelled"


def test_auth_key_from_argument_or_environment(make_server, monkeypatch):
    s = make_server(METASERVE_API_KEYS=f"admin:{ADMIN_KEY},client:{CLIENT_KEY}")
    with pytest.raises(ProblemError) as e:
        Client(s.url, api_key="").iter_models().__next__()
    assert e.value.status == 401 and e.value.slug == "unauthorized"
    assert list(Client(s.url, api_key=CLIENT_KEY).iter_models()) == []
    cfg = {"name": "auth", "architecture": {"sizes": [1, 8, 1], "head": "regression"},
           "iterations": 5, "tasks": {"family": "sinusoid", "k_support": 5, "k_query": 5}}
    with pytest.raises(ProblemError) as e:
        Client(s.url, api_key=CLIENT_KEY).create_job(cfg)
    assert e.value.status == 403 and e.value.slug == "forbidden"
    monkeypatch.setenv("METASERVE_API_KEY", ADMIN_KEY)
    assert Client(s.url).create_job(cfg).state == "queued"


class RecordingSession(requests.Session):
    """A real session that records when each request was sent, and its status."""

    def __init__(self):
        super().__init__()
        self.log = []

    def request(self, method, url, **kw):
        t = time.monotonic()
        r = super().request(method, url, **kw)
        self.log.append((t, method, r.status_code, r.headers.get("Retry-After")))
        return r


def test_429_is_retried_after_retry_after_until_the_queue_has_room(make_server):
    # no workers: jobs stay queued, so the second submission finds the queue full (limit 1)
    s = make_server(METASERVE_WORKERS=0, METASERVE_MAX_QUEUED_JOBS=1)
    cfg = {"name": "q", "architecture": {"sizes": [1, 8, 1], "head": "regression"},
           "iterations": 5, "tasks": {"family": "sinusoid", "k_support": 5, "k_query": 5}}
    first = Client(s.url).create_job(cfg)
    with pytest.raises(ProblemError) as e:
        Client(s.url, retries=0).create_job(cfg)
    assert e.value.status == 429 and e.value.slug == "queue-full"

    # cancelling the first job after 1 s makes room; the retrying call then succeeds
    sess = RecordingSession()
    ms = Client(s.url, retries=20, max_retry_wait_s=0.25, session=sess)
    threading.Timer(1.0, first.cancel).start()
    second = ms.create_job(cfg)
    assert second.state == "queued"
    statuses = [st for _, m, st, _ in sess.log]
    assert statuses[-1] == 202 and set(statuses[:-1]) == {429} and len(statuses) >= 3, statuses
    # each retry waited the server's Retry-After, capped at max_retry_wait_s (a lower bound only)
    assert all(int(ra) > 0 for _, _, st, ra in sess.log if st == 429)
    gaps = [b[0] - a[0] for a, b in zip(sess.log, sess.log[1:])]
    assert min(gaps) >= 0.25, gaps
    jobs = list(Client(s.url).iter_jobs())
    assert sorted(j["state"] for j in jobs) == ["cancelled", "queued"]
