"""The ``--audit-log-format=legacy`` text format (spec 8.2), both directions.

One line per event, as the apiserver's ``EventString`` writes it (``pkg/audit/format.go``)::

    <ts> AUDIT: id=%q stage=%q ip=%q method=%q user=%q groups=%q as=%q asgroups=%q
    user-agent=%q namespace=%q uri=%q response="%s"

* :func:`format_legacy` writes that line (with its trailing newline) byte for byte.
* :func:`parse_legacy` reads one back into an :class:`~kaudit.model.types.Event`.
* :func:`is_legacy_line` is the cheap test a format sniffer needs.
* :func:`go_quote` / :func:`go_unquote` are Go's ``strconv.Quote`` / ``Unquote``.

**What a legacy line does not carry.** ``level``, ``user.uid``, ``user.extra``,
``impersonatedUser.uid``/``extra``, every ``sourceIPs`` entry but the first, the
``objectRef`` fields other than ``namespace`` (and whether an ``objectRef`` without a
namespace existed at all), ``responseStatus`` other than ``code``,
``authenticationMetadata``, both bodies, ``stageTimestamp``, ``annotations`` and the
sub-microsecond part of the time are lost: :func:`parse_legacy` leaves them empty.
A placeholder cannot be told from a value spelt the same way (a user really called
``<none>``); the parser takes the placeholder, as anyone reading the line would.

**Time.** The timestamp is ``requestReceivedTimestamp`` in Go's ``time.RFC3339Nano``
(fraction trimmed of trailing zeros, ``Z`` for a zero offset, the zero time as
``0001-01-01T00:00:00Z``), in the zone of the value. kaudit holds MicroTime strings
in UTC, so it writes ``Z``; a value that still carries an offset or nanoseconds
(an event built by hand) is written with them, as Go would. The apiserver itself
formats ``time.Now()`` in its process's local zone, which in a container is
normally UTC. :func:`parse_legacy` turns the time into UTC MicroTime.

**Strings that are not UTF-8.** Go strings are bytes; Python strings are text. kaudit
carries a byte that is not valid UTF-8 the standard Python way, as a
``surrogateescape`` code point U+DC80..U+DCFF: :func:`go_quote` writes it as
``\\xHH`` (as Go does for the raw byte) and :func:`go_unquote` gives it back. Any other
lone surrogate has no Go equivalent and is treated as U+FFFD, the character Go's
decoders substitute for it.

**Printable.** Which non-ASCII characters Go keeps is ``unicode.IsPrint`` (categories
L, M, N, P, S). kaudit asks Python's :mod:`unicodedata`, whose Unicode version may
differ from the Go release's for characters assigned in between.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final

from msgspec import UNSET

from kaudit.errors import DecodeError, Location
from kaudit.model.codec import format_micro, parse_time
from kaudit.model.types import Event, ObjectReference, Status, UserInfo

ZERO_TIME: Final = "0001-01-01T00:00:00Z"

# --- Go strconv.Quote / Unquote ----------------------------------------------------

# Characters Quote never touches: printable ASCII except '"' and '\\'.
_PLAIN = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_SHORT_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


@lru_cache(maxsize=4096)
def _is_print(ch: str) -> bool:
    """Go's ``unicode.IsPrint`` for a non-ASCII character."""
    return unicodedata.category(ch)[0] in "LMNPS"


def go_quote(s: str) -> str:
    """``s`` as Go's ``strconv.Quote`` (``%q``) writes it, quotes included."""
    if _PLAIN.fullmatch(s):
        return f'"{s}"'
    out = ['"']
    append = out.append
    for ch in s:
        cp = ord(ch)
        if 0x20 <= cp < 0x7F:
            append(_SHORT_ESCAPES.get(ch, ch))
        elif cp < 0x80:
            esc = _SHORT_ESCAPES.get(ch)
            append(esc if esc is not None else f"\\x{cp:02x}")
        elif 0xDC80 <= cp <= 0xDCFF:
            append(f"\\x{cp - 0xDC00:02x}")  # a raw byte, carried by surrogateescape
        elif 0xD800 <= cp <= 0xDFFF:
            append("\ufffd")  # no Go string holds a lone surrogate
        elif _is_print(ch):
            append(ch)
        elif cp < 0x10000:
            append(f"\\u{cp:04x}")
        else:
            append(f"\\U{cp:08x}")
    append('"')
    return "".join(out)


class _QuoteError(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


_SIMPLE_UNESCAPES: Final = {
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
    "\\": 0x5C,
    '"': 0x22,
}
_HEX = frozenset("0123456789abcdefABCDEF")
# A double-quoted Go string with no escapes at all: the common case.
_SIMPLE_QUOTED = re.compile(r'"([^"\\\n]*)"')


def _scan_quoted(s: str, pos: int) -> tuple[str, int]:
    """Unquote the Go string literal starting at ``s[pos]``; return it and the end index."""
    m = _SIMPLE_QUOTED.match(s, pos)
    if m is not None:
        body = m.group(1)
        if not any(0xD800 <= ord(c) <= 0xDFFF for c in body if ord(c) > 0x7F):
            return body, m.end()
    if pos >= len(s) or s[pos] != '"':
        raise _QuoteError(f"expected a quoted string, found {_found(s, pos)}", pos)
    buf = bytearray()
    i = pos + 1
    n = len(s)
    while True:
        if i >= n:
            raise _QuoteError("unterminated quoted string", i)
        c = s[i]
        if c == '"':
            return buf.decode("utf-8", "surrogateescape"), i + 1
        if c == "\n":
            raise _QuoteError("newline in quoted string", i)
        if c != "\\":
            cp = ord(c)
            if cp < 0x80:
                buf.append(cp)
            elif 0xD800 <= cp <= 0xDFFF:
                raise _QuoteError("invalid UTF-8 in quoted string", i)
            else:
                buf += c.encode()
            i += 1
            continue
        if i + 1 >= n:
            raise _QuoteError("unterminated escape sequence", i)
        e = s[i + 1]
        if e in _SIMPLE_UNESCAPES:
            buf.append(_SIMPLE_UNESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = s[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in _HEX for d in digits):
                raise _QuoteError(f"invalid \\{e} escape: expected {width} hex digits", i)
            value = int(digits, 16)
            if e == "x":
                buf.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise _QuoteError(f"invalid Unicode code point \\{e}{digits}", i)
            else:
                buf += chr(value).encode()
            i += 2 + width
        elif e in "01234567":
            digits = s[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise _QuoteError("invalid octal escape: expected 3 octal digits", i)
            value = int(digits, 8)
            if value > 0xFF:
                raise _QuoteError(f"octal escape \\{digits} is greater than 255", i)
            buf.append(value)
            i += 4
        else:
            raise _QuoteError(f"unknown escape sequence \\{e}", i)


def go_unquote(s: str) -> str:
    """The string a Go double-quoted literal stands for (``strconv.Unquote``).

    Bytes that are not UTF-8 (``\\xff``) come back as ``surrogateescape`` code points.
    Raises :class:`ValueError` for anything that is not exactly one literal.
    """
    value, end = _scan_quoted(s, 0)
    if end != len(s):
        raise _QuoteError("unexpected text after the closing quote", end)
    return value


# --- timestamps ------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))"
)


def format_rfc3339nano(text: str | None) -> str:
    """A timestamp string as Go's ``time.RFC3339Nano`` writes it (zone kept)."""
    if not text:
        return ZERO_TIME
    m = _RFC3339.fullmatch(text)
    if m is None:
        try:
            text = format_micro(parse_time(text)) or ""
        except ValueError:
            return text  # not ours to invent a time: write what we were given
        m = _RFC3339.fullmatch(text)
        if m is None:  # pragma: no cover - format_micro always matches
            return text
    date, clock, frac, z, sign, hh, mm = m.groups()
    frac = (frac or "")[:9].rstrip("0")
    zone = "Z" if z or (hh == "00" and mm == "00") else f"{sign}{hh}:{mm}"
    return f"{date}T{clock}{'.' + frac if frac else ''}{zone}"


def _to_micro(ts: str) -> str | None:
    if ts == ZERO_TIME:
        return None
    m = _RFC3339.fullmatch(ts)
    if m is None:
        raise ValueError(f"invalid RFC 3339 time {ts!r}")
    date, clock, frac, _z, sign, hh, mm = m.groups()
    base = datetime.fromisoformat(f"{date}T{clock}+00:00")
    micros = int((frac or "")[:6].ljust(6, "0"))
    offset = timedelta(hours=int(hh or 0), minutes=int(mm or 0))
    dt = base + timedelta(microseconds=micros) - (offset if sign == "+" else -offset)
    return format_micro(dt)


# --- format ----------------------------------------------------------------------


def _string_slice(values: list[str]) -> str:
    return ",".join(go_quote(v) for v in values)


def format_legacy(ev: Event) -> str:
    """``ev`` as one legacy line, exactly as ``EventString`` writes it, plus ``"\\n"``."""
    username = "<none>"
    groups = "<none>"
    if ev.user.username:
        username = ev.user.username
        if ev.user.groups:
            groups = _string_slice(ev.user.groups)
    asuser = "<self>"
    asgroups = "<lookup>"
    imp = ev.impersonated_user
    if imp is not UNSET:
        asuser = imp.username if imp.username is not UNSET else ""
        if imp.groups is not UNSET:
            asgroups = _string_slice(imp.groups)
    namespace = ev.namespace or "<none>"
    response = "<deferred>"
    if ev.response_status is not UNSET:
        code = ev.response_status.code
        response = str(code if code is not UNSET else 0)
    ip = ev.source_ips[0] if ev.source_ips else "<unknown>"
    agent = ev.user_agent if ev.user_agent is not UNSET else ""
    q = go_quote
    return (
        f"{format_rfc3339nano(ev.request_received_timestamp)} AUDIT: id={q(ev.audit_id)}"
        f" stage={q(ev.stage)} ip={q(ip)} method={q(ev.verb)} user={q(username)}"
        f" groups={q(groups)} as={q(asuser)} asgroups={q(asgroups)}"
        f" user-agent={q(agent)} namespace={q(namespace)} uri={q(ev.request_uri)}"
        f' response="{response}"\n'
    )


# --- parse -----------------------------------------------------------------------

_LEGACY_PREFIX = re.compile(
    rb"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d) AUDIT: "
)
_TS_PREFIX = re.compile(r"[^ ]*")
_FIELDS: Final = (
    "id",
    "stage",
    "ip",
    "method",
    "user",
    "groups",
    "as",
    "asgroups",
    "user-agent",
    "namespace",
    "uri",
)
_RESPONSE = re.compile(r' response="(<deferred>|-?[0-9]+)"')


def is_legacy_line(line: bytes) -> bool:
    """Whether ``line`` looks like a legacy audit line (a timestamp, then `` AUDIT: ``)."""
    return _LEGACY_PREFIX.match(line) is not None


class _Fail(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _found(s: str, pos: int) -> str:
    if pos >= len(s):
        return "end of line"
    rest = s[pos : pos + 20]
    return repr(rest + ("..." if len(s) - pos > 20 else ""))


def _expect(s: str, pos: int, literal: str, what: str) -> int:
    if not s.startswith(literal, pos):
        raise _Fail(f"expected {literal!r} ({what}), found {_found(s, pos)}", pos)
    return pos + len(literal)


def _quoted_list(text: str, field: str, pos: int) -> list[str]:
    """The groups of ``groups=``/``asgroups=``: Go-quoted strings joined by ','."""
    out: list[str] = []
    i = 0
    while True:
        try:
            value, i = _scan_quoted(text, i)
        except _QuoteError as exc:
            raise _Fail(f"{field}: {exc} in the group list {text!r}", pos) from None
        out.append(value)
        if i == len(text):
            return out
        if text[i] != ",":
            raise _Fail(f"{field}: expected ',' between groups in {text!r}", pos)
        i += 1


def _parse(s: str) -> Event:
    m = _TS_PREFIX.match(s)
    assert m is not None
    ts_text = m.group()
    try:
        received = _to_micro(ts_text)
    except (ValueError, OverflowError):
        raise _Fail(
            f"expected an RFC 3339 timestamp (requestReceivedTimestamp), found {_found(s, 0)}", 0
        ) from None
    pos = _expect(s, m.end(), " AUDIT: ", "the legacy audit marker")
    values: dict[str, str] = {}
    starts: dict[str, int] = {}
    for n, name in enumerate(_FIELDS):
        pos = _expect(s, pos, f"{' ' if n else ''}{name}=", f"field {n + 1} of 12")
        starts[name] = pos
        try:
            values[name], pos = _scan_quoted(s, pos)
        except _QuoteError as exc:
            raise _Fail(f"{name}: {exc}", exc.pos) from None
    r = _RESPONSE.match(s, pos)
    if r is None:
        raise _Fail(
            "expected ' response=\"<code>\"' or ' response=\"<deferred>\"', found "
            + _found(s, pos),
            pos,
        )
    if r.end() != len(s):
        raise _Fail(f"expected end of line, found {_found(s, r.end())}", r.end())

    ev = Event(
        audit_id=values["id"],
        stage=values["stage"],
        verb=values["method"],
        request_uri=values["uri"],
        request_received_timestamp=received,
    )
    if values["ip"] != "<unknown>":
        ev.source_ips = [values["ip"]]
    if values["user-agent"]:
        ev.user_agent = values["user-agent"]
    user, groups = values["user"], values["groups"]
    # EventString writes <none> for both when the username is empty; a group list
    # after user="<none>" can only mean a user really called "<none>".
    if user != "<none>" or groups != "<none>":
        ev.user.username = user
    if groups != "<none>":
        ev.user.groups = _quoted_list(groups, "groups", starts["groups"])
    asuser, asgroups = values["as"], values["asgroups"]
    if asuser != "<self>" or asgroups != "<lookup>":
        imp = UserInfo()
        if asuser:
            imp.username = asuser
        if asgroups == "":
            imp.groups = []
        elif asgroups != "<lookup>":
            imp.groups = _quoted_list(asgroups, "asgroups", starts["asgroups"])
        ev.impersonated_user = imp
    if values["namespace"] != "<none>":
        ev.object_ref = ObjectReference(namespace=values["namespace"])
    response = r.group(1)
    if response != "<deferred>":
        code = int(response)
        ev.response_status = Status(code=code) if code else Status()
    return ev


def parse_legacy(line: str, location: Location | None = None) -> Event:
    """Read one legacy line (a trailing ``"\\n"`` or ``"\\r\\n"`` is allowed).

    Raises :class:`DecodeError` saying what was expected at which column; with a
    ``location`` the column goes into it (``source:line:col: ...``).
    """
    s = line[:-1] if line.endswith("\n") else line
    if s.endswith("\r"):
        s = s[:-1]
    try:
        return _parse(s)
    except _Fail as exc:
        col = exc.pos + 1
        if location is not None:
            where = Location(location.source, location.line, col)
            raise DecodeError(f"legacy audit line: {exc.message}", where) from None
        raise DecodeError(f"column {col}: legacy audit line: {exc.message}") from None


__all__ = [
    "ZERO_TIME",
    "format_legacy",
    "format_rfc3339nano",
    "go_quote",
    "go_unquote",
    "is_legacy_line",
    "parse_legacy",
]
