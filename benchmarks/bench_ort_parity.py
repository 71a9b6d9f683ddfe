"""onnxruntime parity at full size: the zoo's ResNet-18, ResNet-50, MobileNetV2, EfficientNet-B0 and
MobileNetV3 at 224x224, quantized
by onnxruntime's quantize_static (after quant_pre_process) in QDQ and QOperator form, uint8 and int8
activations, per-channel and per-tensor weights, and written by `sieve quantize` (dense, 90 %, 2:4).
For each: the logits of onnxruntime's default session against Sieve's integer reference, on 2 seeded
images; the count of differing values and the largest difference in quantization steps.

    python -m benchmarks.bench_ort_parity [--quick] [model ...]   (--quick: ResNet-18 only)
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import publish
import onnx

import sieve

SIZE = 224


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _ort_quantize(src: Path, out: Path, calib: np.ndarray, fmt: str, act: str, per_channel: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    batches = iter([{"input": c[None]} for c in calib])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(src), str(out), Reader(), quant_format=getattr(QuantFormat, fmt),
                        activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8,
                        per_channel=per_channel)


def _compare(path: Path, x: np.ndarray, scale: float) -> dict:
    want = _ort(path, x)
    got = next(iter(sieve.interpret(path, x).floats.values()))
    steps = np.rint(np.abs(got.astype(np.float64) - want) / scale)
    return {"values": int(want.size), "differ": int((got != want).sum()), "max_steps": int(steps.max())}


MODELS = ("resnet18", "resnet50", "mobilenetv2", "efficientnet_b0", "mobilenetv3")


def main(quick: bool = False, models: tuple[str, ...] = MODELS) -> list[dict]:
    from onnxruntime.quantization.shape_inference import quant_pre_process
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("sieve").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    x = rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for name in (("resnet18",) if quick else models):
        src, pre = tmp / f"{name}.onnx", tmp / f"{name}_pre.onnx"
        onnx.save(sieve.zoo.onnx_model(name, size=SIZE), src)
        quant_pre_process(str(src), str(pre))
        cases = [(f, a, pc) for f in ("QDQ", "QOperator") for a in ("QUInt8", "QInt8") for pc in (True, False)]
        for fmt, act, pc in cases:
            t0 = time.perf_counter()
            path = tmp / f"{name}_{fmt}_{act}_{pc}.onnx"
            _ort_quantize(pre, path, calib, fmt, act, pc)
            scale = sieve.integer_model(path).qgraph
            scale = scale[scale.outputs[0]].out.quant.scale[0]
            row = {"model": name, "quantized by": "quantize_static", "form": fmt, "activations": act,
                   "weights": "per-channel" if pc else "per-tensor", **_compare(path, x, scale),
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(row, flush=True)
        for prune in (None, "0.9", "2:4"):
            t0 = time.perf_counter()
            path = tmp / f"{name}_sieve_{prune}.onnx"
            onnx.save(sieve.quantize(src, calibrate=calib, prune=prune), path)
            g = sieve.integer_model(path).qgraph
            row = {"model": name, "quantized by": f"sieve quantize{' --prune ' + prune if prune else ''}",
                   "form": "QDQ", "activations": "int8 (written as uint8)", "weights": "per-channel",
                   **_compare(path, x, g[g.outputs[0]].out.quant.scale[0]),
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(row, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| model | quantized by | form | activations | weights | logits differing | largest difference |\n" \
           "|---|---|---|---|---|---:|---:|\n"
    return head + "".join(f"| {r['model']} | {r['quantized by']} | {r['form']} | {r['activations']} | {r['weights']} "
                          f"| {r['differ']} of {r['values']} | {r['max_steps']} steps |\n" for r in rows)


if __name__ == "__main__":
    names = tuple(a for a in sys.argv[1:] if not a.startswith("--")) or MODELS
    result = main("--quick" in sys.argv, names)
    publish("ort_parity", result, markdown(result))
