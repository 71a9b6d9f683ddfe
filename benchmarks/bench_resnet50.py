"""ResNet-50 at 224x224 (4.1 GMAC) on `default`: compile (ONNX file to .sieve bytes, calibration on
8 images included), bit-exact simulation of one image, timing-only simulation. Targets: 5 s, 10 s, 1 s.

Each stage is timed in-process with time.perf_counter (median of 3), after one warm-up run
that pays numba/numpy first-call costs; the ONNX file is written once beforehand. The
bit-exact output is checked against the integer reference interpreter.
"""
from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sieve.arch import decode_program, encode_program, load_arch
from sieve.pipeline import compile_graph, integer_model, load_model
from sieve.frontend import build_onnx
from sieve.ir import quantize_inputs, run_int
from sieve.scheduler.tiling import search
from sieve.simulator import run

REPEAT = 3


def _median(fn):
    fn()
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def _top(fn, n: int = 8) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(n)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())[:3000]


def main() -> dict:
    import onnx
    arch = load_arch("default")
    tmp = Path(tempfile.mkdtemp())
    onnx.save(build_onnx("resnet50"), tmp / "resnet50.onnx")
    rng = np.random.default_rng(0)
    np.save(tmp / "calib.npy", rng.standard_normal((8, 3, 224, 224)).astype(np.float32))

    def compile_file():
        search.cache_clear()                    # as in a fresh `sieve compile` process
        graph = load_model(tmp / "resnet50.onnx")
        q = integer_model(graph, tmp / "calib.npy")
        _, program = compile_graph(q, arch)
        return q, encode_program(program)

    compile_s, (q, raw) = _median(compile_file)
    program = decode_program(raw)
    x = {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
    exact_s, result = _median(lambda: run(program, x))
    timing_s, timed = _median(lambda: run(program, functional=False))
    assert timed.stats.cycles == result.stats.cycles
    ref = run_int(q, quantize_inputs(q, x))
    name = q.outputs[0]
    assert np.array_equal(result.outputs[name], ref[name]), "simulator differs from the reference"
    report = {
        "model": "resnet50 224x224", "gmac": result.stats.macs / 1e9, "instructions": len(program.streams[0]),
        "binary_mb": len(raw) / 1e6, "compile_s": compile_s, "simulate_bitexact_s": exact_s,
        "simulate_timing_only_s": timing_s, "simulated_cycles": result.stats.cycles,
        "utilization": result.stats.utilization, "energy_uj": result.stats.energy_total_pj / 1e6,
        "profile_compile": _top(compile_file), "profile_bitexact": _top(lambda: run(program, x)),
        "profile_timing": _top(lambda: run(program, functional=False)),
    }
    return report


def markdown(r: dict) -> str:
    return (f"| stage | host time | target |\n|---|---:|---:|\n"
            f"| compile: ONNX file -> .sieve bytes, calibration on 8 images | {r['compile_s']:.2f} s | 5 s |\n"
            f"| simulate bit-exact, one image | {r['simulate_bitexact_s']:.2f} s | 10 s |\n"
            f"| simulate timing-only (same cycles) | {r['simulate_timing_only_s']:.2f} s | 1 s |\n\n"
            f"{r['gmac']:.2f} GMAC, {r['instructions']:,} instructions, {r['binary_mb']:.1f} MB binary, "
            f"{r['simulated_cycles']:,} simulated cycles ({100 * r['utilization']:.1f} % MAC utilization), "
            f"{r['energy_uj']:.0f} uJ per inference.\n")


if __name__ == "__main__":
    rep = main()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "resnet50.json").write_text(json.dumps(rep, indent=1))
    (out / "resnet50.md").write_text(markdown(rep))
    print(markdown(rep))
    for key in ("profile_compile", "profile_bitexact", "profile_timing"):
        print(f"-- {key}\n{rep[key]}\n")
