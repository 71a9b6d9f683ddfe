"""Calibration (min-max) and INT8 quantization with DESIGN.md's integer semantics.

- weights: int8, symmetric per output channel, range [-127, 127];
- activations: int8, asymmetric per tensor, ranges widened to include 0;
- bias: int32 at scale s_in * s_w[c];
- requantization multiplier: float32(float32(s_in) * float32(s_w[c])) / float32(s_out).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from sieve.ir.graph import Graph, IRError, Op
from sieve.ir.interpret import graph_batch, run_float
from sieve.ir.registry import opdef
from sieve.ir.types import DType, QuantParams, TensorType

Ranges = dict[str, tuple[float, float]]


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
    skip = {n.name for n in graph if opdef(n.op).scale != "own"}
    relu = {n.name for n in graph if n.attrs.get("act") == "relu"}

    def observe(name: str, value: np.ndarray) -> None:
        if name in skip:
            return
        if not np.isfinite(value).all():
            raise IRError("calibration: its float values overflow float32 (NaN or infinite) on the calibration "
                          "data; check the data's scale and the model's weights", name)
        lo[name] = 0.0 if method == "minmax" and name in relu else min(lo.get(name, np.inf), float(value.min()))
        hi[name] = max(hi.get(name, -np.inf), float(value.max()))
        if method == "percentile":
            flat = value.ravel()
            take = flat if flat.size <= 65536 else flat[rng.integers(0, flat.size, 65536)]
            picks.setdefault(name, []).append(take)

    gb = graph_batch(graph)
    if any(node.op is Op.MOVE for node in graph):     # views span the model's batch: whole multiples of it
        batch = max(gb, batch // gb * gb)
    for start in range(0, n, batch):
        chunk = {k: v[start:start + batch] for k, v in samples.items()}
        size = len(next(iter(chunk.values())))
        if size % gb:                                   # the last chunk, wrapped around to the model's batch
            chunk = {k: np.resize(v, (-(-size // gb) * gb,) + v.shape[1:]) for k, v in chunk.items()}
        with np.errstate(all="ignore"):               # an overflow is refused where it is observed
            run_float(graph, chunk, observe=observe)
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
    if not scale >= np.finfo(np.float32).tiny:         # a range too small for a float32 step: all zeros
        scale = np.float32(1.0)
    zp = int(np.clip(np.rint(-128.0 - lo / float(scale)), -128, 127))
    return QuantParams.per_tensor(float(scale), zp)


def quantize_graph(graph: Graph, ranges: Ranges) -> Graph:
    """Float graph + calibrated ranges -> int8 graph (same names, same structure)."""
    qtypes: dict[str, TensorType] = {}
    nodes = []
    for node in graph:
        d = opdef(node.op)
        if d.scale == "host":                              # stays float, on the host
            qtypes[node.name] = node.out
            nodes.append(node)
            continue
        if d.scale == "keep":                              # the input's quantization, unchanged
            quant = qtypes[node.inputs[0]].quant
        elif node.name not in ranges:
            raise IRError("no calibration range for this tensor", node.name)
        else:
            quant = activation_qparams(*ranges[node.name])
        out = TensorType(node.out.shape, DType.INT8, quant)
        params = dict(node.params)
        if d.quantize is not None:
            params, attrs = d.quantize(node, [qtypes[i] for i in node.inputs], out)
            node = node.with_attrs(**attrs) if attrs else node
        qtypes[node.name] = out
        nodes.append(node.evolve(out=out, params=params))
    return graph.replace_nodes(nodes)
