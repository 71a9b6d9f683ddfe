"""Distillation, gradual pruning and 4-bit weights, and what each buys on the accelerator (PyTorch, the
optional `torch` extra).

    python examples/distill_digits.py [OUT_DIR]

On sklearn's bundled 8x8 digits: a teacher CNN is trained; a smaller student (examples/prune_digits.py's
CNN) is trained on its soft labels (Hinton et al. 2015), once more while its weights are pruned
gradually to 75 % (Zhu and Gupta 2017), and that pruned student is compiled with int8 and with int4
weights. One table: top-1 on held-out digits (float, and compiled and simulated by Sieve), the binary's
constants (weights, metadata, biases, scales), cycles and energy per image on the `default` arch.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


TRAIN, CALIB = 1400, 200


def _prune_example():
    spec = importlib.util.spec_from_file_location("prune_digits", Path(__file__).with_name("prune_digits.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_teacher():
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


def _prunable(net):
    from torch import nn
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][1:]   # first conv dense


def models(epochs: int = 30):
    """(name, float net, weights) of each row: teacher, student alone, distilled, distilled and pruned."""
    import torch
    ex = _prune_example()
    x, y = ex.digits()
    xs, ys = x[:TRAIN], y[:TRAIN]
    torch.manual_seed(0)
    teacher = ex.fit(make_teacher(), [], xs, ys, epochs=epochs)
    torch.manual_seed(0)
    alone = ex.fit(ex.make_net(), [], xs, ys, epochs=epochs)
    torch.manual_seed(0)
    distilled = ex.fit(ex.make_net(), [], xs, ys, epochs=epochs, teacher=teacher)
    torch.manual_seed(0)
    student = ex.make_net()
    pruned = ex.fit(student, _prunable(student), xs, ys, target=0.75, epochs=epochs, teacher=teacher)
    torch.manual_seed(0)
    student = ex.make_net()
    nm = ex.fit(student, _prunable(student), xs, ys, epochs=epochs, teacher=teacher, nm=(2, 4),
                images={1: (32, 4, 4)})                       # the Linear reads the flattened 32x4x4 image
    return [("teacher", teacher, "int8"), ("student, trained alone", alone, "int8"),
            ("student, distilled", distilled, "int8"), ("distilled, pruned 75 %", pruned, "int8"),
            ("distilled, pruned 75 %, int4", pruned, "int4"), ("distilled, 2:4", nm, "int8"),
            ("distilled, 2:4, int4", nm, "int4")]


def table(rows_in, out: Path, arch: str = "default") -> list[dict]:
    import sieve
    ex = _prune_example()
    x, y = ex.digits()
    x_cal, x_test, y_test = x[:CALIB], x[TRAIN:], y[TRAIN:]
    top1 = lambda outputs: float((next(iter(outputs.values())).argmax(1) == y_test).mean())   # noqa: E731
    rows = []
    for name, net, weights in rows_in:
        path = ex.export(net, out / f"{name.replace(',', '').replace(' ', '_').replace('%', 'pc')}.onnx")
        prune = "2:4" if "2:4" in name else None       # the trained zeros, compiled as N:M blocks
        program = sieve.compile(path, arch, calibrate=x_cal, weights=weights, prune=prune, dense_twin=False)
        result = sieve.simulate(program, x_test)
        n_weights = sum(p.numel() for p in net.parameters() if p.dim() > 1)
        nonzero = sum(int((p != 0).sum()) for p in net.parameters() if p.dim() > 1)
        rows.append({"model": name, "weights": n_weights, "nonzero": nonzero,
                     "float_top1": top1(sieve.interpret(path, x_test, float_model=True).floats),
                     "sieve_top1": top1(result.floats), "bits": weights, "constants_bytes": len(program.data),
                     "cycles": result.stats.cycles, "energy_uj": result.stats.energy_total_pj / 1e6})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | weights (nonzero) | float top-1 | Sieve top-1 | weight bits | binary constants | "
             "cycles / image | energy / image |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['weights']:,} ({r['nonzero']:,}) | {100 * r['float_top1']:.2f} % | "
                     f"{100 * r['sieve_top1']:.2f} % | {r['bits']} | {r['constants_bytes'] / 1024:.1f} KiB | "
                     f"{r['cycles']:,} | {r['energy_uj']:.2f} µJ |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    print(markdown(table(models(), out)))


if __name__ == "__main__":
    main()
