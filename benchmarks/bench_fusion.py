"""Cross-layer fusion (docs/fusion.md).

1. VGG-16's first five conv layers (conv1_1 .. conv3_1 with both poolings) at 224x224 on `default` with a
   512 KiB scratchpad: feature-map and weight DRAM traffic (bytes the program's loads and stores move:
   feature maps live above the constants in DRAM, weights below), cycles and energy, layer by layer
   against fused with each band height and overlap mode, and `--fusion auto`.
2. ResNet-18, ResNet-50, MobileNetV2 and the FSRCNN-style model on `default` and `multicore`: DRAM bytes,
   energy and cycles with `--fusion none`, `auto` and `max`, simulated timing-only; one table, one plot.
3. `sieve compile` of ResNet-50 with `--fusion auto` against `--fusion none`, each a new process as a user
   runs it, median of 3 interleaved runs after a warm-up, default threads; with and without the twins.

    python -m benchmarks.bench_fusion
"""
from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import SIEVE, out_dir, timed
from sieve.arch import load_arch, with_overrides
from sieve.arch.isa import Opcode
from sieve.codegen import generate
from sieve.ir import GraphBuilder, Op
from sieve.pipeline import compile_model, integer_model, simulate_timing
from sieve.scheduler import schedule
from sieve import zoo

MODELS = ("resnet18", "resnet50", "mobilenetv2", "fsrcnn")
ARCHS = ("default", "multicore")
FUSIONS = ("none", "auto", "max")
REPEAT = 3


def vgg_first_five(size: int = 224, seed: int = 0):
    """VGG-16's layers up to conv3_1 (its first five convolutions and two poolings), seeded weights."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("vgg16_first_five")
    x = b.input("x", (1, 3, size, size))
    cin = 3
    for name, cout in (("conv1_1", 64), ("conv1_2", 64), ("pool1", 0), ("conv2_1", 128), ("conv2_2", 128),
                       ("pool2", 0), ("conv3_1", 256)):
        if cout == 0:
            x = b.add(name, Op.MAXPOOL, [x], {"kernel": 2, "stride": 2})
            continue
        x = b.add(name, Op.CONV2D, [x], {"out_channels": cout, "kernel": 3, "pad": 1, "act": "relu"},
                  {"w": rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin)),
                   "b": rng.standard_normal(cout) * 0.01})
        cin = cout
    return b.build([x])


def traffic(program) -> tuple[int, int]:
    """(feature-map bytes, weight bytes) the program's loads and stores move (logical bytes, before DRAM
    bursts round them up)."""
    data = len(program.data)
    fm = w = 0
    for stream in program.streams:
        for ins in stream:
            if ins.opcode in (Opcode.LOAD, Opcode.STORE):
                if ins.dram_addr < data:
                    w += ins.rows * ins.row_bytes
                else:
                    fm += ins.rows * ins.row_bytes
    return fm, w


def _dram(stats) -> int:
    return int(stats.events["dram_read_bytes"] + stats.events["dram_write_bytes"])


def vgg() -> list[dict]:
    q = integer_model(vgg_first_five()).qgraph
    arch = with_overrides(load_arch("default"), {"core.scratchpad_bytes": 512 * 1024, "name": "default-512k"})
    rows = []
    cases = [("none", None, None), ("auto", None, None), ("max", None, None)] + [
        ("max", t, m) for m in ("cache", "recompute") for t in (1, 2, 4)] + [("max", (4, 28), "recompute")]
    for fusion, tile, mode in cases:
        sched = schedule(q, arch, fusion=fusion, tile=tile, overlap=mode)
        program = generate(sched)
        stats = simulate_timing(program)
        fm, w = traffic(program)
        stacks = [list(p.stack.nodes) + [f"({p.stack.rows}{'x' + str(p.stack.cols) if p.stack.cols else ' rows'}, "
                                          f"{p.stack.mode})"] for p in sched.layers if p.stack is not None]
        rows.append({"fusion": fusion, "tile": tile, "overlap": mode, "feature_map_bytes": fm, "weight_bytes": w,
                     "dram_bytes": _dram(stats), "cycles": stats.cycles, "energy_uj": stats.energy_total_pj / 1e6,
                     "stacks": stacks, "peak_spad": max((p.spad.total for p in sched.layers if p.spad), default=0)})
    return rows


def zoo_rows() -> list[dict]:
    rows = []
    for name in MODELS:
        graph = zoo.graph(name)
        for arch in ARCHS:
            for fusion in FUSIONS:
                c = compile_model(graph, arch, fusion=fusion, dense_twin=False)
                stats = simulate_timing(c.program)
                rows.append({"model": name, "arch": arch, "fusion": fusion, "cycles": stats.cycles,
                             "dram_bytes": _dram(stats), "energy_uj": stats.energy_total_pj / 1e6,
                             "stacks": sum(p.stack is not None for p in c.schedule.layers),
                             "fused_layers": sum(len(p.stack.nodes) for p in c.schedule.layers if p.stack)})
    return rows


def compile_times() -> dict:
    tmp = Path(tempfile.mkdtemp())
    subprocess.run([SIEVE, "zoo", "export", "resnet50", "-o", "r50.onnx"], cwd=tmp, check=True, capture_output=True)
    commands = {f"{fusion}{' --no-twin' if not twin else ''}":
                ["compile", "r50.onnx", "--fusion", fusion, "-o", f"{fusion}{twin}.sieve", "-q"]
                + ([] if twin else ["--no-twin"]) for fusion in ("none", "auto") for twin in (True, False)}
    for cmd in commands.values():                              # warm-up
        timed(cmd, tmp)
    times: dict = {k: [] for k in commands}
    for _ in range(REPEAT):
        for key, cmd in commands.items():
            times[key].append(timed(cmd, tmp))
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = [f"{m} {a}" for m in MODELS for a in ARCHS]
    x = np.arange(len(labels))
    for ax, key, title in zip(axes, ("dram_bytes", "energy_uj", "cycles"),
                              ("DRAM bytes", "energy", "cycles")):
        for i, fusion in enumerate(FUSIONS[1:]):
            ratio = [next(r[key] for r in rows if (r["model"], r["arch"], r["fusion"]) == (m, a, fusion))
                     / next(r[key] for r in rows if (r["model"], r["arch"], r["fusion"]) == (m, a, "none"))
                     for m in MODELS for a in ARCHS]
            ax.bar(x + (i - 0.5) * 0.38, ratio, 0.38, label=f"--fusion {fusion}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")                      # max's forced stacks reach 10x: auto's 0.5-1 stays readable
        ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
        ax.set_title(f"{title}, fused / layer by layer (log)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    out = out_dir()
    result = {"vgg16_first_five": vgg(), "zoo": zoo_rows(), "compile_seconds_resnet50": compile_times()}
    (out / "fusion.json").write_text(json.dumps(result, indent=1))
    _plot(result["zoo"], out / "fusion.png")
    lines = ["# Cross-layer fusion", "", "## VGG-16's first five conv layers, 224x224, 512 KiB scratchpad", "",
             "| fusion | tile | overlap | feature-map MB | weight MB | DRAM MB (bursts) | cycles | energy µJ |"
             " peak scratchpad KiB | stacks |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = result["vgg16_first_five"][0]
    for r in result["vgg16_first_five"]:
        cut = 100 * (1 - r["feature_map_bytes"] / base["feature_map_bytes"])
        tile = "x".join(map(str, r["tile"])) if isinstance(r["tile"], (list, tuple)) else r["tile"] or "-"
        lines.append(f"| {r['fusion']} | {tile} | {r['overlap'] or '-'} | "
                     f"{r['feature_map_bytes'] / 1e6:.2f} ({cut:.1f} % less) | {r['weight_bytes'] / 1e6:.2f} | "
                     f"{r['dram_bytes'] / 1e6:.2f} | {r['cycles']:,} | {r['energy_uj']:,.0f} | "
                     f"{r['peak_spad'] / 1024:.0f} | {' / '.join(' '.join(s) for s in r['stacks']) or '-'} |")
    lines += ["", "## Zoo models, fused against layer by layer (timing only)", "",
              "| model | arch | fusion | stacks (layers) | DRAM MB | energy µJ | cycles |", "|---|---|---|---|---|---|---|"]
    for r in result["zoo"]:
        b = next(x for x in result["zoo"] if (x["model"], x["arch"], x["fusion"]) == (r["model"], r["arch"], "none"))
        lines.append(f"| {r['model']} | {r['arch']} | {r['fusion']} | {r['stacks']} ({r['fused_layers']}) | "
                     f"{r['dram_bytes'] / 1e6:.2f} ({r['dram_bytes'] / b['dram_bytes']:.2f}x) | "
                     f"{r['energy_uj']:,.0f} ({r['energy_uj'] / b['energy_uj']:.2f}x) | "
                     f"{r['cycles']:,} ({r['cycles'] / b['cycles']:.3f}x) |")
    t = result["compile_seconds_resnet50"]
    lines += ["", "## `sieve compile` of ResNet-50 (s, median of 3, new process each)", "",
              "| | with twins | --no-twin |", "|---|---|---|",
              f"| --fusion none | {t['none']} | {t['none --no-twin']} |",
              f"| --fusion auto | {t['auto']} ({t['auto'] / t['none']:.2f}x) | {t['auto --no-twin']} "
              f"({t['auto --no-twin'] / t['none --no-twin']:.2f}x) |", ""]
    (out / "fusion.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
