"""The metaserve v1 client: one method per route, problem documents as exceptions, retries.

Retries: a 429 (job queue full) or 503 (draining, database busy or unavailable, out of memory) is
retried for every method, after the server's Retry-After (capped by max_retry_wait_s) and with
exponential backoff when it sends none. That is safe for POST too: the server answers 429 and 503
only for a request it did not carry out (a refused write changes nothing; a queued job is answered
202 even out of memory). A connection error is retried only for GET, because a POST or DELETE whose
connection broke may have been carried out: the caller must decide (e.g. list the jobs).
"""
import json
import os
import sys
import time
import urllib.parse

import requests

try:  # numpy in and out when present
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

_TERMINAL = ("succeeded", "failed", "cancelled")


class MetaserveError(Exception):
    """Base class of this client's errors."""


class ProblemError(MetaserveError):
    """A 4xx/5xx answer; carries the RFC 9457 problem document the server sent."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem if isinstance(problem, dict) else {}
        self.type = self.problem.get("type", "")
        self.title = self.problem.get("title", "")
        self.detail = self.problem.get("detail", "")
        self.instance = self.problem.get("instance", "")
        self.request_id = self.problem.get("request_id", "")
        super().__init__(f"{status} {self.type.rsplit('/', 1)[-1]}: {self.detail}")

    @property
    def slug(self):
        """The stable tail of the problem type URI ("validation", "queue-full", ...)."""
        return self.type.rsplit("/", 1)[-1]


class JobFailed(MetaserveError):
    """Job.wait() saw the job end in a state other than succeeded."""

    def __init__(self, job):
        self.job = job
        super().__init__(f"job {job.get('id')} {job.get('state')}: {job.get('error', '')}")


def _matrix(a):
    """A matrix (numpy array or nested sequence; a flat sequence is one column) as nested lists
    of floats."""
    if _np is not None and isinstance(a, _np.ndarray):
        a = a.astype(float)
        return (a.reshape(-1, 1) if a.ndim == 1 else a).tolist()
    a = list(a)
    if a and not hasattr(a[0], "__len__"):  # a flat sequence of numbers: one column
        return [[float(v)] for v in a]
    return [[float(v) for v in row] for row in a]


def _out(m):
    return _np.asarray(m, dtype=float) if _np is not None else m


def _seg(s):
    return urllib.parse.quote(str(s), safe="@")


class Event:
    """One Server-Sent Event of a job stream: name ("state", "progress", "done"), id (int) and
    data (the decoded JSON object)."""

    __slots__ = ("name", "id", "data")

    def __init__(self, name, id, data):
        self.name, self.id, self.data = name, id, data

    def __repr__(self):
        return f"<Event {self.id} {self.name} {self.data}>"


def _sse_parse(lines):
    """Yields ("retry", None, ms) and (name, id, data text) for each event of an iterable of decoded
    lines (text/event-stream: fields until a blank line; comments start with ':')."""
    name, eid, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield name, eid, "\n".join(data)
            name, eid, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            eid = value
        elif field == "retry" and value.isdigit():
            yield "retry", None, int(value)


class _Progress:
    """Shows a job's progress on a stream (stderr): a one-line bar redrawn in place on a
    terminal, one plain line per event otherwise."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.drawn = False

    @staticmethod
    def _num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    def show(self, ev):
        d = ev.data
        if ev.name == "progress":
            it, total = d.get("iteration", 0), d.get("total", 0) or 1
            vk = "val_accuracy" if "val_accuracy" in d else "val_mse"
            text = (f"{it}/{total} meta_loss {self._num(d.get('meta_loss'), '.4g')} "
                    f"{vk} {self._num(d.get(vk), '.4g')} "
                    f"eta {self._num(d.get('eta_s'), '.0f')}s")
            if self.tty:
                w = 24
                k = int(w * min(max(it / total, 0), 1))
                self.stream.write(f"\r[{'#' * k}{'.' * (w - k)}] {100 * it // total:3d}% {text}\x1b[K")
                self.drawn = True
            else:
                self.stream.write(f"progress {text}\n")
        elif ev.name in ("state", "done"):
            if self.drawn:
                self.stream.write("\n")
                self.drawn = False
            extra = ""
            if ev.name == "done":
                m, e = d.get("model"), d.get("error")
                extra = (f" model {m.get('name')}@{m.get('version')}" if m else
                         f" {e.get('detail', '')}" if e else "")
            self.stream.write(f"{ev.name} {d.get('state')} at {d.get('iteration')}{extra}\n")
        self.stream.flush()


class Job:
    """A training job: its latest state in .info, refreshed by refresh() and wait()."""

    def __init__(self, client, info):
        self.client = client
        self.info = info
        self.id = info["id"]

    @property
    def state(self):
        return self.info.get("state")

    def refresh(self):
        self.info = self.client.get_job(self.id)
        return self.info

    def follow(self, interval_ms=None, last_event_id=None, display=True, reconnects=10,
               file=None):
        """Yields the job's events (Event: "state", "progress", then "done", which ends it) from
        GET /v1/jobs/{id}/events. A dropped connection, or a stream the server ended without
        "done" (it drains), is reopened with Last-Event-ID, so no event comes twice; after
        `reconnects` attempts in a row that bring no event, the last error is raised. display:
        a progress bar on `file` (stderr) when it is a terminal, plain lines otherwise; False:
        nothing. last_event_id: start after that event."""
        show = _Progress(file or sys.stderr) if display else None
        last, retry_s, failures = last_event_id, 2.0, 0
        while True:
            got = False
            try:
                for ev in self.client.job_events(self.id, interval_ms=interval_ms,
                                                 last_event_id=last):
                    if ev.name == "retry":
                        retry_s = min(ev.data / 1000.0, self.client.max_retry_wait_s)
                        continue
                    got, failures, last = True, 0, ev.id
                    if ev.name in ("state", "done"):
                        self.info = dict(self.info, state=ev.data.get("state"),
                                         iteration=ev.data.get("iteration"))
                    if show:
                        show.show(ev)
                    yield ev
                    if ev.name == "done":
                        return
                if last is not None and not got and self.refresh().get("state") in _TERMINAL:
                    return  # 204: the done event was seen before this connection
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.Timeout, ProblemError) as e:
                if isinstance(e, ProblemError) and e.status != 503:
                    raise  # 404, 401, ...: reconnecting changes nothing
                if not got:
                    failures += 1
                    if failures > reconnects:
                        raise
            else:
                if not got:
                    failures += 1
                    if failures > reconnects:
                        raise MetaserveError(f"job {self.id}: the event stream ended {failures} "
                                             "times without an event")
            time.sleep(retry_s if not got else 0)

    def wait(self, timeout_s=None, poll_s=0.5, on_progress=None, follow=False, display=True):
        """Waits until the job ends; returns its final document, raises JobFailed unless it
        succeeded and TimeoutError after timeout_s. follow=True reads the job's event stream
        (follow(); with a progress bar on a terminal when display) instead of polling every
        poll_s; on_progress gets the job's document (polling) or each progress event's data."""
        t0 = time.monotonic()
        if follow:
            for ev in self.follow(display=display):
                if ev.name == "progress" and on_progress:
                    on_progress(ev.data)
                if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                    raise TimeoutError(f"job {self.id} still {self.state} after {timeout_s} s")
        while self.refresh().get("state") not in _TERMINAL:
            if on_progress:
                on_progress(self.info)
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"job {self.id} still {self.state} after {timeout_s} s")
            time.sleep(poll_s)
        if self.state != "succeeded":
            raise JobFailed(self.info)
        return self.info

    def cancel(self):
        self.info = self.client.cancel_job(self.id)
        return self.info

    def metrics(self, after_step=-1):
        """Every recorded metric point after after_step (all pages)."""
        return list(self.client.iter_job_metrics(self.id, after_step=after_step))

    def __repr__(self):
        return f"<Job {self.id} {self.state}>"


class Client:
    def __init__(self, base_url="http://localhost:8080", api_key=None, timeout_s=30.0,
                 retries=4, max_retry_wait_s=30.0, session=None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("METASERVE_API_KEY")
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self.session = session or requests.Session()
        self.last_request_id = None

    def close(self):
        """Closes the session's kept-alive connections."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- transport ----

    def _request(self, method, path, body=None, params=None, raw=False):
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            try:
                r = self.session.request(method, url, json=body, params=params, headers=headers,
                                         timeout=self.timeout_s)
            except requests.ConnectionError:
                if method != "GET" or attempt == self.retries:
                    raise
                time.sleep(min(0.25 * 2 ** attempt, self.max_retry_wait_s))
                continue
            self.last_request_id = r.headers.get("X-Request-ID")
            if r.status_code in (429, 503) and attempt < self.retries:
                time.sleep(self._retry_wait(r, attempt))
                continue
            break
        if r.status_code >= 400:
            try:
                problem = r.json()
            except ValueError:
                problem = {"detail": r.text, "request_id": self.last_request_id or ""}
            raise ProblemError(r.status_code, problem)
        if raw:
            return r.content
        return r.json() if r.content else None

    def _retry_wait(self, r, attempt):
        ra = r.headers.get("Retry-After", "")
        wait = float(ra) if ra.isdigit() else 0.25 * 2 ** attempt
        return min(wait, self.max_retry_wait_s)

    def _pages(self, path, key, page_size=None, params=None):
        params = dict(params or {})
        if page_size:
            params["page_size"] = page_size
        while True:
            page = self._request("GET", path, params=params)
            yield from page[key]
            token = page.get("next_page_token")
            if not token:
                return
            params["page_token"] = token

    # ---- health ----

    def live(self):
        return self._request("GET", "/livez")

    def ready(self):
        """True when /readyz answers 200 (False on 503)."""
        try:
            self._request("GET", "/readyz")
            return True
        except ProblemError as e:
            if e.status == 503:
                return False
            raise

    def metrics_text(self):
        """The Prometheus exposition of /metrics."""
        return self._request("GET", "/metrics", raw=True).decode()

    def openapi(self):
        return self._request("GET", "/openapi.yaml", raw=True).decode()

    # ---- datasets ----

    def create_dataset(self, body):
        """POST /v1/datasets with a DatasetCreate document (kind "tasks" or "classes")."""
        return self._request("POST", "/v1/datasets", body)

    def create_classes_dataset(self, name, x, labels, test_classes=None):
        body = {"name": name, "kind": "classes", "x": _matrix(x),
                "labels": [int(v) for v in labels]}
        if test_classes is not None:
            body["test_classes"] = [int(v) for v in test_classes]
        return self.create_dataset(body)

    def create_tasks_dataset(self, name, tasks):
        """tasks: a sequence of (x, y) pairs."""
        return self.create_dataset({"name": name, "kind": "tasks",
                                    "tasks": [{"x": _matrix(x), "y": _matrix(y)} for x, y in tasks]})

    def iter_datasets(self, page_size=None):
        return self._pages("/v1/datasets", "datasets", page_size)

    def get_dataset(self, dataset_id):
        return self._request("GET", f"/v1/datasets/{_seg(dataset_id)}")

    def delete_dataset(self, dataset_id):
        return self._request("DELETE", f"/v1/datasets/{_seg(dataset_id)}")

    # ---- jobs ----

    def create_job(self, config):
        """POST /v1/jobs with a training config; returns a Job handle."""
        return Job(self, self._request("POST", "/v1/jobs", config))

    def iter_jobs(self, page_size=None):
        return self._pages("/v1/jobs", "jobs", page_size)

    def get_job(self, job_id):
        return self._request("GET", f"/v1/jobs/{_seg(job_id)}")

    def job(self, job_id):
        return Job(self, self.get_job(job_id))

    def cancel_job(self, job_id):
        return self._request("POST", f"/v1/jobs/{_seg(job_id)}/cancel")

    def iter_job_metrics(self, job_id, after_step=-1, page_size=None):
        return self._pages(f"/v1/jobs/{_seg(job_id)}/metrics", "points", page_size,
                           {"since": after_step} if after_step != -1 else None)

    def job_events(self, job_id, interval_ms=None, last_event_id=None):
        """One connection to GET /v1/jobs/{id}/events: yields Event objects (and
        Event("retry", None, ms) for the server's reconnection advice) until the stream ends;
        nothing for 204 (the job's done event was seen). Raises ProblemError for a 4xx/5xx (a
        503 is retried after Retry-After like any request) and requests' errors when the
        connection drops. Job.follow() reconnects; this does not."""
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        params = {"interval_ms": int(interval_ms)} if interval_ms is not None else None
        url = f"{self.base_url}/v1/jobs/{_seg(job_id)}/events"
        for attempt in range(self.retries + 1):
            # the read timeout outlasts the server's 15 s heartbeats
            r = self.session.get(url, params=params, headers=headers, stream=True,
                                 timeout=(self.timeout_s, max(self.timeout_s, 60.0)))
            self.last_request_id = r.headers.get("X-Request-ID")
            if r.status_code in (429, 503) and attempt < self.retries:
                r.close()
                time.sleep(self._retry_wait(r, attempt))
                continue
            break
        with r:
            if r.status_code >= 400:
                try:
                    problem = r.json()
                except ValueError:
                    problem = {"detail": r.text, "request_id": self.last_request_id or ""}
                raise ProblemError(r.status_code, problem)
            if r.status_code == 204:
                return
            r.encoding = "utf-8"  # text/event-stream is always UTF-8
            lines = r.iter_lines(chunk_size=None, decode_unicode=True)
            for name, eid, data in _sse_parse(lines):
                if name == "retry":
                    yield Event("retry", None, data)
                    continue
                yield Event(name, int(eid) if eid and eid.isdigit() else None, json.loads(data))

    # ---- models ----

    def iter_models(self, page_size=None):
        return self._pages("/v1/models", "models", page_size)

    def get_model(self, name):
        return self._request("GET", f"/v1/models/{_seg(name)}")

    def delete_model(self, name):
        return self._request("DELETE", f"/v1/models/{_seg(name)}")

    def get_version(self, name, version):
        return self._request("GET", f"/v1/models/{_seg(name)}/versions/{int(version)}")

    def delete_version(self, name, version):
        return self._request("DELETE", f"/v1/models/{_seg(name)}/versions/{int(version)}")

    def set_alias(self, name, alias, version):
        return self._request("PUT", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}",
                             {"version": int(version)})

    def delete_alias(self, name, alias):
        return self._request("DELETE", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}")

    def weights(self, ref):
        """GET /v1/models/{ref}/weights: the version's parameters (ref: name, name@version or
        name@alias)."""
        return self._request("GET", f"/v1/models/{_seg(ref)}/weights")

    # ---- adaptation and prediction ----

    @staticmethod
    def _adapt_body(support_x, support_y, steps, lr):
        y = support_y
        if _np is not None and isinstance(y, _np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu":
            y = y.tolist()  # class indices stay a flat list of ints
        elif isinstance(y, (list, tuple)) and y and isinstance(y[0], int):
            y = list(y)
        else:
            y = _matrix(y)
        body = {"support": {"x": _matrix(support_x), "y": y}}
        if steps is not None:
            body["steps"] = int(steps)
        if lr is not None:
            body["lr"] = float(lr)
        return body

    def adapt(self, ref, support_x, support_y, steps=None, lr=None, ttl_s=None):
        """POST /v1/models/{ref}/adapt: stores an adaptation; returns its document (id, losses)."""
        body = self._adapt_body(support_x, support_y, steps, lr)
        if ttl_s is not None:
            body["ttl_s"] = int(ttl_s)
        return self._request("POST", f"/v1/models/{_seg(ref)}/adapt", body)

    def get_adaptation(self, adaptation_id):
        return self._request("GET", f"/v1/adaptations/{_seg(adaptation_id)}")

    def delete_adaptation(self, adaptation_id):
        return self._request("DELETE", f"/v1/adaptations/{_seg(adaptation_id)}")

    def _prediction(self, doc, full):
        if full:
            return doc
        return _out(doc["y"]) if "y" in doc else doc

    def predict(self, ref, x, support_x=None, support_y=None, steps=None, lr=None, full=False):
        """POST /v1/models/{ref}/predict: the model's outputs at x, or, with a support set, the
        outputs after adapting to it (one stateless call). Returns y (a regression model's
        outputs) or, with full=True or for classifiers, the whole response document."""
        body = {"x": _matrix(x)}
        if support_x is not None:
            body.update(self._adapt_body(support_x, support_y, steps, lr))
        return self._prediction(self._request("POST", f"/v1/models/{_seg(ref)}/predict", body), full)

    def predict_adapted(self, adaptation_id, x, full=False):
        """POST /v1/adaptations/{id}/predict."""
        doc = self._request("POST", f"/v1/adaptations/{_seg(adaptation_id)}/predict",
                            {"x": _matrix(x)})
        return self._prediction(doc, full)
