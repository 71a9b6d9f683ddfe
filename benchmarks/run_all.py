"""Run every benchmark. Results land in benchmarks/out/ (not tracked), or in the folder SIEVE_BENCH_OUT
names (`make bench OUT=benchmarks/results` to publish into the tracked results)."""
import runpy
import sys
from pathlib import Path

here = Path(__file__).parent
sys.path.insert(0, str(here.parent))
for script in sorted(here.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    runpy.run_path(str(script), run_name="__main__")
