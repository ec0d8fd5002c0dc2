"""Audit log files as the apiserver's log backend leaves them.

* :func:`expand_paths` turns what a user names (files, directories, ``-``) into the
  list of inputs to read, in order. A live log named directly, or found in a named
  directory, brings its rotated backups with it, **oldest first**, then the live file.
  Backups are lumberjack's ``<stem>-<UTC 2006-01-02T15-04-05.000><ext>``, optionally
  ``.gz`` (spec 8.2), e.g. ``audit-2024-05-06T07-08-09.123.log.gz`` for ``audit.log``.
* :func:`open_input` opens one input for reading bytes, decompressing gzip when the
  first two bytes are gzip's magic number (whatever the name says).

Nothing here reads the events themselves; :mod:`kaudit.model.documents` does.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final, cast

from kaudit.errors import InputError

STDIN: Final = "-"
STDIN_NAME: Final = "<stdin>"
GZIP_MAGIC: Final = b"\x1f\x8b"

#: lumberjack's backup time format, Go layout ``2006-01-02T15-04-05.000``.
_BACKUP_TIME: Final = r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3})"
_READ_CHUNK: Final = 1024 * 1024


class ReadError(InputError):
    """An input that cannot be opened or read (missing, unreadable, corrupt gzip)."""


@dataclass(frozen=True, slots=True)
class Input:
    """One thing to read: a file path, or standard input when ``path`` is ``None``.

    ``name`` is how it is named in messages and in the quarantine. ``rotated_at`` is
    the time in a backup's name (``None`` for a live file or stdin).
    """

    name: str
    path: Path | None = None
    rotated_at: datetime | None = None
    size: int | None = None


@dataclass(slots=True)
class Expansion:
    """The inputs to read, in order, and the named paths that could not be used."""

    inputs: list[Input] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)


def backup_pattern(live_name: str) -> re.Pattern[str]:
    """The names lumberjack gives the backups of ``live_name`` (with or without ``.gz``)."""
    stem, ext = _split_ext(live_name)
    return re.compile(re.escape(stem) + "-" + _BACKUP_TIME + re.escape(ext) + r"(\.gz)?")


def backup_name(live_name: str, when: datetime) -> str:
    """The name lumberjack gives a backup of ``live_name`` rotated at ``when`` (UTC)."""
    stem, ext = _split_ext(live_name)
    t = when.astimezone(UTC)
    return f"{stem}-{t.strftime('%Y-%m-%dT%H-%M-%S')}.{t.microsecond // 1000:03d}{ext}"


def parse_backup_time(text: str) -> datetime:
    """The UTC time in a backup name's ``2006-01-02T15-04-05.000`` part."""
    return datetime.strptime(text + "000", "%Y-%m-%dT%H-%M-%S.%f").replace(tzinfo=UTC)


_ANY_BACKUP: Final = re.compile(r"(.*)-" + _BACKUP_TIME + r"((?:\.[^./]*)?)")


def split_backup(name: str) -> tuple[str, datetime] | None:
    """``(live name, rotation time)`` when ``name`` is a lumberjack backup, else ``None``.

    A trailing ``.gz`` is taken as lumberjack's compression (``audit-<time>.gz`` is a
    compressed backup of ``audit``, not a backup of ``audit.gz``).
    """
    base = name[:-3] if name.endswith(".gz") else name
    m = _ANY_BACKUP.fullmatch(base)
    if m is None and base != name:
        m = _ANY_BACKUP.fullmatch(name)
    if m is None:
        return None
    try:
        when = parse_backup_time(m.group(2))
    except ValueError:
        return None
    return m.group(1) + m.group(3), when


def _split_ext(name: str) -> tuple[str, str]:
    # Go's filepath.Ext: the suffix from the last dot of the final element.
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def expand_paths(paths: Sequence[str], *, rotated: bool = True) -> Expansion:
    """Resolve user-named ``paths`` into inputs, in reading order.

    * ``-`` is standard input (at most once).
    * A directory gives every regular, non-hidden file in it (not recursively), grouped
      into rotated sets: each set's backups oldest first, then its live file; sets in
      name order.
    * A file gives itself; with ``rotated``, a live file also brings its backups from the
      same directory, before it.
    * A path that does not exist or is neither a file nor a directory is reported in
      :attr:`Expansion.errors`; the others are still used. Each file is read once
      even when named twice.
    """
    out = Expansion()
    seen: set[Path] = set()

    def add(inp: Input) -> None:
        assert inp.path is not None
        key = inp.path.resolve()
        if key not in seen:
            seen.add(key)
            out.inputs.append(inp)

    stdin_done = False
    for raw in paths:
        if raw == STDIN:
            if not stdin_done:
                out.inputs.append(Input(STDIN_NAME))
                stdin_done = True
            continue
        p = Path(raw)
        try:
            st = p.stat()
        except FileNotFoundError:
            out.errors.append(ReadError(f"{raw}: no such file or directory"))
            continue
        except OSError as exc:
            out.errors.append(ReadError(f"{raw}: cannot read: {exc.strerror or exc}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                for inp in _directory(p):
                    add(inp)
            except OSError as exc:
                out.errors.append(ReadError(f"{raw}: cannot list directory: {exc.strerror or exc}"))
            continue
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
            out.errors.append(ReadError(f"{raw}: expected a file, a directory or '-'"))
            continue
        if rotated and split_backup(p.name) is None and stat.S_ISREG(st.st_mode):
            try:
                for inp in backups_of(p):
                    add(inp)
            except OSError:
                pass  # an unlistable parent: read the named file alone
        add(Input(str(p), p, None, st.st_size if stat.S_ISREG(st.st_mode) else None))
    return out


def backups_of(live: Path) -> list[Input]:
    """The lumberjack backups of the file ``live`` names, oldest first: by listing its
    directory, so also while ``live`` itself is missing (between a rotation's rename
    and the new file). A backup removed meanwhile is left out."""
    parent = live.parent
    pattern = backup_pattern(live.name)
    found: dict[datetime, Input] = {}
    for entry in os.scandir(parent):
        m = pattern.fullmatch(entry.name)
        if m is None or not entry.is_file():
            continue
        try:
            when = parse_backup_time(m.group(1))
        except ValueError:
            continue
        try:
            inp = _input(parent / entry.name, when, entry)
        except OSError:
            continue  # removed (retention) since the listing
        _keep(found, when, inp)
    return [found[k] for k in sorted(found)]


def _keep(found: dict[datetime, Input], when: datetime, inp: Input) -> None:
    # While lumberjack compresses a backup both "x.log" and a partial "x.log.gz"
    # exist; the uncompressed one is complete, so it wins.
    prev = found.get(when)
    if prev is None or prev.name.endswith(".gz"):
        found[when] = inp


def _input(path: Path, when: datetime | None, entry: os.DirEntry[str]) -> Input:
    return Input(str(path), path, when, entry.stat().st_size)


def _directory(d: Path) -> list[Input]:
    live: dict[str, Input | None] = {}
    backups: dict[str, dict[datetime, Input]] = {}
    for entry in sorted(os.scandir(d), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        split = split_backup(entry.name)
        if split is None:
            live[entry.name] = _input(d / entry.name, None, entry)
            continue
        live_name, when = split
        live.setdefault(live_name, None)
        _keep(backups.setdefault(live_name, {}), when, _input(d / entry.name, when, entry))
    ordered: list[Input] = []
    for name in sorted(live):
        sets = backups.get(name, {})
        ordered.extend(sets[k] for k in sorted(sets))
        inp = live[name]
        if inp is not None:
            ordered.append(inp)
    return ordered


# --- opening -----------------------------------------------------------------------


class Opened:
    """An open input: ``stream`` yields the (decompressed) bytes; :meth:`position` is how
    far into the underlying file reading has got, for progress."""

    def __init__(
        self, name: str, raw: IO[bytes], stream: IO[bytes], *, compressed: bool, owned: bool
    ) -> None:
        self.name = name
        self._raw = raw
        self.stream = stream
        self.compressed = compressed
        self._owned = owned

    def position(self) -> int:
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._owned:
            self.stream.close()
            self._raw.close()

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(inp: Input, stdin: IO[bytes] | None = None) -> Opened:
    """Open ``inp`` for reading; gzip is detected by its magic bytes, not by name.

    ``stdin`` replaces :data:`sys.stdin` for an input without a path. Raises
    :class:`ReadError` naming the input when it cannot be opened.
    """
    raw: IO[bytes]
    owned = inp.path is not None
    if inp.path is None:
        raw = stdin if stdin is not None else sys.stdin.buffer
    else:
        try:
            raw = open(inp.path, "rb", buffering=0)  # noqa: SIM115 - closed by Opened
        except FileNotFoundError:
            raise ReadError(f"{inp.name}: no such file or directory") from None
        except OSError as exc:
            raise ReadError(f"{inp.name}: cannot read: {exc.strerror or exc}") from None
    buffered: io.BufferedReader
    if isinstance(raw, io.BufferedReader):
        buffered = raw
    else:
        buffered = io.BufferedReader(raw, _READ_CHUNK)  # type: ignore[arg-type]
    try:
        head = buffered.peek(2)[:2]
    except OSError as exc:
        if owned:
            buffered.close()
        raise ReadError(f"{inp.name}: cannot read: {exc.strerror or exc}") from None
    if head == GZIP_MAGIC:
        # GzipFile buffers by itself; another large buffer on top would lose up to its
        # size of good lines when a truncated file raises mid-fill.
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
        return Opened(inp.name, buffered, stream, compressed=True, owned=owned)
    return Opened(inp.name, buffered, buffered, compressed=False, owned=owned)


def describe_read_error(exc: BaseException) -> str:
    """What went wrong reading an input, for a person (truncated gzip, I/O error...)."""
    if isinstance(exc, EOFError):
        return "compressed file ends early (truncated gzip)"
    if isinstance(exc, gzip.BadGzipFile):
        return f"corrupt gzip data: {exc}"
    if isinstance(exc, zlib.error):
        return f"corrupt gzip data: {exc}"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


#: What reading a (possibly compressed) stream can raise besides our own errors.
READ_ERRORS: Final = (EOFError, OSError, zlib.error)


__all__ = [
    "GZIP_MAGIC",
    "STDIN",
    "STDIN_NAME",
    "Expansion",
    "Input",
    "Opened",
    "ReadError",
    "backup_name",
    "backup_pattern",
    "expand_paths",
    "READ_ERRORS",
    "describe_read_error",
    "open_input",
    "backups_of",
    "parse_backup_time",
    "split_backup",
]
