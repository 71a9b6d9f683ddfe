"""Sieve: compile models for sparse INT8 accelerators and simulate them cycle by cycle, bit-exact."""
