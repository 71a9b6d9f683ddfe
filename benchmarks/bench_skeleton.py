"""Baseline performance, through the Python API (`sieve.compile_model`, `sieve.save`, `sieve.load`,
`sieve.simulate`), in-process, median of 5.

1. LeNet-5: host wall time of every stage, text model to simulated outputs.
2. A 512x512x512 dense matmul layer (an ONNX Gemm, batch 512, 512 -> 512): simulated MACs per
   host second, bit-exact and timing-only, and simulated cycles against the roofline
   max(MACs / peak, compulsory DRAM bytes / bandwidth).
"""
from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import sieve
from benchmarks.common import publish

REPEAT = 5


def _median(fn, repeat: int = REPEAT):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def lenet_stages(arch_name: str) -> dict:
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 1, 32, 32)).astype(np.float32)
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    graph = sieve.zoo.graph("lenet5")
    runs = [sieve.compile_model(graph, arch_name, calibrate=calib, dense_twin=False) for _ in range(REPEAT)]
    stages = {f"{k} (compile_model)": statistics.median(r.seconds[k] for r in runs)
              for k in ("fuse activations", "calibrate", "quantize", "schedule", "codegen")}
    program = runs[-1].program
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet5.sieve"
        stages["save .sieve"], _ = _median(lambda: sieve.save(program, path))
        stages["load .sieve"], loaded = _median(lambda: sieve.load(path))
    stages["simulate, timing only"], _ = _median(lambda: sieve.simulate(loaded, timing_only=True))
    stages["simulate, bit-exact (1 image)"], result = _median(lambda: sieve.simulate(loaded, x))
    ref = sieve.interpret(graph, x, calibrate=calib)
    assert np.array_equal(result.outputs["logits"], ref.outputs["logits"])
    return {"arch": arch_name, "stages_s": stages, "total_s": sum(stages.values()),
            "simulated_cycles": result.stats.cycles, "instructions": len(loaded.streams[0])}


def _matmul_model(rng):
    from onnx import TensorProto, helper, numpy_helper
    w = (rng.standard_normal((512, 512)) / 22).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["mm"], transB=1)], "mm512",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 512])],
                              [helper.make_tensor_value_info("mm", TensorProto.FLOAT, [512, 512])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def matmul_512(arch_name: str) -> dict:
    arch = sieve.arch.load(arch_name)
    rng = np.random.default_rng(0)
    model = _matmul_model(rng)
    calib = rng.standard_normal((512, 512)).astype(np.float32)
    t0 = time.perf_counter()
    program = sieve.compile(model, arch, calibrate=calib, dense_twin=False)
    compile_s = time.perf_counter() - t0
    x = rng.standard_normal((512, 512)).astype(np.float32)
    func_s, result = _median(lambda: sieve.simulate(program, x), 3)
    timing_s, _ = _median(lambda: sieve.simulate(program, timing_only=True), 3)
    assert np.array_equal(result.outputs["mm"], sieve.interpret(model, x, calibrate=calib).outputs["mm"])
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
    publish("skeleton", rep, markdown(rep))
