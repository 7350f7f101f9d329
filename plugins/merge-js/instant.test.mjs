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
// parse takes a regular expression's way for the common forms: it must
// agree with the character-by-character parser on every input.
const outcome = (f, text) => {
  try {
    return JSON.stringify(f(text));
  } catch (e) {
    if (!(e instanceof instant.ParseError)) throw e;
    return e.message;
  }
};
const variants = Object.keys(cases).flatMap((text) => [text, `${text} `, text.replace("T", "t"), text.replace(/Z$/, "+18:00"),
  text.replace(/Z$/, "-18:01"), text.replace(/Z$/, "+00:60"), text.replace(/Z$/, "+1:00")]);
for (const zone of ["Z", "+05:30", "-00:00", "-18:00"]) {
  for (const fraction of ["", ".1", ".123456789", ".000000001"]) {
    for (const date of ["0000-01-01", "1969-12-31", "2000-02-29", "2100-02-29", "9999-12-31", "2026-13-01", "2026-00-10", "2026-04-31"]) {
      for (const time of ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60"]) variants.push(`${date}T${time}${fraction}${zone}`);
    }
  }
}
// Twice: the second pass finds every part of every text remembered by the first.
for (const text of [...variants, ...variants]) {
  const [fast, exact] = [outcome(instant.parse, text), outcome(instant.parseExact, text)];
  if (fast !== exact) wrong.push(`${JSON.stringify(text)}: parse ${fast}, parseExact ${exact}`);
}
if (wrong.length) {
  console.error(wrong.join("\n"));
  process.exit(1);
}
console.log(`instant.js: ${Object.keys(cases).length} cases and ${variants.length} variants ok`);
