"""A 1,000-point ResNet-50 sweep from the command line: 10 core shapes (PE rows x scratchpad) x 5 L2
sizes x 5 DRAM bandwidths x 4 clocks, timing-only, end to end (process start, preparing the model,
10 compiles, 1,000 simulations, the store). Target: <= 5 minutes on this 2-core machine. Run with 1
worker (in the process), a local pool of 2, and a Dask LocalCluster of 2, one after another; and a
resumed run of the finished sweep (nothing to do). Writes sweep.json and sweep.md."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import out_dir

SIEVE = str(Path(sys.executable).with_name("sieve"))
SPEC = '''name = "resnet50: 10 core shapes x L2 x DRAM x clock"
models = ["resnet50"]
calibrate = "calib.npy"

[space]
core.pe_rows = [8, 16, 32, 64, 128]
core.scratchpad_bytes = [131072, 262144]
memory.l2_bytes = [0, 524288, 1048576, 2097152, 4194304]
memory.dram_bytes_per_cycle = [4.0, 8.0, 16.0, 32.0, 64.0]
clock_mhz = [500.0, 1000.0, 1500.0, 2000.0]
'''


def _timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([SIEVE] + argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"sieve {' '.join(argv)} failed: {done.stderr}")
    return time.perf_counter() - t0, done.stdout.strip()


def main() -> dict:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "spec.toml").write_text(SPEC)
    np.save(tmp / "calib.npy", np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32))
    runs = {}
    for label, extra in (("1 worker", []), ("2 workers (local pool)", ["--workers", "2"]),
                         ("Dask LocalCluster, 2 workers", ["--workers", "2", "--dask", "local"])):
        out = f"r{len(runs)}"
        seconds, said = _timed(["sweep", "spec.toml", "-o", out, "-q"] + extra, tmp)
        runs[label] = {"seconds": seconds, "summary": said}
        print(label, f"{seconds:.1f} s", said, flush=True)
    seconds, said = _timed(["sweep", "spec.toml", "-o", "r0", "-q"], tmp)
    runs["resumed, nothing left"] = {"seconds": seconds, "summary": said}
    import pandas as pd
    frames = [pd.read_parquet(tmp / f"r{i}" / "points.parquet").drop(columns=["host_seconds"]).sort_values("key")
              .reset_index(drop=True) for i in range(3)]
    same = all(f.equals(frames[0]) for f in frames[1:])
    report = {"points": len(frames[0]), "cpus": os.cpu_count(), "runs": runs, "same_rows": same}
    out = out_dir()
    (out / "sweep.json").write_text(json.dumps(report, indent=1))
    lines = ["## A 1,000-point ResNet-50 sweep from the command line", "",
             f"{report['points']:,} points, timing-only; {report['cpus']} CPUs; the three engines gave the same rows: "
             f"{same}.", "", "| engine | seconds | points per second |", "|---|---:|---:|"]
    for label, r in runs.items():
        rate = f"{report['points'] / r['seconds']:.1f}" if "resumed" not in label else "-"
        lines.append(f"| {label} | {r['seconds']:.1f} | {rate} |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
