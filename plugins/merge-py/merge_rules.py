"""The merge rules, a port of plugins/merge/src/merge.rs: validating
customer, inventory and legacy ``analytics.data`` events, merging them into
per-entity state (newest instant wins, absent fields keep their value,
deletes leave a tombstone), the ``customers`` / ``products`` documents and
the ``data`` view. State it keeps has the Rust merge's exact shape, so the
two swap in place of each other.

``state`` and ``collections`` come in as arguments (objects with
get/set and get/scan), so that the rules do not touch the bindings.
"""

import json

import instant
from switchyard_plugin import Reject, delete, to_json, upsert

CUSTOMERS = "customers"
PRODUCTS = "products"
SCAN_CHUNK = 500
U64_MAX = (1 << 64) - 1
# The fields the Rust merge reads into a struct: one given twice is an error.
EVENT_FIELDS = ("id", "name", "email", "stock", "timestamp")
LEGACY_FIELDS = ("customer", "products")


class _Kind:
    def __init__(self, prefix, collection, is_customer):
        self.prefix = prefix
        self.collection = collection
        self.is_customer = is_customer


CUSTOMER = _Kind("customer/", CUSTOMERS, True)
PRODUCT = _Kind("product/", PRODUCTS, False)


def _event_field(name):
    return f'"{name}"'


def _customer_field(name):
    return f"customer.{name}"


def _product_field(i):
    return lambda name: f"products[{i}].{name}"


def show(value):
    """A JSON value as shown in a reason: its JSON text, cut after 64 bytes."""
    text = to_json(value).encode()
    if len(text) <= 64:
        return text.decode()
    return text[:64].decode(errors="ignore") + "..."


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _integer(text):
    # serde_json reads -0 as a float: the Rust merge rejects it as a stock.
    return -0.0 if text == "-0" else int(text)


def parse_object(body, fields):
    if not body.lstrip().startswith("{"):
        raise Reject("body must be a JSON object")
    duplicates = []

    def pairs(items):
        # Called innermost first: the last call is the top-level object.
        seen = set()
        duplicates.clear()
        for key, _ in items:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        return dict(items)

    try:
        value = json.loads(body, object_pairs_hook=pairs, parse_constant=_no_constant,
                           parse_int=_integer)
    except ValueError as e:
        raise Reject(f"body is not readable: {e}")
    for key in duplicates:
        if key in fields:
            raise Reject(f"body is not readable: duplicate field `{key}`")
    return value


def handle(state, routing_key, body, received_at_ms):
    """The actions of one event, or ``Reject`` with the Rust merge's reason."""
    if routing_key.startswith("customer."):
        kind, word = CUSTOMER, routing_key[len("customer."):]
    elif routing_key.startswith("inventory."):
        kind, word = PRODUCT, routing_key[len("inventory."):]
    elif routing_key == "analytics.data":
        return legacy_post(state, body, received_at_ms)
    else:
        raise Reject(f"unsupported routing key {routing_key}")

    fields = parse_object(body, EVENT_FIELDS)
    id_ = require_id(fields, _event_field)
    deleting = word == "deleted" or word.endswith(".deleted")
    change = None if deleting else validate(kind, id_, fields, _event_field)
    at, text = require_timestamp(fields)
    if change is None:
        action = delete_entity(state, kind, id_, at, text)
    else:
        action = upsert_entity(state, kind, change, at, text)
    return [] if action is None else [action]


def legacy_post(state, body, received_at_ms):
    post = parse_object(body, LEGACY_FIELDS)
    customer = post.get("customer")
    if customer is None:
        raise Reject("customer is required")
    if not isinstance(customer, dict):
        raise Reject(f"customer must be an object, got {show(customer)}")
    products = post.get("products")
    if products is None:
        products = []
    elif not isinstance(products, list):
        raise Reject(f"products must be an array, got {show(products)}")
    for i, item in enumerate(products):
        if not isinstance(item, dict):
            raise Reject(f"products[{i}] must be an object, got {show(item)}")

    # Validate every part before applying any.
    customer_change = validate(
        CUSTOMER, require_id(customer, _customer_field), customer, _customer_field)
    product_changes = []
    for i, fields in enumerate(products):
        field = _product_field(i)
        product_changes.append(validate(PRODUCT, require_id(fields, field), fields, field))

    at = instant.from_millis(received_at_ms)
    text = instant.format_millis(received_at_ms)
    actions = []
    for kind, change in [(CUSTOMER, customer_change)] + [(PRODUCT, c) for c in product_changes]:
        action = upsert_entity(state, kind, change, at, text)
        if action is not None:
            actions.append(action)
    return actions


def _is_newer(stored, at):
    return (stored["secs"], stored["nanos"]) > at


def upsert_entity(state, kind, change, at, text):
    key = kind.prefix + change["id"]
    previous = load(state, key)
    if previous is not None and _is_newer(previous, at):
        return None
    # A tombstone keeps only its instant: a recreated entity starts empty.
    entity = previous if previous is not None and not previous.get("deleted") else {}
    name = change["name"] if change["name"] is not None else entity.get("name")
    email = change["email"] if change["email"] is not None else entity.get("email")
    stock = change["stock"] if change["stock"] is not None else entity.get("stock")
    stored = {}
    if name is not None:
        stored["name"] = name
    if email is not None:
        stored["email"] = email
    if stock is not None:
        stored["stock"] = stock
    stored["secs"], stored["nanos"] = at
    stored["updatedAt"] = text
    state.set(key, to_json(stored).encode())

    if kind.is_customer:
        doc = {"id": change["id"], "name": name, "email": email, "updatedAt": text}
    else:
        doc = {"id": change["id"], "name": name, "stock": stock, "updatedAt": text}
    return upsert(kind.collection, change["id"], doc)


def delete_entity(state, kind, id_, at, text):
    key = kind.prefix + id_
    previous = load(state, key)
    if previous is not None and _is_newer(previous, at):
        return None
    tombstone = {"secs": at[0], "nanos": at[1], "updatedAt": text, "deleted": True}
    state.set(key, to_json(tombstone).encode())
    return delete(kind.collection, id_)


def load(state, key):
    raw = state.get(key)
    if raw is None:
        return None
    # Not the event's fault, but retrying cannot help either: dead-letter it
    # so that it can be replayed once the state is repaired.
    try:
        stored = json.loads(raw)
        if not (isinstance(stored, dict) and isinstance(stored.get("secs"), int)
                and isinstance(stored.get("nanos"), int)
                and isinstance(stored.get("updatedAt"), str)):
            raise ValueError("expected secs, nanos and updatedAt")
    except ValueError as e:
        raise Reject(f"stored state {key} is unreadable: {e}")
    return stored


def validate(kind, id_, fields, field):
    change = {"id": id_, "name": optional_str(fields.get("name"), field, "name"),
              "email": None, "stock": None}
    if kind.is_customer:
        change["email"] = optional_str(fields.get("email"), field, "email")
    else:
        change["stock"] = optional_stock(fields.get("stock"), field)
    return change


def require_id(fields, field):
    value = fields.get("id")
    if value is None:
        raise Reject(f"{field('id')} is required")
    if isinstance(value, str) and value:
        return value
    raise Reject(f"{field('id')} must be a non-empty string, got {show(value)}")


def optional_str(value, field, name):
    if value is None or isinstance(value, str):
        return value
    raise Reject(f"{field(name)} must be a string, got {show(value)}")


def optional_stock(value, field):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX:
        return value
    raise Reject(f"{field('stock')} must be an integer >= 0, got {show(value)}")


def require_timestamp(fields):
    value = fields.get("timestamp")
    if value is None:
        raise Reject('"timestamp" is required')
    if not isinstance(value, str):
        raise Reject(f'"timestamp" must be an ISO-8601 string, got {show(value)}')
    try:
        return instant.parse(value), value
    except instant.ParseError as e:
        raise Reject('"timestamp" must be an ISO-8601 instant such as '
                     f"2026-11-24T08:00:00Z, got {show(value)}: {e}")


def data_view(collections, after, limit):
    """One page of ``{"customer": {...}, "products": [...]}`` per customer,
    and the cursor of the next page (the last key when the page is full)."""
    customers = collections.scan(CUSTOMERS, after, limit)
    if not customers:
        return [], None
    products = all_products(collections)
    items = []
    for key, text in customers:
        doc = read_doc(CUSTOMERS, key, text)
        items.append({"customer": {"id": key, "name": doc.get("name"),
                                   "email": doc.get("email")},
                      "products": products})
    next_cursor = customers[-1][0] if len(customers) == limit else None
    return items, next_cursor


def all_products(collections):
    products = []
    after = None
    while True:
        page = collections.scan(PRODUCTS, after, SCAN_CHUNK)
        for key, text in page:
            doc = read_doc(PRODUCTS, key, text)
            products.append({"id": key, "name": doc.get("name"), "stock": doc.get("stock")})
        if len(page) < SCAN_CHUNK:
            return products
        after = page[-1][0]


def read_doc(collection, key, text):
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise Reject(f"document {collection}/{key} is unreadable: {e}")
    if not isinstance(doc, dict):
        raise Reject(f"document {collection}/{key} is unreadable: not an object")
    return doc
