"""The Python merge's floor with its traffic: what the merge does across the
component boundary per event, with no logic in between: one state read and
one state write of an entity's size, and one upsert of a document of the
merge's size. The difference from merge-py is the merge's own Python."""

import switchyard_plugin as sy

STORED = (b'{"name":"customer-0000","email":"customer-0000@example.com",'
          b'"secs":1795507200,"nanos":0,"updatedAt":"2026-11-24T08:00:00.000Z"}')
DOC = ('{"id":"c0","name":"customer-0000","email":"customer-0000@example.com",'
       '"updatedAt":"2026-11-24T08:00:00.000Z"}')


class Io(sy.Plugin):
    def describe(self):
        return sy.Info("floor-io", "0.1.0", ["customer.*", "inventory.*"])

    def handle(self, event):
        sy.state.get("customer/c0")
        sy.state.set("customer/c0", STORED)
        return [sy.upsert_raw("customers", "c0", DOC)]


WitWorld = sy.export(Io)
