"""The accelerator description, ISA and binary format."""
from sieve.arch.binary import (BinaryFormatError, LayerSymbol, Program, TensorDesc, check_compatible,
                         decode_program, encode_program)
from sieve.arch.config import (ArchConfig, ArchError, CoreConfig, EnergyConfig, MemoryConfig, load_arch,
                         preset_names, with_overrides)
from sieve.arch.isa import Instruction, ISAError, Opcode, Queue

__all__ = ["ArchConfig", "ArchError", "CoreConfig", "EnergyConfig", "MemoryConfig", "load_arch",
           "preset_names", "with_overrides", "Instruction", "ISAError", "Opcode", "Queue",
           "BinaryFormatError", "LayerSymbol", "Program", "TensorDesc", "check_compatible",
           "decode_program", "encode_program"]
