"""Simulator errors: every one names the instruction and its layer."""


class SimulatorError(Exception):
    def __init__(self, message: str, core: int | None = None, index: int | None = None, layer: str = "",
                 hint: str = ""):
        self.core, self.index, self.layer, self.hint = core, index, layer, hint
        where = ""
        if index is not None:
            where = f"core {core}, instruction {index}" + (f" (layer '{layer}')" if layer else "") + ": "
        super().__init__(where + message + (f" (hint: {hint})" if hint else ""))


class Trap(SimulatorError):
    """An instruction touched memory outside its space."""
