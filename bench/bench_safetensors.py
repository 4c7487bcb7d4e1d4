#!/usr/bin/env python3
"""Weights and datasets as safetensors against the real binary: export and import times of a
784-256-256-5 network (JSON beside safetensors, same run), and dataset upload throughput and the
server's peak memory, JSON beside safetensors.

Each dataset upload gets a fresh server (METASERVE_BIN, a temporary SQLite file), so its peak RSS
(/proc/<pid>/status VmHWM) is that upload's; the baseline is VmHWM of the same fresh server just
before the upload. Throughput is body bytes over the wall time of the POST (client to 201).
Prints one JSON object per line. Environment: BENCH_ROWS (pool rows, default 4000; the JSON
upload of 4000 x 784 is ~21 MB), BENCH_BIG_ROWS (rows of a safetensors-only upload, default
32460: an Omniglot-sized pool, ~100 MB; 0 skips it), BENCH_REPS (weights repetitions, default 5).
"""
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

BIN = os.environ.get("METASERVE_BIN", os.path.join(os.path.dirname(__file__), "../build/metaserve"))


def st_write(tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, arr in tensors:
        b = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": {"f": "F32", "i": "I64"}[arr.dtype.kind] if arr.dtype.itemsize in (4, 8) and
                        not (arr.dtype.kind == "f" and arr.dtype.itemsize == 8) else "F64",
                        "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-st.")
        env = dict(os.environ, METASERVE_DB=os.path.join(self.dir, "b.db"), METASERVE_PORT="0",
                   METASERVE_LISTEN="127.0.0.1", METASERVE_WORKERS="0",
                   METASERVE_MAX_BODY_BYTES=str(1 << 30), METASERVE_MAX_DATASET_BYTES=str(1 << 30))
        env.pop("METASERVE_API_KEYS", None)
        self.proc = subprocess.Popen([BIN, "serve"], env=env, stdin=subprocess.DEVNULL,
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

    def hwm_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return -1

    def call(self, method, path, data=None, ctype="application/json", accept=None):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if accept:
            req.add_header("Accept", accept)
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
            status = r.status
        return status, body, time.perf_counter() - t0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        subprocess.run(["rm", "-rf", self.dir], check=True)


def weights(reps):
    sizes = [784, 256, 256, 5]
    rng = np.random.default_rng(1)
    ts = []
    for l in range(3):
        ts.append((f"{2 * l}.weight", (rng.standard_normal((sizes[l + 1], sizes[l])) * 0.05).astype(np.float32)))
        ts.append((f"{2 * l}.bias", np.zeros(sizes[l + 1], np.float32)))
    arch = json.dumps({"sizes": sizes, "activation": "relu", "head": "classification"})
    st_body = st_write(ts, {"architecture": arch})
    s = Server()
    try:
        res = {"import_st": [], "import_json": [], "export_st": [], "export_json": []}
        st, body, _ = s.call("POST", "/v1/models/big/versions", st_body, "application/octet-stream")
        assert st == 201
        _, json_body, _ = s.call("GET", "/v1/models/big/weights")
        for _ in range(reps):
            res["import_st"].append(s.call("POST", "/v1/models/big/versions", st_body, "application/octet-stream")[2])
            res["import_json"].append(s.call("POST", "/v1/models/big/versions", json_body)[2])
            res["export_st"].append(s.call("GET", "/v1/models/big@1/weights?format=safetensors")[2])
            res["export_json"].append(s.call("GET", "/v1/models/big@1/weights")[2])
        out = {"bench": "weights", "net": "784-256-256-5", "params": sum(a.size for _, a in ts),
               "bytes_st": len(st_body), "bytes_json": len(json_body), "reps": reps}
        for k, v in res.items():
            out[k + "_ms"] = round(statistics.median(v) * 1e3, 2)
        print(json.dumps(out), flush=True)
    finally:
        s.stop()


def upload(kind, body, ctype, rows):
    s = Server()
    try:
        base = s.hwm_kib()
        st, _, dt = s.call("POST", "/v1/datasets", body, ctype)
        assert st == 201
        peak = s.hwm_kib()
        print(json.dumps({"bench": "dataset_upload", "format": kind, "rows": rows, "x_dim": 784,
                          "body_mb": round(len(body) / 1e6, 1), "seconds": round(dt, 3),
                          "mb_per_s": round(len(body) / 1e6 / dt, 1),
                          "peak_rss_mb": round(peak / 1024, 1), "baseline_rss_mb": round(base / 1024, 1),
                          "peak_over_body": round((peak - base) * 1024 / len(body), 2)}), flush=True)
    finally:
        s.stop()


def pool(rows):
    rng = np.random.default_rng(2)
    x = rng.random((rows, 784), dtype=np.float32)
    labels = (np.arange(rows) % max(2, rows // 20)).astype(np.int64)
    return x, labels


def datasets(rows, big_rows):
    x, labels = pool(rows)
    st_body = st_write([("x", x), ("labels", labels)], {"name": "pool", "kind": "classes"})
    js = json.dumps({"name": "pool", "kind": "classes", "x": x.tolist(), "labels": labels.tolist()}).encode()
    del x
    upload("json", js, "application/json", rows)
    del js
    upload("safetensors", st_body, "application/octet-stream", rows)
    del st_body
    if big_rows:
        x, labels = pool(big_rows)
        body = st_write([("x", x), ("labels", labels)], {"name": "omniglot-sized", "kind": "classes"})
        del x
        upload("safetensors", body, "application/octet-stream", big_rows)


if __name__ == "__main__":
    weights(int(os.environ.get("BENCH_REPS", "5")))
    datasets(int(os.environ.get("BENCH_ROWS", "4000")), int(os.environ.get("BENCH_BIG_ROWS", "32460")))
    sys.exit(0)
