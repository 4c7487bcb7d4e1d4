"""A cluster of real processes for the multi-replica tests: one PostgreSQL server (started with
tests/pg/pgctl.sh into a temporary directory), N `metaserve serve` replicas on loopback ports
sharing its database, and optionally the real nginx (deploy/nginx.conf, its upstream rewritten
to the replicas). Nothing is mocked: the tests drive the replicas over HTTP, kill them with
signals, stop and start PostgreSQL, and read the rows with psql.

Environment: METASERVE_BIN (the binary), METASERVE_SRC (the source tree), NGINX (default
/usr/sbin/nginx).

    with Cluster(replicas=3, nginx=True) as c:
        r = c.post(0, "/v1/jobs", json=cfg)     # replica 0 directly
        r = c.gw("GET", "/v1/models")           # through nginx
        c.kill(1)                               # SIGKILL replica 1
        c.start(1)                              # a new process in its slot
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import requests

SRC = os.environ.get("METASERVE_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("METASERVE_BIN") or os.path.join(SRC, "build", "metaserve")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
PGCTL = os.path.join(SRC, "tests", "pg", "pgctl.sh")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throw-away PostgreSQL server (unix socket in dir only)."""

    def __init__(self, dir_):
        self.dir = dir_
        out = subprocess.run(["bash", PGCTL, "start", dir_], check=True, capture_output=True,
                             text=True).stdout
        self.uri = out.strip().splitlines()[-1]

    def pause(self):
        """Fast shutdown, data kept: every connection breaks."""
        subprocess.run(["bash", PGCTL, "pause", self.dir], check=True)

    def resume(self):
        subprocess.run(["bash", PGCTL, "resume", self.dir], check=True)

    def stop(self):
        subprocess.run(["bash", PGCTL, "stop", self.dir], check=False)

    def sql(self, query):
        """Rows of query as lists of strings (psql, unaligned, no header)."""
        out = subprocess.run(["psql", self.uri, "-XAt", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-c", query], check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def value(self, query):
        rows = self.sql(query)
        return rows[0][0] if rows else None


class Replica:
    def __init__(self, cluster, index, env):
        self.index = index
        self.port = free_port()
        self.log_path = os.path.join(cluster.dir, "replica%d-%d.log" % (index, self.port))
        e = dict(os.environ)
        e.update({"METASERVE_DB": cluster.pg.uri, "METASERVE_LISTEN": "127.0.0.1",
                  "METASERVE_PORT": str(self.port), "METASERVE_REPLICA": "r%d-%d" % (index, self.port),
                  "OPENBLAS_NUM_THREADS": "1"})
        e.update({k: str(v) for k, v in env.items()})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BIN, "serve"], env=e, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.name = e["METASERVE_REPLICA"]
        self.base = "http://127.0.0.1:%d" % self.port

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("replica %d exited (%s): %s" % (self.index, self.proc.returncode,
                                                                   self.tail()))
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("replica %d not ready: %s" % (self.index, self.tail()))

    def tail(self, n=2000):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-n:]

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM, then wait (SIGKILL after timeout). Returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Cluster:
    def __init__(self, replicas=2, nginx=False, env=None):
        self.n = replicas
        self.want_nginx = nginx
        self.env = env or {}
        self.replicas = []
        self.nginx = None
        self.pg = None

    def __enter__(self):
        # Short: the socket path (dir/.s.PGSQL.5432) must fit in 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="ms-cl-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        try:
            self.pg = Postgres(os.path.join(self.dir, "pg"))
            for i in range(self.n):
                self.replicas.append(Replica(self, i, self.env))
            for r in self.replicas:
                r.wait_ready()
            if self.want_nginx:
                self.start_nginx()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            self.nginx.wait()
        for r in self.replicas:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        if self.pg:
            self.pg.stop()
        if exc and exc[0] is not None:
            for r in self.replicas:
                print("---- replica %d log (tail) ----\n%s" % (r.index, r.tail()))
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    # ---- replicas ----

    def start(self, i, env=None):
        """A new process in slot i (the old one must have exited), ready when this returns."""
        e = dict(self.env)
        e.update(env or {})
        self.replicas[i] = Replica(self, i, e)
        self.replicas[i].wait_ready()
        return self.replicas[i]

    def kill(self, i):
        r = self.replicas[i]
        r.proc.kill()
        r.proc.wait()

    def url(self, i, path):
        return self.replicas[i].base + path

    def req(self, i, method, path, **kw):
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url(i, path), **kw)

    def get(self, i, path, **kw):
        return self.req(i, "GET", path, **kw)

    def post(self, i, path, **kw):
        return self.req(i, "POST", path, **kw)

    # ---- nginx ----

    def start_nginx(self):
        """deploy/nginx.conf with its listen, upstream servers, pid and log paths rewritten."""
        self.gw_port = free_port()
        ndir = os.path.join(self.dir, "nginx")
        os.makedirs(ndir)
        with open(os.path.join(SRC, "deploy", "nginx.conf")) as f:
            conf = f.read()
        servers = "".join("        server 127.0.0.1:%d;\n" % r.port for r in self.replicas)
        conf = re.sub(r"^( *)server metaserve:8080;\n", servers, conf, count=1, flags=re.M)
        conf = re.sub(r"^( *)listen 80;", r"\1listen 127.0.0.1:%d;" % self.gw_port, conf,
                      count=1, flags=re.M)
        conf = re.sub(r"access_log /dev/stdout", "access_log %s/access.log" % ndir, conf)
        head = "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n" % (ndir, ndir)
        if os.getuid() == 0:
            head = "user root;\n" + head
        conf = re.sub(r"^pid [^;]*;\n", "", conf, flags=re.M)
        conf = re.sub(r"^error_log [^;]*;\n", "", conf, flags=re.M)
        temps = "".join("    %s_temp_path %s/%s;\n" % (t, ndir, t)
                        for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = head + conf.replace("http {\n", "http {\n" + temps, 1)
        path = os.path.join(ndir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.nginx = subprocess.Popen([NGINX, "-p", ndir, "-c", path, "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.gw_base = "http://127.0.0.1:%d/metaserve" % self.gw_port
        end = time.time() + 10
        while time.time() < end:
            try:
                requests.get("http://127.0.0.1:%d/healthz" % self.gw_port, timeout=1)
                return
            except requests.RequestException:
                if self.nginx.poll() is not None:
                    raise RuntimeError("nginx exited: %s" % self.nginx.stderr.read())
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def gw(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        return requests.request(method, self.gw_base + path, **kw)

    def upstreams(self):
        """The upstream address of every request nginx logged, in order."""
        with open(os.path.join(self.dir, "nginx", "access.log")) as f:
            return [json.loads(l)["upstream_addr"] for l in f if l.strip()]


# ---- shared helpers ----

def sine_job(name, iterations=2000, seed=1, steps=1, meta_batch=25):
    return {"name": name,
            "architecture": {"sizes": [1, 40, 40, 1], "activation": "relu", "head": "regression"},
            "algorithm": "maml", "inner": {"lr": 0.01, "steps": steps},
            "outer": {"optimizer": "adam", "lr": 0.001},
            "meta_batch": meta_batch, "iterations": iterations, "seed": seed,
            "tasks": {"family": "sinusoid", "k_support": 10, "k_query": 10}}


def wait_job(get, job_id, states=("succeeded", "failed", "cancelled"), timeout=120):
    """Polls GET /v1/jobs/{id} through get(path) until its state is in states; returns the job."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            r = get("/v1/jobs/" + job_id)
            if r.status_code == 200:
                last = r.json()
                if last["state"] in states:
                    return last
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError("job %s not in %s after %ss: %s" % (job_id, states, timeout, last))
