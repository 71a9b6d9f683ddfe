"""Energy: event counts priced by the arch's energy table (pJ)."""
from __future__ import annotations

import numpy as np

from sieve.arch.config import ArchConfig
from sieve.simulator.events import E

COMPONENTS = ("mac", "accumulator", "scratchpad", "metadata", "l2", "dram", "vector", "leakage")


def energy_pj(counts: np.ndarray, cycles: int, arch: ArchConfig, cores: int) -> dict[str, float]:
    """counts: summed event vector; cycles: span for leakage, paid by ``cores`` cores. Returns pJ per
    component."""
    e = arch.energy_table
    c = counts
    return {
        "mac": float((c[E["macs"]] - c[E["int4_macs"]] + c[E["scale_mults"]]) * e.mac_pj
                     + c[E["int4_macs"]] * e.mac_int4_pj),
        "accumulator": float(c[E["acc_adds"]] * e.acc_add_pj + c[E["acc_bytes"]] * e.acc_pj_per_byte),
        "scratchpad": float((c[E["spad_read_bytes"]] + c[E["spad_write_bytes"]]) * e.spad_pj_per_byte),
        "metadata": float(c[E["metadata_bytes"]] * e.metadata_pj_per_byte),
        "l2": float(c[E["l2_bytes"]] * e.l2_pj_per_byte),
        "dram": float((c[E["dram_read_bytes"]] + c[E["dram_write_bytes"]]) * e.dram_pj_per_byte),
        "vector": float(c[E["vector_ops"]] * e.vector_op_pj),
        "leakage": float(cycles * e.leakage_pj_per_cycle * cores),
    }
