"""Scheduler: lower each node of an int8 graph to a tiled LayerPlan for one arch."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from sieve.arch.config import ArchConfig
from sieve.ir.graph import Graph
from sieve.ir.registry import opdef
from sieve.ir.types import DType
from sieve.scheduler.fusion import FUSIONS, MODES, choose as choose_stacks
from sieve.scheduler.layout import memory_orders
from sieve.scheduler.lower import LOWER, Options, conv_geom
from sieve.scheduler.partition import PARTITIONS
from sieve.scheduler.pipeline import emission_order, overlaps, pipeline
from sieve.scheduler.plan import (ConvGeom, LayerPlan, MatmulTiling, Part, Schedule, ScheduleError, SpadLayout, split)
from sieve.scheduler.tiling import OBJECTIVES


def schedule(graph: Graph, arch: ArchConfig, sparse: bool = True, balance: bool = True,
             formats: tuple[str, ...] | None = None, partition: str = "auto", fusion: str = "none",
             tile: int | tuple[int, int] | None = None, overlap: str | None = None, objective: str = "cycles",
             progress: Callable[[int, int], None] | None = None) -> Schedule:
    """Plan every node of a quantized graph on ``arch``. With ``sparse`` the cost model may pick a
    packed weight format per layer; ``balance`` orders PE rows by work in unstructured tiles;
    ``partition`` splits conv/dense layers across the arch's cores by output ``channels``, ``rows``
    or ``batch``, or lets the cost model choose per layer (``auto``); ``pipeline`` runs consecutive
    layers on different cores instead (``scheduler.pipeline``). ``fusion`` runs consecutive image
    layers as fused stacks (``scheduler.fusion``): ``auto`` where the cost model finds it pays, ``max``
    wherever they fit, ``none``; ``tile`` forces the output rows per band (or (rows, columns) per tile),
    ``overlap`` the way overlapping
    rows are handled (``recompute`` or ``cache``; default: the cheaper). ``objective``: what each layer's
    format, tiling and partition minimize by the cost model's estimates: ``cycles``, ``energy`` or
    ``edp`` (their product).
    ``progress(done, total)`` reports the nodes planned so far."""
    if partition not in PARTITIONS:
        raise ScheduleError(f"unknown partition '{partition}'", hint=f"choose one of: {', '.join(PARTITIONS)}")
    plans = []
    orders = memory_orders(graph)
    if objective not in OBJECTIVES:
        raise ScheduleError(f"unknown objective '{objective}'", hint=f"choose one of: {', '.join(OBJECTIVES)}")
    opts = Options(orders, sparse, balance, formats, partition, objective)
    for done, node in enumerate(graph):
        if progress is not None:
            progress(done, len(graph))
        if node.out.dtype is DType.FLOAT32 and opdef(node.op).scale != "host":
            raise ScheduleError("the graph is not quantized", node.name, "run the quantize pass first")
        if node.op not in LOWER:
            raise ScheduleError(f"op '{node.op.value}' has no lowering", node.name,
                                f"supported: {', '.join(op.value for op in LOWER)}")
        plans.append(LOWER[node.op](graph, node, arch, opts))
    if progress is not None:
        progress(len(graph), len(graph))
    if partition == "pipeline" and arch.cores > 1:
        plans = pipeline(graph, plans, arch.cores)
    sched = Schedule(graph, arch, tuple(plans), orders, emission_order(graph, plans))
    return fuse(sched, fusion, tile, overlap, partition)


def fuse(sched: Schedule, fusion: str = "auto", tile: int | tuple[int, int] | None = None, overlap: str | None = None,
         partition: str = "auto") -> Schedule:
    """A layer-by-layer schedule with runs of layers fused into stacks (``scheduler.fusion``); a pipeline
    across cores is left as it is."""
    if fusion == "none" and tile is None and overlap is None:
        return sched
    cores = 1 if partition == "pipeline" else sched.arch.cores
    if partition == "pipeline" and sched.arch.cores > 1:
        return sched
    plans = choose_stacks(sched.graph, list(sched.layers), sched.arch, sched.orders, fusion, tile, overlap, cores)
    return replace(sched, layers=tuple(plans), order=emission_order(sched.graph, plans))


def unfuse(sched: Schedule, plain: Schedule, stacks: set[str]) -> Schedule:
    """``sched`` with the fused stacks that end at ``stacks`` replaced by their layers' plans in ``plain``
    (the same graph scheduled layer by layer)."""
    names = {n for p in sched.layers if p.node in stacks and p.stack is not None for n in p.stack.nodes}
    plans = [plain.plan(p.node) if p.node in names else p for p in sched.layers]
    return replace(sched, layers=tuple(plans), order=emission_order(sched.graph, plans))


def only(sched: Schedule, names: set[str]) -> Schedule:
    """``sched`` with every layer but ``names`` left out (kind "skip": no instructions, its buffer kept):
    what those layers cost where they run alone, as the unfused twin measures them."""
    plans = [p if p.node in names or p.kind in ("alias", "const") else
             LayerPlan(p.node, "skip", reason="left out", parts=()) for p in sched.layers]
    return replace(sched, layers=tuple(plans), order=emission_order(sched.graph, plans))


__all__ = ["schedule", "Schedule", "LayerPlan", "MatmulTiling", "ConvGeom", "SpadLayout", "Part", "PARTITIONS",
           "ScheduleError", "split", "conv_geom", "overlaps", "FUSIONS", "MODES", "fuse", "only", "unfuse"]
