// The merge transformer in JavaScript: the Rust merge's rules
// (merge-rules.js) behind the switchyard-plugin library. It describes itself
// with the Rust merge's name, so that it replaces merge.wasm in place.

import { collections, plugin, reject, state } from "../../sdk/js/switchyard-plugin.js";
import { dataView, handle as mergeEvent } from "./merge-rules.js";

export const { describe, handle, view } = plugin({
  describe: () => ({
    name: "merge",
    version: "0.1.0-javascript",
    subscriptions: ["customer.*", "inventory.*", "analytics.data"],
    views: ["data"],
  }),
  handle: (event) => mergeEvent(state, event.routingKey, event.body, event.receivedAtMs),
  view(name, after, limit) {
    if (name !== "data") reject(`unknown view ${name}`);
    return dataView(collections, after, limit);
  },
});
