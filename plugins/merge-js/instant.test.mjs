// Checks instant.js against plugins/conformance/instants.json (the inputs
// of the Rust switchyard-instant's tests, each with its [secs, nanos] from
// those tests or the reason the ports give) and round-trips formatted milliseconds. Run: node instant.test.mjs
import fs from "node:fs";
import * as instant from "./instant.js";

const cases = JSON.parse(fs.readFileSync(new URL("../conformance/instants.json", import.meta.url), "utf8"));
const wrong = [];
for (const [text, want] of Object.entries(cases)) {
  let got;
  try {
    got = instant.parse(text);
  } catch (e) {
    if (!(e instanceof instant.ParseError)) throw e;
    got = e.message;
  }
  if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`${JSON.stringify(text)}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}
for (const [ms, text] of [[0n, "1970-01-01T00:00:00.000Z"], [1795507200005n, "2026-11-24T08:00:00.005Z"], [253402300799000n, "9999-12-31T23:59:59.000Z"]]) {
  if (instant.formatMillis(ms) !== text) wrong.push(`formatMillis(${ms}) = ${instant.formatMillis(ms)}`);
}
for (let ms = 0n; ms < 253402300799000n; ms += 7919993337n) {
  const [a, b] = [instant.parse(instant.formatMillis(ms)), instant.fromMillis(ms)];
  if (a[0] !== b[0] || a[1] !== b[1]) wrong.push(`round trip of ${ms}`);
}
if (wrong.length) {
  console.error(wrong.join("\n"));
  process.exit(1);
}
console.log(`instant.js: ${Object.keys(cases).length} cases ok`);
