"""The errors a user can cause, one tuple to catch them all.

Each layer raises its own typed error (it cannot import a common base class from the
public face above it); ``ERRORS`` collects them so that ``except sieve.ERRORS`` catches
every bad input, and nothing else. The tuple is built on first use, so that importing
this module (every command does) does not import every layer.
"""
from __future__ import annotations


class UsageError(Exception):
    """A bad input to the library or the command line: a file, a shape, an option."""


def _errors() -> tuple:
    from sieve.arch import ArchError, BinaryFormatError, ISAError
    from sieve.codegen import AsmError, CodegenError
    from sieve.frontend import FrontendError
    from sieve.ir import IRError
    from sieve.scheduler import ScheduleError
    from sieve.simulator import SimulatorError
    from sieve.dse.engine import SweepInterrupted
    from sieve.dse.spec import SpecError
    return (UsageError, FrontendError, IRError, ArchError, ISAError, BinaryFormatError, ScheduleError,
            CodegenError, AsmError, SimulatorError, SpecError, SweepInterrupted)


def __getattr__(name: str):
    if name == "ERRORS":
        value = globals()["ERRORS"] = _errors()
        return value
    raise AttributeError(f"module 'sieve.errors' has no attribute '{name}'")


__all__ = ["ERRORS", "UsageError"]
