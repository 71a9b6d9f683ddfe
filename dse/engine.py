"""Running a sweep: prepare each model once, compile once per fingerprint, simulate every point.

Points whose arches differ only where the instruction stream cannot see (memory, clock, energy,
and the timing-only core fields: ``ArchConfig.fingerprint``) share one binary: it is compiled for
the first such point and run on each with its own arch, as ``sieve run --arch`` does. Three phases,
each a set of independent tasks on an executor (``concurrent.futures``: a local process pool, the
calling process, or a Dask cluster's executor):

1. prepare: load, prune, calibrate and quantize each (model, pruning) once; the integer graph is
   cached in ``OUT/cache/``;
2. compile: one binary per (model, pruning, partition, fingerprint), saved in ``OUT/binaries/``;
3. simulate: one task per point (timing-only, or bit-exact on seeded inputs), its row returned to
   the driver, which appends finished rows to the store every few seconds.

The pipeline's functions come from the caller (the ``sieve`` face), which keeps this layer below
it: ``prepare(model, size, calibrate, prune) -> Graph`` and ``build(graph, arch, partition) ->
Program``. A task that raises is recorded as its points' ``error`` and the sweep goes on; a killed
worker or an interrupted driver loses only the points not yet returned, and the next run with the
same spec and folder runs only the missing points.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import pickle
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sieve.arch.binary import Program, decode_program, encode_program
from sieve.arch.config import ArchConfig, ArchError
from sieve.dse.spec import Spec, point_arch, point_key
from sieve.dse.store import Store
from sieve.dse.study import classes_of
from sieve.simulator.run import run as simulate
from sieve.simulator.timing import STALLS

FLUSH_SECONDS = 5.0


class InlineExecutor(cf.Executor):
    """Runs each task in the calling process when it is submitted (one worker, no pickling)."""

    def submit(self, fn, /, *args, **kwargs):
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:         # noqa: BLE001 - handed to the caller like a pool would
            future.set_exception(err)
        return future


@dataclass
class Outcome:
    """What a sweep did: points run now, points found stored, compiles, models prepared."""
    ran: int = 0
    stored_before: int = 0
    compiled: int = 0
    prepared: int = 0
    errors: int = 0


def _model_id(model: str, size: int | None) -> str:
    if Path(model).is_file():
        h = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]
        return f"{Path(model).name}@{h}"
    return model if size is None else f"{model}@{size}"


def _calib_id(spec: Spec) -> str | None:
    """The calibration data's identity: a hash of its contents."""
    return spec.calibrate and hashlib.sha256(Path(spec.calibrate).read_bytes()).hexdigest()[:16]


def plan(spec: Spec, calib: str | None) -> tuple[list[dict], list[dict]]:
    """(every point as a task description, error rows for points whose arch is invalid); ``calib`` is
    ``_calib_id(spec)``."""
    tasks, bad = [], []
    arch_points = spec.points()
    index = 0
    for model in spec.models:
        mid = _model_id(model, spec.size)
        for prune in spec.prune:
            for partition in spec.partition:
                for point in arch_points:
                    base = {"point": index, "model": mid, "prune": "none" if prune is None else str(prune),
                            "partition": partition, "mode": spec.mode, **{k: v for k, v in point.items()}}
                    index += 1
                    try:
                        arch = point_arch(spec, point)
                    except ArchError as err:
                        key = hashlib.sha256(json.dumps([base, str(err)], sort_keys=True, default=str)
                                             .encode()).hexdigest()[:24]
                        bad.append({"key": key, **base, "error": f"invalid arch: {err}"})
                        continue
                    key = point_key(mid, prune, partition, spec.mode, calib, arch)
                    tasks.append({"key": key, "row": base, "model": model, "prune": prune, "partition": partition,
                                  "arch": arch, "group": (mid, str(prune), partition, arch.fingerprint())})
    return tasks, bad


def run_sweep(spec: Spec, out: str | Path, prepare: Callable, build: Callable,
              executor: cf.Executor | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> Outcome:
    """Run every point of ``spec`` that ``out`` does not hold yet; returns what it did."""
    out = Path(out)
    store = Store(out)
    for sub in ("cache", "binaries"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    done = store.done()
    # what points, cached graphs and binaries depend on besides the model: the calibration data's contents
    calib = _calib_id(spec)
    tasks, bad = plan(spec, calib)
    result = Outcome(stored_before=len(done))
    bad = [row for row in bad if row["key"] not in done]
    if bad:
        store.append(bad, [])
        result.errors += len(bad)
    todo = [t for t in tasks if t["key"] not in done]
    executor = executor or InlineExecutor()
    report = progress or (lambda phase, n, total: None)

    # 1. prepare each (model, pruning) once
    graphs: dict[tuple, str | BaseException] = {}
    wanted = sorted({(t["model"], t["prune"]) for t in todo}, key=str)
    futures = {}
    for model, prune in wanted:
        path = out / "cache" / f"{_digest([_model_id(model, spec.size), str(prune), calib])}.graph"
        if path.is_file():
            graphs[model, prune] = str(path)
            continue
        futures[executor.submit(_prepare, prepare, model, spec.size, spec.calibrate, prune, str(path))] = (model, prune)
    for n, f in enumerate(cf.as_completed(futures), 1):
        graphs[futures[f]] = _outcome(f)
        result.prepared += not isinstance(graphs[futures[f]], BaseException)
        report("prepare", n, len(futures))

    # 2. one compile per (model, pruning, partition, fingerprint)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for t in todo:
        groups[t["group"]].append(t)
    binaries: dict[tuple, str | BaseException] = {}
    futures = {}
    for g, members in groups.items():
        first = members[0]
        graph = graphs[first["model"], first["prune"]]
        path = out / "binaries" / f"{_digest(list(g) + [calib])}.sieve"
        if isinstance(graph, BaseException):
            binaries[g] = graph
        elif path.is_file():
            binaries[g] = str(path)
        else:
            futures[executor.submit(_compile, build, graph, first["arch"], first["partition"], str(path))] = g
    for n, f in enumerate(cf.as_completed(futures), 1):
        binaries[futures[f]] = _outcome(f)
        result.compiled += not isinstance(binaries[futures[f]], BaseException)
        report("compile", n, len(futures))

    # 3. every point; finished rows reach the store every few seconds, and when anything stops the loop
    pending_points: list[dict] = []
    pending_layers: list[dict] = []
    futures = {}
    for g, members in groups.items():
        for t in members:
            if isinstance(binaries[g], BaseException):
                pending_points.append({"key": t["key"], **t["row"], "error": _text(binaries[g])})
                result.errors += 1
            else:
                futures[executor.submit(_simulate, binaries[g], t["arch"], spec.mode, t["key"], t["row"])] = t
    last = time.monotonic()
    try:
        for n, f in enumerate(cf.as_completed(futures), 1):
            t = futures[f]
            done_ = _outcome(f)
            if isinstance(done_, BaseException):
                pending_points.append({"key": t["key"], **t["row"], "error": _text(done_)})
                result.errors += 1
            else:
                row, layers = done_
                pending_points.append(row)
                pending_layers += layers
                result.errors += row.get("error") is not None
            result.ran += 1
            report("simulate", n, len(futures))
            if time.monotonic() - last > FLUSH_SECONDS:
                store.append(pending_points, pending_layers)
                pending_points, pending_layers, last = [], [], time.monotonic()
    finally:
        store.append(pending_points, pending_layers)
    return result


def _outcome(f: cf.Future):
    """A task's result, or the exception it raised; a lost worker or pool stops the sweep (its points
    are not recorded, so that the next run does them)."""
    err = f.exception()
    if err is None:
        return f.result()
    if isinstance(err, (cf.BrokenExecutor, cf.CancelledError)) or \
            type(err).__name__ in ("KilledWorker", "CommClosedError"):
        raise SweepInterrupted(f"a worker was lost ({type(err).__name__}); the points it had not finished are "
                               "not stored: run the sweep again to do them") from err
    return err


class SweepInterrupted(Exception):
    pass


def _digest(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def _text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------- tasks (run on workers)

_GRAPHS: dict[str, Any] = {}
_PROGRAMS: dict[str, tuple[Program, dict[str, str]]] = {}    # binary -> (program, layer -> class)


def _prepare(prepare: Callable, model: str, size, calibrate, prune, path: str) -> str:
    graph = prepare(model, size, calibrate, prune)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(graph, fh)
    Path(tmp).replace(path)
    return path


def _compile(build: Callable, graph_path: str, arch: ArchConfig, partition: str, path: str) -> str:
    if graph_path not in _GRAPHS:
        with open(graph_path, "rb") as fh:
            _GRAPHS.clear()
            _GRAPHS[graph_path] = pickle.load(fh)
    program = build(_GRAPHS[graph_path], arch, partition)
    Path(path + ".classes.json").write_text(json.dumps(classes_of(_GRAPHS[graph_path])))
    tmp = path + ".tmp"
    Path(tmp).write_bytes(encode_program(program))
    Path(tmp).replace(path)
    return path


def _simulate(binary: str, arch: ArchConfig, mode: str, key: str, base: dict) -> tuple[dict, list[dict]]:
    t0 = time.perf_counter()
    if binary not in _PROGRAMS:
        if len(_PROGRAMS) > 4:
            _PROGRAMS.clear()
        classes = Path(binary + ".classes.json")
        _PROGRAMS[binary] = (decode_program(Path(binary).read_bytes(), binary),
                             json.loads(classes.read_text()) if classes.is_file() else {})
    compiled, classes = _PROGRAMS[binary]
    program = Program(arch, compiled.streams, compiled.data, compiled.dram_bytes, compiled.inputs, compiled.outputs,
                      compiled.layers)
    inputs = None
    if mode == "bitexact":               # seeded standard-normal inputs of the binary's shapes
        rng = np.random.default_rng(0)
        inputs = {d.name: rng.standard_normal(d.shape).astype(np.float32) for d in program.inputs}
    try:
        stats = simulate(program, inputs, functional=mode == "bitexact").stats
    except Exception as err:             # noqa: BLE001 - a point's failure is recorded, the sweep goes on
        return {"key": key, **base, "error": _text(err) + "\n" + traceback.format_exc(limit=3)}, []
    ev = stats.events
    l2 = stats.memory["l2"]
    row = {"key": key, **base, "arch": arch.name, "cores": arch.cores, "fingerprint": arch.fingerprint()[:16],
           "cycles": stats.cycles, "time_us": stats.time_us, "latency_ms": stats.time_us / 1000.0,
           "energy_uj": stats.energy_total_pj / 1e6, "energy_mj": stats.energy_total_pj / 1e9, "macs": stats.macs,
           "utilization": stats.utilization, "area_mm2": arch.area_mm2()["total"],
           "peak_macs_per_cycle": arch.cores * arch.core.pe_rows * arch.core.simd_lanes,
           "dram_bytes_per_cycle": arch.memory.dram_bytes_per_cycle,
           **{f"area_{k}_mm2": v for k, v in arch.area_mm2().items() if k != "total"}, "dram_bytes": ev["dram_read_bytes"] + ev["dram_write_bytes"],
           "dram_read_bytes": ev["dram_read_bytes"], "dram_write_bytes": ev["dram_write_bytes"],
           "l2_hit_rate": None if l2 is None else l2["hit_rate"],
           **{f"stall_{name}": stats.stall_cycles[name] for name in STALLS},
           **{f"energy_{k}_uj": v / 1e6 for k, v in stats.energy_pj.items()},
           "error": None, "host_seconds": time.perf_counter() - t0}
    layers = [{"key": key, "point": base["point"], "layer_index": i, "layer": layer.name, "op": layer.op,
               "class": "fused stack" if layer.op == "stack" else classes.get(layer.name, layer.op),
               "partition": layer.partition,
               "cycles": layer.cycles, "macs": layer.macs, "utilization": layer.utilization,
               "energy_uj": layer.energy_total_pj / 1e6,
               "dram_bytes": layer.events["dram_read_bytes"] + layer.events["dram_write_bytes"]}
              for i, layer in enumerate(stats.layers)]
    return row, layers
