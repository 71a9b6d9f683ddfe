"""Every zoo model under --fusion max runs bit-exact (simulator == reference interpreter), and --fusion
auto is never slower nor more DRAM-hungry than --fusion none, on one core and on several. The image
models run at reduced sizes (the layers and their kinds are the full models'; what changes is the number
of rows), BERT-base is only scheduled (it has no image layers to fuse)."""
from __future__ import annotations

import numpy as np
import pytest

from sieve import zoo
from sieve.arch import load_arch
from sieve.ir import quantize_inputs
from sieve.pipeline import compile_model, integer_model, simulate_timing
from sieve.scheduler import schedule
from tests.helpers import check_bitexact, random_calibration

SIZES = {"resnet18": 64, "resnet50": 64, "mobilenetv2": 64, "vgg16": 32, "fsrcnn": 48, "efficientnet_b0": 64,
         "mobilenetv3": 64, "yolo_like": 64, "bert_tiny": 16, "vit_tiny": 64}
SMALL = [n for n in zoo.names() if n != "bert_base"]
IMAGE = ("lenet5", "resnet18", "resnet50", "mobilenetv2", "vgg16", "fsrcnn", "efficientnet_b0", "mobilenetv3",
         "yolo_like")


def _graph(name: str):
    return zoo.graph(name, size=SIZES[name]) if name in SIZES else zoo.graph(name)


@pytest.mark.parametrize("name", SMALL)
def test_every_zoo_model_is_bitexact_under_fusion_max(name):
    g = _graph(name)
    q = integer_model(g).qgraph
    arch = load_arch("default")
    sched = schedule(q, arch, fusion="max")
    stacks = [p for p in sched.layers if p.stack is not None]
    if name in IMAGE:
        assert stacks, f"{name}: no fused stack under --fusion max"
    check_bitexact(q, arch, random_calibration(g, np.random.default_rng(0), 1), fusion="max")


def test_bert_base_has_nothing_to_fuse():
    q = integer_model(zoo.graph("bert_base", size=16)).qgraph
    assert all(p.stack is None for p in schedule(q, load_arch("default"), fusion="max").layers)


@pytest.mark.parametrize("arch", ["default", "multicore"])
@pytest.mark.parametrize("name", IMAGE)
def test_fusion_auto_is_never_slower_nor_more_dram_hungry(name, arch):
    g = _graph(name)
    runs = {}
    for fusion in ("none", "auto"):
        c = compile_model(g, arch, fusion=fusion, dense_twin=False)
        stats = simulate_timing(c.program)
        runs[fusion] = (stats.cycles, stats.events["dram_read_bytes"] + stats.events["dram_write_bytes"])
    (c0, d0), (c1, d1) = runs["none"], runs["auto"]
    assert c1 <= c0 and d1 <= d0, f"{name} on {arch}: auto {c1:,} cycles, {d1:,} B; none {c0:,} cycles, {d0:,} B"


def test_fused_and_unfused_programs_compute_the_same_integers():
    """ResNet-18 (reduced) under --fusion auto and none: the same outputs from the same binary inputs."""
    g = _graph("resnet18")
    outs = []
    for fusion in ("none", "max"):
        c = compile_model(g, "default", fusion=fusion, dense_twin=False)
        x = quantize_inputs(c.qgraph, random_calibration(g, np.random.default_rng(1), 1))
        from sieve.simulator import run
        outs.append(run(c.program, x).outputs)
    for name, v in outs[0].items():
        np.testing.assert_array_equal(outs[1][name], v)


@pytest.mark.parametrize("prune, fmt", [("0.9", "unstructured"), ("2:4", "2:4")])
def test_sparse_layers_in_fused_stacks_are_bitexact(prune, fmt):
    """Pruned ResNet-18 (reduced): packed weight formats inside fused stacks."""
    g = _graph("resnet18")
    q = integer_model(g, prune=prune).qgraph
    arch = load_arch("default")
    sched = schedule(q, arch, fusion="max")
    formats = {m.geom.fmt.name for p in sched.layers if p.stack is not None for m in p.stack.members if m.kind == "matmul"}
    assert fmt in formats, formats
    check_bitexact(q, arch, random_calibration(g, np.random.default_rng(2), 1), fusion="max")
