"""Sieve: compile models for sparse INT8 accelerators and simulate the binaries cycle by cycle, bit-exact.

    import sieve
    prog = sieve.compile("resnet50.onnx", arch="default", calibrate="calib.npy", prune=0.9)
    res = sieve.simulate(prog, inputs=x)                # res.outputs, res.floats, res.stats
    sieve.save(prog, "r50.sieve")
    q = sieve.quantize("resnet50.onnx", calibrate="calib.npy", prune="2:4")   # a QDQ onnx.ModelProto
    df = sieve.sweep({"memory.l2_bytes": [0, 1 << 20]}, models=["resnet50"])  # a pandas DataFrame

Errors a user can cause are all in ``sieve.ERRORS`` (``except sieve.ERRORS``). docs/python-api.md
has a worked example. Names are imported on first use, so that ``sieve`` commands that need only
the simulator start fast.
"""
from __future__ import annotations

import importlib

# public name -> module that defines it
_EXPORTS = {
    "compile": "sieve.api", "quantize": "sieve.api", "simulate": "sieve.api", "interpret": "sieve.api",
    "load": "sieve.api", "save": "sieve.api", "Interpretation": "sieve.api",
    "compile_model": "sieve.pipeline", "integer_model": "sieve.pipeline", "Compiled": "sieve.pipeline",
    "Lowered": "sieve.pipeline",
    "ArchConfig": "sieve.arch", "Program": "sieve.arch", "Graph": "sieve.ir",
    "RunResult": "sieve.simulator", "RunStats": "sieve.simulator",
    "ERRORS": "sieve.errors", "UsageError": "sieve.errors",
    "sweep": "sieve.sweeps",
}
_MODULES = ("arch", "zoo")
__all__ = sorted(_EXPORTS) + list(_MODULES) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"sieve.{name}")
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version
        try:
            value = version("sieve")
        except PackageNotFoundError:        # a source tree that is not installed
            value = "0+unknown"
    else:
        raise AttributeError(f"module 'sieve' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
