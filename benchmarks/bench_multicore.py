"""ResNet-50 at 224x224 on several cores and a shared L2, and the vector unit's own path.

1. Scaling: 1, 2, 4, 8, 16 default cores with a DRAM channel that does not bind (1024 B/cycle),
   each compiled for its core count (partition auto): cycles and speedup over one core. Target: 16
   cores >= 10x.
2. The L2 at 16 cores (`cores16`, default DRAM 16 B/cycle): the binary compiled for the 4 MiB L2, run
   with L2 sizes 0 to 8 MiB (`run --arch`, no recompile): DRAM bytes, hit rate, cycles. Target: 4 MiB cuts
   DRAM bytes >= 2x against no L2. The same with each binary compiled for its own L2 size is reported too.
3. The vector unit with its own path (`core.vector_own_path`) against one shared compute path, one
   core, ResNet-50 and MobileNetV2, at the default DRAM and at 1024 B/cycle: cycles.
4. A pipeline of layers against splitting each layer: ResNet-18 at 224x224 with 4 and 16 images on
   `multicore` (4 cores, 1 MiB L2), partitions auto, batch and pipeline: cycles.
5. Speed from the command line (process start included, median of 5, interleaved): `sieve run
   --timing-only` and bit-exact on `cores16` (targets 2 s and 5 s), and the single-core commands of
   bench_resnet50 on `default` for comparison with the figures before the memory system.

Writes multicore.json and multicore.md.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import SIEVE, out_dir, timed

REPEAT = 5
MIB = 1 << 20


def _scaling(model: Path, calib: np.ndarray) -> list[dict]:
    from sieve.arch import load_arch, with_overrides
    from sieve.pipeline import compile_model
    from sieve.simulator import run
    rows = []
    for cores in (1, 2, 4, 8, 16):
        arch = with_overrides(load_arch("default"), {"name": f"{cores} cores, wide DRAM", "cores": cores,
                                                     "memory.dram_bytes_per_cycle": 1024.0})
        c = compile_model(model, arch, calibrate=calib, dense_twin=False)
        stats = run(c.program, functional=False).stats
        rows.append({"cores": cores, "cycles": stats.cycles, "utilization": stats.utilization,
                     "partitions": sorted({layer.partition for layer in stats.layers}),
                     "dram_bytes": stats.events["dram_read_bytes"] + stats.events["dram_write_bytes"]})
        rows[-1]["speedup"] = rows[0]["cycles"] / stats.cycles
        print(rows[-1], flush=True)
    return rows


def _l2_sweep(model: Path, calib: np.ndarray) -> list[dict]:
    from sieve.arch import load_arch, with_overrides
    from sieve.pipeline import compile_model
    from sieve.simulator import run
    arch = load_arch("cores16")
    fixed = compile_model(model, arch, calibrate=calib, dense_twin=False).program
    rows = []
    for size in (0, MIB // 2, MIB, 2 * MIB, 4 * MIB, 8 * MIB):
        other = with_overrides(arch, {"memory.l2_bytes": size})
        s = run(replace(fixed, arch=other), functional=False).stats
        own = run(compile_model(model, other, calibrate=calib, dense_twin=False).program, functional=False).stats
        row = {"l2_bytes": size, "cycles": s.cycles, "dram_bytes": s.events["dram_read_bytes"] + s.events[
            "dram_write_bytes"], "hit_rate": s.memory["l2"]["hit_rate"] if s.memory["l2"] else None,
            "energy_uj": s.energy_total_pj / 1e6, "own_plan_cycles": own.cycles,
            "own_plan_dram_bytes": own.events["dram_read_bytes"] + own.events["dram_write_bytes"]}
        rows.append(row)
        print(row, flush=True)
    return rows


def _vector_path(models: dict[str, Path], calib: np.ndarray) -> list[dict]:
    from sieve.arch import load_arch, with_overrides
    from sieve.pipeline import compile_model
    from sieve.simulator import run
    rows = []
    for name, model in models.items():
        for dram in (16.0, 1024.0):
            row = {"model": name, "dram_bytes_per_cycle": dram}
            for own in (False, True):
                arch = with_overrides(load_arch("default"), {"core.vector_own_path": own,
                                                             "memory.dram_bytes_per_cycle": dram})
                c = compile_model(model, arch, calibrate=calib, dense_twin=False)
                row["own" if own else "shared"] = run(c.program, functional=False).stats.cycles
            row["gain"] = row["shared"] / row["own"]
            rows.append(row)
            print(row, flush=True)
    return rows


def _pipeline(tmp: Path) -> list[dict]:
    import onnx

    from sieve.arch import load_arch
    from sieve.pipeline import compile_model
    from sieve.simulator import run
    subprocess.run([SIEVE, "zoo", "export", "resnet18", "-o", "resnet18.onnx"], cwd=tmp, check=True,
                   capture_output=True)
    model = onnx.load(tmp / "resnet18.onnx")                 # a dynamic batch, so that --batch applies
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "N"
    rows, arch = [], load_arch("multicore")
    calib = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    for images in (4, 16):
        row = {"model": "resnet18", "images": images}
        for partition in ("auto", "batch", "pipeline"):
            c = compile_model(model, arch, calibrate=calib, dense_twin=False, partition=partition, batch=images)
            row[partition] = run(c.program, functional=False).stats.cycles
        rows.append(row)
        print(row, flush=True)
    return rows


def _speed(tmp: Path) -> dict:
    for arch, out in (("cores16", "r50c16.sieve"), ("default", "r50.sieve")):
        subprocess.run([SIEVE, "compile", "resnet50.onnx", "--arch", arch, "--calibrate", "calib.npy", "-o", out,
                        "-q"], cwd=tmp, check=True, capture_output=True)
    commands = {
        "cores16 run --timing-only": ["run", "r50c16.sieve", "--timing-only", "-q"],
        "cores16 run bit-exact": ["run", "r50c16.sieve", "--input", "x.npy", "--output", "o16.npz", "-q"],
        "default compile": ["compile", "resnet50.onnx", "--calibrate", "calib.npy", "-o", "again.sieve", "-q"],
        "default run --timing-only": ["run", "r50.sieve", "--timing-only", "-q"],
        "default run bit-exact": ["run", "r50.sieve", "--input", "x.npy", "--output", "o1.npz", "-q"],
    }
    times = {k: [] for k in commands}
    for rep in range(REPEAT + 1):                       # run 0 warms the caches (numba's included)
        for key, argv in commands.items():
            elapsed = timed(argv, tmp)
            if rep:
                times[key].append(elapsed)
    a, b = np.load(tmp / "o16.npz"), np.load(tmp / "o1.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files), "16 cores and 1 core differ"
    return {k: {"median_s": statistics.median(v), "runs": v} for k, v in times.items()}


def _markdown(report: dict) -> str:
    lines = ["## ResNet-50 224x224 on several cores", "",
             "Scaling, DRAM at 1024 B/cycle (does not bind), each binary compiled for its core count:", "",
             "| cores | cycles | speedup | MAC utilization | DRAM MB | partitions used |", "|---:|---:|---:|---:|---:|---|"]
    for r in report["scaling"]:
        lines.append(f"| {r['cores']} | {r['cycles']:,} | {r['speedup']:.2f}x | {100 * r['utilization']:.1f} % | "
                     f"{r['dram_bytes'] / 1e6:,.1f} | {', '.join(r['partitions'])} |")
    lines += ["", "The L2 at 16 cores (`cores16`, DRAM 16 B/cycle); the binary compiled for 4 MiB, run on each "
              "size (and each size's own plan):", "",
              "| L2 | DRAM MB | vs no L2 | hit rate | cycles | uJ | own plan: cycles | own plan: DRAM MB |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    none = report["l2"][0]["dram_bytes"]
    for r in report["l2"]:
        hit = "-" if r["hit_rate"] is None else f"{100 * r['hit_rate']:.1f} %"
        lines.append(f"| {r['l2_bytes'] / MIB:g} MiB | {r['dram_bytes'] / 1e6:,.1f} | {none / r['dram_bytes']:.2f}x | "
                     f"{hit} | {r['cycles']:,} | {r['energy_uj']:,.0f} | {r['own_plan_cycles']:,} | "
                     f"{r['own_plan_dram_bytes'] / 1e6:,.1f} |")
    lines += ["", "The vector unit with its own path (`core.vector_own_path = true`) against one shared compute "
              "path, one core:", "", "| model | DRAM B/cycle | shared path: cycles | own path: cycles | gain |",
              "|---|---:|---:|---:|---:|"]
    for r in report["vector"]:
        lines.append(f"| {r['model']} | {r['dram_bytes_per_cycle']:g} | {r['shared']:,} | {r['own']:,} | "
                     f"{r['gain']:.3f}x |")
    lines += ["", "Consecutive layers on different cores (`--partition pipeline`) against splitting each layer "
              "(`multicore`, 4 cores, 1 MiB L2, default DRAM):", "",
              "| model | images | auto: cycles | batch: cycles | pipeline: cycles |", "|---|---:|---:|---:|---:|"]
    for r in report["pipeline"]:
        lines.append(f"| {r['model']} 224x224 | {r['images']} | {r['auto']:,} | {r['batch']:,} | {r['pipeline']:,} |")
    lines += ["", f"From the command line (process start included; median of {REPEAT}, {report['cpus']} CPUs, "
              "default threads):", "", "| command | median | runs |", "|---|---:|---|"]
    for k, v in report["speed"].items():
        lines.append(f"| `{k}` | {v['median_s']:.2f} s | {', '.join(f'{x:.2f}' for x in v['runs'])} |")
    return "\n".join(lines) + "\n"


def main() -> dict:
    tmp = Path(tempfile.mkdtemp())
    for name in ("resnet50", "mobilenetv2"):
        subprocess.run([SIEVE, "zoo", "export", name, "-o", f"{name}.onnx"], cwd=tmp, check=True,
                       capture_output=True)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, 224, 224)).astype(np.float32)
    np.save(tmp / "calib.npy", calib)
    np.save(tmp / "x.npy", rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
    report = {"model": "resnet50 224x224", "cpus": os.cpu_count(),
              "scaling": _scaling(tmp / "resnet50.onnx", calib), "l2": _l2_sweep(tmp / "resnet50.onnx", calib),
              "vector": _vector_path({m: tmp / f"{m}.onnx" for m in ("resnet50", "mobilenetv2")}, calib),
              "pipeline": _pipeline(tmp),
              "speed": _speed(tmp)}
    out = out_dir()
    (out / "multicore.json").write_text(json.dumps(report, indent=1))
    (out / "multicore.md").write_text(_markdown(report))
    print(_markdown(report))
    return report


if __name__ == "__main__":
    main()
