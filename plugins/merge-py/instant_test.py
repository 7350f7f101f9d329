"""Checks instant.py against plugins/conformance/instants.json (the inputs
of the Rust switchyard-instant's tests, each with its (secs, nanos) from
those tests or the reason the ports give) and round-trips formatted
milliseconds. Run: python3 instant_test.py"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instant  # noqa: E402

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../conformance/instants.json")


def main():
    wrong = []
    with open(CASES, encoding="utf-8") as f:
        cases = json.load(f)
    for text, want in cases.items():
        try:
            got = list(instant.parse(text))
        except instant.ParseError as e:
            got = str(e)
        if got != want:
            wrong.append(f"{text!r}: got {got!r}, want {want!r}")
    for ms, text in [(0, "1970-01-01T00:00:00.000Z"), (1_795_507_200_005, "2026-11-24T08:00:00.005Z"),
                     (253_402_300_799_000, "9999-12-31T23:59:59.000Z")]:
        if instant.format_millis(ms) != text:
            wrong.append(f"format_millis({ms}) = {instant.format_millis(ms)!r}")
    ms = 0
    while ms < 253_402_300_799_000:
        if instant.parse(instant.format_millis(ms)) != instant.from_millis(ms):
            wrong.append(f"round trip of {ms}")
        ms += 7_919_993_337
    if wrong:
        sys.exit("\n".join(wrong))
    print(f"instant.py: {len(cases)} cases ok")


main()
