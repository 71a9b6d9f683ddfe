"""Input and calibration data: .npy, .npz keyed by input name, or a folder of images; arrays
given in Python. Every array is checked for shape and for NaN or infinite values."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Mapping, Union

import numpy as np
from sieve_numerics.limits import MAX_TENSOR_ELEMENTS, over

from sieve.errors import UsageError
from sieve.frontend.arrays import load_arrays

log = logging.getLogger("sieve")
DEFAULT_CALIBRATION_SAMPLES = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# what the API accepts as data: a file or folder, one array (single-input models), or arrays by name
Data = Union[str, Path, np.ndarray, Mapping[str, np.ndarray]]


def check_finite(x: np.ndarray, what: str) -> None:
    """Refuse NaN or infinite values in float data, naming the tensor."""
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise UsageError(f"{what} has {bad:,} NaN or infinite value{'s' * (bad != 1)}")


def _arrays(data: Data, names: list[str], source: str) -> dict[str, np.ndarray]:
    if isinstance(data, (str, Path)):
        loaded = load_arrays(data)
        if isinstance(loaded, np.ndarray):
            return {names[0]: loaded} if len(names) == 1 else _one_of_many(names, source)
        return loaded
    if isinstance(data, np.ndarray):
        return {names[0]: data} if len(names) == 1 else _one_of_many(names, source)
    return {k: np.asarray(v) for k, v in data.items()}


def _one_of_many(names: list[str], source: str):
    raise UsageError(f"{source}: the model has inputs {names}; give arrays keyed by input name (.npz or a dict)")


def read_inputs(data: Data, shapes: Mapping[str, tuple[int, ...]], source: str | None = None) -> dict[str, np.ndarray]:
    """Arrays for every model input, each with a leading batch (added when missing), its other
    dimensions equal to the model's, and no NaN or infinite value."""
    source = source or (str(data) if isinstance(data, (str, Path)) else "inputs")
    arrays = _arrays(data, list(shapes), source)
    out = {}
    for name, shape in shapes.items():
        if name not in arrays:
            raise UsageError(f"{source}: no array named '{name}' (has {', '.join(arrays) or 'none'})")
        x = arrays[name]
        if x.dtype.kind not in "fiu":
            raise UsageError(f"{source}: '{name}' has element type {x.dtype}, not numbers")
        if x.ndim == len(shape) - 1 and x.shape == shape[1:]:
            x = x[None]
        if x.shape[1:] != shape[1:] or x.shape[0] == 0:
            raise UsageError(f"{source}: '{name}' has shape {list(x.shape)}, the model expects "
                             f"{list(shape)} (any batch)")
        check_finite(x, f"{source}: '{name}'")
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
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(f)
                if img.width * img.height > MAX_TENSOR_ELEMENTS:   # checked from the header, before decoding
                    raise UsageError(over(f"{f}: an image of {img.width} x {img.height} pixels",
                                          img.width * img.height, MAX_TENSOR_ELEMENTS, "SIEVE_MAX_TENSOR_ELEMENTS"))
                img = img.convert("L" if c == 1 else "RGB")
        except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
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


def calibration_inputs(shapes: Mapping[str, tuple[int, ...]], data: Data | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Float calibration samples per input: from data (arrays, a file, a folder of images) or, without
    data, seeded standard-normal samples (with a warning)."""
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        if len(shapes) != 1 or len(next(iter(shapes.values()))) != 4:
            raise UsageError(f"{data}: a folder of images calibrates single-input image models only")
        name, shape = next(iter(shapes.items()))
        return {name: load_image_folder(Path(data), shape)}
    if data is not None:
        source = f"{data}" if isinstance(data, (str, Path)) else "calibration data"
        out = {}
        for k, v in read_inputs(data, shapes, source).items():
            with np.errstate(over="ignore"):
                out[k] = v.astype(np.float32)
            check_finite(out[k], f"{source}: '{k}' as float32 (values beyond its range)")
        return out
    log.warning("no calibration data given (--calibrate): calibrating on %d seeded standard-normal "
                "samples; int8 accuracy on real data may suffer", DEFAULT_CALIBRATION_SAMPLES)
    rng = np.random.default_rng(seed)
    return {k: np.stack([rng.standard_normal(tuple(s[1:])).astype(np.float32)     # a sample at a time: the
                         for _ in range(DEFAULT_CALIBRATION_SAMPLES)]) for k, s in shapes.items()}   # same values
