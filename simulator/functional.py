"""Functional execution: what each instruction does to DRAM, scratchpad and accumulator.

Integer products use float64 matrix multiplies (exact for int8 x int8 sums), so
no Python loop runs over MACs. Every address range is checked; an access out of
bounds raises ``Trap`` naming the instruction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.formats import BITS_OF, CODES, KIND_OF, MAX_MULTIPLIER, group_lanes, multiplier_count, tile_layout
from sieve.arch.isa import Instruction, Opcode
from sieve_numerics import integer, tables


class OutOfBounds(Exception):
    pass


@dataclass
class CoreState:
    spad: np.ndarray      # uint8
    acc: np.ndarray       # int32
    lanes: int = 16       # simd_lanes: the width of a packed weight group
    pe_rows: int = 16
    int4_rate: int = 2    # int4_macs_per_lane: an int4 group holds lanes x this many values


@dataclass
class Machine:
    dram: np.ndarray      # uint8
    cores: list[CoreState]

    @classmethod
    def for_program(cls, p: Program) -> "Machine":
        dram = np.zeros(p.dram_bytes, np.uint8)
        dram[:len(p.data)] = np.frombuffer(p.data, np.uint8)
        cores = [CoreState(np.zeros(p.arch.core.scratchpad_bytes, np.uint8), np.zeros(p.arch.acc_entries, np.int32),
                           p.arch.core.simd_lanes, p.arch.core.pe_rows, p.arch.core.int4_macs_per_lane)
                 for _ in range(p.arch.cores)]
        return cls(dram, cores)


def _span(mem: np.ndarray, addr: int, nbytes: int, what: str) -> np.ndarray:
    if addr < 0 or addr + nbytes > mem.size:
        raise OutOfBounds(f"{what} [{addr:#x}, {addr + nbytes:#x}) outside its {mem.size}-byte space")
    return mem[addr:addr + nbytes]


def _region(mem: np.ndarray, addr: int, rows: int, row_bytes: int, stride: int, what: str) -> np.ndarray:
    """A view of a 2-D strided region [rows][row_bytes], bounds-checked (no index arrays)."""
    if rows == 0 or row_bytes == 0:
        return mem[:0].reshape(rows, row_bytes)
    last = addr + (rows - 1) * stride + row_bytes
    if addr < 0 or last > mem.size:
        raise OutOfBounds(f"{what} [{addr:#x}, {last:#x}) outside its {mem.size}-byte space")
    if rows == 1 or stride == row_bytes:
        return mem[addr:addr + rows * row_bytes].reshape(rows, row_bytes)
    if stride > row_bytes and addr + rows * stride <= mem.size:
        return mem[addr:addr + rows * stride].reshape(rows, stride)[:, :row_bytes]
    return np.lib.stride_tricks.as_strided(mem[addr:], (rows, row_bytes), (stride, 1), writeable=True)


def dram_region(mem: np.ndarray, addr: int, rows: int, row_bytes: int, stride: int) -> np.ndarray:
    """The [rows][row_bytes] bytes a transfer touches in DRAM."""
    return _region(mem, addr, rows, row_bytes, stride, "DRAM")


def _i8(mem: np.ndarray, addr: int, n: int, what: str) -> np.ndarray:
    return _span(mem, addr, n, what).view(np.int8)


def _load(m: Machine, core: CoreState, ins) -> None:
    rows, row_bytes = ins.rows, ins.row_bytes
    _region(core.spad, ins.spad_addr, rows, row_bytes, ins.spad_stride, "scratchpad")[...] = \
        _region(m.dram, ins.dram_addr, rows, row_bytes, ins.dram_stride, "DRAM")


def _store(m: Machine, core: CoreState, ins) -> None:
    rows, row_bytes = ins.rows, ins.row_bytes
    _region(m.dram, ins.dram_addr, rows, row_bytes, ins.dram_stride, "DRAM")[...] = \
        _region(core.spad, ins.spad_addr, rows, row_bytes, ins.spad_stride, "scratchpad")


def _windows(x: np.ndarray, out_h: int, out_w: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
             pad_top: int, pad_left: int, fill) -> np.ndarray:
    """x [H][W][C] -> [out_h][out_w][kh][kw][C] (a strided view where possible), positions outside x
    read as ``fill``."""
    span_h, span_w = (out_h - 1) * sh + dh * (kh - 1) + 1, (out_w - 1) * sw + dw * (kw - 1) + 1
    h, w, c = x.shape
    if pad_top or pad_left or span_h > h or span_w > w:
        xp = np.full((span_h, span_w, c), fill, dtype=x.dtype)
        hh, ww = max(0, min(h, span_h - pad_top)), max(0, min(w, span_w - pad_left))
        xp[pad_top:pad_top + hh, pad_left:pad_left + ww] = x[:hh, :ww]
        x = xp
    s0, s1, s2 = x.strides
    return np.lib.stride_tricks.as_strided(x, (out_h, out_w, kh, kw, c), (sh * s0, sw * s1, dh * s0, dw * s1, s2),
                                           writeable=False)


def _matmul(m: Machine, core: CoreState, ins: Instruction) -> None:
    k, c, taps = ins.k, ins.in_c, ins.kernel_h * ins.kernel_w
    if ins.depthwise and c != k:
        raise OutOfBounds(f"depthwise matmul needs in_c == k, got in_c={c}, k={k}")
    pitch = ins.x_pitch or c                        # bytes from one pixel to the next
    if pitch < c:
        raise OutOfBounds(f"matmul x_pitch {pitch} is below in_c {c}")
    x = _region(core.spad, ins.x_addr, ins.in_h * ins.in_w, c, pitch, "scratchpad x tile").view(np.int8)
    x = x.reshape(ins.in_h, ins.in_w, c)
    x = np.subtract(x, ins.x_zp, dtype=np.float64)  # real zero is 0; padding reads as real zero
    win = _windows(x, ins.out_h, ins.out_w, ins.kernel_h, ins.kernel_w, ins.stride_h, ins.stride_w,
                   ins.dil_h, ins.dil_w, ins.pad_top, ins.pad_left, 0.0)     # [oh][ow][kh][kw][C]
    if ins.depthwise:                               # output channel j reads input channel j only
        w = _tile_weights(core, ins, taps)
        part = np.einsum("ptc,ct->pc", win.reshape(-1, taps, c), w)
    else:
        w = _tile_weights(core, ins, taps * c)
        part = win.reshape(-1, taps * c) @ w.T                              # [cols][k]
    # |x - zp| <= 255 and |w| <= 255: below 33,026 products every sum fits int32 and converts exactly;
    # beyond, through int64, so that an overflow wraps as the int32 accumulator does
    reduction = taps if ins.depthwise else taps * c
    part = (part.astype(np.int32) if reduction < 33026 else part.astype(np.int64).astype(np.int32)).ravel()
    acc = _span(core.acc, ins.acc_addr, part.size, "accumulator")
    if ins.accumulate:
        acc += part
    else:
        acc[:] = part


def _tile_weights(core: CoreState, ins: Instruction, r: int) -> np.ndarray:
    """The [k][r] weights a tile in format ``fmt`` stands for (arch.formats, docs/isa.md), scale
    multipliers applied, as float64."""
    if ins.fmt >= len(CODES):
        raise OutOfBounds(f"matmul fmt {ins.fmt} is not a weight format")
    k, kind, bits = ins.k, int(KIND_OF[ins.fmt]), int(BITS_OF[ins.fmt])
    lanes = int(group_lanes(ins.fmt, core.lanes, core.int4_rate))
    mults = int(multiplier_count(k, ins.in_c, ins.w_group, ins.depthwise))
    count, head, meta_at, mult_at, end = (int(v) for v in tile_layout(
        ins.fmt, k, r, ins.groups * lanes, ins.nm_n, ins.nm_m, mults))
    raw = _span(core.spad, ins.w_addr, end, "scratchpad weights")
    values = _values(raw[head:meta_at], count, bits)
    if kind == 0:
        w = values.reshape(k, r)
    elif kind == 1:
        w = _unstructured(core, ins, raw, values, meta_at, count, lanes, r)
    else:
        w = _nm(ins, raw, values, meta_at, count, r)
    if mults:
        q = raw[mult_at:end].astype(np.float64).reshape(k, -1)
        if ((q < 1) | (q > MAX_MULTIPLIER)).any():
            raise OutOfBounds(f"a weight scale multiplier is outside 1..{MAX_MULTIPLIER}")
        group = np.arange(r) % ins.in_c >> ins.w_group                # reduction index -> channel group
        w = w * q[:, group]
    return w


def _values(raw: np.ndarray, count: int, bits: int) -> np.ndarray:
    """``count`` weight values of ``bits`` each (int4: two per byte, low nibble first, sign-extended)."""
    if bits == 8:
        return raw[:count].view(np.int8).astype(np.float64)
    if bits == 16:
        return raw[:2 * count].view("<i2").astype(np.float64)
    nib = np.empty(2 * raw.size, np.int64)
    nib[0::2], nib[1::2] = raw & 15, raw >> 4
    return (((nib[:count] + 8) & 15) - 8).astype(np.float64)


def _unstructured(core: CoreState, ins: Instruction, raw: np.ndarray, values: np.ndarray, index_at: int, count: int,
                  lanes: int, r: int) -> np.ndarray:
    """Each row's groups of ``lanes`` values gathered by their u16 reduction indices (row table first)."""
    k = ins.k
    header = raw[:4 * k].view("<u2").reshape(k, 2)
    orig, groups = header[:, 0].astype(np.int64), header[:, 1].astype(np.int64)
    if groups.sum() != ins.groups or _batch_cost(groups, core.pe_rows) != ins.batch_groups:
        raise OutOfBounds("the sparse tile's row table disagrees with the instruction's group counts")
    if (orig >= k).any():
        raise OutOfBounds("a sparse row names an output channel outside the tile")
    index = raw[index_at:index_at + 2 * count].view("<u2")
    if count and index.max() >= r:
        raise OutOfBounds(f"a sparse index {int(index.max())} is outside the tile's reduction length {r}")
    w = np.zeros((k, r), np.float64)
    np.add.at(w, (np.repeat(orig, groups * lanes), index.astype(np.int64)), values)
    return w


def _nm(ins: Instruction, raw: np.ndarray, values: np.ndarray, offs_at: int, count: int, r: int) -> np.ndarray:
    """N values per block of M, each placed by its offset (2 bits for M <= 4, else 4; LSB first)."""
    n, m, k = ins.nm_n, ins.nm_m, ins.k
    nb = -(-r // m)
    bits = 2 if m <= 4 else 4
    packed = raw[offs_at:offs_at + (count * bits + 7) // 8].astype(np.int64)
    offs = np.empty((packed.size, 8 // bits), np.int64)
    for i in range(8 // bits):
        offs[:, i] = (packed >> (i * bits)) & ((1 << bits) - 1)
    offs = offs.ravel()[:count].reshape(k, nb, n)
    if (offs >= m).any():
        raise OutOfBounds(f"an N:M offset is outside its block of {m}")
    dense = np.zeros((k, nb, m))
    np.put_along_axis(dense, offs, values.reshape(k, nb, n), axis=2)
    return dense.reshape(k, -1)[:, :r]


def _batch_cost(groups: np.ndarray, pe_rows: int) -> int:
    pad = (-len(groups)) % pe_rows
    g = np.concatenate([groups, np.zeros(pad, groups.dtype)]).reshape(-1, pe_rows)
    return int(g.max(axis=1).sum()) if g.size else 0


def _requant(m: Machine, core: CoreState, ins: Instruction) -> None:
    n = ins.k * ins.cols
    acc = _span(core.acc, ins.acc_addr, n, "accumulator").reshape(ins.cols, ins.k)
    bias = _span(core.spad, ins.bias_addr, 4 * ins.k, "scratchpad bias").view("<i4")
    total = acc + bias                              # int32, wrapping as the hardware adds
    row = ins.k * (4 if ins.out32 else 1)           # bytes of one output pixel
    pitch = ins.dst_pitch or row                    # from one output pixel to the next
    if pitch < row:
        raise OutOfBounds(f"requant dst_pitch {pitch} is below the {row} bytes of an output pixel")
    dst = _region(core.spad, ins.dst_addr, ins.cols, row, pitch, "scratchpad output")
    if ins.out32:                                   # raw int32 results, no requantization
        dst[...] = total.view(np.uint8).reshape(ins.cols, row)
        return
    scale = _span(core.spad, ins.scale_addr, 4 * ins.k, "scratchpad scale").view("<f4")
    if not np.isfinite(scale).all():
        raise OutOfBounds("a requantization scale in the scratchpad is not a finite number")
    y = integer.requantize(total, scale, ins.zp, ins.lo, ins.hi)
    dst[...] = y.view(np.uint8).reshape(ins.cols, row)


def _add(m: Machine, core: CoreState, ins: Instruction) -> None:
    """mode 0/1: onnxruntime's QLinearAdd on int8/uint8 values (fused multiply-adds with ma = sa/sc,
    mb = sb/sc); mode 2: through float (ma = sa, mb = sb, sc), as an unfused DQ -> Add -> Q."""
    if ins.mode > 2:
        raise OutOfBounds(f"ADD mode {ins.mode} is undefined (0: int8, 1: uint8, 2: float)")
    bc = ins.b_count or ins.count                  # b repeats every b_count elements
    if bc == 0 or ins.count % bc:
        raise OutOfBounds(f"ADD over {ins.count} elements is not a whole number of {bc}-element b vectors")
    a = _i8(core.spad, ins.a_addr, ins.count, "scratchpad a").reshape(-1, bc)
    b = _i8(core.spad, ins.b_addr, bc, "scratchpad b")
    lo = ins.zc if ins.relu else -128
    if ins.mode == 2:
        y = integer.add_float(a, b, ins.za, ins.zb, ins.ma, ins.mb, ins.sc, ins.zc, lo, ins.hi)
    else:
        y = integer.add_qlinear(a, b, ins.za, ins.zb, ins.ma, ins.mb, ins.zc, lo, ins.hi, u8=ins.mode == 1)
    _span(core.spad, ins.dst_addr, ins.count, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _maxpool(m: Machine, core: CoreState, ins: Instruction) -> None:
    x = _i8(core.spad, ins.src_addr, ins.in_h * ins.in_w * ins.c, "scratchpad input")
    win = _windows(x.reshape(ins.in_h, ins.in_w, ins.c), ins.out_h, ins.out_w, ins.kernel_h, ins.kernel_w,
                   ins.stride_h, ins.stride_w, 1, 1, ins.pad_top, ins.pad_left, np.int8(-128))
    y = win.max(axis=(2, 3))
    _span(core.spad, ins.dst_addr, y.size, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _relu(m: Machine, core: CoreState, ins: Instruction) -> None:
    x = _i8(core.spad, ins.src_addr, ins.count, "scratchpad input")
    _span(core.spad, ins.dst_addr, ins.count, "scratchpad output")[:] = \
        np.maximum(x, np.int8(ins.zp)).view(np.uint8)


def _affine(m: Machine, core: CoreState, ins) -> None:
    """Element i belongs to channel i % c (channels innermost); float32 steps, as onnxruntime's batch norm
    between DequantizeLinear and QuantizeLinear: dequantize, * scale[c], + shift[c], / sy, round, + zy."""
    count, c = ins.count, ins.c
    if c == 0 or count % c:
        raise OutOfBounds(f"AFFINE over {count} elements is not a whole number of {c}-channel pixels")
    params = _span(core.spad, ins.param_addr, 8 * c, "scratchpad channel parameters").view("<f4")
    if not (np.abs(params.astype(np.float64)) <= 2.0 ** 40).all():
        raise OutOfBounds("an AFFINE channel parameter in the scratchpad is not a number of magnitude up to 2^40")
    x = _i8(core.spad, ins.src_addr, count, "scratchpad input").reshape(-1, c)
    y = integer.affine_float(x, ins.zx, ins.sx, params[:c], params[c:], ins.zy, ins.sy, ins.lo, ins.hi)
    _span(core.spad, ins.dst_addr, count, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _lut(m: Machine, core: CoreState, ins) -> None:
    x = _i8(core.spad, ins.src_addr, ins.count, "scratchpad input")
    table = _i8(core.spad, ins.table_addr, 256, "scratchpad table")
    _span(core.spad, ins.dst_addr, ins.count, "scratchpad output")[:] = tables.apply_table(x, table).view(np.uint8)


def _mul(m: Machine, core: CoreState, ins) -> None:
    """Element i of a times element i mod b_count of b; mode 0/1: onnxruntime's QLinearMul on int8/uint8
    values (m = float32(sa·sb)/sc); mode 2: through float (m = sa, with sb and sc)."""
    if ins.mode > 2:
        raise OutOfBounds(f"MUL mode {ins.mode} is undefined (0: int8, 1: uint8, 2: float)")
    if ins.b_count == 0 or ins.count % ins.b_count:
        raise OutOfBounds(f"MUL over {ins.count} elements is not a whole number of {ins.b_count}-element b vectors")
    a = _i8(core.spad, ins.a_addr, ins.count, "scratchpad a").reshape(-1, ins.b_count)
    b = _i8(core.spad, ins.b_addr, ins.b_count, "scratchpad b")
    if ins.mode == 2:
        y = integer.mul_float(a, b, ins.za, ins.zb, ins.m, ins.sb, ins.sc, ins.zc, ins.lo, ins.hi)
    else:
        y = integer.mul_qlinear(a, b, ins.za, ins.zb, ins.m, ins.zc, ins.lo, ins.hi, u8=ins.mode == 1)
    _span(core.spad, ins.dst_addr, ins.count, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _widen(m: Machine, core: CoreState, ins) -> None:
    """int8 [rows][cols] minus zp -> int16 [rows][cols], or [cols][rows] transposed (little-endian)."""
    n = ins.rows * ins.cols
    x = _i8(core.spad, ins.src_addr, n, "scratchpad input").reshape(ins.rows, ins.cols)
    y = x.astype(np.int16) - np.int16(ins.zp)
    if ins.transpose:
        y = y.T
    _span(core.spad, ins.dst_addr, 2 * n, "scratchpad output")[:] = np.ascontiguousarray(y).astype("<i2").view(np.uint8).ravel()


def _softmax(m: Machine, core: CoreState, ins) -> None:
    """Each of ``rows`` rows of ``cols`` int8: onnxruntime's QLinearSoftmax with the float32 table at
    table_addr, output scale ys, zero point zy; mode 1 uint8 (stored − 128), 0 int8."""
    n = ins.rows * ins.cols
    x = _i8(core.spad, ins.src_addr, n, "scratchpad input").reshape(ins.rows, ins.cols)
    if ins.mode == 2:                                # integer-only: an int32 exp table
        table = _span(core.spad, ins.table_addr, 1024, "scratchpad table").view("<i4")
        if table[0] <= 0 or (table < 0).any():
            raise OutOfBounds("the integer softmax table has a negative entry or a first entry of 0")
        y = integer.int_softmax(x, table, ins.ys, ins.zy)
    else:
        table = _span(core.spad, ins.table_addr, 1024, "scratchpad table").view("<f4")
        if not (np.isfinite(table) & (table >= 0)).all() or not table[255] > 0:
            raise OutOfBounds("the softmax table in the scratchpad is not finite non-negative numbers with a "
                              "last entry above 0")
        y = integer.qlinear_softmax(x, table, ins.ys, ins.zy, ins.mode == 1)
    _span(core.spad, ins.dst_addr, n, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _layernorm(m: Machine, core: CoreState, ins) -> None:
    """Each of ``rows`` rows of ``cols`` int8 (zero point zx): integer LayerNorm with the int32 gamma then
    int32 beta per column at param_addr, epsilon ``eps`` (input steps squared times cols²), requantized by
    ``m`` to zero point zy."""
    n = ins.rows * ins.cols
    x = _i8(core.spad, ins.src_addr, n, "scratchpad input").reshape(ins.rows, ins.cols)
    params = _span(core.spad, ins.param_addr, 8 * ins.cols, "scratchpad parameters").view("<i4")
    y = integer.int_layernorm(x, ins.zx, params[:ins.cols], params[ins.cols:], ins.eps, ins.m, ins.zy)
    _span(core.spad, ins.dst_addr, n, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _lerp(m: Machine, core: CoreState, ins) -> None:
    """One output row [out_w][c] of a bilinear resize: input rows [*][c] at src0_addr and src1_addr (row
    weight ly of 1024 on the second), per output column (first, second, weight) as three little-endian
    uint16 at table_addr; the four integer products summed, requantized by 2^-20 to the zero point zp."""
    table = _span(core.spad, ins.table_addr, 6 * ins.out_w, "scratchpad table").view("<u2").reshape(ins.out_w, 3)
    width = int(table[:, :2].max()) + 1 if ins.out_w else 0
    n = width * ins.c
    r0 = _i8(core.spad, ins.src0_addr, n, "scratchpad row").reshape(width, ins.c)
    r1 = _i8(core.spad, ins.src1_addr, n, "scratchpad row").reshape(width, ins.c)
    y = integer.lerp_rows(r0, r1, ins.ly, table, ins.zp)
    _span(core.spad, ins.dst_addr, ins.out_w * ins.c, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _halt(m: Machine, core: CoreState, ins: Instruction) -> None:
    pass


# one entry per opcode; ``ins`` is anything with the opcode's fields as attributes (an Instruction,
# or the named tuple of a decoded stream's record)
EXECUTE = {Opcode.LOAD: _load, Opcode.STORE: _store, Opcode.MATMUL: _matmul, Opcode.REQUANT: _requant,
           Opcode.ADD: _add, Opcode.MAXPOOL: _maxpool, Opcode.RELU: _relu, Opcode.AFFINE: _affine,
           Opcode.HALT: _halt, Opcode.WAIT: _halt, Opcode.LUT: _lut, Opcode.MUL: _mul,
           Opcode.WIDEN: _widen, Opcode.SOFTMAX: _softmax, Opcode.LAYERNORM: _layernorm,
           Opcode.LERP: _lerp}
