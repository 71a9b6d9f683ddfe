"""Tiling search for conv/dense layers with an analytical cost model.

Every candidate tile (output channels x output rows x output columns x input
channels, and a loop order) that fits the double-buffered scratchpad and the
accumulator is priced; the cheapest wins. The model: compute cycles from the
MAC-array shape (a group of ``simd_lanes`` reduction values costs one cycle per
output column, ``pe_rows`` output channels at a time), DMA cycles from the bytes
each loop order re-fetches divided by DRAM bandwidth, overlapped by double
buffering. With two buffer slots a step's period is at least half of (DRAM
latency + one step's transfer + one step's compute), so tiles too small to hide
the latency are priced as latency-bound.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from sieve.arch.config import ArchConfig
from sieve.scheduler.plan import ALIGN, ConvGeom, MatmulTiling, SpadLayout, align, ceil_div

ORDERS = ("k_outer", "pixels_outer")


def _choices(total: int, quantum: int = 1) -> list[int]:
    """Tile sizes to try: total, and halvings rounded up to the quantum."""
    out, t = set(), total
    while t >= 1:
        out.add(min(total, ceil_div(t, quantum) * quantum))
        if t == 1:
            break
        t = ceil_div(t, 2)
    return sorted(out, reverse=True)


def matmul_spad(g: ConvGeom, t: MatmulTiling, lanes: int) -> SpadLayout:
    ih = g.max_in(t.oh_t, g.sh, g.dh, g.kh, g.h)
    iw = g.max_in(t.ow_t, g.sw, g.dw, g.kw, g.w)
    # "w" holds a weight bundle: the weight tile, then int32 bias and float32 scales
    return SpadLayout((("w", align(g.weight_tile_bytes(t.k_t, t.c_t, lanes)) + 8 * t.k_t),
                       ("x", ih * iw * t.c_t), ("out", t.oh_t * t.ow_t * t.k_t * g.out_bytes)))


@dataclass(frozen=True)
class Estimate:
    cycles: int
    compute: int
    dma: int
    w_loads: int
    x_loads: int


def estimate(g: ConvGeom, t: MatmulTiling, arch: ArchConfig) -> Estimate:
    """The cost model's figures for one tiling (``_estimate_all`` on a single candidate)."""
    one = lambda v: np.array([v], np.int64)  # noqa: E731
    total, compute, dma, w_loads, x_loads = _estimate_all(g, one(t.k_t), one(t.c_t), one(t.oh_t), one(t.ow_t),
                                                          np.array([t.order == "pixels_outer"]), arch)
    return Estimate(int(total[0]), int(compute[0]), int(dma[0]), int(w_loads[0]), int(x_loads[0]))


def fits(g: ConvGeom, t: MatmulTiling, arch: ArchConfig) -> bool:
    return (matmul_spad(g, t, arch.core.simd_lanes).total <= arch.core.scratchpad_bytes
            and t.k_t * t.oh_t * t.ow_t <= arch.acc_entries)


def _fmt_name(g: ConvGeom) -> str:
    return {"dense": "dense", "unstructured": "unstructured"}.get(g.fmt, f"{g.nm[0]}:{g.nm[1]}")


def _max_in(size: np.ndarray, stride: int, dil: int, kern: int, extent: int) -> np.ndarray:
    return np.minimum(extent, (size - 1) * stride + dil * (kern - 1) + 1)


def _split(total: int, tile: np.ndarray):
    """The two tile sizes of each split (full tiles, then the remainder) and how often each occurs."""
    full, rest = total // tile, total % tile
    return (tile, full), (rest, (rest > 0).astype(np.int64))


def _granule(n, gran: int):
    return -(-n // gran) * gran


def _align(n: np.ndarray) -> np.ndarray:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _estimate_all(g: ConvGeom, k_t, c_t, oh_t, ow_t, pixels_outer, arch: ArchConfig):
    """The cost model over arrays of candidate tilings: (cycles, compute, dma, weight loads, input
    loads), each [candidates]. Compute: every (k, c, pixel) tile once per image (exact for unstructured
    weights, from the layer's own nonzero pattern); DMA: the bytes each loop order re-fetches over the
    DRAM bandwidth; double-buffered steady state: a step's period is bounded by compute, by the DRAM
    channel, and by the two-slot loop (load, its latency and compute of two steps in flight)."""
    c = arch.core
    ks, cs = _split(g.k, k_t), _split(g.c, c_t)
    if g.depthwise:
        cs = ((np.ones_like(c_t), np.ones_like(c_t)),)
    ys, xs = _split(g.oh, oh_t), _split(g.ow, ow_t)
    pixels = [(ny * nx, ny, nx, my * mx) for ny, my in ys for nx, mx in xs]
    n_sp = sum(mp for *_, mp in pixels)
    # the MAC array: per weight block (pe_rows x simd_lanes) a cycle per output column, plus the block's
    # load and drain where weights are not double-buffered; at least what the busiest scratchpad port
    # delivers (weights and activations in banks of their own: the layout puts slots on bank boundaries)
    bank, port = c.scratchpad_bytes // c.scratchpad_banks, c.scratchpad_port_bytes
    per_col, per_block = (1, 0) if c.weights_double_buffered else (
        1, -(-(c.pe_rows * c.simd_lanes) // port) + c.matmul_fill_cycles)

    def fed(nbytes, span):
        """Cycles to read ``nbytes`` spread over a ``span``-byte region through its banks' ports."""
        return -(-nbytes // (port * np.minimum(np.maximum(-(-span // bank), 1), c.scratchpad_banks)))

    if g.fmt == "unstructured" and g.rows is not None:
        tiles = sum(mk for _, mk in ks) * sum(mc for _, mc in cs)
        pairs = {(int(a), int(b)) for a, b in zip(k_t.tolist(), c_t.tolist())}
        bgs = {pair: g.rows.batch_groups(pair[0], pair[1], c.simd_lanes, c.pe_rows, g.balance) for pair in pairs}
        bg = np.array([bgs[a, b] for a, b in zip(k_t.tolist(), c_t.tolist())], np.int64)
        all_cols = sum(mp * cols for cols, _, _, mp in pixels)
        x_span = _max_in(oh_t, g.sh, g.dh, g.kh, g.h) * _max_in(ow_t, g.sw, g.dw, g.kw, g.w) * c_t
        mac = bg * (all_cols * per_col + n_sp * per_block)
        mm = np.maximum(mac, fed(bg * c.simd_lanes * all_cols, x_span)) + tiles * n_sp * c.matmul_fill_cycles
    else:
        mm = 0
        for nk, mk in ks:
            batches = -(-nk // c.pe_rows)
            for nc, mc in cs:
                blocks = batches * g.row_groups(nc, c.simd_lanes)
                w_tile = g.weight_tile_bytes(nk, nc, c.simd_lanes)
                r = g.reduction(nc)
                for cols, ny, nx, mp in pixels:
                    x_span = _max_in(ny, g.sh, g.dh, g.kh, g.h) * _max_in(nx, g.sw, g.dw, g.kw, g.w) * (
                        nk if g.depthwise else nc)
                    x_read = (nk if g.depthwise else batches) * r * cols
                    step = np.maximum(np.maximum(blocks * (cols * per_col + per_block), fed(w_tile, w_tile)),
                                      fed(x_read, x_span))
                    mm = mm + mk * mc * mp * (step + c.matmul_fill_cycles)
    rq = sum(mk * mp * (-(-(nk * cols) // c.vector_lanes) + c.vector_fill_cycles)
             for nk, mk in ks for cols, _, _, mp in pixels)
    compute = g.n * g.groups * (mm + rq)
    n_k = -(-g.k // k_t)
    n_c = np.ones_like(c_t) if g.depthwise else -(-g.c // c_t)
    w_bytes = sum(mk * mc * g.weight_tile_bytes(nk, nc, c.simd_lanes) for nk, mk in ks for nc, mc in cs) + 8 * g.k
    # DRAM moves whole granules (bursts, or L2 lines): a tile of fewer channels than a stored pixel
    # holds is a row per pixel, each rounded up
    gran = arch.memory.l2_line_bytes if arch.memory.l2_bytes else arch.memory.dram_burst_bytes
    c_mem, k_mem = g.stored_channels()
    n_c_tiles = -(-g.c // c_t)
    x_bytes = 0
    for _, ny, nx, mp in pixels:
        ih, iw = _max_in(ny, g.sh, g.dh, g.kh, g.h), _max_in(nx, g.sw, g.dw, g.kw, g.w)
        if g.depthwise:
            row = np.where(k_t >= k_mem, _granule(iw * k_mem, gran), iw * _granule(k_t, gran) * -(-g.k // k_t))
        else:
            row = np.where(c_t >= c_mem, _granule(iw * c_mem, gran), iw * _granule(c_t, gran) * n_c_tiles)
        x_bytes = x_bytes + mp * ih * row
    out_row = np.where(k_t * g.out_bytes >= k_mem * g.out_bytes, _granule(g.ow * k_mem * g.out_bytes, gran),
                       g.ow * _granule(k_t * g.out_bytes, gran) * -(-g.k // k_t))
    many = (n_k * n_c) > 1
    w_loads = np.where(pixels_outer, np.where(many, g.n * n_sp, 1), np.where(n_c == 1, 1, n_sp * g.n))
    x_loads = np.where(pixels_outer, np.where(n_c > 1, n_k, 1), np.where(n_sp * n_c * g.n > 1, n_k, 1))
    if g.depthwise:
        x_loads = np.ones_like(x_loads)
    moved = g.groups * (w_bytes * w_loads + x_bytes * x_loads * g.n + g.n * g.oh * out_row)
    dma = np.ceil(moved / arch.memory.dram_bytes_per_cycle).astype(np.int64)
    steps = g.groups * g.n * n_sp * n_k * n_c
    lat = arch.memory.dram_latency_cycles
    period = np.maximum(np.maximum(compute / steps, dma / steps), (lat + (dma + compute) / steps) / 2)
    total = (steps * period + dma / steps + 2 * lat).astype(np.int64)
    return total, compute, dma, w_loads, x_loads


@functools.lru_cache(maxsize=1024)
def search(g: ConvGeom, arch: ArchConfig) -> tuple[MatmulTiling, Estimate, str] | None:
    """The cheapest fitting tiling (cached: networks repeat layer shapes, and both keys are frozen).
    Every candidate is priced at once with numpy (``_estimate_all``); ties go to fewer steps, then
    the weights-outer order, then the candidate listed first."""
    c = arch.core
    # whole PE-row groups first; smaller tiles too, for layers whose window fills the scratchpad
    k_opts = sorted(set(_choices(g.k, c.pe_rows)) | set(_choices(min(g.k, c.pe_rows))), reverse=True)
    c_opts = _choices(g.c, c.simd_lanes) if g.kh * g.kw == 1 else _choices(g.c)
    if g.depthwise:
        c_opts = [0]                # c_t follows k_t
    if g.fmt == "nm":               # channel tiles keep whole N:M blocks
        c_opts = [ct for ct in c_opts if ct % g.nm[1] == 0 or ct == g.c] or [g.c]

    # first tiles of at least a quarter of the output columns (and of the input channels for packed
    # weights, where narrow tiles only add padding); narrower ones only if nothing fits
    def wide(opts, total, keep):
        return [v for v in opts if 4 * v >= total or not keep]
    phases = ((_choices(g.oh), wide(_choices(g.ow), g.ow, True), wide(c_opts, g.c, g.fmt != "dense")),
              (_choices(g.oh), _choices(g.ow), c_opts))
    for heights, widths, chans in phases:
        orders = (0,) if g.depthwise else (0, 1)          # depthwise: pixels_outer takes the same steps
        grid = np.meshgrid(np.minimum(np.array(k_opts, np.int64), 4095), np.array(chans, np.int64),
                           np.array(heights, np.int64), np.array(widths, np.int64), np.array(orders, np.int64),
                           indexing="ij")
        k_t, c_t, oh_t, ow_t, po = (a.ravel() for a in grid)
        if g.depthwise:
            c_t = k_t.copy()
        ih, iw = _max_in(oh_t, g.sh, g.dh, g.kh, g.h), _max_in(ow_t, g.sw, g.dw, g.kw, g.w)
        spad = 2 * (_align(_align(g.weight_tile_bytes(k_t, c_t, c.simd_lanes)) + 8 * k_t) + _align(ih * iw * c_t)
                    + _align(oh_t * ow_t * k_t * g.out_bytes))
        ok = (spad <= c.scratchpad_bytes) & (k_t * oh_t * ow_t <= arch.acc_entries)
        if not ok.any():
            continue
        k_t, c_t, oh_t, ow_t, po = k_t[ok], c_t[ok], oh_t[ok], ow_t[ok], po[ok]
        cycles = _estimate_all(g, k_t, c_t, oh_t, ow_t, po == 1, arch)[0]
        steps = -(-g.k // k_t) * -(-g.c // c_t) * -(-g.oh // oh_t) * -(-g.ow // ow_t)
        rank = np.lexsort((np.arange(len(cycles)), po, steps, cycles))
        tiling = [MatmulTiling(int(k_t[i]), int(oh_t[i]), int(ow_t[i]), int(c_t[i]), ORDERS[int(po[i])])
                  for i in rank[:2]]
        t, e = tiling[0], estimate(g, tiling[0], arch)
        bound = "compute-bound" if e.compute >= e.dma else "DMA-bound"
        reason = (f"{_fmt_name(g)} k_t={t.k_t} oh_t={t.oh_t} ow_t={t.ow_t} c_t={t.c_t} {t.order}: est {e.cycles} "
                  f"cycles (compute {e.compute}, DMA {e.dma}, {bound}; weights fetched {e.w_loads}x, inputs "
                  f"{e.x_loads}x), cheapest of {len(cycles)} fitting candidates")
        if len(tiling) > 1:
            t2 = tiling[1]
            reason += (f"; runner-up k_t={t2.k_t} oh_t={t2.oh_t} ow_t={t2.ow_t} c_t={t2.c_t} "
                       f"{t2.order} at {int(cycles[rank[1]])}")
        return t, e, reason
    return None
