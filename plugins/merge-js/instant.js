// ISO-8601 instants as Java's Instant.toString() writes them, compared as
// instants: a port of plugins/instant (same accepted forms, same reasons).
// `parse` returns [secs, nanos] since the Unix epoch; `formatMillis` writes
// YYYY-MM-DDTHH:MM:SS.mmmZ.

const SECS_PER_DAY = 86400;

class ParseError extends Error {}

function digits(s, pos, n) {
  if (pos + n > s.length) return null;
  let value = 0;
  for (let i = pos; i < pos + n; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return null;
    value = value * 10 + (c - 48);
  }
  return value;
}

function need(value, reason) {
  if (value === null) throw new ParseError(reason);
  return value;
}

function expect(s, pos, want, reason) {
  if (s[pos] !== want) throw new ParseError(reason);
}

const isLeap = (y) => y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);

function daysInMonth(y, m) {
  if (m === 2) return isLeap(y) ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

const floorDiv = (a, b) => Math.floor(a / b);

function daysFromCivil(year, m, d) {
  const y = m <= 2 ? year - 1 : year;
  const era = floorDiv(y, 400);
  const yoe = y - era * 400;
  const mp = (m + 9) % 12;
  const doy = floorDiv(153 * mp + 2, 5) + d - 1;
  const doe = yoe * 365 + floorDiv(yoe, 4) - floorDiv(yoe, 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(days) {
  const z = days + 719468;
  const era = floorDiv(z, 146097);
  const doe = z - era * 146097;
  const yoe = floorDiv(doe - floorDiv(doe, 1460) + floorDiv(doe, 36524) - floorDiv(doe, 146096), 365);
  const doy = doe - (365 * yoe + floorDiv(yoe, 4) - floorDiv(yoe, 100));
  const mp = floorDiv(5 * doy + 2, 153);
  const day = doy - floorDiv(153 * mp + 2, 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

// The common form, matched by the engine's regular expressions (native code;
// the JavaScript here is interpreted): date, time, 1-9 fraction digits, zone.
const INSTANT = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:Z|([+-])(\d\d):(\d\d))$/;

/** [secs, nanos] of `text`, or throws a ParseError saying what is wrong. */
export function parse(text) {
  const at = parseOrdinary(text);
  return at !== null ? at : parseExact(text);
}

// Parts of instants already read (see parseOrdinary), each bounded:
// forgotten in full when full. Seconds since the epoch of a
// "YYYY-MM-DDTHH:MM:SS"; [zone offset in seconds, nanoseconds] of what
// follows the seconds, such as ".250Z".
const SECONDS = new Map();
const TAILS = new Map();
const KEPT = 4096;

function keep(cache, key, value) {
  if (cache.size >= KEPT) cache.clear();
  cache.set(key, value);
}

/** `parse`'s value for a well-formed instant with every field in range,
 *  null for any other text. The grammar is a fixed 19-character
 *  `YYYY-MM-DDTHH:MM:SS` followed by the fraction and zone: the text is well
 *  formed exactly when both parts are. Each part already read is
 *  remembered (events come in bursts within a second, and a millisecond
 *  fraction with `Z` takes a thousand values), so an ordinary instant costs
 *  two lookups. */
export function parseOrdinary(text) {
  const start = SECONDS.get(text.slice(0, 19));
  if (start !== undefined) {
    const tail = TAILS.get(text.slice(19));
    if (tail !== undefined) return [start - tail[0], tail[1]];
  }
  const m = INSTANT.exec(text);
  if (m === null) return null;
  const year = +m[1];
  const month = +m[2];
  const day = +m[3];
  const hour = +m[4];
  const minute = +m[5];
  const second = +m[6];
  let offset = 0;
  if (m[8] !== undefined) {
    const hours = +m[9];
    const minutes = +m[10];
    if (hours > 18 || minutes > 59 || (hours === 18 && minutes > 0)) return null;
    offset = (hours * 3600 + minutes * 60) * (m[8] === "-" ? -1 : 1);
  }
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) {
    return null;
  }
  const fraction = m[7];
  const nanos = fraction === undefined ? 0 : +fraction * 10 ** (9 - fraction.length);
  const secondStart = daysFromCivil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second;
  keep(SECONDS, text.slice(0, 19), secondStart);
  keep(TAILS, text.slice(19), [offset, nanos]);
  return [secondStart - offset, nanos];
}

/** `parse` character by character: the reason for any text `INSTANT` does
 *  not match or whose fields are out of range. */
export function parseExact(text) {
  // Byte positions as the Rust parser counts them: only ASCII can match.
  const s = text;
  const year = need(digits(s, 0, 4), "expected a four-digit year");
  expect(s, 4, "-", "expected '-' after the year");
  const month = need(digits(s, 5, 2), "expected a two-digit month");
  expect(s, 7, "-", "expected '-' after the month");
  const day = need(digits(s, 8, 2), "expected a two-digit day");
  expect(s, 10, "T", "expected 'T' between date and time");
  const hour = need(digits(s, 11, 2), "expected a two-digit hour");
  expect(s, 13, ":", "expected ':' after the hour");
  const minute = need(digits(s, 14, 2), "expected two-digit minutes");
  expect(s, 16, ":", "expected ':' after the minutes");
  const second = need(digits(s, 17, 2), "expected two-digit seconds");
  if (month < 1 || month > 12) throw new ParseError("month out of range 01-12");
  if (day < 1 || day > daysInMonth(year, month)) throw new ParseError("day out of range for the month");
  if (hour > 23) throw new ParseError("hour out of range 00-23");
  if (minute > 59) throw new ParseError("minutes out of range 00-59");
  if (second > 59) throw new ParseError("seconds out of range 00-59");

  let pos = 19;
  let nanos = 0;
  if (s[pos] === ".") {
    pos += 1;
    const start = pos;
    while (pos < s.length && s.charCodeAt(pos) >= 48 && s.charCodeAt(pos) <= 57) {
      if (pos - start === 9) throw new ParseError("more than 9 fractional digits");
      nanos = nanos * 10 + (s.charCodeAt(pos) - 48);
      pos += 1;
    }
    const count = pos - start;
    if (count === 0) throw new ParseError("expected digits after '.'");
    nanos *= 10 ** (9 - count);
  }

  let offset;
  const zone = s[pos];
  if (zone === "Z") {
    pos += 1;
    offset = 0;
  } else if (zone === "+" || zone === "-") {
    const hours = need(digits(s, pos + 1, 2), "expected a two-digit offset hour");
    expect(s, pos + 3, ":", "expected ':' in the offset");
    const minutes = need(digits(s, pos + 4, 2), "expected two-digit offset minutes");
    if (hours > 18 || minutes > 59 || (hours === 18 && minutes > 0)) {
      throw new ParseError("offset out of range -18:00..+18:00");
    }
    pos += 6;
    offset = (hours * 3600 + minutes * 60) * (zone === "-" ? -1 : 1);
  } else if (zone !== undefined) {
    throw new ParseError("expected 'Z' or an offset such as +01:00");
  } else {
    throw new ParseError("missing zone: expected 'Z' or an offset");
  }
  if (pos !== s.length) throw new ParseError("unexpected text after the zone");
  const days = daysFromCivil(year, month, day);
  return [days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset, nanos];
}

export { ParseError };

/** [secs, nanos] of `ms` (a BigInt) milliseconds after the epoch. */
export function fromMillis(ms) {
  return [Number(ms / 1000n), Number(ms % 1000n) * 1000000];
}

const pad = (n, width) => String(n).padStart(width, "0");

/** `ms` (a BigInt) milliseconds since the epoch as YYYY-MM-DDTHH:MM:SS.mmmZ. */
export function formatMillis(ms) {
  const secs = Number(ms / 1000n);
  const days = floorDiv(secs, SECS_PER_DAY);
  const ofDay = secs - days * SECS_PER_DAY;
  const [y, m, d] = civilFromDays(days);
  return `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}T${pad(floorDiv(ofDay, 3600), 2)}:` +
    `${pad(floorDiv(ofDay, 60) % 60, 2)}:${pad(ofDay % 60, 2)}.${pad(Number(ms % 1000n), 3)}Z`;
}
