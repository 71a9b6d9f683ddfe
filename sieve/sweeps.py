"""Design-space sweeps from Python: ``sieve.sweep(space, models=[...])`` -> a pandas DataFrame.

The sweep itself is ``dse`` (spec, store, engine); this module hands it the pipeline's two steps,
so that the compiler a sweep runs is the one ``sieve compile`` runs.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import tempfile
from pathlib import Path
from typing import Any, Callable

from sieve.arch.config import ArchConfig
from sieve.ir.graph import Graph


def prepare_model(model: str, size: int | None, calibrate: str | None, prune) -> Graph:
    """A zoo name or model file -> its int8 graph (pruned, calibrated, quantized)."""
    from sieve.frontend.zoo import ZOO, build
    from sieve.pipeline import integer_model
    source: Any = model
    if model in ZOO:
        source = build(model, size=size) if size is not None and ZOO[model].onnx is not None else build(model)
    return integer_model(source, calibrate=calibrate, prune=prune).qgraph


def build_program(qgraph: Graph, arch: ArchConfig, partition: str):
    """An int8 graph -> the program for ``arch`` (no dense twin: sweeps report totals)."""
    from sieve.pipeline import compile_model
    return compile_model(qgraph, arch, partition=partition, dense_twin=False).program


@contextlib.contextmanager
def executor_for(workers: int = 1, dask: str | None = None):
    """The engine: the calling process (1 worker), a local process pool, or a Dask cluster (an
    address, or "local" for a LocalCluster of ``workers`` processes)."""
    if dask:
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True,
                               dashboard_address=None) if dask == "local" else None
        try:
            client = Client(cluster if cluster is not None else dask, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            from sieve.errors import UsageError
            raise UsageError(f"cannot reach the Dask scheduler at '{dask}': {err}") from None
        try:
            yield client.get_executor()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif workers > 1:
        with cf.ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
    else:
        from sieve.dse.engine import InlineExecutor
        yield InlineExecutor()


def run_spec(spec, out: str | Path, workers: int = 1, dask: str | None = None,
             progress: Callable[[str, int, int], None] | None = None):
    """Run a spec's missing points into ``out`` with this pipeline on the chosen engine; returns the
    engine's ``Outcome``. ``sieve sweep``, ``sieve study`` and ``sweep()`` all run through here."""
    from sieve.dse.engine import run_sweep
    with executor_for(workers, dask) as executor:
        return run_sweep(spec, out, prepare_model, build_program, executor, progress)


def sweep(space: dict | str | Path, out: str | Path | None = None, *, models: list[str] | None = None,
          prune: list | None = None, partition: list[str] | None = None, arch: str = "default",
          mode: str = "timing", samples: int = 0, seed: int = 0, size: int | None = None,
          calibrate: str | None = None, constraints: list[str] | None = None, workers: int = 1,
          dask: str | None = None, progress: Callable[[str, int, int], None] | None = None):
    """Run a sweep and return one row per point (pandas). ``space`` is a spec file, or a dict of arch
    fields to values (``{"core.pe_rows": [8, 16], "memory.l2_bytes": [0, 1 << 20]}``) with the other
    spec keys given here (docs/sweeps.md). Results are stored in ``out`` (resumable: points already
    there are not run again); without ``out`` in a temporary folder."""
    from sieve.dse.spec import load_spec, spec_from_dict
    from sieve.dse.store import Store
    if isinstance(space, (str, Path)):
        spec = load_spec(space)
    else:
        data: dict[str, Any] = {"models": models or [], "space": space, "arch": arch, "mode": mode,
                                "samples": samples, "seed": seed}
        for key, value in (("prune", prune), ("partition", partition), ("size", size), ("calibrate", calibrate),
                           ("constraints", constraints)):
            if value is not None:
                data[key] = ["none" if v is None else v for v in value] if key == "prune" else value
        spec = spec_from_dict(data, "sieve.sweep()")
    with contextlib.ExitStack() as stack:
        if out is None:
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="sieve-sweep-"))
        run_spec(spec, out, workers, dask, progress)
        return Store(out).points()
