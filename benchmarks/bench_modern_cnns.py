"""Today's CNNs from the command line: EfficientNet-B0 and MobileNetV3-Large at 224x224, the YOLO-style
detector at 320x320, on `default`. For each: `sieve compile` (ONNX -> .sieve, calibration on 8 images),
`sieve run` bit-exact on one image, `sieve run --timing-only`, each a new process as a user runs it
(imports included), median of 3 interleaved runs, default threads. Then, from the run's statistics:
cycles, energy, MAC utilization, and the cycles and energy of each layer kind (conv, depthwise, the
element-wise tables of SiLU/HardSwish/sigmoid, the products of squeeze-and-excite, resize, ...).

    python -m benchmarks.bench_modern_cnns
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import SIEVE, by_kind, kinds_table, publish, timed

REPEAT = 3
MODELS = (("efficientnet_b0", 224), ("mobilenetv3", 224), ("yolo_like", 320))


def _kind(layer: dict) -> str:
    op = layer["op"]
    return {"conv2d": "conv", "lut": "table (SiLU, HardSwish, sigmoid, ...)", "mul": "product (SE, SiLU gate)",
            "globalavgpool": "global pool", "resize": "resize", "concat": "concat", "add": "residual add",
            "maxpool": "max pool", "dense": "dense"}.get(op, op)


def main() -> list[dict]:
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    rows = []
    for name, size in MODELS:
        subprocess.run([SIEVE, "zoo", "export", name, "--size", str(size), "-o", f"{name}.onnx"], cwd=tmp,
                       check=True, capture_output=True)
        np.save(tmp / f"{name}_calib.npy", rng.standard_normal((8, 3, size, size)).astype(np.float32))
        np.save(tmp / f"{name}_x.npy", rng.standard_normal((1, 3, size, size)).astype(np.float32))
    commands = {name: {"compile": ["compile", f"{name}.onnx", "--calibrate", f"{name}_calib.npy", "-o",
                                   f"{name}.sieve", "-q"],
                       "run": ["run", f"{name}.sieve", "--input", f"{name}_x.npy", "-q"],
                       "timing": ["run", f"{name}.sieve", "--timing-only", "-q"]} for name, _ in MODELS}
    times = defaultdict(list)
    for name, _ in MODELS:                                     # warm-up (numba's cache, bytecode)
        for cmd in commands[name].values():
            timed(cmd, tmp)
    for _ in range(REPEAT):
        for name, _ in MODELS:
            for key, cmd in commands[name].items():
                times[name, key].append(timed(cmd, tmp))
    for name, size in MODELS:
        subprocess.run([SIEVE, "run", f"{name}.sieve", "--input", f"{name}_x.npy", "--stats", f"{name}.json",
                        "-q"], cwd=tmp, check=True, capture_output=True)
        stats = json.loads((tmp / f"{name}.json").read_text())
        rows.append({"model": f"{name} {size}x{size}", "cpus": os.cpu_count(),
                     **{f"{k} s": round(statistics.median(times[name, k]), 2) for k in ("compile", "run", "timing")},
                     "cycles": stats["cycles"], "energy_mj": round(stats["energy_total_pj"] / 1e9, 2),
                     "mac_utilization": stats["utilization"], "macs": stats["macs"],
                     "kinds": by_kind(stats, _kind)})
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| model | `sieve compile` | `sieve run` (bit-exact) | `sieve run --timing-only` | cycles | energy | "
           "MAC utilization |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        util = f"{100 * r['mac_utilization']:.1f} %" if r["mac_utilization"] is not None else ""
        out.append(f"| {r['model']} ({r['macs'] / 1e9:.2f} GMAC) | {r['compile s']:.2f} s | {r['run s']:.2f} s | "
                   f"{r['timing s']:.2f} s | "
                   f"{r['cycles']:,} | {r['energy_mj']} mJ | {util} |")
    for r in rows:
        out += kinds_table(f"{r['model']}, by layer kind:", r["kinds"])
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    result = main()
    publish("modern_cnns", result, markdown(result))
