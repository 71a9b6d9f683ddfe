"""Sieve's integer arithmetic, specified once (``sieve_numerics.integer``).

A library below every layer of Sieve: the golden model (``sieve.ir``) and the simulator
(``sieve.simulator``) both call it, and it imports nothing of Sieve, as numpy does not. It is
installed as its own top-level package so that the layering (ir imports no layer; the simulator
only arch) stays as it is.
"""
