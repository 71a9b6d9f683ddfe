"""Per-op lowering to a LayerPlan: one entry per op in LOWER."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from sieve.arch.config import ArchConfig
from sieve.arch.formats import DENSE, NM, UNSTRUCTURED, WeightFormat
from sieve.ir.graph import Graph, Node, Op
from sieve.ir.registry import move_view, resize_tables, trailing_broadcast
from sieve.ir.types import DType
from sieve.scheduler.plan import ConvGeom, RowCounts, LayerPlan, Part, ScheduleError, SpadLayout, align, ceil_div
from sieve.scheduler.layout import hw_weights
from sieve.scheduler.partition import flat_parts, matmul_parts, sub_geom
from sieve.scheduler.tiling import estimate, matmul_spad, objective_score, search, stream_tile


MAX_KERNEL = 31                              # the MATMUL's kernel_h / kernel_w fields (5 bits)


def _dense_geom(graph: Graph, node: Node, out_bytes: int, fmt: WeightFormat) -> ConvGeom:
    x, w = graph[node.inputs[0]].out.shape, node.params["w"]
    if len(x) == 3 and w.ndim == 2:                  # tokens: [B·T, C] rows, one weight matrix
        return ConvGeom(n=1, h=1, w=x[0] * x[1], c=x[2], k=node.out.shape[2], oh=1, ow=x[0] * x[1],
                        out_bytes=out_bytes, fmt=fmt)
    if len(x) == 3:                                  # batched: each batch its own weights
        return ConvGeom(n=1, h=1, w=x[1], c=x[2], k=node.out.shape[2], oh=1, ow=x[1], groups=x[0],
                        out_bytes=out_bytes, fmt=fmt, batched=True)
    return ConvGeom(n=1, h=1, w=x[0], c=x[1], k=node.out.shape[1], oh=1, ow=x[0], out_bytes=out_bytes, fmt=fmt)


def _gap_geom(graph: Graph, node: Node, out_bytes: int, fmt: WeightFormat) -> ConvGeom:
    """A depthwise window sum over the whole image; beyond the MATMUL's kernel fields, in bands."""
    n, c, h, w = graph[node.inputs[0]].out.shape
    band = (0, 0)
    if max(h, w) > MAX_KERNEL:
        band = (ceil_div(h, ceil_div(h, MAX_KERNEL)), ceil_div(w, ceil_div(w, MAX_KERNEL)))
    return ConvGeom(n, h, w, c, c, 1, 1, h, w, depthwise=True, band=band)


def _avgpool_geom(graph: Graph, node: Node, out_bytes: int, fmt: WeightFormat) -> ConvGeom:
    """A depthwise window sum, padding reading as zero."""
    n, c, h, w = graph[node.inputs[0]].out.shape
    (kh, kw), (sh, sw), (pt, pl, _, _) = node.attrs["kernel"], node.attrs["stride"], node.attrs["pad"]
    return ConvGeom(n, h, w, c, c, node.out.shape[2], node.out.shape[3], kh, kw, sh, sw, 1, 1, pt, pl,
                    depthwise=True)


def _conv_geom(graph: Graph, node: Node, out_bytes: int, fmt: WeightFormat) -> ConvGeom:
    n, c, h, w = graph[node.inputs[0]].out.shape
    (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = (node.attrs["kernel"], node.attrs["stride"],
                                                    node.attrs["pad"], node.attrs["dilation"])
    groups, k = node.attrs.get("groups", 1), node.out.shape[1]
    depthwise = groups > 1 and groups == c == k
    if depthwise or groups == 1:
        groups = 1
    else:
        c, k = c // groups, k // groups
    return ConvGeom(n, h, w, c, k, node.out.shape[2], node.out.shape[3], kh, kw, sh, sw, dh, dw, pt, pl,
                    groups, depthwise, out_bytes, fmt=fmt)


# the matmul geometry of each op that runs on the MAC array
GEOM = {Op.CONV2D: _conv_geom, Op.DENSE: _dense_geom, Op.GLOBALAVGPOOL: _gap_geom, Op.AVGPOOL: _avgpool_geom}


def conv_geom(graph: Graph, node: Node) -> ConvGeom:
    out_bytes = 4 if node.out.dtype is DType.INT32 else 1
    return GEOM[node.op](graph, node, out_bytes, dense_format(node))


def dense_format(node: Node) -> WeightFormat:
    """A layer's weights stored dense at their width: int16 (imported zero points), int4 (quantized to
    4 bits, with its scale groups) or int8."""
    w = node.params.get("w")
    if w is not None and w.dtype == np.int16:
        return WeightFormat(DENSE, 16)
    if node.attrs.get("w_bits") == 4:
        return WeightFormat(DENSE, 4, group=node.attrs.get("w_group", 0))
    return WeightFormat()


NM_BLOCKS = (4, 8, 16)


def weight_formats(graph: Graph, node: Node, g: ConvGeom, lanes: int, orders: dict) -> list[ConvGeom]:
    """The weight formats worth pricing for a layer: dense (unless nearly all zeros), unstructured when
    there are zeros to skip, N:M when every block of M channels holds at most N nonzeros (the smallest
    such N per M) and that is close to the real density."""
    w = node.params.get("w")
    if g.depthwise or g.groups > 1 or g.batched or w is None or w.dtype != np.int8:
        return [g]
    hw = hw_weights(graph, node, orders)
    c = hw.shape[3]
    flat = hw.reshape(hw.shape[0], -1)
    nz = (flat != 0).view(np.uint8)
    nnz_r = nz.sum(axis=1, dtype=np.int64)
    density = nnz_r.sum() / max(flat.size, 1)
    g = replace(g, density=float(density))
    # below 30 % density packed weights (3 bytes per nonzero) beat dense in bytes and in cycles
    out = [g] if density >= 0.3 else []
    nm = []
    # nonzeros per block of 2, 4, 8, 16 consecutive channels: each level adds neighbouring pairs
    blocks = nz[:, 0::2] + nz[:, 1::2] if c % 2 == 0 else None
    for m in NM_BLOCKS:
        if blocks is not None and blocks.shape[1] % 2 == 0:
            blocks = blocks[:, 0::2] + blocks[:, 1::2]
        else:
            blocks = None
        if c % m or blocks is None:
            continue
        n = max(int(blocks.max(initial=0)), 1)
        # N:M is worth a look when its fixed density is close to the layer's real one
        if n < m and lanes % n == 0 and n / m <= 2 * density:
            nm.append(replace(g, fmt=replace(g.fmt, kind=NM, nm=(n, m))))
    # of the N:M patterns that hold, only the sparsest is worth pricing (ties: the smaller block)
    nm = sorted(nm, key=lambda f: (f.fmt.nm[0] / f.fmt.nm[1], f.fmt.nm[1]))[:1]
    # an N:M format at the real density beats unstructured packing on bytes and cannot lose on cycles
    exact_nm = any(f.fmt.nm[0] / f.fmt.nm[1] <= 1.05 * density for f in nm)
    if density < 0.9 and not exact_nm:
        out.append(replace(g, fmt=replace(g.fmt, kind=UNSTRUCTURED), dmax=float(nnz_r.max() / flat.shape[1]),
                           nnz_max=int(nnz_r.max()), rows=RowCounts(hw)))
    out += nm
    return out


@dataclass(frozen=True)
class Options:
    """What the user chose for the whole schedule."""
    orders: dict                                 # tensor -> MemoryOrder (scheduler.layout)
    sparse: bool = True                          # the cost model may pick a packed weight format
    balance: bool = True                         # order PE rows by work in unstructured tiles
    formats: tuple[str, ...] | None = None       # restrict the weight formats (tests, comparisons)
    partition: str = "auto"                      # how conv/dense layers are split across cores
    objective: str = "cycles"                    # what the choices minimize: cycles, energy, edp

    def cores(self, arch: ArchConfig) -> int:
        """The cores one layer is split over (a pipeline runs each layer on one core)."""
        return 1 if self.partition == "pipeline" else arch.cores


def _envelope(subs: list[ConvGeom]) -> ConvGeom:
    """A geometry at least as large as every core's share in each dimension: the scratchpad layout
    sized for it holds any part's tiles (interior row parts read a full window, border ones less)."""
    first = subs[0]
    same = all((s.h, s.pt, s.w, s.pl) == (first.h, first.pt, first.w, first.pl) for s in subs)
    return replace(first, n=max(s.n for s in subs), h=max(s.h for s in subs), w=max(s.w for s in subs),
                   k=max(s.k for s in subs), oh=max(s.oh for s in subs), ow=max(s.ow for s in subs),
                   groups=max(s.groups for s in subs), pt=first.pt if same else 0, pl=first.pl if same else 0)


def _price(g: ConvGeom, parts: tuple[Part, ...], arch: ArchConfig, objective: str):
    """(tiling, estimated cycles, the tiling's reason, the envelope geometry, estimated energy in pJ) of
    one format and partition, or None when no tile fits. All cores run at once and share the DRAM
    channel: the estimate is the slowest core's, or all cores' DRAM transfers back to back, whichever is
    longer; the energy is every core's, with leakage over that span."""
    subs = [sub_geom(g, p).per_band() for p in parts]
    env = _envelope(subs)
    found = search(env, arch, objective)
    if found is None:
        return None
    tiling, est, reason = found
    if len(parts) == 1 and subs[0] == env:
        return tiling, est.cycles, reason, env, est.energy_pj
    ests = {}
    for s in subs:
        if s not in ests:
            ests[s] = estimate(s, tiling, arch)
    per_core = [ests[s] for s in subs]
    cycles = max(max(e.cycles for e in per_core), sum(e.dma for e in per_core))
    leak = arch.energy_table.leakage_pj_per_cycle * arch.cores
    energy = sum(e.energy_pj - e.cycles * leak for e in per_core) + cycles * leak
    return tiling, cycles, reason, env, energy


def _lower_matmul(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    g = replace(conv_geom(graph, node), balance=opts.balance)
    if max(g.per_band().kh, g.per_band().kw, g.sh, g.sw) > MAX_KERNEL or max(g.dh, g.dw, g.pt, g.pl) > 15:
        raise ScheduleError(f"kernel {g.kh}x{g.kw} and stride (at most 31), dilation and padding (at most 15) "
                            "exceed the MATMUL instruction's fields", node.name)
    options = weight_formats(graph, node, g, g.lanes(arch.core), opts.orders) if opts.sparse else [g]
    if opts.formats is not None:                     # restrict the choice (tests, comparisons)
        options = [f for f in options if f.fmt.kind in opts.formats] or options[:1]
    strategies = {"auto": ("channels", "rows", "batch"), "pipeline": ("single",)}.get(opts.partition,
                                                                                     (opts.partition,))
    found = []
    for f in options:
        seen = set()
        for how in strategies:
            used, parts = matmul_parts(f, how, arch.cores, arch.core.pe_rows)
            if parts in seen:                        # a fallback that repeats another strategy
                continue
            seen.add(parts)
            priced = _price(f, parts, arch, opts.objective)
            if priced is not None:
                found.append((f, used, parts, priced))
    if not found:
        raise ScheduleError(
            f"no tile fits: even one output channel group and one pixel needs more than the "
            f"{arch.core.scratchpad_bytes}-byte scratchpad or {arch.acc_entries}-entry accumulator",
            node.name, "use an arch with a larger scratchpad")
    found.sort(key=lambda c: float(objective_score(opts.objective, c[3][1], c[3][4])))
    g, used, parts, (tiling, est, reason, env, energy) = found[0]
    if used != "single":
        reason = f"{used} over {len(parts)} cores, est {est} cycles, {energy / 1e6:.4g} µJ; per core: {reason}"
    others = [f"{_fmt(f)}{' ' + u if used != 'single' else ''} {p[1]} cycles {p[4] / 1e6:.4g} µJ"
              for f, u, _, p in found[1:]]
    if others:
        reason = f"{reason}; other choices: {', '.join(others)}"
    return LayerPlan(node.name, "matmul", matmul_spad(env, tiling, arch.core), tiling, g,
                     est_cycles=est, est_energy_pj=energy, reason=reason, partition=used, parts=parts)


def _fmt(g: ConvGeom) -> str:
    return g.fmt.name


def _longest(parts: tuple[Part, ...], dim: str, total: int) -> int:
    return max(hi - lo for lo, hi in (p.range(dim, total) for p in parts))


def _split_note(parts: tuple[Part, ...], what: str) -> str:
    return f"; {what} split over {len(parts)} cores" if len(parts) > 1 else ""


def _lower_pool(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    n, c, h, w = graph[node.inputs[0]].out.shape
    _, _, oh, ow = node.out.shape
    (kh, kw), (sh, _) = node.attrs["kernel"], node.attrs["stride"]
    parts = flat_parts(oh, opts.cores(arch), "y")
    longest = _longest(parts, "y", oh)
    budget = arch.core.scratchpad_bytes
    c_t = c
    while True:
        fits = [rows for rows in range(longest, 0, -1)
                if SpadLayout((("x", min(h, (rows - 1) * sh + kh) * w * c_t), ("out", rows * ow * c_t))).total <= budget]
        if fits:
            break
        if c_t == 1:
            raise ScheduleError("one row of the pooling window does not fit the scratchpad", node.name)
        c_t = ceil_div(c_t, 2)
    # an output row reads stride rows of the input and writes one row
    rows, est = stream_tile(longest, fits[0], sh * w * c, ow * c, ow * c * kh * kw, arch)
    ih = min(h, (rows - 1) * sh + kh)
    layout = SpadLayout((("x", ih * w * c_t), ("out", rows * ow * c_t)))
    steps = n * ceil_div(longest, rows) * ceil_div(c, c_t)
    reason = (f"rows={rows} channels={c_t}: the cheapest double-buffered stream of the tiles that fit; {steps} steps"
              + _split_note(parts, "output rows"))
    return LayerPlan(node.name, "pool", layout, pool_rows=rows, pool_c=c_t, est_cycles=est * n, reason=reason,
                     partition="rows" if len(parts) > 1 else "single", parts=parts)


def _lower_eltwise(graph: Graph, node: Node, arch: ArchConfig, opts: Options, const_bytes: int = 0,
                   period: int = 0) -> LayerPlan:
    """Element tiles streamed through the vector unit; ``const_bytes`` of constants (a table) stay in the
    scratchpad, loaded once. With a ``period`` (the second operand repeats every ``period`` elements)
    tiles are whole periods (the operand loaded once) or divide it (a stretch of it per tile)."""
    names = ("a", "b", "out") if len(node.inputs) == 2 else ("a", "out")
    total = node.out.size
    per = ((arch.core.scratchpad_bytes - 2 * align(const_bytes)) // (2 * len(names))) // 16 * 16
    if per < 16:
        raise ScheduleError("the element tiles and constants do not fit the scratchpad", node.name)
    quantum, tile = 64, 0
    if period and period <= per:                    # whole periods per tile
        quantum = period * 16 // np.gcd(period, 16)
        if quantum > per:
            quantum = period
    elif period:                                     # a divisor of the period per tile
        tile = max(d for d in range(1, per + 1) if period % d == 0 and (d % 16 == 0 or d == period or d < 16)
                   and d <= per) if per >= 1 else 1
        quantum = tile
    parts = flat_parts(total, opts.cores(arch), "e", quantum)
    longest = _longest(parts, "e", total)
    if tile:
        tile, est = min(tile, longest), stream_tile(longest, tile, len(names) - 1, 1, len(names) - 1, arch, tile)[1]
    else:
        largest = max(quantum if period else 16, min(align(longest), per, (1 << 24) - 16))
        tile, est = stream_tile(longest, largest, len(names) - 1, 1, len(names) - 1, arch,
                                quantum if period else 16)
    regions = ((("p", const_bytes),) if const_bytes else ()) + tuple((name, tile) for name in names)
    steps = ceil_div(longest, tile)
    note = ", a 256-entry table loaded once" if const_bytes else ""
    return LayerPlan(node.name, "eltwise", SpadLayout(regions), tile_elems=tile, est_cycles=est,
                     reason=f"{tile} elements per tile{note}: the cheapest double-buffered stream of the tiles "
                     f"that fit; {steps} steps" + _split_note(parts, "elements"),
                     partition="elements" if len(parts) > 1 else "single", parts=parts)


def _lower_add(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """Equal shapes: an element stream. A second operand repeating over the first's leading axes (a bias,
    position embeddings): tiles aligned to it, so each reads one stretch of it (BROADCAST in the plan)."""
    bc = graph[node.inputs[1]].out.size
    return _lower_eltwise(graph, node, arch, opts, period=bc if bc != node.out.size else 0)


def _lower_lut(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    return _lower_eltwise(graph, node, arch, opts, const_bytes=256)


def _pixel_plan(node: Node, arch: ArchConfig, opts: Options, kind: str, const: tuple[str, int], ops: int,
                what: str, note: str, largest: int | None = None) -> LayerPlan:
    """Tiles of whole pixels (all ``c`` channels) through the vector unit, split across cores by pixels;
    the per-channel ``const`` region (name, bytes) stays in the scratchpad beside the input and output
    tiles; ``ops`` vector operations per element, at most ``largest`` pixels per tile."""
    c = node.out.shape[1]
    pixels = node.out.size // c
    parts = flat_parts(pixels, opts.cores(arch), "e")
    longest = _longest(parts, "e", pixels)
    per = (arch.core.scratchpad_bytes - 2 * align(const[1])) // 4 // 16 * 16 // c
    if per < 1:
        raise ScheduleError(f"one pixel of {c} channels and {what} do not fit the scratchpad", node.name)
    cap = min(longest, per, ((1 << 24) - 16) // c, largest or longest)
    tile, est = stream_tile(longest, cap, c, c, ops * c, arch)
    layout = SpadLayout((const, ("a" if kind == "scale" else "x", tile * c), ("out", tile * c)))
    steps = ceil_div(longest, tile)
    return LayerPlan(node.name, kind, layout, tile_elems=tile, est_cycles=est,
                     reason=f"{tile} pixels per tile, {note}; {steps} steps" + _split_note(parts, "pixels"),
                     partition="pixels" if len(parts) > 1 else "single", parts=parts)


def _lower_mul(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """The same shapes: an element stream. One value per channel (squeeze-and-excite): tiles of whole
    pixels within an image, the image's channel vector loaded once per image."""
    b = graph[node.inputs[1]].out.shape
    if b == node.out.shape or trailing_broadcast(node.out.shape, b):
        return _lower_add(graph, node, arch, opts)
    c = node.out.shape[1]
    return _pixel_plan(node, arch, opts, "scale", ("b", c), 2, "its channel vector",
                       f"each image's {c} channel values loaded once", largest=node.out.size // c // node.out.shape[0])


def _lower_affine(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """Whole pixels (all channels) per tile; the channel parameters stay in the scratchpad."""
    c = node.out.shape[1]
    return _pixel_plan(node, arch, opts, "affine", ("p", 8 * c), 4, "their parameters",
                       f"{c} channel parameters loaded once")


def _lower_alias(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    return LayerPlan(node.name, "alias", reason="a view of its input: no data moves", parts=())


def _lower_rows(node: Node, arch: ArchConfig, opts: Options, kind: str, const_bytes: int, ops: int,
                what: str) -> LayerPlan:
    """Tiles of whole rows (the op's axis is the last, contiguous in memory), ``const_bytes`` of constants
    loaded once, ``ops`` vector operations per element."""
    d = node.out.shape[-1]
    rows = node.out.size // d
    parts = flat_parts(rows, opts.cores(arch), "e")
    longest = _longest(parts, "e", rows)
    per = (arch.core.scratchpad_bytes - 2 * align(const_bytes)) // 4 // align(d)
    if per < 1:
        raise ScheduleError(f"one row of {d} values and {what} do not fit the scratchpad", node.name)
    tile, est = stream_tile(longest, min(longest, per, 65535, ((1 << 24) - 16) // d), d, d, ops * d, arch)
    layout = SpadLayout((("p", const_bytes), ("a", tile * d), ("out", tile * d)))
    steps = ceil_div(longest, tile)
    return LayerPlan(node.name, kind, layout, tile_elems=tile, est_cycles=est,
                     reason=f"{tile} rows of {d} per tile, {what} loaded once; {steps} steps"
                     + _split_note(parts, "rows"), partition="rows" if len(parts) > 1 else "single", parts=parts)


def _lower_qsoftmax(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    return _lower_rows(node, arch, opts, "softmax", 1024, 5, "the 256-entry exp table")


def _lower_layernorm(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    return _lower_rows(node, arch, opts, "layernorm", 8 * node.out.shape[-1], 7, "gamma and beta")


def _lower_bmm(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """A product of two activations as a batched matmul: per batch, the second operand's [K][N] tile is
    loaded into a staging region and widened to int16 (b − zb, transposed to [N][K]) on the vector unit,
    then multiplied by the MAC array as wide weights (fmt 3). The tiling is searched for the batched
    geometry with a quarter of the scratchpad kept for the staging tile."""
    a = graph[node.inputs[0]].out.shape
    n = node.out.shape[-1]
    batch, m, k = (1,) + a if len(a) == 2 else a
    g = ConvGeom(n=1, h=1, w=m, c=k, k=n, oh=1, ow=m, groups=batch, batched=True, fmt=WeightFormat(DENSE, 16))
    core = replace(arch.core, scratchpad_bytes=arch.core.scratchpad_bytes * 3 // 4)
    found = search(g, replace(arch, core=core), opts.objective)
    if found is None:
        raise ScheduleError("no tile of the product fits the scratchpad and accumulator", node.name)
    tiling, est, reason = found
    layout = SpadLayout(matmul_spad(g, tiling, arch.core).regions + (("stage", tiling.k_t * tiling.c_t),))
    if layout.total > arch.core.scratchpad_bytes:
        raise ScheduleError("the product's tiles and its staging tile do not fit the scratchpad", node.name)
    parts = flat_parts(batch, 1 if opts.partition == "pipeline" else arch.cores, "g")
    return LayerPlan(node.name, "bmm", layout, tiling, g, est_cycles=est.cycles * ceil_div(batch, len(parts)),
                     reason=f"the second operand widened to int16 weights per tile; per batch: {reason}"
                     + _split_note(parts, "batches"), partition="batch" if len(parts) > 1 else "single",
                     parts=parts)


def lerp_rows_in(ty: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """The input rows [first, last + 1) that output rows [lo, hi) of a linear resize read."""
    return int(ty[lo:hi, 0].min()), int(ty[lo:hi, 1].max()) + 1


def _lower_lerp(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """Bands of output rows of a bilinear resize: the input rows they read loaded once, one LERP per output
    row, the band stored; the column table (6 bytes per output column) stays in the scratchpad."""
    x = graph[node.inputs[0]].out
    n, c, h, w = x.shape
    _, _, oh, ow = node.out.shape
    ty, _ = resize_tables(node, x)
    parts = flat_parts(oh, opts.cores(arch), "y")
    longest = _longest(parts, "y", oh)
    budget = arch.core.scratchpad_bytes - 2 * align(6 * ow)

    spans = [p.range("y", oh) for p in parts]

    def need(rows: int) -> int:
        """The most input rows a band reads: bands of ``rows`` output rows from each part's first row (a part
        that starts mid-way can straddle one input row more than bands from row 0)."""
        return max(b - a for y_lo, y_hi in spans for a, b in
                   (lerp_rows_in(ty, lo, min(lo + rows, y_hi)) for lo in range(y_lo, y_hi, rows)))
    fits = [r for r in range(min(longest, ((1 << 24) - 16) // (ow * c)), 0, -1)
            if 2 * (align(need(r) * w * c) + align(r * ow * c)) <= budget]
    if not fits:
        raise ScheduleError(f"two input rows and one output row of {c} channels do not fit the scratchpad", node.name)
    rows, est = stream_tile(longest, fits[0], w * c * h / oh, ow * c, 5 * ow * c, arch)
    rows = max(r for r in fits if r <= rows)
    layout = SpadLayout((("p", 6 * ow), ("x", need(rows) * w * c), ("out", rows * ow * c)))
    steps = n * ceil_div(longest, rows)
    return LayerPlan(node.name, "lerp", layout, pool_rows=rows, est_cycles=est * n,
                     reason=f"{rows} output rows per tile from the input rows they read, one LERP per row; "
                     f"{steps} steps" + _split_note(parts, "output rows"),
                     partition="rows" if len(parts) > 1 else "single", parts=parts)


def _lower_resize(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """Nearest: bands of whole input rows, loaded, passed through the vector unit, and written to each of
    the sh x sw output positions they repeat to by strided stores (one pixel's channels per DMA row).
    Linear: ``_lower_lerp``."""
    if node.attrs["mode"] == "linear":
        return _lower_lerp(graph, node, arch, opts)
    n, c, h, w = graph[node.inputs[0]].out.shape
    sh, sw = node.attrs["scale"]
    parts = flat_parts(h, opts.cores(arch), "y")
    longest = _longest(parts, "y", h)
    row = w * c
    rows = min(longest, arch.core.scratchpad_bytes // 4 // max(align(row), 1), ((1 << 24) - 16) // row)
    if rows < 1:
        raise ScheduleError(f"one input row of {w} x {c} values does not fit the scratchpad", node.name)
    rows, est = stream_tile(longest, rows, row, row * sh * sw, row, arch)
    layout = SpadLayout((("x", rows * row), ("out", rows * row)))
    steps = n * ceil_div(longest, rows)
    return LayerPlan(node.name, "resize", layout, pool_rows=rows, est_cycles=est * n,
                     reason=f"{rows} input rows per tile, each written {sh * sw} times by strided stores; "
                     f"{steps} steps" + _split_note(parts, "input rows"),
                     partition="rows" if len(parts) > 1 else "single", parts=parts)


def _addresses(order, size: int) -> np.ndarray:
    """The memory offset of each element of a tensor, in its logical row-major order."""
    perm = order.perm
    mem_shape = tuple(order.view_shape[p] for p in perm)
    return np.arange(size, dtype=np.int64).reshape(mem_shape).transpose(np.argsort(perm)).reshape(-1)


MAX_MOVE_RUNS = 1 << 20


def move_runs(graph: Graph, node: Node, orders: dict) -> tuple[np.ndarray, np.ndarray]:
    """(source offset, length) of each contiguous run of a MOVE's output, in output memory order: the
    view's elements mapped through both tensors' memory orders."""
    x = graph[node.inputs[0]].out
    src_of = _addresses(orders[node.inputs[0]], x.size)
    picked = move_view(node, np.arange(x.size, dtype=np.int64)).reshape(-1)
    src = np.empty(node.out.size, np.int64)
    src[_addresses(orders[node.name], node.out.size)] = src_of[picked]
    starts = np.flatnonzero(np.diff(src) != 1) + 1
    starts = np.concatenate(([0], starts))
    lengths = np.diff(np.concatenate((starts, [src.size])))
    return src[starts], lengths


def _move_boxes(src: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Runs grouped into 2-D boxes (src, dst, rows, row bytes, src stride): consecutive runs of one length
    whose sources step by one stride."""
    boxes, dst, i, n = [], 0, 0, len(src)
    while i < n:
        length, j = int(lengths[i]), i + 1
        stride = int(src[j] - src[i]) if j < n and lengths[j] == length and src[j] > src[i] else 0
        while j < n and lengths[j] == length and stride and src[j] - src[j - 1] == stride and j - i < 65535:
            j += 1
        boxes.append((int(src[i]), dst, j - i, length, stride if j - i > 1 else 0))
        dst += (j - i) * length
        i = j
    return boxes


def _move_tiles(boxes, per: int) -> tuple:
    """The boxes cut into tiles of at most ``per`` output bytes (a box by rows, a row by bytes)."""
    tiles, cur, used = [], [], 0
    for src, dst, rows, length, stride in boxes:
        r = 0
        while r < rows:
            if length > per:                          # one row longer than a tile: its pieces
                for b0 in range(0, length, per):
                    nb = min(per, length - b0)
                    if used + nb > per:
                        tiles.append(tuple(cur))
                        cur, used = [], 0
                    cur.append((src + r * stride + b0, dst + r * length + b0, 1, nb, 0))
                    used += nb
                r += 1
                continue
            fit = min(rows - r, (per - used) // length)
            if fit == 0:
                tiles.append(tuple(cur))
                cur, used = [], 0
                continue
            cur.append((src + r * stride, dst + r * length, fit, length, stride if fit > 1 else 0))
            used += fit * length
            r += fit
    if cur:
        tiles.append(tuple(cur))
    return tuple(tiles)


def _lower_move(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """A view copied: its contiguous runs gathered by strided loads into the scratchpad, passed through the
    vector unit, stored as contiguous tiles. A view that is already the input's memory (a reshape of a
    tensor stored in order) moves nothing: an alias."""
    src, lengths = move_runs(graph, node, opts.orders)
    if len(src) == 1 and src[0] == 0:
        return LayerPlan(node.name, "alias", reason="a reshape of its input's memory: no data moves", parts=())
    if len(src) > MAX_MOVE_RUNS:
        raise ScheduleError(f"the view moves {len(src)} separate runs of bytes (a transpose of the innermost "
                            f"axis); at most {MAX_MOVE_RUNS} are supported", node.name)
    per = min(arch.core.scratchpad_bytes // 4 // 16 * 16, (1 << 24) - 16)
    if per < 16:
        raise ScheduleError("the scratchpad cannot hold a tile of the copy", node.name)
    total = node.out.size
    tile, est = stream_tile(total, per, 1, 1, 1, arch, 16)
    tiles = _move_tiles(_move_boxes(src, lengths), tile)
    parts = flat_parts(len(tiles), opts.cores(arch), "e")
    rows = sum(t[2] for tile_ in tiles for t in tile_)
    return LayerPlan(node.name, "move", SpadLayout((("x", tile), ("out", tile))), tile_elems=tile,
                     est_cycles=est, moves=tiles,
                     reason=f"{len(src)} runs of bytes gathered by {rows} DMA rows into {len(tiles)} tiles of up to "
                     f"{tile} bytes" + _split_note(parts, "tiles"),
                     partition="tiles" if len(parts) > 1 else "single", parts=parts)


def _lower_const(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    return LayerPlan(node.name, "const", reason="a constant in the binary's data: no instructions", parts=())


def _lower_host(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    return LayerPlan(node.name, "alias", reason="runs on the host, in float, on the dequantized output", parts=())


def _lower_concat(graph: Graph, node: Node, arch: ArchConfig, opts: Options) -> LayerPlan:
    """Each input is requantized into its channel slice, a tile of pixels at a time."""
    c_max = max(graph[i].out.shape[1] for i in node.inputs)
    pixels = node.out.size // node.out.shape[1]
    parts = flat_parts(pixels, opts.cores(arch), "e")
    longest = _longest(parts, "e", pixels)
    per = arch.core.scratchpad_bytes // 4 // 16 * 16 // c_max
    if per < 1:
        raise ScheduleError(f"one pixel of {c_max} channels does not fit the scratchpad", node.name)
    c_all = node.out.shape[1]
    tile, est = stream_tile(longest, min(longest, per, ((1 << 24) - 16) // c_max), c_all, c_all, 2 * c_all, arch)
    layout = SpadLayout((("a", tile * c_max), ("out", tile * c_max)))
    steps = len(node.inputs) * ceil_div(longest, tile)
    return LayerPlan(node.name, "concat", layout, tile_elems=tile, est_cycles=est,
                     reason=f"{tile} pixels per tile, each input requantized into its channel slice; {steps} steps"
                     + _split_note(parts, "pixels"), partition="pixels" if len(parts) > 1 else "single",
                     parts=parts)


LOWER: dict[Op, Callable[[Graph, Node, ArchConfig, Options], LayerPlan]] = {
    Op.CONV2D: _lower_matmul,
    Op.DENSE: _lower_matmul,
    Op.MAXPOOL: _lower_pool,
    Op.GLOBALAVGPOOL: _lower_matmul,
    Op.AVGPOOL: _lower_matmul,
    Op.ADD: _lower_add,
    Op.RELU: _lower_eltwise,
    Op.FLATTEN: _lower_alias,
    Op.SOFTMAX: _lower_host,
    Op.CONCAT: _lower_concat,
    Op.AFFINE: _lower_affine,
    Op.INPUT: _lower_alias,
    Op.LUT: _lower_lut,
    Op.MUL: _lower_mul,
    Op.CONST: _lower_const,
    Op.RESIZE: _lower_resize,
    Op.BMM: _lower_bmm,
    Op.QSOFTMAX: _lower_qsoftmax,
    Op.MOVE: _lower_move,
    Op.LAYERNORM: _lower_layernorm,
}
