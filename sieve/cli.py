"""The `sieve` command: a thin layer over the Python API (sieve.api, sieve.pipeline).

Commands import what they need when they run, so that `sieve run --timing-only` does not pay
for the compiler's imports.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("sieve")
ARRAYS = (".npz",)


def _console(stderr: bool = False):
    """A rich console; when not a terminal, as wide as any table needs (numbers are never cut)."""
    from rich.console import Console
    con = Console(highlight=False, stderr=stderr)
    return con if con.is_terminal else Console(highlight=False, stderr=stderr, width=240)


def _progress(args):
    """A progress bar on stderr for long compile stages (a terminal, not --quiet), else nothing."""
    from contextlib import nullcontext
    from sieve.pipeline import _no_progress
    if args.quiet or not sys.stderr.isatty():
        return nullcontext(_no_progress)
    con = _console(stderr=True)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class Bar:
        def __init__(self):
            self.bar = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=con, transient=True)
            self.tasks: dict[str, int] = {}

        def __enter__(self):
            self.bar.__enter__()
            return self

        def __exit__(self, *exc):
            return self.bar.__exit__(*exc)

        def __call__(self, stage: str, done: int, total: int) -> None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)
    return Bar()


# ---------------------------------------------------------------- zoo

def cmd_zoo_list(args) -> None:
    from rich.table import Table
    from sieve import zoo
    t = Table(title="model zoo (seeded weights, nothing downloaded)", title_justify="left")
    t.add_column("name", no_wrap=True)
    t.add_column("description")
    for name in zoo.names():
        t.add_row(name, zoo.describe(name))
    _console().print(t)


def cmd_zoo_export(args) -> None:
    from sieve import files, zoo
    out = files.check_output(args.output, "zoo export", (".onnx", ".sv"))
    kwargs = {"seed": args.seed} | ({"size": args.size} if args.size else {})
    if out.suffix == ".onnx":
        raw = zoo.onnx_model(args.name, **kwargs).SerializeToString()
        files.write_bytes(out, raw)
        print(f"wrote {out} ({len(raw):,} bytes)")
        return
    from sieve.frontend import sv_text
    weights = None if args.inline else out.with_suffix(".npz")
    text, arrays = sv_text(zoo.graph(args.name, **kwargs), weights.name if weights else None)
    if weights is not None:
        files.check_distinct(out, weights)
        files.save_npz(weights, arrays)
    files.write_text(out, text)
    print(f"wrote {out}" + (f", {weights}" if weights else ""))


def cmd_zoo_inputs(args) -> None:
    """Seeded standard-normal inputs in a zoo model's input shape (what ImageNet-normalized images
    look like to a network), to try commands without data."""
    import numpy as np
    from sieve import files, zoo
    out = files.check_output(args.output, "zoo inputs", (".npy",))
    kwargs = {"size": args.size} if args.size else {}
    shape = zoo.graph(args.name, **kwargs).inputs[0].out.shape
    x = np.random.default_rng(args.seed).standard_normal((args.count,) + tuple(shape[1:])).astype(np.float32)
    import io
    buf = io.BytesIO()
    np.save(buf, x)
    files.write_bytes(out, buf.getvalue())
    print(f"wrote {out} ({args.count} x {list(shape[1:])}, seeded standard-normal)")


# ---------------------------------------------------------------- compile / quantize

def _threads(args, default: int | None) -> int | None:
    """--threads as asked, else the command's default (0 and None both mean the BLAS default)."""
    return default if args.threads is None else (args.threads or None)


def _front_options(args) -> dict:
    return {"calibrate": args.calibrate, "calibration": args.calibration, "percentile": args.percentile,
            "prune": args.prune, "prune_scope": args.prune_scope, "keep_ends": args.keep_ends,
            "weights": args.weights, "group": args.group, "weight_clip": args.weight_clip,
            "batch": args.batch, "seed": args.seed}


def cmd_compile(args) -> None:
    import numpy as np
    from sieve import api, files
    from sieve.pipeline import compile_model
    inputs = files.model_files(args.model)
    from sieve.errors import UsageError
    tile = _tile(args.tile)                          # option errors before any work
    if args.fusion == "none" and (args.tile or args.overlap):
        raise UsageError("--tile and --overlap shape fused stacks; with --fusion none there are none "
                         "(drop them, or use --fusion auto or max)")
    if isinstance(tile, tuple) and args.overlap == "cache":
        raise UsageError(f"--tile {args.tile}: tiles narrower than a row recompute the columns they share; "
                         "--overlap cache keeps rows and takes bands of whole rows (give --tile ROWS)")
    out = files.check_output(args.output or Path(Path(args.model).with_suffix(".sieve").name), "compile",
                             (".sieve",), inputs, {".onnx": "`sieve quantize -o MODEL.onnx` writes the "
                                                                 "quantized (and pruned) model as ONNX"})
    t0 = time.perf_counter()
    from sieve.threads import blas_threads
    with _progress(args) as progress, blas_threads(_threads(args, None)):
        c = compile_model(args.model, args.arch, **_front_options(args), balance=not args.no_balance,
                          dense_twin=not args.no_twin, partition=args.partition, fusion=args.fusion,
                          tile=tile, overlap=args.overlap, objective=args.objective,
                          compress_activations=args.compress_activations, compress_weights=args.compress_weights,
                          progress=progress)
    size = api.save(c.program, out)
    elapsed = time.perf_counter() - t0
    program, qgraph = c.program, c.lowered.qgraph
    con = _console() if not args.quiet or args.eval else None
    if not args.quiet:
        from sieve.report import table
        wide = con.width >= 140 or args.verbose          # the plan column needs room; -v always shows it
        t = table(f"{qgraph.name} on arch '{program.arch.name}'" + ("" if wide else " (plans: -v or a wider terminal)"),
                  ["layer", "op", "weights", "zeros %", "instructions", "MACs", "est. cycles"] + ["plan"] * wide, 3)
        if wide:
            t.columns[-1].justify = "left"
        for name, syms in program.layer_groups().items():
            sym, plan, node = syms[0], c.schedule.plan(name), qgraph[name]
            zeros = f"{100 * np.mean(node.params['w'] == 0):.1f}" if "w" in node.params else ""
            label, op = name, sym.op
            if sym.members:                              # a fused stack: its first and last layer
                label, op = f"{sym.members[0]} .. {name}", f"stack of {len(sym.members)}"
            row = [label, op, sym.weight_format if plan.kind == "matmul" else "", zeros,
                   f"{sum(s.end - s.start for s in syms):,}", f"{sym.macs:,}", f"{plan.est_cycles:,}"]
            if wide:
                row.append(plan.reason if args.verbose else plan.reason.split(": est")[0])
            t.add_row(*row)
        con.print(t)
        con.print(_model_size(c.lowered.graph, program))
        con.print(_footprint(c))
    if args.verbose and con is not None:           # the cost model under each objective: three schedules
        from sieve.pipeline import objective_costs
        costs = objective_costs(qgraph, program.arch, args.partition)
        con.print("cost model, conv and dense layers one by one: " + "; ".join(
            f"{'[bold]' if k == args.objective else ''}--objective {k}: {cyc:,} cycles, {e / 1e6:,.4g} µJ"
            f"{'[/bold]' if k == args.objective else ''}" for k, (cyc, e) in costs.items()))
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in c.seconds.items() if v >= 0.005)
    print("quantization: " + ("a quantized model, its own scales kept" if c.lowered.quantized_input else
                              f"by Sieve, {args.calibration} calibration"))
    print(f"wrote {out} ({size:,} bytes, {sum(len(s) for s in program.streams):,} instructions) "
          f"in {elapsed:.2f} s ({stages})")
    if args.eval:
        _evaluate(con, args, c)


def _tile(text: str | None) -> int | tuple[int, int] | None:
    """--tile ROWS or ROWSxCOLS: a fused stack's output tile (rows of its last layer, and columns)."""
    if text is None:
        return None
    from sieve.errors import UsageError
    try:
        sizes = [int(v) for v in text.lower().split("x")]
        if len(sizes) not in (1, 2):
            raise ValueError
    except ValueError:
        raise UsageError(f"--tile takes output rows, or rows x columns, per tile of a fused stack (e.g. --tile 16 "
                         f"or --tile 16x16), got '{text}'") from None
    if min(sizes) < 1:
        raise UsageError(f"--tile must be at least 1 row and 1 column, got '{text}'")
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])


def _model_size(graph, program) -> str:
    layers = [n for n in graph if "w" in n.params]
    weights = sum(n.params["w"].size for n in layers)
    biases = sum(n.params["b"].size for n in layers if "b" in n.params)
    f32 = 4 * (weights + biases)
    int8 = weights + 8 * biases                      # int8 weights, int32 bias, float32 scale
    packed = len(program.data)
    return (f"model size: float32 {f32:,} B; int8 {int8:,} B; as compiled (at its weight width, packed where "
            f"sparse, with index metadata, bias, scales and alignment) {packed:,} B = {f32 / max(packed, 1):.2f}x smaller "
            f"than float32, {int8 / max(packed, 1):.2f}x than dense int8")


def _footprint(c) -> str:
    """The DRAM the binary uses: constants, and activations sharing buffers by lifetime."""
    from sieve.codegen import activation_bytes
    from sieve.codegen.layout import buffer_bytes
    program = c.program
    acts, own = program.dram_bytes - len(program.data), activation_bytes(c.schedule)
    own += sum(buffer_bytes(n) for n in c.qgraph.inputs)     # inputs: buffers of their own too
    return (f"DRAM footprint: {program.dram_bytes:,} B = constants {len(program.data):,} B + activations "
            f"{acts:,} B (buffers shared by tensors never live together, on one core; "
            f"{own:,} B with a buffer each)")


def _evaluate(con, args, c) -> None:
    """Top-1 of the float model, the pruned float model, the reference (with int4 weights: the int8-weight model
    beside it) and the compiled binary."""
    import numpy as np
    from rich.table import Table
    from sieve import api
    from sieve.errors import UsageError
    try:
        with np.load(args.eval) as data:
            x, y = data["x"], data["y"]
    except (OSError, KeyError, ValueError) as err:
        raise UsageError(f"{args.eval}: --eval needs an .npz with arrays 'x' (inputs) and 'y' (labels): {err}")
    lowered = c.lowered
    if len(lowered.graph.inputs) != 1 or len(x) != len(y):
        raise UsageError(f"{args.eval}: --eval takes single-input models and one label per input")
    opts = _front_options(args)
    threads = _threads(args, 1)

    def top1(outputs: dict) -> float:
        return float(np.mean(next(iter(outputs.values())).argmax(-1) == y))

    float_opts = {**opts, "prune": None}
    acc = {"float": top1(api.interpret(lowered.graph, x, float_model=True, **float_opts, threads=threads).floats)}
    acc["pruned"] = top1(api.interpret(lowered.graph, x, float_model=True, **opts, threads=threads).floats) \
        if args.prune else None
    low = args.weights != "int8"
    if low:                                          # the same model with int8 weights, beside the int4 one
        int8_opts = {**opts, "weights": "int8", "group": 0}
        acc["int8"] = top1(api.interpret(lowered.graph, x, **int8_opts, threads=threads).floats)
    acc[args.weights] = top1(api.interpret(lowered.qgraph, x, threads=threads).floats)
    acc["compiled"] = top1(api.simulate(c.program, x, threads=threads).floats)
    label = " (dequantized weights)" if lowered.quantized_input else ""
    width = f"{args.weights}" + (f" g{args.group}" if args.group else "")
    t = Table(title=f"top-1 on {len(y)} examples of {args.eval}", title_justify="left")
    for col in (f"float32{label}", f"float32 pruned {args.prune}" if args.prune else "float32 pruned",
                *(["int8 weights (reference)"] if low else []), f"{width} (reference)",
                f"{width} compiled (simulated)"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_row(*("-" if v is None else f"{100 * v:.2f} %" for v in acc.values()))
    con.print(t)


def cmd_quantize(args) -> None:
    from sieve import api, files
    out = files.check_output(args.output, "quantize", (".onnx",), files.model_files(args.model),
                             {".sieve": "`sieve compile` writes a Sieve binary"})
    t0 = time.perf_counter()
    from sieve.threads import blas_threads
    with _progress(args) as progress, blas_threads(_threads(args, None)):
        model = api.quantize(args.model, **_front_options(args), progress=progress)
    raw = model.SerializeToString()
    files.write_bytes(out, raw)
    print(f"wrote {out} ({len(raw):,} bytes, QDQ: int8 activations per tensor, int8 weights per channel) "
          f"in {time.perf_counter() - t0:.2f} s")


# ---------------------------------------------------------------- run / interpret

def _save_outputs(path: Path, ints: dict, floats: dict) -> None:
    """NAME: dequantized float32; NAME.<type>: the raw integers in the model's own type."""
    import numpy as np
    from sieve import files
    arrays = dict(floats)
    for name, q in ints.items():
        arrays[f"{name}.{np.dtype(q.dtype).name}"] = q
    files.save_npz(path, arrays)


def _print_top1(con, floats: dict, inferences: int) -> None:
    import numpy as np
    for name, y in floats.items():
        if y.ndim != 2:
            continue
        top = np.argmax(y, axis=1)
        if inferences <= 8:
            con.print(f"{name}: top-1 per inference {top.tolist()}")
        else:
            classes, counts = np.unique(top, return_counts=True)
            common = ", ".join(f"{c} ({n}x)" for c, n in sorted(zip(classes.tolist(), counts.tolist()),
                                                               key=lambda cn: -cn[1])[:3])
            con.print(f"{name}: {inferences} inferences, {len(classes)} distinct top-1 classes; most often "
                      f"{common}")


def cmd_run(args) -> None:
    import json
    from sieve import files
    from sieve.errors import UsageError
    from sieve.simulator import load_binary, run
    from sieve.data import read_inputs
    from sieve.threads import blas_threads
    src = [Path(args.binary)] + ([Path(args.input)] if args.input else [])
    out = files.check_output(args.output, "--output", ARRAYS, src)
    stats_path = files.check_output(args.stats, "--stats", (".json",), src)
    trace_path = files.check_output(args.trace, "--trace", (".json",), src)
    files.check_distinct(out, stats_path, trace_path)
    t0 = time.perf_counter()
    program = load_binary(args.binary, _arch_arg(args))
    t_load = time.perf_counter() - t0
    if args.check:
        _check_ordering(program, args.binary)
    if args.input is None and args.report:
        args.timing_only = True                      # a report needs no data: timing is data-independent
    inputs = None
    if not args.timing_only:
        if args.input is None:
            raise UsageError("--input is required (or use --timing-only)")
        inputs = read_inputs(args.input, {d.name: d.shape for d in program.inputs})
    t1 = time.perf_counter()
    with blas_threads(_threads(args, 1)):
        result = run(program, inputs, functional=not args.timing_only)
    elapsed = time.perf_counter() - t1
    from sieve.report import fusion_report, sparsity_report, summary_line, zvc_line
    report = sparsity_report(program, result.stats) if (args.report or stats_path) else None
    fused = fusion_report(program, result.stats) if (args.report == "fusion" or stats_path) else None
    if out:
        _save_outputs(out, result.model_outputs(), result.floats)
    if stats_path:
        d = result.stats.to_dict()
        d["inferences"] = result.inferences
        d["sparsity"] = report
        d["fusion"] = fused
        files.write_text(stats_path, json.dumps(d, indent=1))
    if trace_path:
        files.write_text(trace_path, json.dumps(result.trace(), separators=(",", ":")))
    n = sum(len(s) for s in program.streams)
    how = "timing only" if args.timing_only else f"{result.inferences} inference(s), bit-exact"
    tail = [f"loaded {args.binary} ({n:,} instructions) in {t_load:.3f} s",
            f"simulated in {elapsed:.3f} s ({how})" + "".join(f"; wrote {p}" for p in (out, stats_path, trace_path)
                                                             if p)]
    zvc = [line for line in [zvc_line(result.stats)] if line]   # the memory table's caption, when quiet
    if args.quiet and not args.report:                # plain lines: no table library to load
        print("\n".join([summary_line(result.stats), *zvc, *tail]))
        return
    from sieve.report import cores_table, energy_table, fusion_tables, memory_table, sparsity_tables, stats_table
    con = _console()
    if args.quiet:
        con.print("\n".join([summary_line(result.stats), *zvc]))
    else:
        con.print(stats_table(result.stats, f"per layer, one inference on arch '{result.stats.arch}'", program))
        if len(result.stats.cores) > 1:
            con.print(cores_table(result.stats))
        con.print(memory_table(result.stats))
        con.print(energy_table(result.stats))
        con.print(summary_line(result.stats) + (f"; {result.inferences} inference(s) executed"
                                                 if result.inferences else ""))
    if args.report:
        for table in (fusion_tables(fused) if args.report == "fusion" else sparsity_tables(report)):
            con.print(table)
    if not args.quiet:
        _print_top1(con, result.floats, result.inferences)
    con.print("\n".join(tail))


def cmd_interpret(args) -> None:
    from sieve import api, files
    out = files.check_output(args.output, "--output", ARRAYS, files.model_files(args.model) + [Path(args.input)])
    opts = _front_options(args)
    if args.float:
        opts["calibrate"] = None
    res = api.interpret(args.model, args.input, float_model=args.float, **opts, threads=_threads(args, 1))
    _save_outputs(out, res.outputs, res.floats)
    con = _console()
    batch = len(next(iter(res.floats.values()))) if res.floats else 0
    if not args.quiet:
        _print_top1(con, res.floats, batch)
    con.print(f"wrote {out} ({'float' if args.float else 'integer'} reference)")


# ---------------------------------------------------------------- disasm / asm / arch

def cmd_disasm(args) -> None:
    from sieve import files
    from sieve.codegen import disassemble
    from sieve.simulator import load_binary
    out = files.check_output(args.output, "disasm -o", (".s", ".asm", ".txt"), [Path(args.binary)])
    text = disassemble(load_binary(args.binary))
    if out:
        files.write_text(out, text)
    else:
        sys.stdout.write(text)


def _check_ordering(program, source: str, show: int | None = None) -> None:
    """Refuse a binary with a read not ordered after the write it reads (a missing wait); ``show``:
    list up to that many first (``sieve check``), else stop at the first (``run --check``)."""
    from sieve.simulator import SimulatorError, unordered_reads
    limit = 10_000 if show is not None else 1
    races = unordered_reads(program, limit=limit)
    for race in races[:show or 0]:
        print(race)
    if races and show is None:
        raise SimulatorError(f"{source}: a read not ordered after the write it reads (a missing wait): {races[0]}; "
                             "`sieve check` lists them all")
    if races:
        raise SimulatorError(f"{source}: {len(races):,}{'+' * (len(races) >= limit)} read(s) not ordered after the "
                             "write they read: a missing wait")


def cmd_check(args) -> None:
    from sieve.simulator import load_binary
    program = load_binary(args.binary, _arch_arg(args))
    _check_ordering(program, args.binary, show=args.show)
    n = sum(len(s) for s in program.streams)
    print(f"{args.binary}: {n:,} instructions on {len(program.streams)} core(s): every read is ordered after "
          "the write it reads")


def _arch_arg(args):
    if not args.arch:
        return None
    from sieve.arch import load_arch
    return load_arch(args.arch)


def cmd_asm(args) -> None:
    from sieve import files
    from sieve.arch import encode_program
    from sieve.codegen import assemble_file
    out = files.check_output(args.output, "asm -o", (".sieve",), [Path(args.source)])
    raw = encode_program(assemble_file(args.source))
    files.write_bytes(out, raw)
    print(f"wrote {out} ({len(raw):,} bytes)")


def cmd_sweep(args) -> None:
    from sieve.dse.spec import load_spec
    from sieve.dse.store import Store
    spec = load_spec(args.spec)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise _usage(f"{out}: exists and is not a folder")
    if not args.quiet:
        arch_points = len(spec.points())
        total = arch_points * len(spec.models) * len(spec.prune) * len(spec.partition)
        print(f"{spec.name}: {total:,} points ({len(spec.models)} model(s) x {len(spec.prune)} pruning x "
              f"{len(spec.partition)} partition(s) x {arch_points:,} arch points), {spec.mode}; results in {out}/",
              file=sys.stderr)
    t0 = time.perf_counter()
    outcome = _run_spec(spec, out, args)
    frame = Store(out).points()
    print(f"{outcome.ran:,} point(s) run, {outcome.stored_before:,} already stored, {outcome.compiled} compile(s), "
          f"{outcome.errors} error(s) in {time.perf_counter() - t0:.1f} s; {len(frame):,} rows in "
          f"{out / 'points.parquet'} (per layer: {out / 'layers.parquet'})")


def cmd_pareto(args) -> None:
    import numpy as np
    from sieve.dse.pareto import pareto_mask, plot_front
    from sieve.dse.store import Store
    frame = Store(args.results).points()
    if frame.empty:
        raise _usage(f"{args.results}: no sweep results (points.parquet) here")
    from pandas.api.types import is_numeric_dtype
    metrics = [m for m in (args.x, args.y, args.z) if m]
    for m in metrics:
        if m not in frame.columns or not is_numeric_dtype(frame[m]):
            numeric = [c for c in frame.columns if is_numeric_dtype(frame[c])]
            raise _usage(f"'{m}' is not a numeric column of the results; columns: {', '.join(numeric)}")
    if "error" in frame.columns:
        frame = frame[frame["error"].isna()]
    mask = pareto_mask(frame[metrics].to_numpy(np.float64))
    front = frame[mask].sort_values(metrics)
    shown = ["model", "prune", "partition"] + [c for c in frame.columns if "." in c or c in ("cores", "clock_mhz")]
    shown = list(dict.fromkeys(c for c in shown + metrics if c in frame.columns))
    if args.csv:
        front[shown].to_csv(args.csv, index=False)
    if args.output:
        plot_front(frame, args.x, args.y, args.z, mask, args.output)
    if not args.quiet:
        from sieve.report import table
        t = table(f"Pareto front: {len(front)} of {len(frame)} points, minimizing {', '.join(metrics)}", shown, 0)
        for _, row in front[shown].iterrows():
            t.add_row(*[f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row])
        _console().print(t)
    wrote = [str(p) for p in (args.output, args.csv) if p]
    print(f"{len(front)} point(s) on the front of {len(frame)}" + (f"; wrote {', '.join(wrote)}" if wrote else ""))


def cmd_study(args) -> None:
    from sieve.dse import study
    from sieve.dse.store import Store
    try:
        budget = study.parse_bytes(args.sram_budget)
        if not all(c.strip().isdigit() for c in args.cores.split(",")):
            raise ValueError(f"'{args.cores}' is not a list of core counts (e.g. 1,2,4)")
        cores = [int(c) for c in args.cores.split(",")]
        if min(cores) < 1:
            raise ValueError("core counts must be positive")
        spec = study.study_spec(args.model, budget, cores, args.arch, args.size, args.calibrate)
    except ValueError as err:
        raise _usage(f"--sram-budget/--cores: {err}") from None
    out = Path(args.output)
    if not args.quiet:
        print(f"{spec.name}: {len(spec.points())} splits over {', '.join(map(str, cores))} cores; results in {out}/",
              file=sys.stderr)
    _run_spec(spec, out, args)
    store = Store(out)
    model = Path(args.model).stem if Path(args.model).suffix else args.model
    _, text = study.write(store.points(), store.layers(), model, budget, out)
    if not args.quiet:
        print(text)
    print(f"wrote {out / 'table.csv'}, {out / 'table.md'}, {out / 'heatmap.png'}, {out / 'summary.md'}")


def cmd_plot(args) -> None:
    from sieve.dse import plots
    from sieve.dse.store import Store
    store = Store(args.results)
    points = store.points()
    if points.empty:
        raise _usage(f"{args.results}: no sweep results (points.parquet) here")
    if "error" in points.columns:
        points = points[points["error"].isna()]
    if args.points:
        try:
            wanted = [int(p) for p in args.points.split(",")]
        except ValueError:
            raise _usage(f"--points: '{args.points}' is not a list of point numbers") from None
        missing = sorted(set(wanted) - set(points["point"]))
        if missing:
            raise _usage(f"--points: no successful point numbered {missing[0]} in {args.results}")
        points = points[points["point"].isin(wanted)]
    if args.kind == "layers":
        if len(points) > 60:
            raise _usage(f"{len(points)} points are too many bars: choose some with --points")
        plots.layer_breakdown(points, store.layers(), args.output)
    else:
        plots.roofline(points, args.output)
    print(f"wrote {args.output} ({len(points)} point(s))")


def _run_spec(spec, out: Path, args):
    """A sweep spec on the engine the options chose (--workers, --dask), with a progress bar."""
    from sieve.sweeps import run_spec
    with _progress(args) as bar:
        return run_spec(spec, out, args.workers, args.dask, bar)


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local worker processes (default 1: in this process)")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask cluster: a scheduler address "
                   "(tcp://host:8786), or 'local' for a LocalCluster of --workers processes")


def _usage(message: str):
    from sieve.errors import UsageError
    return UsageError(message)


def cmd_arch(args) -> None:
    from sieve.arch import load_arch, preset_names
    if args.name is None:
        for name in preset_names():
            arch = load_arch(name)
            c = arch.core
            print(f"{name:<10} {arch.cores} core(s), {c.pe_rows}x{c.simd_lanes} MACs, "
                  f"{c.scratchpad_bytes // 1024} KiB scratchpad, {arch.memory.l2_bytes // 1024} KiB L2, "
                  f"{arch.memory.dram_bytes_per_cycle:g} B/cycle DRAM, {arch.clock_mhz:g} MHz, "
                  f"{arch.area_mm2()['total']:.1f} mm²")
        print("show one as TOML: sieve arch NAME (save it, edit it, pass it to --arch)")
        return
    sys.stdout.write(load_arch(args.name).to_toml())


# ---------------------------------------------------------------- parser

def _calibration_options(p: argparse.ArgumentParser, prune: bool = True) -> None:
    p.add_argument("--calibrate", metavar="DATA", help="calibration inputs for a float model: .npy, .npz by "
                   "input name, or a folder of images (preprocessing: docs/calibration.md); default: 8 "
                   "seeded standard-normal samples, with a warning. Quantized models keep their scales")
    p.add_argument("--calibration", choices=("minmax", "percentile"), default="minmax",
                   help="range estimator (default %(default)s)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="for --calibration percentile: the upper percentile kept (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the default calibration data")
    p.add_argument("--batch", type=int, metavar="N", help="batch size for a model exported with a dynamic batch "
                   "(default 1)")
    p.add_argument("--prune", metavar="S", help="prune a float model first: a fraction for magnitude pruning "
                   "(0.9 = 90 %% zeros) or N:M along the input channels (2:4)")
    p.add_argument("--prune-scope", choices=("layer", "global"), default="layer",
                   help="magnitude pruning per layer or over all layers together (default %(default)s)")
    p.add_argument("--keep-ends", action="store_true", help="keep the first and last layers dense and int8")
    p.add_argument("--weights", choices=("int8", "int4"), default="int8",
                   help="weight width of conv and dense layers (default %(default)s; docs/low-bit.md)")
    p.add_argument("--group", type=int, default=0, metavar="G",
                   help="int4: an integer scale multiplier per G input channels (a power of two) besides the "
                        "per-channel scale (default: per channel only)")
    p.add_argument("--weight-clip", choices=("mse", "minmax"), default="mse",
                   help="int4: the clipping range of each channel or group, by least squared error or the "
                        "largest magnitude (default %(default)s)")


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """-v, -q and --threads, accepted before or after the command."""
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="log each stage with its time, show full plans, tracebacks of internal errors")
    p.add_argument("-q", "--quiet", action="store_true", default=default(False), help="only the summary lines")
    p.add_argument("--threads", type=int, metavar="N", default=default(None),
                   help="BLAS threads (0: the BLAS library's default). Default: 1 for simulation and reference "
                        "runs (fastest for their many small exact products), the BLAS default for compiling "
                        "(calibration's large convolutions)")


class _Version(argparse.Action):
    """--version, looked up only when asked (reading package metadata costs tens of milliseconds)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from sieve import __version__
        print(f"sieve {__version__}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sieve", description="Compile models for sparse INT8 accelerators and "
                                "simulate the binaries cycle by cycle, bit-exact.")
    p.add_argument("--version", action=_Version)
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kw) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help, **kw)
        _common(c, top=False)
        return c

    z = command("zoo", "list or export the bundled models")
    zs = z.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    zl = zs.add_parser("list", help="list zoo models")
    _common(zl, top=False)
    zl.set_defaults(func=cmd_zoo_list)
    ze = zs.add_parser("export", help="write a zoo model as ONNX or as a .sv text model (+ .npz weights)")
    _common(ze, top=False)
    ze.add_argument("name", help="zoo model name (see `sieve zoo list`)")
    ze.add_argument("-o", "--output", required=True, help="output file: .onnx (the ONNX-built models: all but "
                    "mlp and lenet5) or .sv (any; weights in a side .npz)")
    ze.add_argument("--size", type=int, help="input resolution of the image models (default 224; YOLO 320), or "
                    "tokens of the BERT encoders (default 128; Tiny 32)")
    ze.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    ze.add_argument("--inline", action="store_true", help="write weights inline instead of a side .npz")
    ze.set_defaults(func=cmd_zoo_export)
    zi = zs.add_parser("inputs", help="write seeded random inputs in a zoo model's input shape (.npy)")
    _common(zi, top=False)
    zi.add_argument("name", help="zoo model name")
    zi.add_argument("-o", "--output", required=True, help="output .npy")
    zi.add_argument("--count", type=int, default=8, help="how many inputs (default %(default)s)")
    zi.add_argument("--size", type=int, help="input resolution of the image models, or tokens of the BERT encoders")
    zi.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    zi.set_defaults(func=cmd_zoo_inputs)

    c = command("compile", "compile a model to a .sieve binary")
    c.add_argument("model", help="model file (.sv or .onnx: float, QDQ or QOperator)")
    c.add_argument("--arch", default="default", help="preset name (%(default)s, edge) or TOML file")
    c.add_argument("-o", "--output", help="output binary, .sieve (default: MODEL.sieve in the current folder)")
    _calibration_options(c)
    c.add_argument("--partition", choices=("auto", "channels", "rows", "batch", "pipeline"), default="auto",
                   help="split conv/dense layers across the arch's cores by output channels, output rows or "
                   "images (auto, the default: the cost model chooses per layer), or run consecutive layers "
                   "on different cores, images flowing through them (pipeline)")
    c.add_argument("--fusion", choices=("auto", "none", "max"), default="auto",
                   help="run consecutive conv, pooling and element-wise layers as fused stacks whose "
                   "intermediate tensors stay in the scratchpad: auto (the default) where the cost model "
                   "estimates a stack no slower and no more DRAM-hungry than its layers one by one, max "
                   "wherever stacks fit, none: layer by layer (docs/fusion.md)")
    c.add_argument("--tile", metavar="ROWS[xCOLS]", help="output tile of every fused stack: rows per band, and "
                   "columns (tiles narrower than a row recompute their overlap); default: the cost model's choice")
    c.add_argument("--overlap", choices=("recompute", "cache"), help="rows that neighbouring bands share: "
                   "computed again in each band, or kept in the scratchpad (default: the cheaper per stack)")
    c.add_argument("--objective", choices=("cycles", "energy", "edp"), default="cycles",
                   help="what each layer's weight format, tiling and partition minimize by the cost model's "
                        "estimates: cycles, energy, or their product (default %(default)s); with -v the plans show the "
                        "other choices' cycles and energy, and the summary each objective's totals")
    c.add_argument("--compress-activations", choices=("none", "zvc"), default="none",
                   help="zvc: intermediate activations move through DMA as a bitmask plus the bytes that are not "
                        "their zero point (sizes measured from the data in a run, estimated in a timing-only run)")
    c.add_argument("--compress-weights", choices=("none", "zvc"), default="none",
                   help="zvc: weight loads that are at least 1/8 zeros move the same way")
    c.add_argument("--no-balance", action="store_true",
                   help="keep output channels in their natural order on the PE rows (for comparison)")
    c.add_argument("--no-twin", action="store_true", help="skip compiling and simulating the dense and unfused "
                   "twins that `sieve run --report` compares sparse layers and fused stacks against")
    c.add_argument("--eval", metavar="NPZ", help="report top-1 of the float, pruned float, reference (int8, and "
                   "int4 beside int8 weights with --weights int4) and compiled models on an .npz with 'x' (inputs) "
                   "and 'y' (labels)")
    c.set_defaults(func=cmd_compile)

    qz = command("quantize", "write the model Sieve compiles (calibrated, pruned, BN folded) as a QDQ ONNX file")
    qz.add_argument("model", help="float model file (.sv or .onnx)")
    qz.add_argument("-o", "--output", required=True, help="output .onnx")
    _calibration_options(qz)
    qz.set_defaults(func=cmd_quantize)

    r = command("run", "simulate a binary: outputs, per-layer cycles and energy")
    r.add_argument("binary", help=".sieve file")
    r.add_argument("--input", help="input .npy (or .npz by input name); float data is quantized with "
                   "the binary's input scale, int8/uint8 data is used as is; a leading batch runs one "
                   "inference per item")
    r.add_argument("--output", help="write outputs to this .npz: NAME (dequantized float32) and NAME.int8 "
                   "(NAME.uint8 for uint8 models, NAME.int32 for raw int32 outputs), NAME as in the model")
    r.add_argument("--stats", help="write every figure of the report as JSON (schema: docs/stats.md)")
    r.add_argument("--trace", help="write the run as Chrome/Perfetto trace JSON (open at ui.perfetto.dev): a track "
                   "per queue per core, the layers, arrows for cross-core waits")
    r.add_argument("--arch", help="run on this arch instead of the embedded one (may differ in memory, clock, "
                   "energy, area and the core's timing fields, not in cores, PE array or buffer sizes)")
    r.add_argument("--timing-only", action="store_true", help="skip functional execution (same cycles)")
    r.add_argument("--report", nargs="?", const="sparsity", choices=("sparsity", "fusion"),
                   help="sparsity (the default): per layer weight format, density, lane utilization, skipped "
                   "MACs, and cycles and energy against the dense twin; fusion: per fused stack its layers, "
                   "bands, where each tensor lived, DRAM bytes, recomputed MACs, cycles, energy and "
                   "scratchpad against the same layers one by one")
    r.add_argument("--check", action="store_true", help="first check that every read is ordered after the "
                   "write it reads (`sieve check`), and refuse the binary otherwise")
    r.set_defaults(func=cmd_run)

    ck = command("check", "check a binary's synchronization: every read ordered after the write it reads")
    ck.add_argument("binary", help=".sieve file")
    ck.add_argument("--arch", help="check it on this arch (as `sieve run --arch`)")
    ck.add_argument("--show", type=int, default=10, metavar="N", help="list up to N unordered reads (%(default)s)")
    ck.set_defaults(func=cmd_check)

    i = command("interpret", "run the reference interpreter (integer by default) on a model")
    i.add_argument("model", help="model file (.sv or .onnx)")
    i.add_argument("--input", required=True, help="input .npy or .npz")
    i.add_argument("--output", required=True, help="output .npz (same keys as `sieve run --output`)")
    _calibration_options(i)
    i.add_argument("--float", action="store_true", help="run the float model (pruned with --prune) instead")
    i.set_defaults(func=cmd_interpret)

    d = command("disasm", "print a binary as assembly text")
    d.add_argument("binary", help=".sieve file")
    d.add_argument("-o", "--output", help="write to a file (.s) instead of stdout")
    d.set_defaults(func=cmd_disasm)

    a = command("asm", "assemble text into a binary (byte-identical round trip with disasm)")
    a.add_argument("source", help="assembly file (.s)")
    a.add_argument("-o", "--output", required=True, help="output .sieve file")
    a.set_defaults(func=cmd_asm)

    sw = command("sweep", "run a design-space sweep from a spec file (docs/sweeps.md); resumable")
    sw.add_argument("spec", help="sweep spec (.toml)")
    sw.add_argument("-o", "--output", default="results", metavar="FOLDER",
                    help="results folder (default %(default)s): points.parquet and layers.parquet; a rerun does "
                    "only the missing points")
    _engine_arguments(sw)
    sw.set_defaults(func=cmd_sweep)

    pa = command("pareto", "the Pareto front of sweep results over two or three metrics (all minimized)")
    pa.add_argument("results", help="a sweep's results folder")
    pa.add_argument("--x", required=True, help="metric on the x axis (a column: area_mm2, latency_ms, ...)")
    pa.add_argument("--y", required=True, help="metric on the y axis")
    pa.add_argument("--z", help="a third metric (the plot colours the front by it)")
    pa.add_argument("-o", "--output", metavar="PNG", help="write the plot")
    pa.add_argument("--csv", metavar="FILE", help="write the front as CSV")
    pa.set_defaults(func=cmd_pareto)

    st = command("study", "a packaged comparison: sp-vs-l2, the same SRAM as per-core scratchpads or a shared L2")
    st.add_argument("name", choices=("sp-vs-l2",), help="the study")
    st.add_argument("--model", required=True, help="a zoo name or a model file")
    st.add_argument("--sram-budget", required=True, metavar="SIZE", help="SRAM to split, e.g. 4MiB")
    st.add_argument("--cores", default="1,2,4,8,16", help="core counts (default %(default)s)")
    st.add_argument("--arch", default="default", help="the base arch (default %(default)s)")
    st.add_argument("--size", type=int, help="input resolution of the zoo's ImageNet models")
    st.add_argument("--calibrate", metavar="DATA", help="calibration data")
    st.add_argument("-o", "--output", required=True, metavar="FOLDER", help="results folder (resumable)")
    _engine_arguments(st)
    st.set_defaults(func=cmd_study)

    pl = command("plot", "plot sweep results: cycles per layer class (layers) or the roofline")
    pl.add_argument("results", help="a sweep's results folder")
    pl.add_argument("--kind", choices=("layers", "roofline"), default="layers", help="what to plot (%(default)s)")
    pl.add_argument("--points", metavar="N,N,...", help="point numbers (the 'point' column); default all")
    pl.add_argument("-o", "--output", required=True, metavar="PNG", help="the image to write")
    pl.set_defaults(func=cmd_plot)

    ar = command("arch", "list presets, or print one as TOML that --arch reads back")
    ar.add_argument("name", nargs="?", help="preset name or TOML file")
    ar.set_defaults(func=cmd_arch)
    return p


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever sys.stderr is when they are written (not when ``main`` ran: a library call
    after ``main`` in the same process would write to a stream that may be closed)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _input_files(args) -> list[str]:
    """The files a command was given to read (what a bug report needs)."""
    names = []
    for key in ("model", "binary", "source", "arch", "input", "calibrate", "eval", "spec", "results"):
        value = getattr(args, key, None)
        if isinstance(value, str) and Path(value).exists():
            names.append(value)
    return names


def _user_errors() -> tuple:
    from sieve.errors import ERRORS
    return ERRORS


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("sieve: %(levelname)s: %(message)s"))
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        args.func(args)
    except FileNotFoundError as err:
        print(f"sieve: error: {err.filename}: no such file", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sieve: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, _user_errors()):
            first, *rest = str(err).splitlines() or [type(err).__name__]
            print(f"sieve: error: {first}", file=sys.stderr)
            if rest and args.verbose:
                print("\n".join(rest), file=sys.stderr)
            return 1
        if args.verbose:                             # a bug in Sieve, not a user error: say so, in one line
            import traceback
            traceback.print_exc()
        named = _input_files(args)
        print(f"sieve: internal error{' on ' + ', '.join(named) if named else ''}: {type(err).__name__}: "
              f"{str(err)[:300]} (a bug in Sieve: please report it{' with that input' if named else ''}; "
              "-v shows the traceback)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
