"""Emission of a fused stack (scheduler.fusion): per image and band of the last layer's output rows,
the new rows of the stack's inputs loaded into their regions, the rows kept from the previous band
copied to the regions' other slots (``cache`` mode), every layer computed from region to region, and
the band of the last layer stored.

Regions hold a window of whole rows of a tensor, all channels, channels last: row r of tensor t is at
slot + (r - window start) x width x channels. A layer reads a channel slice of its input region and
writes one of its output region with the MATMUL's ``x_pitch`` and REQUANT's ``dst_pitch``. Layers
inside a band follow each other on the compute queue, so region-to-region data needs no counter;
loads wait for the step that last read their slot, the first write of the output region for the
store that drained it.
"""
from __future__ import annotations

from sieve.arch.config import CoreConfig
from sieve.arch.isa import Opcode
from sieve.codegen.emit import Emitter, Slots
from sieve.codegen.lower import ELEMENTWISE, pack_eltwise, pack_weights
from sieve.ir.graph import Graph, Node, Op
from sieve.ir.registry import act_bounds
from sieve.scheduler.fusion import bands, col_tiles, part_rows
from sieve.scheduler.plan import LayerPlan, split


def pack_stack(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data, core: CoreConfig) -> dict:
    """Each layer's constants: weight bundles of the matmul layers, the tables of LUT layers."""
    out = {}
    for m in plan.stack.members:
        member = graph[m.node]
        if m.kind == "matmul":
            out[m.node] = pack_weights(graph, member, m, orders, data, core)
        elif member.op is Op.LUT:
            out[m.node] = pack_eltwise(graph, member, m, orders, data, core)
    return out


class _Band:
    """Where each tensor's box is in this tile: tensor -> (slot address, first row, first column, columns)."""

    def __init__(self, stack):
        self.stack = stack
        self.at: dict[str, tuple[int, int, int, int]] = {}

    def px(self, tensor: str, r: int, x: int | None = None) -> int:
        """The address of pixel (``r``, ``x``) of ``tensor`` (its first channel; ``x`` None: the box's first
        column)."""
        addr, lo, x0, cols = self.at[tensor]
        c = self.stack.shape(tensor)[2]
        return addr + ((r - lo) * cols + ((x0 if x is None else x) - x0)) * c

    def cols(self, tensor: str) -> tuple[int, int]:
        """(first column, columns) of the tensor's box."""
        _, _, x0, cols = self.at[tensor]
        return x0, cols


def emit_stack(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, consts) -> None:
    st = plan.stack
    offs = plan.spad.offsets()
    tensors = (*st.loaded, *st.nodes)
    owners = st.owners
    regions = {t: Slots(offs[f"t:{t}"]) for t in owners}
    last_home = st.home(st.last)
    wslots = {m.node: Slots(offs[f"w:{m.node}"]) for m in st.members if m.kind == "matmul"}
    pslots = {m.node: Slots(offs[f"p:{m.node}"]) for m in st.members if f"p:{m.node}" in offs}
    y_lo, y_hi = part_rows(st, part)
    n_img = graph[st.last].out.shape[0]
    plan_bands, tiles = bands(st, y_lo, y_hi), col_tiles(st)
    acc_tiles = [0]                                   # output tiles so far: they alternate accumulator halves
    for img in range(*part.range("n", n_img)):
        prev = None
        for band in plan_bands:
            for tile in tiles:
                prev = _tile(em, graph, st, band, tile, img, prev, tensors, owners, regions, last_home, wslots,
                             pslots, layouts, consts, acc_tiles)


def _box(dram: int, spad: int, rows: int, cols: int, width: int, c: int) -> tuple:
    """A DMA of ``rows`` rows of ``cols`` pixels from an image ``width`` pixels wide: one stretch when the
    rows are whole."""
    if cols == width:
        return dram, spad, 1, rows * cols * c, 0, 0
    return dram, spad, rows, cols * c, width * c, cols * c


def _tile(em, graph, st, band, tile, img, prev, tensors, owners, regions, last_home, wslots, pslots, layouts,
          consts, acc_tiles) -> _Band:
    """One tile: the boxes in their regions' next slots, the inputs' new rows loaded, the rows kept from the
    previous band copied (cache), every layer computed, the last layer's box stored."""
    cur = _Band(st)
    out_free = 0
    for t in owners:                                  # each box in the region's next slot
        lo, hi, new = band.get(t, (0, 0, 0))
        x0, x1 = tile.get(t, (0, 0))
        addr, _, free = regions[t].acquire()
        cur.at[t] = (addr, lo, x0, x1 - x0)
        h, w, c = st.shape(t)
        if t in st.loaded and hi > new and x1 > x0:
            em.load([_box(layouts[t].addr + ((img * h + new) * w + x0) * c, cur.px(t, new), hi - new, x1 - x0, w, c)],
                    free)
        if t == last_home:
            out_free = free
    for t in tensors:                                 # tensors computed in place: their owner's region and base
        if st.home(t) != t:
            cur.at[t] = cur.at[st.home(t)]
    for t in owners:                                  # rows kept from the previous band (cache: whole rows)
        lo, hi, new = band.get(t, (0, 0, 0))
        if new > lo:
            em.compute(Opcode.RELU, src_addr=prev.px(t, lo), dst_addr=cur.px(t, lo),
                       count=(new - lo) * cur.cols(t)[1] * st.shape(t)[2], zp=-128)
            regions[t].release_previous(em.end_step())     # a load may refill that slot after the copy
    for m, ins in zip(st.members, st.inputs):
        lo, hi, new = band.get(m.node, (0, 0, 0))
        if hi <= new or m.node not in tile:
            continue
        wait = 0
        if out_free and st.home(m.node) == last_home:     # the first write into the stored region
            wait, out_free = out_free, 0
        EMIT_MEMBER[m.kind](em, graph, graph[m.node], m, ins, cur, new, hi, wait,
                            consts.get(m.node), wslots.get(m.node), pslots.get(m.node), acc_tiles)
    step = em.stepped
    lo, hi, new = band[st.last]
    h, w, c = st.shape(st.last)
    x0, cols = cur.cols(st.last)
    stored = em.store([_box(layouts[st.last].addr + ((img * h + new) * w + x0) * c, cur.px(st.last, new), hi - new,
                            cols, w, c)], step)
    regions[st.last].release(stored)
    for t in st.loaded:
        regions[t].release(step)
    return cur


def _matmul(em: Emitter, graph: Graph, node: Node, m: LayerPlan, ins, cur: _Band, y_from: int, y_to: int, wait: int,
            bundles, wslots: Slots, pslots, acc_tiles: list) -> None:
    """Output rows [y_from, y_to) of the layer's box: per group, k tile, band of rows (the box's width) and
    c tile, a MATMUL reading the input box's channel slice; after the last c tile, REQUANT into the output
    box. A box read from a later column than its start (a one-row kernel beside a wider reader) is read
    row by row."""
    g, t = m.geom, m.tiling
    _, _, c_total = cur.stack.shape(ins[0])
    k_total = cur.stack.shape(node.name)[2]
    x_zp = graph[ins[0]].out.quant.zp
    lo, hi = act_bounds(node)
    ox0, ow = cur.cols(node.name)
    bx0, bw = cur.cols(ins[0])
    ix0, ix1, px = g.in_rows(ox0, ow, g.sw, g.dw, g.kw, g.pl, g.w)
    by_row = ix0 != bx0                               # only a one-row kernel (scheduler.fusion._left_aligned)
    in_w = ix1 - ix0 if by_row else bw
    cs = [(0, (0, 0))] if g.depthwise else list(enumerate(split(g.c, t.c_t)))
    acc_half = t.k_t * t.oh_t * t.ow_t
    for gi in range(g.groups):
        for k0, nk in split(g.k, t.k_t):
            for y0, ny in split(y_to - y_from, 1 if by_row else t.oh_t):
                y0 += y_from
                for ci, (c0, nc) in cs:
                    if g.depthwise:
                        c0, nc = k0, nk
                    cg0, kg0 = gi * g.c + c0, gi * g.k + k0
                    b_addr, b_len, b_off, packed = bundles[gi, k0, ci]
                    w_addr = em.load_once(wslots, (gi, k0, ci), b_addr, b_len)
                    iy0, iy1, py = g.in_rows(y0, ny, g.sh, g.dh, g.kh, g.pt, g.h)
                    acc = acc_tiles[0] % t.acc_buffers * acc_half
                    em.compute(Opcode.MATMUL, out_free_wait=wait, w_addr=w_addr,
                               x_addr=cur.px(ins[0], iy0, ix0 if by_row else bx0) + cg0,
                               acc_addr=acc, k=nk, out_h=ny, out_w=ow, in_h=iy1 - iy0, in_w=in_w, in_c=nc,
                               kernel_h=g.kh, kernel_w=g.kw, stride_h=g.sh, stride_w=g.sw, dil_h=g.dh, dil_w=g.dw,
                               pad_top=py, pad_left=px if by_row else px + ix0 - bx0, x_zp=x_zp,
                               accumulate=int(ci > 0), depthwise=int(g.depthwise), **packed.fields(),
                               x_pitch=c_total if c_total != nc else 0)
                    wait = 0
                    if ci == len(cs) - 1:
                        acc_tiles[0] += 1
                        em.compute(Opcode.REQUANT, acc_addr=acc, dst_addr=cur.px(node.name, y0) + kg0,
                                   cols=ny * ow, k=nk, bias_addr=w_addr + b_off, scale_addr=w_addr + b_off + 4 * nk,
                                   zp=node.out.quant.zp, lo=lo, hi=hi, out32=0,
                                   dst_pitch=k_total if k_total != nk else 0)
                    wslots.release(em.end_step())


def _pool(em: Emitter, graph: Graph, node: Node, m: LayerPlan, ins, cur: _Band, y_from: int, y_to: int, wait: int,
          bundles, wslots, pslots, acc_tiles) -> None:
    g = m.geom
    ox0, ow = cur.cols(node.name)
    bx0, bw = cur.cols(ins[0])
    ix0, ix1, px = g.in_rows(ox0, ow, g.sw, 1, g.kw, g.pl, g.w)
    by_row = ix0 != bx0                               # only a one-row window
    for y0, ny in ([(y_from, y_to - y_from)] if not by_row else [(y, 1) for y in range(y_from, y_to)]):
        iy0, iy1, py = g.in_rows(y0, ny, g.sh, 1, g.kh, g.pt, g.h)
        em.compute(Opcode.MAXPOOL, out_free_wait=wait, src_addr=cur.px(ins[0], iy0, ix0 if by_row else bx0),
                   dst_addr=cur.px(node.name, y0), c=g.c, in_h=iy1 - iy0, in_w=ix1 - ix0 if by_row else bw,
                   out_h=ny, out_w=ow, kernel_h=g.kh, kernel_w=g.kw, stride_h=g.sh, stride_w=g.sw, pad_top=py,
                   pad_left=px if by_row else px + ix0 - bx0)
        wait = 0
        em.end_step()


def _eltwise(em: Emitter, graph: Graph, node: Node, m: LayerPlan, ins, cur: _Band, y_from: int, y_to: int,
             wait: int, table, wslots, pslots: Slots | None, acc_tiles) -> None:
    """One instruction over the rows when every operand's box has the output box's columns, else one per
    row (a box wider than this layer reads, its columns from the output box's first)."""
    c = cur.stack.shape(node.name)[2]
    ox0, ow = cur.cols(node.name)
    consts = []
    if pslots is not None:
        p_addr = em.load_once(pslots, "table", table[0], table[1])
        consts.append(p_addr)
    same = all(cur.cols(t) == (ox0, ow) for t in ins)
    rows = [(y_from, y_to - y_from)] if same else [(y, 1) for y in range(y_from, y_to)]
    for y0, ny in rows:
        addrs = consts + [cur.px(t, y0, ox0) for t in ins]
        ELEMENTWISE[node.op](em, graph, node, addrs, cur.px(node.name, y0), ny * ow * c, wait, 0)
        wait = 0
        em.end_step()


EMIT_MEMBER = {"matmul": _matmul, "pool": _pool, "eltwise": _eltwise}
