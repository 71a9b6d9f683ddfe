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

import numpy as np

from sieve.ir.graph import Graph, Op
from sieve.ir.types import DType, TensorType


def dequantize_graph(graph: Graph) -> Graph:
    nodes = []
    for node in graph:
        out = TensorType(node.out.shape) if node.op is not Op.SOFTMAX else node.out
        params: dict = {}
        if node.op in (Op.CONV2D, Op.DENSE) and node.out.dtype is not DType.FLOAT32:
            s_in = float(graph[node.inputs[0]].out.quant.scale[0])
            k_shape = node.params["b"].shape
            if node.out.dtype is DType.INT8:
                s_w = node.params["requant"].astype(np.float64) * node.out.quant.scale[0] / s_in
            else:                                             # raw int32 output: no scales known
                s_w, s_in = np.ones(k_shape), 1.0
            w = node.params["w"].astype(np.float64)
            per_k = s_w.reshape(k_shape + (1,) * (w.ndim - len(k_shape)))
            params = {"w": (w * per_k).astype(np.float32),
                      "b": (node.params["b"].astype(np.float64) * s_in * s_w).astype(np.float32)}
        elif node.out.dtype is DType.FLOAT32 or node.op is Op.AFFINE:
            params = dict(node.params)
        attrs = dict(node.attrs)
        q = node.out.quant
        if node.op in (Op.CONV2D, Op.DENSE, Op.ADD, Op.AFFINE) and q is not None and node.out.dtype is DType.INT8:
            lo, hi = float(q.scale[0]) * (-128 - q.zp), float(q.scale[0]) * (127 - q.zp)
            act = attrs.get("act", "none")
            if act == "relu":
                lo = max(lo, 0.0)
            elif act == "clip":
                lo, hi = max(lo, attrs["clip_min"]), min(hi, attrs["clip_max"])
            attrs.update(act="clip", clip_min=lo, clip_max=hi)
        nodes.append(node.evolve(out=out, params=params, attrs=attrs))
    return graph.replace_nodes(nodes)
