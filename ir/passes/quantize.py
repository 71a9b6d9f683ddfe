"""Calibration (min-max) and INT8 quantization with DESIGN.md's integer semantics.

- weights: int8, symmetric per output channel, range [-127, 127];
- activations: int8, asymmetric per tensor, ranges widened to include 0;
- bias: int32 at scale s_in * s_w[c];
- requantization multiplier: float32(float32(s_in) * float32(s_w[c])) / float32(s_out).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.interpret import run_float
from sieve.ir.registry import add_multipliers, gap_scale
from sieve.ir.types import DType, QuantParams, TensorType

Ranges = dict[str, tuple[float, float]]
_KEEPS_SCALE = (Op.MAXPOOL, Op.RELU, Op.FLATTEN)          # integer forms that keep the input's quantization


def calibrate(graph: Graph, samples: Mapping[str, np.ndarray], method: str = "minmax",
              percentile: float = 99.99, batch: int = 8, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> Ranges:
    """The range of every tensor over the calibration samples.

    minmax: the observed minimum and maximum. percentile: the ``percentile``-th and
    (100 - ``percentile``)-th percentiles, estimated from up to 65,536 values per tensor
    per batch drawn with a seeded generator (outliers no longer stretch the scale).
    ``progress(done, total)`` is called after each batch of samples."""
    if method not in ("minmax", "percentile"):
        raise IRError(f"unknown calibration method '{method}' (minmax, percentile)")
    n = len(next(iter(samples.values())))
    rng = np.random.default_rng(seed)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    picks: dict[str, list[np.ndarray]] = {}
    # ops that keep their input's scale need no range; after a fused ReLU the minimum is at least 0,
    # and a range always includes 0, so only the maximum is measured there
    skip = {n.name for n in graph if n.op in _KEEPS_SCALE or n.op is Op.SOFTMAX}
    relu = {n.name for n in graph if n.attrs.get("act") == "relu"}

    def observe(name: str, value: np.ndarray) -> None:
        if name in skip:
            return
        lo[name] = 0.0 if method == "minmax" and name in relu else min(lo.get(name, np.inf), float(value.min()))
        hi[name] = max(hi.get(name, -np.inf), float(value.max()))
        if method == "percentile":
            flat = value.ravel()
            take = flat if flat.size <= 65536 else flat[rng.integers(0, flat.size, 65536)]
            picks.setdefault(name, []).append(take)

    for start in range(0, n, batch):
        run_float(graph, {k: v[start:start + batch] for k, v in samples.items()}, observe=observe)
        if progress is not None:
            progress(min(start + batch, n), n)
    if method == "minmax":
        return {k: (lo[k], hi[k]) for k in lo}
    out = {}
    for k, parts in picks.items():
        values = np.concatenate(parts)
        out[k] = (float(np.percentile(values, 100 - percentile)), float(np.percentile(values, percentile)))
    return out


def calibrate_minmax(graph: Graph, samples: Mapping[str, np.ndarray], batch: int = 8) -> Ranges:
    """Observed (min, max) of every tensor over the calibration samples."""
    return calibrate(graph, samples, "minmax", batch=batch)


def activation_qparams(lo: float, hi: float) -> QuantParams:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
    zp = int(np.clip(np.rint(-128.0 - lo / float(scale)), -128, 127))
    return QuantParams.per_tensor(float(scale), zp)


def _quantize_weights(node: Node, s_in: np.float32, s_out: np.float32) -> dict[str, np.ndarray]:
    w = node.params["w"]
    k = w.shape[0]
    amax = np.abs(w.reshape(k, -1)).max(axis=1).astype(np.float64)       # exact in the weights' own type
    s_w = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    bshape = (k,) + (1,) * (w.ndim - 1)
    q = np.divide(w, s_w.reshape(bshape), dtype=np.float64)            # in float64, without a float64 copy of w
    wq = np.clip(np.rint(q, out=q), -127, 127, out=q).astype(np.int8)
    s_acc = (np.float32(s_in) * s_w).astype(np.float32)
    bias = np.rint(node.params["b"].astype(np.float64) / s_acc.astype(np.float64))
    bias = np.clip(bias, -2**31, 2**31 - 1).astype(np.int32)
    requant = (s_acc / np.float32(s_out)).astype(np.float32)
    return {"w": wq, "b": bias, "requant": requant, "w_scale": s_w}


def quantize_graph(graph: Graph, ranges: Ranges) -> Graph:
    """Float graph + calibrated ranges -> int8 graph (same names, same structure)."""
    qtypes: dict[str, TensorType] = {}
    nodes = []
    for node in graph:
        if node.name not in ranges and node.op not in _KEEPS_SCALE and node.op is not Op.SOFTMAX:
            raise IRError("no calibration range for this tensor", node.name)
        if node.op is Op.SOFTMAX:                          # stays float, on the host
            qtypes[node.name] = node.out
            nodes.append(node)
            continue
        if node.op in _KEEPS_SCALE:
            quant = qtypes[node.inputs[0]].quant          # these ops keep their input's scale
        else:
            quant = activation_qparams(*ranges[node.name])
        out = TensorType(node.out.shape, DType.INT8, quant)
        params = dict(node.params)
        if node.op in (Op.CONV2D, Op.DENSE):
            s_in = np.float32(qtypes[node.inputs[0]].quant.scale[0])
            params = _quantize_weights(node, s_in, np.float32(quant.scale[0]))
        elif node.op is Op.ADD:
            add_multipliers([qtypes[i] for i in node.inputs], out)   # validates the scales
            # int8 tensors of Sieve's QDQ export become uint8 in onnxruntime: its uint8 Add arithmetic
            node = node.with_attrs(arith="u8")
        elif node.op in (Op.GLOBALAVGPOOL, Op.AVGPOOL):
            count = (int(np.prod(node.attrs["kernel"])) if node.op is Op.AVGPOOL
                     else int(np.prod(graph[node.inputs[0]].out.shape[2:])))
            scale = gap_scale(qtypes[node.inputs[0]].quant.scale[0], quant.scale[0], count)
            params = {"requant": np.full(node.out.shape[1], scale, np.float32)}
        qtypes[node.name] = out
        nodes.append(node.evolve(out=out, params=params))
    return graph.replace_nodes(nodes)
