"""Low-bit weights on float graphs: each conv and dense layer's weights moved onto the int4 grid.

int4 weights are symmetric per output channel: w = s * w4, w4 in -8..7. With scale groups (``group``
input channels, shared by the kernel taps, along the accelerator's reduction order), the scale is two
levels, as in VS-Quant (Dai et al., MLSys 2021): a float step s per output channel times an integer
multiplier q in 1..15 per group, w = s * q * w4. The integer weight the accelerator multiplies by is
q * w4 (at most 8 bits), so accumulation, bias and requantization stay those of int8 weights.

The clipping range is chosen by the quantization error (``clip="mse"``): per channel (or group), the
range among ``ALPHAS`` x the largest magnitude that minimizes the squared error; then each group's
multiplier is the q in 1..15 nearest its own best step, or a neighbour of it with less error. ``clip="minmax"`` takes the largest magnitude.

The pass runs before calibration, so the activation ranges are those of the low-bit model; it leaves
the weights float (on the grid) and records the grid: attrs ``w_bits``, ``w_group``; params ``w_step``
(float32 [K]) and, with groups, ``w_mult`` (uint8 [K][groups], groups in reduction order). The
quantize pass then takes w / w_step, exact integers, as the layer's int8 weights.
"""
from __future__ import annotations

import numpy as np

from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.passes.prune import reduction_order
from sieve.ir.registry import opdef

ALPHAS = np.linspace(0.4, 1.0, 16)          # clipping ranges searched, as fractions of the largest magnitude
MAX_MULT = 15
LO, HI = -8, 7


def lowbit_layers(graph: Graph, keep_ends: bool = False) -> list[str]:
    """Layers that take low-bit weights: convolutions and dense layers with constant weights (the first
    and last kept at int8 with ``keep_ends``)."""
    names = [n.name for n in graph if opdef(n.op).weighted and n.params["w"].ndim in (2, 4)]
    return names[1:-1] if keep_ends else names


def _sq_err(v: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Squared error of v [..., n] on the int4 grid of ``step`` [...] (zero steps: all zeros)."""
    s = np.where(step > 0, step, 1.0)[..., None]
    q = np.clip(np.rint(v / s), LO, HI)
    return np.where(step > 0, ((v - q * s) ** 2).sum(axis=-1), (v ** 2).sum(axis=-1))


def best_step(v: np.ndarray, clip: str) -> np.ndarray:
    """The step of each row of v [..., n] (the int4 grid's spacing) by ``clip``."""
    amax = np.abs(v).max(axis=-1)
    if clip == "minmax":
        return amax / HI
    best, best_err = amax / HI, np.full(amax.shape, np.inf)
    for a in ALPHAS:
        step = a * amax / HI
        err = _sq_err(v, step)
        better = err < best_err
        best, best_err = np.where(better, step, best), np.where(better, err, best_err)
    return best


def int4_grid(cl: np.ndarray, group: int, clip: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Weights in reduction order [K][T][C] (T kernel taps) -> (w4 [K][T][C] int, step [K], multipliers
    [K][groups] or None)."""
    k, t, c = cl.shape
    w = cl.astype(np.float64)
    if not group or group >= c:
        step = best_step(w.reshape(k, -1), clip)
        s = np.where(step > 0, step, 1.0)
        return np.clip(np.rint(w / s[:, None, None]), LO, HI).astype(np.int64), step, None
    ng = -(-c // group)
    padded = np.pad(w, ((0, 0), (0, 0), (0, ng * group - c)))
    v = padded.reshape(k, t, ng, group).transpose(0, 2, 1, 3).reshape(k, ng, t * group)   # [K][groups][values]
    g_step = best_step(v, clip)
    step = g_step.max(axis=1) / MAX_MULT                       # the largest group at q = 15
    # each group's multiplier: the nearest to its own best step, or a neighbour with less error
    near = np.clip(np.rint(g_step / np.where(step > 0, step, 1.0)[:, None]), 1, MAX_MULT).astype(np.int64)
    best_q, best_err = near, np.full((k, ng), np.inf)
    for d in (-1, 0, 1):
        q = np.clip(near + d, 1, MAX_MULT)
        err = _sq_err(v, step[:, None] * q)
        better = err < best_err
        best_q, best_err = np.where(better, q, best_q), np.where(better, err, best_err)
    s = np.where(step > 0, step, 1.0)[:, None, None] * np.repeat(best_q, group, axis=1)[:, None, :c]
    w4 = np.clip(np.rint(w / s), LO, HI).astype(np.int64)
    return w4, step, best_q.astype(np.uint8)


def lowbit_weights(graph: Graph, bits: int = 4, group: int = 0, clip: str = "mse", keep_ends: bool = False) -> Graph:
    """Every low-bit layer's float weights moved onto its int4 grid (module docstring)."""
    if bits != 4:
        raise IRError(f"low-bit weights are 4 bits, got {bits}")
    if group and (group & (group - 1) or not 2 <= group <= 1 << 15):
        raise IRError(f"a scale group is a power of two from 2 to 32768 input channels, got {group}")
    if clip not in ("mse", "minmax"):
        raise IRError(f"unknown weight clipping '{clip}' (mse, minmax)")
    names = set(lowbit_layers(graph, keep_ends))
    nodes = []
    for node in graph:
        if node.name in names and node.attrs.get("w_bits") != 4:   # int4 weights of the model stay its own
            node = _lowbit_node(graph, node, group, clip)
        nodes.append(node)
    return graph.replace_nodes(nodes)


def _lowbit_node(graph: Graph, node: Node, group: int, clip: str) -> Node:
    w = node.params["w"]
    if not np.isfinite(w).all():
        raise IRError("weights that are not finite cannot be quantized", node.name)
    grouped = group and node.attrs.get("groups", 1) == 1
    cl, back, shape = reduction_order(graph, node)              # [K][KH][KW][C] in the MATMUL's order
    k = cl.shape[0]
    if node.op is not Op.CONV2D:                                 # a dense layer's reduction is one axis
        cl = cl.reshape(k, 1, 1, -1)
    kh, kw, c = cl.shape[1:]
    w4, step, mult = int4_grid(cl.reshape(k, kh * kw, c), group if grouped else 0, clip)
    scale = np.repeat(mult, group, axis=1)[:, None, :c] if mult is not None else 1
    grid = (w4 * scale * step[:, None, None]).reshape(k, kh, kw, c)
    if node.op is not Op.CONV2D:
        grid = grid.reshape(reduction_order(graph, node)[0].shape)
    w_new = grid.transpose(back).reshape(shape) if back else grid.reshape(shape)
    params = {**node.params, "w": w_new.astype(np.float32), "w_step": step.astype(np.float32)}
    if mult is not None:
        params["w_mult"] = mult
    attrs = {"w_bits": 4, "w_group": group if mult is not None else 0}
    return node.evolve(params=params).with_attrs(**attrs)
