"""Zero-value compression in DMA: sizes from the data in a bit-exact run, from the binary's estimate in a
timing-only run; hand-derived traffic; compiled models stay bit-exact and move fewer DRAM bytes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve import api
from sieve.arch import Instruction, Opcode, Program, load_arch, with_overrides
from sieve.arch.binary import decode_program, encode_program
from sieve.codegen import assemble, disassemble
from sieve.frontend.zoo import build
from sieve.ir import GraphBuilder, Op
from sieve.pipeline import compile_model
from sieve.simulator import run

BASE = load_arch("default")
BURST = BASE.memory.dram_burst_bytes


def _program(data: bytes, *code) -> Program:
    return Program(BASE, (tuple(code) + (Instruction.make(Opcode.HALT),),), data, 1 << 20, (), ())


def _transfer(op, rows, row_bytes, zvc=1, zero=0, density=255, addr=0):
    return Instruction.make(op, dram_addr=addr, spad_addr=0, rows=rows, row_bytes=row_bytes, dram_stride=row_bytes,
                            spad_stride=row_bytes, zvc=zvc, zvc_zero=zero, zvc_density=density)


def _cdiv(a, b):
    return -(-a // b)


@pytest.mark.parametrize("zero", [0, -128])
def test_a_compressed_load_moves_its_mask_and_nonzero_bytes(zero):
    rows, row_bytes, nnz = 4, 256, 100
    data = np.full(rows * row_bytes, zero, np.int8)
    data[np.random.default_rng(0).choice(data.size, nnz, replace=False)] = 5
    p = _program(data.tobytes(), _transfer(Opcode.LOAD, rows, row_bytes, zero=zero, density=128))
    exact = run(p, {})
    per_row = _cdiv(row_bytes, 8) + _cdiv(nnz, rows)                  # mask + the row's share of nonzeros
    assert exact.stats.memory["zvc"] == {"raw_bytes": rows * row_bytes, "moved_bytes": rows * per_row,
                                         "sizes": "measured"}
    assert exact.stats.events["dram_read_bytes"] == rows * _cdiv(per_row, BURST) * BURST
    timing = run(p, functional=False)
    est = _cdiv(128 * rows * row_bytes, 255)                           # the density field, rounded up
    per_row_est = _cdiv(row_bytes, 8) + _cdiv(est, rows)
    assert timing.stats.memory["zvc"] == {"raw_bytes": rows * row_bytes, "moved_bytes": rows * per_row_est,
                                          "sizes": "estimated"}
    assert timing.stats.events["dram_read_bytes"] == rows * _cdiv(per_row_est, BURST) * BURST
    plain = run(_program(data.tobytes(), _transfer(Opcode.LOAD, rows, row_bytes, zvc=0)), {})
    assert plain.stats.memory["zvc"] is None
    assert plain.stats.events["dram_read_bytes"] == rows * row_bytes
    # DRAM energy follows the bytes
    pj = BASE.energy.dram_pj_per_byte
    assert exact.stats.energy_pj["dram"] == pytest.approx(pj * exact.stats.events["dram_read_bytes"])


def test_a_compressed_store_counts_what_it_writes():
    # load 512 bytes, 3 of them nonzero, and store them compressed elsewhere
    data = np.zeros(512, np.int8)
    data[[1, 100, 400]] = [1, -1, 7]
    load = _transfer(Opcode.LOAD, 1, 512, zvc=0).with_signal(1)
    store = Instruction.make(Opcode.STORE, waits=((1, 1),), dram_addr=4096, spad_addr=0, rows=1, row_bytes=512,
                             dram_stride=0, spad_stride=0, zvc=1, zvc_zero=0, zvc_density=255)
    r = run(_program(data.tobytes(), load, store), {})
    assert r.outputs == {}
    assert r.stats.memory["zvc"]["moved_bytes"] == 512 // 8 + 3
    assert r.stats.events["dram_write_bytes"] == _cdiv(512 // 8 + 3, BURST) * BURST


def test_the_fields_survive_the_binary_and_the_assembler():
    p = _program(bytes(64), _transfer(Opcode.LOAD, 2, 32, zero=-128, density=77))
    back = decode_program(encode_program(p), "t")
    ins = back.streams[0][0]
    assert (ins.zvc, ins.zvc_zero, ins.zvc_density) == (1, -128, 77)
    again = assemble(disassemble(p)).streams[0][0]
    assert (again.zvc, again.zvc_zero, again.zvc_density) == (1, -128, 77)


def _convs(c, k, hw):
    """Three convolutions, the first two with ReLU (the second biased below zero: many zeros)."""
    rng = np.random.default_rng(c * 100 + k)
    b = GraphBuilder("zvc")
    b.input("x", (1, c, hw, hw))
    for name, src, cin, cout, kernel, bias, act in (("c1", "x", c, k, 3, 0.0, "relu"), ("c2", "c1", k, k, 3, -0.5, "relu"),
                                                      ("c3", "c2", k, 4, 1, 0.0, "none")):
        b.add(name, Op.CONV2D, [src], {"out_channels": cout, "kernel": kernel, "pad": kernel // 2, "act": act},
              params={"w": rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32) * 0.3,
                      "b": np.full(cout, bias, np.float32)})
    return b.build(["c3"])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 8), k=st.integers(2, 24), hw=st.integers(4, 14), cores=st.sampled_from([1, 2]),
       prune=st.sampled_from([None, 0.6]), seed=st.integers(0, 2 ** 16))
def test_compressed_models_stay_bitexact_and_move_fewer_activation_bytes(c, k, hw, cores, prune, seed):
    g = _convs(c, k, hw)
    arch = with_overrides(BASE, {"cores": cores})
    cal = np.random.default_rng(seed).standard_normal((4, c, hw, hw)).astype(np.float32)
    plain = compile_model(g, arch, calibrate=cal, prune=prune, dense_twin=False)
    zvc = compile_model(g, arch, calibrate=cal, prune=prune, dense_twin=False, compress_activations="zvc",
                        compress_weights="zvc")
    a, b = api.simulate(plain.program, cal[:1]), api.simulate(zvc.program, cal[:1])
    for name in a.outputs:
        np.testing.assert_array_equal(a.outputs[name], b.outputs[name])
    marked = [i for s in zvc.program.streams for i in s if i.opcode in (Opcode.LOAD, Opcode.STORE) and i.zvc]
    if b.stats.memory["zvc"] is not None:
        z = b.stats.memory["zvc"]
        assert z["sizes"] == "measured" and marked
        # each marked transfer moves its mask plus its nonzero bytes
        assert z["moved_bytes"] <= z["raw_bytes"] * 9 // 8 + sum(i.rows for i in marked)
    else:
        assert not marked


def test_resnet18_activations_after_relu_compress():
    g = build("resnet18", size=32, classes=10)
    cal = np.random.default_rng(0).standard_normal((2,) + g.inputs[0].out.shape[1:]).astype(np.float32)
    # layer by layer: with fusion, compression can change which stacks pay, and so what is compared
    plain = compile_model(g, "default", calibrate=cal, dense_twin=False, fusion="none")
    zvc = compile_model(g, "default", calibrate=cal, dense_twin=False, fusion="none", compress_activations="zvc")
    a, b = api.simulate(plain.program, cal[:1]), api.simulate(zvc.program, cal[:1])
    for name in a.outputs:
        np.testing.assert_array_equal(a.outputs[name], b.outputs[name])
    z = b.stats.memory["zvc"]
    assert z["sizes"] == "measured" and z["moved_bytes"] < 0.8 * z["raw_bytes"]
    dram = lambda r: r.stats.events["dram_read_bytes"] + r.stats.events["dram_write_bytes"]   # noqa: E731
    assert dram(b) < dram(a)
    assert b.stats.energy_pj["dram"] < a.stats.energy_pj["dram"]
    t = api.simulate(zvc.program, timing_only=True)
    assert t.stats.memory["zvc"]["sizes"] == "estimated"
    # the estimate is the first calibration input's density: the run on that input measures the same
    # tensors, so the two agree closely
    assert t.stats.memory["zvc"]["moved_bytes"] == pytest.approx(z["moved_bytes"], rel=0.02)
