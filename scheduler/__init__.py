"""Scheduler: lower each node of an int8 graph to a tiled LayerPlan for one arch."""
from __future__ import annotations

from arch.config import ArchConfig
from ir.graph import Graph, Op
from ir.types import DType
from scheduler.lower import LOWER, conv_geom
from scheduler.plan import (ConvGeom, LayerPlan, MatmulTiling, Schedule, ScheduleError, SpadLayout, split)


def schedule(graph: Graph, arch: ArchConfig) -> Schedule:
    """Plan every node of a quantized graph on ``arch``."""
    plans = []
    for node in graph:
        if node.out.dtype is DType.FLOAT32 and node.op is not Op.SOFTMAX:
            raise ScheduleError("the graph is not quantized", node.name, "run the quantize pass first")
        if node.op not in LOWER:
            raise ScheduleError(f"op '{node.op.value}' has no lowering", node.name,
                                f"supported: {', '.join(op.value for op in LOWER)}")
        plans.append(LOWER[node.op](graph, node, arch))
    return Schedule(graph, arch, tuple(plans))


__all__ = ["schedule", "Schedule", "LayerPlan", "MatmulTiling", "ConvGeom", "SpadLayout",
           "ScheduleError", "split", "conv_geom"]
