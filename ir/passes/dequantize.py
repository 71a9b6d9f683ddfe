"""dequantize_graph: the float model a quantized graph stands for.

Weights and biases are dequantized (w * s_w, b * s_in * s_w); activations stay float, so
running the result shows what the model computes without activation rounding. Each tensor
keeps the saturation of its int8 range, [s·(−128 − zp), s·(127 − zp)], as a clip: quantizers
drop a ReLU whose output range starts at zero and let that saturation do its work. A model
that arrives quantized has no float original; this is the closest float reference to it.
The weight scale of a requantized layer is recovered from its multiplier:
s_w = requant * s_out / s_in (float, so within a float32 rounding of the model's own).
"""
from __future__ import annotations


from sieve.ir.graph import Graph
from sieve.ir.registry import opdef
from sieve.ir.types import DType, TensorType


def dequantize_graph(graph: Graph) -> Graph:
    nodes = []
    for node in graph:
        d = opdef(node.op)
        ins = [graph[i].out for i in node.inputs]
        out = TensorType(node.out.shape) if d.scale != "host" else node.out
        params: dict = {}
        if node.out.dtype is DType.FLOAT32:
            params = dict(node.params)
        elif d.dequantize is not None:
            params = d.dequantize(node, ins)
        attrs = dict(node.attrs)
        q = node.out.quant
        if d.act and q is not None and node.out.dtype is DType.INT8:
            lo, hi = float(q.scale[0]) * (-128 - q.zp), float(q.scale[0]) * (127 - q.zp)
            act = attrs.get("act", "none")
            if act == "relu":
                lo = max(lo, 0.0)
            elif act == "clip":
                lo, hi = max(lo, attrs["clip_min"]), min(hi, attrs["clip_max"])
            attrs.update(act="clip", clip_min=lo, clip_max=hi)
        nodes.append(node.evolve(out=out, params=params, attrs=attrs))
    return graph.replace_nodes(nodes)
