"""Functional execution: what each instruction does to DRAM, scratchpad and accumulator.

Integer products use float64 matrix multiplies (exact for int8 x int8 sums), so
no Python loop runs over MACs. Every address range is checked; an access out of
bounds raises ``Trap`` naming the instruction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arch.binary import Program
from arch.isa import Instruction, Opcode


class OutOfBounds(Exception):
    pass


@dataclass
class CoreState:
    spad: np.ndarray      # uint8
    acc: np.ndarray       # int32


@dataclass
class Machine:
    dram: np.ndarray      # uint8
    cores: list[CoreState]

    @classmethod
    def for_program(cls, p: Program) -> "Machine":
        dram = np.zeros(p.dram_bytes, np.uint8)
        dram[:len(p.data)] = np.frombuffer(p.data, np.uint8)
        cores = [CoreState(np.zeros(p.arch.core.scratchpad_bytes, np.uint8), np.zeros(p.arch.acc_entries, np.int32))
                 for _ in range(p.arch.cores)]
        return cls(dram, cores)


def _span(mem: np.ndarray, addr: int, nbytes: int, what: str) -> np.ndarray:
    if addr < 0 or addr + nbytes > mem.size:
        raise OutOfBounds(f"{what} [{addr:#x}, {addr + nbytes:#x}) outside its {mem.size}-byte space")
    return mem[addr:addr + nbytes]


def _rows(mem: np.ndarray, addr: int, rows: int, row_bytes: int, stride: int, what: str) -> np.ndarray:
    """Index array of a 2-D strided region, bounds-checked."""
    if rows == 0 or row_bytes == 0:
        return np.zeros(0, np.int64)
    last = addr + (rows - 1) * stride + row_bytes
    if addr < 0 or last > mem.size:
        raise OutOfBounds(f"{what} [{addr:#x}, {last:#x}) outside its {mem.size}-byte space")
    return (addr + np.arange(rows, dtype=np.int64)[:, None] * stride + np.arange(row_bytes)[None, :]).ravel()


def _i8(mem: np.ndarray, addr: int, n: int, what: str) -> np.ndarray:
    return _span(mem, addr, n, what).view(np.int8)


def _dma(m: Machine, core: CoreState, ins: Instruction) -> None:
    d = _rows(m.dram, ins.dram_addr, ins.rows, ins.row_bytes, ins.dram_stride, "DRAM")
    s = _rows(core.spad, ins.spad_addr, ins.rows, ins.row_bytes, ins.spad_stride, "scratchpad")
    if ins.opcode is Opcode.LOAD:
        core.spad[s] = m.dram[d]
    else:
        m.dram[d] = core.spad[s]


def _windows(x: np.ndarray, out_h: int, out_w: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
             pad_top: int, pad_left: int, fill) -> np.ndarray:
    """x [H][W][C] -> [out_h][out_w][kh][kw][C], positions outside x read as ``fill``."""
    span_h, span_w = (out_h - 1) * sh + dh * (kh - 1) + 1, (out_w - 1) * sw + dw * (kw - 1) + 1
    h, w, c = x.shape
    xp = np.full((span_h, span_w, c), fill, dtype=x.dtype)
    y0, x0 = pad_top, pad_left
    hh, ww = max(0, min(h, span_h - y0)), max(0, min(w, span_w - x0))
    xp[y0:y0 + hh, x0:x0 + ww] = x[:hh, :ww]
    v = np.lib.stride_tricks.sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(0, 1))
    v = v[::sh, ::sw, :, ::dh, ::dw][:out_h, :out_w]          # [oh][ow][C][kh][kw]
    return v.transpose(0, 1, 3, 4, 2)


def _matmul(m: Machine, core: CoreState, ins: Instruction) -> None:
    if ins.fmt not in (0, 3):
        raise OutOfBounds(f"weight format {ins.fmt} is not supported by this simulator")
    k, c, taps = ins.k, ins.in_c, ins.kernel_h * ins.kernel_w
    wide = ins.fmt == 3                             # int16 weights, two bytes each
    if ins.depthwise and c != k:
        raise OutOfBounds(f"depthwise matmul needs in_c == k, got in_c={c}, k={k}")
    x = _i8(core.spad, ins.x_addr, ins.in_h * ins.in_w * c, "scratchpad x tile").reshape(ins.in_h, ins.in_w, c)
    x = x.astype(np.float64) - ins.x_zp            # real zero is 0; padding reads as real zero
    win = _windows(x, ins.out_h, ins.out_w, ins.kernel_h, ins.kernel_w, ins.stride_h, ins.stride_w,
                   ins.dil_h, ins.dil_w, ins.pad_top, ins.pad_left, 0.0)     # [oh][ow][kh][kw][C]
    if ins.depthwise:                               # output channel j reads input channel j only
        w = _weights(core, ins.w_addr, k * taps, wide).reshape(k, taps)
        part = np.einsum("ptc,ct->pc", win.reshape(-1, taps, c), w)
    else:
        w = _weights(core, ins.w_addr, k * taps * c, wide).reshape(k, -1)
        part = win.reshape(-1, taps * c) @ w.T                              # [cols][k]
    part = part.astype(np.int64).astype(np.int32).ravel()
    acc = _span(core.acc, ins.acc_addr, part.size, "accumulator")
    if ins.accumulate:
        acc += part
    else:
        acc[:] = part


def _weights(core: CoreState, addr: int, count: int, wide: bool) -> np.ndarray:
    if wide:
        return _span(core.spad, addr, 2 * count, "scratchpad weights").view("<i2").astype(np.float64)
    return _i8(core.spad, addr, count, "scratchpad weights").astype(np.float64)


def _requant(m: Machine, core: CoreState, ins: Instruction) -> None:
    n = ins.k * ins.cols
    acc = _span(core.acc, ins.acc_addr, n, "accumulator").reshape(ins.cols, ins.k)
    bias = _span(core.spad, ins.bias_addr, 4 * ins.k, "scratchpad bias").view("<i4")
    total = (acc.astype(np.int64) + bias).astype(np.int32)
    if ins.out32:                                   # raw int32 results, no requantization
        _span(core.spad, ins.dst_addr, 4 * n, "scratchpad output")[:] = total.ravel().view(np.uint8)
        return
    scale = _span(core.spad, ins.scale_addr, 4 * ins.k, "scratchpad scale").view("<f4")
    y = np.rint(total.astype(np.float32) * scale).astype(np.float64) + ins.zp
    y = np.clip(y, ins.lo, ins.hi).astype(np.int8)
    _span(core.spad, ins.dst_addr, n, "scratchpad output")[:] = y.ravel().view(np.uint8)


def _fma32(x: np.ndarray, y: float, z) -> np.ndarray:
    """float32 fused multiply-add of small integers x: x * y is exact in float64."""
    return (x.astype(np.float64) * np.float64(y) + np.asarray(z, np.float64)).astype(np.float32)


def _add(m: Machine, core: CoreState, ins: Instruction) -> None:
    off = 128 if ins.u8 else 0                      # uint8 tensors are stored as int8 - 128
    ma, mb = np.float32(ins.ma), np.float32(ins.mb)
    k = np.float32(np.float32(ins.zc + off) - np.float32(np.float32(ma * np.float32(ins.za + off))
                                                         + np.float32(mb * np.float32(ins.zb + off))))
    a = _i8(core.spad, ins.a_addr, ins.count, "scratchpad a").astype(np.int16) + off
    b = _i8(core.spad, ins.b_addr, ins.count, "scratchpad b").astype(np.int16) + off
    c = _fma32(a, ma, _fma32(b, mb, k))
    y = np.clip(np.rint(c).astype(np.float64) - off, ins.zc if ins.relu else -128, ins.hi).astype(np.int8)
    _span(core.spad, ins.dst_addr, ins.count, "scratchpad output")[:] = y.view(np.uint8)


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


def _halt(m: Machine, core: CoreState, ins: Instruction) -> None:
    pass


EXECUTE = {Opcode.LOAD: _dma, Opcode.STORE: _dma, Opcode.MATMUL: _matmul, Opcode.REQUANT: _requant,
           Opcode.ADD: _add, Opcode.MAXPOOL: _maxpool, Opcode.RELU: _relu, Opcode.HALT: _halt}


def execute(m: Machine, core: int, ins: Instruction) -> None:
    EXECUTE[ins.opcode](m, m.cores[core], ins)
