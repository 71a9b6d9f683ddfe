"""Sweeps: the spec's errors, points and constraints; one compile per fingerprint; resuming after an
interrupted driver or a killed worker gives exactly the rows of an uninterrupted run; the Dask engine
gives the local pool's rows."""
from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sieve.dse.engine import SweepInterrupted, run_sweep
from sieve.dse.spec import SpecError, load_spec, spec_from_dict
from sieve.dse.store import Store
from sieve.sweeps import build_program, executor_for, prepare_model, sweep

SPACE = {"memory.l2_bytes": [0, 65536], "memory.dram_bytes_per_cycle": [4.0, 16.0], "core.pe_rows": [8, 16]}
VOLATILE = ["host_seconds"]                     # the only column that may differ between two runs


def _spec(**over):
    data = {"models": ["lenet5"], "prune": ["none", 0.5], "space": SPACE}
    data.update(over)
    return spec_from_dict(data)


def _rows(folder) -> pd.DataFrame:
    return Store(folder).points().drop(columns=VOLATILE).sort_values("key").reset_index(drop=True)


@pytest.mark.parametrize("data,message", [
    ({"models": ["lenet5"], "spaec": {}}, "unknown key 'spaec'"),
    ({"models": []}, "at least one model"),
    ({"models": ["no_such_model"]}, "neither a zoo model nor a file"),
    ({"models": ["lenet5"], "space": {"memory.l2_byte": [0]}}, "did you mean 'memory.l2_bytes'"),
    ({"models": ["lenet5"], "space": {"core.pe_rows": [8.5]}}, "is not int"),
    ({"models": ["lenet5"], "space": {"clock_mhz": {"uniform": [500, 1000]}}}, "needs 'samples' > 0"),
    ({"models": ["lenet5"], "space": {"clock_mhz": {"log_uniform": [0, 1000]}}, "samples": 3}, "low > 0"),
    ({"models": ["lenet5"], "constraints": ["core.pe_rowz > 1"]}, "not an arch field"),
    ({"models": ["lenet5"], "constraints": ["__import__('os')"]}, "arithmetic and comparisons only"),
    ({"models": ["lenet5"], "prune": [1.5]}, "prune value"),
    ({"models": ["lenet5"], "partition": ["diagonal"]}, "unknown partition"),
    ({"models": ["lenet5"], "mode": "fast"}, "key 'mode'"),
])
def test_spec_errors_are_one_line_naming_the_key(data, message):
    with pytest.raises(SpecError, match=message) as err:
        spec_from_dict(data, "s.toml")
    assert str(err.value).startswith("s.toml: ") and "\n" not in str(err.value)


def test_spec_file_grid_ranges_constraints_and_random_points(tmp_path):
    (tmp_path / "s.toml").write_text('models = ["lenet5"]\nconstraints = ["cores * core.scratchpad_bytes '
                                     '+ memory.l2_bytes <= 1048576"]\n[space]\ncores = {range = [1, 5, 1]}\n'
                                     '[space.memory]\nl2_bytes = [0, 262144, 524288]\n')
    spec = load_spec(tmp_path / "s.toml")
    points = spec.points()
    # 4 core counts x 3 L2 sizes, minus those over 1 MiB of SRAM (256 KiB scratchpads)
    want = [(c, l2) for c in range(1, 5) for l2 in (0, 262144, 524288) if c * 262144 + l2 <= 1 << 20]
    assert [(p["cores"], p["memory.l2_bytes"]) for p in points] == want
    rnd = _spec(space={"clock_mhz": {"log_uniform": [100, 2000]}, "core.pe_rows": {"choice": [8, 16, 32]}},
                samples=20, seed=4)
    a, b = rnd.points(), rnd.points()
    assert a == b and len(a) == 20 and all(100 <= p["clock_mhz"] <= 2000 for p in a)
    assert {p["core.pe_rows"] for p in a} <= {8, 16, 32}
    with pytest.raises(SpecError, match="not UTF-8"):
        (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
        load_spec(tmp_path / "bad.toml")


def test_one_compile_per_fingerprint(tmp_path):
    """Memory and timing fields only: one binary serves every point."""
    spec = _spec(prune=["none"], space={"memory.l2_bytes": [0, 65536, 131072], "memory.dram_bytes_per_cycle":
                                        [4.0, 16.0], "clock_mhz": [500.0, 1000.0], "core.scratchpad_banks": [2, 8]})
    outcome = run_sweep(spec, tmp_path, prepare_model, build_program)
    assert outcome.ran == 24 and outcome.compiled == 1 and outcome.prepared == 1 and outcome.errors == 0
    assert len(list((tmp_path / "binaries").glob("*.sieve"))) == 1
    rows = Store(tmp_path).points()
    assert rows["fingerprint"].nunique() == 1 and rows["cycles"].nunique() > 1
    # the clock changes time, not cycles
    same = rows.groupby([c for c in rows.columns if c.startswith("memory.") or c == "core.scratchpad_banks"])
    assert all(g["cycles"].nunique() == 1 and g["time_us"].nunique() == 2 for _, g in same)
    # a core shape the stream sees: one compile per shape (and per pruning)
    outcome = run_sweep(_spec(), tmp_path / "b", prepare_model, build_program)
    assert outcome.compiled == 4 and outcome.ran == 16


def test_an_invalid_point_is_an_error_row_and_the_sweep_goes_on(tmp_path):
    spec = _spec(prune=["none"], space={"memory.l2_bytes": [0, 1000, 65536]})   # 1000: not whole sets
    outcome = run_sweep(spec, tmp_path, prepare_model, build_program)
    rows = Store(tmp_path).points()
    bad = rows[rows["error"].notna()]
    assert len(rows) == 3 and len(bad) == 1 and outcome.errors == 1
    assert "memory.l2_bytes" in bad["error"].iloc[0] and bad["memory.l2_bytes"].iloc[0] == 1000
    assert rows[rows["error"].isna()]["cycles"].notna().all()


def test_resuming_after_an_interrupted_driver_gives_the_same_rows(tmp_path):
    spec = _spec()
    run_sweep(spec, tmp_path / "whole", prepare_model, build_program)

    def stop_after(phase, n, total):
        if phase == "simulate" and n == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "cut", prepare_model, build_program, progress=stop_after)
    assert len(Store(tmp_path / "cut").points()) == 5               # what finished was kept
    outcome = run_sweep(spec, tmp_path / "cut", prepare_model, build_program)
    assert outcome.stored_before == 5 and outcome.ran == 11 and outcome.compiled == 0
    pd.testing.assert_frame_equal(_rows(tmp_path / "cut"), _rows(tmp_path / "whole"))
    assert len(Store(tmp_path / "cut").layers()) == len(Store(tmp_path / "whole").layers())


def test_resuming_after_a_killed_worker_gives_the_same_rows(tmp_path):
    spec = _spec()
    run_sweep(spec, tmp_path / "whole", prepare_model, build_program)
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        def kill_one(phase, n, total):
            if phase == "simulate" and n == 3:
                os.kill(next(iter(pool._processes)), signal.SIGKILL)
        with pytest.raises(SweepInterrupted, match="run the sweep again"):
            run_sweep(spec, tmp_path / "cut", prepare_model, build_program, pool, kill_one)
    kept = len(Store(tmp_path / "cut").points())
    assert 3 <= kept < 16
    with executor_for(2) as pool:
        outcome = run_sweep(spec, tmp_path / "cut", prepare_model, build_program, pool)
    assert outcome.ran == 16 - kept
    pd.testing.assert_frame_equal(_rows(tmp_path / "cut"), _rows(tmp_path / "whole"))


def test_dask_local_cluster_gives_the_local_pools_rows(tmp_path):
    pytest.importorskip("distributed")
    a = sweep(SPACE, tmp_path / "pool", models=["lenet5"], prune=[None, 0.5], workers=2)
    b = sweep(SPACE, tmp_path / "dask", models=["lenet5"], prune=[None, 0.5], workers=2, dask="local")
    assert len(a) == 16
    pd.testing.assert_frame_equal(a.drop(columns=VOLATILE), b.drop(columns=VOLATILE))


def test_sweep_command(tmp_path):
    (tmp_path / "s.toml").write_text('models = ["lenet5"]\n[space]\n"memory.l2_bytes" = [0, 65536]\n')
    sieve = str(Path(sys.executable).with_name("sieve"))
    done = subprocess.run([sieve, "sweep", "s.toml", "-o", "res", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 point(s) run" in done.stdout and len(pd.read_parquet(tmp_path / "res" / "points.parquet")) == 2
    again = subprocess.run([sieve, "sweep", "s.toml", "-o", "res", "-q"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert "0 point(s) run, 2 already stored" in again.stdout
    (tmp_path / "bad.toml").write_text('models = ["lenet5"]\n[space]\n"memory.l2_byte" = [0]\n')
    bad = subprocess.run([sieve, "sweep", "bad.toml", "-o", "res2"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "memory.l2_bytes" in bad.stderr
    assert not (tmp_path / "res2").exists()


def test_constraints_on_area_and_sram():
    spec = _spec(space={"core.pe_rows": [8, 16, 32, 64], "core.scratchpad_bytes": [65536, 262144]},
                 constraints=["area_mm2 <= 1.2", "sram_bytes >= 131072"])
    points = spec.points()
    assert points and all(spec.arch.__class__ is not None for _ in points)
    from sieve.dse.spec import point_arch
    for p in points:
        a = point_arch(spec, p)
        assert a.area_mm2()["total"] <= 1.2 and a.core.scratchpad_bytes + a.core.accumulator_bytes >= 131072
    every = _spec(space={"core.pe_rows": [8, 16, 32, 64], "core.scratchpad_bytes": [65536, 262144]}).points()
    assert len(points) < len(every)


def test_study_table_has_a_row_per_core_count_and_split(tmp_path):
    from sieve.dse import study
    assert study.parse_bytes("4MiB") == 4 << 20 and study.parse_bytes("512KiB") == 512 << 10
    with pytest.raises(ValueError):
        study.parse_bytes("lots")
    budget, cores = 512 << 10, [1, 2, 4]
    spec = study.study_spec("lenet5", budget, cores)
    run_sweep(spec, tmp_path, prepare_model, build_program)
    store = Store(tmp_path)
    t, text = study.write(store.points(), store.layers(), "lenet5", budget, tmp_path)
    want = [(n, s // 1024, l2 // 1024) for n in cores for s, l2 in study.splits(budget, n)]
    assert sorted(zip(t["cores"], t["scratchpad_kib"], t["l2_kib"])) == sorted(want)
    assert list(t.drop(columns=["key"]).columns) == study.COLUMNS
    assert (t["cores"] * t["scratchpad_kib"] + t["l2_kib"] == budget // 1024).all()
    assert t.groupby("cores")["best"].sum().ge(1).all()
    for n in cores:
        assert f"**{n} core" in text
    assert (tmp_path / "heatmap.png").stat().st_size > 1000 and (tmp_path / "table.csv").is_file()
    # LeNet's convolutions and poolings run as one fused stack (--fusion auto, the default)
    assert set(store.layers()["class"]) >= {"fused stack", "fc"}


def test_a_failing_compile_is_recorded_for_its_points_and_the_rest_run(tmp_path):
    def build(graph, arch, partition):
        if arch.core.pe_rows == 8:
            raise RuntimeError("no tile fits (injected)")
        return build_program(graph, arch, partition)
    outcome = run_sweep(_spec(prune=["none"]), tmp_path, prepare_model, build)
    rows = Store(tmp_path).points()
    failed = rows[rows["core.pe_rows"] == 8]
    assert len(rows) == 8 and outcome.errors == 4 and outcome.compiled == 1
    assert failed["error"].str.contains("no tile fits").all()
    assert rows[rows["core.pe_rows"] == 16]["error"].isna().all()


def test_bitexact_mode_gives_the_timing_modes_cycles(tmp_path):
    timing = run_sweep(_spec(prune=["none"]), tmp_path / "t", prepare_model, build_program)
    exact = run_sweep(_spec(prune=["none"], mode="bitexact"), tmp_path / "b", prepare_model, build_program)
    assert timing.ran == exact.ran == 8
    a, b = Store(tmp_path / "t").points(), Store(tmp_path / "b").points()
    assert (a["cycles"].to_numpy() == b["cycles"].to_numpy()).all() and b["error"].isna().all()
    assert set(a["key"]).isdisjoint(b["key"])               # the mode is part of a point's identity


@pytest.mark.parametrize("args,message", [
    (["--sram-budget", "lots"], "'lots' is not a size"),
    (["--sram-budget", "64KiB", "--cores", "1,2"], "does not give each of 2 cores a 64 KiB scratchpad"),
    (["--sram-budget", "1MiB", "--cores", "1,x"], "is not a list of core counts"),
    (["--sram-budget", "1MiB", "--cores", "0,2"], "core counts must be positive"),
])
def test_study_command_errors_are_one_line_and_write_nothing(tmp_path, args, message):
    sieve = str(Path(sys.executable).with_name("sieve"))
    done = subprocess.run([sieve, "study", "sp-vs-l2", "--model", "lenet5", "-o", "st"] + args, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 1 and message in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "st").exists()


def test_new_calibration_data_is_not_served_from_the_cache(tmp_path):
    import numpy as np
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32))
    spec = {"models": ["mlp"], "calibrate": str(calib), "space": {"memory.l2_bytes": [0]}}
    run_sweep(spec_from_dict(spec), tmp_path / "r", prepare_model, build_program)
    np.save(calib, 5 * np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32))
    outcome = run_sweep(spec_from_dict(spec), tmp_path / "r", prepare_model, build_program)
    assert outcome.ran == 1 and outcome.prepared == 1 and outcome.compiled == 1     # a new point, prepared again
    rows = Store(tmp_path / "r").points()
    assert len(rows) == 2 and rows["key"].nunique() == 2


def test_a_numeric_column_missing_in_one_part_reads_back_as_numbers(tmp_path):
    """Points stored in two parts, the first without an L2 (hit rate missing), read back as one float
    column whichever points landed in which part (a resumed sweep equals a whole one)."""
    store = Store(tmp_path)
    store.append([{"key": "a", "point": 0, "l2_hit_rate": None}], [])
    store.append([{"key": "b", "point": 1, "l2_hit_rate": 0.25}], [])
    col = store.points()["l2_hit_rate"]
    assert col.dtype == "float64" and col.isna().tolist() == [True, False] and col[1] == 0.25
