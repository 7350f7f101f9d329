"""The Python merge's floor: an event in, no actions out, through the
switchyard_plugin library. What every Python plugin pays per event before
its own code runs (the host's call, componentize-py's lifting and lowering,
the library's wrapper)."""

import switchyard_plugin as sy


class Empty(sy.Plugin):
    def describe(self):
        return sy.Info("floor-empty", "0.1.0", ["customer.*", "inventory.*"])

    def handle(self, event):
        return []


WitWorld = sy.export(Empty)
