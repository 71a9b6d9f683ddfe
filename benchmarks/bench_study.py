"""`sieve study sp-vs-l2` on ResNet-50 and MobileNetV2 at 224x224: 4 MiB of SRAM split between per-core
scratchpads and a shared L2 at 1, 2, 4, 8 and 16 cores (2 workers). Copies each study's table, heatmap
and summary into the results folder (study_<model>/) and times the command."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import out_dir

SIEVE = str(Path(sys.executable).with_name("sieve"))


def main() -> dict:
    tmp = Path(tempfile.mkdtemp())
    np.save(tmp / "calib.npy", np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32))
    report = {}
    for model in ("resnet50", "mobilenetv2"):
        t0 = time.perf_counter()
        done = subprocess.run([SIEVE, "study", "sp-vs-l2", "--model", model, "--sram-budget", "4MiB", "--cores",
                               "1,2,4,8,16", "--calibrate", "calib.npy", "-o", model, "--workers", "2", "-q"],
                              cwd=tmp, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr)
        report[model] = {"seconds": time.perf_counter() - t0}
        dest = out_dir() / f"study_{model}"
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("table.md", "table.csv", "heatmap.png", "summary.md"):
            shutil.copy(tmp / model / name, dest / name)
        print(model, f"{report[model]['seconds']:.1f} s", flush=True)
        print((tmp / model / "summary.md").read_text())
    (out_dir() / "study.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
