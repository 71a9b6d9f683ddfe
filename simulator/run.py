"""Load a binary and run it: timing always, functional execution unless timing-only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from sieve_numerics import integer

from sieve.arch.binary import BinaryFormatError, Program, TensorDesc, check_compatible, decode_program
from sieve.arch.config import ArchConfig
from sieve.arch.isa import Opcode
from sieve.simulator.errors import SimulatorError, Trap
from sieve.simulator.functional import EXECUTE, Machine, OutOfBounds, dram_region
from sieve.simulator.stats import RunStats, collect
from sieve.simulator.timing import Timeline, simulate_timing

_OPCODE_VALUES = {int(op) for op in Opcode}


def load_binary(source: str | Path | bytes, arch: ArchConfig | None = None) -> Program:
    """Read and check a `.sieve` file; optionally retarget it to ``arch`` (same core shape)."""
    if isinstance(source, (bytes, bytearray)):
        raw, name = bytes(source), "<bytes>"
    else:
        name = str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as err:
            raise BinaryFormatError(f"{name}: cannot read: {err.strerror}") from None
    program = decode_program(raw, name)
    if arch is not None:
        check_compatible(program, arch, name)
        program = Program(arch, program.streams, program.data, program.dram_bytes, program.inputs,
                          program.outputs, program.layers)
    return program


def quantize(x: np.ndarray, d: TensorDesc) -> np.ndarray:
    """Host-side input quantization: saturate(round_half_even(x / scale) + zero_point)."""
    return integer.quantize(x, d.scale, d.zero_point)


def dequantize(q: np.ndarray, d: TensorDesc) -> np.ndarray:
    return integer.dequantize(q, d.scale, d.zero_point)


def _host_post(y: np.ndarray, d: TensorDesc) -> np.ndarray:
    """What the host does after the accelerator: softmax over the last axis, in float."""
    if d.post == "softmax":
        return integer.softmax_host(y)
    return y


@dataclass(frozen=True)
class RunResult:
    outputs: dict[str, np.ndarray]       # stored integers (int8; int32 for raw outputs), logical shape
    floats: dict[str, np.ndarray]        # dequantized
    stats: RunStats                      # one inference
    inferences: int
    program: Program
    timeline: Timeline | None = None     # per instruction: start, end, events, stalls

    def trace(self) -> dict:
        """The run as Chrome/Perfetto trace JSON (``simulator.trace``)."""
        from sieve.simulator.trace import chrome_trace
        return chrome_trace(self.program, self.timeline)

    def model_outputs(self) -> dict[str, np.ndarray]:
        """Outputs in the model's own integer types (uint8 where the model is uint8)."""
        return {d.name: d.to_model(self.outputs[d.name]) for d in self.program.outputs}


def _execute(p: Program, t: Timeline, inputs: Mapping[str, np.ndarray],
             nonzeros: tuple[np.ndarray, ...] | None = None) -> dict[str, np.ndarray]:
    """The outputs of one inference. ``nonzeros`` (per core, per instruction) receives the bytes of
    each zero-value-compressed transfer that are not its zero value, counted in DRAM as it runs."""
    m = Machine.for_program(p)
    counted = {}
    if nonzeros is not None:
        for core, s in enumerate(t.streams):
            for op in (Opcode.LOAD, Opcode.STORE):
                if op in s.fields:
                    at, f = s.fields[op]
                    for j in np.flatnonzero(f["zvc"] == 1):
                        counted[core, int(at[j])] = (int(f["dram_addr"][j]), int(f["rows"][j]),
                                                     int(f["row_bytes"][j]), int(f["dram_stride"][j]),
                                                     int(f["zvc_zero"][j]))
    for d in p.inputs:
        mem = d.to_memory(inputs[d.name]).view(np.uint8).ravel()
        m.dram[d.dram_addr:d.dram_addr + mem.size] = mem
    # execute in simulated-time order, not program order: an instruction that starts before the
    # data it needs has landed (a missing wait in the binary) then computes a wrong answer
    records = [s.records() for s in t.streams]
    opcodes = [s.opcode.tolist() for s in t.streams]
    handlers = [EXECUTE.get(Opcode(op)) if op in _OPCODE_VALUES else None for op in range(256)]
    cores = m.cores
    for core, idx in t.order:
        try:
            handlers[opcodes[core][idx]](m, cores[core], records[core][idx])
        except OutOfBounds as err:
            raise Trap(str(err), core, idx, p.layer_of(core, idx)) from None
        if counted and (core, idx) in counted:
            addr, rows, row_bytes, stride, zero = counted[core, idx]
            region = dram_region(m.dram, addr, rows, row_bytes, stride)
            nonzeros[core][idx] = int(np.count_nonzero(region.view(np.int8) != zero))
    return {d.name: d.from_memory(m.dram[d.dram_addr:d.dram_addr + d.nbytes].view(d.stored_dtype())).copy()
            for d in p.outputs}


def run(p: Program, inputs: Mapping[str, np.ndarray] | None = None, functional: bool = True) -> RunResult:
    """Run ``p``. Inputs may be float (quantized here with the binary's scales) or int8; a batch
    larger than the compiled one runs as consecutive inferences with the same timing."""
    timeline = simulate_timing(p)
    if not functional:
        return RunResult({}, {}, collect(p, timeline), 0, p, timeline)
    inputs = dict(inputs or {})
    batch = None
    q_inputs = {}
    for d in p.inputs:
        if d.name not in inputs:
            raise SimulatorError(f"no value for input '{d.name}' (shape {list(d.shape)})")
        x = np.asarray(inputs[d.name])
        if x.shape[1:] != d.shape[1:] or x.shape[0] % d.shape[0]:
            raise SimulatorError(f"input '{d.name}' has shape {list(x.shape)}, the binary expects "
                                 f"{list(d.shape)} (or a multiple of its batch)")
        q_inputs[d.name] = d.from_model(x) if x.dtype in (np.int8, np.uint8) else quantize(x, d)
        batch = x.shape[0] // d.shape[0]
    def one(i: int) -> dict[str, np.ndarray]:
        return {d.name: q_inputs[d.name][i * d.shape[0]:(i + 1) * d.shape[0]] for d in p.inputs}

    if timeline.zvc:       # compressed transfers: their sizes come from the first inference's data
        nonzeros = tuple(np.full(len(s), -1, np.int64) for s in timeline.streams)
        _execute(p, timeline, one(0), nonzeros)
        timeline = simulate_timing(p, nonzeros)
    stats = collect(p, timeline)
    parts = [_execute(p, timeline, one(i)) for i in range(batch or 1)]
    outputs = {d.name: np.concatenate([part[d.name] for part in parts]) for d in p.outputs}
    floats = {d.name: _host_post(dequantize(outputs[d.name], d), d) for d in p.outputs if d.dtype != "int32"}
    return RunResult(outputs, floats, stats, batch or 1, p, timeline)
