// The per-call floor of a JavaScript plugin: an event in through the
// bindings componentize-js generates and the switchyard-plugin library, no
// actions out. `cargo bench -p switchyard --bench languages` measures it
// beside the merge when BENCH_EXTRA names its component (README, "Plugins by
// language").

import { plugin } from "../../../sdk/js/switchyard-plugin.js";

export const { describe, handle, view } = plugin({
  describe: () => ({ name: "floor-empty", version: "0.1.0", subscriptions: ["customer.*", "inventory.*"] }),
  handle: () => [],
});
