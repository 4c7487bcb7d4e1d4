"""`metaserve migrate`: a SQLite database written by the real service, copied into PostgreSQL,
must serve exactly what it served before.

The source is built once through the HTTP API of a SQLite-backed `metaserve serve`: two models
(one Meta-SGD, so inner_lrs are copied too) with several versions, two versions deleted (one of
them the highest, so the version counter is the only record of it), aliases, a tasks and a
classes dataset, a live and an expired adaptation, a cancelled job, a job interrupted by SIGTERM
(queued, with a checkpoint) and a job left queued. Every GET the SQLite server answers is
recorded; after the copy a server on PostgreSQL must answer each with the same bytes.

Each test migrates into a database of its own on one throw-away PostgreSQL server (cluster.py).
Environment: METASERVE_BIN, METASERVE_SRC; MIGRATE_ROWS sizes the classes dataset (default
20000 rows of 64 floats, 5 MB: enough to span several 1 MiB chunk rows).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time

import pytest
import requests

from cluster import BIN, Postgres, free_port, sine_job, wait_job

ROWS = int(os.environ.get("MIGRATE_ROWS", "20000"))
X_DIM = 64
SUPPORT = {"x": [[-4.0], [-2.0], [0.0], [2.0], [4.0]],
           "y": [[0.76], [-0.91], [0.0], [0.91], [-0.76]]}
PROBE_X = {"x": [[-3.0], [-1.0], [0.5], [2.5]]}


class Server:
    """One `metaserve serve` process on a loopback port."""

    def __init__(self, db, log_dir, **env):
        self.port = free_port()
        e = dict(os.environ)
        e.update({"METASERVE_DB": db, "METASERVE_PORT": str(self.port),
                  "METASERVE_LISTEN": "127.0.0.1", "OPENBLAS_NUM_THREADS": "1"})
        e.update({k: str(v) for k, v in env.items()})
        self.log_path = os.path.join(log_dir, "serve-%d.log" % self.port)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BIN, "serve"], env=e, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.base = "http://127.0.0.1:%d" % self.port
        end = time.time() + 30
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.tail())
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("server not ready: " + self.tail())

    def tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        return requests.request(method, self.base + path, **kw)

    def get(self, path):
        return self.req("GET", path)

    def stop(self):
        """SIGTERM (running jobs checkpoint back to the queue); asserts a clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        assert rc == 0, "server exit %s: %s" % (rc, open(self.log_path).read()[-2000:])


def ok(r, status=200):
    assert r.status_code == status, "%s %s -> %d %s" % (r.request.method, r.request.url,
                                                         r.status_code, r.text[:500])
    return r.json() if r.content else None


def job_config(name, iterations=60, algorithm="maml", seed=1):
    c = sine_job(name, iterations=iterations, seed=seed, meta_batch=5)
    c["algorithm"] = algorithm
    return c


def migrate(src, uri):
    t0 = time.time()
    p = subprocess.run([BIN, "migrate", "--from", src, "--to", uri], capture_output=True,
                       text=True, timeout=600)
    return p, time.time() - t0


def pages(srv, path, key):
    """Every page of a listing: the raw body of each, and the items of all."""
    bodies, items, token = [], [], None
    while True:
        sep = "&" if "?" in path else "?"
        url = path + (sep + "page_token=" + token if token else "")
        r = srv.get(url)
        body = ok(r)
        bodies.append((url, r.status_code, r.content))
        items += body[key]
        token = body.get("next_page_token")
        if not token:
            return bodies, items


def snapshot(srv, ids):
    """(path, status, body bytes) of every GET (and two deterministic POSTs) on the store."""
    out = []

    def get(path):
        r = srv.get(path)
        out.append((path, r.status_code, r.content))
        return r

    b, models = pages(srv, "/v1/models?page_size=1", "models")
    out += b
    for m in models:
        for v in ok(get("/v1/models/" + m["name"]))["versions"]:
            get("/v1/models/%s/versions/%d" % (m["name"], v["version"]))
            get("/v1/models/%s@%d/weights" % (m["name"], v["version"]))
        get("/v1/models/%s/weights" % m["name"])
    for ref in ("sine@prod", "sine@first", "wave@best", "sine@2", "sine@4"):
        get("/v1/models/%s/weights" % ref)
    get("/v1/models/sine/versions/4")  # deleted: 404 on both
    b, datasets = pages(srv, "/v1/datasets?page_size=1", "datasets")
    out += b
    for d in datasets:
        get("/v1/datasets/" + d["id"])
    b, jobs = pages(srv, "/v1/jobs?page_size=2", "jobs")
    out += b
    for j in jobs:
        get("/v1/jobs/" + j["id"])
        b, _ = pages(srv, "/v1/jobs/%s/metrics?page_size=7" % j["id"], "points")
        out += b
    get("/v1/adaptations/" + ids["adaptation"])
    get("/v1/adaptations/" + ids["expired"])
    for path in ("/v1/adaptations/%s/predict" % ids["adaptation"], "/v1/models/wave@best/predict"):
        r = srv.req("POST", path, json=PROBE_X)
        out.append(("POST " + path, r.status_code, r.content))
    return out, {"models": models, "datasets": datasets, "jobs": jobs}


def without_request_id(body):
    """A problem body without the fields that name the request (its id differs per request)."""
    d = json.loads(body)
    for k in ("request_id", "instance"):
        d.pop(k, None)
    return d


@pytest.fixture(scope="module")
def work():
    d = tempfile.mkdtemp(prefix="ms-mig-", dir="/tmp")  # short: PostgreSQL's socket lives here
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pg(work):
    p = Postgres(os.path.join(work, "pg"))
    p.n = 0
    yield p
    p.stop()


def psql(uri, query):
    """Rows of query on the database at uri, as lists of strings."""
    out = subprocess.run(["psql", uri, "-XAt", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line != ""]


def fresh_db(pg):
    """A new, empty database on the server; returns its URI."""
    pg.n += 1
    name = "m%d" % pg.n
    pg.sql("CREATE DATABASE " + name)
    return pg.uri.replace("///metaserve?", "///%s?" % name)


@pytest.fixture(scope="module")
def source(work):
    """Builds src.db through the API and records what a SQLite server answers on it."""
    db = os.path.join(work, "src.db")
    ids = {}
    # Phase 1: one worker trains; checkpoints every 50 iterations.
    s = Server(db, work, METASERVE_WORKERS=1, METASERVE_CHECKPOINT_EVERY=50)
    try:
        jobs = [ok(s.req("POST", "/v1/jobs", json=job_config("sine", seed=i)), 202)["id"]
                for i in range(1, 5)]
        jobs += [ok(s.req("POST", "/v1/jobs", json=job_config("wave", algorithm="metasgd",
                                                               seed=i)), 202)["id"]
                 for i in range(1, 3)]
        for j in jobs:
            assert wait_job(s.get, j)["state"] == "succeeded"
        ok(s.req("DELETE", "/v1/models/sine/versions/2"), 204)
        ok(s.req("DELETE", "/v1/models/sine/versions/4"), 204)  # the highest number used
        for name, alias, v in (("sine", "prod", 3), ("sine", "first", 1), ("wave", "best", 2)):
            ok(s.req("PUT", "/v1/models/%s/aliases/%s" % (name, alias), json={"version": v}))
        tasks = [{"x": [[float(i + k)] for k in range(3 + i)],
                  "y": [[0.5 * i - k] for k in range(3 + i)]} for i in range(4)]
        ids["tasks"] = ok(s.req("POST", "/v1/datasets",
                                json={"name": "lines", "kind": "tasks", "tasks": tasks}), 201)["id"]
        rng = random.Random(7)
        pool = {"name": "pool", "kind": "classes",
                "x": [[rng.uniform(-5, 5) for _ in range(X_DIM)] for _ in range(ROWS)],
                "labels": [i % 10 for i in range(ROWS)], "test_classes": [9]}
        ids["classes"] = ok(s.req("POST", "/v1/datasets", json=pool), 201)["id"]
        del pool
        ids["adaptation"] = ok(s.req("POST", "/v1/models/sine@prod/adapt",
                                     json=dict(support=SUPPORT, steps=5, lr=0.01, ttl_s=3600)), 201)["id"]
        # Cancelled: cancelled while queued or while running, it ends cancelled either way.
        ids["cancelled"] = ok(s.req("POST", "/v1/jobs",
                                    json=job_config("sine", iterations=10**6)), 202)["id"]
        ok(s.req("POST", "/v1/jobs/%s/cancel" % ids["cancelled"]))
        assert wait_job(s.get, ids["cancelled"])["state"] == "cancelled"
        # Interrupted: running when the server stops, so it goes back to the queue with a
        # checkpoint of its iteration.
        ids["resume"] = ok(s.req("POST", "/v1/jobs",
                                 json=job_config("sine", iterations=10**6, seed=9)), 202)["id"]
        wait_job(s.get, ids["resume"], states=("running",))
        end = time.time() + 60
        while ok(s.get("/v1/jobs/" + ids["resume"]))["iteration"] < 200 and time.time() < end:
            time.sleep(0.1)
    finally:
        s.stop()
    # Phase 2: no workers, so a new job stays queued and the responses hold still.
    s = Server(db, work, METASERVE_WORKERS=0, METASERVE_ADAPT_SWEEP_S=3600)
    try:
        ids["queued"] = ok(s.req("POST", "/v1/jobs", json=job_config("sine", seed=11)), 202)["id"]
        ids["expired"] = ok(s.req("POST", "/v1/models/wave@1/adapt",
                                  json=dict(support=SUPPORT, ttl_s=1)), 201)["id"]
        time.sleep(1.2)  # expired now; the sweeper ran at start and next runs in an hour
        assert ok(s.get("/v1/jobs/" + ids["resume"]))["state"] == "queued"
        seen, lists = snapshot(s, ids)
    finally:
        s.stop()
    with sqlite3.connect(db) as c:
        ckpt = c.execute("SELECT checkpoint, iteration FROM jobs WHERE id = ?",
                         (ids["resume"],)).fetchone()
        assert ckpt[0] is not None and ckpt[1] >= 200, "the interrupted job has no checkpoint"
        counts = {
            "job_metrics": c.execute("SELECT count(*) FROM job_metrics").fetchone()[0],
            "blob_bytes": c.execute(
                "SELECT (SELECT sum(length(params)) + coalesce(sum(length(inner_lrs)), 0)"
                "        FROM models)"
                " + (SELECT coalesce(sum(length(checkpoint)), 0) FROM jobs)"
                " + (SELECT sum(length(x) + length(y) + length(idx)) FROM datasets)"
                " + (SELECT sum(length(params)) FROM adaptations WHERE id = ?)",
                (ids["adaptation"],)).fetchone()[0],
            "dataset_bytes": c.execute(
                "SELECT sum(length(x) + length(y) + length(idx)) FROM datasets").fetchone()[0],
        }
    return {"db": db, "ids": ids, "seen": seen, "lists": lists, "counts": counts,
            "checkpoint_md5": hashlib.md5(ckpt[0]).hexdigest(), "checkpoint_iter": ckpt[1]}


def test_migrated_store_answers_every_read_as_before(source, pg, work):
    uri = fresh_db(pg)
    p, secs = migrate(source["db"], uri)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    c = source["counts"]
    assert rep["models"] == 4  # sine@1, sine@3, wave@1, wave@2
    assert rep["model_names"] == 2
    assert rep["aliases"] == 3
    assert rep["jobs"] == 9  # 6 trained, cancelled, interrupted, queued
    assert rep["jobs_requeued"] == 0 and rep["jobs_cancelled"] == 0
    assert rep["job_metrics"] == c["job_metrics"] and c["job_metrics"] > 0
    assert rep["datasets"] == 2
    assert rep["adaptations"] == 1 and rep["adaptations_expired"] == 1
    assert rep["blob_bytes"] == c["blob_bytes"]
    assert rep["dataset_bytes"] == c["dataset_bytes"]
    print("migrate: %.1f MB in %.2f s (%.1f MB/s wall, %.1f MB/s copy)" % (
        rep["blob_bytes"] / 1e6, secs, rep["blob_bytes"] / 1e6 / secs,
        rep["blob_bytes"] / 1e6 / max(rep["seconds"], 1e-3)))
    # The counters: sine's highest number (4) was deleted, and only model_names remembers it.
    assert psql(uri, "SELECT name, last_version FROM model_names ORDER BY name") == [
        ["sine", "4"], ["wave", "2"]]
    assert psql(uri, "SELECT md5(checkpoint) FROM jobs WHERE id = '%s'" %
                source["ids"]["resume"]) == [[source["checkpoint_md5"]]]
    # Listings break created_at ties by insertion order: rowid there, seq here.
    with sqlite3.connect(source["db"]) as c:
        for table in ("jobs", "datasets"):
            want = [list(r) for r in c.execute("SELECT id FROM %s ORDER BY rowid" % table)]
            assert psql(uri, "SELECT id FROM %s ORDER BY seq" % table) == want, table
    # More than one chunk row per x array of the pool: the streamed path was taken.
    assert psql(uri, "SELECT count(*) FROM dataset_chunks WHERE dataset_id = '%s' AND arr = 0"
                % source["ids"]["classes"]) == [[str(1 + -(-ROWS * X_DIM * 4 // (1 << 20)))]]

    s = Server(uri, work, METASERVE_WORKERS=0, METASERVE_REPLICA="migrated")
    try:
        seen, lists = snapshot(s, source["ids"])
    finally:
        s.stop()
    assert [x[0] for x in seen] == [x[0] for x in source["seen"]]
    assert lists == source["lists"]
    n_ok = 0
    for (path, st0, body0), (_, st1, body1) in zip(source["seen"], seen):
        assert st1 == st0, "%s: %d on SQLite, %d on PostgreSQL" % (path, st0, st1)
        if st0 == 200:
            assert body1 == body0, "%s differs:\n%s\n%s" % (path, body0[:600], body1[:600])
            n_ok += 1
        else:  # problem bodies: the same but for the id of the request
            assert without_request_id(body1) == without_request_id(body0), path
    print("compared %d responses, %d of them 200 and byte-identical" % (len(seen), n_ok))
    # weights of 4 versions + 2 latest + 3 aliases, the versions, curves of 9 jobs, ...
    assert n_ok >= 40, n_ok


def test_jobs_resume_and_versions_continue_after_the_highest_ever_used(source, pg, work):
    uri = fresh_db(pg)
    p, _ = migrate(source["db"], uri)
    assert p.returncode == 0, p.stderr
    ids = source["ids"]
    s = Server(uri, work, METASERVE_WORKERS=1, METASERVE_CHECKPOINT_EVERY=50,
               METASERVE_REPLICA="resumer")
    try:
        # The interrupted job is the oldest queued: it is claimed first and continues from its
        # checkpoint, so no progress write ever shows an iteration below the checkpoint's.
        j = wait_job(s.get, ids["resume"], states=("running",))
        before = source["checkpoint_iter"]
        end = time.time() + 60
        seen = []
        while time.time() < end:
            j = ok(s.get("/v1/jobs/" + ids["resume"]))
            seen.append(j["iteration"])
            if j["iteration"] > before + 100:
                break
            time.sleep(0.05)
        assert min(seen) >= before and max(seen) > before + 100, (before, seen)
        ok(s.req("POST", "/v1/jobs/%s/cancel" % ids["resume"]))
        assert wait_job(s.get, ids["resume"])["state"] == "cancelled"
        # The queued job trains a new version of sine: 5, after the deleted 4, not 4 again.
        done = wait_job(s.get, ids["queued"])
        assert done["state"] == "succeeded", done
        assert done["model"] == {"name": "sine", "version": 5}
        versions = [v["version"] for v in ok(s.get("/v1/models/sine"))["versions"]]
        assert versions == [1, 3, 5]
        # And a job posted now gets the next number again.
        jid = ok(s.req("POST", "/v1/jobs", json=job_config("sine", seed=12)), 202)["id"]
        assert wait_job(s.get, jid)["model"] == {"name": "sine", "version": 6}
        assert ok(s.get("/v1/models/wave@best/weights"))["version"] == 2
    finally:
        s.stop()


def test_a_target_with_rows_is_refused(source, pg):
    uri = fresh_db(pg)
    p, _ = migrate(source["db"], uri)
    assert p.returncode == 0, p.stderr
    before = psql(uri, "SELECT (SELECT count(*) FROM models), (SELECT count(*) FROM jobs),"
                    " (SELECT count(*) FROM dataset_chunks), (SELECT count(*) FROM job_metrics)")
    p, _ = migrate(source["db"], uri)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert "not empty" in p.stderr and "4 model versions" in p.stderr and "9 jobs" in p.stderr, \
        p.stderr
    after = psql(uri, "SELECT (SELECT count(*) FROM models), (SELECT count(*) FROM jobs),"
                   " (SELECT count(*) FROM dataset_chunks), (SELECT count(*) FROM job_metrics)")
    assert after == before


def flip_byte(db, sql, args, offset):
    """Flips one byte of the blob that sql selects (its first column), at offset."""
    with sqlite3.connect(db) as c:
        row = c.execute(sql[0], args).fetchone()
        b = bytearray(row[0])
        b[offset] ^= 0x01
        c.execute(sql[1], (bytes(b),) + args)


def assert_empty(uri):
    """Every table of the target is empty (its schema exists: migrate created it)."""
    assert psql(uri, "SELECT (SELECT count(*) FROM models), (SELECT count(*) FROM model_names),"
                " (SELECT count(*) FROM model_aliases), (SELECT count(*) FROM jobs),"
                " (SELECT count(*) FROM job_metrics), (SELECT count(*) FROM datasets),"
                " (SELECT count(*) FROM dataset_chunks), (SELECT count(*) FROM adaptations)"
                ) == [["0"] * 8]


@pytest.mark.parametrize("case", ["model_params", "dataset_x"])
def test_a_corrupt_blob_stops_the_copy_naming_its_row(source, pg, work, case):
    src = os.path.join(work, "corrupt-%s.db" % case)
    shutil.copyfile(source["db"], src)
    if case == "model_params":
        flip_byte(src, ("SELECT params FROM models WHERE name = 'sine' AND version = 3",
                        "UPDATE models SET params = ? WHERE name = 'sine' AND version = 3"),
                  (), 24 + 100)
        want = "source model sine@3 params: corrupt blob: checksum mismatch"
    else:
        # In the last 1 MiB chunk, so earlier chunks (and every model and job) were already
        # written when the checksum fails at the end.
        ds = source["ids"]["classes"]
        flip_byte(src, ("SELECT x FROM datasets WHERE id = ?",
                        "UPDATE datasets SET x = ? WHERE id = ?"), (ds,), 24 + ROWS * X_DIM * 4 - 3)
        want = "source dataset %s x: corrupt blob: checksum mismatch" % ds
    uri = fresh_db(pg)
    p, _ = migrate(src, uri)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert want in p.stderr and "nothing was written" in p.stderr, p.stderr
    assert_empty(uri)


def test_running_jobs_are_queued_again_or_cancelled(source, pg, work):
    """A source left by a crash: one job running, one running with a cancel requested."""
    src = os.path.join(work, "crashed.db")
    shutil.copyfile(source["db"], src)
    ids = source["ids"]
    with sqlite3.connect(src) as c:
        c.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (ids["resume"],))
        c.execute("UPDATE jobs SET state = 'running', cancel_requested = 1, checkpoint = x'00'"
                  " WHERE id = ?", (ids["queued"],))
    uri = fresh_db(pg)
    t0 = int(time.time() * 1000)
    p, _ = migrate(src, uri)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["jobs"] == 9 and rep["jobs_requeued"] == 1 and rep["jobs_cancelled"] == 1
    rows = {r[0]: r[1:] for r in psql(
        uri, "SELECT id, state, iteration, md5(checkpoint), owner, epoch, finished_at FROM jobs"
        " WHERE id IN ('%s', '%s')" % (ids["resume"], ids["queued"]))}
    assert rows[ids["resume"]][:5] == ["queued", str(source["checkpoint_iter"]),
                                       source["checkpoint_md5"], "", "0"]
    st, _, ck, _, _, fin = rows[ids["queued"]]
    assert st == "cancelled" and ck == "" and int(fin) >= t0  # the dropped checkpoint not read


def test_bad_usage_exits_2_without_touching_anything(source, work):
    for args in (["--from", source["db"]], ["--to", "postgresql:///x"],
                 ["--from", source["db"], "--to", os.path.join(work, "other.db")],
                 ["--from", "postgresql:///x", "--to", "postgresql:///y"], ["--bogus"]):
        p = subprocess.run([BIN, "migrate"] + args, capture_output=True, text=True)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stdout == ""
    assert not os.path.exists(os.path.join(work, "other.db"))
    p = subprocess.run([BIN, "migrate", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--from FILE" in p.stdout
