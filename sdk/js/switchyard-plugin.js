// Switchyard's JavaScript guest library: write a transformer plugin as an
// object with describe/handle/view.
//
// Owns the glue between an author's plugin object and the bindings that
// componentize-js generates for the `switchyard:plugin/transformer` world:
// events in, actions and view pages out, reject/retry mapped to the world's
// `handle-error`, and JSON helpers for state, collections and bodies. It does
// not build anything: `cargo xtask build` (or `componentize-js --wit wit
// --world-name transformer`) does.
//
// An author writes (and the app module re-exports what `plugin` returns):
//
//   import { plugin, upsert, reject } from "../../sdk/js/switchyard-plugin.js";
//   export const { describe, handle, view } = plugin({
//     describe: () => ({ name: "hello", version: "0.1.0-js", subscriptions: ["customer.*"] }),
//     handle(event) {
//       const body = event.json();
//       if (typeof body.id !== "string") reject('"id" is required');
//       return [upsert("hellos", body.id, { seen: true })];
//     },
//   });
//
// JSON numbers: `parseJson` (and `event.json()`) read every number as a JS
// number, except those a number would change: an integer beyond 2^53 and a
// number written with a fraction or exponent whose value is whole (`2.0`,
// `1e2`) come back as a `JsonNumber` holding their text, which `toJson`
// writes back unchanged. So a plugin can tell `2` from `2.0` and never
// rounds a large id or count.
//
// Speed: SpiderMonkey runs here without a JIT, so JavaScript code costs about
// a microsecond per few operations while the engine's built-ins (JSON.parse,
// JSON.stringify) run as native code. `parseJson` therefore reads a text with
// JSON.parse and keeps the result when writing it back gives the text itself,
// whitespace aside (then no key was given twice and every number reads back
// as written), and no number is beyond 2^53; any other text goes through the
// exact reader in this file. `toJson` is JSON.stringify with a JsonNumber written as its text.

import * as hostState from "switchyard:plugin/state@0.1.1";
import * as hostCollections from "switchyard:plugin/collections@0.1.1";
import { log as hostLog } from "switchyard:plugin/log@0.1.1";

/** A number whose text a JS number would not keep: see the file comment. */
export class JsonNumber {
  constructor(text) {
    this.text = text;
    this.isInteger = !/[.eE]/.test(text);
  }
  valueOf() {
    return Number(this.text);
  }
  toString() {
    return this.text;
  }
}

/** Thrown by `reject`: the event goes to the dead-letter queue. */
export class Reject extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

/** Thrown by `retry`: the host delivers the event again later. */
export class Retry extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

export function reject(reason) {
  throw new Reject(reason);
}

export function retry(reason) {
  throw new Retry(reason);
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const SPACE = /[ \t\n\r]*/y;

/** Parses JSON text like `JSON.parse`, keeping numbers exact (see above).
 *  `onDuplicate(key, depth)` is called for a key given twice in one object. */
export function parseJson(text, onDuplicate) {
  const value = parseCanonical(text);
  return value !== undefined ? value : parseJsonExact(text, onDuplicate);
}

// 2^53: from here on a JS number may not be the integer that was written.
const UNSAFE = 9007199254740992;
// Deeper values go to the exact reader, which behaves as it always did on them.
const CANONICAL_DEPTH = 256;

/** JSON.parse's value of `text` when the exact reader would return the same
 *  value (see the file comment), otherwise undefined (JSON.parse never gives
 *  undefined). The test: `text` is JSON.stringify of that value, or is once
 *  both lose their JSON whitespace (spaces inside strings go on both sides,
 *  so the tokens still line up). Then no key was given twice (the value
 *  would have one key fewer) and each number is written as JS writes it, so
 *  none is `2.0`, `1e2` or `-0`. What remains is an integer of 2^53 or more
 *  written as JS writes it (9007199254740992, 1e+21), for which the exact
 *  reader keeps the text: those are looked for in the value. */
function parseCanonical(text) {
  try {
    const value = JSON.parse(text);
    const written = JSON.stringify(value);
    if (written !== text && withoutSpace(written) !== withoutSpace(text)) return undefined;
    if (typeof value === "number") return value >= UNSAFE || value <= -UNSAFE ? undefined : value;
    if (typeof value === "object" && value !== null && mayBeUnsafe(value, 0)) return undefined;
    return value;
  } catch {
    return undefined;
  }
}

const SPACE_CHARS = [" ", "\n", "\r", "\t"];

/** `text` without JSON's whitespace characters, by the engine's split and
 *  join (a regular expression runs slower there). */
function withoutSpace(text) {
  let rest = text;
  for (let i = 0; i < SPACE_CHARS.length; i++) {
    if (rest.includes(SPACE_CHARS[i])) rest = rest.split(SPACE_CHARS[i]).join("");
  }
  return rest;
}

/** Whether object or array `value` holds a number of 2^53 or more in
 *  magnitude, or nests deeper than CANONICAL_DEPTH (then it may). */
function mayBeUnsafe(value, depth) {
  if (depth > CANONICAL_DEPTH) return true;
  const items = Array.isArray(value) ? value : Object.values(value);
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (typeof item === "number") {
      if (item >= UNSAFE || item <= -UNSAFE) return true;
    } else if (typeof item === "object" && item !== null && mayBeUnsafe(item, depth + 1)) {
      return true;
    }
  }
  return false;
}

/** The exact reader `parseJson` falls back to, character by character:
 *  the same values, slower (exported for the tests that hold the two
 *  together). */
export function parseJsonExact(text, onDuplicate) {
  let pos = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at position ${pos}`);
  };
  const space = () => {
    SPACE.lastIndex = pos;
    SPACE.exec(text);
    pos = SPACE.lastIndex;
  };
  const string = () => {
    const start = pos;
    pos += 1;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (Number.isNaN(c)) fail("unterminated string");
      if (c === 34) break;
      pos += c === 92 ? 2 : 1;
    }
    pos += 1;
    return JSON.parse(text.slice(start, pos));
  };
  const value = (depth) => {
    space();
    const c = text[pos];
    if (c === "{") {
      pos += 1;
      const object = {};
      space();
      if (text[pos] === "}") {
        pos += 1;
        return object;
      }
      for (;;) {
        space();
        if (text[pos] !== '"') fail("expected a key");
        const key = string();
        space();
        if (text[pos] !== ":") fail("expected ':'");
        pos += 1;
        const item = value(depth + 1);
        if (onDuplicate && Object.hasOwn(object, key)) {
          onDuplicate(key, depth);
        }
        Object.defineProperty(object, key, {
          value: item, enumerable: true, writable: true, configurable: true,
        });
        space();
        if (text[pos] === ",") {
          pos += 1;
        } else if (text[pos] === "}") {
          pos += 1;
          return object;
        } else fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      pos += 1;
      const array = [];
      space();
      if (text[pos] === "]") {
        pos += 1;
        return array;
      }
      for (;;) {
        array.push(value(depth + 1));
        space();
        if (text[pos] === ",") {
          pos += 1;
        } else if (text[pos] === "]") {
          pos += 1;
          return array;
        } else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith("false", pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith("null", pos)) {
      pos += 4;
      return null;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) fail("expected a JSON value");
    pos = NUMBER.lastIndex;
    const number = Number(m[0]);
    const written = m[1] === undefined && m[2] === undefined;
    if (written ? Number.isSafeInteger(number) : !Number.isInteger(number)) {
      return number;
    }
    return new JsonNumber(m[0]);
  };
  const result = value(0);
  space();
  if (pos !== text.length) fail("trailing characters");
  return result;
}

// JSON.rawJSON (SpiderMonkey has it; Node before 21 does not) lets
// JSON.stringify write a JsonNumber's text.
const rawJson = typeof JSON.rawJSON === "function" ? JSON.rawJSON : undefined;
if (rawJson) {
  Object.defineProperty(JsonNumber.prototype, "toJSON", {
    value() {
      return rawJson(this.text);
    },
  });
}

/** `value` as compact JSON text: JSON.stringify's, except that a `JsonNumber`
 *  keeps its text and a BigInt writes its digits. */
export function toJson(value) {
  if (rawJson) {
    try {
      return JSON.stringify(value);
    } catch {
      // A BigInt, or a JsonNumber made from text that is not a JSON number:
      // written by hand below.
    }
  }
  return writeJson(value);
}

/** toJson by hand, where JSON.stringify cannot write the value (a BigInt)
 *  or JSON.rawJSON is missing: the same text as JSON.stringify, with a
 *  JsonNumber's text and a BigInt's digits. */
function writeJson(value, key) {
  if (value instanceof JsonNumber) return value.text;
  if (value !== null && typeof value === "object" && typeof value.toJSON === "function") {
    value = value.toJSON(key);
    if (value instanceof JsonNumber) return value.text;
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) value = value.valueOf();
  if (typeof value === "bigint") return value.toString();
  if (value !== null && typeof value === "object" && JSON.isRawJSON?.(value)) return value.rawJSON;
  if (Array.isArray(value)) {
    return `[${Array.from(value, (item, i) => writeJson(item, String(i)) ?? "null").join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    const parts = [];
    for (const name of Object.keys(value)) {
      const text = writeJson(value[name], name);
      if (text !== undefined) parts.push(`${JSON.stringify(name)}:${text}`);
    }
    return `{${parts.join(",")}}`;
  }
  // undefined for undefined, a function or a symbol: left out, as by JSON.stringify.
  return JSON.stringify(value);
}

/** The action writing JSON `value` under `key` in `collection`. */
export function upsert(collection, key, value) {
  return { tag: "upsert", val: { collection, key, json: toJson(value) } };
}

/** The action removing the document under `key` in `collection`. */
export function remove(collection, key) {
  return { tag: "delete", val: { collection, key } };
}

/** The action publishing `body` (an object) to the exchange after commit. */
export function publish(routingKey, body) {
  return { tag: "publish", val: { routingKey, body: toJson(body) } };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The plugin's private key-value state (read-your-writes, committed with
 *  the batch, discarded with a rejected event). */
export const state = {
  get: (key) => hostState.get(key),
  set: (key, bytes) => hostState.set(key, typeof bytes === "string" ? encoder.encode(bytes) : bytes),
  delete: (key) => hostState.delete(key),
  getJson(key, fallback = undefined) {
    const raw = hostState.get(key);
    return raw === undefined || raw === null ? fallback : parseJson(decoder.decode(raw));
  },
  setJson: (key, value) => hostState.set(key, encoder.encode(toJson(value))),
};

/** Read-only access to documents committed by earlier batches. */
export const collections = {
  get: (collection, key) => hostCollections.get(collection, key),
  getJson(collection, key) {
    const raw = hostCollections.get(collection, key);
    return raw === undefined || raw === null ? undefined : parseJson(raw);
  },
  /** Up to `limit` `[key, jsonText]` pairs with keys after `after`. */
  scan: (collection, after, limit) =>
    hostCollections.scan(collection, after ?? undefined, limit).map((e) => [e.key, e.json]),
};

/** Log lines the host writes under the plugin's name. */
export const log = Object.fromEntries(
  ["trace", "debug", "info", "warn", "error"].map((level) => [level, (m) => hostLog(level, String(m))]),
);

/** What an event (`id`, `routingKey`, `body`, `receivedAtMs`) has besides
 *  its fields: `json()`, the body parsed; a body that does not parse is
 *  rejected. */
const EVENT = {
  json() {
    try {
      return parseJson(this.body);
    } catch (e) {
      return reject(`body is not readable: ${e.message}`);
    }
  },
};

/** The exports of the transformer world, driving `impl` (an object with
 *  `describe()`, `handle(event)` returning actions, and `view(name, after,
 *  limit)` returning `{items, next}` with items as JSON values). */
export function plugin(impl) {
  return {
    describe() {
      const info = impl.describe();
      return {
        name: info.name,
        version: info.version,
        subscriptions: info.subscriptions ?? [],
        views: info.views ?? [],
      };
    },
    handle(event) {
      // The bindings' own object, given `json()`: one call rather than a copy
      // and a closure per event.
      Object.setPrototypeOf(event, EVENT);
      try {
        return impl.handle(event) ?? [];
      } catch (e) {
        if (e instanceof Reject) throw { tag: "reject", val: e.reason };
        if (e instanceof Retry) throw { tag: "retry", val: e.reason };
        throw e;
      }
    },
    view(name, after, limit) {
      if (!impl.view) throw `unknown view ${name}`;
      let page;
      try {
        page = impl.view(name, after ?? undefined, limit);
      } catch (e) {
        if (e instanceof Reject || e instanceof Retry) throw e.reason;
        throw e;
      }
      return { items: page.items.map(toJson), next: page.next ?? undefined };
    },
  };
}
