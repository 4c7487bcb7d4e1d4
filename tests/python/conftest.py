"""Fixtures for the Python client's suite: the real metaserve binary on a temporary SQLite file
and a free loopback port (METASERVE_PORT=0; the port is read from the "listening" log line)."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

BIN = os.environ.get("METASERVE_BIN", os.path.join(os.path.dirname(__file__), "../../build/metaserve"))

ADMIN_KEY = "admin-key-0123456789abcdef"
CLIENT_KEY = "client-key-0123456789abcdef"


CLIENTS = []  # every Client made by a test (close_clients)


class Server:
    def __init__(self, **env):
        self.dir = tempfile.mkdtemp(prefix="pyclient.")
        e = dict(os.environ, METASERVE_DB=os.path.join(self.dir, "m.db"), METASERVE_PORT="0",
                 METASERVE_LISTEN="127.0.0.1")
        e.pop("METASERVE_API_KEYS", None)
        e.update({k: str(v) for k, v in env.items()})
        self.proc = subprocess.Popen([BIN, "serve"], env=e, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if doc.get("msg") == "listening":
                    self.port = doc["port"]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(20)
        if not self.port:
            self.stop()
            raise RuntimeError("metaserve did not start listening")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        # kept-alive client connections would hold the server's drain until they time out
        for c in CLIENTS:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def close_clients(monkeypatch):
    """Records every Client a test makes, for Server.stop to close first."""
    import metaserve

    init = metaserve.Client.__init__

    def tracked(self, *a, **kw):
        init(self, *a, **kw)
        CLIENTS.append(self)

    monkeypatch.setattr(metaserve.Client, "__init__", tracked)
    yield


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def make_server():
    started = []

    def make(**env):
        s = Server(**env)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def sine_model(server):
    """A small MAML model of the sinusoid family, trained once for the session."""
    from metaserve import Client

    ms = Client(server.url)
    job = ms.create_job({
        "name": "sine",
        "architecture": {"sizes": [1, 40, 40, 1], "activation": "relu", "head": "regression"},
        "algorithm": "maml", "inner": {"lr": 0.01, "steps": 1},
        "outer": {"optimizer": "adam", "lr": 0.001},
        "meta_batch": 25, "iterations": 2000, "seed": 1,
        "tasks": {"family": "sinusoid", "k_support": 10, "k_query": 10}})
    job.wait(timeout_s=120, poll_s=0.2)
    return "sine"
