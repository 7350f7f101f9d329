"""ISO-8601 instants as Java's Instant.toString() writes them, compared as
instants: a port of plugins/instant (same accepted forms, same reasons).

Accepted: ``YYYY-MM-DDTHH:MM:SS``, an optional ``.`` with 1 to 9 fractional
digits, then ``Z`` or ``+hh:mm`` / ``-hh:mm``. ``parse`` returns
``(secs, nanos)`` since the Unix epoch; ``format_millis`` writes
``YYYY-MM-DDTHH:MM:SS.mmmZ``.

``parse`` reads a well-formed instant with one compiled pattern; anything
else (and any field out of range) goes through ``parse_exact``, the
character-by-character port that finds the Rust parser's exact reason.
"""

import re

SECS_PER_DAY = 86_400

# A well-formed instant, by field; ranges are checked after. ASCII digits
# only, and \Z (not $, which allows a final newline).
_WELL_FORMED = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})\Z").match
# Nanoseconds per unit of a fraction of 1 to 9 digits.
_FRACTION_SCALE = (0,) + tuple(10 ** (9 - n) for n in range(1, 10))
# Parts of instants already read, by text (see parse_ordinary), each
# bounded: forgotten in full when full. Seconds since the epoch of a
# "YYYY-MM-DDTHH:MM" and of a "YYYY-MM-DDTHH:MM:SS"; the (zone offset in
# seconds, nanoseconds) of what follows the seconds, such as ".250Z".
_MINUTES = {}
_SECONDS = {}
_TAILS = {}
_KEPT = 4096


class ParseError(ValueError):
    pass


def _digits(b, pos, n):
    part = b[pos:pos + n]
    if len(part) != n or not all(48 <= c <= 57 for c in part):
        return None
    return int(part)


def _expect(b, pos, want, reason):
    if b[pos:pos + 1] != want:
        raise ParseError(reason)


def _need(value, reason):
    if value is None:
        raise ParseError(reason)
    return value


def _is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_in_month(y, m):
    if m == 2:
        return 29 if _is_leap(y) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def days_from_civil(y, m, d):
    y = y - 1 if m <= 2 else y
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_from_days(days):
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


def parse(text):
    """``(secs, nanos)`` of ``text``, or ``ParseError`` saying what is wrong."""
    at = parse_ordinary(text)
    return at if at is not None else parse_exact(text)


def parse_ordinary(text):
    """``parse``'s value for a well-formed instant with every field in
    range, None for any other text (which ``parse_exact`` reads).

    The grammar is a fixed 19-character ``YYYY-MM-DDTHH:MM:SS`` followed by
    the fraction and zone: the text is well formed exactly when both parts
    are. Each part already read is remembered (events come in bursts
    within a second, and a millisecond fraction with ``Z`` takes a
    thousand values), so an ordinary instant costs two lookups."""
    second_start = _SECONDS.get(text[:19])
    if second_start is not None:
        tail = _TAILS.get(text[19:])
        if tail is not None:
            return second_start - tail[0], tail[1]
    m = _WELL_FORMED(text)
    if m is None:
        return None
    minute_start = _MINUTES.get(text[:16])
    if minute_start is None:
        year, month, day, hour, minute = int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5])
        if (not 1 <= month <= 12 or day < 1 or day > _days_in_month(year, month)
                or hour > 23 or minute > 59):
            return None
        minute_start = days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60
        _keep(_MINUTES, text[:16], minute_start)
    second, fraction, zone = m.group(6, 7, 8)
    second = int(second)
    if second > 59:
        return None
    if zone == "Z":
        offset = 0
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 18 or minutes > 59 or (hours == 18 and minutes > 0):
            return None
        offset = hours * 3600 + minutes * 60
        if zone[0] == "-":
            offset = -offset
    nanos = 0 if fraction is None else int(fraction) * _FRACTION_SCALE[len(fraction)]
    _keep(_SECONDS, text[:19], minute_start + second)
    _keep(_TAILS, text[19:], (offset, nanos))
    return minute_start + second - offset, nanos


def _keep(cache, key, value):
    if len(cache) >= _KEPT:
        cache.clear()
    cache[key] = value


def parse_exact(text):
    """``parse`` one character at a time: the same value, and on bad input
    the first thing wrong, in the Rust parser's order and words."""
    b = text.encode()
    year = _need(_digits(b, 0, 4), "expected a four-digit year")
    _expect(b, 4, b"-", "expected '-' after the year")
    month = _need(_digits(b, 5, 2), "expected a two-digit month")
    _expect(b, 7, b"-", "expected '-' after the month")
    day = _need(_digits(b, 8, 2), "expected a two-digit day")
    _expect(b, 10, b"T", "expected 'T' between date and time")
    hour = _need(_digits(b, 11, 2), "expected a two-digit hour")
    _expect(b, 13, b":", "expected ':' after the hour")
    minute = _need(_digits(b, 14, 2), "expected two-digit minutes")
    _expect(b, 16, b":", "expected ':' after the minutes")
    second = _need(_digits(b, 17, 2), "expected two-digit seconds")
    if not 1 <= month <= 12:
        raise ParseError("month out of range 01-12")
    if day < 1 or day > _days_in_month(year, month):
        raise ParseError("day out of range for the month")
    if hour > 23:
        raise ParseError("hour out of range 00-23")
    if minute > 59:
        raise ParseError("minutes out of range 00-59")
    if second > 59:
        raise ParseError("seconds out of range 00-59")

    pos = 19
    nanos = 0
    if b[pos:pos + 1] == b".":
        pos += 1
        start = pos
        while pos < len(b) and 48 <= b[pos] <= 57:
            if pos - start == 9:
                raise ParseError("more than 9 fractional digits")
            nanos = nanos * 10 + b[pos] - 48
            pos += 1
        count = pos - start
        if count == 0:
            raise ParseError("expected digits after '.'")
        nanos *= 10 ** (9 - count)

    zone = b[pos:pos + 1]
    if zone == b"Z":
        pos += 1
        offset = 0
    elif zone in (b"+", b"-"):
        hours = _need(_digits(b, pos + 1, 2), "expected a two-digit offset hour")
        _expect(b, pos + 3, b":", "expected ':' in the offset")
        minutes = _need(_digits(b, pos + 4, 2), "expected two-digit offset minutes")
        if hours > 18 or minutes > 59 or (hours == 18 and minutes > 0):
            raise ParseError("offset out of range -18:00..+18:00")
        pos += 6
        offset = hours * 3600 + minutes * 60
        if zone == b"-":
            offset = -offset
    elif zone:
        raise ParseError("expected 'Z' or an offset such as +01:00")
    else:
        raise ParseError("missing zone: expected 'Z' or an offset")
    if pos != len(b):
        raise ParseError("unexpected text after the zone")

    days = days_from_civil(year, month, day)
    return days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset, nanos


def from_millis(ms):
    """``(secs, nanos)`` of ``ms`` milliseconds after the epoch."""
    return ms // 1000, ms % 1000 * 1_000_000


def format_millis(ms):
    """``ms`` milliseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    secs = ms // 1000
    days, of_day = divmod(secs, SECS_PER_DAY)
    y, m, d = civil_from_days(days)
    return (f"{y:04}-{m:02}-{d:02}T{of_day // 3600:02}:{of_day // 60 % 60:02}:"
            f"{of_day % 60:02}.{ms % 1000:03}Z")
