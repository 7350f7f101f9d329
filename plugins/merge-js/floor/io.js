// The merge's floor in JavaScript: what the merge does across the component
// boundary per event, with no logic in between: one state read and one
// state write of an entity's size, and one upsert of a document of the
// merge's size. The difference from merge-js is the merge's own JavaScript.

import { plugin, state, upsert } from "../../../sdk/js/switchyard-plugin.js";

const STORED = new TextEncoder().encode(
  '{"name":"customer-0000","email":"customer-0000@example.com","secs":1795507200,"nanos":0,"updatedAt":"2026-11-24T08:00:00.000Z"}',
);
const DOC = { id: "c0", name: "customer-0000", email: "customer-0000@example.com", updatedAt: "2026-11-24T08:00:00.000Z" };

export const { describe, handle, view } = plugin({
  describe: () => ({ name: "floor-io", version: "0.1.0", subscriptions: ["customer.*", "inventory.*"] }),
  handle: () => {
    state.get("customer/c0");
    state.set("customer/c0", STORED);
    return [upsert("customers", "c0", DOC)];
  },
});
