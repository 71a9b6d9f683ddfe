"""Codegen: allocate memory, emit the instruction stream, build the Program."""
from __future__ import annotations

from sieve.arch.binary import LayerSymbol, Program, TensorDesc
from sieve.arch.isa import VALUE_BITS
from sieve.codegen.compress import compress_transfers
from sieve.codegen.emit import Emitter
from sieve.codegen.fused import emit_stack, pack_stack
from sieve.codegen.layout import CodegenError, DataImage, Lifetime, TensorLayout, buffer_bytes, plan_tensors
from sieve.codegen.lower import CONSTANTS, EMIT
from sieve.ir.graph import Graph
from sieve.ir.types import DType
from sieve.ir.registry import opdef
from sieve.scheduler.pipeline import overlaps
from sieve.scheduler.plan import LayerPlan, Schedule

# what each plan kind puts in the data image, and how it is emitted
PACK = {**CONSTANTS, "stack": pack_stack}
EMITTERS = {**EMIT, "stack": emit_stack}


def _desc(graph: Graph, name: str, lay: TensorLayout) -> TensorDesc:
    node = graph[name]
    if opdef(node.op).scale == "host":        # the accelerator writes the logits; the host finishes
        axis = node.attrs.get("axis", -1)
        if axis not in (-1, len(node.out.shape) - 1):
            raise CodegenError("the host's softmax runs on the last axis only", name)
        src = _desc(graph, node.inputs[0], lay)
        return TensorDesc(graph.io_name(name), src.dram_addr, src.shape, src.view_shape, src.perm, src.scale, src.zero_point,
                          src.dtype, "softmax")
    t = node.out
    if t.dtype is DType.INT32:
        return TensorDesc(graph.io_name(name), lay.addr, lay.shape, lay.view_shape, lay.perm, 1.0, 0, "int32")
    return TensorDesc(graph.io_name(name), lay.addr, lay.shape, lay.view_shape, lay.perm, t.quant.scale[0], t.quant.zp,
                      "uint8" if t.quant.unsigned else "int8")


def _source(graph: Graph, name: str, kinds: dict[str, str]) -> str:
    """The node whose stores hold tensor ``name`` (views resolve to what they view)."""
    while kinds.get(name) == "alias" and graph[name].inputs:
        name = graph[name].inputs[0]
    return name


def activation_bytes(sched: Schedule) -> int:
    """The DRAM the activations would take if each had its own buffer (views, constants and the tensors
    that never leave a fused stack aside)."""
    return sum(buffer_bytes(sched.graph[p.node]) for p in sched.layers if p.kind not in ("alias", "const", "fused"))


def plan_inputs(graph: Graph, plan: LayerPlan) -> tuple[str, ...]:
    """The tensors a plan reads from DRAM: a fused stack's inputs, or the layer's."""
    return plan.stack.loaded if plan.stack is not None else tuple(graph[plan.node].inputs)


def _lifetimes(sched: Schedule, order, kinds: dict[str, str]) -> dict[str, Lifetime]:
    """Each buffer's first write, last read (in emission steps) and the cores that touch it; a view's
    readers read what it views; graph inputs are written by the host, outputs read by it."""
    graph = sched.graph
    first: dict[str, int] = {n.name: -1 for n in graph.inputs}
    last: dict[str, int | None] = {}
    cores: dict[str, set] = {}
    for k, (li, pi) in enumerate(order):
        plan = sched.layers[li]
        core = plan.parts[pi].core
        first.setdefault(plan.node, k)
        cores.setdefault(plan.node, set()).add(core)
        for name in plan_inputs(graph, plan):
            src = _source(graph, name, kinds)
            last[src] = k
            cores.setdefault(src, set()).add(core)
    for name in graph.outputs:
        last[_source(graph, name, kinds)] = None
    return {name: Lifetime(f, last.get(name, f), frozenset(cores.get(name, ()))) for name, f in first.items()}


def _stack_fields(plan: LayerPlan) -> dict:
    """A fused stack's symbol fields: its layers, bands, and where each tensor lived."""
    st = plan.stack
    if st is None:
        return {}
    regions = dict((r[0], r[1] * (r[2] if len(r) > 2 else 2)) for r in plan.spad.regions)
    where = tuple((t, "DRAM" if t in st.loaded or t == st.last else "scratchpad", int(regions[f"t:{st.home(t)}"]))
                  for t in (*st.loaded, *st.nodes))
    return dict(members=st.nodes, band_rows=int(st.rows), band_cols=int(st.cols), overlap=st.mode, recomputed_macs=int(st.recomputed_macs),
                spad_bytes=int(plan.spad.total), residency=where)


def generate(sched: Schedule) -> Program:
    """Schedule -> Program: constants from DRAM address 0, activations after them, one instruction
    stream per core (each core runs its part of every layer it has a part of), IO descriptors,
    layer symbols (one per layer and core)."""
    graph, arch = sched.graph, sched.arch
    data = DataImage()
    core = arch.core
    bundles = {p.node: PACK[p.kind](graph, graph[p.node], p, sched.orders, data, core)
               for p in sched.layers if p.kind in PACK}
    kinds = {p.node: p.kind for p in sched.layers}
    order = sched.order or tuple((li, pi) for li, p in enumerate(sched.layers) for pi in range(len(p.parts)))
    layouts, dram_end = plan_tensors(graph, len(data.buf), sched.orders,
                                     {name for name, kind in kinds.items() if kind == "alias"},
                                     {name: addr for name, addr in bundles.items() if kinds[name] == "const"},
                                     _lifetimes(sched, order, kinds),
                                     {name for name, kind in kinds.items() if kind == "fused"})
    ems = [Emitter() for _ in range(arch.cores)]
    constants = bytes(data.buf) if sched.compress else b""
    # tensor -> (core, images, STORED on that core after the part's last store), per part written
    stored: dict[str, list[tuple[int, tuple[int, int] | None, int]]] = {}
    symbols = []
    for li, pi in order:
        plan = sched.layers[li]
        part, node = plan.parts[pi], graph[plan.node]
        members = [graph[m] for m in plan.stack.nodes] if plan.stack is not None else [node]
        n_macs = sum(opdef(m.op).macs(m, [graph[i].out for i in m.inputs]) for m in members)
        geoms = [m.geom for m in plan.stack.members if m.kind == "matmul"] if plan.stack else [plan.geom]
        fmts = dict.fromkeys(g.fmt.name for g in geoms if g is not None)
        fmt = "+".join(fmts) or "dense"              # a stack's layers may differ: "dense+unstructured"
        deps = {}
        for name in plan_inputs(graph, plan):
            for c, images, value in stored.get(_source(graph, name, kinds), []):
                # this core's own stores: the layer fence covers them
                if c != part.core and overlaps(images, part.images):
                    deps[c] = max(deps.get(c, 0), value)
        em = ems[part.core]
        start = len(em.code)
        for c, value in sorted(deps.items()):
            em.wait_core(c, value)
        em.begin_layer()
        EMITTERS[plan.kind](em, graph, node, plan, part, layouts, bundles.get(plan.node))
        if sched.compress:
            tensors = [*plan_inputs(graph, plan), *(m.name for m in members)]
            compress_transfers(em.code, start, graph, tensors + [_source(graph, t, kinds) for t in tensors],
                               layouts, constants, sched.compress, sched.densities)
        stored.setdefault(node.name, []).append((part.core, part.images, em.stored))
        op = "stack" if plan.stack is not None else node.op.value
        symbols.append(LayerSymbol(node.name, op, part.core, start, len(em.code), n_macs,
                                   plan.reason, fmt, partition=plan.partition, **_stack_fields(plan)))
    for core, em in enumerate(ems):
        em.halt()
        most = max(em.loaded, em.stepped, em.stored)
        if most >= 1 << VALUE_BITS:
            raise CodegenError(f"core {core} needs {most:,} steps, more than its counters count "
                               f"({(1 << VALUE_BITS) - 1:,})", hint="larger tiles (--tile), or --fusion auto")
    inputs = tuple(_desc(graph, n.name, layouts[n.name]) for n in graph.inputs)
    outputs = tuple(_desc(graph, o, layouts[o]) for o in graph.outputs)
    return Program(arch, tuple(tuple(em.code) for em in ems), bytes(data.buf), dram_end, inputs, outputs,
                   tuple(symbols))


__all__ = ["generate", "activation_bytes", "CodegenError"]

from sieve.codegen.asm import AsmError, assemble, assemble_file, disassemble  # noqa: E402

__all__ += ["AsmError", "assemble", "assemble_file", "disassemble"]
