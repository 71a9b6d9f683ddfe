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
import itertools
from dataclasses import dataclass

from sieve.arch.config import ArchConfig
from sieve.scheduler.plan import (ConvGeom, MatmulTiling, SpadLayout, align, ceil_div, dma_cycles, split)

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


def _sizes(total: int, tile: int) -> list[tuple[int, int]]:
    """The tile sizes of a split and how often each occurs (at most two entries)."""
    full, rest = divmod(total, tile)
    return [(tile, full)] * bool(full) + [(rest, 1)] * bool(rest)


def estimate(g: ConvGeom, t: MatmulTiling, arch: ArchConfig) -> Estimate:
    c = arch.core
    ks, cs = _sizes(g.k, t.k_t), _sizes(g.c, t.c_t)
    pixels = [(ny * nx, ny, nx, my * mx) for ny, my in _sizes(g.oh, t.oh_t) for nx, mx in _sizes(g.ow, t.ow_t)]
    # compute: every (k, c, pixel) tile once per image
    if g.depthwise:                 # channels are tiled once, together with the outputs
        cs = [(1, 1)]
    if g.fmt == "unstructured" and g.rows is not None:     # exact: the layer's own nonzero pattern
        tiles = sum(mk for _, mk in ks) * sum(mc for _, mc in cs)
        bg = g.rows.batch_groups(t.k_t, t.c_t, c.simd_lanes, c.pe_rows, g.balance)
        mm = bg * sum(mp * cols for cols, _, _, mp in pixels) + tiles * sum(mp for *_, mp in pixels) * \
            c.matmul_fill_cycles
    else:
        mm = sum(mk * mc * mp * (ceil_div(nk, c.pe_rows) * g.row_groups(nc, c.simd_lanes) * cols
                                 + c.matmul_fill_cycles)
                 for nk, mk in ks for nc, mc in cs for cols, _, _, mp in pixels)
    rq = sum(mk * mp * (ceil_div(nk * cols, c.vector_lanes) + c.vector_fill_cycles)
             for nk, mk in ks for cols, _, _, mp in pixels)
    compute = g.n * g.groups * (mm + rq)
    # DMA: bytes re-fetched under the loop order
    n_sp = sum(mp for *_, mp in pixels)
    n_k, n_c = ceil_div(g.k, t.k_t), 1 if g.depthwise else ceil_div(g.c, t.c_t)
    w_bytes = sum(mk * mc * g.weight_tile_bytes(nk, nc, c.simd_lanes) for nk, mk in ks for nc, mc in cs) + 8 * g.k
    x_bytes = sum(mp * g.max_in(ny, g.sh, g.dh, g.kh, g.h) * g.max_in(nx, g.sw, g.dw, g.kw, g.w)
                  for _, ny, nx, mp in pixels) * g.c
    if t.order == "k_outer":
        w_loads = 1 if n_c == 1 else n_sp * g.n
        x_loads = n_k if n_sp * n_c * g.n > 1 else 1
    else:                         # (k, c) inner: a c split re-fetches the input per k tile
        w_loads = g.n * n_sp if n_k * n_c > 1 else 1
        x_loads = n_k if n_c > 1 else 1
    if g.depthwise:                 # each k tile reads its own channels: no re-fetch
        x_loads = 1
    moved = g.groups * (w_bytes * w_loads + x_bytes * x_loads * g.n + g.n * g.oh * g.ow * g.k * g.out_bytes)
    dma = dma_cycles(moved, arch)
    # double-buffered steady state: a step's period is bounded by compute, by the DRAM channel,
    # and by the two-slot loop (load, its latency and compute of two steps in flight)
    steps = g.groups * g.n * n_sp * n_k * n_c
    lat = arch.memory.dram_latency_cycles
    period = max(compute / steps, dma / steps, (lat + (dma + compute) / steps) / 2)
    total = int(steps * period + dma / steps + 2 * lat)
    return Estimate(total, compute, dma, w_loads, x_loads)


def fits(g: ConvGeom, t: MatmulTiling, arch: ArchConfig) -> bool:
    return (matmul_spad(g, t, arch.core.simd_lanes).total <= arch.core.scratchpad_bytes
            and t.k_t * t.oh_t * t.ow_t <= arch.acc_entries)


def _fmt_name(g: ConvGeom) -> str:
    return {"dense": "dense", "unstructured": "unstructured"}.get(g.fmt, f"{g.nm[0]}:{g.nm[1]}")


@functools.lru_cache(maxsize=1024)
def search(g: ConvGeom, arch: ArchConfig) -> tuple[MatmulTiling, Estimate, str] | None:
    """The cheapest fitting tiling (cached: networks repeat layer shapes, and both keys are frozen)."""
    c = arch.core
    # whole PE-row groups first; smaller tiles too, for layers whose window fills the scratchpad
    k_opts = sorted(set(_choices(g.k, c.pe_rows)) | set(_choices(min(g.k, c.pe_rows))), reverse=True)
    c_opts = _choices(g.c, c.simd_lanes) if g.kh * g.kw == 1 else _choices(g.c)
    if g.depthwise:
        c_opts = [0]                # c_t follows k_t
    if g.fmt == "nm":               # channel tiles keep whole N:M blocks
        c_opts = [ct for ct in c_opts if ct % g.nm[1] == 0 or ct == g.c] or [g.c]
    best: list[tuple[int, int, MatmulTiling, Estimate]] = []
    tried = 0
    # first tiles of at least a quarter of the output columns (and of the input channels for packed
    # weights, where narrow tiles only add padding); narrower ones only if nothing fits
    def wide(opts, total, keep):
        return [v for v in opts if 4 * v >= total or not keep]
    phases = ((_choices(g.oh), wide(_choices(g.ow), g.ow, True), wide(c_opts, g.c, g.fmt != "dense")),
              (_choices(g.oh), _choices(g.ow), c_opts))
    for heights, widths, chans in phases:
        for k_t, c_t, oh_t, ow_t, order in itertools.product(k_opts, chans, heights, widths, ORDERS):
            k_t = min(k_t, 4095)
            if g.depthwise and order == "pixels_outer":
                continue                # the same steps as k_outer
            t = MatmulTiling(k_t, oh_t, ow_t, k_t if g.depthwise else c_t, order)
            if not fits(g, t, arch):
                continue
            tried += 1
            e = estimate(g, t, arch)
            steps = ceil_div(g.k, t.k_t) * ceil_div(g.c, t.c_t) * ceil_div(g.oh, t.oh_t) * ceil_div(g.ow, t.ow_t)
            best.append((e.cycles, steps, t, e))
        if best:
            break
    if not best:
        return None
    best.sort(key=lambda r: (r[0], r[1], r[2].order))      # ties: fewer steps, then k_outer
    _, _, t, e = best[0]
    bound = "compute-bound" if e.compute >= e.dma else "DMA-bound"
    reason = (f"{_fmt_name(g)} k_t={t.k_t} oh_t={t.oh_t} ow_t={t.ow_t} c_t={t.c_t} {t.order}: est {e.cycles} cycles "
              f"(compute {e.compute}, DMA {e.dma}, {bound}; weights fetched {e.w_loads}x, inputs "
              f"{e.x_loads}x), cheapest of {tried} fitting candidates")
    if len(best) > 1:
        _, _, t2, e2 = best[1]
        reason += (f"; runner-up k_t={t2.k_t} oh_t={t2.oh_t} ow_t={t2.ow_t} c_t={t2.c_t} "
                   f"{t2.order} at {e2.cycles}")
    return t, e, reason
