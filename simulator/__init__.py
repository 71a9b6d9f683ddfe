"""The simulator: reads only a binary (and optionally an arch to run it on)."""
from simulator.errors import SimulatorError, Trap
from simulator.run import RunResult, load_binary, run
from simulator.stats import LayerStats, RunStats
from simulator.timing import simulate_timing

__all__ = ["SimulatorError", "Trap", "RunResult", "load_binary", "run", "LayerStats", "RunStats",
           "simulate_timing"]
