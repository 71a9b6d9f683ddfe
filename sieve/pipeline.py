"""The compile pipeline, one flat function per stage, every pass listed in order."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.config import ArchConfig
from sieve.codegen import generate
from sieve.frontend import FrontendError, load_onnx, load_sv
from sieve.ir import DType, Graph, verify
from sieve.ir.passes import calibrate, fuse_activations, prune_magnitude, prune_nm, quantize_graph
from sieve.scheduler import Schedule, schedule

log = logging.getLogger("sieve")
DEFAULT_CALIBRATION_SAMPLES = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


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


def load_image_folder(folder: Path, shape: tuple[int, ...], limit: int | None = None) -> np.ndarray:
    """Images -> [N, C, H, W] float32, the documented preprocessing (docs/calibration.md):
    RGB (or grayscale for 1 channel), shorter side resized to H * 256 / 224 (bilinear),
    centre crop H x W, scaled to [0, 1], and for 3 channels normalized by the ImageNet
    mean and standard deviation. Files are taken in name order."""
    from PIL import Image
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise UsageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    _, c, h, w = shape
    out = []
    for f in files:
        try:
            img = Image.open(f).convert("L" if c == 1 else "RGB")
        except OSError as err:
            raise UsageError(f"{f}: cannot read image: {err}") from None
        short = round(min(h, w) * 256 / 224)
        scale = short / min(img.size)
        img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))),
                         Image.BILINEAR)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        x = np.asarray(img.crop((left, top, left + w, top + h)), np.float32) / 255.0
        x = x[None] if c == 1 else ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
        out.append(x)
    return np.stack(out).astype(np.float32)


def calibration_inputs(graph: Graph, path: str | Path | None, seed: int = 0) -> dict[str, np.ndarray]:
    shapes = {n.name: n.out.shape for n in graph.inputs}
    if path is not None and Path(path).is_dir():
        if len(shapes) != 1 or len(next(iter(shapes.values()))) != 4:
            raise UsageError(f"{path}: a folder of images calibrates single-input image models only")
        name, shape = next(iter(shapes.items()))
        return {name: load_image_folder(Path(path), shape)}
    if path is not None:
        return {k: v.astype(np.float32) for k, v in read_array_file(path, shapes).items()}
    log.warning("no calibration data given (--calibrate): calibrating on %d seeded standard-normal "
                "samples; int8 accuracy on real data may suffer", DEFAULT_CALIBRATION_SAMPLES)
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((DEFAULT_CALIBRATION_SAMPLES,) + s[1:]).astype(np.float32)
            for k, s in shapes.items()}


def quantize_model(graph: Graph, calibration: dict[str, np.ndarray], method: str = "minmax",
                   percentile: float = 99.99) -> Graph:
    """Float graph -> int8 graph. The passes, in order:"""
    graph = verify(fuse_activations(graph))          # ReLU into its producer, before calibration
    ranges = calibrate(graph, calibration, method, percentile)   # range of every tensor
    return verify(quantize_graph(graph, ranges))      # int8 weights/activations, int32 bias


def integer_model(graph: Graph, calibrate_path: str | Path | None, seed: int = 0, method: str = "minmax",
                  percentile: float = 99.99) -> Graph:
    """The int8 graph of a model: a quantized model keeps its own scales; a float one is calibrated."""
    if is_quantized(graph):
        if calibrate_path is not None:
            log.warning("the model is already quantized; its own scales are kept and --calibrate is ignored")
        return graph
    return quantize_model(graph, calibration_inputs(graph, calibrate_path, seed), method, percentile)


def compile_graph(qgraph: Graph, arch: ArchConfig, balance: bool = True) -> tuple[Schedule, Program]:
    sched = schedule(qgraph, arch, balance=balance)   # weight format and tiling per layer, by the cost model
    return sched, generate(sched)                     # allocation, instructions, symbols


def prune_model(graph: Graph, spec: str | None, scope: str = "layer", keep_ends: bool = False) -> Graph:
    """--prune 0.9 (magnitude, a fraction) or --prune 2:4 (N:M) on a float graph."""
    if spec is None:
        return graph
    if is_quantized(graph):
        raise UsageError("--prune needs a float model; a quantized model's zeros are found and used as they are")
    try:
        if ":" in spec:
            n, m = (int(v) for v in spec.split(":"))
            return verify(prune_nm(graph, n, m, keep_ends))
        return verify(prune_magnitude(graph, float(spec), scope, keep_ends))
    except ValueError:
        raise UsageError(f"--prune takes a fraction (0.9) or N:M (2:4), got '{spec}'") from None


def with_dense_reference(qgraph: Graph, arch: ArchConfig, program: Program) -> Program:
    """Record, per layer, the same layer compiled dense on the same arch and simulated (timing only)."""
    from sieve.simulator import run as simulate
    if all(s.weight_format == "dense" for s in program.layers):
        return program
    dense = simulate(generate(schedule(qgraph, arch, sparse=False)), functional=False).stats
    ref = {l.name: l for l in dense.layers}
    layers = tuple(replace(s, dense_cycles=ref[s.name].cycles, dense_mac_cycles=ref[s.name].mac_cycles,
                           dense_energy_pj=ref[s.name].energy_total_pj) if s.name in ref else s
                   for s in program.layers)
    return replace(program, layers=layers)
