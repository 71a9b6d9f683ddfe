"""Resource limits, specified once: the largest program, model and instruction Sieve accepts.

Every layer that reads a file checks what the file asks for against these before allocating it,
and names the limit and its environment variable in the error, so a user with a larger model (and
the memory for it) raises the limit and runs again (docs/reliability.md). They live here, below
every layer, because the frontends (models), the binary loader and the simulator all check them.
"""
from __future__ import annotations

import os


def env_limit(name: str, default: int) -> int:
    """``default``, or the whole number the environment variable ``name`` gives."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# elements of any one tensor of a model (its inputs, what a layer computes, a folded constant)
MAX_TENSOR_ELEMENTS = env_limit("SIEVE_MAX_TENSOR_ELEMENTS", 1 << 26)
# the DRAM a binary may ask the simulator to allocate
MAX_DRAM_BYTES = env_limit("SIEVE_MAX_DRAM_BYTES", 1 << 30)
# instructions per core in a binary
MAX_INSTRUCTIONS = env_limit("SIEVE_MAX_INSTRUCTIONS", 1 << 24)
# elements one instruction's window or padded input may span in the functional model
MAX_INSTRUCTION_WORK = env_limit("SIEVE_MAX_INSTRUCTION_WORK", 1 << 27)


def over(what: str, count: int, limit: int, variable: str) -> str:
    """The message for a count over its limit."""
    return (f"{what} has {count:,} elements, more than the limit of {limit:,} "
            f"(set {variable} to raise it)") if "bytes" not in what else \
           (f"{what} is {count:,} bytes, more than the limit of {limit:,} (set {variable} to raise it)")
