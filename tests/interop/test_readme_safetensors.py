"""The README's "Weights and datasets as safetensors" section, run as written against the real
binary: its Python block writes pool.safetensors, then each command of its sh block runs through
bash (localhost:8080 replaced by the test server; curl given -w to report the status), after a
1-40-40-1 sinusoid model "sine" like the walkthrough's is trained. Every `# -> STATUS {...}` line
is checked: the status, and each "key":value pair it shows that is not elided with "…".
"""
import json
import os
import re
import subprocess
import tempfile

import pytest

from test_torch import Server

README = os.path.join(os.path.dirname(__file__), "../../README.md")


def section():
    text = open(README, encoding="utf-8").read()
    start = text.index("## Weights and datasets as safetensors")
    end = text.index("\n## ", start + 10)
    part = text[start:end]
    sh = re.search(r"```sh\n(.*?)```", part, re.S).group(1)
    py = re.search(r"```python\n(.*?)```", part, re.S).group(1)
    return sh, py


def commands(sh):
    """[(command text, expected line or None)] in order: a command goes on while its last line
    ends in a backslash or a single quote is open."""
    out, cur = [], None
    for line in sh.splitlines():
        if cur is None and line.startswith("# ->"):
            out[-1] = (out[-1][0], line[4:].strip())
            continue
        if cur is None and (line.startswith("#") or not line.strip()):
            continue
        cur = line if cur is None else cur + "\n" + line
        if not cur.endswith("\\") and cur.count("'") % 2 == 0:
            out.append((cur, None))
            cur = None
    return out


def test_the_readme_safetensors_section_runs_as_written():
    sh, py = section()
    s = Server()
    work = tempfile.mkdtemp(prefix="readme-st.")
    try:
        s.train({"name": "sine", "architecture": {"sizes": [1, 40, 40, 1], "activation": "relu"},
                 "iterations": 100, "meta_batch": 5, "seed": 1,
                 "tasks": {"family": "sinusoid", "k_support": 10, "k_query": 10}})
        subprocess.run(["/usr/bin/python3", "-c", py], cwd=work, check=True)
        cmds = commands(sh)
        assert len(cmds) == 4
        for cmd, expect in cmds:
            cmd = cmd.replace("localhost:8080", f"127.0.0.1:{s.port}")
            cmd = cmd.replace("curl -s ", "curl -s -w '\\n%{http_code}' ", 1)
            r = subprocess.run(["bash", "-c", cmd], cwd=work, capture_output=True, text=True, check=True)
            body, _, status = r.stdout.rpartition("\n")
            if expect is None:
                assert status == "200", (cmd, r.stdout)
                continue
            want_status, want_body = expect.split(" ", 1)
            assert status == want_status, (cmd, r.stdout)
            got = json.loads(body)
            for k, v in re.findall(r'"(\w+)":("[^"]*"|-?\d+(?:\.\d+)?)', want_body):
                if v == '"…"':
                    assert k in got, (k, got)
                else:
                    assert got.get(k) == json.loads(v), (k, got.get(k), v)
        assert os.path.getsize(os.path.join(work, "sine.safetensors")) > 1761 * 4
    finally:
        s.stop()
        subprocess.run(["rm", "-rf", work], check=True)
