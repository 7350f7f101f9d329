// The merge rules, a port of plugins/merge/src/merge.rs: validating customer,
// inventory and legacy `analytics.data` events, merging them into per-entity
// state (newest instant wins, absent fields keep their value, deletes leave
// a tombstone), the `customers` / `products` documents and the `data` view.
// The state it keeps has the Rust merge's exact shape, so the two swap in
// place of each other. `state` and `collections` come in as arguments.

import * as instant from "./instant.js";
import { JsonNumber, Reject, parseJson, remove, toJson, upsert } from "../../sdk/js/switchyard-plugin.js";

const CUSTOMERS = "customers";
const PRODUCTS = "products";
const SCAN_CHUNK = 500;
const U64_MAX = 18446744073709551615n;
// The fields the Rust merge reads into a struct: one given twice is an error.
const EVENT_FIELDS = ["id", "name", "email", "stock", "timestamp"];
const LEGACY_FIELDS = ["customer", "products"];

export const CUSTOMER = { prefix: "customer/", collection: CUSTOMERS, isCustomer: true };
export const PRODUCT = { prefix: "product/", collection: PRODUCTS, isCustomer: false };

const eventField = (name) => `"${name}"`;
const customerField = (name) => `customer.${name}`;
const productField = (i) => (name) => `products[${i}].${name}`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const fail = (reason) => {
  throw new Reject(reason);
};

/** A JSON value as shown in a reason: its JSON text, cut after 64 bytes. */
function show(value) {
  const text = toJson(value);
  const bytes = encoder.encode(text);
  if (bytes.length <= 64) return text;
  let end = 64;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
  return `${decoder.decode(bytes.subarray(0, end))}...`;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonNumber);
// A JSON null counts as absent.
const field = (object, name) => (Object.hasOwn(object, name) ? object[name] ?? undefined : undefined);

function parseObject(body, fields) {
  if (!body.trimStart().startsWith("{")) fail("body must be a JSON object");
  try {
    return parseJson(body, (key, depth) => {
      if (depth === 0 && fields.includes(key)) throw new SyntaxError(`duplicate field \`${key}\``);
    });
  } catch (e) {
    return fail(`body is not readable: ${e.message}`);
  }
}

/** The actions of one event, or throws Reject with the Rust merge's reason. */
export function handle(state, routingKey, body, receivedAtMs) {
  // No destructuring on this path: SpiderMonkey interprets it through the
  // iterator protocol, several calls each.
  let kind;
  let word;
  if (routingKey.startsWith("customer.")) {
    kind = CUSTOMER;
    word = routingKey.slice("customer.".length);
  } else if (routingKey.startsWith("inventory.")) {
    kind = PRODUCT;
    word = routingKey.slice("inventory.".length);
  } else if (routingKey === "analytics.data") {
    return legacyPost(state, body, receivedAtMs);
  } else {
    return fail(`unsupported routing key ${routingKey}`);
  }
  const deleting = word === "deleted" || word.endsWith(".deleted");
  let action = ordinary(state, kind, deleting, body);
  if (action === UNUSUAL) action = exact(state, kind, deleting, body);
  return action === null ? [] : [action];
}

// What `ordinary` returns for an event it is not sure about.
export const UNUSUAL = {};
// 2^53: a stock from here on goes the exact way (a JsonNumber there).
const SAFE = 9007199254740992;

/** The action of an ordinary event, or UNUSUAL for `exact` to find.
 *  Ordinary: `JSON.stringify` of `JSON.parse`'s value gives the body back
 *  (so it is an object with no key given twice, no whitespace, and every
 *  number written as JS writes it: no -0, 2.0 or 1e2), nothing nests in it
 *  (no `{` past the first, no `[`), the fields read have their usual types
 *  (a non-empty string id, strings or null for name and email, an integer
 *  from 0 below 2^53 or null for stock, a string timestamp) and the
 *  timestamp is well formed. The exact reader gives such a body the same
 *  value. */
export function ordinary(state, kind, deleting, body) {
  if (body.indexOf("{", 1) !== -1 || body.indexOf("[") !== -1) return UNUSUAL;
  let fields;
  try {
    fields = JSON.parse(body);
  } catch {
    return UNUSUAL;
  }
  if (typeof fields !== "object" || fields === null || JSON.stringify(fields) !== body) return UNUSUAL;
  const id = Object.hasOwn(fields, "id") ? fields.id : undefined;
  const text = Object.hasOwn(fields, "timestamp") ? fields.timestamp : undefined;
  if (typeof id !== "string" || id === "" || typeof text !== "string") return UNUSUAL;
  const at = instant.parseOrdinary(text);
  if (at === null) return UNUSUAL;
  if (deleting) return deleteEntity(state, kind, id, at, text);
  const name = field(fields, "name") ?? null;
  if (name !== null && typeof name !== "string") return UNUSUAL;
  const change = { id, name, email: null, stock: null };
  if (kind.isCustomer) {
    const email = field(fields, "email") ?? null;
    if (email !== null && typeof email !== "string") return UNUSUAL;
    change.email = email;
  } else {
    const stock = field(fields, "stock") ?? null;
    if (stock !== null && !(typeof stock === "number" && Number.isInteger(stock) && stock >= 0 && stock < SAFE)) {
      return UNUSUAL;
    }
    change.stock = stock;
  }
  return upsertEntity(state, kind, change, at, text);
}

/** `ordinary`'s action for any event: validation in the Rust merge's
 *  order, with its reasons. */
export function exact(state, kind, deleting, body) {
  const fields = parseObject(body, EVENT_FIELDS);
  const id = requireId(fields, eventField);
  const change = deleting ? null : validate(kind, id, fields, eventField);
  const { at, text } = requireTimestamp(fields);
  return change === null ? deleteEntity(state, kind, id, at, text) : upsertEntity(state, kind, change, at, text);
}

function legacyPost(state, body, receivedAtMs) {
  const post = parseObject(body, LEGACY_FIELDS);
  const customer = field(post, "customer");
  if (customer === undefined) fail("customer is required");
  if (!isObject(customer)) fail(`customer must be an object, got ${show(customer)}`);
  let products = field(post, "products") ?? [];
  if (!Array.isArray(products)) fail(`products must be an array, got ${show(products)}`);
  products.forEach((item, i) => {
    if (!isObject(item)) fail(`products[${i}] must be an object, got ${show(item)}`);
  });
  // Validate every part before applying any.
  const changes = [[CUSTOMER, validate(CUSTOMER, requireId(customer, customerField), customer, customerField)]];
  products.forEach((fields, i) => {
    const path = productField(i);
    changes.push([PRODUCT, validate(PRODUCT, requireId(fields, path), fields, path)]);
  });
  const at = instant.fromMillis(receivedAtMs);
  const text = instant.formatMillis(receivedAtMs);
  const actions = [];
  for (const [kind, change] of changes) {
    const action = upsertEntity(state, kind, change, at, text);
    if (action !== null) actions.push(action);
  }
  return actions;
}

const isNewer = (stored, [secs, nanos]) => stored.secs > secs || (stored.secs === secs && stored.nanos > nanos);

function upsertEntity(state, kind, change, at, text) {
  const key = kind.prefix + change.id;
  const previous = load(state, key);
  if (previous !== null && isNewer(previous, at)) return null;
  // A tombstone keeps only its instant: a recreated entity starts empty.
  const entity = previous !== null && !previous.deleted ? previous : {};
  const name = change.name ?? entity.name ?? null;
  const email = change.email ?? entity.email ?? null;
  const stock = change.stock ?? entity.stock ?? null;
  const stored = {};
  if (name !== null) stored.name = name;
  if (email !== null) stored.email = email;
  if (stock !== null) stored.stock = stock;
  stored.secs = at[0];
  stored.nanos = at[1];
  stored.updatedAt = text;
  state.set(key, encoder.encode(toJson(stored)));
  const doc = kind.isCustomer
    ? { id: change.id, name, email, updatedAt: text }
    : { id: change.id, name, stock, updatedAt: text };
  return upsert(kind.collection, change.id, doc);
}

function deleteEntity(state, kind, id, at, text) {
  const key = kind.prefix + id;
  const previous = load(state, key);
  if (previous !== null && isNewer(previous, at)) return null;
  state.set(key, encoder.encode(toJson({ secs: at[0], nanos: at[1], updatedAt: text, deleted: true })));
  return remove(kind.collection, id);
}

function load(state, key) {
  const raw = state.get(key);
  if (raw === undefined || raw === null) return null;
  // Not the event's fault, but retrying cannot help either: dead-letter it
  // so that it can be replayed once the state is repaired.
  let stored;
  try {
    stored = parseJson(decoder.decode(raw));
  } catch (e) {
    return fail(`stored state ${key} is unreadable: ${e.message}`);
  }
  if (!isObject(stored) || typeof stored.secs !== "number" || typeof stored.nanos !== "number" || typeof stored.updatedAt !== "string") {
    fail(`stored state ${key} is unreadable: expected secs, nanos and updatedAt`);
  }
  return stored;
}

function validate(kind, id, fields, path) {
  const change = { id, name: optionalStr(field(fields, "name"), path, "name"), email: null, stock: null };
  if (kind.isCustomer) change.email = optionalStr(field(fields, "email"), path, "email");
  else change.stock = optionalStock(field(fields, "stock"), path);
  return change;
}

function requireId(fields, path) {
  const value = field(fields, "id");
  if (value === undefined) fail(`${path("id")} is required`);
  if (typeof value === "string" && value !== "") return value;
  return fail(`${path("id")} must be a non-empty string, got ${show(value)}`);
}

function optionalStr(value, path, name) {
  if (value === undefined) return null;
  if (typeof value === "string") return value;
  return fail(`${path(name)} must be a string, got ${show(value)}`);
}

function optionalStock(value, path) {
  if (value === undefined) return null;
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && !Object.is(value, -0)) return value;
  if (value instanceof JsonNumber && value.isInteger && !value.text.startsWith("-") && BigInt(value.text) <= U64_MAX) {
    return value;
  }
  return fail(`${path("stock")} must be an integer >= 0, got ${show(value)}`);
}

function requireTimestamp(fields) {
  const value = field(fields, "timestamp");
  if (value === undefined) fail('"timestamp" is required');
  if (typeof value !== "string") fail(`"timestamp" must be an ISO-8601 string, got ${show(value)}`);
  try {
    return { at: instant.parse(value), text: value };
  } catch (e) {
    if (!(e instanceof instant.ParseError)) throw e;
    return fail(`"timestamp" must be an ISO-8601 instant such as 2026-11-24T08:00:00Z, got ${show(value)}: ${e.message}`);
  }
}

/** One page of {customer, products} per customer and the next cursor (the
 *  last key when the page is full). */
export function dataView(collections, after, limit) {
  const customers = collections.scan(CUSTOMERS, after, limit);
  if (customers.length === 0) return { items: [], next: undefined };
  const products = allProducts(collections);
  const items = customers.map(([key, text]) => {
    const doc = readDoc(CUSTOMERS, key, text);
    return { customer: { id: key, name: doc.name ?? null, email: doc.email ?? null }, products };
  });
  return { items, next: customers.length === limit ? customers[customers.length - 1][0] : undefined };
}

function allProducts(collections) {
  const products = [];
  let after;
  for (;;) {
    const page = collections.scan(PRODUCTS, after, SCAN_CHUNK);
    for (const [key, text] of page) {
      const doc = readDoc(PRODUCTS, key, text);
      products.push({ id: key, name: doc.name ?? null, stock: doc.stock ?? null });
    }
    if (page.length < SCAN_CHUNK) return products;
    after = page[page.length - 1][0];
  }
}

function readDoc(collection, key, text) {
  let doc;
  try {
    doc = parseJson(text);
  } catch (e) {
    return fail(`document ${collection}/${key} is unreadable: ${e.message}`);
  }
  if (!isObject(doc)) fail(`document ${collection}/${key} is unreadable: not an object`);
  return doc;
}
