"""ResNet-50 (224x224) on `default` at 0/50/75/90/95 % unstructured and 2:4 pruning, with and without
balanced PE-row ordering: MAC-array cycles of the conv layers against dense, end-to-end cycles,
energy, DRAM bytes, compile and simulate times. Writes a table (JSON + Markdown) and a plot.

Pruning is post-training magnitude pruning per layer (every conv and dense layer), applied
to the float model before calibration on 8 seeded inputs; cycles come from the timing model
(identical to bit-exact runs, which is checked once at 90 %).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import sieve
from benchmarks.common import publish

POINTS = ("0", "0.5", "0.75", "0.9", "0.95", "2:4")


def _conv_mac_cycles(stats) -> int:
    return sum(layer.mac_cycles for layer in stats.layers if layer.op == "conv2d")


def main() -> dict:
    base = sieve.zoo.graph("resnet50")
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, 224, 224)).astype(np.float32)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for point in POINTS:
        prune = None if point == "0" else point
        for balance in (True, False):
            c = sieve.compile_model(base, calibrate=calib, prune=prune, balance=balance, dense_twin=False)
            program = c.program
            size = sieve.save(program, tmp / "p.sieve")
            t0 = time.perf_counter()
            stats = sieve.simulate(program, timing_only=True).stats
            timing_s = time.perf_counter() - t0
            row = {"prune": point, "balanced": balance, "cycles": stats.cycles,
                   "conv_mac_cycles": _conv_mac_cycles(stats), "energy_uj": stats.energy_total_pj / 1e6,
                   "dram_mb": (stats.events["dram_read_bytes"] + stats.events["dram_write_bytes"]) / 1e6,
                   "binary_mb": size / 1e6, "schedule_codegen_s": c.seconds["schedule"] + c.seconds["codegen"],
                   "timing_only_s": timing_s,
                   "formats": sorted({s.weight_format for s in program.layers if s.op == "conv2d"})}
            if point == "0.9" and balance:
                t0 = time.perf_counter()
                result = sieve.simulate(program, x)
                row["bitexact_s"] = time.perf_counter() - t0
                ref = sieve.interpret(base, x, calibrate=calib, prune=prune)
                assert all(np.array_equal(result.model_outputs()[k], ref.outputs[k]) for k in ref.outputs)
                assert result.stats.cycles == stats.cycles
            rows.append(row)
            print(row, flush=True)
    dense = next(r for r in rows if r["prune"] == "0" and r["balanced"])
    for r in rows:
        r["conv_mac_speedup"] = dense["conv_mac_cycles"] / r["conv_mac_cycles"]
        r["speedup"] = dense["cycles"] / r["cycles"]
    return {"rows": rows}


def markdown(rep: dict) -> str:
    lines = ["| pruning | PE rows | conv MAC-array cycles | vs dense | end-to-end cycles | vs dense | energy uJ | "
             "DRAM MB | binary MB | conv formats |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['prune']} | {'balanced' if r['balanced'] else 'natural'} | {r['conv_mac_cycles']:,} | "
                     f"{r['conv_mac_speedup']:.2f}x | {r['cycles']:,} | {r['speedup']:.2f}x | {r['energy_uj']:,.0f} | "
                     f"{r['dram_mb']:.1f} | {r['binary_mb']:.1f} | {', '.join(r['formats'])} |")
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for balanced, style in ((True, "o-"), (False, "s--")):
        rs = [r for r in rep["rows"] if r["balanced"] == balanced]
        label = "balanced rows" if balanced else "natural order"
        xs = [r["prune"] for r in rs]
        axes[0].plot(xs, [r["conv_mac_speedup"] for r in rs], style, label=label)
        axes[1].plot(xs, [r["cycles"] / 1e6 for r in rs], style, label=label)
        axes[2].plot(xs, [r["energy_uj"] / 1e3 for r in rs], style, label=label)
    for ax, title in zip(axes, ("conv MAC-array speedup vs dense", "end-to-end Mcycles", "energy (mJ)")):
        ax.set_title(title)
        ax.set_xlabel("pruning")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("ResNet-50 224x224 on default (16x16 MACs, 256 KiB scratchpad, 16 B/cycle DRAM)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    rep = main()
    publish("sparsity", rep, markdown(rep), plot)
