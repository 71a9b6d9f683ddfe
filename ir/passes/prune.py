"""Pruning passes on float graphs: magnitude (per layer or global) and N:M.

Prunable layers are convolutions (groups = 1) and dense layers. N:M blocks run along
the accelerator's reduction order: M consecutive input channels at one kernel
position (a dense layer after a flatten of [N, C, H, W] reduces over (h, w, c), so its
blocks are channels too). A layer whose channel count M does not divide stays dense.
Quantization only adds zeros (weights that round to 0) and never breaks an N:M pattern;
the compiler finds and uses every zero.
"""
from __future__ import annotations

import numpy as np

from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.registry import opdef


def prunable(graph: Graph, keep_ends: bool = False) -> list[str]:
    names = [n.name for n in graph if opdef(n.op).weighted and n.attrs.get("groups", 1) == 1
             and n.params["w"].ndim in (2, 4)]
    return names[1:-1] if keep_ends else names


def _zero_smallest(w: np.ndarray, count: int) -> np.ndarray:
    out = w.copy().ravel()
    if count > 0:
        out[np.argpartition(np.abs(out), min(count, out.size) - 1)[:count]] = 0
    return out.reshape(w.shape)


def prune_magnitude(graph: Graph, sparsity: float, scope: str = "layer", keep_ends: bool = False) -> Graph:
    """Zero the smallest-magnitude weights: ``sparsity`` of each layer, or of all of them together."""
    if not 0.0 <= sparsity < 1.0:
        raise IRError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("layer", "global"):
        raise IRError(f"unknown pruning scope '{scope}' (layer, global)")
    names = set(prunable(graph, keep_ends))
    if scope == "global" and names:
        mags = np.concatenate([np.abs(graph[n].params["w"]).ravel() for n in names])
        count = int(round(sparsity * mags.size))
        cut = np.partition(mags, count - 1)[count - 1] if count else -1.0
    nodes = []
    for node in graph:
        if node.name in names:
            w = node.params["w"]
            if scope == "layer":
                w = _zero_smallest(w, int(round(sparsity * w.size)))
            else:
                w = np.where(np.abs(w) <= cut, 0, w).astype(w.dtype)
            node = node.evolve(params={**node.params, "w": w})
        nodes.append(node)
    return graph.replace_nodes(nodes)


def reduction_order(graph: Graph, node: Node) -> tuple[np.ndarray, tuple, tuple]:
    """Weights as [K, ..., C] in reduction order, with the shapes to undo it."""
    w = node.params["w"]
    if node.op is Op.CONV2D:
        return w.transpose(0, 2, 3, 1), (0, 3, 1, 2), w.shape
    src = graph[node.inputs[0]]
    if src.op is Op.FLATTEN and len(graph[src.inputs[0]].out.shape) == 4:
        _, c, h, wd = graph[src.inputs[0]].out.shape
        return w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1), (0, 3, 1, 2), w.shape
    return w[:, None, None, :], None, w.shape


def prune_nm(graph: Graph, n: int, m: int, keep_ends: bool = False) -> Graph:
    """Keep the n largest-magnitude weights in every block of m channels (reduction order)."""
    if not 1 <= n < m <= 16:
        raise IRError(f"N:M needs 1 <= N < M <= 16, got {n}:{m}")
    names = set(prunable(graph, keep_ends))
    nodes = []
    for node in graph:
        if node.name in names:
            cl, back, shape = reduction_order(graph, node)
            if cl.shape[-1] % m == 0:
                blocks = cl.reshape(cl.shape[:-1] + (cl.shape[-1] // m, m))
                mag = np.abs(blocks)
                keep = mag >= -np.partition(-mag, n - 1, axis=-1)[..., n - 1:n]  # the n largest ...
                over = keep.sum(axis=-1) > n                                     # ... unless ties
                if over.any():
                    top = np.argsort(-mag[over], axis=-1, kind="stable")[:, :n]
                    fixed = np.zeros(top.shape[:1] + (m,), bool)
                    np.put_along_axis(fixed, top, True, axis=-1)
                    keep[over] = fixed
                cl = np.where(keep, blocks, 0).reshape(cl.shape)
                w = cl.transpose(back).reshape(shape) if back else cl[:, 0, 0, :]
                node = node.evolve(params={**node.params, "w": w.astype(node.params["w"].dtype)})
        nodes.append(node)
    return graph.replace_nodes(nodes)


def weight_sparsity(graph: Graph) -> dict[str, float]:
    """Fraction of zero weights per conv/dense layer (of the int8 weights in a quantized graph)."""
    return {n.name: float(np.mean(n.params["w"] == 0)) for n in graph if opdef(n.op).weighted}
