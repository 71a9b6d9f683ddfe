"""fuse_activations: fold a ReLU into the conv/dense/add that feeds it, and x · sigmoid(x) into SiLU.

Quantizing after this fusion calibrates the producer's output range after the
ReLU, as onnxruntime's quantizer does, so no int8 code is spent on negatives.
SiLU as one table rounds once where sigmoid then a product would round twice.
"""
from __future__ import annotations

from sieve.ir.graph import Graph, Op
from sieve.ir.types import DType
from sieve.ir.registry import opdef

def fuse_activations(graph: Graph) -> Graph:
    return _fuse_silu(_fuse_relu(graph))


def _fuse_silu(graph: Graph) -> Graph:
    """MUL(x, LUT sigmoid(x)), the sigmoid read only there, becomes LUT silu(x) (float graphs)."""
    fused: dict[str, str] = {}        # mul -> its x
    drop = set()
    for node in graph:
        if node.op is not Op.MUL or node.out.dtype is not DType.FLOAT32:
            continue
        for x, s in (node.inputs, node.inputs[::-1]):
            sig = graph[s]
            if (sig.op is Op.LUT and sig.attrs.get("fn") == "sigmoid" and sig.inputs[0] == x
                    and len(graph.consumers(s)) == 1 and s not in graph.outputs):
                fused[node.name], drop = x, drop | {s}
                break
    if not fused:
        return graph
    nodes = []
    for node in graph:
        if node.name in drop:
            continue
        if node.name in fused:
            node = node.evolve(op=Op.LUT, inputs=(fused[node.name],), attrs={"fn": "silu"})
        nodes.append(node)
    return graph.replace_nodes(nodes)


def _fuse_relu(graph: Graph) -> Graph:
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
