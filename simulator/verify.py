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
under ``MAX_INSTRUCTION_WORK`` (``SIEVE_MAX_INSTRUCTION_WORK``, docs/reliability.md), which no instruction the
compiler emits for an arch in range comes near.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sieve_numerics.integer import LAYERNORM_MAX_COLS
from sieve_numerics.limits import MAX_INSTRUCTION_WORK

from sieve.arch.binary import Program
from sieve.arch.formats import BITS_OF, CODES, KIND_OF, group_lanes, multiplier_count, tile_layout
from sieve.arch.isa import Opcode
from sieve.arch.stream import Stream
from sieve.simulator.errors import Trap


Fields = dict[str, np.ndarray]
# a rule: (what must hold, the instructions where it does not, the fields to show)
Rule = tuple[str, np.ndarray, tuple[str, ...]]


def _end(addr, rows, row_bytes, stride):
    """One past the last byte of a [rows][row_bytes] region with ``stride`` between rows (empty: addr)."""
    return np.where((rows > 0) & (row_bytes > 0), addr + (rows - 1) * stride + row_bytes, addr)


class Spaces:
    def __init__(self, p: Program):
        self.size = {"spad": p.arch.core.scratchpad_bytes, "acc": p.arch.acc_entries, "dram": p.dram_bytes}
        self.lanes, self.int4_rate = p.arch.core.simd_lanes, p.arch.core.int4_macs_per_lane


def _finite(f: Fields, *names: str) -> Rule:
    """Float fields (scales, multipliers) are 0 or of magnitude 2^-40..2^40: what a compiler writes, and
    small enough that no product of int8 values with them overflows float32 on its way to int8."""
    bad = np.zeros(len(f[names[0]]), bool)
    for n in names:
        m = np.abs(f[n].astype(np.float64))
        bad |= ~np.isfinite(m) | ((m != 0) & ((m < 2.0 ** -40) | (m > 2.0 ** 40)))
    return ("its float fields are 0 or of magnitude 2^-40..2^40", bad, names)


def _at_least_one(f: Fields, *names: str) -> Rule:
    bad = np.zeros(len(f[names[0]]), bool)
    for n in names:
        bad |= f[n] < 1
    return ("these fields are at least 1", bad, names)


# ---------------------------------------------------------------- what each instruction reads and writes

# an access: (space "spad", "acc" or "dram"; "r" or "w"; what it is; address, rows, row length, stride
# (arrays, bytes or accumulator entries); the fields that place it)
Access = tuple[str, str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]


def _flat(space: str, mode: str, name: str, f: Fields, addr: str, n) -> Access:
    n = np.asarray(n) + np.zeros_like(f[addr])
    return (space, mode, name, f[addr], np.ones_like(n), n, n, (addr,))


def _matmul_weight_bytes(f: Fields, s: Spaces) -> np.ndarray:
    """A weight tile's bytes in its format (arch.formats), multipliers included; an undefined fmt: 0
    (refused by its rule)."""
    code = np.where(f["fmt"] < len(CODES), f["fmt"], 0)
    dw = f["depthwise"] == 1
    r = np.where(dw, 1, f["in_c"]) * f["kernel_h"] * f["kernel_w"]
    values = f["groups"] * group_lanes(code, s.lanes, s.int4_rate)
    mults = multiplier_count(f["k"], f["in_c"], f["w_group"], f["depthwise"])
    return tile_layout(code, f["k"], r, values, f["nm_n"], f["nm_m"], mults)[-1]


def _matmul_access(f: Fields, s: Spaces) -> list[Access]:
    pitch = np.where(f["x_pitch"] > 0, f["x_pitch"], f["in_c"])
    acc = f["k"] * f["out_h"] * f["out_w"]
    out = [("spad", "r", "input tile", f["x_addr"], f["in_h"] * f["in_w"], f["in_c"], pitch,
            ("x_addr", "in_h", "in_w", "in_c", "x_pitch")),
           _flat("spad", "r", "weights", f, "w_addr", _matmul_weight_bytes(f, s)),
           ("acc", "w", "accumulator entries", f["acc_addr"], np.ones_like(acc), acc, acc,
            ("acc_addr", "k", "out_h", "out_w"))]
    if (f["accumulate"] == 1).any():                 # accumulating reads what is there
        out.append(("acc", "r", "accumulator entries", f["acc_addr"], (f["accumulate"] == 1).astype(np.int64), acc,
                    acc, ("acc_addr", "k", "out_h", "out_w")))
    return out


def _requant_access(f: Fields, s: Spaces) -> list[Access]:
    k, cols = f["k"], f["cols"]
    row = k * np.where(f["out32"] == 1, 4, 1)
    pitch = np.where(f["dst_pitch"] > 0, f["dst_pitch"], row)
    return [("acc", "r", "accumulator entries", f["acc_addr"], np.ones_like(k), k * cols, k * cols,
             ("acc_addr", "k", "cols")),
            _flat("spad", "r", "bias", f, "bias_addr", 4 * k),
            _flat("spad", "r", "scales", f, "scale_addr", np.where(f["out32"] == 1, 0, 4 * k)),
            ("spad", "w", "output", f["dst_addr"], cols, row, pitch, ("dst_addr", "cols", "k", "dst_pitch"))]


def _dma_access(f: Fields, load: bool) -> list[Access]:
    spad = ("spad", "w" if load else "r", "scratchpad region", f["spad_addr"], f["rows"], f["row_bytes"],
            f["spad_stride"], ("spad_addr", "rows", "row_bytes", "spad_stride"))
    dram = ("dram", "r" if load else "w", "DRAM region", f["dram_addr"], f["rows"], f["row_bytes"],
            f["dram_stride"], ("dram_addr", "rows", "row_bytes", "dram_stride"))
    return [dram, spad] if load else [spad, dram]


def _ab(f: Fields, s: Spaces) -> list[Access]:
    bc = np.where(f["b_count"] > 0, f["b_count"], f["count"])
    return [_flat("spad", "r", "a", f, "a_addr", f["count"]), _flat("spad", "r", "b", f, "b_addr", bc),
            _flat("spad", "w", "output", f, "dst_addr", f["count"])]


def _src_dst(f: Fields, n, out_bytes: int = 1, **extra) -> list[Access]:
    reads = [_flat("spad", "r", name, f, addr, size) for name, (addr, size) in extra.items()]
    return [_flat("spad", "r", "input", f, "src_addr", n), *reads,
            _flat("spad", "w", "output", f, "dst_addr", out_bytes * n)]


ACCESS: dict[Opcode, Callable[[Fields, Spaces], list[Access]]] = {
    Opcode.HALT: lambda f, s: [],
    Opcode.WAIT: lambda f, s: [],
    Opcode.LOAD: lambda f, s: _dma_access(f, True),
    Opcode.STORE: lambda f, s: _dma_access(f, False),
    Opcode.MATMUL: _matmul_access,
    Opcode.REQUANT: _requant_access,
    Opcode.ADD: _ab,
    Opcode.MUL: _ab,
    Opcode.RELU: lambda f, s: _src_dst(f, f["count"]),
    Opcode.MAXPOOL: lambda f, s: [_flat("spad", "r", "input", f, "src_addr", f["in_h"] * f["in_w"] * f["c"]),
                                  _flat("spad", "w", "output", f, "dst_addr", f["out_h"] * f["out_w"] * f["c"])],
    Opcode.AFFINE: lambda f, s: _src_dst(f, f["count"], parameters=("param_addr", 8 * f["c"])),
    Opcode.LUT: lambda f, s: _src_dst(f, f["count"], table=("table_addr", 256)),
    Opcode.WIDEN: lambda f, s: _src_dst(f, f["rows"] * f["cols"], 2),
    Opcode.SOFTMAX: lambda f, s: _src_dst(f, f["rows"] * f["cols"], table=("table_addr", 1024)),
    Opcode.LAYERNORM: lambda f, s: _src_dst(f, f["rows"] * f["cols"], parameters=("param_addr", 8 * f["cols"])),
    # the input rows' width comes from the column table (data): the first pixel of each is what is certain
    Opcode.LERP: lambda f, s: [_flat("spad", "r", "column table", f, "table_addr", 6 * f["out_w"]),
                               _flat("spad", "r", "first row", f, "src0_addr", f["c"]),
                               _flat("spad", "r", "second row", f, "src1_addr", f["c"]),
                               _flat("spad", "w", "output", f, "dst_addr", f["out_w"] * f["c"])],
}


# ---------------------------------------------------------------- what each instruction's fields must satisfy

def _matmul(f: Fields, s: Spaces) -> list[Rule]:
    k, c = f["k"], f["in_c"]
    dw = f["depthwise"] == 1
    r = np.where(dw, 1, c) * f["kernel_h"] * f["kernel_w"]
    pitch = np.where(f["x_pitch"] > 0, f["x_pitch"], c)
    cols = f["out_h"] * f["out_w"]
    span_h = (f["out_h"] - 1) * f["stride_h"] + f["dil_h"] * (f["kernel_h"] - 1) + 1
    span_w = (f["out_w"] - 1) * f["stride_w"] + f["dil_w"] * (f["kernel_w"] - 1) + 1
    code = np.where(f["fmt"] < len(CODES), f["fmt"], 0)
    nm = (f["fmt"] < len(CODES)) & (KIND_OF[code] == 2)
    int4 = (f["fmt"] < len(CODES)) & (BITS_OF[code] == 4)
    return [_at_least_one(f, "k", "in_c", "kernel_h", "kernel_w", "stride_h", "stride_w", "dil_h", "dil_w"),
            (f"fmt is a weight format (0..{len(CODES) - 1})", f["fmt"] >= len(CODES), ("fmt",)),
            ("scale groups (w_group) are for int4 weights of a matmul that is not depthwise",
             (f["w_group"] > 0) & (~int4 | dw), ("w_group", "fmt", "depthwise")),
            ("an N:M block has 1 <= N <= M", nm & ((f["nm_n"] < 1) | (f["nm_n"] > f["nm_m"])), ("nm_n", "nm_m")),
            ("a depthwise matmul has in_c == k", dw & (c != k), ("in_c", "k")),
            ("x_pitch is 0 or at least in_c", pitch < c, ("x_pitch", "in_c")),
            ("its window work (columns x reduction, padded input) is within the limit "
             f"of {MAX_INSTRUCTION_WORK:,} elements (SIEVE_MAX_INSTRUCTION_WORK)",
             (cols * r * np.where(dw, c, 1) > MAX_INSTRUCTION_WORK) | (span_h * span_w * c > MAX_INSTRUCTION_WORK),
             ("out_h", "out_w", "kernel_h", "kernel_w", "in_c", "stride_h", "stride_w"))]


def _requant(f: Fields, s: Spaces) -> list[Rule]:
    row = f["k"] * np.where(f["out32"] == 1, 4, 1)
    return [("dst_pitch is 0 or at least a pixel's bytes", (f["dst_pitch"] > 0) & (f["dst_pitch"] < row),
             ("dst_pitch", "k", "out32"))]


def _add_mul(f: Fields, s: Spaces, floats: tuple[str, ...]) -> list[Rule]:
    bc = np.where(f["b_count"] > 0, f["b_count"], f["count"])
    return [("mode is 0, 1 or 2", f["mode"] > 2, ("mode",)),
            ("count is a whole number of b vectors", (bc == 0) | (f["count"] % np.maximum(bc, 1) != 0),
             ("count", "b_count")),
            _finite(f, *floats),
            ("in float mode (2) sc is not 0", (f["mode"] == 2) & (f["sc"] == 0), ("mode", "sc"))]


def _maxpool(f: Fields, s: Spaces) -> list[Rule]:
    span_h = (f["out_h"] - 1) * f["stride_h"] + f["kernel_h"]
    span_w = (f["out_w"] - 1) * f["stride_w"] + f["kernel_w"]
    return [_at_least_one(f, "kernel_h", "kernel_w", "stride_h", "stride_w"),
            ("its padded input is within the limit of "
             f"{MAX_INSTRUCTION_WORK:,} elements (SIEVE_MAX_INSTRUCTION_WORK)",
             span_h * span_w * f["c"] > MAX_INSTRUCTION_WORK,
             ("out_h", "out_w", "kernel_h", "kernel_w", "stride_h", "stride_w", "c"))]


CHECK: dict[Opcode, Callable[[Fields, Spaces], list[Rule]]] = {
    Opcode.LOAD: lambda f, s: [("it moves at most a scratchpad's worth of bytes",
                                f["rows"] * f["row_bytes"] > s.size["spad"], ("rows", "row_bytes"))],
    Opcode.MATMUL: _matmul,
    Opcode.REQUANT: _requant,
    Opcode.ADD: lambda f, s: _add_mul(f, s, ("ma", "mb", "sc")),
    Opcode.MUL: lambda f, s: _add_mul(f, s, ("m", "sb", "sc")),
    Opcode.MAXPOOL: _maxpool,
    Opcode.AFFINE: lambda f, s: [
        ("count is a whole number of c-channel pixels", (f["c"] == 0) | (f["count"] % np.maximum(f["c"], 1) != 0),
         ("count", "c")),
        _finite(f, "sx", "sy"), ("sy is not 0", f["sy"] == 0, ("sy",))],
    Opcode.SOFTMAX: lambda f, s: [
        _at_least_one(f, "cols"), ("mode is 0, 1 or 2", f["mode"] > 2, ("mode",)), _finite(f, "ys"), ("ys is not 0", f["ys"] == 0, ("ys",))],
    # its sums stay inside int64 (docs/numerics.md): rows of at most LAYERNORM_MAX_COLS, and epsilon plus the
    # largest possible n² x variance (n·255 deviations, 16 fraction bits) below 2^63
    Opcode.LAYERNORM: lambda f, s: [_at_least_one(f, "cols"), _finite(f, "m"),
                                    (f"cols is at most {LAYERNORM_MAX_COLS} and eps leaves the variance room in int64",
                                     (f["cols"] > LAYERNORM_MAX_COLS) |
                                     (f["eps"].astype(np.float64) + 4 * 65025.0 * 65536 * f["cols"].astype(np.float64)
                                      ** 2 >= 2.0 ** 63 - 2.0 ** 20), ("cols", "eps"))],
    Opcode.LERP: lambda f, s: [_at_least_one(f, "c"), ("ly is at most 1024", f["ly"] > 1024, ("ly",))],
}
CHECK[Opcode.STORE] = CHECK[Opcode.LOAD]


def _rules(op: Opcode, f: Fields, spaces: Spaces) -> list[Rule]:
    """The opcode's own rules, then every access inside its space."""
    rules = list(CHECK.get(op, lambda f, s: [])(f, spaces))
    for space, _, name, addr, rows, row, stride, shown in ACCESS[op](f, spaces):
        unit = "entries" if space == "acc" else "bytes"
        where = {"spad": "scratchpad", "acc": "accumulator", "dram": "DRAM"}[space]
        hi = _end(addr, rows, row, stride)
        rules.append((f"its {name} lies inside the {spaces.size[space]:,} {where} {unit} there are",
                      (addr < 0) | (hi > spaces.size[space]), shown))
    return rules


def verify(p: Program, streams: tuple[Stream, ...]) -> None:
    """Raise ``Trap`` for the first instruction (lowest core, then position) that breaks a rule."""
    spaces = Spaces(p)
    for core, stream in enumerate(streams):
        first = None
        for op, (idx, f) in stream.fields.items():
            with np.errstate(over="ignore", invalid="ignore"):
                rules = _rules(op, f, spaces)
            for rule, bad, shown in rules:
                hit = np.flatnonzero(bad)
                if hit.size and (first is None or idx[hit[0]] < first[0]):
                    j = hit[0]
                    values = ", ".join(f"{n}={f[n][j]:g}" if f[n].dtype.kind == "f" else f"{n}={int(f[n][j])}"
                                       for n in shown)
                    first = (int(idx[j]), f"{op.name} breaks the rule that {rule} ({values})")
        if first is not None:
            raise Trap(first[1], core, first[0], p.layer_of(core, first[0]))
