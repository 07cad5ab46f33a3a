#!/usr/bin/env python3
"""Writes the hostile-input corpus: one file per case, and cases.json.

Run from anywhere: `python3 tests/corpus/make.py` (stdlib only). The output is
byte-for-byte reproducible (bzip2 and gzip are deterministic here; no clock,
no randomness), so a re-run after an edit shows in `git diff` exactly which
files changed. The generated files are committed next to this script and read
by `tests/torture/hostile_files.rs`.

Every line of every case carries its expected outcome, written down here by
reading the spec (README "What happens to bad input", /work/shared/DATA.md)
and crates/model/src/parse.rs, not by running the program:

    ok(row)      the line becomes this row of r_session_events
    dup()        a valid event already seen (same event, session and date)
    rej(reason)  a row of r_session_events_rejected with this reason code

cases.json then holds, per case: the file, what it is, the expected outcome
(counts, or the one error), the expected raw rows (ts as microseconds since
the epoch, UTC), and every rejected line with its line number and its exact
bytes (hex, for lines up to HEX_LIMIT bytes; the length otherwise).

Decisions the corpus pins (documented again in cases.json, per case):

- A line is the bytes between two `\\n` (or the end of the file). A `\\r`
  before the `\\n` is not part of what is parsed, but the rejected table's
  `raw_bytes` keeps it: joining `raw_bytes` with `\\n` rebuilds the file.
- A UTF-8 BOM is skipped at the start of the file (line 1) only; anywhere
  else it is a character that JSON does not allow, so `invalid_json`.
  `raw_bytes` keeps the BOM.
- "Whitespace-only" (empty_line) means Rust's `str::trim`: Unicode White_Space,
  so NBSP, U+3000, vertical tab and form feed count, NUL and U+FEFF do not.
- The line limit (1 MiB = 1,048,576 bytes) applies to the line without its
  terminator (`\\r\\n` or `\\n`), and is checked before anything else.
- JSON nested deeper than serde_json's limit (128) and numbers beyond f64
  are `invalid_json` (RFC 8259 section 9 lets a parser limit both) when the
  parser has to build them; inside an unknown field of an otherwise valid
  event they are skipped, and the event is accepted.
- A repeated key among the five event fields is `invalid_json`; a repeated
  unknown key is ignored like the field itself.
- `ts` offsets: `Z`/`z`, `+HH:MM`, `-HH:MM` and the ISO 8601 minus sign
  U+2212 are accepted and converted to UTC (EVENT_DATE is the UTC date);
  `+HHMM`, `+H:MM`, hours > 23, minutes > 59, a leap second (`:60`), more
  than 9 fraction digits and words after the time are `invalid_ts`, and so
  is an offset that carries the UTC instant out of the years 0000-9999.
- A `country` on an `end` is ignored whatever its JSON type.
- A corrupt, truncated or trailing-garbage bzip2 file is quarantined, whole,
  at `raw`: the run succeeds and reports it (file, sha256, the decoder's
  complaint) with one warning line, on that run and every later one, without
  reading it again; nothing of its lines is written, one `corrupt_file` row
  of r_session_events_rejected (line 0, empty bytes, the complaint as the
  message) records it, and files landed after it are processed.
  `sessionlake quarantine retry|drop` releases it. A file that is not bzip2
  at all (including an empty, zero-byte file) is refused by `ingest`.
"""

import bz2
import gzip
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20
HEX_LIMIT = 4096


# --- building blocks -------------------------------------------------------


def session_id(case, n):
    return "%08x-0000-4000-8000-%012x" % (case, n)


def player_id(case, n):
    return "%08x%024x" % (case, n)


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, 0 included,
    which Python's datetime cannot hold); H. Hinnant's algorithm."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def micros(utc_text):
    """`YYYY-MM-DDTHH:MM:SS.ffffff` read as UTC -> microseconds since the epoch."""
    date, time = utc_text.split("T")
    year, month, day = (int(part) for part in date.split("-"))
    hms, fraction = time.split(".")
    hour, minute, second = (int(part) for part in hms.split(":"))
    seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    return seconds * 1_000_000 + int(fraction)


def obj(*pairs):
    """A JSON object with its members in this order, compact (pairs may repeat keys)."""
    return "{" + ",".join(json.dumps(k) + ":" + v for k, v in pairs) + "}"


def s(text):
    """A JSON string literal (non-ASCII kept as UTF-8)."""
    return json.dumps(text, ensure_ascii=False)


class Ev:
    """One event as the file carries it, and the row it must become."""

    def __init__(self, case, n, kind="start", ts="2016-11-05T10:00:00.000000", country="FI", player=None):
        self.kind = kind
        self.ts = ts
        self.session = session_id(case, n)
        self.player = player or player_id(case, n)
        self.country = country if kind == "start" else None

    def pairs(self, **override):
        pairs = [("event", s(self.kind)), ("ts", s(self.ts)), ("session_id", s(self.session)), ("player_id", s(self.player))]
        if self.kind == "start":
            pairs.append(("country", s(self.country)))
        for key, value in override.items():
            pairs = [(k, value if k == key else v) for k, v in pairs]
        return pairs

    def line(self, **override):
        return obj(*self.pairs(**override))

    def row(self, utc=None, country="same"):
        """The raw row. `utc` is the stored ts when the file's ts is not already UTC."""
        stored = utc or self.ts
        if len(stored) == 19:
            stored += ".000000"
        return {
            "event": self.kind,
            "session_id": self.session.lower(),
            "player_id": self.player.lower(),
            "country": self.country if country == "same" else country,
            "ts": stored,
            "ts_micros": micros(stored),
            "event_date": stored[:10],
            "unique_id_row": "-".join(
                [self.kind, self.session.lower(), stored, self.player.lower()]
                + ([self.country if country == "same" else country] if self.kind == "start" else [])
            ),
        }


def ok(text, row):
    return (text, ("raw", row))


def dup(text):
    return (text, ("dup", None))


def rej(text, reason):
    return (text, ("rejected", reason))


def b(text):
    return text.encode("utf-8") if isinstance(text, str) else text


def jsonl(lines, ending=b"\n", last_ending=True):
    out = ending.join(b(text) for text, _ in lines)
    return out + ending if last_ending and lines else out


# --- the cases ---------------------------------------------------------------

CASES = []


def case(file, what, lines=None, data=None, compress=True, error=None, stage=None, streams=None, quarantined=None):
    """Registers a case. `lines`: the decompressed content as annotated lines
    (joined with `\\n` unless `data` gives the exact decompressed bytes);
    `streams`: the exact decompressed bytes of each bzip2 stream (multi-stream);
    `error`/`stage`: the case fails as one error at that stage instead;
    `quarantined`: `raw` quarantines the file, for a reason containing this."""
    CASES.append(
        dict(
            file=file,
            what=what,
            lines=lines,
            data=data,
            compress=compress,
            error=error,
            stage=stage,
            streams=streams,
            quarantined=quarantined,
        )
    )


def good_file():
    c = 1
    start, end = Ev(c, 1), Ev(c, 1, "end", ts="2016-11-05T10:30:00.250000")
    other = Ev(c, 2, country="SE", ts="2016-11-06T08:00:00.000001")
    return [ok(start.line(), start.row()), ok(end.line(), end.row()), ok(other.line(), other.row())]


case("01-good.jsonl.bz2", "three valid events in the documented format (also the file landed after each error case)", good_file())

# 02: an empty bzip2 stream (bz2.compress(b"")): no line at all.
case("02-empty-stream.jsonl.bz2", "a valid bzip2 file holding zero bytes: no lines, nothing written, no error", [])


def blank_lines():
    text = ["", "   ", "\t", "\x0b\x0c", "\u00a0", "\u3000\t ", "\r"]
    return [rej(t, "empty_line") for t in text]


case(
    "03-blank-lines.jsonl.bz2",
    "only blank lines: empty, spaces, tab, VT+FF, NBSP, ideographic space, a lone CR: each is empty_line",
    blank_lines(),
)


def no_trailing_newline():
    c = 4
    a, e = Ev(c, 1), Ev(c, 1, "end", ts="2016-11-05T11:00:00.000000")
    return [ok(a.line(), a.row()), ok(e.line(), e.row())]


case(
    "04-no-final-newline.jsonl.bz2",
    "the last line has no trailing newline: it is still a line and still accepted",
    no_trailing_newline(),
    data=jsonl(no_trailing_newline(), last_ending=False),
)

case(
    "05-only-partial-line.jsonl.bz2",
    "a single line of half an object and no newline: one invalid_json line",
    [rej('{"event":"start","ts":"2016-11-', "invalid_json")],
    data=b'{"event":"start","ts":"2016-11-',
)


def crlf():
    c = 6
    a, e, a2 = Ev(c, 1), Ev(c, 1, "end", ts="2016-11-05T10:05:00.000000"), Ev(c, 2, country="NO")
    return [
        ok(a.line() + "\r", a.row()),
        ok(e.line() + "\r", e.row()),
        rej("not json\r", "invalid_json"),
        rej("\r", "empty_line"),
        rej(a2.line(country=s("NO\r")) + "\r", "invalid_country"),
        ok(a2.line() + "\r", a2.row()),
    ]


case(
    "06-crlf.jsonl.bz2",
    "CRLF line endings: valid events are accepted with no CR in any column; rejected lines keep their CR in raw_bytes;"
    " a CR inside a value (escaped) is part of the value (invalid_country)",
    crlf(),
)


def cr_only():
    c = 7
    a, e = Ev(c, 1), Ev(c, 1, "end", ts="2016-11-05T10:05:00.000000")
    return [rej(a.line() + "\r" + e.line() + "\r", "invalid_json")]


case(
    "07-cr-only.jsonl.bz2",
    "old-Mac CR-only line endings: the file is one line holding two objects, which is not one JSON value: invalid_json",
    cr_only(),
    data=b(cr_only()[0][0]),
)


def bom():
    c = 8
    a, e, a2 = Ev(c, 1), Ev(c, 1, "end", ts="2016-11-05T10:05:00.000000"), Ev(c, 2)
    return [
        ok("\ufeff" + a.line(), a.row()),
        ok(e.line(), e.row()),
        rej("\ufeff" + a2.line(), "invalid_json"),
    ]


case(
    "08-bom.jsonl.bz2",
    "a UTF-8 BOM before line 1 is skipped (the event is accepted); a BOM before line 3 is invalid_json; raw_bytes keep it",
    bom(),
)

case(
    "09-bom-only.jsonl.bz2",
    "a file of just a BOM and no newline: one line, empty once the BOM is skipped: empty_line",
    [rej("\ufeff", "empty_line")],
    data=b"\xef\xbb\xbf",
)


def nul():
    c = 10
    a = Ev(c, 1)
    good = Ev(c, 2)
    extra = Ev(c, 3)
    return [
        ok(good.line(), good.row()),
        rej(a.line(country='"F\x00"'), "invalid_json"),  # a raw NUL inside a string is a control character
        rej(a.line()[:-1] + ",\x00}", "invalid_json"),  # a NUL between tokens
        rej("\x00" * 64, "invalid_json"),  # a whole line of NULs: NUL is not whitespace
        rej("\x00", "invalid_json"),
        rej(a.line() + "\x00\x00\x00", "invalid_json"),  # NUL padding after the object
        rej(a.line(country='"F\\u0000"'), "invalid_country"),  # an escaped NUL is a character of the value
        ok(extra.line()[:-1] + ',"note":"a\\u0000b"}', extra.row()),  # an escaped NUL in an unknown field: ignored
    ]


case("10-nul-bytes.jsonl.bz2", "NUL bytes inside a value, between tokens, as a whole line, as padding; escaped NULs", nul())


def invalid_utf8():
    c = 11
    a = Ev(c, 1)
    good = Ev(c, 2)
    unicode_extra = Ev(c, 3)
    base = a.line()[:-1]
    return [
        ok(good.line(), good.row()),
        rej(b(base) + b',"x":"\xff"}', "invalid_utf8"),  # 0xFF never appears in UTF-8
        rej(b(base) + b',"x":"\xc0\xaf"}', "invalid_utf8"),  # overlong encoding of '/'
        rej(b(base) + b',"x":"\xed\xa0\x80"}', "invalid_utf8"),  # a UTF-16 surrogate encoded as UTF-8
        rej(b(base) + b',"x":"\xe2\x82"}', "invalid_utf8"),  # a truncated 3-byte sequence
        rej(b(a.line(country='"F\xc4"')).replace(b"F\xc3\x84", b"F\xc4"), "invalid_utf8"),  # Latin-1 in country
        rej(b"\xfe\xff\x00{", "invalid_utf8"),
        rej(b(base) + b',"x":"\xf4\x90\x80\x80"}', "invalid_utf8"),  # above U+10FFFF
        ok(unicode_extra.line()[:-1] + ',"city":"Jyväskylä 🎮"}', unicode_extra.row()),  # valid UTF-8 extra field
        rej(a.line(country=s("FÏ")), "invalid_country"),  # valid UTF-8, but not two uppercase ASCII letters
    ]


case(
    "11-invalid-utf8.jsonl.bz2",
    "invalid UTF-8 anywhere in a line (0xFF, overlong, encoded surrogate, truncated sequence, Latin-1, > U+10FFFF) is"
    " invalid_utf8 for the whole line; valid non-ASCII UTF-8 is fine",
    invalid_utf8(),
)


def utf16():
    # A Windows export in UTF-16LE with its BOM: splitting on the byte 0x0A
    # leaves each line's "\n" high byte (0x00) at the start of the next line.
    c = 12
    events = [Ev(c, 1), Ev(c, 2)]
    data = ("\ufeff" + "".join(e.line() + "\n" for e in events)).encode("utf-16-le")
    pieces = data.split(b"\n")
    # pieces: [BOM+line1+NUL-interleaved], ["\0"+line2...], ["\0"] (the high byte of the last newline)
    lines = [rej(pieces[0], "invalid_utf8")]  # 0xFF 0xFE is not UTF-8
    lines += [rej(p, "invalid_json") for p in pieces[1:]]  # ASCII and NULs: valid UTF-8, not JSON
    return lines, data


case(
    "12-utf16le.jsonl.bz2",
    "a UTF-16LE file with BOM: line 1 is invalid_utf8 (0xFF 0xFE), every later line is NUL-interleaved ASCII: invalid_json",
    utf16()[0],
    data=utf16()[1],
)


def deep():
    c = 13
    a, good = Ev(c, 1), Ev(c, 2)
    base = good.line()[:-1]
    deep_extra = base + ',"extra":' + "[" * 100_000 + "]" * 100_000 + "}"
    return [
        rej("[" * 100_000, "invalid_json"),
        rej("[" * 100_000 + "]" * 100_000, "invalid_json"),  # valid RFC 8259, deeper than the parser's limit
        # An object whose one (unknown) key holds 100,000 nested objects: an object without `event`.
        rej('{"a":' * 100_000 + "1" + "}" * 100_000, "missing_field"),
        ok(deep_extra, good.row()),  # unknown fields are skipped without building them
        # A bad field and a deep unknown field: the fast path skips the depth and names the field...
        rej(a.line(country='"fi"')[:-1] + ',"extra":' + "[" * 200 + "]" * 200 + "}", "invalid_country"),
        # ...but a field of the wrong type sends the line to the precise path, which builds the whole
        # document and meets the parser's depth limit first: invalid_json, not wrong_type.
        rej(a.line(country="358")[:-1] + ',"extra":' + "[" * 200 + "]" * 200 + "}", "invalid_json"),
        rej(a.line(country="[" * 100 + "]" * 100), "wrong_type"),  # nested, but within the limit
    ]


case(
    "13-deep-nesting.jsonl.bz2",
    "deeply nested JSON: 100,000 '[' (open, closed), 100,000 nested objects: invalid_json; a 100,000-deep unknown field on"
    " a valid event is skipped (accepted); on a bad event the parser's depth limit decides (invalid_json)",
    deep(),
)


def numbers():
    c = 14
    a = Ev(c, 1)
    e = Ev(c, 2, "end", ts="2016-11-05T10:05:00.000000")
    e2 = Ev(c, 3, "end", ts="2016-11-05T10:06:00.000000")
    return [
        rej(a.line(ts="1478340000"), "wrong_type"),
        rej(a.line(ts="1478340000.5"), "wrong_type"),
        rej(a.line(session_id="12345"), "wrong_type"),
        rej(a.line(player_id="-1"), "wrong_type"),
        rej(a.line(country="358"), "wrong_type"),
        rej(a.line(event="1"), "wrong_type"),
        rej(a.line(event="true"), "wrong_type"),
        rej(a.line(session_id="[1,2]"), "wrong_type"),
        rej(a.line(ts='{"$date":"2016-11-05T10:00:00"}'), "wrong_type"),
        rej(a.line(ts="1e400"), "invalid_json"),  # beyond f64: the parser's limit, like nesting
        rej(a.line(event="1", ts="null"), "wrong_type"),  # event is checked before ts
        rej(a.line(ts="null"), "missing_field"),
        rej(a.line(country="null"), "missing_field"),
        ok(e.line()[:-1] + ',"country":358}', e.row()),  # a country on an end is ignored, whatever its type
        ok(e2.line()[:-1] + ',"country":{"code":"FI"}}', e2.row()),
    ]


case(
    "14-numbers-for-strings.jsonl.bz2",
    "numbers (and arrays, objects, booleans) where strings belong: wrong_type in field order; null is missing_field;"
    " 1e400 is beyond the parser (invalid_json); a non-string country on an end is ignored",
    numbers(),
)


def timestamps():
    c = 15
    n = iter(range(1, 1000))

    def start(ts):
        return Ev(c, next(n), ts=ts)

    def good(ts, utc=None):
        event = start(ts)
        return ok(event.line(), event.row(utc))

    def bad(ts):
        return rej(start(ts).line(), "invalid_ts")

    return [
        good("9999-12-31T23:59:59.999999"),
        good("2016-11-05T10:00:00Z", "2016-11-05T10:00:00.000000"),
        good("2016-11-05T10:00:00.123z", "2016-11-05T10:00:00.123000"),
        good("2016-11-05T10:00:00+02:00", "2016-11-05T08:00:00.000000"),
        good("2016-11-05T01:30:00+02:00", "2016-11-04T23:30:00.000000"),  # the UTC date is the EVENT_DATE
        good("2016-11-05T22:00:00.5-05:00", "2016-11-06T03:00:00.500000"),
        good("2016-11-05T10:00:00+00:00", "2016-11-05T10:00:00.000000"),
        good("2016-11-05T10:00:00-00:00", "2016-11-05T10:00:00.000000"),
        good("2016-11-05T10:00:00+23:59", "2016-11-04T10:01:00.000000"),
        good("2016-11-05T10:00:00\u221205:00", "2016-11-05T15:00:00.000000"),  # ISO 8601 minus sign
        good("2016-11-05T10:00:00.123456789", "2016-11-05T10:00:00.123456"),  # nanoseconds truncated
        good("2016-11-05T10:00:00.123456789+01:00", "2016-11-05T09:00:00.123456"),
        good("2016-11-05T10:00:00", "2016-11-05T10:00:00.000000"),
        bad("2016-11-05T10:00:00+0200"),
        bad("2016-11-05T10:00:00+2:00"),
        bad("2016-11-05T10:00:00+24:00"),
        bad("2016-11-05T10:00:00+25:00"),
        bad("2016-11-05T10:00:00+02:60"),
        bad("2016-11-05T10:00:00+02"),
        bad("2016-11-05T10:00:00 UTC"),
        bad("2016-11-05T10:00:00 +02:00"),
        bad("2016-11-05T10:00:00Europe/Helsinki"),
        bad("2016-11-05T10:00:00ZZ"),
        bad("2016-11-05T10:00:00.1234567890"),
        bad("2016-11-05T10:00:00."),
        bad("2016-12-31T23:59:60"),
        bad("2016-12-31T23:59:60Z"),
        bad("2016-12-31T23:59:60+01:00"),
        bad("2016-02-30T10:00:00"),
        bad("2016-11-05 10:00:00"),
        bad("2016-11-05t10:00:00"),
        bad("10000-01-01T00:00:00"),
        bad("+2016-11-05T10:00:00"),
        bad("２０１６-11-05T10:00:00"),
        bad(""),
        bad("2016-11-05"),
        bad("1478340000"),
    ]


case(
    "15-timestamps.jsonl.bz2",
    "ts in year 9999, with Z/z, +HH:MM, -HH:MM, U+2212 (converted to UTC, EVENT_DATE from UTC), nanoseconds"
    " (truncated); bad offsets, leap seconds, spaces, zone names, 5-digit years: invalid_ts",
    timestamps(),
)


def timestamps_at_the_edges():
    c = 16
    # An offset can move a valid local time out of the four-digit years: such
    # an instant cannot be written back in the file's format (and its
    # EVENT_DATE partition "+10000-01-01" broke the sessions stage).
    late = Ev(c, 1, ts="9999-12-31T23:30:00-01:00")
    before_zero = Ev(c, 2, ts="0000-01-01T00:30:00+01:00")
    # Four-digit years that stay four-digit years in UTC are fine, 0000 included.
    last = Ev(c, 3, ts="9999-12-31T23:59:59.999999-00:00")
    year_zero = Ev(c, 4, ts="0000-06-01T00:00:00")
    into_zero = Ev(c, 5, ts="0001-01-01T00:30:00+01:00")
    early = Ev(c, 6, ts="0000-01-01T00:00:00Z")
    return [
        rej(late.line(), "invalid_ts"),
        rej(before_zero.line(), "invalid_ts"),
        ok(last.line(), last.row("9999-12-31T23:59:59.999999")),
        ok(year_zero.line(), year_zero.row("0000-06-01T00:00:00.000000")),
        ok(into_zero.line(), into_zero.row("0000-12-31T23:30:00.000000")),
        ok(early.line(), early.row("0000-01-01T00:00:00.000000")),
    ]


case(
    "16-timestamps-out-of-range.jsonl.bz2",
    "ts that an offset carries out of the four-digit years in UTC (9999-12-31T23:30-01:00 is year 10000,"
    " 0000-01-01T00:30+01:00 is year -1): invalid_ts; years 0000 and 9999 themselves are fine",
    timestamps_at_the_edges(),
)


def long_lines():
    c = 17
    before, after, padded, padded_cr, over = Ev(c, 1), Ev(c, 2), Ev(c, 3), Ev(c, 4), Ev(c, 5)
    huge = before.line()[:-1] + ',"pad":"' + "x" * (10 * MIB) + '"}'

    def padded_to(event, size):
        text = event.line()[:-1]
        return text + " " * (size - len(text) - 1) + "}"

    exact = padded_to(padded, MIB)
    assert len(exact) == MIB
    return [
        ok(before.line(), before.row()),
        rej(huge, "line_too_long"),
        rej(" " * (2 * MIB), "line_too_long"),  # the length is checked before "whitespace-only"
        ok(exact, padded.row()),  # exactly 1 MiB: accepted
        ok(padded_to(padded_cr, MIB) + "\r", padded_cr.row()),  # 1 MiB plus the CR of a CRLF ending
        rej(padded_to(over, MIB + 1), "line_too_long"),  # one byte over
        ok(after.line(), after.row()),
        rej("y" * (2 * MIB), "line_too_long"),  # the last line, 2 MiB, no newline
    ]


case(
    "17-long-lines.jsonl.bz2",
    "a 10 MiB single line, 2 MiB of spaces, a 2 MiB last line without newline: line_too_long; a line of exactly"
    " 1 MiB (+ CR) is accepted, 1 MiB + 1 byte is not",
    long_lines(),
    data=jsonl(long_lines(), last_ending=False),
)


def long_strings():
    c = 18
    a, good = Ev(c, 1), Ev(c, 2)
    return [
        rej(a.line(player_id=s("a" * 100_000)), "invalid_player_id"),
        rej(a.line(session_id=s("0" * 200_000)), "invalid_session_id"),
        rej(a.line(country=s("é" * 250_000)), "invalid_country"),  # 500 KB of 2-byte characters
        rej(a.line(event=s("start" * 50_000)), "unknown_event"),
        rej(a.line(ts=s("2016-11-05T10:00:00." + "1" * 100_000)), "invalid_ts"),
        ok(good.line()[:-1] + ',"comment":' + s("🎮" * 200_000) + "}", good.row()),  # 800 KB unknown field
    ]


case(
    "18-long-strings.jsonl.bz2",
    "very long strings (100 KB to 800 KB) in each field: the field's reason; a long unknown field is ignored",
    long_strings(),
)


def duplicate_keys():
    c = 19
    a, b2, d, e, f = Ev(c, 1), Ev(c, 2), Ev(c, 3), Ev(c, 4, "end"), Ev(c, 5)
    return [
        rej(obj(*([("event", s("start"))] + a.pairs())), "invalid_json"),  # same key, same value
        rej(obj(*(a.pairs() + [("country", s("SE"))])), "invalid_json"),  # same key, other value
        rej(obj(*(a.pairs() + [("session_id", s(session_id(c, 99)))])), "invalid_json"),
        rej(b2.line()[:-1] + ',"\\u0065vent":"start"}', "invalid_json"),  # the same key spelled with an escape
        rej(e.line()[:-1] + ',"country":"FI","country":"SE"}', "invalid_json"),  # repeated, even though ignored
        ok(d.line()[:-1] + ',"extra":1,"extra":2}', d.row()),  # a repeated unknown key is ignored
        ok(f.line(), f.row()),
    ]


case(
    "19-duplicate-keys.jsonl.bz2",
    "a key repeated in one object: invalid_json for the event's fields (also via an escaped spelling, also for an end's"
    " country); a repeated unknown key is ignored",
    duplicate_keys(),
)


def extra_fields():
    c = 20
    events = [Ev(c, n) for n in range(1, 6)] + [Ev(c, 6, "end")]
    a, b2, d, e, f, g = events
    return [
        ok(a.line()[:-1] + ',"extra":[1,{"a":null}],"version":2,"ok":true,"gone":null}', a.row()),
        ok(obj(("Event", s("end")), *b2.pairs()), b2.row()),  # keys are case-sensitive: Event is unknown
        ok(obj(*reversed(d.pairs())), d.row()),  # key order does not matter
        ok(" \t" + e.line() + "  \t ", e.row()),  # JSON whitespace around the object
        ok(obj(("", s("")), ("ε", s("ξ")), *f.pairs()), f.row()),  # an empty and a non-ASCII key
        ok(g.line()[:-1] + ',"country":"??"}', g.row()),  # a country on an end is ignored
        rej(obj(("event ", s("start")), *a.pairs()[1:]), "missing_field"),  # "event " is not "event"
    ]


case(
    "20-extra-fields.jsonl.bz2",
    "unknown fields of every JSON type, a key differing in case, reordered keys, JSON whitespace, odd keys: accepted;"
    " a key with a trailing space does not stand for the field",
    extra_fields(),
)


def end_without_start():
    c = 21
    e = Ev(c, 1, "end", ts="2016-11-05T10:05:00.000000")
    e_country = Ev(c, 2, "end")
    e_upper = Ev(c, 3, "end", player=player_id(c, 3).upper())
    e_upper.session = e_upper.session.upper()
    return [
        ok(e.line(), e.row()),
        ok(e_country.line()[:-1] + ',"country":"FI"}', e_country.row()),  # stored without country
        ok(e_upper.line(), e_upper.row()),  # ids stored lowercase
    ]


case(
    "21-end-without-start.jsonl.bz2",
    "ends whose start never comes: raw rows with a null country (even when the end carries one), ids lowercased",
    end_without_start(),
)


def duplicates():
    c = 22
    a, e, other_day = Ev(c, 1), Ev(c, 1, "end", ts="2016-11-05T10:30:00.000000"), Ev(c, 2)
    later_same_day = Ev(c, 1, ts="2016-11-05T23:59:59.999999")
    upper = Ev(c, 1)
    upper.session, upper.player = upper.session.upper(), upper.player.upper()
    next_day = Ev(c, 2, ts="2016-11-06T00:00:00.000000")
    return [
        ok(a.line(), a.row()),
        dup(a.line()),
        dup(a.line()),
        ok(e.line(), e.row()),  # the end of the same session is another event
        dup(e.line()),
        dup(obj(*reversed(a.pairs()))),  # the same event written differently
        dup(upper.line()),  # ids differ only in case: the same ids
        ok(later_same_day.line(), later_same_day.row()),  # same event and session, other time: a distinct event
        ok(other_day.line(), other_day.row()),
        ok(next_day.line(), next_day.row()),  # same event and session, another date: its own row
        dup(next_day.line()),
    ]


case(
    "22-duplicates.jsonl.bz2",
    "exact repeats, reordered and upper-case repeats: duplicates (first kept); the same event and session at"
    " another time (the same day or another date) is a distinct event, a row of its own",
    duplicates(),
)


def mixed():
    c = 23
    evs = [Ev(c, n, ts="2016-11-%02dT%02d:00:00.000000" % (3 + n % 4, n % 24), country=["FI", "IT", "SE", "AZ"][n % 4]) for n in range(1, 13)]
    ends = [Ev(c, n, "end", ts="2016-11-%02dT%02d:30:00.000000" % (3 + n % 4, n % 24)) for n in range(1, 13)]
    lines = []
    for n in range(12):
        lines.append(ok(evs[n].line(), evs[n].row()))
        bad = [
            rej("", "empty_line"),
            rej("garbage", "invalid_json"),
            rej("[1,2,3]", "not_an_object"),
            rej("{}", "missing_field"),
            rej(evs[n].line(event='"pause"'), "unknown_event"),
            rej(evs[n].line(ts='"yesterday"'), "invalid_ts"),
            rej(evs[n].line(session_id='"not-a-uuid"'), "invalid_session_id"),
            rej(evs[n].line(player_id='"xyz"'), "invalid_player_id"),
            rej(evs[n].line(country='"Finland"'), "invalid_country"),
            rej(b"\xff\xfe", "invalid_utf8"),
            dup(evs[n].line()),
            rej("null", "not_an_object"),
        ][n]
        lines.append(bad)
        lines.append(ok(ends[n].line(), ends[n].row()))
    return lines


case(
    "23-mixed.jsonl.bz2",
    "good starts and ends of 12 sessions over 4 dates, interleaved with one bad line of each kind and a duplicate",
    mixed(),
)


def not_objects():
    return [rej(t, "not_an_object") for t in ["[]", '"start"', "42", "-0.5", "null", "true", "false", " [ {} ] "]]


case("24-not-objects.jsonl.bz2", "JSON values that are not objects: not_an_object", not_objects())


def multi_stream():
    c = 25
    evs = [Ev(c, n) for n in range(1, 7)]
    lines = [ok(e.line(), e.row()) for e in evs]
    lines.append(rej("\ufeff" + Ev(c, 7).line(), "invalid_json"))  # a second file's BOM, mid-stream
    text = [b(t) + b"\n" for t, _ in lines]
    # stream 1: events 1-2; stream 2: event 3 and the first half of event 4;
    # stream 3: empty; stream 4: the rest of event 4, events 5-6 and the BOM line.
    half = len(text[3]) // 2
    streams = [text[0] + text[1], text[2] + text[3][:half], b"", text[3][half:] + text[4] + text[5] + text[6]]
    assert b"".join(streams) == b"".join(text)
    return lines, streams


case(
    "25-multi-stream.jsonl.bz2",
    "four concatenated bzip2 streams (as `cat a.bz2 b.bz2`, pbzip2): one empty, one line split across two streams,"
    " a BOM at the start of a later stream (invalid_json, only line 1 of the file may have one)",
    multi_stream()[0],
    streams=multi_stream()[1],
)


def field_checks():
    c = 26
    a, good = Ev(c, 1), Ev(c, 2)
    return [
        rej(a.line(event='"pause"', ts='"x"'), "unknown_event"),  # the first bad field in check order wins
        rej(a.line(ts='"x"', session_id='"x"', player_id='"x"', country='"x"'), "invalid_ts"),
        rej(a.line(session_id='"{%s}"' % session_id(c, 1)), "invalid_session_id"),
        rej(a.line(session_id='"%s"' % session_id(c, 1).replace("-", "")), "invalid_session_id"),
        rej(a.line(player_id='"%s"' % player_id(c, 1)[:31]), "invalid_player_id"),
        rej(a.line(player_id='"%s"' % session_id(c, 1)), "invalid_player_id"),
        rej(a.line(country='"fi"'), "invalid_country"),
        rej(a.line(country='"FIN"'), "invalid_country"),
        rej(a.line(country='""'), "invalid_country"),
        rej(obj(*a.pairs()[:4]), "missing_field"),  # a start without country
        rej(a.line(event='"Start"'), "unknown_event"),
        rej(a.line(player_id='"\\ud800%s"' % player_id(c, 1)[:31]), "invalid_json"),  # lone surrogate escape
        ok(good.line(country='"\\u0046I"'), good.row()),  # escaped letters
    ]


case(
    "26-field-checks.jsonl.bz2",
    "one bad field at a time and several at once (the first in check order wins); an escaped lone surrogate in a"
    " field is invalid_json; escaped letters are the letters",
    field_checks(),
)

case(
    "27-good-again.jsonl.bz2",
    "the events of 01-good again, in reverse order with CRLF endings: other bytes, same events (landed after"
    " 01-good, every line is a duplicate, and the file is still done after one run)",
    [(text + "\r", outcome) for text, outcome in reversed(good_file())],
)

# --- the cases that fail as a whole file: quarantined at raw, refused at ingest --

GOOD_BYTES = jsonl(good_file())


def many_events(c, count):
    lines = []
    for n in range(1, count + 1):
        event = Ev(c, n, ts="2016-11-%02dT10:00:00.%06d" % (1 + n % 5, n))
        lines.append(ok(event.line(), event.row()))
    return jsonl(lines)


def truncated():
    packed = bz2.compress(many_events(40, 400))
    return packed[: len(packed) // 2]


def corrupt():
    packed = bytearray(bz2.compress(many_events(41, 400)))
    packed[len(packed) // 2] ^= 0xFF
    return bytes(packed)


def second_stream_truncated():
    second = bz2.compress(many_events(42, 200))
    return bz2.compress(GOOD_BYTES) + second[: len(second) - 20]


case(
    "40-truncated.jsonl.bz2",
    "a bzip2 stream cut in the middle (a partial download): quarantined at raw, nothing of it written",
    data=truncated(),
    compress=False,
    quarantined="truncated or corrupt",
)
case(
    "41-corrupt-block.jsonl.bz2",
    "one flipped byte in the middle of the compressed data (bad block): quarantined at raw, nothing of it written",
    data=corrupt(),
    compress=False,
    quarantined="truncated or corrupt",
)
case(
    "42-second-stream-truncated.jsonl.bz2",
    "two streams, the first complete with valid events, the second cut short: quarantined, and not even the"
    " first stream's events are written",
    data=second_stream_truncated(),
    compress=False,
    quarantined="truncated or corrupt",
)
case(
    "43-trailing-garbage.jsonl.bz2",
    "a complete stream followed by bytes that are not a stream (bzip2 -d would warn and drop them): quarantined",
    data=bz2.compress(GOOD_BYTES) + b"garbage after the stream\n",
    compress=False,
    quarantined="truncated or corrupt",
)
case(
    "44-header-only.jsonl.bz2",
    "just the 4-byte header `BZh9`: passes ingest's magic check, quarantined at raw as truncated",
    data=b"BZh9",
    compress=False,
    quarantined="truncated or corrupt",
)
case(
    "45-not-bzip2.jsonl.bz2",
    "plain JSON Lines named .bz2: ingest refuses it (no bzip2 magic)",
    data=GOOD_BYTES,
    compress=False,
    error="is not a bzip2 file",
    stage="ingest",
)
case(
    "46-gzip.jsonl.bz2",
    "a gzip file named .bz2: ingest refuses it",
    data=gzip.compress(GOOD_BYTES, mtime=0),
    compress=False,
    error="is not a bzip2 file",
    stage="ingest",
)
case(
    "47-zero-bytes.jsonl.bz2",
    "a zero-byte file (not even an empty bzip2 stream): ingest refuses it",
    data=b"",
    compress=False,
    error="is not a bzip2 file",
    stage="ingest",
)


# --- writing -----------------------------------------------------------------


def expected(lines):
    rows, rejected_lines, counts, duplicates = [], [], {}, 0
    for number, (text, (kind, detail)) in enumerate(lines, start=1):
        if kind == "raw":
            rows.append(detail)
        elif kind == "dup":
            duplicates += 1
        else:
            counts[detail] = counts.get(detail, 0) + 1
            raw_bytes = b(text)
            if detail == "line_too_long":
                raw_bytes = raw_bytes[:MIB]  # only the first MiB of a too-long line is kept
            entry = {"line_number": number, "reason": detail, "length": len(raw_bytes)}
            if len(raw_bytes) <= HEX_LIMIT:
                entry["hex"] = raw_bytes.hex()
            rejected_lines.append(entry)
    rows.sort(key=lambda row: (row["event_date"], row["unique_id_row"]))
    return {"raw_rows": len(rows), "rejected": dict(sorted(counts.items())), "duplicates": duplicates}, rows, rejected_lines


def main():
    listing = []
    for spec in CASES:
        if spec["streams"] is not None:
            decompressed = b"".join(spec["streams"])
            packed = b"".join(bz2.compress(stream) for stream in spec["streams"])
        else:
            decompressed = spec["data"] if spec["data"] is not None else jsonl(spec["lines"])
            packed = bz2.compress(decompressed) if spec["compress"] else decompressed
        entry = {"file": spec["file"], "what": spec["what"]}
        if spec["error"] is not None:
            entry["expect"] = {"error": spec["error"], "stage": spec["stage"]}
        elif spec["quarantined"] is not None:
            entry["expect"] = {"quarantined": spec["quarantined"]}
        else:
            lines = spec["lines"]
            # The annotated lines must be exactly the lines of the decompressed bytes.
            split = decompressed.split(b"\n")
            if split and split[-1] == b"":
                split.pop()
            assert split == [b(text) for text, _ in lines], spec["file"]
            outcome, rows, rejected_lines = expected(lines)
            entry["expect"] = outcome
            entry["lines"] = len(lines)
            entry["raw"] = rows
            entry["rejected_lines"] = rejected_lines
        assert len(packed) < 200_000, (spec["file"], len(packed))
        with open(os.path.join(HERE, spec["file"]), "wb") as out:
            out.write(packed)
        listing.append(entry)
    document = {
        "about": "Hostile input files and the outcome of `sessionlake ingest --source FILE` then `raw` for each"
        " (counts, one error at ingest, or quarantined at raw);"
        " written by make.py, checked by tests/torture/hostile_files.rs. `raw` rows: ts_micros is the stored ts"
        " (UTC, microseconds since the epoch). `rejected_lines`: hex is the exact raw_bytes (a line's bytes"
        " between two newlines, a CR before the newline and a BOM included), given for lines up to 4096 bytes.",
        "follow_up": "01-good.jsonl.bz2",
        "cases": listing,
    }
    with open(os.path.join(HERE, "cases.json"), "w") as out:
        json.dump(document, out, indent=1, ensure_ascii=False)
        out.write("\n")
    print("wrote %d cases to %s" % (len(listing), HERE), file=sys.stderr)


if __name__ == "__main__":
    main()
