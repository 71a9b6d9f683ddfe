from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve.arch import BinaryFormatError, decode_program, encode_program, load_arch
from sieve.arch.binary import HEADER
from sieve.frontend import build
from sieve.simulator import load_binary
from tests.helpers import compile_bytes, quantize, random_calibration


@pytest.fixture(scope="module")
def lenet_bytes() -> bytes:
    g = build("lenet5")
    return compile_bytes(quantize(g, random_calibration(g, np.random.default_rng(0))), load_arch("default"))


def test_round_trip(lenet_bytes):
    assert encode_program(decode_program(lenet_bytes)) == lenet_bytes


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_truncation_is_one_clear_error(lenet_bytes, data):
    n = data.draw(st.integers(0, len(lenet_bytes) - 1))
    with pytest.raises(BinaryFormatError, match="truncated|not a Sieve binary|checksum"):
        decode_program(lenet_bytes[:n], "x.sieve")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_detected(lenet_bytes, data):
    i = data.draw(st.integers(0, len(lenet_bytes) - 1))
    bit = data.draw(st.integers(0, 7))
    raw = bytearray(lenet_bytes)
    raw[i] ^= 1 << bit
    with pytest.raises(BinaryFormatError):
        decode_program(bytes(raw), "x.sieve")


def test_wrong_version(lenet_bytes):
    magic, _, minor, fp, count, _ = HEADER.unpack_from(lenet_bytes)
    table = lenet_bytes[HEADER.size:HEADER.size + 32 * count]
    head = HEADER.pack(magic, 9, minor, fp, count, 0)
    head = HEADER.pack(magic, 9, minor, fp, count, zlib.crc32(head[:48] + table))
    with pytest.raises(BinaryFormatError, match=r"format version 9\.0, this Sieve reads 7\.x"):
        decode_program(head + lenet_bytes[HEADER.size:], "x.sieve")


def test_not_a_sieve_file():
    with pytest.raises(BinaryFormatError, match="not a Sieve binary"):
        decode_program(b"\x7fELF" + bytes(100), "x.sieve")


def test_wrong_arch_refused_but_memory_retarget_allowed(lenet_bytes, tmp_path):
    path = tmp_path / "l.sieve"
    path.write_bytes(lenet_bytes)
    with pytest.raises(BinaryFormatError, match=r"compiled for arch 'default'.*pe_rows: 16 vs 8"):
        load_binary(path, load_arch("edge"))
    from sieve.arch import with_overrides
    slow = with_overrides(load_arch("default"), {"memory.dram_bytes_per_cycle": 2.0})
    assert load_binary(path, slow).arch.memory.dram_bytes_per_cycle == 2.0


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(BinaryFormatError, match="cannot read"):
        load_binary(tmp_path / "nope.sieve")
