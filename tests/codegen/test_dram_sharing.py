"""DRAM buffers shared by lifetime: tensors that are never live together on one core share memory, no two
tensors whose lifetimes overlap (or that live on several cores) overlap in DRAM, and the footprint falls."""
import numpy as np
import pytest

from sieve.arch import load_arch
from sieve.codegen import _lifetimes, activation_bytes, generate
from sieve.codegen.layout import buffer_bytes, plan_tensors
from sieve.frontend import build
from sieve.scheduler import schedule
from tests.helpers import check_bitexact, quantize, random_calibration


@pytest.mark.parametrize("model,arch", [("resnet18", "default"), ("mobilenetv2", "edge"),
                                        ("bert_tiny", "default"), ("resnet18", "multicore")])
def test_buffers_are_shared_only_between_tensors_never_live_together(model, arch):
    rng = np.random.default_rng(0)
    g = build(model, size=32, **({"classes": 10} if model != "bert_tiny" else {}))
    q = quantize(g, random_calibration(g, rng, 2))
    sched = schedule(q, load_arch(arch))
    kinds = {p.node: p.kind for p in sched.layers}
    order = sched.order or tuple((li, pi) for li, p in enumerate(sched.layers) for pi in range(len(p.parts)))
    lives = _lifetimes(sched, order, kinds)
    program = generate(sched)
    layouts, end = plan_tensors(q, len(program.data), sched.orders, {n for n, k in kinds.items() if k == "alias"},
                                {n: 0 for n, k in kinds.items() if k == "const"}, lives)
    assert end == program.dram_bytes
    owners = [n for n in lives if kinds.get(n) not in ("alias", "const") or q[n].op.value == "input"]
    spans = {n: (layouts[n].addr, layouts[n].addr + buffer_bytes(q[n])) for n in owners}
    for i, a in enumerate(owners):
        for b in owners[i + 1:]:
            (a0, a1), (b0, b1) = spans[a], spans[b]
            if a0 < b1 and b0 < a1:                       # the same memory: never live together, one core
                la, lb = lives[a], lives[b]
                assert la.cores == lb.cores and len(la.cores) == 1, (a, b)
                assert (la.last is not None and la.last < lb.first) or (lb.last is not None and lb.last < la.first)
    acts = program.dram_bytes - len(program.data)
    if arch == "multicore":                               # layers split over cores: nothing shared
        assert acts >= activation_bytes(sched)
    else:
        assert acts < activation_bytes(sched) / 2
    check_bitexact(q, load_arch(arch), random_calibration(g, rng, 1))
