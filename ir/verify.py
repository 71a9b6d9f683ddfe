"""verify(graph): structural and type checks, run between passes in tests."""
from __future__ import annotations

import numpy as np

from sieve.ir.graph import Graph, IRError, Op
from sieve.ir.registry import opdef
from sieve.ir.types import DType

_INT_PARAMS = {"b": np.int32, "requant": np.float32}


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
    if node.op is Op.SOFTMAX and ins[0].dtype is DType.INT8:
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
        if node.op not in (Op.CONV2D, Op.DENSE) or node.name not in graph.outputs:
            raise IRError("only a conv or dense graph output may be int32 (no requantization)", node.name)
        return
    if node.out.quant is None or len(node.out.quant.scale) != 1:
        raise IRError("int8 tensor needs per-tensor quantization", node.name)
    if not -128 <= node.out.quant.zp <= 127:
        raise IRError(f"zero point {node.out.quant.zp} out of int8 range", node.name)
    if node.op is Op.AFFINE:
        for key in ("scale", "shift"):
            if node.params[key].dtype != np.float32:
                raise IRError(f"parameter '{key}' must be float32", node.name)
    if node.op in (Op.GLOBALAVGPOOL, Op.AVGPOOL):
        r = node.params.get("requant")
        if r is None or r.dtype != np.float32 or r.shape != (node.out.shape[1],):
            raise IRError("parameter 'requant' must be float32 per channel", node.name)
    if node.op in (Op.CONV2D, Op.DENSE):
        w = node.params["w"]
        # int16 weights hold imported weights with zero points that do not fit int8 (fmt 3)
        if w.dtype not in (np.int8, np.int16) or (w.dtype == np.int16 and np.abs(w).max(initial=0) > 255):
            raise IRError("parameter 'w' must be int8 (or int16 within +-255)", node.name)
        per_k = w.shape[:-1] if node.op is Op.DENSE else w.shape[:1]
        for key, dt in _INT_PARAMS.items():
            arr = node.params.get(key)
            if arr is None or arr.dtype != dt:
                raise IRError(f"parameter '{key}' must be {np.dtype(dt).name}", node.name)
            if arr.shape != per_k:
                raise IRError(f"parameter '{key}' must have shape {list(per_k)}", node.name)
    if node.op in (Op.MAXPOOL, Op.RELU, Op.FLATTEN) and node.out.quant != ins[0].quant:
        raise IRError(f"{node.op.value} must keep its input's quantization", node.name)
