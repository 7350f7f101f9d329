"""Checks the merge's ordinary-event path against its exact path: on every
body of a generated corpus (repeated and escaped keys, -0 and other numbers
in every field, wrong types, whitespace, timestamps of every form) and
every kind of stored entity, ``_ordinary`` either declines or gives the
action, the reason and the state writes ``_event`` gives. Also that the
ordinary events of the benchmark take it.

Needs the bindings componentize-py generates on the path (``componentize-py
-d wit -w transformer bindings DIR``) and sdk/python:
``PYTHONPATH=DIR:sdk/python python3 plugins/merge-py/merge_rules_test.py``.
"""

import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import merge_rules  # noqa: E402
from switchyard_plugin import Reject  # noqa: E402


class DictState:
    """The plugin's state kept in a dict, as the host keeps it for a call."""

    def __init__(self, values):
        self.values = dict(values)

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value):
        self.values[key] = bytes(value)


IDS = ['"c1"', '""', "7", "null", '["c1"]', '"\\u00e9"', "-0", "0", '"\\"q"', "{}"]
STRINGS = ['"x"', "null", "5", "false", "{}", '["x"]', '"a\\"b"', '"\u00e9t\u00e9"', "-0", "0",
           '"\\u0000"', "-0.0"]
STOCKS = ["0", "-0", "1", "37", "-1", "1e2", "2.0", "0.0", "-0.0", "18446744073709551615",
          "18446744073709551616", "true", '"5"', "[1]", "null", "NaN", "Infinity", "-0E1", "00"]
TIMESTAMPS = ['"2026-11-24T08:00:00Z"', '"2026-11-24T08:00:01.001Z"', '"2026-11-24T07:59:59.999Z"',
              '"2026-11-24T09:00:00+01:00"', '"2026-11-24T08:00:00.123456789Z"',
              '"2026-11-24T08:00:00.1234567890Z"', '"2026-11-24T08:00:60Z"', '"2026-11-24T24:00:00Z"',
              '"2026-02-30T08:00:00Z"', '"2026-11-24T08:00:00+18:01"', '"2026-11-24T08:00:00"',
              '"2026-11-24 08:00:00Z"', '"2026-11-24T08:00:00Z\\n"', '"\\u0662026-11-24T08:00:00Z"',
              "1795507200", "-0", "null", '"soon"', '"2026-11-24T08:00:00.5-05:30"']
ROUTING_KEYS = ["customer.created", "customer.deleted", "inventory.updated",
                "inventory.stock.deleted", "customer.x.deleted"]
# Stored entities: none, older, newer, the same instant, a tombstone, and
# state that is not the merge's.
STORED = [
    None,
    b'{"name":"old","email":"old@x","secs":1795507000,"nanos":0,"updatedAt":"2026-11-24T07:56:40Z"}',
    b'{"name":"new","stock":4,"secs":1795600000,"nanos":5,"updatedAt":"2026-11-25T09:46:40Z"}',
    b'{"name":"same","secs":1795507200,"nanos":0,"updatedAt":"2026-11-24T08:00:00Z"}',
    b'{"secs":1795507000,"nanos":0,"updatedAt":"2026-11-24T07:56:40Z","deleted":true}',
    b'{"secs":"1795507000","nanos":0,"updatedAt":"x"}',
    b"not json",
]


def body(pairs, space=""):
    inner = ("," + space).join(f"{key}:{space}{value}" for key, value in pairs)
    return "{" + inner + "}"


def bodies():
    """Event bodies: an ordinary one, then each field varied alone, then
    keys repeated or escaped, extra fields with traps, and whitespace."""
    base = [('"eventId"', '"00000000-0000-4000-8000-000000000001"'), ('"id"', '"c1"'),
            ('"name"', '"customer-0001"'), ('"email"', '"c@example.com"'), ('"stock"', "37"),
            ('"timestamp"', '"2026-11-24T08:00:01.001Z"')]
    yield body(base)
    for i, values in [(1, IDS), (2, STRINGS), (3, STRINGS), (4, STOCKS), (5, TIMESTAMPS)]:
        for value in values:
            pairs = list(base)
            pairs[i] = (pairs[i][0], value)
            yield body(pairs)
            yield body(pairs[:i] + pairs[i + 1:])
    for i, value in itertools.product(range(1, 6), ["-0", '"other"', "5", "null"]):
        yield body(base + [(base[i][0], value)])
        yield body([(base[i][0], value)] + base)
    for key in ['"\\u0069d"', '"n\\u0061me"', '"stock"', '"eventId"', '"timestamp"', '"extra"']:
        yield body(base + [(key, '"c2"')])
        yield body(base + [(key, "-0")])
    for extra in ['{"a":1,"a":2}', "-0", "[-0, {\"id\": 1, \"id\": 2}]", '"-0"', "-0.5", "1e400",
                  '{"id":"nested"}', '"\\u0022"']:
        yield body(base + [('"extra"', extra)])
    for stock in ["0", "-0"]:
        yield body(base[:4] + [('"stock"', stock), ('"timestamp"', '"2026-11-24T08:00:00Z"')])
        yield body(base[:4] + [('"stock"', stock), ('"note"', '"a-0"')] + base[5:])
    yield body(base, space=" ")
    yield " " + body(base)
    yield body(base) + " "
    yield body(base) + "\n"
    yield "[]"
    yield "{}"
    yield '{"id": "c1", "timestamp": "2026-11-24T08:00:00Z"'
    yield body(base).replace('"c1"', '"c\\u00e9"')


def run(path, state, routing_key, text):
    """What ``path`` does with one event: the outcome and the state after."""
    kind = merge_rules.CUSTOMER if routing_key.startswith("customer.") else merge_rules.PRODUCT
    deleting = routing_key.endswith(".deleted")
    try:
        action = path(state, kind, deleting, text)
    except Reject as e:
        return ("reject", e.reason), state.values
    if action is merge_rules._UNUSUAL:
        return None, state.values
    if action is None:
        return ("none",), state.values
    return (type(action).__name__, vars(action.value)), state.values


def main():
    wrong = []
    ordinary = 0
    cases = 0
    for routing_key, text, stored in itertools.product(ROUTING_KEYS, list(bodies()), STORED):
        cases += 1
        initial = {} if stored is None else {"customer/c1": stored, "product/c1": stored}
        fast, fast_state = run(merge_rules._ordinary, DictState(initial), routing_key, text)
        if fast is None:
            if fast_state != initial:
                wrong.append(f"{routing_key} {text}: declined after writing state")
            continue
        ordinary += 1
        exact, exact_state = run(merge_rules._event, DictState(initial), routing_key, text)
        if (fast, fast_state) != (exact, exact_state):
            wrong.append(f"{routing_key} {text} over {stored!r}:\n  ordinary {fast} {fast_state}"
                         f"\n  exact    {exact} {exact_state}")
    # The benchmark's events are ordinary (else the fast path is dead code).
    for routing_key, text in [
        ("customer.created", '{"email":"customer-0001@example.com","eventId":"00000000-0000-4000'
         '-8000-000000000002","eventType":"customer.created","id":"c1","name":"customer-0001",'
         '"timestamp":"2026-11-24T08:00:00.002Z"}'),
        ("inventory.updated", '{"eventId":"00000000-0000-4000-8000-000000000003","eventType":'
         '"inventory.updated","id":"p1","name":"product-0001","stock":111,'
         '"timestamp":"2026-11-24T08:00:00.003Z"}'),
    ]:
        if run(merge_rules._ordinary, DictState({}), routing_key, text)[0] is None:
            wrong.append(f"the benchmark's {routing_key} event is not ordinary")
    if wrong:
        sys.exit("\n".join(wrong[:20]) + f"\n{len(wrong)} of {cases} cases wrong")
    print(f"merge_rules.py: {cases} cases, {ordinary} ordinary, all as the exact path")


main()
