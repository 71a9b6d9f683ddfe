"""The simulator: reads only a binary (and optionally an arch to run it on)."""
from sieve.simulator.check import Race, unordered_reads
from sieve.simulator.errors import SimulatorError, Trap
from sieve.simulator.run import RunResult, load_binary, run
from sieve.simulator.stats import LayerStats, RunStats
from sieve.simulator.timing import simulate_timing

__all__ = ["Race", "unordered_reads", "SimulatorError", "Trap", "RunResult", "load_binary", "run", "LayerStats", "RunStats",
           "simulate_timing"]
