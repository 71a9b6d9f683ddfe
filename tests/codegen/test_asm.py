"""Assembler and disassembler; hand-written programs run with no compiler involved."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sieve.arch import encode_program, load_arch
from sieve.codegen import AsmError, assemble, assemble_file, disassemble
from sieve.frontend import build
from sieve.simulator import load_binary, run
from tests.helpers import compile_bytes, quantize, random_calibration, small_arch

PROGRAMS = Path(__file__).parent.parent / "programs"


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
@pytest.mark.parametrize("arch", [load_arch("default"), load_arch("edge"), small_arch()])
def test_disasm_asm_round_trip_is_byte_identical(model, arch):
    g = build(model)
    raw = compile_bytes(quantize(g, random_calibration(g, np.random.default_rng(1))), arch)
    text = disassemble(load_binary(raw))
    again = encode_program(assemble(text))
    assert again == raw
    assert disassemble(assemble(text)) == text


def test_handwritten_add_relu():
    program = assemble_file(PROGRAMS / "add_relu.s")
    raw = encode_program(program)                  # through the container and back
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (1, 32)).astype(np.int8)
    b = rng.integers(-128, 128, (1, 32)).astype(np.int8)
    y = run(load_binary(raw), {"a": a, "b": b}).outputs["y"]
    t = a.astype(np.float32) * np.float32(0.5) + b.astype(np.float32) * np.float32(0.25)
    want = np.clip(np.rint(t), 0, 127).astype(np.int8)
    assert np.array_equal(y, want)
    assert (y >= 0).all() and (want > 0).any()


def test_handwritten_conv1x1():
    program = assemble_file(PROGRAMS / "conv1x1.s")
    x = np.random.default_rng(3).integers(-128, 128, (1, 8, 2, 2)).astype(np.int8)
    result = run(load_binary(encode_program(program)), {"x": x})
    w = np.array([[1] * 8, [2] * 8, [3] * 8, [1, -1] * 4], np.int64)
    bias = np.array([0, 10, -10, 0])
    acc = np.einsum("kc,chw->khw", w, x[0].astype(np.int64) - 3) + bias[:, None, None]
    want = np.clip(np.rint(acc.astype(np.float32) * np.float32(0.5)) - 1, -128, 127).astype(np.int8)
    assert np.array_equal(result.outputs["y"][0], want)
    # timing: two loads (64 B, then 32 B that move as one 64 B DRAM burst), a 4x8 by 4-column tile, a
    # 16-element requant, a 16 B store (one burst)
    a = program.arch
    burst = a.memory.dram_burst_bytes / a.memory.dram_bytes_per_cycle        # 4 cycles
    mm = 1 * 1 * 4 + a.core.matmul_fill_cycles                 # one row batch, one group, 4 columns
    rq = 1 + a.core.vector_fill_cycles                          # 16 elements / 16 lanes
    load_done = 2 * burst + a.memory.dram_latency_cycles        # the loads share the engine, then latency
    assert result.stats.cycles == load_done + mm + rq + burst + a.memory.dram_latency_cycles
    assert result.stats.macs == 4 * 8 * 4


@pytest.mark.parametrize("text,match", [
    (".arch preset=default\n    lod dram_addr=0\n", r"<asm>:2:5: unknown instruction 'lod'"),
    (".arch preset=default\n    halt bogus=1\n", r"unknown fields \['bogus'\]"),
    (".arch preset=default\n    load dram_addr=0x1\n", r"missing fields"),
    ("    halt\n", r"no .arch directive"),
    (".arch preset=default\n.frobnicate 3\n", r"unknown directive '.frobnicate'"),
    (".arch preset=default\n    halt = =\n", r"<asm>:2:.*syntax error"),
    (".arch preset=nope\n", r"no arch file or preset named 'nope'"),
    (".arch preset=default\n.dram 0\n", r"<asm>:2:1: .dram must be an integer of at least 1, got 0"),
    (".arch preset=default\n.dram -5\n", r".dram must be an integer of at least 1, got -5"),
    (".arch preset=default\n.dram 2.5\n", r".dram must be an integer of at least 1, got 2.5"),
    (".arch preset=default\n.data_size -1\n", r".data_size must be an integer of at least 0"),
    (".arch preset=default\n.dram 64\n.data_size 128\n.core 0\n    halt\n",
     r".data_size is at 0x80, past the 64-byte DRAM of .dram"),
    ('.arch preset=default\n.dram 64\n.data 0x3e "00112233"\n.core 0\n    halt\n',
     r"the .data bytes end at 0x42, past the 64-byte DRAM of .dram"),
])
def test_assembler_errors_name_line_and_column(text, match):
    with pytest.raises(AsmError, match=match):
        assemble(text)
