"""The pipeline, written once: a model becomes an integer graph, a schedule, a program.

    load -> prune -> low-bit weights -> fuse activations -> calibrate -> quantize      (integer_model)
         -> schedule (fused stacks) -> codegen -> unfused twin, stacks checked -> dense twin   (compile_model)

Every function here is a plain function of what it is handed; the command line, the
benchmarks and the examples call these and nothing under them.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from sieve.arch import ArchConfig, Program, load_arch
from sieve.codegen import generate
from sieve.data import Data, calibration_inputs
from sieve.errors import UsageError
from sieve.frontend import FrontendError, load_onnx, load_sv
from sieve.ir import DType, Graph, IRError, verify
from sieve.ir import passes
from sieve.scheduler import Schedule, fuse, only, schedule, unfuse

log = logging.getLogger("sieve")

# a model: a file (.onnx, .sv), an onnx.ModelProto, or a Graph
ModelLike = Union[str, Path, Graph, Any]
# progress(stage, done, total): called as long stages advance (the CLI draws a bar with it)
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@contextmanager
def _stage(name: str, seconds: dict[str, float]) -> Iterator[None]:
    """Time one stage and log it (`sieve -v`)."""
    log.info("%s ...", name)
    t0 = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - t0
    log.info("%s: %.2f s", name, seconds[name])


def resolve_arch(arch: str | Path | ArchConfig) -> ArchConfig:
    return arch if isinstance(arch, ArchConfig) else load_arch(arch)


def load_model(model: ModelLike, batch: int | None = None) -> Graph:
    """A verified Graph from a file, an onnx.ModelProto or a Graph. ``batch`` sets a symbolic
    (dynamic) batch dimension; a model whose batch is fixed must be asked for its own."""
    if isinstance(model, Graph):
        graph = model
    elif isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix == ".sv":
            graph = load_sv(path)
        elif path.suffix == ".onnx":
            graph = load_onnx(path, batch or 1)
        else:
            raise FrontendError(f"unknown model format '{path.suffix}'", str(path), hint="use a .sv or .onnx file")
    elif type(model).__name__ == "ModelProto":
        from sieve.frontend import import_model
        graph = import_model(model, f"<onnx model '{model.graph.name}'>", batch or 1)
    else:
        raise UsageError(f"a model is a .onnx or .sv file, an onnx.ModelProto or a sieve Graph, "
                         f"not {type(model).__name__}")
    if batch is not None:
        for node in graph.inputs:
            if node.out.shape[0] != batch:
                raise UsageError(f"input '{node.name}' has a fixed batch of {node.out.shape[0]}; --batch "
                                 f"{batch} applies only to models exported with a dynamic batch")
    return verify(graph)


def is_quantized(graph: Graph) -> bool:
    """A model that arrives quantized (QDQ/QOperator ONNX) keeps its own scales."""
    return any(n.out.dtype is not DType.FLOAT32 for n in graph)


def prune_model(graph: Graph, spec: str | float | None, scope: str = "layer", keep_ends: bool = False) -> Graph:
    """prune=0.9 (magnitude, a fraction) or prune="2:4" (N:M) on a float graph."""
    if spec is None:
        return graph
    if is_quantized(graph):
        raise UsageError("pruning needs a float model; a quantized model's zeros are found and used as they are")
    text = str(spec)
    try:
        if ":" in text:
            n, m = (int(v) for v in text.split(":"))
            return verify(passes.prune_nm(graph, n, m, keep_ends))
        return verify(passes.prune_magnitude(graph, float(text), scope, keep_ends))
    except ValueError:
        raise UsageError(f"prune takes a fraction (0.9) or N:M (2:4), got '{spec}'") from None


WEIGHTS = ("int8", "int4")


def lowbit_model(graph: Graph, weights: str = "int8", group: int = 0, clip: str = "mse",
                 keep_ends: bool = False) -> Graph:
    """weights="int4": every conv and dense layer's float weights on its int4 grid (per output channel, or
    with integer multipliers per ``group`` input channels; clipping by ``clip``), before calibration."""
    if weights not in WEIGHTS:
        raise UsageError(f"weights are {' or '.join(WEIGHTS)}, got '{weights}'")
    if weights == "int8":
        if group:
            raise UsageError("a scale group (--group) is for int4 weights (--weights int4)")
        return graph
    if is_quantized(graph):
        raise UsageError("int4 weights need a float model; a quantized model keeps its own weights")
    try:
        return verify(passes.lowbit_weights(graph, 4, group, clip, keep_ends))
    except IRError as err:
        raise UsageError(str(err)) from None


@dataclass(frozen=True)
class Lowered:
    """The front half's result: the model as imported, after pruning, and as integers."""
    graph: Graph
    pruned: Graph
    qgraph: Graph
    quantized_input: bool           # the model arrived quantized and keeps its own scales
    seconds: dict = field(default_factory=dict)


def integer_model(model: ModelLike, *, calibrate: Data | None = None, calibration: str = "minmax",
                  percentile: float = 99.99, prune: str | float | None = None, prune_scope: str = "layer",
                  keep_ends: bool = False, weights: str = "int8", group: int = 0, weight_clip: str = "mse",
                  batch: int | None = None, seed: int = 0, progress: Progress = _no_progress) -> Lowered:
    """Model -> int8 graph. A quantized model keeps its own scales; a float one is pruned (if asked),
    calibrated and quantized. The passes, in order:"""
    seconds: dict[str, float] = {}
    with _stage("load model", seconds):
        graph = load_model(model, batch)                     # ONNX / .sv import, BN folded, verified
    with _stage("prune", seconds):
        pruned = prune_model(graph, prune, prune_scope, keep_ends)   # on the float weights
    with _stage("low-bit weights", seconds):
        pruned = lowbit_model(pruned, weights, group, weight_clip, keep_ends)   # int4 grids, float weights
    if is_quantized(pruned):
        if calibrate is not None:
            log.warning("the model is already quantized; its own scales are kept and calibration data is ignored")
        return Lowered(graph, pruned, pruned, True, seconds)
    with _stage("fuse activations", seconds):
        fused = verify(passes.fuse_activations(pruned))             # ReLU into its producer, before calibration
    with _stage("calibrate", seconds):
        shapes = {n.name: n.out.shape for n in fused.inputs}
        samples = calibration_inputs(shapes, calibrate, seed)
        ranges = passes.calibrate(fused, samples, calibration, percentile,
                           progress=lambda d, t: progress("calibrate", d, t))   # range of every tensor
    with _stage("quantize", seconds):
        qgraph = verify(passes.quantize_graph(fused, ranges))       # int8 weights/activations, int32 bias
    return Lowered(graph, pruned, qgraph, False, seconds)


@dataclass(frozen=True)
class Compiled:
    """A compiled model: the program, and everything it was made from (for reports)."""
    program: Program
    lowered: Lowered
    schedule: Schedule
    seconds: dict = field(default_factory=dict)

    @property
    def qgraph(self) -> Graph:
        return self.lowered.qgraph


COMPRESSION = ("none", "zvc")


def activation_densities(qgraph: Graph, calibrate: Data | None, seed: int = 0) -> dict[str, float]:
    """Per int8 tensor, the fraction of its bytes that are not its zero point on the first calibration
    input (seeded standard-normal data without calibration data), by the reference interpreter: the
    estimate a binary carries for zero-value-compressed transfers in timing-only runs."""
    import numpy as np
    from sieve.ir import quantize_inputs, run_int
    shapes = {n.name: n.out.shape for n in qgraph.inputs}
    if calibrate is not None:
        samples = calibration_inputs(shapes, calibrate, seed)
    else:
        rng = np.random.default_rng(seed)
        samples = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    first = {k: v[:shapes[k][0]] for k, v in samples.items()}
    values = run_int(qgraph, quantize_inputs(qgraph, first), keep_all=True)
    return {n.name: float(np.mean(values[n.name] != n.out.quant.zp)) for n in qgraph
            if n.out.dtype is DType.INT8 and n.name in values and n.out.quant is not None}


def compile_model(model: ModelLike, arch: str | Path | ArchConfig = "default", *, calibrate: Data | None = None,
                  calibration: str = "minmax", percentile: float = 99.99, prune: str | float | None = None,
                  prune_scope: str = "layer", keep_ends: bool = False, weights: str = "int8", group: int = 0,
                  weight_clip: str = "mse", balance: bool = True, dense_twin: bool = True, partition: str = "auto",
                  fusion: str = "auto", tile: int | None = None, overlap: str | None = None,
                  objective: str = "cycles", compress_activations: str = "none", compress_weights: str = "none",
                  batch: int | None = None, seed: int = 0, progress: Progress = _no_progress) -> Compiled:
    """The whole compiler. The stages, in order:"""
    for what, value in (("compress_activations", compress_activations), ("compress_weights", compress_weights)):
        if value not in COMPRESSION:
            raise UsageError(f"{what} must be one of {', '.join(COMPRESSION)}, got {value!r}")
    arch = resolve_arch(arch)
    lowered = integer_model(model, calibrate=calibrate, calibration=calibration, percentile=percentile,
                            prune=prune, prune_scope=prune_scope, keep_ends=keep_ends, weights=weights,
                            group=group, weight_clip=weight_clip, batch=batch, seed=seed,
                            progress=progress)                       # load, prune, calibrate, quantize
    seconds = dict(lowered.seconds)
    with _stage("schedule", seconds):
        plain = schedule(lowered.qgraph, arch, balance=balance,      # format, tiling, cores per layer
                         partition=partition, objective=objective, progress=lambda d, t: progress("schedule", d, t))
    with _stage("fuse", seconds):
        sched = fuse(plain, fusion, tile, overlap, partition)        # fused stacks
    compress = frozenset(k for k, v in (("activations", compress_activations), ("weights", compress_weights))
                         if v == "zvc")
    if compress:
        with _stage("densities", seconds):                           # zero-value compression's estimates
            densities = (activation_densities(lowered.qgraph, calibrate, seed)
                         if "activations" in compress else {})
        sched = replace(sched, compress=compress, densities=densities)
        plain = replace(plain, compress=compress, densities=densities)   # the unfused twin too
    with _stage("codegen", seconds):
        program = generate(sched)                                    # allocation, instructions, symbols
    if any(p.stack is not None for p in sched.layers) and (dense_twin or fusion == "auto"):
        with _stage("unfused twin", seconds):                        # the fused layers one by one, simulated
            fused_layers = {n for p in sched.layers if p.stack is not None for n in p.stack.nodes}
            plain_stats = simulate_timing(generate(only(plain, fused_layers)))
        if fusion == "auto":
            with _stage("check stacks", seconds):                    # keep the stacks that measure better
                sched, program = keep_paying_stacks(sched, program, plain, plain_stats)
        if dense_twin:
            program = with_unfused_twin(program, plain_stats)        # --report fusion
    if dense_twin:
        with _stage("dense twin", seconds):
            program = with_dense_twin(lowered.qgraph, arch, program, partition, fusion, tile,
                                      overlap, objective)            # dense reference, --report
    return Compiled(program, lowered, sched, seconds)


def objective_costs(qgraph: Graph, arch: ArchConfig, partition: str = "auto") -> dict[str, tuple[int, float]]:
    """Per objective (cycles, energy, edp): the cost model's cycles and energy (pJ) of the conv and dense
    layers as that objective would schedule them, layer by layer: what each choice would cost."""
    out = {}
    for objective in ("cycles", "energy", "edp"):
        plans = [p for p in schedule(qgraph, arch, partition=partition, objective=objective).layers
                 if p.kind == "matmul"]
        out[objective] = (sum(p.est_cycles for p in plans), sum(p.est_energy_pj for p in plans))
    return out


def simulate_timing(program: Program):
    from sieve.simulator import run as simulate_program
    return simulate_program(program, functional=False).stats


def _dram(layer) -> int:
    return int(layer.events["dram_read_bytes"] + layer.events["dram_write_bytes"])


def keep_paying_stacks(sched: Schedule, program: Program, plain: Schedule, plain_stats) -> tuple[Schedule, Program]:
    """The cost model proposes the stacks, the simulator disposes: the program is simulated (timing only)
    and every stack that moved more DRAM bytes than its layers one by one (``plain``, simulated as
    ``plain_stats``), or did not save at least two DRAM round trips of cycles (what neighbouring layers
    overlap at a boundary, which the layers measured alone do not show), is replaced by them."""
    ref = {layer.name: layer for layer in plain_stats.layers}
    margin = 2 * sched.arch.memory.dram_latency_cycles
    losers = set()
    for layer in simulate_timing(program).layers:
        plan = sched.plan(layer.name)
        if plan.stack is None:
            continue
        members = [ref[m] for m in plan.stack.nodes]
        if (sum(m.cycles for m in members) - layer.cycles < margin
                or _dram(layer) > sum(_dram(m) for m in members)):
            losers.add(layer.name)
    if not losers:
        return sched, program
    log.info("%d fused stack(s) measured slower or more DRAM-hungry than their layers, unfused: %s",
             len(losers), ", ".join(sorted(losers)))
    sched = unfuse(sched, plain, losers)
    return sched, generate(sched)


def with_dense_twin(qgraph: Graph, arch: ArchConfig, program: Program, partition: str = "auto",
                    fusion: str = "none", tile: int | None = None, overlap: str | None = None,
                    objective: str = "cycles") -> Program:
    """Record, per layer, the same layer compiled dense on the same arch and simulated (timing only); a fused
    stack only where the dense program fused the same layers."""
    from sieve.simulator import run as simulate_program
    if all(s.weight_format == "dense" for s in program.layers):
        return program
    dense_sched = schedule(qgraph, arch, sparse=False, partition=partition, fusion=fusion, tile=tile, overlap=overlap,
                           objective=objective)
    dense_program = generate(dense_sched)
    dense = simulate_program(dense_program, functional=False).stats
    ref = {layer.name: layer for layer in dense.layers}
    members = {s.name: s.members for s in dense_program.layers}
    layers = tuple(replace(s, dense_cycles=ref[s.name].cycles, dense_mac_cycles=ref[s.name].mac_cycles,
                           dense_energy_pj=ref[s.name].energy_total_pj)
                   if s.name in ref and members[s.name] == s.members else s
                   for s in program.layers)
    return replace(program, layers=layers)


def with_unfused_twin(program: Program, plain_stats) -> Program:
    """Record, per fused stack, its layers compiled one by one on the same arch and simulated (timing only,
    ``plain_stats``): their cycles, energy and DRAM bytes summed (layers run one after another)."""
    ref = {layer.name: layer for layer in plain_stats.layers}
    layers = []
    for s in program.layers:
        if s.members:
            ls = [ref[m] for m in s.members]
            s = replace(s, unfused_cycles=sum(x.cycles for x in ls), unfused_energy_pj=sum(x.energy_total_pj for x in ls),
                        unfused_dram_bytes=sum(_dram(x) for x in ls))
        layers.append(s)
    return replace(program, layers=tuple(layers))
