"""INT4 weights (docs/low-bit.md): the int4 grid and its clipping, the packed layouts, and the simulator
bit-exact with the reference on int4 dense, unstructured and N:M tiles, with and without scale groups."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.arch import load_arch
from sieve.arch.config import with_overrides
from sieve.arch.formats import DENSE, NM, UNSTRUCTURED, WeightFormat, tile_layout
from sieve.errors import UsageError
from sieve.frontend.zoo import build
from sieve.ir import GraphBuilder, Op
from sieve.ir.passes.lowbit import int4_grid
from sieve.pipeline import integer_model
from sieve.scheduler import schedule
from sieve.scheduler.packing import pack, unpack
from tests.helpers import check_bitexact, random_calibration


def _err(w, w4, step, mult, group):
    scale = step[:, None, None] * (np.repeat(mult, group, axis=1)[:, None, :w.shape[2]] if mult is not None else 1)
    return float(((w - w4 * scale) ** 2).sum())


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 6), taps=st.sampled_from([1, 9]), c=st.integers(1, 40), group=st.sampled_from([0, 2, 4, 8]),
       seed=st.integers(0, 2 ** 16))
def test_int4_grid_values_multipliers_and_mse_clipping(k, taps, c, group, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, taps, c)) * rng.uniform(0.01, 3, (k, 1, 1))
    w[rng.random(w.shape) < 0.2] = 0
    w4, step, mult = int4_grid(w, group, "mse")
    assert w4.min() >= -8 and w4.max() <= 7 and (step >= 0).all()
    if group and group < c:
        assert mult.shape == (k, -(-c // group)) and mult.min() >= 1 and mult.max() <= 15
    else:
        assert mult is None
        # per channel, MSE's search includes the min-max range: it never does worse
        w4m, stepm, _ = int4_grid(w, 0, "minmax")
        assert _err(w, w4, step, None, 0) <= _err(w, w4m, stepm, None, 0) * (1 + 1e-12)
    assert w4[w == 0].max(initial=0) == 0 and w4[w == 0].min(initial=0) == 0      # zeros stay zeros


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 20), r=st.integers(1, 70), kind=st.sampled_from([DENSE, UNSTRUCTURED, NM]),
       bits=st.sampled_from([4, 8]), m=st.sampled_from([4, 8, 16]), density=st.floats(0, 1), seed=st.integers(0, 99))
def test_packed_tiles_unpack_to_what_they_hold(k, r, kind, bits, m, density, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-8, 7) if bits == 4 else (-127, 127)
    w = rng.integers(lo, hi + 1, (k, r)) * (rng.random((k, r)) < density)
    if kind == NM:                                           # keep at most n of every m
        n = m // 2
        blocks = np.pad(w, ((0, 0), (0, (-r) % m))).reshape(k, -1, m)
        blocks[:, :, n:] = 0
        w = blocks.reshape(k, -1)[:, :r]
        fmt = WeightFormat(NM, bits, (n, m))
    else:
        fmt = WeightFormat(kind, bits)
    lanes = 32 if bits == 4 else 16
    t = pack(w, fmt, lanes, 4)
    np.testing.assert_array_equal(unpack(t.blob, t.fmt, k, r, lanes), w)
    count, head, meta_at, mult_at, end = tile_layout(fmt.code, k, r, t.groups * lanes, *fmt.nm, 0)
    assert end == len(t.blob)                                  # the one layout table agrees with the packer
    if kind == DENSE:
        assert len(t.blob) == -(-k * r * bits // 8)


def test_int4_with_groups_packs_the_multipliers():
    w = np.array([[2, -3, 4, 6], [1, 1, 0, 7]])             # int4 values
    q = np.array([[3, 5], [1, 15]], np.uint8)               # one multiplier per 2 channels
    t = pack(w, WeightFormat(DENSE, 4, group=2), 32, 4, multipliers=q)
    assert len(t.blob) == 4 + 4 and t.blob[-4:] == bytes([3, 5, 1, 15]) and t.fields()["w_group"] == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 40), k=st.integers(1, 40), hw=st.integers(3, 9), kernel=st.sampled_from([1, 3]),
       group=st.sampled_from([0, 2, 4, 16]), prune=st.sampled_from([None, "0.7", "2:4", "1:8"]),
       fmt=st.sampled_from([DENSE, UNSTRUCTURED, NM]), rate=st.sampled_from([1, 2, 4]), cores=st.sampled_from([1, 2]),
       seed=st.integers(0, 2 ** 16))
def test_int4_conv_dense_bitexact_over_shapes(c, k, hw, kernel, group, prune, fmt, rate, cores, seed):
    """Random conv + dense layers over channels, kernels, scale groups, sparsity patterns, the int4 rate
    and core counts."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("int4")
    b.input("x", (1, c, hw, hw))
    b.add("conv", Op.CONV2D, ["x"], {"out_channels": k, "kernel": kernel, "pad": kernel // 2, "act": "relu"},
          params={"w": rng.standard_normal((k, c, kernel, kernel)).astype(np.float32),
                  "b": rng.standard_normal(k).astype(np.float32)})
    b.add("flat", Op.FLATTEN, ["conv"])
    b.add("fc", Op.DENSE, ["flat"], {"out_features": 10}, params={"w": rng.standard_normal((10, k * hw * hw)).astype(np.float32),
                                             "b": rng.standard_normal(10).astype(np.float32)})
    g = b.build(["fc"])
    q = integer_model(g, calibrate=random_calibration(g, rng, 4), prune=prune, weights="int4", group=group).qgraph
    arch = with_overrides(load_arch("multicore" if cores == 2 else "default"),
                          {"core.int4_macs_per_lane": rate, "cores": cores})
    check_bitexact(q, arch, random_calibration(g, rng, 1), formats=(fmt,))


def test_int4_options_are_checked():
    g = build("lenet5")
    with pytest.raises(UsageError, match="a scale group .* is for int4 weights"):
        integer_model(g, group=8)
    with pytest.raises(UsageError, match="a power of two"):
        integer_model(g, weights="int4", group=12)
    with pytest.raises(UsageError, match="weights are int8 or int4"):
        integer_model(g, weights="int2")


def test_int4_halves_weight_bytes_and_prices_int4_macs():
    """Dense int4 against int8 on the same model: half the weight bytes in DRAM, the MACs at the int4 rate
    and energy (arch.core.int4_macs_per_lane, energy.mac_int4_pj)."""
    from sieve.codegen import generate
    from sieve.simulator import run
    g = build("lenet5")
    rng = np.random.default_rng(1)
    cal = random_calibration(g, rng, 4)
    arch = load_arch("default")
    stats = {}
    for w in ("int8", "int4"):
        q = integer_model(g, calibrate=cal, weights=w).qgraph
        stats[w] = run(generate(schedule(q, arch, sparse=False)), functional=False).stats
    e8, e4 = stats["int8"].events, stats["int4"].events
    assert e4["int4_macs"] == e4["macs"] == e8["macs"] and e8["int4_macs"] == 0
    assert stats["int4"].energy_pj["mac"] == pytest.approx(e4["macs"] * arch.energy.mac_int4_pj)
    busy = {w: sum(layer.mac_cycles for layer in s.layers) for w, s in stats.items()}
    assert busy["int4"] < busy["int8"]


def test_cli_int4_eval_and_objective(tmp_path, capsys):
    """`sieve compile --weights int4 --group 4 --objective energy --eval`: the int8-weight and int4 columns
    side by side, and the three objectives' estimates."""
    from sieve.cli import main
    rng = np.random.default_rng(0)
    assert main(["zoo", "export", "lenet5", "-o", str(tmp_path / "l.sv")]) == 0
    np.savez(tmp_path / "eval.npz", x=rng.standard_normal((6, 1, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 6))
    capsys.readouterr()
    assert main(["compile", str(tmp_path / "l.sv"), "--weights", "int4", "--group", "4", "--objective", "energy",
                 "--eval", str(tmp_path / "eval.npz"), "-v", "-o", str(tmp_path / "l.sieve")]) == 0
    out = capsys.readouterr().out
    assert "int8 weights (reference)" in out and "int4 g4 (reference)" in out and "int4 g4 compiled" in out
    assert "--objective cycles:" in out and "--objective energy:" in out and "--objective edp:" in out
    assert main(["compile", str(tmp_path / "l.sv"), "--group", "4", "-o", str(tmp_path / "x.sieve")]) == 1
    assert "a scale group (--group) is for int4 weights" in capsys.readouterr().err
    assert not (tmp_path / "x.sieve").exists()
