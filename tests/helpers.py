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


def _ort_u8s8_saturates() -> bool:
    """Whether onnxruntime's uint8 x int8 kernels saturate on this host. On x86-64 without VNNI they
    multiply with (v)pmaddubsw, which adds each pair of u8·s8 products in int16 with saturation, so
    their integers differ from the exact ones that Sieve (and onnxruntime on a VNNI or ARM CPU) computes."""
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


ORT_U8S8_SATURATES = _ort_u8s8_saturates()
U8S8_REASON = ("onnxruntime's uint8-activation kernels saturate pairs of products in int16 on x86-64 "
               "CPUs without VNNI, so its integers are not the exact ones to compare with")


def skip_unless_ort_exact(uint8: bool = True) -> None:
    """Skip an onnxruntime comparison of a model with uint8 activations on a host where onnxruntime's
    u8·s8 arithmetic saturates; models with int8 activations (``uint8=False``) still run."""
    import pytest
    if uint8 and ORT_U8S8_SATURATES:
        pytest.skip(U8S8_REASON)
