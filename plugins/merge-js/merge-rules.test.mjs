// Checks the merge's ordinary-event path against its exact path: on every
// body of a generated corpus (repeated and escaped keys, -0 and other
// numbers in every field, wrong types, whitespace, nesting, timestamps of
// every form) and every kind of stored entity, `ordinary` either declines or
// gives the action, the reason and the state writes `exact` gives. Also that
// the ordinary events of the benchmark take it.
// Run: node plugins/merge-js/merge-rules.test.mjs
import { register } from "node:module";

// The host interfaces the library imports are not called here (the state
// comes in as an argument): empty stand-ins.
const stub = "export const get = () => undefined, set = () => {}, scan = () => [], log = () => {}; export { get as delete };";
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier.startsWith("switchyard:")) return { url: "data:text/javascript,${encodeURIComponent(stub)}", shortCircuit: true };
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
const rules = await import("./merge-rules.js");
const { Reject } = await import("../../sdk/js/switchyard-plugin.js");

const decoder = new TextDecoder();

/** The plugin's state kept in a Map, as the host keeps it for a call. */
class MapState {
  constructor(values) {
    this.values = new Map(values);
  }
  get(key) {
    return this.values.get(key);
  }
  set(key, value) {
    this.values.set(key, Uint8Array.from(value));
  }
  text() {
    return JSON.stringify([...this.values].map(([k, v]) => [k, decoder.decode(v)]).sort());
  }
}

const IDS = ['"c1"', '""', "7", "null", '["c1"]', '"\\u00e9"', "-0", "0", '"\\"q"', "{}", "9007199254740993"];
const STRINGS = ['"x"', "null", "5", "false", "{}", '["x"]', '"a\\"b"', '"\u00e9t\u00e9"', "-0", "0", '"\\u0000"', "-0.0", "1e400"];
const STOCKS = ["0", "-0", "1", "37", "-1", "1e2", "2.0", "0.0", "-0.0", "18446744073709551615", "18446744073709551616",
  "9007199254740991", "9007199254740992", "9007199254740993", "1e+21", "1e21", "true", '"5"', "[1]", "null", "00", "-0E1", "1.5"];
const TIMESTAMPS = ['"2026-11-24T08:00:00Z"', '"2026-11-24T08:00:01.001Z"', '"2026-11-24T07:59:59.999Z"',
  '"2026-11-24T09:00:00+01:00"', '"2026-11-24T08:00:00.123456789Z"', '"2026-11-24T08:00:00.1234567890Z"',
  '"2026-11-24T08:00:60Z"', '"2026-11-24T24:00:00Z"', '"2026-02-30T08:00:00Z"', '"2026-11-24T08:00:00+18:01"',
  '"2026-11-24T08:00:00"', '"2026-11-24 08:00:00Z"', '"2026-11-24T08:00:00Z\\n"', '"\\u0662026-11-24T08:00:00Z"',
  "1795507200", "-0", "null", '"soon"', '"2026-11-24T08:00:00.5-05:30"'];
const ROUTING_KEYS = ["customer.created", "customer.deleted", "inventory.updated", "inventory.stock.deleted", "customer.x.deleted"];
// Stored entities: none, older, newer, the same instant, a tombstone, and
// state that is not the merge's.
const STORED = [
  null,
  '{"name":"old","email":"old@x","secs":1795507000,"nanos":0,"updatedAt":"2026-11-24T07:56:40Z"}',
  '{"name":"new","stock":4,"secs":1795600000,"nanos":5,"updatedAt":"2026-11-25T09:46:40Z"}',
  '{"name":"same","secs":1795507200,"nanos":0,"updatedAt":"2026-11-24T08:00:00Z"}',
  '{"secs":1795507000,"nanos":0,"updatedAt":"2026-11-24T07:56:40Z","deleted":true}',
  '{"secs":"1795507000","nanos":0,"updatedAt":"x"}',
  "not json",
];

const body = (pairs, space = "") => `{${pairs.map(([k, v]) => `${k}:${space}${v}`).join(`,${space}`)}}`;

/** Event bodies: an ordinary one, then each field varied alone, then keys
 *  repeated or escaped, extra fields with traps, and whitespace. */
function* bodies() {
  const base = [['"eventId"', '"00000000-0000-4000-8000-000000000001"'], ['"id"', '"c1"'], ['"name"', '"customer-0001"'],
    ['"email"', '"c@example.com"'], ['"stock"', "37"], ['"timestamp"', '"2026-11-24T08:00:01.001Z"']];
  yield body(base);
  for (const [i, values] of [[1, IDS], [2, STRINGS], [3, STRINGS], [4, STOCKS], [5, TIMESTAMPS]]) {
    for (const value of values) {
      const pairs = base.slice();
      pairs[i] = [pairs[i][0], value];
      yield body(pairs);
      yield body([...pairs.slice(0, i), ...pairs.slice(i + 1)]);
    }
  }
  for (let i = 1; i < 6; i++) {
    for (const value of ["-0", '"other"', "5", "null"]) {
      yield body([...base, [base[i][0], value]]);
      yield body([[base[i][0], value], ...base]);
    }
  }
  for (const key of ['"\\u0069d"', '"n\\u0061me"', '"stock"', '"eventId"', '"timestamp"', '"extra"', '"__proto__"']) {
    yield body([...base, [key, '"c2"']]);
    yield body([...base, [key, "-0"]]);
  }
  for (const extra of ['{"a":1,"a":2}', "-0", '[-0, {"id": 1, "id": 2}]', '"-0"', "-0.5", "1e400", '{"id":"nested"}',
    '"\\u0022"', "9007199254740993", '"{"', '"["', "[]", "{}", "2.0"]) {
    yield body([...base, ['"extra"', extra]]);
  }
  for (const stock of ["0", "-0"]) {
    yield body([...base.slice(0, 4), ['"stock"', stock], ['"timestamp"', '"2026-11-24T08:00:00Z"']]);
  }
  yield body(base, " ");
  yield ` ${body(base)}`;
  yield `${body(base)} `;
  yield `${body(base)}\n`;
  yield "[]";
  yield "{}";
  yield '{"id": "c1", "timestamp": "2026-11-24T08:00:00Z"';
  yield body(base).replace('"c1"', '"c\\u00e9"');
  yield `{${"[".repeat(300)}${"]".repeat(300)}}`;
  yield body([...base, ['"deep"', `${"[".repeat(300)}${"]".repeat(300)}`]]);
}

/** What `path` does with one event: the outcome and the state after. */
function run(path, values, routingKey, text) {
  const state = new MapState(values);
  const kind = routingKey.startsWith("customer.") ? rules.CUSTOMER : rules.PRODUCT;
  const deleting = routingKey.endsWith(".deleted");
  let outcome;
  try {
    const action = path(state, kind, deleting, text);
    outcome = action === rules.UNUSUAL ? null : JSON.stringify(action);
  } catch (e) {
    if (!(e instanceof Reject)) throw e;
    outcome = `reject: ${e.reason}`;
  }
  return { outcome, state: state.text() };
}

const encoder = new TextEncoder();
const wrong = [];
let cases = 0;
let ordinary = 0;
for (const routingKey of ROUTING_KEYS) {
  for (const text of bodies()) {
    for (const stored of STORED) {
      cases += 1;
      const initial = stored === null ? [] : [["customer/c1", encoder.encode(stored)], ["product/c1", encoder.encode(stored)]];
      const fast = run(rules.ordinary, initial, routingKey, text);
      const before = new MapState(initial).text();
      if (fast.outcome === null) {
        if (fast.state !== before) wrong.push(`${routingKey} ${text}: declined after writing state`);
        continue;
      }
      ordinary += 1;
      const exact = run(rules.exact, initial, routingKey, text);
      if (fast.outcome !== exact.outcome || fast.state !== exact.state) {
        wrong.push(`${routingKey} ${text} over ${stored}:\n  ordinary ${fast.outcome} ${fast.state}\n  exact    ${exact.outcome} ${exact.state}`);
      }
    }
  }
}
// The benchmark's events are ordinary (else the fast path is dead code).
for (const [routingKey, text] of [
  ["customer.created", '{"email":"customer-0001@example.com","eventId":"00000000-0000-4000-8000-000000000002","eventType":"customer.created","id":"c1","name":"customer-0001","timestamp":"2026-11-24T08:00:00.002Z"}'],
  ["inventory.updated", '{"eventId":"00000000-0000-4000-8000-000000000003","eventType":"inventory.updated","id":"p1","name":"product-0001","stock":111,"timestamp":"2026-11-24T08:00:00.003Z"}'],
]) {
  if (run(rules.ordinary, [], routingKey, text).outcome === null) wrong.push(`the benchmark's ${routingKey} event is not ordinary`);
}
if (wrong.length) {
  console.error(`${wrong.slice(0, 20).join("\n")}\n${wrong.length} of ${cases} cases wrong`);
  process.exit(1);
}
console.log(`merge-rules.js: ${cases} cases, ${ordinary} ordinary, all as the exact path`);
