"""Where benchmarks write: benchmarks/out/ (not tracked) unless SIEVE_BENCH_OUT names another folder
(`make bench OUT=benchmarks/results` publishes into the tracked results)."""
from __future__ import annotations

import json
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


def publish(name: str, report, text: str, plot=None) -> None:
    """Write a benchmark's results as ``name``.json (``report``) and ``name``.md (``text``), and
    ``name``.png when ``plot(report, path)`` draws one; print the text."""
    out = out_dir()
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    (out / f"{name}.md").write_text(text)
    if plot is not None:
        plot(report, out / f"{name}.png")
    print(text)


def timed(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one `sieve` command in a new process (imports included); its failure raises."""
    t0 = time.perf_counter()
    done = subprocess.run([SIEVE] + argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"sieve {' '.join(argv)} failed: {done.stderr}")
    return time.perf_counter() - t0


def by_kind(stats: dict, kind) -> dict:
    """Cycles and energy (mJ) of a run's layers (its --stats JSON) summed by ``kind(layer)``."""
    kinds: dict = {}
    for layer in stats["layers"]:
        k = kinds.setdefault(kind(layer), [0, 0.0])
        k[0] += layer["cycles"]
        k[1] += layer["energy_total_pj"]
    return {k: {"cycles": c, "energy_mj": round(e / 1e9, 3)} for k, (c, e) in kinds.items()}


def kinds_table(title: str, kinds: dict) -> list[str]:
    """Markdown lines: ``title``, then each kind's cycles, share of all and energy, largest first."""
    out = ["", title, "", "| kind | cycles | share | energy |", "|---|---:|---:|---:|"]
    total = sum(v["cycles"] for v in kinds.values()) or 1
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]["cycles"]):
        out.append(f"| {k} | {v['cycles']:,} | {100 * v['cycles'] / total:.1f} % | {v['energy_mj']} mJ |")
    return out
