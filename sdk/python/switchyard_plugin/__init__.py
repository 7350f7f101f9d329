"""Switchyard's Python guest library: write a transformer plugin as a class.

Owns the glue between an author's plugin class and the bindings that
componentize-py generates for the ``switchyard:plugin/transformer`` world
(``wit_world``): events in, actions and view pages out, ``Reject``/``Retry``
mapped to the world's ``handle-error``, and JSON helpers for state,
collections and bodies. It does not build anything: ``cargo xtask build``
(or ``componentize-py -d wit -w transformer componentize app -p sdk/python``)
does.

An author writes::

    import switchyard_plugin as sy

    class Hello(sy.Plugin):
        def describe(self):
            return sy.Info("hello", "0.1.0-py", ["customer.*"], views=[])

        def handle(self, event):
            body = event.json()
            if "id" not in body:
                sy.reject('"id" is required')
            return [sy.upsert("hellos", body["id"], {"seen": True})]

    WitWorld = sy.export(Hello)
"""

import json

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import collections as _collections
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import types as _types

__all__ = [
    "Plugin", "Info", "Event", "Reject", "Retry", "reject", "retry",
    "upsert", "upsert_raw", "delete", "publish", "export", "to_json", "state",
    "collections", "log",
]

# json.dumps with these options builds an encoder per call: build it once.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def to_json(value):
    """``value`` as compact JSON text (UTF-8 kept as is)."""
    return _encode(value)


class Reject(Exception):
    """The event is bad: it goes to the dead-letter queue with ``reason``."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Retry(Exception):
    """A transient failure: the host delivers the event again later."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def reject(reason):
    """Rejects the event being handled (raises ``Reject``)."""
    raise Reject(reason)


def retry(reason):
    """Asks for the event to be delivered again later (raises ``Retry``)."""
    raise Retry(reason)


class Info:
    """What ``describe`` returns: the plugin's name (which names its queue),
    version, AMQP binding keys and view names."""

    def __init__(self, name, version, subscriptions, views=()):
        self.name = name
        self.version = version
        self.subscriptions = list(subscriptions)
        self.views = list(views)


def _event_json(event):
    """The body parsed (a dict); a body that does not parse is rejected."""
    try:
        return json.loads(event.body)
    except ValueError as e:
        reject(f"body is not readable: {e}")


# One event: ``id``, ``routing_key``, ``body`` (JSON text, an object),
# ``received_at_ms`` (milliseconds since the epoch), and ``json()``. The
# bindings' own record, given ``json``: the plugin gets the object the
# runtime made for the call rather than a copy.
Event = _types.Event
Event.json = _event_json


def upsert(collection, key, value):
    """The action writing JSON ``value`` under ``key`` in ``collection``."""
    return _types.Action_Upsert(_types.Document(collection, key, to_json(value)))


def upsert_raw(collection, key, json_text):
    """``upsert`` of a value already written as JSON text (the host refuses
    text that is not JSON)."""
    return _types.Action_Upsert(_types.Document(collection, key, json_text))


def delete(collection, key):
    """The action removing the document under ``key`` in ``collection``."""
    return _types.Action_Delete(_types.DocumentRef(collection, key))


def publish(routing_key, body):
    """The action publishing ``body`` (a dict) to the exchange after commit."""
    return _types.Action_Publish(_types.OutgoingEvent(routing_key, to_json(body)))


class _State:
    """The plugin's private key-value state (read-your-writes, committed with
    the batch, discarded with a rejected event)."""

    # The bytes under ``key``, or None: the binding itself, one call less.
    get = staticmethod(_state.get)

    def set(self, key, value):
        """Stores bytes (or text, as UTF-8) under ``key``."""
        if type(value) is not bytes:
            value = value.encode() if isinstance(value, str) else bytes(value)
        _state.set(key, value)

    def delete(self, key):
        """Removes ``key`` (a missing key is fine)."""
        _state.delete(key)

    def get_json(self, key, default=None):
        """The JSON value under ``key``, or ``default`` when there is none."""
        raw = _state.get(key)
        return default if raw is None else json.loads(raw)

    def set_json(self, key, value):
        """Stores ``value`` as JSON text under ``key``."""
        _state.set(key, to_json(value).encode())


class _Collections:
    """Read-only access to documents committed by earlier batches."""

    def get(self, collection, key):
        """The document's JSON text, or None."""
        return _collections.get(collection, key)

    def get_json(self, collection, key):
        """The document parsed, or None."""
        raw = _collections.get(collection, key)
        return None if raw is None else json.loads(raw)

    def scan(self, collection, after=None, limit=100):
        """Up to ``limit`` ``(key, json_text)`` pairs with keys after ``after``."""
        return [(e.key, e.json) for e in _collections.scan(collection, after, limit)]


class _Log:
    """Log lines the host writes under the plugin's name."""

    def trace(self, message):
        _log.log(_log.Level.TRACE, str(message))

    def debug(self, message):
        _log.log(_log.Level.DEBUG, str(message))

    def info(self, message):
        _log.log(_log.Level.INFO, str(message))

    def warn(self, message):
        _log.log(_log.Level.WARN, str(message))

    def error(self, message):
        _log.log(_log.Level.ERROR, str(message))


state = _State()
collections = _Collections()
log = _Log()


class Plugin:
    """Base class of a plugin: override ``describe`` and ``handle``, and
    ``view`` when ``describe`` names views."""

    def describe(self):
        raise NotImplementedError("a plugin must describe itself")

    def handle(self, event):
        """Returns a list of actions, or raises ``Reject`` / ``Retry``."""
        raise NotImplementedError("a plugin must handle events")

    def view(self, name, after, limit):
        """Returns ``(items, next_cursor)``: items are JSON values. Raise
        ``Reject`` (or return an error through it) for a bad request."""
        raise Reject(f"unknown view {name}")


def export(plugin_class):
    """The ``WitWorld`` class componentize-py exports, driving one instance
    of ``plugin_class``. Assign it in the app module:
    ``WitWorld = export(MyPlugin)``."""
    plugin = plugin_class()
    handle_event = plugin.handle

    class WitWorld(_World):
        def describe(self):
            info = plugin.describe()
            return _types.PluginInfo(info.name, info.version, info.subscriptions, info.views)

        def handle(self, event):
            try:
                actions = handle_event(event)
                # A generator runs (and may reject) here, inside the try.
                return actions if type(actions) is list else list(actions or [])
            except Reject as e:
                raise Err(_types.HandleError_Reject(e.reason))
            except Retry as e:
                raise Err(_types.HandleError_Retry(e.reason))

        def view(self, name, after, limit):
            try:
                items, next_cursor = plugin.view(name, after, limit)
            except (Reject, Retry) as e:
                raise Err(e.reason)
            return _types.ViewPage([to_json(item) for item in items], next_cursor)

    return WitWorld
