"""The merge transformer in Python: the Rust merge's rules (merge_rules.py)
behind the switchyard_plugin library. It describes itself with the Rust
merge's name, so that it replaces merge.wasm in place (a hot swap)."""

import merge_rules
import switchyard_plugin as sy


class Merge(sy.Plugin):
    def describe(self):
        return sy.Info("merge", "0.1.0-python",
                       ["customer.*", "inventory.*", "analytics.data"], views=["data"])

    def handle(self, event):
        return merge_rules.handle(sy.state, event.routing_key, event.body,
                                  event.received_at_ms)

    def view(self, name, after, limit):
        if name != "data":
            sy.reject(f"unknown view {name}")
        return merge_rules.data_view(sy.collections, after, limit)


WitWorld = sy.export(Merge)
