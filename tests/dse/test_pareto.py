"""Pareto extraction against a brute-force check, and the pareto command on a real sweep."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sieve.dse.pareto import pareto_mask


def _brute(v: np.ndarray) -> np.ndarray:
    keep = []
    for i in range(len(v)):
        if np.isnan(v[i]).any():
            keep.append(False)
            continue
        dominated = any(not np.isnan(v[j]).any() and (v[j] <= v[i]).all() and (v[j] < v[i]).any()
                        for j in range(len(v)) if j != i)
        keep.append(not dominated)
    return np.array(keep, bool)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 3)),
              elements=st.one_of(st.integers(0, 5).map(float), st.just(np.nan))))
def test_pareto_mask_equals_brute_force(values):
    np.testing.assert_array_equal(pareto_mask(values), _brute(values))


def test_pareto_known_front():
    v = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5]], float)
    assert pareto_mask(v).tolist() == [True, True, False, True, True, False]


def test_pareto_command_on_a_sweep(tmp_path):
    (tmp_path / "s.toml").write_text('models = ["lenet5"]\n[space]\ncore.pe_rows = [4, 8, 16]\n'
                                     '"memory.dram_bytes_per_cycle" = [2.0, 8.0, 32.0]\n')
    sieve = str(Path(sys.executable).with_name("sieve"))
    run = subprocess.run([sieve, "sweep", "s.toml", "-o", "res", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    done = subprocess.run([sieve, "pareto", "res", "--x", "area_mm2", "--y", "latency_ms", "--z", "energy_mj",
                           "-o", "front.png", "--csv", "front.csv"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "front.png").stat().st_size > 1000
    import pandas as pd
    front, every = pd.read_csv(tmp_path / "front.csv"), pd.read_parquet(tmp_path / "res" / "points.parquet")
    want = pareto_mask(every[["area_mm2", "latency_ms", "energy_mj"]].to_numpy())
    assert len(front) == want.sum() and 0 < len(front) < len(every)
    bad = subprocess.run([sieve, "pareto", "res", "--x", "area", "--y", "latency_ms"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "'area' is not a numeric column" in bad.stderr


def test_plot_command_and_every_point_under_its_roof(tmp_path):
    (tmp_path / "s.toml").write_text('models = ["lenet5"]\n[space]\ncore.pe_rows = [8, 16]\ncores = [1, 2]\n'
                                     '"memory.dram_bytes_per_cycle" = [2.0, 64.0]\n"memory.l2_bytes" = [0, 65536]\n')
    sieve = str(Path(sys.executable).with_name("sieve"))
    assert subprocess.run([sieve, "sweep", "s.toml", "-o", "res", "-q"], cwd=tmp_path).returncode == 0
    import pandas as pd
    rows = pd.read_parquet(tmp_path / "res" / "points.parquet")
    # no point beats its roofline: MACs per cycle <= min(peak, DRAM bytes per cycle x MACs per DRAM byte)
    assert (rows["macs"] / rows["cycles"] <= rows["peak_macs_per_cycle"]).all()
    assert (rows["dram_bytes"] / rows["cycles"] <= rows["dram_bytes_per_cycle"] * (1 + 1e-9)).all()
    for kind in ("layers", "roofline"):
        done = subprocess.run([sieve, "plot", "res", "--kind", kind, "-o", f"{kind}.png"] +
                              (["--points", "0,1,5"] if kind == "layers" else []),
                              cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / f"{kind}.png").stat().st_size > 1000
    bad = subprocess.run([sieve, "plot", "res", "--points", "99", "-o", "x.png"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "no successful point numbered 99" in bad.stderr
