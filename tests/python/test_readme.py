"""The README's Python walkthrough, run as written against a real server.

The block is taken from README.md's "Five minutes with curl" section; the only change is the
server's address. Each `# -> ...` line under a print is what that print must show: its numbers
are compared within 0.15 + 5% (the tolerance of tests/readme/walkthrough.mjs, for the OpenBLAS
rounding that differs between CPUs; the reason and the measured spread are given there).
"""
import contextlib
import io
import os
import re

README = os.path.join(os.path.dirname(__file__), "../../README.md")
NUM = r"-?\d+(?:\.\d+)?"


def test_the_readme_python_walkthrough_prints_what_it_shows(server):
    text = open(README, encoding="utf-8").read()
    section = text.split("\n## Five minutes with curl", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    expected = [[float(v) for v in re.findall(NUM, line)]
                for line in block.splitlines() if line.startswith("# -> ")]
    assert len(expected) == 2 and all(expected), block

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.replace("http://localhost:8080", server.url), "README.md", "exec"), {})
    printed = [[float(v) for v in re.findall(NUM, line)] for line in out.getvalue().splitlines()]
    assert len(printed) == len(expected), out.getvalue()
    for got, want in zip(printed, expected):
        assert len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            assert abs(g - w) <= 0.15 + 0.05 * abs(w), (got, want)
