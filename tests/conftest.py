"""The test suite runs on every core (pytest-xdist, ``-n auto`` in pyproject.toml): each worker keeps its
math libraries to one thread, so the workers do not fight over the cores."""
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
