"""fuse_activations: fold a ReLU into the conv/dense/add that feeds it.

Quantizing after this fusion calibrates the producer's output range after the
ReLU, as onnxruntime's quantizer does, so no int8 code is spent on negatives.
"""
from __future__ import annotations

from sieve.ir.graph import Graph, Op
from sieve.ir.registry import opdef

def fuse_activations(graph: Graph) -> Graph:
    rename: dict[str, str] = {}
    fused: dict[str, str] = {}   # producer -> relu it absorbs
    for node in graph:
        if node.op is not Op.RELU:
            continue
        src = graph[node.inputs[0]]
        if (opdef(src.op).act and src.attrs.get("act") == "none"
                and len(graph.consumers(src.name)) == 1 and src.name not in graph.outputs):
            fused[src.name] = node.name
            rename[node.name] = src.name
    nodes = []
    for node in graph:
        if node.name in rename:
            continue
        if node.name in fused:
            node = node.with_attrs(act="relu")
        nodes.append(node.evolve(inputs=tuple(rename.get(i, i) for i in node.inputs)))
    return graph.replace_nodes(nodes, [rename.get(o, o) for o in graph.outputs], rename)
