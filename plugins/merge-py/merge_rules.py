"""The merge rules, a port of plugins/merge/src/merge.rs: validating
customer, inventory and legacy ``analytics.data`` events, merging them into
per-entity state (newest instant wins, absent fields keep their value,
deletes leave a tombstone), the ``customers`` / ``products`` documents and
the ``data`` view. State it keeps has the Rust merge's exact shape, so the
two swap in place of each other.

``state`` and ``collections`` come in as arguments (objects with
get/set and get/scan), so that the rules do not touch the bindings.

Speed: an ordinary event takes fast paths (the C JSON decoder alone,
instants by a compiled pattern, stored state parsed once per value, JSON
written by hand). Each is taken only when it is sure to give what the exact
path gives, and anything unusual goes the exact path, which finds the Rust
merge's reason.
"""

import json
import re
from json.scanner import make_scanner

import instant
from switchyard_plugin import Reject, delete, to_json, upsert_raw

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


# The fast path's decoder: the C scanner with no Python callback but for
# NaN and Infinity (which raise, sending the body the exact path).
_scan = make_scanner(json.JSONDecoder(parse_constant=_no_constant))
# A number -0 (not -0.5, -0e1, nor the "-05" of a date), which the exact
# path reads as a float.
_minus_zero = re.compile(r"-0(?![0-9.eE])").search
_quote = json.encoder.encode_basestring
# The ordinary event's decoder: an object as its list of (key, value)
# pairs, so that a key given twice shows (nested objects too: the event
# path reads none).
_scan_pairs = make_scanner(json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=list))


def _integer(text):
    # serde_json reads -0 as a float: the Rust merge rejects it as a stock.
    return -0.0 if text == "-0" else int(text)


def parse_object(body, fields):
    """The body, an object, as a dict; ``Reject`` when it is not one, is not
    JSON or gives a field of ``fields`` twice."""
    value = _parse_plain(body)
    return value if value is not None else parse_object_exact(body, fields)


def _parse_plain(body):
    """``body`` read by the C decoder alone when that is sure to give what
    ``parse_object_exact`` gives, else None. Sure means: the text starts
    with ``{``, holds no number -0, and has exactly two ``"`` per string
    (key or value) in the value read. The text has two per string it holds
    plus one per escaped quote; a key given twice, at any depth, however
    spelled, leaves the value at least one string fewer than the text."""
    if body[:1] != "{":
        return None
    try:
        value, end = _scan(body, 0)
        if end != len(body):
            return None
        if "-0" in body and _minus_zero(body):
            return None
        if body.count('"') != 2 * _strings(value):
            return None
    except Exception:  # noqa: BLE001 - the exact path says what is wrong
        return None
    return value


def _strings(value):
    """How many strings, keys included, the dict ``value`` holds."""
    return len(value) + _item_strings(value.values())


def _item_strings(items):
    """How many strings, keys of nested dicts included, ``items`` hold."""
    count = 0
    for item in items:
        kind = type(item)
        if kind is str:
            count += 1
        elif kind is dict:
            count += _strings(item)
        elif kind is list:
            count += _item_strings(item)
    return count


def parse_object_exact(body, fields):
    """``parse_object`` with a Python callback per object and per integer:
    slower, but it sees repeated keys and -0."""
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
    deleting = word == "deleted" or word.endswith(".deleted")
    action = _ordinary(state, kind, deleting, body)
    if action is _UNUSUAL:
        action = _event(state, kind, deleting, body)
    return [] if action is None else [action]


# What _ordinary returns when the event is not one it is sure about.
_UNUSUAL = object()


def _ordinary(state, kind, deleting, body):
    """The action of an ordinary event, or ``_UNUSUAL`` for ``_event`` to
    find. Ordinary: the body is an object read by the C decoder alone with
    no top-level key given twice, the fields read have their usual types (a
    non-empty string id, strings or nothing for name and email, a positive
    integer or nothing for stock, a string timestamp) and the timestamp is
    well formed. A number -0 or a repeated key changes what the exact path
    reads only in those fields (see ``parse_object_exact``), where they
    cannot be. A stock of 0 may be written -0: only then is the text
    searched for one."""
    if body[:1] != "{":
        return _UNUSUAL
    try:
        pairs, end = _scan_pairs(body, 0)
    except Exception:  # noqa: BLE001 - the exact path says what is wrong
        return _UNUSUAL
    fields = dict(pairs)
    if end != len(body) or len(fields) != len(pairs):
        return _UNUSUAL
    id_ = fields.get("id")
    text = fields.get("timestamp")
    if type(id_) is not str or not id_ or type(text) is not str:
        return _UNUSUAL
    at = instant.parse_ordinary(text)
    if at is None:
        return _UNUSUAL
    if deleting:
        return delete_entity(state, kind, id_, at, text)
    name = fields.get("name")
    if name is not None and type(name) is not str:
        return _UNUSUAL
    email = stock = None
    if kind.is_customer:
        email = fields.get("email")
        if email is not None and type(email) is not str:
            return _UNUSUAL
    else:
        stock = fields.get("stock")
        if stock is not None and (type(stock) is not int or not 0 < stock <= U64_MAX):
            if stock != 0 or type(stock) is not int or ("-0" in body and _minus_zero(body)):
                return _UNUSUAL
    return upsert_entity(state, kind, id_, name, email, stock, at, text)


def _event(state, kind, deleting, body):
    """``_ordinary``'s action for any event: validation in the Rust merge's
    order, with its reasons."""
    fields = parse_object(body, EVENT_FIELDS)
    # validate(), inline: each check lets the ordinary value through and
    # leaves any other to the function that rejects it, in the same order.
    id_ = fields.get("id")
    if type(id_) is not str or not id_:
        id_ = require_id(fields, _event_field)
    name = email = stock = None
    if not deleting:
        name = fields.get("name")
        if name is not None and type(name) is not str:
            optional_str(name, _event_field, "name")
        if kind.is_customer:
            email = fields.get("email")
            if email is not None and type(email) is not str:
                optional_str(email, _event_field, "email")
        else:
            stock = fields.get("stock")
            if stock is not None and (type(stock) is not int or not 0 <= stock <= U64_MAX):
                optional_stock(stock, _event_field)
    at, text = require_timestamp(fields)
    if deleting:
        return delete_entity(state, kind, id_, at, text)
    return upsert_entity(state, kind, id_, name, email, stock, at, text)


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
        action = upsert_entity(state, kind, change["id"], change["name"], change["email"],
                               change["stock"], at, text)
        if action is not None:
            actions.append(action)
    return actions


def upsert_entity(state, kind, id_, name, email, stock, at, text):
    """The upsert of the entity ``id_`` with the fields given (None: keep
    the stored one), or None when the stored entity is newer than ``at``."""
    key = kind.prefix + id_
    previous = load(state, key)
    if previous is not None:
        if previous[0] > at:
            return None
        # A tombstone keeps only its instant: a recreated entity starts empty.
        if not previous[1]:
            if name is None:
                name = previous[2]
            if email is None:
                email = previous[3]
            if stock is None:
                stock = previous[4]
    # The state is {"name", "email", "stock" (those not None), "secs",
    # "nanos", "updatedAt"}, the document {"id", "name", "email" | "stock",
    # "updatedAt"}: written as to_json would write them, each value once.
    quoted_name = _quote(name) if type(name) is str else _json(name)
    quoted_email = _quote(email) if type(email) is str else _json(email)
    written_stock = int.__repr__(stock) if type(stock) is int else _json(stock)
    quoted_text = _quote(text)
    head = "{"
    if name is not None:
        head = '{"name":' + quoted_name + ","
    if email is not None:
        head += '"email":' + quoted_email + ","
    if stock is not None:
        head += '"stock":' + written_stock + ","
    raw = f'{head}"secs":{at[0]},"nanos":{at[1]},"updatedAt":{quoted_text}}}'.encode()
    state.set(key, raw)
    _remember(key, raw, (at, False, name, email, stock))
    if kind.is_customer:
        doc = (f'{{"id":{_quote(id_)},"name":{quoted_name},"email":{quoted_email},'
               f'"updatedAt":{quoted_text}}}')
    else:
        doc = (f'{{"id":{_quote(id_)},"name":{quoted_name},"stock":{written_stock},'
               f'"updatedAt":{quoted_text}}}')
    return upsert_raw(kind.collection, id_, doc)


def _json(value):
    """``to_json(value)``, by hand for a string, an integer or None."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return to_json(value)


def delete_entity(state, kind, id_, at, text):
    key = kind.prefix + id_
    previous = load(state, key)
    if previous is not None and previous[0] > at:
        return None
    tombstone = {"secs": at[0], "nanos": at[1], "updatedAt": text, "deleted": True}
    raw = to_json(tombstone).encode()
    state.set(key, raw)
    _remember(key, raw, (at, True, None, None, None))
    return delete(kind.collection, id_)


# The stored entities last read or written, by key: (the bytes, what load
# returns for them). The same bytes give the same entity, so each is parsed
# once. Bounded: forgotten in full when full.
_LOADED = {}
_LOADED_KEYS = 4096


def _remember(key, raw, entity):
    if len(_LOADED) >= _LOADED_KEYS:
        _LOADED.clear()
    _LOADED[key] = (raw, entity)


def load(state, key):
    """The entity stored under ``key``, as ``((secs, nanos), deleted, name,
    email, stock)``, or None when there is none."""
    raw = state.get(key)
    if raw is None:
        return None
    known = _LOADED.get(key)
    if known is not None and known[0] == raw:
        return known[1]
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
    entity = ((stored["secs"], stored["nanos"]), bool(stored.get("deleted")),
              stored.get("name"), stored.get("email"), stored.get("stock"))
    _remember(key, raw, entity)
    return entity


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
