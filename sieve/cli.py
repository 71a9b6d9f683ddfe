"""The `sieve` command: zoo, compile, run, interpret, disasm, asm, arch."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sieve.arch import ArchError, BinaryFormatError, ISAError, encode_program, load_arch, preset_names
from sieve.pipeline import (UsageError, compile_graph, integer_model, is_quantized, load_model, prune_model,
                          read_array_file, with_dense_reference)
from sieve.report import print_run_summary, sparsity_table
from sieve.codegen import AsmError, CodegenError, assemble_file, disassemble
from sieve.frontend import ZOO, FrontendError, build, build_onnx, dump_sv
from sieve.ir import IRError, dequantize_outputs, quantize_inputs, run_float, run_int
from sieve.scheduler import ScheduleError
from sieve.simulator import SimulatorError, load_binary, run

log = logging.getLogger("sieve")
USER_ERRORS = (UsageError, FrontendError, IRError, ArchError, ISAError, BinaryFormatError, ScheduleError,
               CodegenError, AsmError, SimulatorError)


def _console() -> Console:
    con = Console(highlight=False)
    return con if con.is_terminal else Console(highlight=False, width=140)


# ---------------------------------------------------------------- zoo

def cmd_zoo_list(args) -> None:
    t = Table(title="model zoo", title_justify="left")
    t.add_column("name")
    t.add_column("description")
    for e in ZOO.values():
        t.add_row(e.name, e.description)
    _console().print(t)


def cmd_zoo_export(args) -> None:
    out = Path(args.output)
    kwargs = {"seed": args.seed} | ({"size": args.size} if args.size else {})
    if out.suffix == ".onnx":
        import onnx
        model = build_onnx(args.name, **kwargs)
        onnx.save(model, out)
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")
        return
    if out.suffix != ".sv":
        raise UsageError(f"{out}: zoo export writes .onnx or the Sieve text format (.sv)")
    files = dump_sv(build(args.name, **kwargs), out, inline=args.inline)
    print(f"wrote {', '.join(str(f) for f in files)}")


# ---------------------------------------------------------------- compile

def cmd_compile(args) -> None:
    arch = load_arch(args.arch)
    t0 = time.perf_counter()
    graph = load_model(args.model)
    pruned = prune_model(graph, args.prune, args.prune_scope, args.keep_ends)
    qgraph = integer_model(pruned, args.calibrate, args.seed, args.calibration, args.percentile)
    t1 = time.perf_counter()
    sched, program = compile_graph(qgraph, arch, balance=not args.no_balance)
    if not args.no_twin:
        program = with_dense_reference(qgraph, arch, program)
    raw = encode_program(program)
    t2 = time.perf_counter()
    out = Path(args.output or Path(args.model).with_suffix(".sieve").name)
    out.write_bytes(raw)
    con = _console()
    t = Table(title=f"{graph.name} on arch '{arch.name}'", title_justify="left")
    for col in ("layer", "op", "weights", "zeros %", "instructions", "MACs", "est. cycles", "plan"):
        t.add_column(col, justify="left" if col in ("layer", "op", "weights", "plan") else "right")
    for sym in program.layers:
        plan, node = sched.plan(sym.name), qgraph[sym.name]
        zeros = f"{100 * np.mean(node.params['w'] == 0):.1f}" if "w" in node.params else ""
        t.add_row(sym.name, sym.op, sym.weight_format if plan.kind == "matmul" else "", zeros,
                  str(sym.end - sym.start), f"{sym.macs:,}", f"{plan.est_cycles:,}",
                  plan.reason if args.verbose else plan.reason.split(": est")[0])
    con.print(t)
    con.print(_model_size(graph, qgraph, program))
    con.print("quantization: " + ("a quantized model, its own scales kept" if is_quantized(graph) else
                                  f"by Sieve, {args.calibration} calibration"))
    con.print(f"wrote {out} ({len(raw):,} bytes, {sum(len(s) for s in program.streams):,} instructions) "
              f"in {t2 - t0:.2f} s (quantize {t1 - t0:.2f} s, schedule+codegen {t2 - t1:.2f} s)")
    if args.eval:
        _evaluate(con, args, graph, qgraph, program)


def _model_size(graph, qgraph, program) -> str:
    layers = [n for n in graph if "w" in n.params]
    weights = sum(n.params["w"].size for n in layers)
    biases = sum(n.params["b"].size for n in layers if "b" in n.params)
    f32 = 4 * (weights + biases)
    int8 = weights + 8 * biases                      # int8 weights, int32 bias, float32 scale
    packed = len(program.data)
    return (f"model size: float32 {f32:,} B; int8 {int8:,} B; as compiled (int8, packed where sparse, with "
            f"index metadata, bias, scales and alignment) {packed:,} B = {f32 / max(packed, 1):.2f}x smaller "
            f"than float32, {int8 / max(packed, 1):.2f}x than dense int8")


def _evaluate(con, args, graph, qgraph, program) -> None:
    """Top-1 of the float model, the dense int8 model (reference) and the compiled binary (simulated)."""
    try:
        data = np.load(args.eval)
        x, y = data["x"], data["y"]
    except (OSError, KeyError, ValueError) as err:
        raise UsageError(f"{args.eval}: --eval needs an .npz with arrays 'x' (inputs) and 'y' (labels): {err}")
    name = graph.inputs[0].name
    out = graph.outputs[0]
    dense = integer_model(graph, args.calibrate, args.seed, args.calibration, args.percentile)
    acc_float = float(np.mean(run_float(graph, {name: x.astype(np.float32)})[out].argmax(-1) == y))
    q_in = quantize_inputs(dense, {name: x})
    acc_int8 = float(np.mean(run_int(dense, q_in)[out].argmax(-1) == y))
    result = run(program, {name: x.astype(np.float32)})
    acc_sparse = float(np.mean(result.floats[program.outputs[0].name].argmax(-1) == y))
    t = Table(title=f"top-1 on {len(y)} examples of {args.eval}", title_justify="left")
    for col in ("float32", "int8 (dense)", "int8 as compiled" + (f" (pruned {args.prune})" if args.prune else "")):
        t.add_column(col, justify="right")
    t.add_row(f"{100 * acc_float:.2f} %", f"{100 * acc_int8:.2f} %", f"{100 * acc_sparse:.2f} %")
    con.print(t)


# ---------------------------------------------------------------- run / interpret

def _save_outputs(path: str, ints: dict, floats: dict, dtypes: dict) -> None:
    """NAME: dequantized float32; NAME.<type>: the raw integers in the model's own type."""
    arrays = {name: floats[name] for name in floats}
    for name, q in ints.items():
        kind = dtypes[name]
        arrays[f"{name}.{kind}"] = (q.astype(np.int16) + 128).astype(np.uint8) if kind == "uint8" else q
    np.savez(path, **arrays)


def _graph_dtype(t) -> str:
    if t.dtype.value == "int32":
        return "int32"
    return "uint8" if t.quant is not None and t.quant.unsigned else "int8"


def cmd_run(args) -> None:
    arch = load_arch(args.arch) if args.arch else None
    program = load_binary(args.binary, arch)
    inputs = None
    if args.input is None and args.report:
        args.timing_only = True                      # a report needs no data: timing is data-independent
    if not args.timing_only:
        if args.input is None:
            raise UsageError("--input is required (or use --timing-only)")
        inputs = read_array_file(args.input, {d.name: d.shape for d in program.inputs})
    t0 = time.perf_counter()
    result = run(program, inputs, functional=not args.timing_only)
    elapsed = time.perf_counter() - t0
    if args.output:
        _save_outputs(args.output, result.outputs, result.floats, {d.name: d.dtype for d in program.outputs})
    if args.stats:
        d = result.stats.to_dict()
        d["inferences"] = result.inferences
        Path(args.stats).write_text(json.dumps(d, indent=1))
    con = _console()
    if args.quiet:
        s = result.stats
        con.print(f"{s.cycles:,} cycles ({s.time_us:,.2f} us at {s.clock_mhz:g} MHz on '{s.arch}'), "
                  f"{s.energy_total_pj / 1e6:,.3f} uJ per inference")
    else:
        print_run_summary(con, result.stats, result.inferences)
    if args.report:
        con.print(sparsity_table(program, result.stats))
    if not args.quiet:
        for name, y in result.floats.items():
            if y.ndim == 2:
                con.print(f"{name}: top-1 per inference {np.argmax(y, axis=1).tolist()}")
    con.print(f"simulated in {elapsed:.3f} s" + (" (timing only)" if args.timing_only else ""))


def cmd_interpret(args) -> None:
    graph = load_model(args.model)
    shapes = {n.name: n.out.shape for n in graph.inputs}
    inputs = read_array_file(args.input, shapes)
    if args.float:
        outs = run_float(graph, {k: v.astype(np.float32) for k, v in inputs.items()})
        np.savez(args.output, **outs)
        print(f"wrote {args.output} (float reference)")
        return
    qgraph = integer_model(graph, args.calibrate, args.seed, args.calibration, args.percentile)
    q_in = {name: x if x.dtype == np.int8 else quantize_inputs(qgraph, {name: x})[name]
            for name, x in inputs.items()}
    batch = len(next(iter(q_in.values())))
    per_item = [run_int(qgraph, {n: x[i:i + 1] for n, x in q_in.items()}) for i in range(batch)]
    ints = {k: np.concatenate([r[k] for r in per_item]) for k in qgraph.outputs}
    floats = dequantize_outputs(qgraph, {k: v for k, v in ints.items() if _graph_dtype(qgraph[k].out) != "int32"})
    _save_outputs(args.output, ints, floats, {k: _graph_dtype(qgraph[k].out) for k in ints})
    for name, y in ints.items():
        if y.ndim == 2:
            print(f"{name}: top-1 per inference {np.argmax(y, axis=1).tolist()}")
    print(f"wrote {args.output} (integer reference)")


# ---------------------------------------------------------------- disasm / asm / arch

def cmd_disasm(args) -> None:
    text = disassemble(load_binary(args.binary))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)


def cmd_asm(args) -> None:
    raw = encode_program(assemble_file(args.source))
    Path(args.output).write_bytes(raw)
    print(f"wrote {args.output} ({len(raw):,} bytes)")


def cmd_arch(args) -> None:
    if args.name is None:
        print("presets: " + ", ".join(preset_names()))
        return
    arch = load_arch(args.name)
    print(json.dumps(arch.to_dict(), indent=1))
    print(f"fingerprint {arch.fingerprint()}")


# ---------------------------------------------------------------- parser

def _calibration_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibrate", metavar="DATA", help="calibration inputs for a float model: .npy, .npz by "
                   "input name, or a folder of images (preprocessing: docs/calibration.md); default: 8 "
                   "seeded standard-normal samples, with a warning. Quantized models keep their scales. "
                   "interpret needs the same calibration as compile to give the same integers")
    p.add_argument("--calibration", choices=("minmax", "percentile"), default="minmax",
                   help="range estimator (default %(default)s)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="for --calibration percentile: the upper percentile kept (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default calibration data")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sieve", description="Compile models for sparse INT8 accelerators and "
                                "simulate the binaries cycle by cycle, bit-exact.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and show full plans")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    z = sub.add_parser("zoo", help="list or export the bundled models")
    zs = z.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    zs.add_parser("list", help="list zoo models").set_defaults(func=cmd_zoo_list)
    ze = zs.add_parser("export", help="write a zoo model as a .sv text model (+ .npz weights)")
    ze.add_argument("name", help="zoo model name (see `sieve zoo list`)")
    ze.add_argument("-o", "--output", required=True, help="output file: .onnx (ResNet, MobileNet, VGG) "
                    "or .sv (any; weights in a side .npz)")
    ze.add_argument("--size", type=int, help="input resolution of the ImageNet models (default 224)")
    ze.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    ze.add_argument("--inline", action="store_true", help="write weights inline instead of a side .npz")
    ze.set_defaults(func=cmd_zoo_export)

    c = sub.add_parser("compile", help="compile a model to a .sieve binary")
    c.add_argument("model", help="model file (.sv or .onnx: float, QDQ or QOperator)")
    c.add_argument("--arch", default="default", help="preset name (%(default)s, edge) or TOML file")
    c.add_argument("-o", "--output", help="output binary (default: MODEL.sieve in the current folder)")
    _calibration_options(c)
    c.add_argument("--prune", metavar="S", help="prune a float model first: a fraction for magnitude pruning "
                   "(0.9 = 90 %% zeros) or N:M along the input channels (2:4)")
    c.add_argument("--prune-scope", choices=("layer", "global"), default="layer",
                   help="magnitude pruning per layer or over all layers together (default %(default)s)")
    c.add_argument("--keep-ends", action="store_true", help="keep the first and last layers dense")
    c.add_argument("--no-balance", action="store_true",
                   help="keep output channels in their natural order on the PE rows (for comparison)")
    c.add_argument("--no-twin", action="store_true", help="skip compiling and simulating the dense twin that "
                   "`sieve run --report` compares sparse layers against (saves about a quarter of the time)")
    c.add_argument("--eval", metavar="NPZ", help="report top-1 of the float, dense int8 and compiled models on "
                   "an .npz with 'x' (inputs) and 'y' (labels)")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="simulate a binary: outputs, per-layer cycles and energy")
    r.add_argument("binary", help=".sieve file")
    r.add_argument("--input", help="input .npy (or .npz by input name); float data is quantized with "
                   "the binary's input scale, int8 data is used as is; a leading batch runs one "
                   "inference per item")
    r.add_argument("--output", help="write outputs to this .npz: NAME (dequantized float32) and NAME.int8 "
                   "(NAME.uint8 for uint8 models, NAME.int32 for raw int32 outputs)")
    r.add_argument("--stats", help="write every figure of the report as JSON (schema: docs/stats.md)")
    r.add_argument("--arch", help="run on this arch instead of the embedded one (may differ only in "
                   "memory, clock and energy)")
    r.add_argument("--timing-only", action="store_true", help="skip functional execution (same cycles)")
    r.add_argument("-q", "--quiet", action="store_true", help="no tables")
    r.add_argument("--report", action="store_true", help="the sparsity report: per layer weight format, density, "
                   "lane utilization, skipped MACs, and cycles and energy against the dense twin")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("interpret", help="run the reference interpreter (integer by default)")
    i.add_argument("model", help="model file (.sv or .onnx)")
    i.add_argument("--input", required=True, help="input .npy or .npz")
    i.add_argument("--output", required=True, help="output .npz (same keys as `sieve run --output`)")
    _calibration_options(i)
    i.add_argument("--float", action="store_true", help="run the float model instead")
    i.set_defaults(func=cmd_interpret)

    d = sub.add_parser("disasm", help="print a binary as assembly text")
    d.add_argument("binary", help=".sieve file")
    d.add_argument("-o", "--output", help="write to a file instead of stdout")
    d.set_defaults(func=cmd_disasm)

    a = sub.add_parser("asm", help="assemble text into a binary (byte-identical round trip with disasm)")
    a.add_argument("source", help="assembly file (.s)")
    a.add_argument("-o", "--output", required=True, help="output .sieve file")
    a.set_defaults(func=cmd_asm)

    ar = sub.add_parser("arch", help="list presets or show one resolved arch")
    ar.add_argument("name", nargs="?", help="preset name or TOML file")
    ar.set_defaults(func=cmd_arch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sieve: %(levelname)s: %(message)s"))
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        args.func(args)
    except USER_ERRORS as err:
        first, *rest = str(err).splitlines() or [type(err).__name__]
        print(f"sieve: error: {first}", file=sys.stderr)
        if rest and args.verbose:
            print("\n".join(rest), file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"sieve: error: {err.filename}: no such file", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sieve: interrupted", file=sys.stderr)
        return 130
    except Exception as err:                       # a bug in Sieve, not a user error: say so, in one line
        if args.verbose:
            import traceback
            traceback.print_exc()
        print(f"sieve: internal error: {type(err).__name__}: {err} (please report it; -v shows the traceback)",
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
