"""Checks ONNX files with the onnx package's own checker (Debian's python3-onnx) and describes them.

    /usr/bin/python3 check_onnx.py FILE...

For each file: onnx.checker.check_model(full_check=True) (the structural checks plus strict shape
inference over the whole graph), then one JSON line with what tests/onnx/run.mjs compares against
the model it exported: ir_version, opsets, producer, metadata_props, the node op types in order,
the inputs and outputs with their element types and shapes (a symbolic dimension as its name), and
the initializers' names and dims. Exits non-zero when a check fails.
"""
import json
import sys

import onnx


def shape(vi):
    t = vi.type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
    return {"name": vi.name, "elem_type": onnx.TensorProto.DataType.Name(t.elem_type), "shape": dims}


def describe(path):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    g = m.graph
    return {
        "file": path,
        "ir_version": m.ir_version,
        "opset": {o.domain: o.version for o in m.opset_import},
        "producer": [m.producer_name, m.producer_version],
        "model_version": m.model_version,
        "metadata": {p.key: p.value for p in m.metadata_props},
        "ops": [n.op_type for n in g.node],
        "inputs": [shape(v) for v in g.input],
        "outputs": [shape(v) for v in g.output],
        "initializers": [{"name": t.name, "dims": list(t.dims)} for t in g.initializer],
    }


if __name__ == "__main__":
    for f in sys.argv[1:]:
        print(json.dumps(describe(f)))
