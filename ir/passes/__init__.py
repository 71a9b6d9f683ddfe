"""Pure passes Graph -> Graph."""
from sieve.ir.passes.dequantize import dequantize_graph
from sieve.ir.passes.fuse import fuse_activations
from sieve.ir.passes.lowbit import lowbit_layers, lowbit_weights
from sieve.ir.passes.prune import prunable, prune_magnitude, prune_nm, weight_sparsity
from sieve.ir.passes.quantize import calibrate, calibrate_minmax, quantize_graph

__all__ = ["prune_magnitude", "prune_nm", "prunable", "weight_sparsity", "fuse_activations", "calibrate",
           "calibrate_minmax", "quantize_graph", "dequantize_graph", "lowbit_weights", "lowbit_layers"]
