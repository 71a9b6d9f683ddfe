"""What every instruction must satisfy before it is timed or executed, checked for all at once.

A decoded word can be well-formed and still mean nothing: a stride, kernel or N:M block of 0, a
window or transfer that reaches past the scratchpad, the accumulator or the program's DRAM, a
float field that is infinite. The functional model would trap on some of these and divide by zero
on others, and the timing model - which never touches data - would price the rest (a transfer of
a terabyte that stays in bounds by a stride of 0). ``verify`` refuses them all, from the field
arrays of the decoded stream, with one ``Trap`` naming the first bad instruction, its layer and
the fields that make it bad. Only what depends on data (the contents of a sparse index table or a
LERP column table) is left to the functional model.

One instruction's work is also bounded: the elements of its window and the bytes it moves must stay
under ``MAX_WORK`` (``SIEVE_MAX_INSTRUCTION_WORK``, docs/reliability.md), which no instruction the
compiler emits for an arch in range comes near.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sieve_numerics.limits import MAX_INSTRUCTION_WORK

from sieve.arch.binary import Program
from sieve.arch.isa import Opcode
from sieve.arch.stream import Stream
from sieve.simulator.errors import Trap

MAX_WORK = MAX_INSTRUCTION_WORK

Fields = dict[str, np.ndarray]
# a rule: (what must hold, the instructions where it does not, the fields to show)
Rule = tuple[str, np.ndarray, tuple[str, ...]]


def _end(addr, rows, row_bytes, stride):
    """One past the last byte of a [rows][row_bytes] region with ``stride`` between rows (empty: addr)."""
    return np.where((rows > 0) & (row_bytes > 0), addr + (rows - 1) * stride + row_bytes, addr)


class _Spaces:
    def __init__(self, p: Program):
        self.spad, self.acc, self.dram = p.arch.core.scratchpad_bytes, p.arch.acc_entries, p.dram_bytes
        self.lanes = p.arch.core.simd_lanes


def _inside(name: str, lo, hi, size: int, shown: tuple[str, ...]) -> Rule:
    unit = "entries" if name.startswith("accumulator") else "bytes"
    return (f"its {name} lies inside the {size:,} {unit} there are", (lo < 0) | (hi > size), shown)


def _finite(f: Fields, *names: str) -> Rule:
    bad = np.zeros(len(f[names[0]]), bool)
    for n in names:
        bad |= ~np.isfinite(f[n])
    return ("its float fields are finite", bad, names)


def _at_least_one(f: Fields, *names: str) -> Rule:
    bad = np.zeros(len(f[names[0]]), bool)
    for n in names:
        bad |= f[n] < 1
    return ("these fields are at least 1", bad, names)


def _dma(f: Fields, s: _Spaces) -> list[Rule]:
    n = f["rows"] * f["row_bytes"]
    return [("it moves at most a scratchpad's worth of bytes", n > s.spad, ("rows", "row_bytes")),
            _inside("scratchpad region", f["spad_addr"], _end(f["spad_addr"], f["rows"], f["row_bytes"],
                                                              f["spad_stride"]), s.spad,
                    ("spad_addr", "rows", "row_bytes", "spad_stride")),
            _inside("DRAM region", f["dram_addr"], _end(f["dram_addr"], f["rows"], f["row_bytes"],
                                                         f["dram_stride"]), s.dram,
                    ("dram_addr", "rows", "row_bytes", "dram_stride"))]


def _matmul(f: Fields, s: _Spaces) -> list[Rule]:
    k, c = f["k"], f["in_c"]
    taps = f["kernel_h"] * f["kernel_w"]
    dw = f["depthwise"] == 1
    r = np.where(dw, taps, taps * c)
    pitch = np.where(f["x_pitch"] > 0, f["x_pitch"], c)
    values = f["groups"] * s.lanes
    nm_m = np.maximum(f["nm_m"], 1)
    nm_count = k * (-(-r // nm_m)) * f["nm_n"]
    w = np.select([f["fmt"] == 1, f["fmt"] == 2, f["fmt"] == 3],
                  [4 * k + values + values % 2 + 2 * values, nm_count + (nm_count + 1) // 2, 2 * k * r], k * r)
    cols = f["out_h"] * f["out_w"]
    span_h = (f["out_h"] - 1) * f["stride_h"] + f["dil_h"] * (f["kernel_h"] - 1) + 1
    span_w = (f["out_w"] - 1) * f["stride_w"] + f["dil_w"] * (f["kernel_w"] - 1) + 1
    nm = f["fmt"] == 2
    return [_at_least_one(f, "k", "in_c", "kernel_h", "kernel_w", "stride_h", "stride_w", "dil_h", "dil_w"),
            ("an N:M block has 1 <= N <= M", nm & ((f["nm_n"] < 1) | (f["nm_n"] > f["nm_m"])), ("nm_n", "nm_m")),
            ("a depthwise matmul has in_c == k", dw & (c != k), ("in_c", "k")),
            ("x_pitch is 0 or at least in_c", pitch < c, ("x_pitch", "in_c")),
            ("its window work (columns x reduction, padded input) is within the limit "
             f"of {MAX_WORK:,} elements (SIEVE_MAX_INSTRUCTION_WORK)",
             (cols * r * np.where(dw, c, 1) > MAX_WORK) | (span_h * span_w * c > MAX_WORK),
             ("out_h", "out_w", "kernel_h", "kernel_w", "in_c", "stride_h", "stride_w")),
            _inside("scratchpad input tile", f["x_addr"], _end(f["x_addr"], f["in_h"] * f["in_w"], c, pitch), s.spad, ("x_addr", "in_h", "in_w", "in_c", "x_pitch")),
            _inside("scratchpad weights", f["w_addr"], f["w_addr"] + w, s.spad, ("w_addr", "k", "fmt", "groups")),
            _inside("accumulator entries", f["acc_addr"], f["acc_addr"] + k * cols, s.acc,
                    ("acc_addr", "k", "out_h", "out_w"))]


def _requant(f: Fields, s: _Spaces) -> list[Rule]:
    k, cols = f["k"], f["cols"]
    row = k * np.where(f["out32"] == 1, 4, 1)
    pitch = np.where(f["dst_pitch"] > 0, f["dst_pitch"], row)
    return [("dst_pitch is 0 or at least a pixel's bytes", pitch < row, ("dst_pitch", "k", "out32")),
            _inside("accumulator entries", f["acc_addr"], f["acc_addr"] + k * cols, s.acc, ("acc_addr", "k", "cols")),
            _inside("scratchpad bias", f["bias_addr"], f["bias_addr"] + 4 * k, s.spad, ("bias_addr", "k")),
            _inside("scratchpad scales", f["scale_addr"], f["scale_addr"] + np.where(f["out32"] == 1, 0, 4 * k),
                    s.spad, ("scale_addr", "k")),
            _inside("scratchpad output", f["dst_addr"], _end(f["dst_addr"], cols, row, pitch), s.spad,
                    ("dst_addr", "cols", "k", "dst_pitch"))]


def _spans(f: Fields, s: _Spaces, **spans) -> list[Rule]:
    """Scratchpad operands: name=(address field, byte count)."""
    return [_inside(f"scratchpad {name}", f[addr], f[addr] + n, s.spad, (addr,)) for name, (addr, n) in spans.items()]


def _add_mul(f: Fields, s: _Spaces, floats: tuple[str, ...]) -> list[Rule]:
    bc = np.where(f["b_count"] > 0, f["b_count"], f["count"])
    return [("mode is 0, 1 or 2", f["mode"] > 2, ("mode",)),
            ("count is a whole number of b vectors", (bc == 0) | (f["count"] % np.maximum(bc, 1) != 0),
             ("count", "b_count")),
            _finite(f, *floats),
            *_spans(f, s, a=("a_addr", f["count"]), b=("b_addr", bc), output=("dst_addr", f["count"]))]


def _maxpool(f: Fields, s: _Spaces) -> list[Rule]:
    span_h = (f["out_h"] - 1) * f["stride_h"] + f["kernel_h"]
    span_w = (f["out_w"] - 1) * f["stride_w"] + f["kernel_w"]
    return [_at_least_one(f, "kernel_h", "kernel_w", "stride_h", "stride_w"),
            ("its padded input is within the limit of "
             f"{MAX_WORK:,} elements (SIEVE_MAX_INSTRUCTION_WORK)", span_h * span_w * f["c"] > MAX_WORK,
             ("out_h", "out_w", "kernel_h", "kernel_w", "stride_h", "stride_w", "c")),
            *_spans(f, s, input=("src_addr", f["in_h"] * f["in_w"] * f["c"]),
                    output=("dst_addr", f["out_h"] * f["out_w"] * f["c"]))]


def _rows_cols(f: Fields, s: _Spaces, out_bytes: int = 1) -> list[Rule]:
    n = f["rows"] * f["cols"]
    return _spans(f, s, input=("src_addr", n), output=("dst_addr", out_bytes * n))


CHECK: dict[Opcode, Callable[[Fields, _Spaces], list[Rule]]] = {
    Opcode.HALT: lambda f, s: [],
    Opcode.LOAD: _dma,
    Opcode.STORE: _dma,
    Opcode.MATMUL: _matmul,
    Opcode.REQUANT: _requant,
    Opcode.ADD: lambda f, s: _add_mul(f, s, ("ma", "mb", "sc")),
    Opcode.MUL: lambda f, s: _add_mul(f, s, ("m", "sb", "sc")),
    Opcode.RELU: lambda f, s: _spans(f, s, input=("src_addr", f["count"]), output=("dst_addr", f["count"])),
    Opcode.MAXPOOL: _maxpool,
    Opcode.AFFINE: lambda f, s: [
        ("count is a whole number of c-channel pixels", (f["c"] == 0) | (f["count"] % np.maximum(f["c"], 1) != 0),
         ("count", "c")),
        _finite(f, "sx", "sy"), ("sy is not 0", f["sy"] == 0, ("sy",)),
        *_spans(f, s, input=("src_addr", f["count"]), output=("dst_addr", f["count"]),
                parameters=("param_addr", 8 * f["c"]))],
    Opcode.WAIT: lambda f, s: [],                    # its core and counter: checked by the timing model
    Opcode.LUT: lambda f, s: _spans(f, s, input=("src_addr", f["count"]), output=("dst_addr", f["count"]),
                                    table=("table_addr", 256)),
    Opcode.WIDEN: lambda f, s: _rows_cols(f, s, 2),
    Opcode.SOFTMAX: lambda f, s: [
        ("mode is 0, 1 or 2", f["mode"] > 2, ("mode",)), _finite(f, "ys"), ("ys is not 0", f["ys"] == 0, ("ys",)),
        *_rows_cols(f, s), *_spans(f, s, table=("table_addr", 1024))],
    Opcode.LAYERNORM: lambda f, s: [
        _at_least_one(f, "cols"), _finite(f, "m"),
        *_rows_cols(f, s), *_spans(f, s, parameters=("param_addr", 8 * f["cols"]))],
    Opcode.LERP: lambda f, s: [
        _at_least_one(f, "c"), ("ly is at most 1024", f["ly"] > 1024, ("ly",)),
        *_spans(f, s, table=("table_addr", 6 * f["out_w"]), output=("dst_addr", f["out_w"] * f["c"]))],
}


def verify(p: Program, streams: tuple[Stream, ...]) -> None:
    """Raise ``Trap`` for the first instruction (lowest core, then position) that breaks a rule."""
    spaces = _Spaces(p)
    for core, stream in enumerate(streams):
        first = None
        for op, (idx, f) in stream.fields.items():
            with np.errstate(over="ignore", invalid="ignore"):
                rules = CHECK[op](f, spaces)
            for rule, bad, shown in rules:
                hit = np.flatnonzero(bad)
                if hit.size and (first is None or idx[hit[0]] < first[0]):
                    j = hit[0]
                    values = ", ".join(f"{n}={f[n][j]:g}" if f[n].dtype.kind == "f" else f"{n}={int(f[n][j])}"
                                       for n in shown)
                    first = (int(idx[j]), f"{op.name} breaks the rule that {rule} ({values})")
        if first is not None:
            raise Trap(first[1], core, first[0], p.layer_of(core, first[0]))
