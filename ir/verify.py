"""verify(graph): structural and type checks, run between passes in tests."""
from __future__ import annotations

import numpy as np

from sieve.ir.graph import Graph, IRError
from sieve.ir.registry import opdef
from sieve.ir.types import DType

def verify(graph: Graph) -> Graph:
    """Raise IRError naming the first bad node (with its neighbourhood); return the graph."""
    if not graph.inputs:
        raise IRError("graph has no inputs")
    for node in graph:
        try:
            _check_node(graph, node)
        except IRError as err:
            if err.node is None or "\n" in str(err):
                raise
            message = str(err).split(": ", 1)[-1].split(" (hint: ")[0]
            raise IRError(message, node.name, graph.neighbourhood(node.name), err.hint) from None
    return graph


def _check_node(graph: Graph, node) -> None:
    d = opdef(node.op)
    if d.arity >= 0 and len(node.inputs) != d.arity:
        raise IRError(f"{node.op.value} takes {d.arity} inputs, has {len(node.inputs)}", node.name)
    ins = [graph[i].out for i in node.inputs]
    shape = d.infer(node, ins)
    if tuple(shape) != node.out.shape:
        raise IRError(f"declared shape {list(node.out.shape)} but inference gives {list(shape)}", node.name)
    if d.scale == "host" and ins[0].dtype is DType.INT8:
        if node.name not in graph.outputs or graph.consumers(node.name):
            raise IRError("an integer graph runs softmax only on the host, as a graph output", node.name)
        return
    for key, arr in node.params.items():
        # one pass without a temporary: the sum is finite exactly when every value is (weights are far
        # below the float64 range)
        if arr.dtype.kind == "f" and not np.isfinite(np.sum(arr, dtype=np.float64)):
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise IRError(f"parameter '{key}' has {bad:,} NaN or infinite value{'s' * (bad != 1)}", node.name,
                          hint="the model's weights are broken; re-export or retrain it")
    q = node.out.quant
    if q is not None and not all(np.isfinite(s) and s > 0 for s in q.scale):
        raise IRError(f"quantization scale {q.scale[0] if len(q.scale) == 1 else list(q.scale)} is not a "
                      "positive finite number", node.name)
    quantized = node.out.dtype is not DType.FLOAT32
    for t in ins:
        if (t.dtype is not DType.FLOAT32) != quantized:
            raise IRError("mixes float and integer tensors", node.name)
    if not quantized:
        return
    if node.out.dtype is DType.INT32:
        if not d.weighted or node.name not in graph.outputs:
            raise IRError("only a conv or dense graph output may be int32 (no requantization)", node.name)
        return
    if node.out.quant is None or len(node.out.quant.scale) != 1:
        raise IRError("int8 tensor needs per-tensor quantization", node.name)
    if not -128 <= node.out.quant.zp <= 127:
        raise IRError(f"zero point {node.out.quant.zp} out of int8 range", node.name)
    if d.check_int is not None:
        d.check_int(node, ins)
    if d.scale == "keep" and node.out.quant != ins[0].quant:
        raise IRError(f"{node.op.value} must keep its input's quantization", node.name)
