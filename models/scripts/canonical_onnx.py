#!/usr/bin/env python3
"""Rewrite an ONNX model into a canonical form, so that equal graphs give equal bytes.

tf2onnx names the tensors and nodes it creates with process-wide counters and
emits nodes in an order that depends on Python's hash seed: converting the same
TF-Lite file twice gives graphs that compute the same thing (same operators,
same constants, bit-identical outputs) but differ in names and node order, so
their checksums differ. This script removes that freedom:
- nodes are ordered topologically, ties broken by a structural signature
  (operator, attributes, and the signatures of its inputs, down to constant
  contents and graph inputs);
- every internal tensor, constant and node is renamed by position
  (`t<i>`, `c<i>`, `n<i>`); graph inputs and outputs keep their names (they are
  the model's contract);
- value_info, doc strings and the producer version are dropped.
The canonical file is what the manifest's sha256 covers.

Usage: canonical_onnx.py IN.onnx OUT.onnx
"""
import hashlib
import heapq
import sys

import onnx
from onnx import helper, numpy_helper


def _h(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _attr_bytes(node):
    out = []
    for a in sorted(node.attribute, key=lambda a: a.name):
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise SystemExit(f"node {node.name}: sub-graphs are not supported by canonicalisation")
        a2 = onnx.AttributeProto()
        a2.CopyFrom(a)
        a2.doc_string = ""
        out.append(a2.SerializeToString(deterministic=True))
    return b"".join(out)


def canonicalize(model):
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    graph_inputs = [i.name for i in graph.input if i.name not in inits]
    outputs = {o.name for o in graph.output}
    sig = {name: _h("input", name) for name in graph_inputs}
    for name, init in inits.items():
        arr = numpy_helper.to_array(init)
        sig[name] = _h("const", arr.dtype.str, arr.shape, arr.tobytes())
    sig[""] = _h("none")
    producers = {out: n for n in graph.node for out in n.output}
    pending = {id(n): sum(1 for i in n.input if i in producers) for n in graph.node}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            if i in producers:
                consumers.setdefault(i, []).append(n)

    def node_sig(n):
        return _h("node", n.domain, n.op_type, _attr_bytes(n), *[sig[i] for i in n.input])

    ready, order, counter = [], [], 0
    for n in graph.node:
        if pending[id(n)] == 0:
            heapq.heappush(ready, (node_sig(n), counter, n))
            counter += 1
    while ready:
        s, _, n = heapq.heappop(ready)
        order.append(n)
        for k, out in enumerate(n.output):
            sig[out] = _h(s, k)
            for c in consumers.get(out, []):
                pending[id(c)] -= 1
                if pending[id(c)] == 0:
                    heapq.heappush(ready, (node_sig(c), counter, c))
                    counter += 1
    if len(order) != len(graph.node):
        raise SystemExit("graph has a cycle or dangling inputs")

    rename = {name: name for name in graph_inputs}
    rename.update({name: name for name in outputs})
    rename[""] = ""
    new_inits, t = [], 0
    for n in order:
        for i in n.input:
            if i not in rename and i in inits:
                rename[i] = f"c{len(new_inits)}"
                init = onnx.TensorProto()
                init.CopyFrom(inits[i])
                init.name = rename[i]
                init.doc_string = ""
                new_inits.append(init)
        for out in n.output:
            if out not in rename:
                rename[out] = f"t{t}"
                t += 1
    nodes = []
    for k, n in enumerate(order):
        new = helper.make_node(n.op_type, [rename[i] for i in n.input], [rename[o] for o in n.output], name=f"n{k}", domain=n.domain or None)
        new.attribute.extend(n.attribute)
        for a in new.attribute:
            a.doc_string = ""
        nodes.append(new)
    new_graph = helper.make_graph(
        nodes,
        "main",
        [i for i in graph.input if i.name not in inits],
        list(graph.output),
        new_inits,
    )
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import), producer_name="vidar canonical_onnx")
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model = canonicalize(onnx.load(sys.argv[1]))
    onnx.save(model, sys.argv[2])


if __name__ == "__main__":
    main()
