// Holds parseJson's native fast path to the exact reader (same values, same
// JsonNumbers, same errors, same duplicate reports) and toJson to the text
// the exact reader read, on clean and dirty texts: the conformance
// transcript's bodies, compact and spaced, and hand-made edge cases.
// Run: node sdk/js/switchyard-plugin.test.mjs
import fs from "node:fs";
import { register } from "node:module";

// The host interfaces the library imports are not needed here: empty stand-ins.
const stub = "export const get = () => undefined, set = () => {}, scan = () => [], log = () => {}; export { get as delete };";
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier.startsWith("switchyard:")) return { url: "data:text/javascript,${encodeURIComponent(stub)}", shortCircuit: true };
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
const { JsonNumber, parseJson, parseJsonExact, toJson } = await import("./switchyard-plugin.js");

/** Whether two parsed values are the same: -0 apart from 0, a JsonNumber
 *  from a number, key order counted. */
function same(a, b) {
  if (a instanceof JsonNumber || b instanceof JsonNumber) {
    return a instanceof JsonNumber && b instanceof JsonNumber && a.text === b.text;
  }
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return Object.is(a, b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const [ka, kb] = [Object.keys(a), Object.keys(b)];
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
}

/** parseJson's outcome on `text`: its value, or the error, and the
 *  duplicates reported. */
function outcome(parse, text) {
  const duplicates = [];
  try {
    return { value: parse(text, (key, depth) => duplicates.push(`${depth}:${key}`)), duplicates };
  } catch (e) {
    return { error: `${e.constructor.name}: ${e.message}`, duplicates };
  }
}

const texts = [];
const transcript = new URL("../../plugins/conformance/merge.jsonl", import.meta.url);
for (const line of fs.readFileSync(transcript, "utf8").split("\n").filter((l) => l.trim())) {
  const input = JSON.parse(line);
  if (typeof input.body_text === "string") texts.push(input.body_text);
  if (input.body !== undefined) {
    // Compact (serde_json, JSON.stringify), indented, and spaced as Python's json.dumps writes it.
    const spaced = JSON.stringify(input.body).replace(/":/g, '": ').replace(/,"/g, ', "');
    texts.push(JSON.stringify(input.body), JSON.stringify(input.body, null, 1), JSON.stringify(input.body, null, "\t"), spaced);
  }
}
const deep = (n) => `${"[".repeat(n)}1${"]".repeat(n)}`;
texts.push(
  '{"stock":2.0}', '{"stock":2}', '{"stock":1e2}', '{"stock":100}', '{"stock":-0}', '{"stock":0}', '{"stock":-0.0}',
  '{"stock":1.5}', '{"stock":1E400}', '{"stock":1e-7}', '{"stock":1e+21}', '{"stock":1e21}', '{"stock":123456789012345678901}',
  '{"n":9007199254740991}', '{"n":9007199254740992}', '{"n":9007199254740993}', '{"n":-9007199254740991}',
  '{"n":-9007199254740992}', '{"n":18446744073709551615}', '{"n":[9007199254740992]}', '{"a":{"b":[{"c":1e+21}]}}',
  "9007199254740992", "9007199254740991", "-0", "2.0", '"x"', "null", "true", "[]", "{}",
  '{"id":"a","id":"b"}', '{"id":"a","x":{"id":1,"id":2}}', '{"x":[{"y":1,"y":1}]}', '{"a":1,"a":1}', '{"\\u0069d":"a","id":"b"}',
  '{"2":"b","1":"a"}', '{"__proto__":{"x":1}}', '{"e":"\\u00e9\\/","f":"é"}', '{"s":"\\ud800"}', '{"s":"\ud800"}',
  ' {"a":1}', '{"a":1} ', '{"a" : 1}', '{"a" :1,"a":2}', '{"a": 1, "a": 2}', '{\n"a": 1,\r\n\t"a": 2}', '{"a b":1,"ab":2}',
  '{"a b":1, "a b":2}', '{"s":" x "}', '{"s":"\\u0020"}', '{"s":"a\\" :1"}', '{"n": 2.0}', '{"n" : -0}', '[1, 1e2]', '{"n": 9007199254740992}', deep(10), deep(300), `{"a":${deep(257)}}`, `{"a":${deep(255)}}`,
  // Not JSON: the same error either way.
  "", "not json at all", '{"a":1,}', '{"a":01}', '{"a":"unterminated', '{"a":1}x', "[1,2", '{"a":"\u0001"}', "-", "1.", ".5",
);

const wrong = [];
for (const text of texts) {
  const [fast, exact] = [outcome(parseJson, text), outcome(parseJsonExact, text)];
  const agree = fast.error === undefined
    ? exact.error === undefined && same(fast.value, exact.value)
    : fast.error === exact.error;
  if (!agree || fast.duplicates.join() !== exact.duplicates.join()) {
    wrong.push(`${JSON.stringify(text).slice(0, 80)}: parseJson ${JSON.stringify(fast)}, exact ${JSON.stringify(exact)}`);
  }
  // Written back, a compact text the exact reader keeps is the text itself.
  if (exact.error === undefined && exact.duplicates.length === 0 && JSON.stringify(JSON.parse(text)) === text) {
    const written = toJson(exact.value);
    if (written !== text) wrong.push(`toJson of ${text.slice(0, 80)} gave ${written.slice(0, 80)}`);
  }
}
for (const [value, text] of [
  [{ a: 1n, b: new JsonNumber("2.0"), c: undefined, d: [undefined, () => 1], e: new Date(0), f: new Number(3) },
    '{"a":1,"b":2.0,"d":[null,null],"e":"1970-01-01T00:00:00.000Z","f":3}'],
  [[1, , 3], "[1,null,3]"],
]) {
  if (toJson(value) !== text) wrong.push(`toJson gave ${toJson(value)}, want ${text}`);
}
if (wrong.length) {
  console.error(wrong.join("\n"));
  process.exit(1);
}
console.log(`switchyard-plugin.js: parseJson agrees with the exact reader on ${texts.length} texts`);
