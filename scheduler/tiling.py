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

from sieve.arch.config import ArchConfig, CoreConfig
from sieve.arch.formats import UNSTRUCTURED
from sieve.scheduler.plan import ALIGN, ConvGeom, MatmulTiling, SpadLayout, align, ceil_div

ORDERS = ("k_outer", "pixels_outer")
NEAR = 0.01        # estimates this close to the cheapest count as equal (``_rank`` breaks the tie)


def _choices(total: int, quantum: int = 1) -> list[int]:
    """Tile sizes to try: total, and halvings rounded up to the quantum."""
    out, t = set(), total
    while t >= 1:
        out.add(min(total, ceil_div(t, quantum) * quantum))
        if t == 1:
            break
        t = ceil_div(t, 2)
    return sorted(out, reverse=True)


def matmul_spad(g: ConvGeom, t: MatmulTiling, core: CoreConfig) -> SpadLayout:
    ih = g.max_in(t.oh_t, g.sh, g.dh, g.kh, g.h)
    iw = g.max_in(t.ow_t, g.sw, g.dw, g.kw, g.w)
    # "w" holds a weight bundle: the weight tile, then int32 bias and float32 scales
    return SpadLayout((("w", align(g.weight_tile_bytes(t.k_t, t.c_t, g.lanes(core))) + 8 * t.k_t),
                       ("x", ih * iw * t.c_t), ("out", t.oh_t * t.ow_t * t.k_t * g.out_bytes)))


@dataclass(frozen=True)
class Estimate:
    cycles: int
    compute: int
    dma: int
    w_loads: int
    x_loads: int
    dram_bytes: int = 0
    energy_pj: float = 0.0


OBJECTIVES = ("cycles", "energy", "edp")


def _score(objective: str, value: float) -> str:
    return {"cycles": f"{int(value)} cycles", "energy": f"{value / 1e6:.4g} µJ"}.get(objective, f"{value:.4g} cycle·pJ")


def energy_estimate(g: ConvGeom, cycles, dram_bytes, arch: ArchConfig):
    """The cost model's energy of a layer (pJ; arrays of candidates): its DRAM bytes, its effective MACs
    at the weights' width (a packed format multiplies only its nonzeros, ``g.density`` of them; dense
    multiplies every weight), the weight metadata read from the scratchpad, and every core's leakage
    over its cycles. The simulator prices every event (docs/stats.md); these are the terms that differ
    between formats, tilings and partitions."""
    e = arch.energy_table
    dense = g.n * g.groups * g.k * g.reduction(g.c) * g.oh * g.ow
    macs = dense * (g.density if g.fmt.packed else 1.0)
    mac_pj = e.mac_int4_pj if g.fmt.bits == 4 else e.mac_pj
    meta = 0.0
    if g.fmt.kind == "unstructured":
        meta = 2.0 * macs / max(g.oh * g.ow, 1)                   # a u16 index per kept weight
    elif g.fmt.kind == "nm":
        meta = macs / max(g.oh * g.ow, 1) / 4                      # 2-bit offsets (4-bit for M > 4): a bound
    return (np.asarray(dram_bytes) * e.dram_pj_per_byte + macs * mac_pj + meta * e.metadata_pj_per_byte
            + np.asarray(cycles) * e.leakage_pj_per_cycle * arch.cores)


def objective_score(objective: str, cycles, energy):
    """What a choice minimizes: cycles, energy, or their product (energy-delay)."""
    if objective == "energy":
        return np.asarray(energy, np.float64)
    if objective == "edp":
        return np.asarray(cycles, np.float64) * np.asarray(energy, np.float64)
    return np.asarray(cycles, np.float64)


def estimate(g: ConvGeom, t: MatmulTiling, arch: ArchConfig) -> Estimate:
    """The cost model's figures for one tiling (``_estimate_all`` on a single candidate)."""
    one = lambda v: np.array([v], np.int64)  # noqa: E731
    total, compute, dma, w_loads, x_loads, dram = _estimate_all(g, one(t.k_t), one(t.c_t), one(t.oh_t), one(t.ow_t),
                                                                np.array([t.order == "pixels_outer"]), arch,
                                                                np.array([t.acc_buffers == 2]))
    return Estimate(int(total[0]), int(compute[0]), int(dma[0]), int(w_loads[0]), int(x_loads[0]), int(dram[0]),
                    float(energy_estimate(g, total, dram, arch)[0]))


def fits(g: ConvGeom, t: MatmulTiling, arch: ArchConfig) -> bool:
    return (matmul_spad(g, t, arch.core).total <= arch.core.scratchpad_bytes
            and t.k_t * t.oh_t * t.ow_t * t.acc_buffers <= arch.acc_entries)


def _fmt_name(g: ConvGeom) -> str:
    return g.fmt.name


def _max_in(size: np.ndarray, stride: int, dil: int, kern: int, extent: int) -> np.ndarray:
    return np.minimum(extent, (size - 1) * stride + dil * (kern - 1) + 1)


def _split(total: int, tile: np.ndarray):
    """The two tile sizes of each split (full tiles, then the remainder) and how often each occurs."""
    full, rest = total // tile, total % tile
    return (tile, full), (rest, (rest > 0).astype(np.int64))


def _window_conflicts(g: ConvGeom, iw, chans, core):
    """A depthwise window's reads per output column on its busiest scratchpad bank (the simulator's
    rule: a vector of channels at each window position, banks interleaved every port width; pixels
    ``g.x_pitch`` bytes apart where the tile is a channel slice of a wider one, else ``chans``)."""
    banks, port = core.scratchpad_banks, core.scratchpad_port_bytes
    iw, chans = np.broadcast_arrays(np.asarray(iw), np.asarray(chans))
    pitch = np.full_like(chans, g.x_pitch) if g.x_pitch else chans
    counts = np.zeros(iw.shape + (banks,), np.int64)
    for dy in range(g.kh):
        for dx in range(g.kw):
            bank = ((dy * g.dh * iw * pitch + dx * g.dw * pitch) // port) % banks
            counts += bank[..., None] == np.arange(banks)
    return counts.max(axis=-1) * -(-np.minimum(chans, core.pe_rows) // port)


def _granule(n, gran: int):
    return -(-n // gran) * gran


def _align(n: np.ndarray) -> np.ndarray:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _estimate_all(g: ConvGeom, k_t, c_t, oh_t, ow_t, pixels_outer, arch: ArchConfig, overlap=False):
    """The cost model over arrays of candidate tilings: (cycles, compute, dma, weight loads, input
    loads), each [candidates]. Compute: every (k, c, pixel) tile once per image (exact for unstructured
    weights, from the layer's own nonzero pattern); where ``overlap`` (two accumulator buffers and a
    vector unit with its own path) an output tile's requantization runs while the next tile's matmuls
    do, so the slower of the two paces the layer and the last requantization is added; DMA: the bytes
    each loop order re-fetches over the DRAM bandwidth; double-buffered steady state: a step's period
    is bounded by compute, by the DRAM channel, and by the two-slot loop (load, its latency and compute
    of two steps in flight)."""
    c = arch.core
    ks, cs = _split(g.k, k_t), _split(g.c, c_t)
    if g.depthwise:
        cs = ((np.ones_like(c_t), np.ones_like(c_t)),)
    ys, xs = _split(g.oh, oh_t), _split(g.ow, ow_t)
    pixels = [(ny * nx, ny, nx, my * mx) for ny, my in ys for nx, mx in xs]
    n_sp = sum(mp for *_, mp in pixels)
    # the MAC array: per weight block (pe_rows x simd_lanes) a cycle per output column, plus the block's
    # load and drain where weights are not double-buffered; at least what the scratchpad ports deliver
    # (banks x port bytes per cycle, weights and activations together; docs/memory.md)
    port = c.scratchpad_banks * c.scratchpad_port_bytes
    per_col, per_block = (1, 0) if c.weights_double_buffered else (
        1, -(-(c.pe_rows * c.simd_lanes) // port) + c.matmul_fill_cycles)

    lanes = g.lanes(c)                     # reduction values per SIMD group in the layer's weight format
    if g.fmt.kind == UNSTRUCTURED and g.rows is not None:
        tiles = sum(mk for _, mk in ks) * sum(mc for _, mc in cs)
        pairs = {(int(a), int(b)) for a, b in zip(k_t.tolist(), c_t.tolist())}
        bgs = {pair: g.rows.batch_groups(pair[0], pair[1], lanes, c.pe_rows, g.balance) for pair in pairs}
        bg = np.array([bgs[a, b] for a, b in zip(k_t.tolist(), c_t.tolist())], np.int64)
        all_cols = sum(mp * cols for cols, _, _, mp in pixels)
        mac = bg * (all_cols * per_col + n_sp * per_block)
        w_read = g.n * tiles * n_sp * g.weight_tile_bytes(k_t, c_t, lanes)
        fed = -(-(bg * lanes * all_cols + w_read) // port)
        mm = np.maximum(mac, fed) + tiles * n_sp * c.matmul_fill_cycles
    else:
        mm = 0
        for nk, mk in ks:
            batches = -(-nk // c.pe_rows)
            for nc, mc in cs:
                blocks = batches * g.row_groups(nc, lanes)
                w_tile = g.weight_tile_bytes(nk, nc, lanes)
                r = g.reduction(nc)
                for cols, ny, nx, mp in pixels:
                    x_read = (nk if g.depthwise else batches) * r * cols
                    fed = -(-(w_tile + x_read) // port)
                    if g.depthwise:
                        iw = _max_in(nx, g.sw, g.dw, g.kw, g.w)
                        fed = np.maximum(fed, batches * cols * _window_conflicts(g, iw, nk, c))
                    step = np.maximum(blocks * (cols * per_col + per_block), fed)
                    mm = mm + mk * mc * mp * (step + c.matmul_fill_cycles)
    rq = sum(mk * mp * (-(-(nk * cols) // c.vector_lanes) + c.vector_fill_cycles)
             for nk, mk in ks for cols, _, _, mp in pixels)
    out_tiles = sum(mk * mp for _, mk in ks for *_, mp in pixels)
    compute = g.n * g.groups * np.where(overlap, np.maximum(mm, rq) + rq // out_tiles, mm + rq)
    n_k = -(-g.k // k_t)
    n_c = np.ones_like(c_t) if g.depthwise else -(-g.c // c_t)
    w_bytes = sum(mk * mc * g.weight_tile_bytes(nk, nc, lanes) for nk, mk in ks for nc, mc in cs) + 8 * g.k
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
    out_bytes = g.n * g.oh * out_row
    moved = g.groups * (w_bytes * w_loads + x_bytes * x_loads * g.n + out_bytes)
    dram_rate, l2_rate, lat = transfer_rates(arch)
    if arch.memory.l2_bytes:
        # with an L2, what is fetched again hits when one pass of it fits this core's share of the L2
        share = arch.memory.l2_bytes / arch.cores
        w_again = np.where(g.groups * w_bytes <= share, 1, w_loads)
        x_again = np.where(g.groups * x_bytes * g.n <= share, 1, x_loads)
        from_dram = g.groups * (w_bytes * w_again + x_bytes * x_again * g.n + out_bytes)
        dma = np.ceil(np.maximum(from_dram / dram_rate, moved / l2_rate)).astype(np.int64)
    else:
        from_dram = moved
        dma = np.ceil(moved / dram_rate).astype(np.int64)
    steps = g.groups * g.n * n_sp * n_k * n_c
    # the pipeline fills with the first step's operands and drains with the last step's output
    ih0 = _max_in(np.minimum(oh_t, g.oh), g.sh, g.dh, g.kh, g.h)
    iw0 = _max_in(np.minimum(ow_t, g.ow), g.sw, g.dw, g.kw, g.w)
    first = g.weight_tile_bytes(np.minimum(k_t, g.k), np.minimum(c_t, g.c), lanes) + ih0 * iw0 * np.minimum(
        np.where(g.depthwise, k_t, c_t), g.c)
    last = np.minimum(oh_t, g.oh) * np.minimum(ow_t, g.ow) * np.minimum(k_t, g.k) * g.out_bytes
    # a step's period: its compute, its transfers, or the two-slot loop (a slot waits a round trip for its
    # load and the output slot one for its store: half of two latencies and a step's work)
    period = np.maximum(np.maximum(compute / steps, dma / steps), (2 * lat + (dma + compute) / steps) / 2)
    total = (steps * period + (first + last) / dram_rate + 2 * lat).astype(np.int64)
    return total, compute, dma, w_loads, x_loads, np.asarray(from_dram, np.float64) + np.zeros_like(total)


def stream_estimate(items: int, tile: int, in_bytes: float, out_bytes: float, ops: float, arch: ArchConfig) -> int:
    """Cycles of a layer that streams ``items`` through the vector unit, ``tile`` at a time, double-buffered:
    per item ``in_bytes`` loaded, ``out_bytes`` stored and ``ops`` vector operations. A step's period is
    bounded by its compute, its transfers, and the two-slot loop, in which a slot waits a round trip for
    its load and another for the store that frees its output slot (half of two latencies per step, as
    the simulator shows for small tiles); then the first tile's fill and the last one's drain."""
    steps = -(-items // tile)
    dram_rate, _, lat = transfer_rates(arch)
    dma = items * (in_bytes + out_bytes) / dram_rate
    compute = steps * arch.core.vector_fill_cycles + items * ops / arch.core.vector_lanes
    period = max(compute / steps, dma / steps, (2 * lat + (dma + compute) / steps) / 2)
    return int(steps * period + min(tile, items) * (in_bytes + out_bytes) / dram_rate + 2 * lat)


def stream_tile(items: int, largest: int, in_bytes: float, out_bytes: float, ops: float, arch: ArchConfig,
                quantum: int = 1) -> tuple[int, int]:
    """(tile, estimated cycles): of the whole extent and the powers of two times ``quantum`` that fit
    (``largest``), the cheapest by ``stream_estimate``; within 1 % of the cheapest, the smallest tile
    (the candidates do not depend on the scratchpad size, so a larger one can only add candidates)."""
    options = {items} if items <= largest else set()
    t = quantum
    while t < items and t <= largest:
        options.add(t)
        t *= 2
    options = sorted(options or {max(quantum, largest // quantum * quantum)})
    priced = [(stream_estimate(items, t, in_bytes, out_bytes, ops, arch), t) for t in options]
    best = min(e for e, _ in priced)
    return next((t, e) for e, t in priced if e <= best * 1.01)


def transfer_rates(arch: ArchConfig) -> tuple[float, float, int]:
    """(bytes per cycle one transfer can move from DRAM, through the L2, the round-trip latency): the
    channel or the engine's requests in flight, whichever is lower (docs/memory.md)."""
    m = arch.memory
    lat = m.dram_latency_cycles + (m.l2_latency_cycles if m.l2_bytes else 0)
    request = m.l2_line_bytes if m.l2_bytes else m.dram_burst_bytes
    engine = m.dma_outstanding * request / max(lat, 1)
    dram = min(m.dram_bytes_per_cycle, engine)
    if m.l2_bytes:
        dram = min(dram, m.l2_mshrs * m.l2_line_bytes / max(lat, 1))
        l2 = min(m.l2_banks * m.l2_bank_bytes_per_cycle / arch.cores,
                 m.dma_outstanding * m.l2_line_bytes / max(m.l2_latency_cycles, 1))
        return dram, l2, lat
    return dram, dram, lat


def _near(cheapest, arch: ArchConfig | None):
    """Estimates up to this count as equal to ``cheapest``."""
    return cheapest * (1 + NEAR)


def _rank(cycles, dma, steps, spad, po):
    """Candidates best first: among scores (estimated cycles, energy or energy-delay: the objective)
    within NEAR of the cheapest, the fewest DRAM bytes (less energy for the same time), then the fewest
    steps (fewer instructions), then the smallest scratchpad footprint, then the weights-outer order;
    the rest after them. A larger capacity thus changes a plan only for an estimated gain the model can
    tell from its own error, or for less DRAM traffic at the same estimate."""
    near = cycles <= _near(cycles.min(), None)
    return np.lexsort((np.arange(len(cycles)), po, spad, steps, dma, ~near))


def _binding(every, dma, steps, spad, po, ok, fits_spad, acc, arch: ArchConfig):
    """A function of the chosen candidate (an index among the fitting ones) saying which capacity binds:
    none when the best of all candidates, fitting or not, fits; else the capacity it exceeds, with what
    the choice uses of each."""
    top = _rank(every, dma, steps, spad, po)[0]
    spad_binds = not fits_spad[top]
    acc_binds = fits_spad[top] and not ok[top]
    spad, acc = spad[ok], acc[ok]

    def say(i: int) -> str:
        use = (f"uses {int(spad[i]):,} of {arch.core.scratchpad_bytes:,} scratchpad bytes and {int(acc[i]):,} of "
               f"{arch.acc_entries:,} accumulator entries")
        if not (spad_binds or acc_binds):
            return f"{use}; neither binds (a larger one would not change the plan)"
        which = "the scratchpad" if spad_binds else "the accumulator"
        return f"{use}; {which} binds (a larger one admits a better tiling)"
    return say


@functools.lru_cache(maxsize=1024)
def search(g: ConvGeom, arch: ArchConfig, objective: str = "cycles") -> tuple[MatmulTiling, Estimate, str] | None:
    """The best fitting tiling by ``_rank`` (cached: networks repeat layer shapes, and both keys are
    frozen). Every candidate is priced at once with numpy (``_estimate_all``)."""
    c = arch.core
    # whole PE-row groups first; smaller tiles too, for layers whose window fills the scratchpad
    k_opts = sorted(set(_choices(g.k, c.pe_rows)) | set(_choices(min(g.k, c.pe_rows))), reverse=True)
    c_opts = _choices(g.c, c.simd_lanes) if g.kh * g.kw == 1 else _choices(g.c)
    if g.depthwise:
        c_opts = [0]                # c_t follows k_t
    whole = g.channel_unit()        # channel tiles keep whole N:M blocks and scale groups
    c_opts = [ct for ct in c_opts if ct % whole == 0 or ct == g.c] or [g.c]

    # first tiles of at least a quarter of the output columns (and of the input channels for packed
    # weights, where narrow tiles only add padding); narrower ones only if nothing fits
    def wide(opts, total, keep):
        return [v for v in opts if 4 * v >= total or not keep]
    phases = ((_choices(g.oh), wide(_choices(g.ow), g.ow, True), wide(c_opts, g.c, g.fmt.packed)),
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
        spad = 2 * (_align(_align(g.weight_tile_bytes(k_t, c_t, g.lanes(c))) + 8 * k_t) + _align(ih * iw * c_t)
                    + _align(oh_t * ow_t * k_t * g.out_bytes))
        acc_used = k_t * oh_t * ow_t
        fits_spad, fits_acc = spad <= c.scratchpad_bytes, acc_used <= arch.acc_entries
        ok = fits_spad & fits_acc
        if not ok.any():
            continue
        # with a vector unit of its own, a tile whose accumulator fits twice alternates halves
        two = c.vector_own_path & (2 * acc_used <= arch.acc_entries)
        acc_used = acc_used * np.where(two, 2, 1)
        every, _, dma_all, _, _, dram_all = _estimate_all(g, k_t, c_t, oh_t, ow_t, po == 1, arch, two)
        every = objective_score(objective, every, energy_estimate(g, every, dram_all, arch))
        steps = -(-g.k // k_t) * -(-g.c // c_t) * -(-g.oh // oh_t) * -(-g.ow // ow_t)
        binds = _binding(every, dma_all, steps, spad, po, ok, fits_spad, acc_used, arch)
        k_t, c_t, oh_t, ow_t, po, two = k_t[ok], c_t[ok], oh_t[ok], ow_t[ok], po[ok], two[ok]
        cycles, steps = every[ok], steps[ok]
        rank = _rank(cycles, dma_all[ok], steps, spad[ok], po)
        tiling = [MatmulTiling(int(k_t[i]), int(oh_t[i]), int(ow_t[i]), int(c_t[i]), ORDERS[int(po[i])],
                               2 if two[i] else 1) for i in rank[:2]]
        t, e = tiling[0], estimate(g, tiling[0], arch)
        bound = "compute-bound" if e.compute >= e.dma else "DMA-bound"
        reason = (f"{_fmt_name(g)} k_t={t.k_t} oh_t={t.oh_t} ow_t={t.ow_t} c_t={t.c_t} {t.order}"
                  f"{', two accumulator buffers' if t.acc_buffers == 2 else ''}: est {e.cycles} "
                  f"cycles, {e.energy_pj / 1e6:.4g} µJ (compute {e.compute}, DMA {e.dma}, {bound}; weights fetched "
                  f"{e.w_loads}x, inputs {e.x_loads}x), best of {len(cycles)} fitting candidates (within 1 % of the "
                  f"cheapest {'cycles' if objective == 'cycles' else objective} estimate, the fewest DRAM bytes); "
                  f"{binds(rank[0])}")
        if len(tiling) > 1:
            t2 = tiling[1]
            reason += (f"; runner-up k_t={t2.k_t} oh_t={t2.oh_t} ow_t={t2.ow_t} c_t={t2.c_t} "
                       f"{t2.order} at {_score(objective, cycles[rank[1]])}")
        return t, e, reason
    return None
