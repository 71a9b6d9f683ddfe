"""The bounded fuzz run of `make test` (docs/reliability.md): a few thousand structure-aware malformed
inputs on every surface, two worker processes. Each case must end accepted or cleanly rejected: no
internal error, no escaped warning, none over 10 s, no worker over 2 GiB. The cases are the same on
every run (numbered from seeds), so a failure names a case that `python -m sieve.fuzz --surface S
--case N -v` reproduces; the long run (benchmarks/bench_fuzz.py) draws other numbers."""
from __future__ import annotations

from sieve.fuzz import BAD, fuzz, report

CASES = {"binary": 1500, "asm": 150, "onnx": 800, "sv": 150, "arch": 400, "inputs": 800}


def test_bounded_fuzz_run_finds_no_defect():
    tallies = fuzz(CASES, workers=2, start=10_000_000)      # numbers the long run does not use
    text = report(tallies)
    for surface, t in tallies.items():
        assert t.cases == CASES[surface], text
        # the mutations reach both outcomes: some inputs still run, most are refused
        assert t.kinds["accepted"] > 0.02 * t.cases and t.kinds["rejected"] > 0.3 * t.cases, text
    assert not any(t.kinds[k] for t in tallies.values() for k in BAD), text
