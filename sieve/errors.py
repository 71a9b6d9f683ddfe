"""The errors a user can cause, one tuple to catch them all.

Each layer raises its own typed error (it cannot import a common base class from the
public face above it); ``ERRORS`` collects them so that ``except sieve.ERRORS`` catches
every bad input, and nothing else.
"""
from __future__ import annotations

from sieve.arch import ArchError, BinaryFormatError, ISAError
from sieve.codegen import AsmError, CodegenError
from sieve.frontend import FrontendError
from sieve.ir import IRError
from sieve.scheduler import ScheduleError
from sieve.simulator import SimulatorError


class UsageError(Exception):
    """A bad input to the library or the command line: a file, a shape, an option."""


ERRORS = (UsageError, FrontendError, IRError, ArchError, ISAError, BinaryFormatError, ScheduleError,
          CodegenError, AsmError, SimulatorError)

__all__ = ["ERRORS", "UsageError", "ArchError", "AsmError", "BinaryFormatError", "CodegenError", "FrontendError",
           "IRError", "ISAError", "ScheduleError", "SimulatorError"]
