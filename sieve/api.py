"""The Python API: compile, quantize, simulate, interpret, load and save.

    import sieve
    prog = sieve.compile("resnet50.onnx", arch="default", calibrate="calib.npy", prune=0.9)
    res = sieve.simulate(prog, inputs=x)                 # outputs, per-layer stats, totals
    t = sieve.simulate(prog, arch=sieve.arch.load("default", **{"memory.dram_bytes_per_cycle": 8}),
                       timing_only=True)
    q = sieve.quantize("resnet50.onnx", calibrate=x, prune="2:4")   # an onnx.ModelProto
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sieve import files
from sieve.arch import ArchConfig, Program, check_compatible, encode_program
from sieve.data import Data, read_inputs
from sieve.errors import UsageError
from sieve.ir import dequantize_outputs, quantize_inputs, run_float, run_int
from sieve.ir.interpret import graph_batch
from sieve.ir.graph import Op
from sieve.pipeline import (ModelLike, Progress, _no_progress, compile_model, integer_model, is_quantized,
                            load_model, prune_model, resolve_arch)
from sieve.simulator import RunResult, load_binary
from sieve.simulator import run as _run
from sieve.threads import blas_threads


def compile(model: ModelLike, arch: str | Path | ArchConfig = "default", *, calibrate: Data | None = None,
            calibration: str = "minmax", percentile: float = 99.99, prune: str | float | None = None,
            prune_scope: str = "layer", keep_ends: bool = False, weights: str = "int8", group: int = 0,
            weight_clip: str = "mse", balance: bool = True, dense_twin: bool = True, partition: str = "auto",
            fusion: str = "auto", tile: int | None = None, overlap: str | None = None, objective: str = "cycles",
            compress_activations: str = "none", compress_weights: str = "none",
            batch: int | None = None, seed: int = 0, progress: Progress = _no_progress) -> Program:
    """Compile a model (.onnx/.sv file, onnx.ModelProto or Graph) for an arch (preset name, TOML file
    or ArchConfig). ``calibrate``: calibration data for a float model (a .npy/.npz file, a folder of
    images, an array or a dict of arrays by input name); ``prune``: a fraction (0.9) or "N:M";
    ``weights``: "int8" or "int4" (per output channel, or with ``group``: integer scale multipliers per
    that many input channels; clipping by ``weight_clip``, "mse" or "minmax"; docs/low-bit.md);
    ``partition``: how conv/dense layers are split across the arch's cores ("channels", "rows",
    "batch", or "auto": the cost model's choice per layer), or "pipeline": consecutive layers on
    different cores (docs/memory.md); ``fusion``: consecutive image layers as fused stacks, "auto" where
    the cost model finds they pay, "max" wherever they fit, "none"; ``tile``: output rows per band of a
    stack; ``overlap``: "recompute" or "cache" the rows neighbouring bands share (docs/fusion.md);
    ``objective``: what each layer's format, tiling and partition minimize, "cycles", "energy" or "edp"
    (the cost model's estimates; docs/low-bit.md); ``compress_activations`` / ``compress_weights``:
    "zvc" moves intermediate activations / weights through DMA zero-value compressed (docs/low-bit.md)."""
    return compile_model(model, arch, calibrate=calibrate, calibration=calibration, percentile=percentile,
                         prune=prune, prune_scope=prune_scope, keep_ends=keep_ends, weights=weights, group=group,
                         weight_clip=weight_clip, balance=balance,
                         dense_twin=dense_twin, partition=partition, fusion=fusion, tile=tile, overlap=overlap,
                         objective=objective, compress_activations=compress_activations,
                         compress_weights=compress_weights, batch=batch, seed=seed, progress=progress).program


def quantize(model: ModelLike, *, calibrate: Data | None = None, calibration: str = "minmax",
             percentile: float = 99.99, prune: str | float | None = None, prune_scope: str = "layer",
             keep_ends: bool = False, weights: str = "int8", group: int = 0, weight_clip: str = "mse",
             batch: int | None = None, seed: int = 0, progress: Progress = _no_progress):
    """The model Sieve compiles (calibrated, pruned, BN folded) as a QDQ onnx.ModelProto that onnxruntime
    runs to exactly Sieve's integers; compiling it gives the same binary as compiling ``model``."""
    from sieve.frontend.onnx_export import export_qdq
    lowered = integer_model(model, calibrate=calibrate, calibration=calibration, percentile=percentile,
                            prune=prune, prune_scope=prune_scope, keep_ends=keep_ends, weights=weights, group=group,
                            weight_clip=weight_clip, batch=batch, seed=seed, progress=progress)
    return export_qdq(lowered.qgraph)


def load(path: str | Path | bytes, arch: str | Path | ArchConfig | None = None) -> Program:
    """Read a .sieve binary (checked); with ``arch``, retarget it (same core, other memory/clock/energy)."""
    return load_binary(path, None if arch is None else resolve_arch(arch))


def save(program: Program, path: str | Path) -> int:
    """Write a .sieve binary atomically; returns its size in bytes."""
    raw = encode_program(program)
    files.write_bytes(path, raw)
    return len(raw)


def simulate(program: Program | str | Path | bytes, inputs: Data | None = None,
             arch: str | Path | ArchConfig | None = None, timing_only: bool = False,
             threads: int | None = 1) -> RunResult:
    """Run a program: outputs (bit-exact), per-layer statistics and totals. ``inputs``: float data
    (quantized with the binary's input scales) or integers as the model's own type; a leading
    batch runs one inference per item. ``arch`` may differ from the compiled one only in what the
    instruction stream cannot see (memory, clock, energy). ``threads``: BLAS threads (None: all)."""
    if isinstance(program, Program):
        if arch is not None:
            target = resolve_arch(arch)
            check_compatible(program, target, "program")
            program = Program(target, program.streams, program.data, program.dram_bytes, program.inputs,
                              program.outputs, program.layers)
    else:
        program = load(program, arch)
    if timing_only:
        return _run(program, None, functional=False)
    if inputs is None:
        raise UsageError("inputs are required for a bit-exact run (or ask for timing_only)")
    arrays = read_inputs(inputs, {d.name: d.shape for d in program.inputs})
    with blas_threads(threads):
        return _run(program, arrays)


@dataclass(frozen=True)
class Interpretation:
    """The reference interpreter's result, keyed by the model's output names."""
    outputs: dict[str, np.ndarray]       # integers, in the model's own type (absent for a float run)
    floats: dict[str, np.ndarray]        # dequantized (or the float model's values)


def interpret(model: ModelLike, inputs: Data, *, float_model: bool = False, calibrate: Data | None = None,
              calibration: str = "minmax", percentile: float = 99.99, prune: str | float | None = None,
              prune_scope: str = "layer", keep_ends: bool = False, weights: str = "int8", group: int = 0,
              weight_clip: str = "mse", batch: int | None = None, seed: int = 0,
              threads: int | None = 1) -> Interpretation:
    """The golden model: the integer reference interpreter on the graph ``compile`` would compile
    (same calibration and pruning options give the same integers), or with ``float_model`` the float
    graph (pruned when asked). A leading batch runs one inference per item."""
    source = load_model(model, batch)                # the inputs are checked before any long work
    by_io = {source.io_name(n.name): n for n in source.inputs}
    arrays = read_inputs(inputs, {k: n.out.shape for k, n in by_io.items()})
    if float_model:                                  # no quantization: the (pruned) float graph
        graph = prune_model(source, prune, prune_scope, keep_ends)
        if is_quantized(graph):
            from sieve.ir.passes import dequantize_graph
            graph = dequantize_graph(graph)
    else:
        graph = integer_model(source, calibrate=calibrate, calibration=calibration, percentile=percentile,
                              prune=prune, prune_scope=prune_scope, keep_ends=keep_ends, weights=weights,
                              group=group, weight_clip=weight_clip, seed=seed).qgraph
    arrays = {by_io[k].name: v for k, v in arrays.items()}
    with blas_threads(threads):
        if float_model:
            outs = run_float(graph, {k: v.astype(np.float32) for k, v in arrays.items()})
            return Interpretation({}, {graph.io_name(k): v for k, v in outs.items()})
        return _interpret_int(graph, arrays)


def _interpret_int(graph, arrays: dict[str, np.ndarray]) -> Interpretation:
    """Per inference; the keys and types of ``simulate``: a host softmax output carries, as integers,
    the logits it was computed from (what the accelerator wrote)."""
    from sieve.ir.registry import opdef
    q_in = {}
    for node in graph.inputs:
        x = arrays[node.name]
        if x.dtype == np.uint8 and node.out.quant.unsigned:
            x = (x.astype(np.int16) - 128).astype(np.int8)
        q_in[node.name] = x if x.dtype == np.int8 else quantize_inputs(graph, {node.name: x})[node.name]
    src = {k: graph[k].inputs[0] if opdef(graph[k].op).scale == "host" else k for k in graph.outputs}
    keep = any(s != k for k, s in src.items())
    batch = len(next(iter(q_in.values())))
    step = graph_batch(graph) if any(n.op is Op.MOVE for n in graph) else 1    # views span the model's batch
    if batch % step:
        raise UsageError(f"a batch of {batch} is not a multiple of the model's batch of {step}")
    parts = [run_int(graph, {n: x[i:i + step] for n, x in q_in.items()}, keep_all=keep)
             for i in range(0, batch, step)]
    ints = {k: np.concatenate([p[src[k]] for p in parts]) for k in graph.outputs}
    host = {k: np.concatenate([p[k] for p in parts]) for k in graph.outputs if src[k] != k}
    floats = dequantize_outputs(graph, {k: v for k, v in ints.items() if src[k] == k and v.dtype != np.int32})
    floats.update(host)
    model_ints = {}
    for k, v in ints.items():
        q = graph[src[k]].out.quant
        model_ints[graph.io_name(k)] = (v.astype(np.int16) + 128).astype(np.uint8) if q is not None and \
            q.unsigned else v
    return Interpretation(model_ints, {graph.io_name(k): v for k, v in floats.items()})
