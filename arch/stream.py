"""One core's instruction stream in array form: the field table of ``arch.isa`` applied to all words at
once. Decoding a binary and encoding a program are numpy operations over every instruction of an
opcode together; the timing and energy model reads these arrays directly; an ``Instruction`` object
is built only when one is asked for (functional execution, the disassembler).

Words are 48 bytes, little-endian: six uint64 limbs per instruction; a field at bit ``pos`` of width
``bits`` lies in limb ``pos // 64`` (and the next one when it straddles).
"""
from __future__ import annotations

import itertools
from collections import namedtuple
from collections.abc import Sequence
from typing import Iterable

import numpy as np

from sieve.arch.isa import FIELDS, HEADER_BITS, QUEUE_OF, VALUE_BITS, WORD_BYTES, Instruction, ISAError, Opcode

LIMBS = WORD_BYTES // 8
_OPCODES = np.zeros(256, bool)
_OPCODES[[int(op) for op in Opcode]] = True
QUEUE_BY_OPCODE = np.zeros(256, np.int8)
for _op, _q in QUEUE_OF.items():
    QUEUE_BY_OPCODE[int(_op)] = int(_q)
_LAYOUT = {}                                   # opcode -> [(name, kind, bits, pos)], end bit
for _op, _fields in FIELDS.items():
    _pos, _rows = HEADER_BITS, []
    for _name, _kind, _bits in _fields:
        _rows.append((_name, _kind, _bits, _pos))
        _pos += _bits
    _LAYOUT[_op] = (_rows, _pos)


# the field values of one instruction, by name (what functional execution reads)
RECORDS = {op: namedtuple(op.name.title(), [name for name, *_ in _LAYOUT[op][0]]) for op in Opcode}


def _get(words: np.ndarray, pos: int, bits: int) -> np.ndarray:
    """Unsigned ``bits`` at bit ``pos`` of every word, as uint64."""
    limb, off = divmod(pos, 64)
    value = words[:, limb] >> np.uint64(off)
    if off + bits > 64:
        value = value | (words[:, limb + 1] << np.uint64(64 - off))
    return value & np.uint64((1 << bits) - 1)


def _put(words: np.ndarray, pos: int, bits: int, value: np.ndarray) -> None:
    limb, off = divmod(pos, 64)
    value = value.astype(np.uint64) & np.uint64((1 << bits) - 1)
    words[:, limb] |= value << np.uint64(off)
    if off + bits > 64:
        words[:, limb + 1] |= value >> np.uint64(64 - off)


class Stream(Sequence):
    """The instructions of one core as arrays: ``opcode``, ``signal``, ``wait_counter``/``wait_value``
    ([n, 2]), and per opcode the positions of its instructions and one array per field."""

    def __init__(self, opcode: np.ndarray, signal: np.ndarray, wait_counter: np.ndarray, wait_value: np.ndarray,
                 fields: dict[Opcode, tuple[np.ndarray, dict[str, np.ndarray]]]):
        self.opcode, self.signal = opcode, signal
        self.wait_counter, self.wait_value = wait_counter, wait_value
        self.fields = fields
        self.queue = QUEUE_BY_OPCODE[opcode]
        self._built: list[Instruction | None] = [None] * len(opcode)
        self._records: list | None = None

    # ---------------------------------------------------------------- from and to bytes
    @classmethod
    def decode(cls, raw: bytes) -> "Stream":
        """Every word checked: a known opcode, zero reserved bits; one ISAError names the first bad one."""
        if len(raw) % WORD_BYTES:
            raise ISAError(f"code section is {len(raw)} bytes, not a multiple of {WORD_BYTES}")
        words = np.frombuffer(raw, "<u8").reshape(-1, LIMBS)
        opcode = (words[:, 0] & np.uint64(0xFF)).astype(np.uint8)
        bad = np.flatnonzero(~_OPCODES[opcode])
        if bad.size:
            raise ISAError(f"instruction {bad[0]}: unknown opcode {opcode[bad[0]]}")
        signal = _get(words, 8, 4).astype(np.int64)
        counters = np.stack([_get(words, 12 + 24 * i, 4) for i in range(2)], 1).astype(np.int64)
        values = np.stack([_get(words, 16 + 24 * i, VALUE_BITS) for i in range(2)], 1).astype(np.int64)
        values[counters == 0] = 0
        fields = {}
        for op in Opcode:
            idx = np.flatnonzero(opcode == int(op))
            if not idx.size:
                continue
            w = words[idx]
            rows, end = _LAYOUT[op]
            rest = np.zeros(len(idx), bool)               # reserved bits after the last field must be zero
            for pos in range(end, WORD_BYTES * 8, 32):
                rest |= _get(w, pos, min(32, WORD_BYTES * 8 - pos)) != 0
            if rest.any():
                raise ISAError(f"instruction {idx[np.argmax(rest)]}: {op.name} has nonzero reserved bits")
            cols = {}
            for name, kind, bits, pos in rows:
                v = _get(w, pos, bits)
                if kind == "f":
                    cols[name] = v.astype(np.uint32).view(np.float32)
                elif kind == "s":
                    v = v.astype(np.int64)
                    cols[name] = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
                else:
                    cols[name] = v.astype(np.int64)
            fields[op] = (idx, cols)
        return cls(opcode, signal, counters, values, fields)

    @classmethod
    def of(cls, instructions: Iterable[Instruction]) -> "Stream":
        """The array form of instruction objects (the codegen's output), checking every field's range."""
        instructions = list(instructions)
        n = len(instructions)
        opcode = np.fromiter((int(i.opcode) for i in instructions), np.uint8, n)
        counters, values = np.zeros((n, 2), np.int64), np.zeros((n, 2), np.int64)
        try:
            signal = np.fromiter((i.signal for i in instructions), np.int64, n)
            for j, ins in enumerate(instructions):
                for k, (c, v) in enumerate(ins.waits):
                    counters[j, k], values[j, k] = c, v
        except OverflowError:
            raise ISAError("a signal or wait value is too large for its field") from None
        fields = {}
        for op in Opcode:
            idx = np.flatnonzero(opcode == int(op))
            if not idx.size:
                continue
            rows, _ = _LAYOUT[op]
            if not rows:
                fields[op] = (idx, {})
                continue
            try:
                table = np.fromiter(itertools.chain.from_iterable(instructions[j].args for j in idx.tolist()),
                                    np.float64, len(idx) * len(rows)).reshape(len(idx), len(rows))
            except OverflowError:
                raise ISAError(f"a {op.name} field is too large for any field") from None
            cols = {}
            for c, (name, kind, bits, _) in enumerate(rows):
                col = table[:, c]
                if kind == "f":
                    cols[name] = col.astype(np.float32)
                    continue
                lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind == "s" else (0, (1 << bits) - 1)
                bad = np.flatnonzero((col < lo) | (col >= float(hi) + 1))     # before the cast to int64
                if bad.size:
                    j = idx[bad[0]]
                    raise ISAError(f"instruction {j}: field '{op.name}.{name}' = {instructions[j].args[c]} does not "
                                   f"fit {bits} bits ({lo}..{hi})")
                cols[name] = col.astype(np.int64)
            fields[op] = (idx, cols)
        for what, arr, bits in (("signal", signal, 4), ("wait counter", counters, 4), ("wait value", values, VALUE_BITS)):
            bad = np.argwhere((arr < 0) | (arr >= 1 << bits))
            if bad.size:
                raise ISAError(f"instruction {bad[0][0]}: {what} {arr[tuple(bad[0])]} does not fit {bits} bits")
        stream = cls(opcode, signal, counters, values, fields)
        stream._built = list(instructions)
        return stream

    def encode(self) -> bytes:
        words = np.zeros((len(self), LIMBS), np.uint64)
        words[:, 0] = self.opcode.astype(np.uint64)
        _put(words, 8, 4, self.signal)
        for i in range(2):
            _put(words, 12 + 24 * i, 4, self.wait_counter[:, i])
            _put(words, 16 + 24 * i, VALUE_BITS, self.wait_value[:, i])
        for op, (idx, cols) in self.fields.items():
            w = np.zeros((len(idx), LIMBS), np.uint64)
            for name, kind, bits, pos in _LAYOUT[op][0]:
                col = cols[name]
                raw = col.astype(np.float32).view(np.uint32) if kind == "f" else col
                _put(w, pos, bits, raw)
            words[idx] |= w
        return words.astype("<u8").tobytes()

    # ---------------------------------------------------------------- as a sequence of instructions
    def __len__(self) -> int:
        return len(self.opcode)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        ins = self._built[i]
        if ins is None:
            self._build(Opcode(int(self.opcode[i])))
            ins = self._built[i]
        return ins

    def _build(self, op: Opcode) -> None:
        """Instruction objects for every instruction of one opcode at once (the same objects
        ``Instruction.of`` makes, built inline: a program has tens of thousands)."""
        idx, cols = self.fields[op]
        names = [name for name, *_ in _LAYOUT[op][0]]
        args = list(zip(*(cols[n].tolist() for n in names))) if names else [()] * len(idx)
        cls, new, built = type(Instruction.of(op, ())), object.__new__, self._built
        c, v = self.wait_counter[idx], self.wait_value[idx]
        for j, a, s, c0, v0, c1, v1 in zip(idx.tolist(), args, self.signal[idx].tolist(), c[:, 0].tolist(),
                                           v[:, 0].tolist(), c[:, 1].tolist(), v[:, 1].tolist()):
            ins = new(cls)
            ins.__dict__.update(opcode=op, args=a, signal=s,
                                waits=((c0, v0), (c1, v1)) if c1 else ((c0, v0),) if c0 else ())
            built[j] = ins

    def __eq__(self, other) -> bool:
        if isinstance(other, Stream):
            return self.encode() == other.encode()
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def records(self) -> list:
        """Per instruction, its fields as a named tuple (built once, for all instructions at once)."""
        if self._records is None:
            records: list = [None] * len(self)
            for op, (idx, cols) in self.fields.items():
                names = RECORDS[op]._fields
                rows = map(RECORDS[op]._make, zip(*(cols[n].tolist() for n in names))) if names else \
                    [RECORDS[op]()] * len(idx)
                for j, row in zip(idx.tolist(), rows):
                    records[j] = row
            self._records = records
        return self._records
