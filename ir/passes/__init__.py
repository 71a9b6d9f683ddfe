"""Pure passes Graph -> Graph."""
from ir.passes.fuse import fuse_activations
from ir.passes.quantize import calibrate, calibrate_minmax, quantize_graph

__all__ = ["fuse_activations", "calibrate", "calibrate_minmax", "quantize_graph"]
