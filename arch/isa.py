"""The instruction set: one field table drives encoding, decoding, disassembly and assembly.

Every instruction is a 48-byte little-endian word:

    bits 0-7    opcode
    bits 8-11   signal : counter to increment when the instruction completes (0 = none)
    bits 12-15  wait1  : counter to wait on (0 = none)
    bits 16-35  value1 : start only once counter wait1 >= value1
    bits 36-39  wait2, bits 40-59 value2 : a second condition
    bits 60-    the opcode's own fields, in table order, packed LSB first

Counters are per core, start at 0 and only grow (timeline semaphores): each queue
signals its own progress and the others wait for the progress they need.

Field kinds: 'u' unsigned, 's' two's-complement signed, 'f' IEEE float32 (32 bits).
Each opcode runs on one of a core's three in-order queues (load, compute, store).
"""
from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

WORD_BYTES = 48
HEADER_BITS = 60
NUM_COUNTERS = 15            # counter ids 1..15; 0 means "none"
VALUE_BITS = 20


class ISAError(Exception):
    pass


class Opcode(enum.IntEnum):
    HALT = 0
    LOAD = 1        # 2-D strided DMA: DRAM -> scratchpad
    STORE = 2       # 2-D strided DMA: scratchpad -> DRAM
    MATMUL = 3      # weight tile x activation tile (implicit im2col) -> accumulator
    REQUANT = 4     # accumulator + bias, * scale, + zp, saturate -> int8 scratchpad
    ADD = 5         # int8 + int8 with two multipliers -> int8
    MAXPOOL = 6     # int8 max over windows
    RELU = 7        # int8 max(x, zp)
    AFFINE = 8      # per channel: dequantize, x * scale + shift, quantize (float32 steps)
    WAIT = 9        # hold the load queue until another core's counter reaches a value
    LUT = 10        # int8 -> int8 through a 256-entry table in the scratchpad (element-wise functions)
    MUL = 11        # int8 * int8 (the second operand repeating every b_count elements) -> int8
    WIDEN = 12      # int8 tile minus a zero point -> int16 (optionally transposed): an activation as weights
    SOFTMAX = 13    # rows of int8 -> int8 softmax over each row (integer exp table, or onnxruntime's QLinearSoftmax)
    LAYERNORM = 14  # rows of int8 -> int8 LayerNorm over each row (integer mean, variance, Newton isqrt), gamma, beta
    LERP = 15       # one output row of a bilinear resize from two input rows (integer weights on a 7-bit grid)


class Queue(enum.IntEnum):
    LOAD = 0
    COMPUTE = 1
    STORE = 2


QUEUE_OF = {Opcode.HALT: Queue.COMPUTE, Opcode.LOAD: Queue.LOAD, Opcode.STORE: Queue.STORE,
            Opcode.MATMUL: Queue.COMPUTE, Opcode.REQUANT: Queue.COMPUTE, Opcode.ADD: Queue.COMPUTE,
            Opcode.MAXPOOL: Queue.COMPUTE, Opcode.RELU: Queue.COMPUTE, Opcode.AFFINE: Queue.COMPUTE,
            Opcode.WAIT: Queue.LOAD, Opcode.LUT: Queue.COMPUTE, Opcode.MUL: Queue.COMPUTE,
            Opcode.WIDEN: Queue.COMPUTE, Opcode.SOFTMAX: Queue.COMPUTE, Opcode.LAYERNORM: Queue.COMPUTE,
            Opcode.LERP: Queue.COMPUTE}

_DMA = [("dram_addr", "u", 32), ("spad_addr", "u", 24), ("rows", "u", 16), ("row_bytes", "u", 24),
        ("dram_stride", "u", 32), ("spad_stride", "u", 24), ("zvc", "u", 1), ("zvc_zero", "s", 8),
        ("zvc_density", "u", 8)]

# The one table; docs/isa.md gives the semantics of every field.
FIELDS: dict[Opcode, list[tuple[str, str, int]]] = {
    Opcode.HALT: [],
    Opcode.LOAD: _DMA,
    Opcode.STORE: _DMA,
    Opcode.MATMUL: [("w_addr", "u", 24), ("x_addr", "u", 24), ("acc_addr", "u", 20), ("k", "u", 12),
                    ("out_h", "u", 12), ("out_w", "u", 12), ("in_h", "u", 12), ("in_w", "u", 12),
                    ("in_c", "u", 16), ("kernel_h", "u", 5), ("kernel_w", "u", 5), ("stride_h", "u", 5),
                    ("stride_w", "u", 5), ("dil_h", "u", 4), ("dil_w", "u", 4), ("pad_top", "u", 4),
                    ("pad_left", "u", 4), ("x_zp", "s", 8), ("accumulate", "u", 1), ("fmt", "u", 4),
                    ("depthwise", "u", 1), ("batch_groups", "u", 24), ("groups", "u", 24), ("nnz", "u", 24),
                    ("nm_n", "u", 4), ("nm_m", "u", 5), ("x_pitch", "u", 16),
                    ("w_group", "u", 4)],
    Opcode.REQUANT: [("acc_addr", "u", 20), ("dst_addr", "u", 24), ("cols", "u", 16), ("k", "u", 12),
                     ("bias_addr", "u", 24), ("scale_addr", "u", 24), ("zp", "s", 8), ("lo", "s", 8),
                     ("hi", "s", 8), ("out32", "u", 1), ("dst_pitch", "u", 16)],
    Opcode.ADD: [("a_addr", "u", 24), ("b_addr", "u", 24), ("dst_addr", "u", 24), ("count", "u", 24),
                 ("za", "s", 8), ("zb", "s", 8), ("zc", "s", 8), ("ma", "f", 32), ("mb", "f", 32),
                 ("relu", "u", 1), ("hi", "s", 8), ("mode", "u", 2), ("sc", "f", 32), ("b_count", "u", 24)],
    Opcode.MAXPOOL: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("c", "u", 16), ("in_h", "u", 12),
                     ("in_w", "u", 12), ("out_h", "u", 12), ("out_w", "u", 12), ("kernel_h", "u", 4),
                     ("kernel_w", "u", 4), ("stride_h", "u", 4), ("stride_w", "u", 4),
                     ("pad_top", "u", 4), ("pad_left", "u", 4)],
    Opcode.RELU: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("count", "u", 24), ("zp", "s", 8)],
    Opcode.AFFINE: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("count", "u", 24), ("c", "u", 16),
                    ("param_addr", "u", 24), ("zx", "s", 8), ("sx", "f", 32), ("zy", "s", 8), ("sy", "f", 32),
                    ("lo", "s", 8), ("hi", "s", 8)],
    Opcode.WAIT: [("core", "u", 6), ("counter", "u", 4), ("value", "u", 20)],
    Opcode.LUT: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("count", "u", 24), ("table_addr", "u", 24)],
    Opcode.MUL: [("a_addr", "u", 24), ("b_addr", "u", 24), ("dst_addr", "u", 24), ("count", "u", 24),
                 ("b_count", "u", 24), ("za", "s", 8), ("zb", "s", 8), ("zc", "s", 8), ("m", "f", 32),
                 ("sb", "f", 32), ("sc", "f", 32), ("lo", "s", 8), ("hi", "s", 8), ("mode", "u", 2)],
    Opcode.WIDEN: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("rows", "u", 16), ("cols", "u", 16),
                   ("zp", "s", 8), ("transpose", "u", 1)],
    Opcode.SOFTMAX: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("rows", "u", 16), ("cols", "u", 16),
                     ("table_addr", "u", 24), ("ys", "f", 32), ("zy", "s", 8), ("mode", "u", 2)],
    Opcode.LAYERNORM: [("src_addr", "u", 24), ("dst_addr", "u", 24), ("rows", "u", 16), ("cols", "u", 16),
                       ("param_addr", "u", 24), ("zx", "s", 8), ("eps", "u", 63), ("m", "f", 32), ("zy", "s", 8)],
    Opcode.LERP: [("src0_addr", "u", 24), ("src1_addr", "u", 24), ("dst_addr", "u", 24), ("c", "u", 16),
                  ("out_w", "u", 16), ("table_addr", "u", 24), ("ly", "u", 16), ("zp", "s", 8)],
}

for _op, _fields in FIELDS.items():
    assert HEADER_BITS + sum(b for _, _, b in _fields) <= WORD_BYTES * 8, _op
FIELD_NAMES = {op: tuple(name for name, _, _ in fs) for op, fs in FIELDS.items()}

_INDEX = {op: {name: i for i, name in enumerate(names)} for op, names in FIELD_NAMES.items()}


F32_MAX = float(np.finfo(np.float32).max)


def _f32(x: float) -> float:
    """``x`` as a float32 (a finite value beyond float32's range is an error, not an infinity)."""
    x = float(x)
    if abs(x) > F32_MAX and math.isfinite(x):
        raise OverflowError(f"{x!r} does not fit a float32")
    return float(np.float32(x))


# fields that may be left out when an instruction is written by hand (assembler, tests)
OPTIONAL = {Opcode.MATMUL: {"fmt": 0, "depthwise": 0, "batch_groups": 0, "groups": 0, "nnz": 0, "nm_n": 0,
                            "nm_m": 0, "x_pitch": 0, "w_group": 0},
            Opcode.REQUANT: {"dst_pitch": 0},
            Opcode.LOAD: {"zvc": 0, "zvc_zero": 0, "zvc_density": 255},
            Opcode.STORE: {"zvc": 0, "zvc_zero": 0, "zvc_density": 255},
            Opcode.ADD: {"mode": 0, "sc": 0.0, "b_count": 0}}


def _args_function(op: Opcode):
    """A function of the opcode's fields as keyword arguments (the optional ones with defaults) that
    returns the args tuple in table order, ints and float32 values: Python binds and checks the
    keywords, which costs far less than checking a dict (the compiler makes tens of thousands)."""
    params = [name + (f"={OPTIONAL[op][name]!r}" if name in OPTIONAL.get(op, {}) else "") for name in FIELD_NAMES[op]]
    params.sort(key=lambda p: "=" in p)                   # parameters with defaults last
    body = ", ".join(f"_f32({name})" if kind == "f" else f"int({name})" for name, kind, _ in FIELDS[op])
    source = f"def args(*, {', '.join(params)}):\n    return ({body}{',' if len(FIELDS[op]) == 1 else ''})\n"
    if not params:
        source = "def args():\n    return ()\n"
    namespace = {"_f32": _f32}
    exec(source, namespace)                               # noqa: S102 - generated from the field table
    return namespace["args"]


_ARGS = {op: _args_function(op) for op in Opcode}
ADD_MODES = {"s8": 0, "u8": 1, "float": 2}     # the ADD and MUL instructions' arithmetic (docs/isa.md)
SOFTMAX_MODES = {"s8": 0, "u8": 1, "int": 2}   # the SOFTMAX instruction's arithmetic


@dataclass(frozen=True)
class Instruction:
    opcode: Opcode
    args: tuple
    signal: int = 0
    waits: tuple[tuple[int, int], ...] = ()     # up to two (counter, value) conditions

    @classmethod
    def make(cls, opcode: Opcode, signal: int = 0, waits: tuple = (), **fields: Any) -> "Instruction":
        """An instruction from named fields (optional ones may be left out); values become ints, and
        float32 for float fields. Ranges are checked when the stream is encoded."""
        try:
            args = _ARGS[opcode](**fields)
        except TypeError:
            names = FIELD_NAMES[opcode]
            missing = [n for n in names if n not in fields and n not in OPTIONAL.get(opcode, {})]
            extra = [n for n in fields if n not in names]
            if missing or extra:
                raise ISAError(f"{opcode.name}: missing fields {missing}, unknown fields {extra}") from None
            raise ISAError(f"{opcode.name}: a field is not a number") from None
        except (ValueError, OverflowError) as err:
            raise ISAError(f"{opcode.name}: a field is not a number: {err}") from None
        waits = tuple((int(c), int(v)) for c, v in waits if c and v)
        if len(waits) > 2:
            raise ISAError(f"{opcode.name}: at most two wait conditions, got {len(waits)}")
        return Instruction.of(opcode, args, signal, waits)

    @staticmethod
    def of(opcode: Opcode, args: tuple, signal: int = 0, waits: tuple = ()) -> "Instruction":
        """An instruction from its field values in table order (no checks: decoding and copies). Built
        without the frozen dataclass's __init__, which costs several times more (tens of thousands are
        built per program)."""
        ins = _NEW(_CLASSES[opcode])
        ins.__dict__.update(opcode=opcode, args=args, signal=signal, waits=waits)
        return ins

    def with_signal(self, signal: int) -> "Instruction":
        return _CLASSES[self.opcode](self.opcode, self.args, signal, self.waits)

    def with_fields(self, **fields: Any) -> "Instruction":
        """A copy with some fields changed (values as the table takes them; checked when encoded)."""
        args = list(self.args)
        for name, value in fields.items():
            args[_INDEX[self.opcode][name]] = value
        return Instruction.of(self.opcode, tuple(args), self.signal, self.waits)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.args[_INDEX[object.__getattribute__(self, "opcode")][name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def queue(self) -> Queue:
        return QUEUE_OF[self.opcode]

    def fields(self) -> dict[str, Any]:
        return dict(zip(FIELD_NAMES[self.opcode], self.args))


_NEW = object.__new__
# one subclass per opcode whose fields are properties (fast attribute access in the simulator)
_CLASSES = {op: type(f"{op.name.title()}Instruction", (Instruction,),
                     {"__slots__": (), **{name: property(lambda self, i=i: self.args[i])
                                          for i, name in enumerate(FIELD_NAMES[op])}})
            for op in Opcode}


def _check_range(value: int, kind: str, bits: int, what: str) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind == "s" else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ISAError(f"field '{what}' = {value} does not fit {bits} bits ({lo}..{hi})")


def encode(ins: Instruction) -> bytes:
    _check_range(ins.signal, "u", 4, f"{ins.opcode.name}.signal")
    word = int(ins.opcode) | ins.signal << 8
    for i, (counter, value) in enumerate(ins.waits):
        _check_range(counter, "u", 4, f"{ins.opcode.name}.wait{i + 1}")
        _check_range(value, "u", VALUE_BITS, f"{ins.opcode.name}.value{i + 1}")
        word |= (counter | value << 4) << (12 + 24 * i)
    pos = HEADER_BITS
    for (name, kind, bits), value in zip(FIELDS[ins.opcode], ins.args):
        if kind == "f":
            raw = struct.unpack("<I", struct.pack("<f", value))[0]
        else:
            _check_range(value, kind, bits, f"{ins.opcode.name}.{name}")
            raw = value & ((1 << bits) - 1)
        word |= raw << pos
        pos += bits
    return word.to_bytes(WORD_BYTES, "little")


def decode(raw: bytes, index: int = 0) -> Instruction:
    if len(raw) != WORD_BYTES:
        raise ISAError(f"instruction {index}: {len(raw)} bytes, expected {WORD_BYTES}")
    word = int.from_bytes(raw, "little")
    try:
        opcode = Opcode(word & 0xFF)
    except ValueError:
        raise ISAError(f"instruction {index}: unknown opcode {word & 0xFF}") from None
    pos, args = HEADER_BITS, []
    for _, kind, bits in FIELDS[opcode]:
        raw_val = (word >> pos) & ((1 << bits) - 1)
        if kind == "f":
            args.append(struct.unpack("<f", struct.pack("<I", raw_val))[0])
        elif kind == "s" and raw_val >> (bits - 1):
            args.append(raw_val - (1 << bits))
        else:
            args.append(raw_val)
        pos += bits
    if word >> pos:
        raise ISAError(f"instruction {index}: {opcode.name} has nonzero reserved bits")
    waits = []
    for i in range(2):
        cond = (word >> (12 + 24 * i)) & 0xFFFFFF
        if cond & 0xF:
            waits.append((cond & 0xF, cond >> 4))
    return Instruction.of(opcode, tuple(args), (word >> 8) & 0xF, tuple(waits))


def encode_stream(stream) -> bytes:
    """A stream of instructions (a list, or the array form) as words, every field range-checked."""
    from sieve.arch.stream import Stream
    return (stream if isinstance(stream, Stream) else Stream.of(stream)).encode()


def decode_stream(raw: bytes):
    """Words -> the array form (``arch.stream.Stream``, a sequence of instructions)."""
    from sieve.arch.stream import Stream
    return Stream.decode(raw)


def markdown_tables() -> str:
    """The field tables of docs/isa.md, generated from FIELDS (`python -m sieve.arch.isa`)."""
    kinds = {"u": "unsigned", "s": "signed", "f": "float32"}
    out = []
    for op, fields in FIELDS.items():
        out.append(f"### {op.name.lower()} (opcode {int(op)}, {QUEUE_OF[op].name.lower()} queue)\n")
        if not fields:
            out.append("No fields.\n")
            continue
        out.append("| field | bits | kind |\n|---|---|---|")
        pos = HEADER_BITS
        for name, kind, bits in fields:
            out.append(f"| `{name}` | {pos}–{pos + bits - 1} | {kinds[kind]} |")
            pos += bits
        out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown_tables(), end="")
