"""Emission of each layer kind: steps of (load operands, compute, store results)."""
from __future__ import annotations

import numpy as np

from sieve.arch.formats import DENSE, WeightFormat
from sieve.arch.isa import ADD_MODES, SOFTMAX_MODES, Opcode
from sieve_numerics import integer
from sieve.codegen.emit import Box, Emitter, Slots
from sieve.codegen.layout import CodegenError, DataImage
from sieve.scheduler.layout import hw_weights
from sieve.scheduler.lower import lerp_rows_in
from sieve.ir.graph import Graph, Node, Op
from sieve.ir.registry import act_bounds, add_arith, add_multipliers, resize_tables
from sieve.arch.config import CoreConfig
from sieve.scheduler.packing import PackedTile, pack
from sieve.scheduler.plan import LayerPlan, align, split


def _constants(graph: Graph, node: Node, orders: dict, g) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [K][KH][KW][C per group], int32 bias [K], float32 scale [K]) of a matmul layer."""
    if node.op in (Op.GLOBALAVGPOOL, Op.AVGPOOL):   # a window sum: weights of one, no bias
        n, c, h, w = graph[node.inputs[0]].out.shape
        kh, kw = node.attrs["kernel"] if node.op is Op.AVGPOOL else g.band if g.band[0] else (h, w)
        return np.ones((c, kh, kw, 1), np.int8), np.zeros(c, "<i4"), node.params["requant"].astype("<f4")
    b = node.params["b"].astype("<i4").ravel()
    scale = node.params.get("requant", np.ones(b.size, np.float32)).astype("<f4").ravel()
    return hw_weights(graph, node, orders), b, scale


def k_tiles(g, t, part) -> list[tuple[int, int]]:
    """(first output channel, count) of each k tile of a core's share (channels per group)."""
    k0, k1 = part.range("k", g.k)
    return [(k0 + s, n) for s, n in split(k1 - k0, t.k_t)]


def pack_weights(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
                 core: CoreConfig) -> dict:
    """Constant bundles per (group, first output channel, c tile), for the k tiles of every core's
    share: the weight tile; the last c tile of each k tile also carries what REQUANT reads:
    [pad to 16][int32 bias][float32 scale]. Cores that share a k tile share its bundle."""
    w, bias, scale = _constants(graph, node, orders, plan.geom)
    g, t = plan.geom, plan.tiling
    mults = node.params["w_mult"].reshape(w.shape[0], -1) if g.fmt.group else None
    bundles = {}
    c_tiles = [(0, 1)] if g.depthwise else split(g.c, t.c_t)
    for part in plan.parts:
        g0, g1 = part.range("g", g.groups)
        for gi in range(g0, g1):
            for kt, nk in k_tiles(g, t, part):
                k0 = kt + gi * g.k
                for ci, (c0, nc) in enumerate(c_tiles):
                    if (gi, kt, ci) in bundles:
                        continue
                    tile = np.ascontiguousarray(w[k0:k0 + nk, :, :, c0:c0 + nc])
                    packed = _pack(tile, mults, k0, c0, g, core)
                    blob = packed.blob
                    tail = align(len(blob))
                    if ci == len(c_tiles) - 1:
                        blob += bytes(tail - len(blob)) + bias[k0:k0 + nk].tobytes() + scale[k0:k0 + nk].tobytes()
                    bundles[gi, kt, ci] = (data.put(blob), len(blob), tail, packed)
    return bundles


def _pack(tile: np.ndarray, mults: np.ndarray | None, k0: int, c0: int, g, core: CoreConfig) -> PackedTile:
    """A weight tile [nk][kh][kw][nc] in the layer's format, with the group counts its MATMUL carries. With
    int4 scale groups (``mults`` [K][groups of the layer's channels]) the tile's values are the int4
    weights, each its weight divided by its group's multiplier, and the tile's multipliers follow it."""
    nk, nc = tile.shape[0], tile.shape[3]
    q = None
    if g.fmt.group:
        gs = g.fmt.group
        q = mults[k0:k0 + nk, c0 // gs:-(-(c0 + nc) // gs)]
        per_value = np.repeat(q, gs, axis=1)[:, None, None, :nc].astype(np.int64)
        if c0 % gs or np.any(tile % per_value):
            raise CodegenError(f"a weight tile does not hold whole scale groups of {gs} channels")
        tile = tile // per_value
    return pack(tile.reshape(nk, -1), g.fmt, g.lanes(core), core.pe_rows, g.balance, q)


def emit_matmul(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    g, t = plan.geom, plan.tiling
    src, dst = layouts[node.inputs[0]], layouts[node.name]
    # channels as stored in DRAM: channel groups share a pixel; batched groups are separate images
    c_total, k_total = (g.c, g.k) if g.batched else (g.c * g.groups, g.k * g.groups)
    offs = plan.spad.offsets()
    wslots, xslots, oslots = Slots(offs["w"]), Slots(offs["x"]), Slots(offs["out"])
    x_zp = graph[node.inputs[0]].out.quant.zp
    lo, hi = act_bounds(node) if g.out_bytes == 1 else (-128, 127)
    ks = k_tiles(g, t, part)
    bands = g.bands() if g.band[0] else None          # a window sum in bands: each band accumulates
    cs = list(enumerate(bands)) if bands else [(0, (0, 0))] if g.depthwise else list(enumerate(split(g.c, t.c_t)))
    (y_lo, y_hi), (x_lo, x_hi) = part.range("y", g.oh), part.range("x", g.ow)
    pix = [(n, (y_lo + y, ny), (x_lo + x, nx)) for n in range(*part.range("n", g.n))
           for y, ny in split(y_hi - y_lo, t.oh_t) for x, nx in split(x_hi - x_lo, t.ow_t)]
    if t.order == "k_outer":
        steps = [(k, p, c) for k in ks for p in pix for c in cs]
    else:
        steps = [(k, p, c) for p in pix for k in ks for c in cs]
    ob = g.out_bytes
    acc_half, tile_no = t.k_t * t.oh_t * t.ow_t, 0      # output tiles alternate accumulator buffers
    for gi in range(*part.range("g", g.groups)):
        for (k0, nk), (n, (y0, ny), (x0, nx)), (ci, cinfo) in steps:
            c0, nc = (0, 0) if bands else cinfo
            if g.depthwise:
                c0, nc = k0, nk                                  # the channels of this k tile
            if g.batched:                                        # offsets in the stored tensors
                x_base, o_base, cg0, kg0 = gi * g.h * g.w * g.c, gi * g.oh * g.ow * g.k, c0, k0
            else:
                x_base, o_base, cg0, kg0 = 0, 0, gi * g.c + c0, gi * g.k + k0
            wi = 0 if bands else ci                              # bands share the weights (ones)
            b_addr, b_len, b_off, packed = bundles[gi, k0, wi]
            w_addr = em.load_once(wslots, (gi, k0, wi), b_addr, b_len)
            if bands:                                            # one band of the window, no padding
                by, bh, bx, bw = cinfo
                (iy0, iy1, py), (ix0, ix1, px), (kh, kw) = (by, by + bh, 0), (bx, bx + bw, 0), (bh, bw)
            else:
                iy0, iy1, py = g.in_rows(y0, ny, g.sh, g.dh, g.kh, g.pt, g.h)
                ix0, ix1, px = g.in_rows(x0, nx, g.sw, g.dw, g.kw, g.pl, g.w)
                kh, kw = g.kh, g.kw
            x_addr, fresh, free = xslots.acquire((gi, n, iy0, ix0, iy1, ix1, ci, c0))
            if fresh:
                box = Box(src.addr + x_base + ((n * g.h + iy0) * g.w + ix0) * c_total + cg0, iy1 - iy0, ix1 - ix0, nc,
                          g.w * c_total, c_total)
                em.load(box.transfers(x_addr), free)
            acc = tile_no % t.acc_buffers * acc_half
            em.compute(Opcode.MATMUL, w_addr=w_addr, x_addr=x_addr, acc_addr=acc, k=nk, out_h=ny, out_w=nx,
                       in_h=iy1 - iy0, in_w=ix1 - ix0, in_c=nc, kernel_h=kh, kernel_w=kw,
                       stride_h=g.sh, stride_w=g.sw, dil_h=g.dh, dil_w=g.dw, pad_top=py, pad_left=px,
                       x_zp=x_zp, accumulate=int(ci > 0), depthwise=int(g.depthwise), **packed.fields())
            last_c = ci == len(cs) - 1
            if last_c:
                o_addr, _, o_free = oslots.acquire()
                tile_no += 1
                em.compute(Opcode.REQUANT, out_free_wait=o_free, acc_addr=acc, dst_addr=o_addr, cols=ny * nx,
                           k=nk, bias_addr=w_addr + b_off, scale_addr=w_addr + b_off + 4 * nk,
                           zp=node.out.quant.zp if ob == 1 else 0, lo=lo, hi=hi, out32=int(ob == 4))
            step = em.end_step()
            wslots.release(step)
            xslots.release(step)
            if last_c:
                box = Box(dst.addr + (o_base + ((n * g.oh + y0) * g.ow + x0) * k_total + kg0) * ob, ny, nx, nk * ob,
                          g.ow * k_total * ob, k_total * ob)
                oslots.release(em.store(box.transfers(o_addr), step))


def emit_pool(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    n, c, h, w = graph[node.inputs[0]].out.shape
    _, _, oh, ow = node.out.shape
    (kh, kw), (sh, sw), (pt, pl, _, _) = node.attrs["kernel"], node.attrs["stride"], node.attrs["pad"]
    src, dst = layouts[node.inputs[0]], layouts[node.name]
    offs = plan.spad.offsets()
    xslots, oslots = Slots(offs["x"]), Slots(offs["out"])
    y_lo, y_hi = part.range("y", oh)
    for b in range(*part.range("n", n)):
        for y0, ny in split(y_hi - y_lo, plan.pool_rows):
            y0 += y_lo
            for c0, nc in split(c, plan.pool_c):
                lo = y0 * sh - pt
                iy0, iy1 = max(lo, 0), min(h, (y0 + ny - 1) * sh - pt + kh)
                x_addr, _, free = xslots.acquire()
                em.load(Box(src.addr + (b * h + iy0) * w * c + c0, iy1 - iy0, w, nc, w * c, c)
                        .transfers(x_addr), free)
                o_addr, _, o_free = oslots.acquire()
                em.compute(Opcode.MAXPOOL, out_free_wait=o_free, src_addr=x_addr,
                           dst_addr=o_addr, c=nc, in_h=iy1 - iy0, in_w=w, out_h=ny, out_w=ow,
                           kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_top=iy0 - lo,
                           pad_left=pl)
                step = em.end_step()
                xslots.release(step)
                box = Box(dst.addr + (b * oh + y0) * ow * c + c0, ny, ow, nc, ow * c, c)
                oslots.release(em.store(box.transfers(o_addr), step))


def _add_instr(em: Emitter, graph: Graph, node: Node, addrs: list[int], o_addr: int, ne: int, wait,
               b_count: int = 0) -> None:
    ins = [graph[i].out for i in node.inputs]
    lo, hi = act_bounds(node)
    if lo not in (-128, node.out.quant.zp):
        raise CodegenError(f"the vector unit's add clamps below at the zero point or not at all; "
                           f"a lower bound of {lo} is not supported", node.name)
    arith = add_arith(node)
    if arith == "float":                                 # scales, not multipliers
        ma, mb, sc = ins[0].quant.scale[0], ins[1].quant.scale[0], node.out.quant.scale[0]
    else:
        (ma, mb), sc = add_multipliers(ins, node.out), 0.0
    em.compute(Opcode.ADD, out_free_wait=wait, a_addr=addrs[0], b_addr=addrs[1], dst_addr=o_addr,
               count=ne, za=ins[0].quant.zp, zb=ins[1].quant.zp, zc=node.out.quant.zp,
               ma=float(ma), mb=float(mb), relu=int(lo != -128), hi=hi, mode=ADD_MODES[arith], sc=float(sc),
               b_count=b_count if b_count != ne else 0)


def _relu_instr(em: Emitter, graph: Graph, node: Node, addrs: list[int], o_addr: int, ne: int, wait,
                b_count: int = 0) -> None:
    em.compute(Opcode.RELU, out_free_wait=wait, src_addr=addrs[0], dst_addr=o_addr, count=ne,
               zp=graph[node.inputs[0]].out.quant.zp)


def _lut_instr(em: Emitter, graph: Graph, node: Node, addrs: list[int], o_addr: int, ne: int, wait,
               b_count: int = 0) -> None:
    em.compute(Opcode.LUT, out_free_wait=wait, src_addr=addrs[1], dst_addr=o_addr, count=ne, table_addr=addrs[0])


def mul_fields(graph: Graph, node: Node) -> dict:
    """The MUL instruction's arithmetic fields (docs/isa.md)."""
    qa, qb, qc = graph[node.inputs[0]].out.quant, graph[node.inputs[1]].out.quant, node.out.quant
    arith = add_arith(node)
    if arith == "float":
        m, sb, sc = qa.scale[0], qb.scale[0], qc.scale[0]
    else:
        m, sb, sc = integer.mul_ratio(qa.scale[0], qb.scale[0], qc.scale[0]), 0.0, 0.0
    return dict(za=qa.zp, zb=qb.zp, zc=qc.zp, m=float(m), sb=float(sb), sc=float(sc), lo=-128, hi=127,
                mode=ADD_MODES[arith])


def _mul_instr(em: Emitter, graph: Graph, node: Node, addrs: list[int], o_addr: int, ne: int, wait,
               b_count: int = 0) -> None:
    em.compute(Opcode.MUL, out_free_wait=wait, a_addr=addrs[0], b_addr=addrs[1], dst_addr=o_addr, count=ne,
               b_count=b_count or ne, **mul_fields(graph, node))


# the instruction of each element-wise op, on one tile: operand addresses (the constants' first, where the
# op has some), output address, elements
ELEMENTWISE = {Op.ADD: _add_instr, Op.RELU: _relu_instr, Op.LUT: _lut_instr, Op.MUL: _mul_instr}


def pack_eltwise(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
                 core: CoreConfig):
    """An element-wise op's constants (a LUT's table): (DRAM address, bytes), or None."""
    table = node.params.get("table")
    if table is None:
        return None
    blob = table.astype(np.int8).tobytes()
    return data.put(blob), len(blob)


def emit_eltwise(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    """A stream of element tiles: load each operand, one vector instruction, store; constants (a table)
    are loaded once."""
    offs = plan.spad.offsets()
    names = [nm for nm, _ in plan.spad.regions if nm not in ("p", "out")]
    in_slots = [Slots(offs[nm]) for nm in names]
    pslots = Slots(offs["p"]) if "p" in offs else None
    oslots = Slots(offs["out"])
    instr = ELEMENTWISE[node.op]
    e_lo, e_hi = part.range("e", node.out.size)
    for e0, ne in split(e_hi - e_lo, plan.tile_elems):
        e0 += e_lo
        addrs = []
        if pslots is not None:
            p_addr = em.load_once(pslots, "constants", bundles[0], bundles[1])
            addrs.append(p_addr)
        b_count = 0
        for slots, name in zip(in_slots, node.inputs):
            period = graph[name].out.size
            if period == node.out.size:
                addr, _, free = slots.acquire()
                em.load([(layouts[name].addr + e0, addr, 1, ne, 0, 0)], free)
            elif plan.tile_elems % period == 0:           # whole periods per tile: the operand once
                addr = em.load_once(slots, ("whole", name), layouts[name].addr, period)
                b_count = period
            else:                                         # tiles divide the period: its stretch
                addr = em.load_once(slots, ("stretch", name, e0 % period), layouts[name].addr + e0 % period, ne)
                b_count = ne
            addrs.append(addr)
        o_addr, _, wait = oslots.acquire()
        instr(em, graph, node, addrs, o_addr, ne, wait, b_count)
        step = em.end_step()
        for slots in in_slots + ([pslots] if pslots is not None else []):
            slots.release(step)
        oslots.release(em.store([(layouts[node.name].addr + e0, o_addr, 1, ne, 0, 0)], step))


def emit_concat(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    """Copy each input into its channel slice of the output, requantized on the vector unit."""
    out, q = node.out, node.out.quant
    c_total, pixels = out.shape[1], out.size // out.shape[1]
    offs = plan.spad.offsets()
    aslots, oslots = Slots(offs["a"]), Slots(offs["out"])
    c_off = 0
    p_lo, p_hi = part.range("e", pixels)
    for name in node.inputs:
        t = graph[name].out
        c = t.shape[1]
        for p0, npx in split(p_hi - p_lo, plan.tile_elems):
            p0 += p_lo
            a_addr, _, free = aslots.acquire()
            em.load([(layouts[name].addr + p0 * c, a_addr, 1, npx * c, 0, 0)], free)
            o_addr, _, o_free = oslots.acquire()
            em.compute(Opcode.ADD, out_free_wait=o_free, a_addr=a_addr, b_addr=a_addr, dst_addr=o_addr,
                       count=npx * c, za=t.quant.zp, zb=t.quant.zp, zc=q.zp, ma=t.quant.scale[0], mb=0.0,
                       relu=0, hi=127, mode=ADD_MODES["float"], sc=q.scale[0])
            step = em.end_step()
            aslots.release(step)
            box = Box(layouts[node.name].addr + p0 * c_total + c_off, 1, npx, c, 0, c_total)
            oslots.release(em.store(box.transfers(o_addr), step))
        c_off += c


def pack_affine(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
                core: CoreConfig) -> tuple[int, int]:
    """The channel parameters: float32 scale[c] then shift[c]; (DRAM address, bytes)."""
    blob = node.params["scale"].astype("<f4").tobytes() + node.params["shift"].astype("<f4").tobytes()
    return data.put(blob), len(blob)


def emit_affine(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, params) -> None:
    """Load the channel parameters once, then whole-pixel tiles: load, AFFINE, store."""
    c = node.out.shape[1]
    qi, qo = graph[node.inputs[0]].out.quant, node.out.quant
    lo, hi = act_bounds(node)
    offs = plan.spad.offsets()
    pslots, xslots, oslots = Slots(offs["p"]), Slots(offs["x"]), Slots(offs["out"])
    p_dram, p_bytes = params
    src, dst = layouts[node.inputs[0]].addr, layouts[node.name].addr
    p_lo, p_hi = part.range("e", node.out.size // c)
    for p0, npx in split(p_hi - p_lo, plan.tile_elems):
        p0 += p_lo
        p_addr = em.load_once(pslots, "params", p_dram, p_bytes)
        x_addr, _, free = xslots.acquire()
        em.load([(src + p0 * c, x_addr, 1, npx * c, 0, 0)], free)
        o_addr, _, o_free = oslots.acquire()
        em.compute(Opcode.AFFINE, out_free_wait=o_free, src_addr=x_addr, dst_addr=o_addr, count=npx * c, c=c,
                   param_addr=p_addr, zx=qi.zp, sx=qi.scale[0], zy=qo.zp, sy=qo.scale[0], lo=lo, hi=hi)
        step = em.end_step()
        pslots.release(step)
        xslots.release(step)
        oslots.release(em.store([(dst + p0 * c, o_addr, 1, npx * c, 0, 0)], step))


def emit_scale(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    """x [N, H, W, C] times b [N, C]: tiles of whole pixels within one image, b's C values loaded once
    per image (MUL with b_count = C)."""
    n, c = node.out.shape[0], node.out.shape[1]
    hw = node.out.size // (n * c)
    offs = plan.spad.offsets()
    bslots, aslots, oslots = Slots(offs["b"]), Slots(offs["a"]), Slots(offs["out"])
    a_dram, b_dram, dst = (layouts[node.inputs[0]].addr, layouts[node.inputs[1]].addr, layouts[node.name].addr)
    fields = mul_fields(graph, node)
    p_lo, p_hi = part.range("e", n * hw)
    for img in range(p_lo // hw, -(-p_hi // hw)):
        lo, hi = max(p_lo, img * hw), min(p_hi, (img + 1) * hw)
        for p0, npx in split(hi - lo, plan.tile_elems):
            p0 += lo
            b_addr = em.load_once(bslots, ("b", img), b_dram + img * c, c)
            a_addr, _, free = aslots.acquire()
            em.load([(a_dram + p0 * c, a_addr, 1, npx * c, 0, 0)], free)
            o_addr, _, o_free = oslots.acquire()
            em.compute(Opcode.MUL, out_free_wait=o_free, a_addr=a_addr, b_addr=b_addr, dst_addr=o_addr,
                       count=npx * c, b_count=c, **fields)
            step = em.end_step()
            bslots.release(step)
            aslots.release(step)
            oslots.release(em.store([(dst + p0 * c, o_addr, 1, npx * c, 0, 0)], step))


def pack_const(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
               core: CoreConfig) -> int:
    """A constant tensor in the data image, in its memory order: its DRAM address."""
    o = orders[node.name]
    value = node.params["value"].reshape(o.view_shape).transpose(o.perm)
    return data.put(np.ascontiguousarray(value).astype(np.int8).tobytes())


def emit_resize(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    """Each band of input rows: load, copy through the vector unit (RELU at -128 is the identity), and
    store every input pixel's channels to its sh x sw output pixels (rows of one pixel, strided)."""
    n, c, h, w = graph[node.inputs[0]].out.shape
    sh, sw = node.attrs["scale"]
    oh, ow = h * sh, w * sw
    src, dst = layouts[node.inputs[0]].addr, layouts[node.name].addr
    offs = plan.spad.offsets()
    xslots, oslots = Slots(offs["x"]), Slots(offs["out"])
    y_lo, y_hi = part.range("y", h)
    for b in range(*part.range("n", n)):
        for y0, ny in split(y_hi - y_lo, plan.pool_rows):
            y0 += y_lo
            x_addr, _, free = xslots.acquire()
            em.load([(src + (b * h + y0) * w * c, x_addr, 1, ny * w * c, 0, 0)], free)
            o_addr, _, o_free = oslots.acquire()
            em.compute(Opcode.RELU, out_free_wait=o_free, src_addr=x_addr, dst_addr=o_addr, count=ny * w * c, zp=-128)
            step = em.end_step()
            xslots.release(step)
            stores = [(dst + ((b * oh + (y0 + r) * sh + i) * ow + j) * c, o_addr + r * w * c, w, c, sw * c, c)
                      for r in range(ny) for i in range(sh) for j in range(sw)]
            oslots.release(em.store(stores, step))


def pack_lerp(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
              core: CoreConfig) -> tuple[int, int]:
    """The column table: (first, second, weight) as three little-endian uint16 per output column."""
    _, tx = resize_tables(node, graph[node.inputs[0]].out)
    blob = tx.astype("<u2").tobytes()
    return data.put(blob), len(blob)


def emit_lerp(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, table) -> None:
    """Per image and band of output rows: the column table once, the input rows the band reads, one LERP
    per output row, the band stored (contiguous: rows of the channels-last output)."""
    x = graph[node.inputs[0]].out
    n, c, h, w = x.shape
    _, _, oh, ow = node.out.shape
    ty, _ = resize_tables(node, x)
    offs = plan.spad.offsets()
    pslots, xslots, oslots = Slots(offs["p"]), Slots(offs["x"]), Slots(offs["out"])
    src, dst = layouts[node.inputs[0]].addr, layouts[node.name].addr
    y_lo, y_hi = part.range("y", oh)
    for b in range(*part.range("n", n)):
        for y0, ny in split(y_hi - y_lo, plan.pool_rows):
            y0 += y_lo
            p_addr = em.load_once(pslots, "table", table[0], table[1])
            first, last = lerp_rows_in(ty, y0, y0 + ny)
            x_addr, _, free = xslots.acquire()
            em.load([(src + (b * h + first) * w * c, x_addr, 1, (last - first) * w * c, 0, 0)], free)
            o_addr, _, o_free = oslots.acquire()
            for r in range(ny):
                i0, i1, ly = (int(v) for v in ty[y0 + r])
                em.compute(Opcode.LERP, out_free_wait=o_free if r == 0 else 0,
                           src0_addr=x_addr + (i0 - first) * w * c, src1_addr=x_addr + (i1 - first) * w * c,
                           dst_addr=o_addr + r * ow * c, c=c, out_w=ow, table_addr=p_addr, ly=ly, zp=x.quant.zp)
            step = em.end_step()
            pslots.release(step)
            xslots.release(step)
            oslots.release(em.store([(dst + (b * oh + y0) * ow * c, o_addr, 1, ny * ow * c, 0, 0)], step))


def pack_bmm(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
             core: CoreConfig) -> tuple[int, int]:
    """REQUANT's constants for an N tile: int32 zeros (no bias) then the float32 multiplier, k_t of each."""
    k_t = plan.tiling.k_t
    blob = np.zeros(k_t, "<i4").tobytes() + np.full(k_t, node.params["requant"][0], "<f4").tobytes()
    return data.put(blob), len(blob)


def emit_bmm(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, consts) -> None:
    """Per batch, N tile, row tile and K tile: load b's [K tile][N tile] box into the staging slot, WIDEN it
    to int16 [N tile][K tile] (b − zb; transposed unless b is stored [N][K], transpose_b) in the weight
    slot with REQUANT's constants after it, load a's row
    box, MATMUL (wide weights, accumulating over K tiles), then REQUANT and store the [rows][N tile] box."""
    g, t = plan.geom, plan.tiling
    qa, qb, qy = graph[node.inputs[0]].out.quant, graph[node.inputs[1]].out.quant, node.out.quant
    m, kk, n = g.w, g.c, g.k
    a_dram, b_dram, dst = layouts[node.inputs[0]].addr, layouts[node.inputs[1]].addr, layouts[node.name].addr
    offs = plan.spad.offsets()
    wslots, xslots, oslots, sslots = Slots(offs["w"]), Slots(offs["x"]), Slots(offs["out"]), Slots(offs["stage"])
    c_addr, c_len = consts
    acc_half, tile_no = t.k_t * t.ow_t, 0
    c_tiles = split(kk, t.c_t)
    tb = node.attrs.get("transpose_b", False)
    for gi in range(*part.range("g", g.groups)):
        for k0, nk in split(n, t.k_t):
            for m0, nm in split(m, t.ow_t):
                for ci, (c0, nc) in enumerate(c_tiles):
                    w_addr, fresh, free = wslots.acquire((gi, k0, ci))
                    w_bytes = align(2 * nk * nc)
                    if fresh:
                        s_addr, _, s_free = sslots.acquire()
                        if tb:                                   # b stored [N][K]: rows of the N tile
                            box = (b_dram + (gi * n + k0) * kk + c0, s_addr, nk, nc, kk, nc)
                        else:                                    # b stored [K][N]: rows of the K tile
                            box = (b_dram + (gi * kk + c0) * n + k0, s_addr, nc, nk, n, nk)
                        em.load([box, (c_addr, w_addr + w_bytes, 1, 4 * nk, 0, 0),
                                 (c_addr + 4 * t.k_t, w_addr + w_bytes + 4 * nk, 1, 4 * nk, 0, 0)], max(free, s_free))
                        em.compute(Opcode.WIDEN, src_addr=s_addr, dst_addr=w_addr, rows=nk if tb else nc,
                                   cols=nc if tb else nk, zp=qb.zp, transpose=0 if tb else 1)
                    x_addr, _, x_free = xslots.acquire()
                    em.load([(a_dram + (gi * m + m0) * kk + c0, x_addr, nm, nc, kk, nc)], x_free)
                    acc = tile_no % t.acc_buffers * acc_half
                    em.compute(Opcode.MATMUL, w_addr=w_addr, x_addr=x_addr, acc_addr=acc, k=nk, out_h=1, out_w=nm,
                               in_h=1, in_w=nm, in_c=nc, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, dil_h=1,
                               dil_w=1, pad_top=0, pad_left=0, x_zp=qa.zp, accumulate=int(ci > 0),
                               depthwise=0, fmt=WeightFormat(DENSE, 16).code)
                    last = ci == len(c_tiles) - 1
                    if last:
                        o_addr, _, o_free = oslots.acquire()
                        tile_no += 1
                        em.compute(Opcode.REQUANT, out_free_wait=o_free, acc_addr=acc, dst_addr=o_addr, cols=nm,
                                   k=nk, bias_addr=w_addr + w_bytes, scale_addr=w_addr + w_bytes + 4 * nk,
                                   zp=qy.zp, lo=-128, hi=127, out32=0)
                    step = em.end_step()
                    wslots.release(step)
                    xslots.release(step)
                    sslots.release(step)
                    if last:
                        box = [(dst + (gi * m + m0) * n + k0, o_addr, nm, nk, n, nk)]
                        oslots.release(em.store(box, step))


def pack_softmax(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
                 core: CoreConfig) -> tuple[int, int]:
    """The exp table: int32 (integer-only) or float32 (onnxruntime's arithmetic), 1 KiB either way."""
    t = node.params["table"]
    blob = t.astype("<i4" if t.dtype == np.int32 else "<f4").tobytes()
    return data.put(blob), len(blob)


def pack_layernorm(graph: Graph, node: Node, plan: LayerPlan, orders: dict, data: DataImage,
                   core: CoreConfig) -> tuple[int, int]:
    """int32 gamma then int32 beta, one of each per feature."""
    blob = node.params["gamma"].astype("<i4").tobytes() + node.params["beta"].astype("<i4").tobytes()
    return data.put(blob), len(blob)


def _softmax_instr(em: Emitter, node: Node, a_addr: int, o_addr: int, nr: int, d: int, p_addr: int,
                   o_free: int) -> None:
    q = node.out.quant
    em.compute(Opcode.SOFTMAX, out_free_wait=o_free, src_addr=a_addr, dst_addr=o_addr, rows=nr, cols=d,
               table_addr=p_addr, ys=float(q.scale[0]), zy=q.zp, mode=SOFTMAX_MODES[add_arith(node)])


def _layernorm_instr(em: Emitter, node: Node, a_addr: int, o_addr: int, nr: int, d: int, p_addr: int,
                     o_free: int, zx: int) -> None:
    em.compute(Opcode.LAYERNORM, out_free_wait=o_free, src_addr=a_addr, dst_addr=o_addr, rows=nr, cols=d,
               param_addr=p_addr, zx=zx, eps=node.attrs["eps_q"], m=float(node.params["requant"][0]),
               zy=node.out.quant.zp)


def emit_rows(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, consts) -> None:
    """The constants (exp table, or gamma and beta) once, then tiles of whole rows: load, the row
    instruction (SOFTMAX or LAYERNORM), store."""
    d = node.out.shape[-1]
    offs = plan.spad.offsets()
    pslots, aslots, oslots = Slots(offs["p"]), Slots(offs["a"]), Slots(offs["out"])
    src, dst = layouts[node.inputs[0]].addr, layouts[node.name].addr
    r_lo, r_hi = part.range("e", node.out.size // d)
    zx = graph[node.inputs[0]].out.quant.zp
    for r0, nr in split(r_hi - r_lo, plan.tile_elems):
        r0 += r_lo
        p_addr = em.load_once(pslots, "consts", consts[0], consts[1])
        a_addr, _, free = aslots.acquire()
        em.load([(src + r0 * d, a_addr, 1, nr * d, 0, 0)], free)
        o_addr, _, o_free = oslots.acquire()
        if plan.kind == "layernorm":
            _layernorm_instr(em, node, a_addr, o_addr, nr, d, p_addr, o_free, zx)
        else:
            _softmax_instr(em, node, a_addr, o_addr, nr, d, p_addr, o_free)
        step = em.end_step()
        pslots.release(step)
        aslots.release(step)
        oslots.release(em.store([(dst + r0 * d, o_addr, 1, nr * d, 0, 0)], step))


def emit_move(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    """Per tile: gather its runs by strided loads into the input slot, copy it to the output slot through
    the vector unit, store it as one contiguous stretch."""
    offs = plan.spad.offsets()
    xslots, oslots = Slots(offs["x"]), Slots(offs["out"])
    src, dst = layouts[node.inputs[0]].addr, layouts[node.name].addr
    lo, hi = part.range("e", len(plan.moves))
    for tile in plan.moves[lo:hi]:
        d0 = tile[0][1]
        size = sum(rows * nb for _, _, rows, nb, _ in tile)
        x_addr, _, free = xslots.acquire()
        em.load([(src + s_off, x_addr + d_off - d0, rows, nb, stride, nb) for s_off, d_off, rows, nb, stride in tile],
                free)
        o_addr, _, o_free = oslots.acquire()
        em.compute(Opcode.RELU, out_free_wait=o_free, src_addr=x_addr, dst_addr=o_addr, count=size, zp=-128)
        step = em.end_step()
        xslots.release(step)
        oslots.release(em.store([(dst + d0, o_addr, 1, size, 0, 0)], step))


def emit_nothing(em: Emitter, graph: Graph, node: Node, plan: LayerPlan, part, layouts, bundles) -> None:
    pass


CONSTANTS = {"matmul": pack_weights, "affine": pack_affine, "eltwise": pack_eltwise, "const": pack_const,
             "bmm": pack_bmm, "softmax": pack_softmax, "layernorm": pack_layernorm, "lerp": pack_lerp}
EMIT = {"matmul": emit_matmul, "affine": emit_affine, "pool": emit_pool, "eltwise": emit_eltwise, "concat": emit_concat,
        "scale": emit_scale, "const": emit_nothing, "resize": emit_resize, "bmm": emit_bmm,
        "softmax": emit_rows, "layernorm": emit_rows, "move": emit_move, "lerp": emit_lerp}
