"""Low-bit weights and compressed tensors on ResNet-50 (224x224) and BERT-base (128 tokens), `default` arch:
model size (the binary's constants: weights with their metadata, biases, scales, multipliers) against the
float32 model, DRAM bytes, cycles and energy, for int8, int4, int4 + 2:4 and int4 + 90 % weights, each
without and with zero-value compression of the activations (and of the weights) in DMA.

Pruning is post-training magnitude pruning per layer on the float model, before the int4 grid (MSE
clipping, a scale per output channel) and calibration on 4 seeded inputs. Each point is compiled once;
the compressed twin is the same schedule generated with compression (so both have the same layers,
tiles and stacks). Cycles and energy come from the timing model; compressed transfers there take the
binary's density estimates (the first calibration input's); one bit-exact run per model, on another
input, measures the real sizes and is reported beside them.

    python -m benchmarks.bench_lowbit
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import sieve
from benchmarks.common import publish
from sieve.codegen import generate
from sieve.pipeline import activation_densities

# (label, weights, pruning, objective): int4 under the default cycles objective packs the zeros its grid
# makes (unstructured: faster, but 2-byte indices), so it is also shown as the energy objective schedules it
POINTS = (("int8", "int8", None, "cycles"), ("int4", "int4", None, "cycles"),
          ("int4, --objective energy", "int4", None, "energy"), ("int4 + 2:4", "int4", "2:4", "cycles"),
          ("int4 + 90 %", "int4", "0.9", "cycles"))
MODELS = (("resnet50", (3, 224, 224)), ("bert_base", None))


def _inputs(graph, n: int, seed: int) -> np.ndarray:
    shape = graph.inputs[0].out.shape
    return np.random.default_rng(seed).standard_normal((n,) + tuple(shape[1:])).astype(np.float32)


def _float_bytes(graph) -> int:
    """The float32 model: 4 bytes per weight and bias of every layer."""
    return 4 * sum(v.size for n in graph for k, v in (n.params or {}).items() if k in ("w", "b"))


def _row(model: str, point: str, program, stats, float_bytes: int, seconds: float, compressed: str) -> dict:
    ev = stats.events
    return {"model": model, "point": point, "compression": compressed,
            "size_mb": len(program.data) / 1e6, "vs_float32": float_bytes / len(program.data),
            "dram_mb": (ev["dram_read_bytes"] + ev["dram_write_bytes"]) / 1e6, "cycles": stats.cycles,
            "energy_uj": stats.energy_total_pj / 1e6, "zvc_moved_of_raw": (ev["zvc_bytes"] / ev["zvc_raw_bytes"]
                                                                            if ev["zvc_raw_bytes"] else None),
            "compile_s": round(seconds, 1)}


def main() -> dict:
    rows, checks = [], []
    for model, _ in MODELS:
        graph = sieve.zoo.graph(model)
        calib, x = _inputs(graph, 4, 0), _inputs(graph, 1, 1)
        float_bytes = _float_bytes(graph)
        for point, weights, prune, objective in POINTS:
            t0 = time.perf_counter()
            c = sieve.compile_model(graph, calibrate=calib, weights=weights, prune=prune, objective=objective,
                                    dense_twin=False)
            seconds = time.perf_counter() - t0
            plain = c.program
            densities = activation_densities(c.qgraph, calib)
            zvc = generate(replace(c.schedule, compress=frozenset({"activations", "weights"}), densities=densities))
            for program, name in ((plain, "none"), (zvc, "zvc")):
                stats = sieve.simulate(program, timing_only=True).stats
                rows.append(_row(model, point, program, stats, float_bytes, seconds, name))
                print(rows[-1], flush=True)
            if point == "int4":                    # the real sizes, on an input the estimate did not see
                measured = sieve.simulate(zvc, x).stats
                est = rows[-1]
                checks.append({"model": model, "point": point, "estimated_zvc_mb": est["dram_mb"],
                               "measured_zvc_mb": (measured.events["dram_read_bytes"]
                                                   + measured.events["dram_write_bytes"]) / 1e6,
                               "estimated_cycles": est["cycles"], "measured_cycles": measured.cycles})
                print(checks[-1], flush=True)
    return {"rows": rows, "checks": checks}


def markdown(rep: dict) -> str:
    lines = ["| model | weights | DMA compression | size MB | vs float32 | DRAM MB | cycles | energy µJ | "
             "compressed bytes moved |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rep["rows"]:
        moved = f"{100 * r['zvc_moved_of_raw']:.0f} %" if r["zvc_moved_of_raw"] is not None else ""
        lines.append(f"| {r['model']} | {r['point']} | {r['compression']} | {r['size_mb']:.2f} | "
                     f"{r['vs_float32']:.1f}x | {r['dram_mb']:.1f} | {r['cycles']:,} | {r['energy_uj']:,.0f} | {moved} |")
    lines += ["", "Compressed sizes estimated (timing-only, the binary's densities) against measured (a bit-exact "
              "run on another input):", "", "| model | weights | DRAM MB estimated | measured | cycles estimated | "
              "measured |", "|---|---|---:|---:|---:|---:|"]
    for c in rep["checks"]:
        lines.append(f"| {c['model']} | {c['point']} | {c['estimated_zvc_mb']:.2f} | {c['measured_zvc_mb']:.2f} | "
                     f"{c['estimated_cycles']:,} | {c['measured_cycles']:,} |")
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in rep["rows"]))
    fig, axes = plt.subplots(len(models), 3, figsize=(13, 3.6 * len(models)), squeeze=False)
    points = [p.replace(", --objective ", "\n") for p, _, _, _ in POINTS]
    for mi, model in enumerate(models):
        for ax, key, label in zip(axes[mi], ("vs_float32", "dram_mb", "energy_uj"),
                                  ("size: float32 / binary (x)", "DRAM MB per inference", "energy µJ per inference")):
            for ci, comp in enumerate(("none", "zvc")):
                vals = [next(r[key] for r in rep["rows"] if r["model"] == model and r["point"] == p
                             and r["compression"] == comp) for p, _, _, _ in POINTS]
                ax.bar(np.arange(len(points)) + (ci - 0.5) * 0.38, vals, 0.38,
                       label="no compression" if comp == "none" else "ZVC in DMA")
            if key == "vs_float32":
                ax.axhline(10, color="k", lw=0.8, ls="--")
                ax.text(len(points) - 0.5, 10, " 10x", va="bottom", ha="right", fontsize=8)
            ax.set_xticks(range(len(points)), points, fontsize=8)
            ax.set_title(f"{model}: {label}", fontsize=9)
        axes[mi][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    report = main()
    publish("lowbit", report, markdown(report), plot)
