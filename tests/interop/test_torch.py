"""safetensors between metaserve and PyTorch (Debian's python3-torch), against the real binary.

Debian ships no safetensors package, so this file has its own tiny reader and writer of the
published layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
header length N, N bytes of JSON header, then the little-endian tensor data. They are checked
against a hex fixture of that layout first, so the other tests do not rest on them blindly.

Tolerance: metaserve's forward pass is float32 through OpenBLAS sgemm, torch's float32 through its
own kernels; the two sum the same products in different orders, so results agree to a few float32
ulps per layer, not bit for bit: rtol 1e-5, atol 1e-6 (float32's epsilon is 1.2e-7; three layers
of up to 40-term sums stay well inside). Everything that does not involve torch's arithmetic
(weights, datasets, trained models) is compared bit for bit.
"""
import json
import os
import signal
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

BIN = os.environ.get("METASERVE_BIN", os.path.join(os.path.dirname(__file__), "../../build/metaserve"))

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}
NAMES = {np.dtype(v).str: k for k, v in DTYPES.items()}


# ---- the test's own safetensors reader and writer ----

def st_write(tensors, metadata=None):
    """tensors: list of (name, numpy array); returns the file's bytes (header padded to 8)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        b = le.tobytes()
        header[name] = {"dtype": NAMES[np.dtype(arr.dtype).newbyteorder("<").str],
                        "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def st_read(data):
    """Returns ({name: numpy array}, metadata)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        dt = np.dtype(DTYPES[t["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(data[base + b:base + e], dtype=dt).reshape(t["shape"])
    return out, meta


# A file of the published layout, by hand: one tensor "w", F32, shape [2], values [1.0, -2.5],
# metadata {"k": "v"}. Bytes 0-7: N = 0x50 = 80, little-endian. Bytes 8-87: the header
#   {"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}
# (79 bytes) and one space of padding to 80. Bytes 88-95: 1.0f = 0x3f800000 and
# -2.5f = 0xc0200000, little-endian.
FIXTURE_HEX = (
    "5000000000000000"
    "7b225f5f6d657461646174615f5f223a7b226b223a2276227d2c2277223a7b22"
    "6474797065223a22463332222c227368617065223a5b325d2c22646174615f6f"
    "666673657473223a5b302c385d7d7d20"
    "0000803f000020c0"
)


def test_reader_and_writer_follow_the_published_layout():
    fixture = bytes.fromhex(FIXTURE_HEX)
    assert st_write([("w", np.array([1.0, -2.5], np.float32))], {"k": "v"}) == fixture
    t, meta = st_read(fixture)
    assert meta == {"k": "v"} and t["w"].tolist() == [1.0, -2.5]


# ---- the server ----

class Server:
    def __init__(self, **env):
        self.dir = tempfile.mkdtemp(prefix="interop.")
        e = dict(os.environ, METASERVE_DB=os.path.join(self.dir, "m.db"), METASERVE_PORT="0",
                 METASERVE_LISTEN="127.0.0.1", METASERVE_WORKERS="1")
        e.pop("METASERVE_API_KEYS", None)
        e.update({k: str(v) for k, v in env.items()})
        self.proc = subprocess.Popen([BIN, "serve"], env=e, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port, ready = None, threading.Event()

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
        assert self.port, "metaserve did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, method, path, body=None, ctype="application/json", accept=None):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw, status, ct = r.read(), r.status, r.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            raw, status, ct = e.read(), e.code, e.headers.get("Content-Type")
        return status, (json.loads(raw) if ct and "json" in ct else raw)

    def train(self, cfg):
        st, job = self.call("POST", "/v1/jobs", cfg)
        assert st == 202, job
        deadline = time.time() + 120
        while time.time() < deadline:
            st, job = self.call("GET", "/v1/jobs/" + job["id"])
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert job["state"] == "succeeded", job
        return job

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        subprocess.run(["rm", "-rf", self.dir], check=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def sequential(sizes, act):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[act]())
    return torch.nn.Sequential(*layers)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-6)


# ---- metaserve -> PyTorch ----

def test_an_exported_model_and_adaptation_load_into_a_sequential_and_predict_the_same(server):
    server.train({"name": "sine", "architecture": {"sizes": [1, 40, 40, 1], "activation": "relu"},
                  "iterations": 200, "meta_batch": 5, "seed": 2,
                  "tasks": {"family": "sinusoid", "k_support": 10, "k_query": 10}})
    st, body = server.call("GET", "/v1/models/sine/weights", accept="application/octet-stream")
    assert st == 200 and isinstance(body, bytes)
    tensors, meta = st_read(body)
    assert sorted(tensors) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    assert json.loads(meta["architecture"]) == {"sizes": [1, 40, 40, 1], "activation": "relu",
                                                "head": "regression"}
    assert meta["provenance"] == "trained" and meta["model"] == "sine" and meta["job_id"]
    net = sequential([1, 40, 40, 1], "relu")
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, strict=True)
    x = np.linspace(-5, 5, 33, dtype=np.float32).reshape(-1, 1)
    st, pred = server.call("POST", "/v1/models/sine/predict", {"x": x.tolist()})
    assert st == 200
    with torch.no_grad():
        close(net(torch.from_numpy(x)).numpy(), pred["y"])

    # an adaptation, exported the same way
    sx = np.linspace(-4, 4, 10).reshape(-1, 1)
    st, a = server.call("POST", "/v1/models/sine/adapt",
                        {"support": {"x": sx.tolist(), "y": (2 * np.sin(sx - 1)).tolist()}, "steps": 5})
    assert st == 201, a
    st, body = server.call("GET", f"/v1/adaptations/{a['id']}/weights?format=safetensors")
    tensors, meta = st_read(body)
    assert meta["adaptation_id"] == a["id"] and meta["provenance"] == "adapted"
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, strict=True)
    st, pred = server.call("POST", f"/v1/adaptations/{a['id']}/predict", {"x": x.tolist()})
    with torch.no_grad():
        close(net(torch.from_numpy(x)).numpy(), pred["y"])


# ---- PyTorch -> metaserve ----

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_a_pytorch_state_dict_imports_and_predicts_the_same(server, dtype):
    torch.manual_seed(11)
    net = sequential([3, 16, 16, 4], "tanh").to(dtype)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    arch = json.dumps({"sizes": [3, 16, 16, 4], "activation": "tanh", "head": "classification"})
    name = f"torch-{str(dtype).split('.')[-1]}"
    st, v = server.call("POST", f"/v1/models/{name}/versions", st_write(list(sd.items()), {"architecture": arch}),
                        ctype="application/octet-stream")
    assert st == 201, v
    assert v["provenance"] == "imported"
    x = np.random.default_rng(3).standard_normal((20, 3)).astype(np.float32)
    st, pred = server.call("POST", f"/v1/models/{name}/predict", {"x": x.tolist()})
    assert st == 200, pred
    with torch.no_grad():
        prob = torch.softmax(net.float()(torch.from_numpy(x)), dim=1).numpy()
    close(prob, pred["probabilities"])
    assert pred["labels"] == prob.argmax(1).tolist()
    # stored as torch's .float() gives them: F32 bit for bit, F64 rounded to nearest, F16 exactly
    st, body = server.call("GET", f"/v1/models/{name}/weights?format=safetensors")
    back, _ = st_read(body)
    for k, v in net.float().state_dict().items():
        assert back[k].tobytes() == v.numpy().astype("<f4").tobytes(), k


# ---- datasets written by numpy ----

def test_a_numpy_safetensors_dataset_trains_bit_identically_to_its_json_upload(server):
    rng = np.random.default_rng(5)
    n, d = 120, 4
    labels = rng.permutation(np.repeat(np.arange(8) * 3 + 1, n // 8)).astype(np.int64)
    x = (rng.standard_normal((n, d)) + labels[:, None] * 0.1).astype(np.float32)
    st1, a = server.call("POST", "/v1/datasets",
                         {"name": "np", "kind": "classes", "x": x.tolist(), "labels": labels.tolist(),
                          "test_classes": [22]})
    st2, b = server.call("POST", "/v1/datasets",
                         st_write([("x", x), ("labels", labels), ("test_classes", np.array([22], np.int64))],
                                  {"name": "np", "kind": "classes"}),
                         ctype="application/octet-stream")
    assert st1 == 201 and st2 == 201, (a, b)
    for k in ("n_rows", "x_dim", "n_classes", "bytes", "test_classes"):
        assert a[k] == b[k], k
    weights = []
    for ds, m in ((a["id"], "np-json"), (b["id"], "np-st")):
        server.train({"name": m, "architecture": {"sizes": [d, 24, 3], "head": "classification"},
                      "iterations": 40, "meta_batch": 4, "seed": 9,
                      "tasks": {"dataset": ds, "k_support": 2, "k_query": 3, "n_way": 3}})
        st, w = server.call("GET", f"/v1/models/{m}/weights?format=safetensors")
        weights.append(st_read(w)[0])
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert weights[0][k].tobytes() == weights[1][k].tobytes(), k
