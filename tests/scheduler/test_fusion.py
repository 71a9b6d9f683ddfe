"""Fused stacks: simulator == reference bit for bit for stacks of every layer kind, both overlap modes,
odd sizes, strides, dilation, padding, bands that do not divide the output, one and several cores;
hand-derived DRAM bytes and recomputed MACs for a two-layer stack."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.arch import load_arch, with_overrides
from sieve.codegen import generate
from sieve.ir import GraphBuilder, Op, quantize_inputs
from sieve.scheduler import schedule
from sieve.scheduler.fusion import bands, windows
from sieve.simulator import run
from tests.helpers import check_bitexact, quantize, random_calibration, small_arch

KINDS = ("conv", "depthwise", "maxpool", "avgpool", "lut", "residual", "down", "mul")


def _arch(name: str):
    if name == "small":
        return small_arch(scratchpad_bytes=16384)
    if name == "own_path":
        return with_overrides(load_arch("multicore"), {"core.vector_own_path": True})
    return load_arch(name)


def _chain(rng, kinds, n, c, h, w, stride, dil, pad):
    """x -> the layers in ``kinds`` one after another (a residual block: conv, conv, add of the block's
    input; mul: the tensor times a table of itself)."""
    b = GraphBuilder("stack")
    b.input("x", (n, c, h, w))
    cur, i, first = "x", 0, True

    def conv(name, src, k, kernel, s, d, p, groups=1, act="relu"):
        cin = c if groups == 1 else 1
        b.add(name, Op.CONV2D, [src], {"out_channels": k, "kernel": kernel, "stride": s, "pad": p, "dilation": d,
                                       "groups": groups, "act": act},
              {"w": rng.standard_normal((k, cin, kernel, kernel)), "b": rng.standard_normal(k)})
    for kind in kinds:
        i += 1
        name = f"{kind}{i}"
        if kind == "conv":                   # the first with the drawn stride, dilation and padding
            conv(name, cur, c, 3, stride, dil, pad) if first else conv(name, cur, c, 3, 1, 1, 1)
            first = False
        elif kind == "depthwise":
            conv(name, cur, c, 3, 1, dil, dil, groups=c)
        elif kind == "maxpool":
            b.add(name, Op.MAXPOOL, [cur], {"kernel": 2, "stride": 1, "pad": (0, 0, 1, 1)})
        elif kind == "avgpool":
            b.add(name, Op.AVGPOOL, [cur], {"kernel": 3, "stride": 1, "pad": 1})
        elif kind == "lut":
            b.add(name, Op.LUT, [cur], {"fn": "sigmoid"})
        elif kind == "residual":
            conv(name + "a", cur, c, 3, 1, 1, 1)
            conv(name + "b", name + "a", c, 3, 1, 1, 1, act="none")
            b.add(name, Op.ADD, [name + "b", cur], {"act": "relu"})
        elif kind == "down":                # a downsampling residual block: 3x3 and 1x1 convs of one input
            conv(name + "a", cur, c, 3, 2, 1, 1)
            conv(name + "s", cur, c, 1, 2, 1, 0, act="none")
            b.add(name, Op.ADD, [name + "a", name + "s"], {"act": "relu"})
        elif kind == "mul":
            b.add(name + "t", Op.LUT, [cur], {"fn": "tanh"})
            b.add(name, Op.MUL, [cur, name + "t"])
        cur = name
    return b.build([cur])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4), n=st.integers(1, 2), c=st.integers(1, 12),
       h=st.integers(3, 19), w=st.integers(3, 17), stride=st.integers(1, 2), dil=st.integers(1, 2),
       pad=st.integers(0, 2),
       rows=st.one_of(st.none(), st.integers(1, 7), st.tuples(st.integers(1, 7), st.integers(1, 9))),
       mode=st.sampled_from([None, "recompute", "cache"]),
       arch=st.sampled_from(["small", "default", "own_path", "multicore"]),
       seed=st.integers(0, 2**16))
def test_fused_stacks_are_bitexact(kinds, n, c, h, w, stride, dil, pad, rows, mode, arch, seed):
    rng = np.random.default_rng(seed)
    if isinstance(rows, tuple) and mode == "cache":
        mode = "recompute"                   # tiles narrower than a row recompute their overlap
    if dil * 2 + 1 > min(h, w) + 2 * pad:
        dil = 1
    if 3 > min(h, w) + 2 * pad:
        pad = 1
    g = _chain(rng, ["conv"] + kinds, n, c, h, w, stride, dil, pad)
    q = quantize(g, random_calibration(g, rng, 4))
    a = _arch(arch)
    sched = schedule(q, a, fusion="max", tile=rows, overlap=mode)
    stacks = [p for p in sched.layers if p.kind == "stack"]
    assert stacks, [p.kind for p in sched.layers]
    for p in stacks:
        assert p.spad.total <= a.core.scratchpad_bytes
        if mode:
            assert p.stack.mode == mode
    check_bitexact(q, a, random_calibration(g, rng, n), fusion="max", tile=rows, overlap=mode)


def _two_convs(h=20, w=9, c=4, k1=8, k2=4):
    rng = np.random.default_rng(1)
    b = GraphBuilder("two")
    b.input("x", (1, c, h, w))
    b.add("c1", Op.CONV2D, ["x"], {"out_channels": k1, "kernel": 3, "pad": 1, "act": "relu"},
          {"w": rng.standard_normal((k1, c, 3, 3)), "b": rng.standard_normal(k1)})
    b.add("c2", Op.CONV2D, ["c1"], {"out_channels": k2, "kernel": 3, "pad": 1, "act": "relu"},
          {"w": rng.standard_normal((k2, k1, 3, 3)), "b": rng.standard_normal(k2)})
    g = b.build(["c2"])
    return g, quantize(g, random_calibration(g, rng, 4))


@pytest.mark.parametrize("mode", ["recompute", "cache"])
def test_two_layer_stack_counts_by_hand(mode):
    """Bands of R output rows of c2 (3x3, pad 1, stride 1 twice): c1 computes rows [y0 - 1, y0 + R + 1)
    clipped, x is read at rows [y0 - 2, y0 + R + 2) clipped. Recompute loads and computes every band's
    whole window; cache loads each input row once and computes each c1 row once."""
    h, w, c, k1, k2, rows = 20, 9, 4, 8, 4, 3
    g, q = _two_convs(h, w, c, k1, k2)
    arch = load_arch("default")
    sched = schedule(q, arch, fusion="max", tile=rows, overlap=mode)
    plan = sched.plan("c2")
    assert plan.kind == "stack" and plan.stack.nodes == ("c1", "c2") and plan.stack.rows == rows
    x_rows = c1_rows = 0
    x_loads = []                                  # (first row, rows) of x loaded per band
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        lo1, hi1 = max(0, y0 - 1), min(h, y1 + 1)
        lo0, hi0 = max(0, y0 - 2), min(h, y1 + 2)
        if mode == "cache" and y0:
            lo1, lo0 = min(hi1, y0 + 1), min(hi0, y0 + 2)      # only rows not there before
        x_rows += hi0 - lo0
        c1_rows += hi1 - lo1
        x_loads.append((lo0, hi0 - lo0))
    # the windows the scheduler hands to codegen agree
    got = bands(plan.stack, 0, h)
    assert sum(b["x"][1] - b["x"][2] for b in got) == x_rows
    assert sum(b["c1"][1] - b["c1"][2] for b in got) == c1_rows
    assert windows(plan.stack, 6, 9) == {"c2": (6, 9), "c1": (5, 10), "x": (4, 11)}
    recomputed = (c1_rows - h) * w * k1 * 9 * c
    assert plan.stack.recomputed_macs == recomputed
    assert (recomputed > 0) == (mode == "recompute")
    program = generate(sched)
    rng = np.random.default_rng(2)
    x = quantize_inputs(q, random_calibration(g, rng, 1))
    result = run(program, x)
    layer = {s.name: s for s in result.stats.layers}["c2"]
    # DRAM moves whole bursts: a transfer of n bytes from address a touches the bursts of [a, a + n)
    burst = arch.memory.dram_burst_bytes

    def bursts(a: int, n: int) -> int:
        return (-(-(a + n) // burst) - a // burst) * burst if n else 0
    # each layer's weights once (one tile each: they stay), padded to 16 bytes, then int32 bias and float32
    # scale, at a burst-aligned address
    w_bytes = sum(bursts(0, -(-(n * 9 * cc) // 16) * 16 + 8 * n) for n, cc in ((k1, c), (k2, k1)))
    x_at = program.inputs[0].dram_addr
    y_at = program.outputs[0].dram_addr
    assert layer.events["dram_read_bytes"] == sum(bursts(x_at + r * w * c, n * w * c) for r, n in x_loads) + w_bytes
    assert layer.events["dram_write_bytes"] == sum(bursts(y_at + y0 * w * k2, min(rows, h - y0) * w * k2)
                                                   for y0 in range(0, h, rows))
    assert layer.events["dense_macs"] == (c1_rows * w * k1 * 9 * c) + h * w * k2 * 9 * k1
    # the symbol carries the model's MACs (each output once); the run counts the MACs done, halos again
    symbol = next(sym for sym in program.layers if sym.name == "c2")
    assert symbol.macs == h * w * (k1 * 9 * c + k2 * 9 * k1)
    assert layer.macs - symbol.macs == recomputed


def test_unfused_and_fused_programs_agree_and_fused_moves_less():
    g, q = _two_convs(h=32, w=16, c=8, k1=16, k2=8)
    arch = load_arch("default")
    x = quantize_inputs(q, random_calibration(g, np.random.default_rng(3), 1))
    plain = run(generate(schedule(q, arch)), x)
    fused = run(generate(schedule(q, arch, fusion="max")), x)
    for name, v in plain.outputs.items():
        np.testing.assert_array_equal(fused.outputs[name], v)
    dram = lambda r: r.stats.events["dram_read_bytes"] + r.stats.events["dram_write_bytes"]  # noqa: E731
    assert dram(fused) < dram(plain) - 32 * 16 * 16            # c1's output is neither written nor read


@pytest.mark.parametrize("cores", [2, 4])
def test_a_stack_splits_over_cores_by_rows(cores):
    g, q = _two_convs(h=21, w=7)
    arch = with_overrides(load_arch("multicore"), {"cores": cores})
    sched = schedule(q, arch, fusion="max", tile=2)
    plan = sched.plan("c2")
    assert plan.kind == "stack" and len(plan.parts) == cores and plan.partition == "rows"
    check_bitexact(q, arch, random_calibration(g, np.random.default_rng(4), 1), fusion="max", tile=2)


def test_fusion_none_leaves_every_layer_alone_and_bad_names_are_refused():
    g, q = _two_convs()
    arch = load_arch("default")
    assert all(p.kind != "stack" for p in schedule(q, arch, fusion="none").layers)
    from sieve.scheduler import ScheduleError
    with pytest.raises(ScheduleError, match="unknown fusion 'most'"):
        schedule(q, arch, fusion="most")
    with pytest.raises(ScheduleError, match="unknown overlap mode 'keep'"):
        schedule(q, arch, fusion="max", overlap="keep")
    with pytest.raises(ScheduleError, match="--overlap cache keeps rows and takes bands of whole rows"):
        schedule(q, arch, fusion="max", tile=(2, 4), overlap="cache")


def test_a_program_past_the_counters_is_refused_clearly(monkeypatch):
    """Counters count 2^20 steps per core: a program needing more is refused at codegen, not at encoding
    (shown here with counters narrowed to 4 bits)."""
    import sieve.codegen as codegen
    from sieve.codegen import CodegenError
    g, q = _two_convs()
    monkeypatch.setattr(codegen, "VALUE_BITS", 4)
    with pytest.raises(CodegenError, match=r"core 0 needs [\d,]+ steps, more than its counters count \(15\)"):
        generate(schedule(q, load_arch("default"), fusion="max", tile=1))
