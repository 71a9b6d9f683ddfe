"""Transformers from the command line: BERT-base (12 layers, 768 features, 12 heads) at 128 tokens on
`default`. `sieve compile` (ONNX -> .sieve, calibration on one embedded sequence), `sieve run` bit-exact on
one sequence, `sieve run --timing-only`, each a new process as a user runs it (imports included), median
of 3 interleaved runs after a warm-up, default threads. From the run's statistics: cycles and energy per
layer kind (projections and feed-forward, attention products, softmax, LayerNorm, GELU, head moves,
residual adds), dense, pruned 80 % (magnitude, per layer) and 2:4, with each binary's model size.

Then the integer-only functions on real activations: a ViT trained on sklearn's digits (the test's model,
tests/transformers/test_vit_digits.py), each LayerNorm, softmax and GELU of its int8 model against the
float function on the same (dequantized) input, in output steps and in absolute value.

    python -m benchmarks.bench_transformers
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import SIEVE, by_kind, kinds_table, publish, timed

REPEAT = 3
SEQ = 128
VARIANTS = (("dense", []), ("80 %", ["--prune", "0.8"]), ("2:4", ["--prune", "2:4"]))


def _kind(layer: dict) -> str:
    return {"dense": "projections and feed-forward", "bmm": "attention products (Q·Kᵀ, P·V)",
            "qsoftmax": "softmax", "layernorm": "LayerNorm", "lut": "GELU and 1/sqrt(d) (tables)",
            "move": "head split and merge (moves)", "add": "residual adds"}.get(layer["op"], layer["op"])


def _size(stdout: str) -> int:
    return int(re.search(r"as compiled .*?([\d,]+) B", stdout).group(1).replace(",", ""))


def bert() -> list[dict]:
    tmp = Path(tempfile.mkdtemp())
    subprocess.run([SIEVE, "zoo", "export", "bert-base", "--size", str(SEQ), "-o", "bert.onnx"], cwd=tmp,
                   check=True, capture_output=True)
    subprocess.run([SIEVE, "zoo", "inputs", "bert-base", "--size", str(SEQ), "--count", "1", "-o", "x.npy"],
                   cwd=tmp, check=True, capture_output=True)
    rows = []
    commands = {"compile": ["compile", "bert.onnx", "--calibrate", "x.npy", "-o", "bert.sieve", "-q"],
                "run": ["run", "bert.sieve", "--input", "x.npy", "-q"],
                "timing": ["run", "bert.sieve", "--timing-only", "-q"]}
    for cmd in commands.values():                             # warm-up (numba's cache, bytecode)
        timed(cmd, tmp)
    times = defaultdict(list)
    for _ in range(REPEAT):
        for key, cmd in commands.items():
            times[key].append(timed(cmd, tmp))
    for label, extra in VARIANTS:
        out = subprocess.run([SIEVE, "compile", "bert.onnx", "--calibrate", "x.npy", "-o", "v.sieve"] + extra,
                             cwd=tmp, check=True, capture_output=True, text=True).stdout
        subprocess.run([SIEVE, "run", "v.sieve", "--input", "x.npy", "--stats", "v.json", "-q"], cwd=tmp,
                       check=True, capture_output=True)
        stats = json.loads((tmp / "v.json").read_text())
        row = {"variant": label, "cycles": stats["cycles"], "energy_mj": round(stats["energy_total_pj"] / 1e9, 2),
               "size_bytes": _size(out), "macs": stats["macs"], "mac_utilization": stats["utilization"],
               "kinds": by_kind(stats, _kind)}
        if label == "dense":
            row.update({f"{k} s": round(statistics.median(v), 2) for k, v in times.items()},
                       cpus=os.cpu_count())
        rows.append(row)
        print(row, flush=True)
    return rows


def numerics() -> list[dict]:
    """Each integer-only op of the digits ViT against its float function on the op's own int8 input."""
    import sieve
    from sklearn.datasets import load_digits
    from sieve.ir import Op
    from sieve.ir.interpret import run_int
    from sieve.ir.registry import opdef
    from sieve.pipeline import integer_model
    from sieve_numerics.integer import dequantize, quantize
    from tests.transformers.test_vit_digits import TRAIN, train
    import torch
    import warnings
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    net = train()
    path = Path(tempfile.mkdtemp()) / "vit.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.from_numpy(x[:1]), path, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"])
    graph = sieve.frontend.load_onnx(path)
    q = integer_model(graph, calibrate={"x": x[:200]}).qgraph
    ints = {}
    for i in range(TRAIN, len(x), 1):                         # held-out digits, every tensor kept
        env = run_int(q, {"x": quantize(x[i:i + 1], q.inputs[0].out.quant.scale[0], q.inputs[0].out.quant.zp)},
                      keep_all=True)
        for k, v in env.items():
            ints.setdefault(k, []).append(v)
    ints = {k: np.concatenate(v) for k, v in ints.items()}
    errs = defaultdict(lambda: [0.0, 0.0, 0, 0.0])            # max abs, max steps, count, sum abs
    sat = [0, 0]                                              # values beyond the calibrated range, all values
    for node in q:
        if node.op not in (Op.LAYERNORM, Op.QSOFTMAX, Op.LUT):
            continue
        src = q[node.inputs[0]].out.quant
        xin = dequantize(ints[node.inputs[0]], src.scale[0], src.zp)
        fnode = graph[node.name] if node.name in {n.name for n in graph} else node
        want = opdef(node.op).ref_float(fnode, [xin])
        oq = node.out.quant
        got = dequantize(ints[node.name], oq.scale[0], oq.zp)
        lo, hi = oq.scale[0] * (-128 - oq.zp), oq.scale[0] * (127 - oq.zp)
        inside = (want >= lo) & (want <= hi)                  # beyond the calibrated range: saturation
        err = np.abs(got.astype(np.float64) - want)[inside]
        sat[0] += int((~inside).sum())
        sat[1] += int(want.size)
        kind = {"layernorm": "LayerNorm", "qsoftmax": "softmax"}.get(node.op.value, "GELU table")
        if node.op is Op.LUT and node.attrs.get("program", "").count("erf") == 0:
            kind = "scaling by 1/sqrt(d) (table)"
        e = errs[kind]
        e[0] = max(e[0], float(err.max()))
        e[1] = max(e[1], float(err.max() / node.out.quant.scale[0]))
        e[2] += err.size
        e[3] += float(err.sum())
    rows = [{"op": k, "max_abs": round(v[0], 4), "max_steps": round(v[1], 2), "mean_abs": round(v[3] / v[2], 5)}
            for k, v in errs.items()]
    rows.append({"op": "saturated (beyond the calibrated output range)", "fraction": sat[0] / max(sat[1], 1)})
    print(rows, flush=True)
    return rows


def markdown(rows: list[dict], num: list[dict]) -> str:
    dense = rows[0]
    out = [f"BERT-base, {SEQ} tokens, `default` ({dense['cpus']} CPUs, default threads; median of {REPEAT}, "
           "process start included):", "",
           "| `sieve compile` | `sieve run` (bit-exact) | `sieve run --timing-only` |", "|---:|---:|---:|",
           f"| {dense['compile s']:.2f} s | {dense['run s']:.2f} s | {dense['timing s']:.2f} s |", "",
           "| weights | cycles | energy | model size (as compiled) | MAC utilization |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['variant']} | {r['cycles']:,} | {r['energy_mj']} mJ | {r['size_bytes'] / 1e6:.1f} MB | "
                   f"{100 * r['mac_utilization']:.1f} % |")
    for r in rows:
        out += kinds_table(f"{r['variant']}, by layer kind:", r["kinds"])
    out += ["", "Integer-only functions of the digits ViT (int8) against float on the same input, held-out digits:",
            "", "| op | largest error | in output steps | mean error |", "|---|---:|---:|---:|"]
    for r in num:
        if "fraction" in r:
            out += ["", f"Values beyond the output range calibrated on 200 training digits (saturated, left out "
                        f"above): {100 * r['fraction']:.3f} %."]
        else:
            out.append(f"| {r['op']} | {r['max_abs']} | {r['max_steps']} | {r['mean_abs']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    result, num = bert(), numerics()
    publish("transformers", {"bert": result, "numerics": num}, markdown(result, num))
