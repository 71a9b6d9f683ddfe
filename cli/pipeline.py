"""The compile pipeline, one flat function per stage, every pass listed in order."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from arch.binary import Program
from arch.config import ArchConfig
from codegen import generate
from frontend import FrontendError, load_onnx, load_sv
from ir import DType, Graph, verify
from ir.passes import calibrate_minmax, fuse_activations, quantize_graph
from scheduler import Schedule, schedule

log = logging.getLogger("sieve")
DEFAULT_CALIBRATION_SAMPLES = 16


class UsageError(Exception):
    """A bad command-line input (file, shape, option)."""


def load_model(path: str | Path) -> Graph:
    path = Path(path)
    if path.suffix == ".sv":
        return verify(load_sv(path))
    if path.suffix == ".onnx":
        return verify(load_onnx(path))
    raise FrontendError(f"unknown model format '{path.suffix}'", str(path), hint="use a .sv or .onnx file")


def is_quantized(graph: Graph) -> bool:
    """A model that arrives quantized (QDQ/QOperator ONNX) keeps its own scales."""
    return any(n.out.dtype is not DType.FLOAT32 for n in graph)


def read_array_file(path: str | Path, graph_inputs: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A .npy (single-input models) or .npz keyed by input name; a missing batch axis is added."""
    path = Path(path)
    try:
        loaded = np.load(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: cannot read array file: {err}") from None
    if isinstance(loaded, np.ndarray):
        if len(graph_inputs) != 1:
            raise UsageError(f"{path}: the model has inputs {list(graph_inputs)}; give an .npz keyed by name")
        arrays = {next(iter(graph_inputs)): loaded}
    else:
        arrays = {k: loaded[k] for k in loaded.files}
    out = {}
    for name, shape in graph_inputs.items():
        if name not in arrays:
            raise UsageError(f"{path}: no array named '{name}' (has {', '.join(arrays)})")
        x = arrays[name]
        if x.ndim == len(shape) - 1 and x.shape == shape[1:]:
            x = x[None]
        if x.shape[1:] != shape[1:]:
            raise UsageError(f"{path}: '{name}' has shape {list(x.shape)}, the model expects "
                             f"{list(shape)} (any batch)")
        out[name] = x
    return out


def calibration_inputs(graph: Graph, path: str | Path | None, seed: int = 0) -> dict[str, np.ndarray]:
    shapes = {n.name: n.out.shape for n in graph.inputs}
    if path is not None:
        return {k: v.astype(np.float32) for k, v in read_array_file(path, shapes).items()}
    log.warning("no calibration data given (--calibrate): calibrating on %d seeded standard-normal "
                "samples; int8 accuracy on real data may suffer", DEFAULT_CALIBRATION_SAMPLES)
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((DEFAULT_CALIBRATION_SAMPLES,) + s[1:]).astype(np.float32)
            for k, s in shapes.items()}


def quantize_model(graph: Graph, calibration: dict[str, np.ndarray]) -> Graph:
    """Float graph -> int8 graph. The passes, in order:"""
    graph = verify(fuse_activations(graph))          # ReLU into its producer, before calibration
    ranges = calibrate_minmax(graph, calibration)     # observed range of every tensor
    return verify(quantize_graph(graph, ranges))      # int8 weights/activations, int32 bias


def compile_graph(qgraph: Graph, arch: ArchConfig) -> tuple[Schedule, Program]:
    sched = schedule(qgraph, arch)                    # tiling per layer, by the cost model
    return sched, generate(sched)                     # allocation, instructions, symbols
