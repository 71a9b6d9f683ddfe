"""Shared test helpers: quantize a float graph, compile it, run it, compare with the reference."""
from __future__ import annotations

import numpy as np

from sieve.arch import ArchConfig, decode_program, encode_program, load_arch, with_overrides
from sieve.codegen import generate
from sieve.ir import Graph, quantize_inputs, run_int, verify
from sieve.ir.passes import calibrate_minmax, fuse_activations, quantize_graph
from sieve.scheduler import schedule
from sieve.simulator import run


def quantize(graph: Graph, calib: dict[str, np.ndarray]) -> Graph:
    g = verify(fuse_activations(verify(graph)))
    return verify(quantize_graph(g, calibrate_minmax(g, calib)))


def random_calibration(graph: Graph, rng: np.random.Generator, n: int = 8) -> dict[str, np.ndarray]:
    return {i.name: rng.standard_normal((n,) + i.out.shape[1:]).astype(np.float32) for i in graph.inputs}


def compile_bytes(qgraph: Graph, arch: ArchConfig, **options) -> bytes:
    return encode_program(generate(schedule(qgraph, arch, **options)))


def check_bitexact(qgraph: Graph, arch: ArchConfig, inputs: dict[str, np.ndarray], **options):
    """Compile through the binary, simulate, and assert every output equals the integer reference.
    ``options`` go to the scheduler (partition, sparse, formats, ...)."""
    program = decode_program(compile_bytes(qgraph, arch, **options))
    q_in = quantize_inputs(qgraph, inputs)
    result = run(program, q_in)
    ref = run_int(qgraph, q_in)
    for name, want in ref.items():
        if want.dtype == np.float32:                 # the host's softmax: the same float computation
            np.testing.assert_array_equal(result.floats[qgraph.io_name(name)], want)
            continue
        got = result.outputs[qgraph.io_name(name)]
        assert got.dtype == np.int8 and got.shape == want.shape
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            raise AssertionError(f"{name}: {len(bad)} of {want.size} values differ on arch {arch}, "
                                 f"first at {bad[0].tolist()}: got {got[tuple(bad[0])]} want {want[tuple(bad[0])]}")
    return result


def small_arch(pe_rows: int = 4, simd_lanes: int = 4, scratchpad_bytes: int = 8192,
               accumulator_bytes: int = 2048, vector_lanes: int = 4, **memory) -> ArchConfig:
    over = {"name": "small", "core.pe_rows": pe_rows, "core.simd_lanes": simd_lanes,
            "core.scratchpad_bytes": scratchpad_bytes, "core.accumulator_bytes": accumulator_bytes,
            "core.vector_lanes": vector_lanes}
    over.update({f"memory.{k}": v for k, v in memory.items()})
    return with_overrides(load_arch("default"), over)


PRESETS = ("default", "edge")
