"""Where benchmarks write: benchmarks/out/ (not tracked) unless SIEVE_BENCH_OUT names another folder
(`make bench OUT=benchmarks/results` publishes into the tracked results)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SIEVE = str(Path(sys.executable).with_name("sieve"))      # the command, as a user runs it


def out_dir() -> Path:
    path = Path(os.environ.get("SIEVE_BENCH_OUT") or Path(__file__).parent / "out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def timed(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one `sieve` command in a new process (imports included); its failure raises."""
    t0 = time.perf_counter()
    done = subprocess.run([SIEVE] + argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"sieve {' '.join(argv)} failed: {done.stderr}")
    return time.perf_counter() - t0
