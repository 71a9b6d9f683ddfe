"""Where benchmarks write: benchmarks/out/ (not tracked) unless SIEVE_BENCH_OUT names another folder
(`make bench OUT=benchmarks/results` publishes into the tracked results)."""
from __future__ import annotations

import os
from pathlib import Path


def out_dir() -> Path:
    path = Path(os.environ.get("SIEVE_BENCH_OUT") or Path(__file__).parent / "out")
    path.mkdir(parents=True, exist_ok=True)
    return path
