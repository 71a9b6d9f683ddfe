"""Cross-layer fusion: consecutive image layers run as one stack, tile by tile, their tensors on chip.

A stack is a run of consecutive layers (graph order) of the kinds below whose outputs, but the
last one's, are read only inside the run; it tiles the last layer's output into bands of whole rows,
or tiles of rows x columns. Going backwards from a tile, each tensor's window (a box) is what its
readers in the stack need (kernel, stride, dilation and padding give the halo), and every tensor
lives in a scratchpad region that holds its box: the stack's inputs are loaded from DRAM, the layers
in between are computed into their regions and never stored, the last layer's box is stored.
Neighbouring tiles' windows overlap; ``recompute`` computes (and loads) the overlap again in every
tile, ``cache`` keeps the rows a band shares with the previous one (shifted to the front of the
region) and computes only the new rows (DeFiNES's two ways; whole-row bands only).

The choice (``choose``): per maximal run, the cuts, the tile and the mode with the lowest estimated
energy, a stack only where it is estimated no slower and no more DRAM-hungry than its layers one by
one (``auto``; ``sieve.pipeline`` then checks each by simulation); the longest stacks that fit
(``max``); none (``none``).
"""
from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from sieve.arch.config import ArchConfig
from sieve.ir.graph import Graph, Node, Op
from sieve.scheduler.plan import (ConvGeom, LayerPlan, MatmulTiling, Part, ScheduleError, SpadLayout, Stack, align,
                                  ceil_div)
from sieve.scheduler.partition import flat_parts
from sieve.scheduler.tiling import estimate, transfer_rates

FUSIONS = ("auto", "none", "max")
MODES = ("recompute", "cache")
MAX_LAYERS = 12                      # the longest stack --fusion max considers
AUTO_LAYERS = 8                      # ... and auto (its dynamic program prices every run of up to this many)
MAX_STEPS = 1 << 17                  # a stack's compute steps at most (a core counts 2^20 in a program)
PRICED = 2                           # band heights priced per stack and mode: the tallest that fit


# ------------------------------------------------------------------ what can be fused
def _image(graph: Graph, name: str, orders: dict) -> bool:
    """A 4-D tensor stored channels last (the order every image layer reads and writes)."""
    t = graph[name].out
    o = orders.get(name)
    return len(t.shape) == 4 and o is not None and o.view_shape == t.shape and tuple(o.perm) == (0, 2, 3, 1)


def member_kind(graph: Graph, node: Node, plan: LayerPlan, orders: dict) -> str | None:
    """The kind a layer takes in a stack: "matmul" (conv, depthwise, average pooling), "pool" (max
    pooling), "eltwise" (add, multiply of equal shapes, ReLU, tables); None when it cannot be fused."""
    if not all(_image(graph, n, orders) for n in (node.name, *node.inputs)):
        return None
    if plan.kind == "matmul" and node.op in (Op.CONV2D, Op.AVGPOOL):
        g = plan.geom
        if g.batched or g.band[0] or g.out_bytes != 1 or g.fmt.bits == 16:
            return None
        return "matmul"
    if plan.kind == "pool" and node.op is Op.MAXPOOL:
        return "pool"
    if plan.kind == "eltwise" and node.op in (Op.ADD, Op.MUL, Op.RELU, Op.LUT):
        if all(graph[i].out.shape == node.out.shape for i in node.inputs):
            return "eltwise"
    return None


def _pool_geom(graph: Graph, node: Node) -> ConvGeom:
    n, c, h, w = graph[node.inputs[0]].out.shape
    (kh, kw), (sh, sw), (pt, pl, _, _) = node.attrs["kernel"], node.attrs["stride"], node.attrs["pad"]
    return ConvGeom(n, h, w, c, c, node.out.shape[2], node.out.shape[3], kh, kw, sh, sw, 1, 1, pt, pl, depthwise=True)


def _hwc(graph: Graph, name: str) -> tuple[int, int, int]:
    n, c, h, w = graph[name].out.shape
    return h, w, c


# ------------------------------------------------------------------ bands and windows
def _axis(g: ConvGeom, axis: str) -> tuple[int, int, int, int, int]:
    """(stride, padding, dilation, kernel, input extent) of a window along rows ("y") or columns ("x")."""
    return (g.sh, g.pt, g.dh, g.kh, g.h) if axis == "y" else (g.sw, g.pl, g.dw, g.kw, g.w)


def _band_arrays(stack: Stack, y0: np.ndarray, y1: np.ndarray, mode: str, axis: str = "y",
                 reads: dict | None = None) -> dict[str, tuple[np.ndarray, ...]]:
    """tensor -> (lo, hi, new) arrays over bands of output rows [y0, y1) of the last layer: the window
    [lo, hi) each band holds of the tensor, and the first row it computes (or loads) there. Going back
    from the last layer, a tensor's window is what its readers read to compute their rows: in
    ``recompute`` mode their whole windows, so ``new`` = ``lo``; in ``cache`` mode only the rows they
    compute, those of their windows not held in the previous band (which are kept: rows [lo, new)).
    ``axis`` "x" does the same along columns (tiles of the last layer's columns); ``reads`` collects
    (layer, input) -> the [lo, hi) arrays each windowed layer reads of each input."""
    zero = y0 * 0
    need = {stack.last: (y0, y1)}
    new_of: dict[str, np.ndarray] = {}

    def first_new(lo, hi):
        if mode != "cache" or len(lo) < 2:
            return lo
        plo, phi = lo[:-1], hi[:-1]                   # the previous band's window
        keep = (phi > plo) & (plo <= lo[1:]) & (lo[1:] < phi)
        out = lo.copy()
        out[1:] = np.where(keep, np.minimum(phi, hi[1:]), lo[1:])
        return out
    for m, ins in zip(reversed(stack.members), reversed(stack.inputs)):
        lo, hi = need.get(m.node, (zero, zero))
        new = first_new(lo, hi)
        new_of[m.node] = new
        live = hi > new                               # the band computes rows of this layer
        for name in ins:
            if m.kind == "eltwise":
                a, b = new, hi
            else:
                stride, pad, dil, kern, extent = _axis(m.geom, axis)   # ConvGeom.in_rows over arrays
                a = np.maximum(new * stride - pad, 0)
                b = np.minimum((hi - 1) * stride - pad + dil * (kern - 1) + 1, extent)
            ok = live & (b > a)
            a, b = np.where(ok, a, 0), np.where(ok, b, 0)
            if reads is not None:
                reads[m.node, name] = (a, b)
            if name in need:
                pa, pb = need[name]
                had = pb > pa
                a, b = (np.where(ok & had, np.minimum(a, pa), np.where(ok, a, pa)),
                        np.where(ok & had, np.maximum(b, pb), np.where(ok, b, pb)))
            need[name] = (a, b)
    return {name: (lo, hi, new_of[name] if name in new_of else first_new(lo, hi)) for name, (lo, hi) in need.items()}


def windows(stack: Stack, y0: int, y1: int) -> dict[str, tuple[int, int]]:
    """The rows [lo, hi) of every tensor that one band of output rows [y0, y1) of the last layer needs
    when nothing is kept from a previous band."""
    win = _band_arrays(stack, np.array([y0]), np.array([y1]), "recompute")
    return {name: (int(a[0]), int(b[0])) for name, (a, b, _) in win.items() if b[0] > a[0]}


def _bands_of(stack: Stack, y_lo: int, y_hi: int, mode: str):
    y0 = np.arange(y_lo, y_hi, stack.rows, dtype=np.int64)
    return _band_arrays(stack, y0, np.minimum(y0 + stack.rows, y_hi), mode), len(y0)


def bands(stack: Stack, y_lo: int, y_hi: int, mode: str | None = None) -> list[dict[str, tuple[int, int, int]]]:
    """Per band of the output rows [y_lo, y_hi) (one image): tensor -> (lo, hi, new), the window and the
    first row the band computes or loads; rows [lo, new) were there in the previous band (``cache``)."""
    arrays, n = _bands_of(stack, y_lo, y_hi, mode or stack.mode)
    return [{name: (int(lo[i]), int(hi[i]), int(new[i])) for name, (lo, hi, new) in arrays.items() if hi[i] > lo[i]}
            for i in range(n)]


def col_tiles(stack: Stack, reads: dict | None = None) -> list[dict[str, tuple[int, int]]]:
    """Per tile of the last layer's columns: tensor -> the columns [lo, hi) its box holds. Whole rows
    (``cols`` 0): one tile, every tensor's full width."""
    ow = stack.shape(stack.last)[1]
    if not stack.cols or stack.cols >= ow:
        return [{t: (0, shape[1]) for t, shape in stack.shapes}]
    x0 = np.arange(0, ow, stack.cols, dtype=np.int64)
    arrays = _band_arrays(stack, x0, np.minimum(x0 + stack.cols, ow), "recompute", "x", reads)
    return [{t: (int(lo[i]), int(hi[i])) for t, (lo, hi, _) in arrays.items() if hi[i] > lo[i]}
            for i in range(len(x0))]


def _left_aligned(stack: Stack) -> bool:
    """Whether every windowed layer with a kernel taller than one row reads its input's box from the box's
    first column in every column tile (a MATMUL or MAXPOOL reads rows at the pitch of the box it starts
    in; a one-row kernel is read row by row, so it may start anywhere)."""
    if not stack.cols:
        return True
    reads: dict = {}
    tiles = col_tiles(stack, reads)
    kinds = {m.node: m for m in stack.members}
    for (node, name), (a, b) in reads.items():
        m = kinds[node]
        if m.kind == "eltwise" or m.geom.kh == 1:
            continue
        for i, tile in enumerate(tiles):
            if b[i] > a[i] and name in tile and a[i] != tile[name][0]:
                return False
    return True


def part_rows(stack: Stack, part: Part) -> tuple[int, int]:
    return part.range("y", stack.shape(stack.last)[0])


# ------------------------------------------------------------------ sizing one stack
def _macs_per_row(m: LayerPlan) -> int:
    """MACs of one output row of a matmul member (all images' rows count the same)."""
    g = m.geom
    return g.ow * g.k * g.groups * g.reduction(g.c)


@functools.lru_cache(maxsize=1024)
def _weight_tiles(g: ConvGeom, arch: ArchConfig) -> tuple[tuple[int, int, int, int], ...]:
    """(c_t, k_t, slot bytes, slots) of a layer's weight tilings, most preferred first: whole input
    channels, then the most output channels (whole rows of output must fit the accumulator)."""
    lanes, acc = g.lanes(arch.core), arch.acc_entries
    c_opts = [g.c] if g.depthwise else sorted({g.c, *[ceil_div(g.c, 2 ** i) for i in range(1, 8)]}, reverse=True)
    c_opts = [c for c in c_opts if c % g.channel_unit() == 0 or c == g.c]   # whole N:M blocks, scale groups
    k_opts = sorted({g.k, *[v for v in range(arch.core.pe_rows, g.k, arch.core.pe_rows)],
                     *[ceil_div(g.k, 2 ** i) for i in range(1, 12)]}, reverse=True)
    out = []
    for c_t in c_opts:
        for k_t in k_opts:
            if k_t * g.ow > acc or k_t > 4095:
                continue
            slot = int(align(g.weight_tile_bytes(k_t, c_t, lanes)) + 8 * k_t)
            one = k_t >= g.k and c_t >= g.c and g.groups == 1
            out.append((c_t, k_t, slot, 1 if one else 2))
    return tuple(out)


def _member_tiling(g: ConvGeom, arch: ArchConfig, budget: int, rows: int, width: int = 0
                   ) -> tuple[MatmulTiling, int, int] | None:
    """(tiling, weight slot bytes, slots) of a matmul member inside a stack: whole output rows per tile
    (the accumulator holds k_t x rows x width), the largest weight tile that fits ``budget`` bytes
    (one slot when the layer's weights are one tile: loaded once, they stay)."""
    acc, ow = arch.acc_entries, width or g.ow
    for c_t, k_t, slot, slots in _weight_tiles(g, arch):
        if slot * slots > budget or k_t * ow > acc:
            continue
        oh_t = max(1, min(rows, acc // (k_t * ow)))
        two = arch.core.vector_own_path and 2 * k_t * oh_t * ow <= acc
        if not two and arch.core.vector_own_path and oh_t > 1:
            oh_t = max(1, acc // (2 * k_t * ow))
            two = 2 * k_t * oh_t * ow <= acc
        return MatmulTiling(k_t, oh_t, ow, c_t, "k_outer", 2 if two else 1), slot, slots
    return None


_ESTIMATES: dict = {}


def _estimate(g: ConvGeom, t: MatmulTiling, arch: ArchConfig):
    """The layer's estimate in a stack's tiling; bands of other heights reuse the first one's (the rows
    per tile change little of the compute per row, and the choice is checked by simulation)."""
    key = (g, t.k_t, t.c_t, t.acc_buffers, arch)
    if key not in _ESTIMATES:
        if len(_ESTIMATES) > 8192:
            _ESTIMATES.clear()
        _ESTIMATES[key] = estimate(g, t, arch)
    return _ESTIMATES[key]


@functools.lru_cache(maxsize=4096)
def _weight_bytes(g: ConvGeom, t: MatmulTiling, lanes: int) -> int:
    """The bytes of all of a layer's weight bundles in a tiling (each tile with its bias and scales)."""
    def sizes(total: int, tile: int):
        return [(tile, total // tile)] + ([(total % tile, 1)] if total % tile else [])
    tiles = sum(mk * mc * (g.weight_tile_bytes(nk, nc, lanes) + 8 * nk)
                for nk, mk in sizes(g.k, t.k_t) for nc, mc in sizes(g.c, t.c_t))
    return int(g.groups * tiles)


def _regions(stack: Stack, parts: tuple[Part, ...], n_img: int):
    """(tensor -> most rows its window holds, tensor -> most columns, tensor -> pixels computed or loaded
    in all, tiles) over every part's bands and column tiles (one image)."""
    most: dict[str, int] = {}
    made: dict[str, int] = {}
    tiles = col_tiles(stack)
    widest = {t: max(hi - lo for tile in tiles for tt, (lo, hi) in tile.items() if tt == t) for t, _ in stack.shapes
              if any(t in tile for tile in tiles)}
    cols = {t: sum(tile[t][1] - tile[t][0] for tile in tiles if t in tile) for t in widest}
    count = 0
    for part in parts:
        y_lo, y_hi = part_rows(stack, part)
        for name, (lo, hi, new) in _bands_of(stack, y_lo, y_hi, stack.mode)[0].items():
            size = np.maximum(hi - lo, 0)
            if size.any() and name in cols:
                most[name] = max(most.get(name, 0), int(size.max()))
                made[name] = made.get(name, 0) + int(np.maximum(hi - new, 0).sum()) * cols[name]
        count += len(range(y_lo, y_hi, stack.rows)) * len(tiles)
    return most, widest, made, count


def _homes(graph: Graph, stack: Stack) -> dict[str, str]:
    """tensor -> the later tensor whose region it shares: the input of an element-wise layer that nothing
    else reads, computed over in place (chains share one region, owned by the last)."""
    homes: dict[str, str] = {}
    inside = set(stack.nodes)
    for m, ins in zip(reversed(stack.members), reversed(stack.inputs)):
        if m.kind != "eltwise":
            continue
        for u in ins:
            if u in inside and u not in homes and [r.name for r in graph.consumers(u)] == [m.node]:
                homes[u] = homes.get(m.node, m.node)
                break
    return homes


def _skeleton(graph: Graph, plans: dict[str, LayerPlan], names: list[str]) -> Stack:
    """The stack of ``names`` before sizing: its layers, their inputs, the loaded tensors, the shapes, which
    tensors share a region (bands of one row, recompute: placeholders)."""
    inside = set(names)
    members, inputs, shapes = [], [], {}
    for name in names:
        node, plan = graph[name], plans[name]
        if node.op is Op.MAXPOOL:
            members.append(LayerPlan(name, "pool", geom=_pool_geom(graph, node)))
        elif plan.kind == "matmul":
            members.append(LayerPlan(name, "matmul", geom=plan.geom))
        else:
            members.append(LayerPlan(name, "eltwise"))
        inputs.append(tuple(node.inputs))
        for t in (name, *node.inputs):
            shapes[t] = _hwc(graph, t)
    loaded = tuple(dict.fromkeys(t for ins in inputs for t in ins if t not in inside))
    stack = Stack(tuple(members), tuple(inputs), loaded, tuple(shapes.items()), 1, "recompute")
    return replace(stack, homes=tuple(_homes(graph, stack).items()))


@functools.lru_cache(maxsize=8192)
def _pitched(m: LayerPlan, t: MatmulTiling) -> LayerPlan:
    """A matmul layer with its tiling inside a stack: its input region holds every channel of a pixel, so a
    channel tile is read at the pixel's pitch."""
    g = m.geom
    c_total = g.c if g.depthwise else g.c * g.groups
    nc = t.k_t if g.depthwise else t.c_t
    return replace(m, tiling=t, parts=(Part(0),), geom=replace(g, x_pitch=c_total if nc < c_total else 0))


def _size_stack(graph: Graph, plans: dict[str, LayerPlan], names: list[str], arch: ArchConfig, rows: int, mode: str,
                parts_of, skeleton: Stack | None = None, cols: int = 0):
    """(stack, scratchpad layout, parts, pixels made per tensor, tiles, most pixels a tile holds per tensor)
    of ``names`` in bands of ``rows`` (tiles of ``cols`` columns, 0: whole rows) in ``mode``, or None when
    it does not fit."""
    skeleton = skeleton or _skeleton(graph, plans, names)
    members, loaded, shapes = skeleton.members, skeleton.loaded, dict(skeleton.shapes)
    last = graph[names[-1]]
    n_img, oh = last.out.shape[0], last.out.shape[2]
    parts = parts_of(n_img, oh)
    ow = last.out.shape[3]
    stack = replace(skeleton, rows=min(rows, oh), mode=mode, cols=cols if cols and cols < ow else 0)
    if stack.cols and (mode != "recompute" or not _left_aligned(stack)):
        return None                                   # column tiles: recompute, boxes read from their start
    most, widest, made, n_bands = _regions(stack, parts, n_img)
    if any(name not in most for name in names):       # a layer no band reads (cannot happen in a chain)
        return None
    spad = arch.core.scratchpad_bytes
    # regions: one per tensor, but an element-wise layer whose input is read by it alone computes in
    # place; loaded tensors and the stored last one double-buffered (their DMA overlaps compute), the
    # others single (rows kept from a band are shifted to the front of the region)
    regions = []
    for name in stack.owners:
        h, w, c = shapes[name]
        one = name not in loaded and name != stack.last
        regions.append((f"t:{name}", most[name] * widest[name] * c, 1 if one else 2))
    for m in members:
        if graph[m.node].op is Op.LUT:
            regions.append((f"p:{m.node}", 256, 1))
    used = SpadLayout(tuple(regions)).total
    # weight tiles: each matmul member's share of what is left, by its weights' size
    mm = [m for m in members if m.kind == "matmul"]
    sizes = [max(1, m.geom.weight_tile_bytes(m.geom.k, m.geom.c, m.geom.lanes(arch.core)) * m.geom.groups) for m in mm]
    left = spad - used - 16 * (len(mm) + 1)
    if left <= 0:
        return None
    full = sum(align(s) + 8 * m.geom.k * m.geom.groups for s, m in zip(sizes, mm))
    tiled = {}
    for m, size in zip(mm, sizes):
        budget = left if full <= left else int(left * size / sum(sizes))
        found = _member_tiling(m.geom, arch, budget, rows, widest[m.node])
        if found is None:
            return None
        tiled[m.node] = found
    members = [_pitched(m, tiled[m.node][0]) if m.kind == "matmul" else m for m in members]
    regions += [(f"w:{name}", slot, slots) for name, (_, slot, slots) in tiled.items()]
    layout = SpadLayout(tuple(regions))
    if layout.total > spad:
        return None
    stack = replace(stack, members=tuple(members))
    return stack, layout, parts, made, n_bands * n_img, {t: most[t] * widest[t] for t in most}


def _priced(graph: Graph, plans: dict[str, LayerPlan], stack: Stack, layout: SpadLayout, parts, made: dict,
            n_tiles: int, most_px: dict, arch: ArchConfig) -> LayerPlan:
    """The stack's plan with the cost model's figures: compute scaled by the pixels each layer computes
    (``made``, one image), DMA of what is loaded and stored, the slower of the two, against the layers'
    own estimates."""
    n_img = graph[stack.last].out.shape[0]
    dram_rate, _, lat = transfer_rates(arch)
    compute = macs_again = 0
    w_bytes = first = steps = 0
    for m in stack.members:
        h, w, c = stack.shape(m.node)
        pixels = made[m.node] * n_img
        steps += _steps(m, pixels, n_tiles)
        if m.kind == "matmul":                       # the stack's tiling of the layer, per pixel computed
            e = _estimate(m.geom, m.tiling, arch)
            compute += e.compute * pixels / max(m.geom.n * h * w, 1)
            macs_again += (made[m.node] - h * w) * n_img * _macs_per_row(m) // max(w, 1)
            g, t = m.geom, m.tiling
            one = t.k_t >= g.k and t.c_t >= g.c and g.groups == 1
            w_bytes += _weight_bytes(g, t, g.lanes(arch.core)) * (len(parts) if one else n_tiles)
            # each layer's first weight tile arrives before it can start (a conservative fill)
            first += g.weight_tile_bytes(min(t.k_t, g.k), min(t.c_t, g.c), g.lanes(arch.core)) + 8 * t.k_t
        else:
            ops = (m.geom.kh * m.geom.kw) if m.kind == "pool" else 1
            compute += pixels * c * ops / arch.core.vector_lanes
        compute += n_tiles * arch.core.vector_fill_cycles
    if stack.mode == "cache":                  # copies of the kept rows: a few rows per tensor and band
        for name in (*stack.loaded, *stack.nodes[:-1]):
            h, w, c = stack.shape(name)
            compute += n_tiles * (2 * w * c / arch.core.vector_lanes + arch.core.vector_fill_cycles)
    io = sum(made[name] * n_img * stack.shape(name)[2] for name in stack.loaded)
    h, w, c = stack.shape(stack.last)
    io += n_img * h * w * c
    dram = int(io + w_bytes)
    dma = dram / dram_rate
    cores = len(parts)
    # the first tile's inputs and the layers' first weight tiles are loaded before compute can start
    first += sum(most_px.get(name, 0) * stack.shape(name)[2] for name in stack.loaded)
    cycles = int(max(compute / cores, dma) + first / dram_rate + 2 * lat + n_tiles / cores * lat / 4)
    unfused = sum(plans[n].est_cycles for n in stack.nodes)
    unfused_dram = sum(_layer_dram(graph, plans, name) for name in stack.nodes)
    stack = replace(stack, dram_bytes=dram, unfused_dram_bytes=int(unfused_dram), unfused_cycles=int(unfused),
                    recomputed_macs=int(max(macs_again, 0)), steps=int(steps))
    how = "rows" if parts[0].y is not None else "batch" if parts[0].n is not None else "single"
    tiles = f"bands of {stack.rows} rows" + (f" x {stack.cols} columns" if stack.cols else "")
    reason = (f"fused {len(stack.members)} layers ({', '.join(stack.nodes)}) in {tiles}, "
              f"{stack.mode}: est {cycles} cycles and {dram:,} DRAM bytes against {unfused} cycles and "
              f"{int(unfused_dram):,} bytes layer by layer; scratchpad {layout.total:,} of "
              f"{arch.core.scratchpad_bytes:,} bytes")
    return LayerPlan(stack.last, "stack", layout, est_cycles=cycles, reason=reason,
                     partition=how if len(parts) > 1 else "single", parts=parts, stack=stack)


# ------------------------------------------------------------------ the choice
def _runs(graph: Graph, plans: dict[str, LayerPlan], orders: dict) -> list[list[str]]:
    """Maximal runs of consecutive layers that can be fused."""
    runs, cur = [], []
    for node in graph:
        if node.name in plans and member_kind(graph, node, plans[node.name], orders):
            cur.append(node.name)
        else:
            if len(cur) > 1:
                runs.append(cur)
            cur = []
    if len(cur) > 1:
        runs.append(cur)
    return runs


def _closed(graph: Graph, names: list[str]) -> bool:
    """Every layer's output but the last's is read inside the run only, and the run is one chain."""
    inside = set(names)
    outputs = set(graph.outputs)
    for name in names[:-1]:
        readers = graph.consumers(name)
        if name in outputs or not readers or any(r.name not in inside for r in readers):
            return False
    return True


def _row_options(oh: int, tile: int | None) -> list[int]:
    if tile:
        return [min(tile, oh)]
    out, r = {oh}, 1
    while r < oh:
        out.add(r)
        r *= 2
    return sorted(out)


def _energy(arch: ArchConfig, cycles: float, dram: float, macs: float = 0) -> float:
    """The estimate the choice minimizes: DRAM bytes, leakage over the cycles, MACs done again (pJ)."""
    e = arch.energy
    return dram * e.dram_pj_per_byte + cycles * e.leakage_pj_per_cycle + macs * e.mac_pj


def _layer_dram(graph: Graph, plans: dict[str, LayerPlan], name: str) -> int:
    """A layer's DRAM bytes one by one, as the stacks' comparison counts them: inputs, output, weights."""
    node = graph[name]
    total = sum(graph[i].out.size for i in node.inputs) + node.out.size
    w = node.params.get("w")
    if w is not None:
        geom = plans[name].geom
        total += int(np.count_nonzero(w)) if geom is not None and geom.fmt.packed else w.size
    return int(total)


def _steps(m: LayerPlan, pixels: int, n_tiles: int) -> int:
    """About how many compute steps (counter increments, docs/isa.md) a layer takes computing ``pixels``
    in ``n_tiles`` tiles: per tile of rows, each k tile and c tile (matmul), or one per tile."""
    if m.kind != "matmul":
        return n_tiles
    g, t = m.geom, m.tiling
    c_tiles = 1 if g.depthwise else ceil_div(g.c, t.c_t)
    row_tiles = pixels // max(t.oh_t * t.ow_t, 1) + n_tiles
    return g.groups * ceil_div(g.k, t.k_t) * c_tiles * row_tiles


def _stack_energy(arch: ArchConfig, plan: LayerPlan) -> float:
    return _energy(arch, plan.est_cycles, plan.stack.dram_bytes, plan.stack.recomputed_macs)


def _pays(plan: LayerPlan) -> bool:
    """No slower and no more DRAM-hungry than the layers one by one, by the cost model (the pipeline then
    checks the stacks it keeps by simulation)."""
    st = plan.stack
    return plan.est_cycles <= st.unfused_cycles and st.dram_bytes <= st.unfused_dram_bytes


def _overlapping(stack: Stack) -> bool:
    """Whether neighbouring bands share rows of some tensor (a window taller than its stride): otherwise
    both modes compute and load the same rows, and ``cache`` only costs scratchpad."""
    return any(m.kind != "eltwise" and m.geom.dh * (m.geom.kh - 1) + 1 > m.geom.sh for m in stack.members)


def _best(graph, plans, names, arch, parts_of, tile, modes, must_pay: bool) -> tuple[LayerPlan | None, bool]:
    """(the plan of a run of layers, over band heights and modes, with the lowest estimated energy (then
    cycles), whether any plan fits); with ``must_pay`` only plans that pay count. Bands span whole rows;
    where no band of whole rows fits, tiles of half, a quarter, ... of the columns (recompute). ``tile``:
    rows, or (rows, columns), forced."""
    last = graph[names[-1]].out.shape
    oh, ow = last[2], last[3]
    rows, cols = tile if isinstance(tile, tuple) else (tile, 0)
    found, key, fits = None, None, False
    options = _row_options(oh, rows)
    skeleton = _skeleton(graph, plans, names)
    if len(modes) > 1 and not _overlapping(skeleton):
        modes = ("recompute",)
    # whole rows; where none fits, half, a quarter, ... of the columns (auto: two steps, enough where tiles
    # pay at all, since every column tile reloads tiled weights and recomputes its halo)
    narrower = [ceil_div(ow, 2 ** i) for i in range(1, 3 if must_pay else 8) if ceil_div(ow, 2 ** i) >= 4]
    widths = [cols] if cols else [0] + narrower
    for width in widths:
        for mode in (modes if not width else ("recompute",) if "recompute" in modes else ()):
            memo: dict[int, tuple | None] = {}

            def size(i: int):
                if i not in memo:
                    memo[i] = _size_stack(graph, plans, names, arch, options[i], mode, parts_of, skeleton, width)
                return memo[i]
            # taller bands only need more scratchpad: the tallest that fits by bisection
            lo, hi = -1, len(options) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if size(mid) is None:
                    hi = mid - 1
                else:
                    lo = mid
            tallest = [size(i) for i in range(lo, max(lo - PRICED, -1), -1)]
            fits |= bool(tallest)
            for one in tallest:                 # the tallest bands that fit: fewest bands, least recomputed
                plan = _priced(graph, plans, *one, arch)
                if plan.stack.steps > MAX_STEPS or (must_pay and not _pays(plan)):
                    continue
                k = (_stack_energy(arch, plan), plan.est_cycles)
                if found is None or k < key:
                    found, key = plan, k
        if fits:
            break                               # the widest tiles that fit
    return found, fits


def choose(graph: Graph, plans: list[LayerPlan], arch: ArchConfig, orders: dict, fusion: str = "auto",
           tile: int | tuple[int, int] | None = None, mode: str | None = None, cores: int = 1) -> list[LayerPlan]:
    """The plans with fused stacks in place of runs of layers: each stack's plan at its last layer, the
    other layers' plans kind "fused" (emitted by the stack)."""
    if fusion not in FUSIONS:
        raise ScheduleError(f"unknown fusion '{fusion}'", hint=f"choose one of: {', '.join(FUSIONS)}")
    if mode is not None and mode not in MODES:
        raise ScheduleError(f"unknown overlap mode '{mode}'", hint=f"choose one of: {', '.join(MODES)}")
    if isinstance(tile, tuple) and mode == "cache":
        raise ScheduleError(f"tiles of {tile[1]} columns recompute the columns they share; --overlap cache keeps "
                            "rows and takes bands of whole rows", hint="give --tile ROWS, or --overlap recompute")
    if fusion == "none":
        return plans
    modes = (mode,) if mode else MODES
    by_name = {p.node: p for p in plans}

    def parts_of(n_img: int, oh: int) -> tuple[Part, ...]:
        if cores == 1:
            return (Part(0),)
        if n_img >= cores:
            return flat_parts(n_img, cores, "n")
        return flat_parts(oh, cores, "y")

    chosen: list[LayerPlan] = []
    for run in _runs(graph, by_name, orders):
        if fusion == "max":
            chosen += _longest(graph, by_name, run, arch, parts_of, tile, modes)
        else:
            chosen += _cheapest(graph, by_name, run, arch, parts_of, tile, modes)
    out = {p.node: p for p in plans}
    for sp in chosen:
        for name in sp.stack.nodes[:-1]:
            out[name] = LayerPlan(name, "fused", reason=f"fused into the stack that ends at '{sp.node}'", parts=())
        out[sp.node] = sp
    return [out[p.node] for p in plans]


def _longest(graph, plans, run, arch, parts_of, tile, modes) -> list[LayerPlan]:
    """From the start of the run, the longest closed stack that fits, then again after it."""
    out, i = [], 0
    while i < len(run) - 1:
        for j in range(min(len(run), i + MAX_LAYERS), i + 1, -1):
            names = run[i:j]
            if not _closed(graph, names):
                continue
            plan, _ = _best(graph, plans, names, arch, parts_of, tile, modes, False)
            if plan is not None:
                out.append(plan)
                i = j
                break
        else:
            i += 1
    return out


def _cheapest(graph, plans, run, arch, parts_of, tile, modes) -> list[LayerPlan]:
    """Cuts by dynamic programming over the run: a stack is a candidate only where the cost model
    estimates it no slower and no more DRAM-hungry than its layers one by one (``_pays``); the cuts
    minimize the estimated energy (DRAM, leakage, MACs done again), then the cycles."""
    n = len(run)
    single = [_energy(arch, plans[name].est_cycles, _layer_dram(graph, plans, name)) for name in run]
    best: list = [(0.0, 0, [])] + [None] * n             # (energy, cycles, stacks) of run[:j]
    for j in range(1, n + 1):
        e, c, s = best[j - 1]
        best[j] = (e + single[j - 1], c + plans[run[j - 1]].est_cycles, s)
        for i in range(j - 2, max(0, j - AUTO_LAYERS) - 1, -1):    # shorter stacks first
            names = run[i:j]
            if not _closed(graph, names):
                continue
            plan, fits = _best(graph, plans, names, arch, parts_of, tile, modes, True)
            if not fits:
                break                                   # a longer stack needs at least this scratchpad
            if plan is None:
                continue
            e0, c0, s0 = best[i]
            cand = (e0 + _stack_energy(arch, plan), c0 + plan.est_cycles, s0 + [plan])
            if cand[:2] < best[j][:2]:
                best[j] = cand
    return best[n][2]
