"""Pure passes Graph -> Graph."""
from ir.passes.fuse import fuse_activations
from ir.passes.prune import prune_magnitude, prune_nm, prunable, weight_sparsity
from ir.passes.quantize import calibrate, calibrate_minmax, quantize_graph

__all__ = ["prune_magnitude", "prune_nm", "prunable", "weight_sparsity", "fuse_activations", "calibrate", "calibrate_minmax", "quantize_graph"]
