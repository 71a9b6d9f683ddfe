"""The long fuzz run (docs/reliability.md): over a million malformed inputs across every surface, on
two worker processes, each case limited to 10 s and each worker to 2 GiB of resident memory.

Surfaces run in chunks; after each chunk the tallies so far are written to fuzz.json and fuzz.md, so
a run that is stopped keeps what it measured. ``--scale 0.01`` runs one hundredth of it."""
from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import out_dir
from sieve.fuzz import BAD, KINDS, SURFACES, Tally, fuzz, report

# cases per surface, the slow ones first: the cheap surfaces (a binary decoded and run: ~9 ms) take most
# of the million, the ones that compile a model (~40-100 ms a case) fewer
CASES = {"onnx": 15_000, "asm": 12_000, "sv": 12_000, "arch": 60_000, "inputs": 250_000, "binary": 700_000}
CHUNK = 20_000


def merge(total: Tally, part: Tally) -> None:
    total.cases += part.cases
    for k in KINDS:
        total.kinds[k] += part.kinds[k]
    total.peak_rss = max(total.peak_rss, part.peak_rss)
    total.slowest = max(total.slowest, part.slowest)
    total.seconds += part.seconds
    total.bad += part.bad


def write(tallies: dict[str, Tally], wall: float, workers: int) -> None:
    out = out_dir()
    rows = {s: {"cases": t.cases, **t.kinds, "peak_rss_mib": round(t.peak_rss / 2 ** 20),
                "slowest_s": round(t.slowest, 2), "ms_per_case": round(1000 * t.seconds / max(t.cases, 1), 1),
                "bad": t.bad[:50]} for s, t in tallies.items()}
    (out / "fuzz.json").write_text(json.dumps({"workers": workers, "wall_s": round(wall), "surfaces": rows},
                                              indent=1))
    lines = ["# Fuzz run", "",
             f"{sum(t.cases for t in tallies.values()):,} cases on {workers} worker processes in {wall / 60:.0f} "
             "minutes; a case over 10 s of CPU time is a hang, a worker over 2 GiB resident a memory blow-up. "
             "Slowest s and ms/case are CPU time of one case in its worker.", "",
             "| surface | cases | clean rejections | accepted | internal errors | warnings | hangs | memory | "
             "peak MiB | slowest s | ms/case |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, r in rows.items():
        lines.append(f"| {s} | {r['cases']:,} | {r['rejected']:,} | {r['accepted']:,} | {r['internal']} | "
                     f"{r['warning']} | {r['hang']} | {r['memory']} | {r['peak_rss_mib']} | {r['slowest_s']} | "
                     f"{r['ms_per_case']} |")
    bad = [f"- {s} case {i}: {kind}: {detail}" for s, t in tallies.items() for i, kind, detail in t.bad[:20]]
    lines += ["", "Defects found:" if bad else "No internal error, warning, hang or memory blow-up.", *bad, ""]
    (out / "fuzz.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--surface", action="append", choices=SURFACES)
    p.add_argument("--cases", action="append", default=[], metavar="SURFACE=N", help="cases of one surface")
    p.add_argument("--start", type=int, default=0, metavar="I",
                   help="first case number (a run continued where another stopped covers new cases)")
    args = p.parse_args()
    counts = {s: int(CASES[s] * args.scale) for s in (args.surface or ([] if args.cases else CASES))}
    counts.update({k: int(v) for k, v in (c.split("=") for c in args.cases)})
    t0 = time.perf_counter()
    tallies = {s: Tally() for s in counts}
    for s in tallies:
        n = counts[s]
        for start in range(0, n, CHUNK):
            part = fuzz({s: min(CHUNK, n - start)}, args.workers, start=args.start + start)[s]
            merge(tallies[s], part)
            write(tallies, time.perf_counter() - t0, args.workers)
            print(f"{s}: {tallies[s].cases:,} of {n:,}", {k: v for k, v in tallies[s].kinds.items() if v},
                  flush=True)
    print(report(tallies))
    if any(t.kinds[k] for t in tallies.values() for k in BAD):
        raise SystemExit("the fuzz run found defects (listed above)")


if __name__ == "__main__":
    main()
