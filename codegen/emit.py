"""The instruction emitter and the synchronization protocol between the three queues.

Counters (timeline semaphores, per core):
  LOADED  - the load queue signals once per step whose operands it fetched;
  STEPPED - the compute queue signals once per step (after its last instruction);
  STORED  - the store queue signals once per output tile written back.
A compute step waits LOADED >= its loads; a load into a buffer slot waits
STEPPED >= the last step that read that slot; a REQUANT/vector op into an
output slot waits STORED >= the store that drained it; a store waits STEPPED
>= the step that produced its tile. The first load of a layer on a core waits
until that core's earlier stores have landed (its scratchpad is reused).
Across cores, synchronization follows the data: before a part's first load, a
WAIT instruction per other core that wrote part of an input tensor (of the
images the part covers, in a pipeline) holds the load queue until that core's
STORED counter reaches its value after its last store of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sieve.arch.isa import Instruction, Opcode

LOADED, STEPPED, STORED = 1, 2, 3


@dataclass
class Box:
    """A 3-D byte box [n0][n1][n2] inside a DRAM array of row pitch p1 (bytes per dim-1 step)
    and p0 (bytes per dim-0 step), stored densely in the scratchpad."""
    dram: int
    n0: int
    n1: int
    n2: int
    p0: int
    p1: int

    def transfers(self, spad: int):
        """(dram, spad, rows, row_bytes, dram_stride, spad_stride) covering the box."""
        plane = self.n1 * self.n2
        if plane * self.n0 == 0:
            return []
        if self.n2 == self.p1:                              # each dim-0 slice is contiguous
            if plane == self.p0 or self.n0 == 1:            # ... and so is the whole box
                return [(self.dram, spad, 1, self.n0 * plane, 0, 0)]
            return [(self.dram, spad, self.n0, plane, self.p0, plane)]
        return [(self.dram + i * self.p0, spad + i * plane, self.n1, self.n2, self.p1, self.n2)
                for i in range(self.n0)]


@dataclass
class Slots:
    """A double-buffered scratchpad region: which tile each slot holds, and the counter value
    after which its last user is done with it (STEPPED for inputs, STORED for outputs)."""
    addrs: tuple[int, int]
    keys: list = field(default_factory=lambda: [None, None])
    free_at: list = field(default_factory=lambda: [0, 0])
    cur: int = 1

    def acquire(self, key=None) -> tuple[int, bool, int]:
        """(address, needs_load, counter value to wait for before overwriting). The current slot
        is reused when it already holds ``key``; ``None`` always takes the other slot."""
        if key is not None and self.keys[self.cur] == key:
            return self.addrs[self.cur], False, 0
        self.cur ^= 1
        self.keys[self.cur] = key
        return self.addrs[self.cur], True, self.free_at[self.cur]

    def release(self, value: int) -> None:
        self.free_at[self.cur] = value

    def release_previous(self, value: int) -> None:
        """The slot before the current one is read until ``value`` (rows copied out of it)."""
        self.free_at[self.cur ^ 1] = max(self.free_at[self.cur ^ 1], value)


class Emitter:
    def __init__(self) -> None:
        self.code: list[Instruction] = []
        self.loaded = self.stepped = self.stored = 0
        self._layer_fence: int | None = None
        self._pending_loads: list[Instruction] = []
        self._last_compute: int | None = None      # index of the current step's last compute

    # ---------------------------------------------------------------- layers
    def begin_layer(self) -> None:
        """The next load waits until this core's earlier stores have landed: the scratchpad regions
        of the new layer may overlap the output slots of the last one (and a tensor this core
        produced is then in DRAM)."""
        self._layer_fence = self.stored

    def wait_core(self, core: int, stored: int) -> None:
        """Hold this core's load queue until ``core`` has completed ``stored`` stores: the data a
        following load reads was written there."""
        self.code.append(Instruction.make(Opcode.WAIT, core=core, counter=STORED, value=stored))

    # ---------------------------------------------------------------- loads
    def load(self, transfers, free_wait: int = 0) -> None:
        for i, (dram, spad, rows, rb, ds, ss) in enumerate(transfers):
            waits = []
            if self._layer_fence is not None:
                waits.append((STORED, self._layer_fence))
                self._layer_fence = None
            if i == 0 and free_wait:
                waits.append((STEPPED, free_wait))
            self._pending_loads.append(Instruction.make(
                Opcode.LOAD, waits=tuple(waits), dram_addr=dram, spad_addr=spad, rows=rows, row_bytes=rb,
                dram_stride=ds, spad_stride=ss))

    def load_once(self, slots: "Slots", key, dram: int, nbytes: int) -> int:
        """The address of ``key``'s bytes in ``slots``: loaded from ``dram`` (contiguous) unless the
        current slot already holds them (constants, weights that stay)."""
        addr, fresh, free = slots.acquire(key)
        if fresh:
            self.load([(dram, addr, 1, nbytes, 0, 0)], free)
        return addr

    def _flush_loads(self) -> bool:
        if not self._pending_loads:
            return False
        last = self._pending_loads[-1]
        self._pending_loads[-1] = last.with_signal(LOADED)
        self.code.extend(self._pending_loads)
        self._pending_loads = []
        self.loaded += 1
        return True

    # ---------------------------------------------------------------- compute
    def compute(self, opcode: Opcode, out_free_wait: int = 0, **fields) -> None:
        """Queue a compute instruction of the current step (loads before it are flushed first)."""
        waits = []
        if self._flush_loads():
            waits.append((LOADED, self.loaded))
        if out_free_wait:
            waits.append((STORED, out_free_wait))
        self._last_compute = len(self.code)
        self.code.append(Instruction.make(opcode, waits=tuple(waits), **fields))

    def end_step(self) -> int:
        """Mark the step's last compute instruction as signalling STEPPED; return its value."""
        last = self.code[self._last_compute]
        self.code[self._last_compute] = last.with_signal(STEPPED)
        self._last_compute = None
        self.stepped += 1
        return self.stepped

    # ---------------------------------------------------------------- stores
    def store(self, transfers, step_value: int) -> int:
        """Write an output tile back; returns the STORED value that marks its slot free."""
        for i, (dram, spad, rows, rb, ds, ss) in enumerate(transfers):
            waits = ((STEPPED, step_value),) if i == 0 else ()
            self.code.append(Instruction.make(
                Opcode.STORE, signal=STORED if i == len(transfers) - 1 else 0, waits=waits,
                dram_addr=dram, spad_addr=spad, rows=rows, row_bytes=rb, dram_stride=ds, spad_stride=ss))
        self.stored += 1
        return self.stored

    def halt(self) -> None:
        self.code.append(Instruction.make(Opcode.HALT, waits=((STORED, self.stored),)))
