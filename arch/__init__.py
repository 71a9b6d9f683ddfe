"""The accelerator description, ISA and binary format."""
from sieve.arch.binary import (BinaryFormatError, LayerSymbol, Program, TensorDesc, check_compatible,
                               decode_program, encode_program)
from sieve.arch.config import (ArchConfig, ArchError, CoreConfig, EnergyConfig, MemoryConfig, load_arch,
                               preset_names, with_overrides)
from sieve.arch.isa import Instruction, ISAError, Opcode, Queue


def load(name_or_path: str = "default", **overrides) -> ArchConfig:
    """A preset or TOML file, with dotted-key overrides: ``load("default", **{"core.pe_rows": 32})``."""
    arch = load_arch(name_or_path)
    return with_overrides(arch, overrides) if overrides else arch


__all__ = ["load", "ArchConfig", "ArchError", "CoreConfig", "EnergyConfig", "MemoryConfig", "load_arch",
           "preset_names", "with_overrides", "Instruction", "ISAError", "Opcode", "Queue",
           "BinaryFormatError", "LayerSymbol", "Program", "TensorDesc", "check_compatible",
           "decode_program", "encode_program"]
