"""Consecutive layers pipelined on different cores (``--partition pipeline``).

Each layer runs whole on one core. The layers, in program order, are cut into at most ``cores``
contiguous stages whose estimated cycles are as equal as the cut allows (the largest stage as small
as possible); stage s runs on core s. With a batch, a layer is split into one part per image and
each core runs its stage image by image: a stage starts image i as soon as the previous stage has
stored image i (synchronization follows the data), so the stages work on different images at once.
A layer whose batch is not its first dimension (a fully connected layer holds its batch in its
columns) stays one part and waits for every image.
"""
from __future__ import annotations

from dataclasses import replace

from sieve.ir.graph import Graph
from sieve.scheduler.plan import LayerPlan, Part


def stages(costs: list[int], cores: int) -> list[int]:
    """The stage of each layer: contiguous runs, at most ``cores`` of them, the largest sum of
    ``costs`` in one stage as small as possible (a binary search on that bound; each bound is tried
    greedily, which is exact for contiguous cuts)."""
    if not costs:
        return []

    def cut(bound: int) -> list[int] | None:
        out, stage, acc = [], 0, 0
        for c in costs:
            if acc and acc + c > bound:
                stage, acc = stage + 1, 0
            acc += c
            out.append(stage)
        return out if stage < cores else None
    lo, hi = max(costs), sum(costs)
    while lo < hi:
        mid = (lo + hi) // 2
        if cut(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    return cut(lo)


def _image_parts(graph: Graph, plan: LayerPlan, core: int, images: int) -> tuple[Part, ...]:
    """One part per image on ``core`` where the layer's kind splits images without a halo, else the
    whole layer."""
    node = graph[plan.node]
    if images < 2 or node.out.shape[0] != images:
        return (Part(core),)
    if plan.kind == "move" or (plan.kind == "matmul" and (plan.geom.n != images or plan.geom.batched)):
        return (Part(core),)
    per = node.out.size // images                       # elements per image (channel-last: contiguous)
    if plan.kind in ("affine", "concat", "scale"):
        per //= node.out.shape[1]                       # pixels per image
    if plan.kind in ("softmax", "layernorm"):
        per //= node.out.shape[-1]                      # rows per image
    dims = {"matmul": lambda i: {"n": (i, i + 1)}, "pool": lambda i: {"n": (i, i + 1)},
            "resize": lambda i: {"n": (i, i + 1)}, "bmm": lambda i: {"g": (i, i + 1)},
            "lerp": lambda i: {"n": (i, i + 1)},
            "eltwise": lambda i: {"e": (i * per, (i + 1) * per)},
            "affine": lambda i: {"e": (i * per, (i + 1) * per)},
            "concat": lambda i: {"e": (i * per, (i + 1) * per)},
            "scale": lambda i: {"e": (i * per, (i + 1) * per)},
            "softmax": lambda i: {"e": (i * per, (i + 1) * per)},
            "layernorm": lambda i: {"e": (i * per, (i + 1) * per)}}[plan.kind]
    return tuple(Part(core, images=(i, i + 1), **dims(i)) for i in range(images))


def pipeline(graph: Graph, plans: list[LayerPlan], cores: int) -> list[LayerPlan]:
    """The one-core plans of every layer, placed on stages and split by image."""
    work = [i for i, p in enumerate(plans) if p.kind not in ("alias", "const")]
    stage = stages([max(plans[i].est_cycles, 1) for i in work], cores)
    n_stages = (stage[-1] + 1) if stage else 1
    sums = [0] * n_stages
    for i, s in zip(work, stage):
        sums[s] += plans[i].est_cycles
    images = graph.inputs[0].out.shape[0] if graph.inputs else 1
    out = list(plans)
    for i, s in zip(work, stage):
        p = plans[i]
        parts = _image_parts(graph, p, s, images)
        note = (f"pipeline stage {s + 1} of {n_stages} on core {s} (est {sums[s]:,} cycles; the largest stage "
                f"{max(sums):,}){', image by image' if len(parts) > 1 else ''}; one core: {p.reason}")
        out[i] = replace(p, partition="pipeline", parts=parts, reason=note)
    return out


def emission_order(graph: Graph, plans: list[LayerPlan]) -> tuple[tuple[int, int], ...]:
    """(plan index, part index) in the order the parts are emitted: by the last image each part
    needs (its own, or its inputs'), then by layer. Every part comes after the parts it reads, so
    each core's stream is in an order all cores agree on (no deadlock), and a core runs its stage
    image by image."""
    index = {p.node: i for i, p in enumerate(plans)}
    ready: dict[int, list[tuple[tuple[int, int] | None, int]]] = {}
    items = []
    for li, plan in enumerate(plans):
        node = graph[plan.node]
        if plan.kind == "alias":                          # a view: what it views
            ready[li] = [r for name in node.inputs for r in ready.get(index[name], [])]
            continue
        ready[li] = []
        for pi, part in enumerate(plan.parts):
            key = part.images[1] - 1 if part.images else 0
            for name in node.inputs:
                for imgs, k in ready.get(index[name], []):
                    if overlaps(imgs, part.images):
                        key = max(key, k)
            ready[li].append((part.images, key))
            items.append((key, li, pi))
    return tuple((li, pi) for _, li, pi in sorted(items))


def overlaps(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether two image ranges share an image (``None``: every image)."""
    return a is None or b is None or (a[0] < b[1] and b[0] < a[1])
