"""Baseline performance of the walking skeleton.

1. LeNet-5: host wall time of every stage, text model to simulated outputs.
2. A 512x512x512 dense matmul layer (batch 512, 512 -> 512): simulated MACs per
   host second, bit-exact and timing-only, and simulated cycles against the
   roofline max(MACs / peak, compulsory DRAM bytes / bandwidth).
"""
from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import out_dir

from sieve.arch import decode_program, encode_program, load_arch
from sieve.pipeline import integer_model
from sieve.codegen import generate
from sieve.frontend import build, dump_sv, load_sv
from sieve.ir import GraphBuilder, Op, quantize_inputs, run_int
from sieve.scheduler import schedule
from sieve.scheduler.tiling import search
from sieve.simulator import run, simulate_timing

REPEAT = 5


def _best(fn, repeat: int = REPEAT):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def lenet_stages(arch_name: str) -> dict:
    arch = load_arch(arch_name)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet5.sv"
        dump_sv(build("lenet5"), path)
        stages = {}
        stages["parse .sv"], graph = _best(lambda: load_sv(path))
        calib = {"x": rng.standard_normal((16, 1, 32, 32)).astype(np.float32)}
        stages["quantize (fuse, calibrate 16, quantize)"], q = _best(lambda: integer_model(graph, calibrate=calib).qgraph)
        stages["schedule (tiling search)"], sched = _best(lambda: (search.cache_clear(), schedule(q, arch))[1])
        stages["codegen"], program = _best(lambda: generate(sched))
        stages["encode .sieve"], raw = _best(lambda: encode_program(program))
        stages["load .sieve"], loaded = _best(lambda: decode_program(raw))
        stages["simulate, timing only"], _ = _best(lambda: run(loaded, functional=False))
        x = {"x": rng.standard_normal((1, 1, 32, 32)).astype(np.float32)}
        stages["simulate, bit-exact (1 image)"], result = _best(lambda: run(loaded, x))
        ref = run_int(q, quantize_inputs(q, x))["logits"]
        assert np.array_equal(result.outputs["logits"], ref)
    return {"arch": arch_name, "stages_s": stages, "total_s": sum(stages.values()),
            "simulated_cycles": result.stats.cycles, "instructions": len(loaded.streams[0])}


def matmul_512(arch_name: str) -> dict:
    arch = load_arch(arch_name)
    rng = np.random.default_rng(0)
    b = GraphBuilder("mm512")
    b.input("x", (512, 512))
    b.add("mm", Op.DENSE, ["x"], {"out_features": 512}, {"w": rng.standard_normal((512, 512)) / 22})
    g = b.build(["mm"])
    q = integer_model(g, calibrate={"x": rng.standard_normal((512, 512)).astype(np.float32)}).qgraph
    t0 = time.perf_counter()
    program = decode_program(encode_program(generate(schedule(q, arch))))
    compile_s = time.perf_counter() - t0
    x = {"x": rng.standard_normal((512, 512)).astype(np.float32)}
    func_s, result = _best(lambda: run(program, x), 3)
    timing_s, _ = _best(lambda: simulate_timing(program), 3)
    assert np.array_equal(result.outputs["mm"], run_int(q, quantize_inputs(q, x))["mm"])
    macs = result.stats.macs
    peak = arch.core.pe_rows * arch.core.simd_lanes
    compulsory = 512 * 512 * 3 + 8 * 512                 # weights, input, output, bias+scale
    roofline = max(macs / peak, compulsory / arch.memory.dram_bytes_per_cycle)
    return {"arch": arch_name, "macs": macs, "compile_s": compile_s, "simulate_bitexact_s": func_s,
            "simulate_timing_only_s": timing_s, "macs_per_host_s_bitexact": macs / func_s,
            "macs_per_host_s_timing_only": macs / timing_s, "simulated_cycles": result.stats.cycles,
            "roofline_cycles": int(roofline), "cycles_over_roofline": result.stats.cycles / roofline,
            "instructions": len(program.streams[0]), "utilization": result.stats.utilization}


def main() -> dict:
    report = {"machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
              "lenet5": [lenet_stages(a) for a in ("default", "edge")],
              "matmul_512": [matmul_512(a) for a in ("default", "edge")]}
    return report


def markdown(report: dict) -> str:
    lines = ["### LeNet-5, host wall time per stage (median of 5)", "",
             "| stage | " + " | ".join(r["arch"] for r in report["lenet5"]) + " |",
             "|---|" + "---:|" * len(report["lenet5"])]
    for stage in report["lenet5"][0]["stages_s"]:
        lines.append(f"| {stage} | " + " | ".join(f"{1e3 * r['stages_s'][stage]:.2f} ms"
                                                  for r in report["lenet5"]) + " |")
    lines.append("| **total** | " + " | ".join(f"**{1e3 * r['total_s']:.1f} ms**" for r in report["lenet5"]) + " |")
    lines.append("| simulated cycles | " + " | ".join(f"{r['simulated_cycles']:,}" for r in report["lenet5"]) + " |")
    lines += ["", "### 512x512x512 dense matmul layer", "",
              "| arch | MACs | simulate bit-exact | MACs / host s | timing only | MACs / host s | "
              "cycles | roofline | cycles / roofline | utilization |", "|---|" + "---:|" * 9]
    for r in report["matmul_512"]:
        lines.append(f"| {r['arch']} | {r['macs']:,} | {r['simulate_bitexact_s']:.3f} s | "
                     f"{r['macs_per_host_s_bitexact']:.3g} | {r['simulate_timing_only_s']:.4f} s | "
                     f"{r['macs_per_host_s_timing_only']:.3g} | {r['simulated_cycles']:,} | "
                     f"{r['roofline_cycles']:,} | {r['cycles_over_roofline']:.3f} | {100 * r['utilization']:.1f} % |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    rep = main()
    out = out_dir()
    (out / "skeleton.json").write_text(json.dumps(rep, indent=1))
    (out / "skeleton.md").write_text(markdown(rep))
    print(markdown(rep))
