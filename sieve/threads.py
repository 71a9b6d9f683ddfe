"""BLAS threads. Simulation and the reference interpreter run many small exact matrix products:
one BLAS thread is fastest there, and threads that oversubscribe a busy machine make it several
times slower. Sieve therefore limits BLAS to one thread while it simulates or interprets, unless
told otherwise (``threads=`` in the API, ``--threads`` on the command line; None or 0: the BLAS
library's own default)."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=int(threads), user_api="blas"):
        yield
