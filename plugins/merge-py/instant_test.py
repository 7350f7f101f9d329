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


def variations():
    dates = ["2026-11-24", "2024-02-29", "2023-02-29", "2026-00-10", "2026-13-01", "2026-04-31",
             "2026-04-30", "0000-01-01", "9999-12-31", "1969-12-31", "2026-1-24", "2026-11-2x",
             "2026-11-24", "2026\u221211-24", "\u0662026-11-24"]
    times = ["08:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "8:00:00", "08:00"]
    fractions = ["", ".", ".5", ".05", ".123456789", ".1234567890", ".12x", ".\u0661"]
    zones = ["Z", "+01:00", "-05:30", "+18:00", "-18:00", "+18:01", "+19:00", "+01:60", "+0100",
             "+01:00:00", "z", "", "Zx", "Z\n", " Z", "+01:0\u0661"]
    for date in dates:
        for time in times:
            for fraction in fractions:
                for zone in zones:
                    yield f"{date}T{time}{fraction}{zone}"
    yield "2026-11-24t08:00:00Z"
    yield "2026-11-24T08:00:00Z".encode().decode()
    yield ""


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
        try:
            exact = list(instant.parse_exact(text))
        except instant.ParseError as e:
            exact = str(e)
        if exact != got:
            wrong.append(f"{text!r}: parse gives {got!r}, parse_exact {exact!r}")
    for ms, text in [(0, "1970-01-01T00:00:00.000Z"), (1_795_507_200_005, "2026-11-24T08:00:00.005Z"),
                     (253_402_300_799_000, "9999-12-31T23:59:59.000Z")]:
        if instant.format_millis(ms) != text:
            wrong.append(f"format_millis({ms}) = {instant.format_millis(ms)!r}")
    ms = 0
    while ms < 253_402_300_799_000:
        if instant.parse(instant.format_millis(ms)) != instant.from_millis(ms):
            wrong.append(f"round trip of {ms}")
        ms += 7_919_993_337
    # The pattern's fast path and the exact parser agree on every variation
    # of well-formed instants: each field at and past its bounds, fractions
    # of every length, offsets, trailing text, non-ASCII digits. Twice: the
    # second pass finds every part of every text remembered by the first.
    for text in list(variations()) * 2:
        results = []
        for parse in (instant.parse, instant.parse_exact):
            try:
                results.append(parse(text))
            except instant.ParseError as e:
                results.append(str(e))
        if results[0] != results[1]:
            wrong.append(f"{text!r}: parse gives {results[0]!r}, parse_exact {results[1]!r}")
    if wrong:
        sys.exit("\n".join(wrong))
    print(f"instant.py: {len(cases)} cases ok")


main()
