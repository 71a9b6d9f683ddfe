from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve.arch.isa import FIELDS, WORD_BYTES, Instruction, ISAError, Opcode, decode, encode


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(list(Opcode)))
    fields = {}
    for name, kind, bits in FIELDS[op]:
        if kind == "u":
            fields[name] = draw(st.integers(0, (1 << bits) - 1))
        elif kind == "s":
            fields[name] = draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
        else:
            fields[name] = float(np.float32(draw(st.floats(allow_nan=False, allow_infinity=False, width=32))))
    waits = draw(st.lists(st.tuples(st.integers(1, 15), st.integers(1, (1 << 20) - 1)), max_size=2))
    return Instruction.make(op, signal=draw(st.integers(0, 15)), waits=tuple(waits), **fields)


@settings(max_examples=500)
@given(instructions())
def test_encode_decode_round_trip(ins):
    raw = encode(ins)
    assert len(raw) == WORD_BYTES
    assert decode(raw) == ins


@pytest.mark.parametrize("op", list(Opcode))
def test_every_opcode_fits_one_word_and_round_trips_at_extremes(op):
    top = {name: ((1 << bits) - 1 if kind == "u" else (1 << (bits - 1)) - 1 if kind == "s" else 3.5)
           for name, kind, bits in FIELDS[op]}
    ins = Instruction.make(op, signal=15, waits=((15, (1 << 20) - 1), (1, 1)), **top)
    assert decode(encode(ins)) == ins


def test_overflow_names_the_field():
    ins = Instruction.make(Opcode.LOAD, dram_addr=1 << 32, spad_addr=0, rows=1, row_bytes=1, dram_stride=0,
                           spad_stride=0)
    with pytest.raises(ISAError, match=r"'LOAD.dram_addr' = 4294967296 does not fit 32 bits"):
        encode(ins)


def test_missing_and_unknown_fields_are_errors():
    with pytest.raises(ISAError, match=r"missing fields \['spad_stride'\].*unknown fields \['bogus'\]"):
        Instruction.make(Opcode.LOAD, dram_addr=0, spad_addr=0, rows=1, row_bytes=1, dram_stride=0, bogus=1)


def test_unknown_opcode_and_reserved_bits_rejected():
    with pytest.raises(ISAError, match="unknown opcode 200"):
        decode(bytes([200]) + bytes(WORD_BYTES - 1))
    with pytest.raises(ISAError, match="reserved bits"):
        decode(bytes(WORD_BYTES - 1) + b"\x01")          # HALT with a stray high bit
