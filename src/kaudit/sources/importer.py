"""Importing audit log files into the store: what ``kaudit ingest`` does, without the CLI.

:func:`ingest` reads each :class:`~kaudit.sources.files.Input` in order, turns it into
:class:`~kaudit.model.documents.Record` s for the chosen input format, hands them to
the store's writer in batches (without its write-ahead log: an input can be read
again, so a crash costs only a second import, which stores nothing twice) and sends
every line or record that is not an audit event to the quarantine with its reason.
An input that cannot be read is reported in :attr:`IngestStats.errors` and the next
one is read: one bad file never costs the others.

Input formats (``fmt``):

``auto``   everything below: JSON events, EventList documents, JSON arrays, legacy
           lines and every cloud export format.
``json``   the apiserver's JSON only (events, EventList, arrays); legacy lines and
           cloud records are quarantined.
``legacy`` ``--audit-log-format=legacy`` lines only.
``eks`` / ``gke`` / ``aks``
           that cloud's export records, plus plain JSON audit events.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Final, Protocol, cast

import pyarrow as pa

from kaudit.errors import DecodeError, Location
from kaudit.model import legacy
from kaudit.model.codec import decode_event, encode_event, gc_paused
from kaudit.model.documents import Adapter, Record, iter_records, parse_line
from kaudit.sources import cloud
from kaudit.sources.files import (
    READ_ERRORS,
    Input,
    Opened,
    ReadError,
    describe_read_error,
    open_input,
)
from kaudit.sources.quarantine import Quarantine
from kaudit.store.dedup import keys_of
from kaudit.store.flatten import flatten
from kaudit.store.scan import Scanned, scan_buffer

INPUT_FORMATS: Final = ("auto", "json", "legacy", *cloud.FORMATS)
DEFAULT_BATCH_SIZE: Final = 10_000
#: Bytes read at a time by the JSON Lines path (lines are split in bulk).
READ_CHUNK_BYTES: Final = 4 * 1024 * 1024


class AppendResultLike(Protocol):
    @property
    def received(self) -> int: ...
    @property
    def stored(self) -> int: ...
    @property
    def duplicates(self) -> int: ...


class Appender(Protocol):
    """What :func:`ingest` needs of a store writer: rows of the flat schema."""

    def append_table(
        self, table: pa.Table, *, durable: bool = True, keys: list[str] | None = None
    ) -> AppendResultLike: ...


@dataclass(slots=True)
class IngestStats:
    """What an ingest did. ``errors`` are the inputs that could not be (fully) read."""

    inputs: list[str] = field(default_factory=list)
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: Events whose secret material was replaced before storing (``transform``).
    redacted: int = 0
    errors: list[ReadError] = field(default_factory=list)
    elapsed_secs: float = 0.0

    @property
    def files(self) -> int:
        return len(self.inputs)

    @property
    def events_per_sec(self) -> float:
        return self.read / self.elapsed_secs if self.elapsed_secs > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    """Handed to the progress callback after each batch and each input."""

    input: str
    bytes_done: int
    bytes_total: int | None
    events: int


ProgressCallback = Callable[[Progress], None]
#: A transform applied to every batch before it is stored (see :mod:`kaudit.transforms`).
Transform = Callable[[list[Record]], list[Record]]


def ingest(
    inputs: Sequence[Input],
    writer: Appender,
    quarantine: Quarantine,
    *,
    cluster: str = "",
    fmt: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    stdin: IO[bytes] | None = None,
    transform: Transform | None = None,
) -> IngestStats:
    """Read ``inputs`` in order into ``writer`` (see the module docstring).

    ``transform`` maps each batch before it is stored: ``kaudit ingest`` redacts
    secret material with it (:class:`kaudit.transforms.redact.Redactor`), and the
    stats count the events it changed as ``redacted``.
    """
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {INPUT_FORMATS}")
    stats = IngestStats()
    start = time.perf_counter()
    known = [i.size for i in inputs]
    total = sum(s for s in known if s is not None) if all(s is not None for s in known) else None
    q_start = quarantine.count

    def send(batch: list[Record], scanned: list[Scanned]) -> None:
        quarantine.flush()  # bad lines are durable no later than the good ones
        tables = [s.table for s in scanned if s.table is not None]
        read = len(batch) + sum(t.num_rows for t in tables)
        if transform is not None:
            out = transform(batch)
            stats.redacted += sum(1 for a, b in zip(batch, out, strict=True) if a is not b)
            batch = out
        rows = [flatten(batch, cluster)] if batch else []
        rows.extend(_with_cluster(t, cluster) for t in tables)
        table = rows[0] if len(rows) == 1 else pa.concat_tables(rows)
        # The dedup keys the scanner computed (it hashes the lines with the GIL released).
        keys: list[str] | None = None
        if scanned and all(s.keys is not None for s in scanned):
            keys = keys_of(rows[0]) if batch else []
            for s in scanned:
                keys.extend(s.keys or ())
        # The input can be read again: no write-ahead log (the rows are stored by the
        # writer's next flush; a crash loses them and a second import stores them).
        res = writer.append_table(table, durable=False, keys=keys)
        stats.read += read
        stats.stored += res.stored
        stats.duplicates += res.duplicates

    # The native scanner reads plain apiserver lines straight into rows; a transform
    # then sees only the other records, so only one that leaves events without
    # bodies unchanged (``bodies_only``, as the redactor does) allows it.
    scan = transform is None or getattr(transform, "bodies_only", False) is True

    # Parquet segments are written on a background thread while the next batches
    # are decoded (a store Writer's option; restored when done).
    background = getattr(writer, "flush_in_background", None)
    if background is False:
        setattr(writer, "flush_in_background", True)  # noqa: B010 - not part of Appender
    try:
        _ingest_inputs(
            inputs, stdin, fmt, quarantine, batch_size, send, progress, stats, total, scan
        )
    finally:
        if background is False:
            setattr(writer, "flush_in_background", False)  # noqa: B010
    quarantine.flush()
    stats.quarantined = quarantine.count - q_start
    stats.elapsed_secs = time.perf_counter() - start
    return stats


def _ingest_inputs(
    inputs: Sequence[Input],
    stdin: IO[bytes] | None,
    fmt: str,
    quarantine: Quarantine,
    batch_size: int,
    send: Callable[[list[Record], list[Scanned]], None],
    progress: ProgressCallback | None,
    stats: IngestStats,
    total: int | None,
    scan: bool,
) -> None:
    done_before = 0
    for inp in inputs:
        try:
            opened = open_input(inp, stdin)
        except ReadError as err:
            stats.errors.append(err)
            continue
        stats.inputs.append(inp.name)
        with opened:
            items = _records(opened, fmt, quarantine, scan)
            carry: Scanned | None = None  # rows of a chunk beyond the last batch
            while True:
                batch: list[Record] = []
                tables: list[Scanned] = []
                got = 0
                failed = ended = False
                # A batch is decoded and stored with the cyclic GC paused: it would
                # otherwise rescan the batch's live events over and over.
                with gc_paused():
                    try:
                        if carry is not None:
                            head, carry = _split(carry, batch_size)
                            tables.append(head)
                            got = _rows(head)
                        while got < batch_size:  # what came before an exception is kept
                            item = next(items, None)
                            if item is None:
                                ended = carry is None
                                break
                            if isinstance(item, Record):
                                batch.append(item)
                                got += 1
                            elif item.table is not None:
                                head, carry = _split(item, batch_size - got)
                                tables.append(head)
                                got += _rows(head)
                    except READ_ERRORS as exc:
                        # Keep what was read before the damage; report the input.
                        failed = True
                        stats.errors.append(
                            ReadError(f"{inp.name}: cannot read: {describe_read_error(exc)}")
                        )
                    if got:
                        send(batch, tables)
                    del batch, tables  # before the collector is back on
                if got and progress is not None:
                    position = done_before + opened.position()
                    progress(Progress(inp.name, position, total, stats.read))
                if failed or ended:
                    break
        done_before += inp.size or 0
        if progress is not None:
            progress(Progress(inp.name, done_before, total, stats.read))


def _records(
    opened: Opened, fmt: str, quarantine: Quarantine, scan: bool
) -> Iterator[Record | Scanned]:
    """The records of one open input in format ``fmt``; bad ones go to ``quarantine``.

    With ``scan``, tables of rows read by the native scanner come too (:func:`_json_lines`).
    """
    on_error = quarantine.add_error
    if fmt == "legacy":
        return _legacy_records(opened.stream, opened.name, on_error)
    adapters: Sequence[Adapter] = ()
    if fmt == "auto":
        adapters = (cloud.adapter(None, on_error),)
    elif fmt != "json":
        adapters = (cloud.adapter([fmt], on_error),)
    return _json_lines(
        opened.stream, opened.name, on_error, adapters, no_legacy=fmt == "json", scan=scan
    )


def _rows(s: Scanned) -> int:
    return s.table.num_rows if s.table is not None else 0


def _split(s: Scanned, n: int) -> tuple[Scanned, Scanned | None]:
    """The first ``n`` rows of ``s``, and the rest (None when there is none)."""
    if _rows(s) <= n or s.table is None:
        return s, None
    keys = s.keys

    def part(a: int, b: int | None) -> Scanned:
        assert s.table is not None
        t = s.table.slice(a, None if b is None else b - a)
        return Scanned(t, None if keys is None else keys[a:b], [], 0, 0)

    return part(0, n), part(n, None)


def _with_cluster(table: pa.Table, cluster: str) -> pa.Table:
    """``table`` with every row's ``cluster`` set to ``cluster``."""
    if not cluster:
        return table
    i = table.schema.get_field_index("cluster")
    return table.set_column(
        i, table.schema.field(i), pa.repeat(pa.scalar(cluster, pa.string()), table.num_rows)
    )


def _json_lines(
    stream: IO[bytes],
    source: str,
    on_error: Callable[[DecodeError, bytes], None],
    adapters: Sequence[Adapter],
    *,
    no_legacy: bool,
    chunk_bytes: int = READ_CHUNK_BYTES,
    scan: bool = False,
) -> Iterator[Record | Scanned]:
    """The records of ``stream``, read in large chunks and split into lines in bulk.

    Gives exactly what :func:`~kaudit.model.documents.iter_records` gives (it is its
    fast path for JSON Lines): a line that is not a plain audit event (a legacy line,
    an EventList, a cloud record, a bad line) goes through the same per-line parser,
    and a pretty-printed or array document is handed to ``iter_records`` whole. Read
    errors come after the records of every complete line read before them.

    With ``scan``, the lines the native scanner reads (:mod:`kaudit.store.scan`) come
    as :class:`~kaudit.store.scan.Scanned` rows (``cluster`` empty), one per chunk,
    after the records of that chunk's other lines: the same rows as flattening
    their records.
    """

    def legacy_line(line: bytes, lineno: int) -> bool:
        if no_legacy and line[:1].isdigit() and legacy.is_legacy_line(line):
            on_error(
                DecodeError(
                    "a legacy audit line, but --format json reads only JSON "
                    "(use --format legacy or auto)",
                    Location(source, lineno),
                ),
                line.rstrip(b"\r"),
            )
            return True
        return False

    def one_line(line: bytes, lineno: int) -> Iterator[Record]:
        data = line.rstrip(b"\r\n")
        if (
            data[:1] == b"{"
            and not data.startswith(b'{"kind":"EventList"')
            and b'"EventList"' not in data[:200]
        ):
            try:
                ev = decode_event(data)
            except DecodeError:
                pass  # reported (or adapted) by the general parser below
            else:
                yield Record(ev, data, source, lineno)
                return
        yield from parse_line(line, source, lineno, on_error, adapters)

    read = cast(Callable[[int], bytes], getattr(stream, "read1", stream.read))
    rest = b""  # the start of a line whose end has not been read yet
    lineno = 0
    first = True
    while True:
        chunk, failure = _read_chunk(read, chunk_bytes)
        final = not chunk
        if final and failure is not None:
            raise failure
        buf = rest + chunk if rest else chunk if chunk else rest
        pos = 0
        # The first lines one by one, until the first that is not blank tells whether
        # this is JSON Lines or a document to read whole.
        while first and pos < len(buf):
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if not final:
                    break
                nl = len(buf)
            line = buf[pos:nl]
            lineno += 1
            if legacy_line(line, lineno):
                pos = min(nl + 1, len(buf))
                continue
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            head = line.strip()
            if head:
                first = False
                if head.startswith(b"[") or not head.endswith((b"}", b"]")) and head[:1] in b"{[":
                    # A pretty-printed or bare-array document: the general reader, from
                    # this line on (the blank lines before it keep the numbering).
                    prefix = b"\n" * (lineno - 1) + buf[pos:]
                    docs: IO[bytes] = cast(IO[bytes], _Replay(prefix, stream, failure))
                    if no_legacy:
                        docs = cast(IO[bytes], _NoLegacy(docs, source, on_error))
                    yield from iter_records(docs, source, on_error, adapters)
                    return
                yield from one_line(line, lineno)
            pos = min(nl + 1, len(buf))
        if not first:
            got = scan_buffer(buf, pos, final=final, native=scan)
            # The other lines first: a bad one is quarantined before the rows after it
            # can be stored.
            for j, start, stop in got.rejected:
                line = buf[start:stop]
                if not legacy_line(line, lineno + j + 1):
                    yield from one_line(line, lineno + j + 1)
            if got.table is not None:
                yield got
            lineno += got.lines
            pos = got.end
        rest = buf[pos:] if pos < len(buf) else b""
        if failure is not None:
            raise failure
        if final:
            return


def _read_chunk(read: Callable[[int], bytes], size: int) -> tuple[bytes, BaseException | None]:
    """Up to ``size`` bytes (less at the end), and the error that stopped the reading.

    Reads with ``read1`` where the stream has it, so that a damaged input (a
    truncated gzip) costs only the bytes of its last small read.
    """
    parts: list[bytes] = []
    got = 0
    while got < size:
        try:
            part = read(size - got)
        except READ_ERRORS as exc:
            return b"".join(parts), exc
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts), None


def _legacy_records(
    stream: IO[bytes], source: str, on_error: Callable[[DecodeError, bytes], None]
) -> Iterator[Record]:
    for lineno, line in enumerate(stream, 1):
        data = line.rstrip(b"\r\n")
        if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if not data.strip():
            continue
        loc = Location(source, lineno)
        if not legacy.is_legacy_line(data):
            on_error(
                DecodeError(
                    "expected a legacy audit line (<time> AUDIT: id=...) "
                    "because of --format legacy",
                    loc,
                ),
                data,
            )
            continue
        try:
            ev = legacy.parse_legacy(data.decode("utf-8", "surrogateescape"), loc)
        except DecodeError as err:
            on_error(err, data)
            continue
        yield Record(ev, encode_event(ev)[:-1], source, lineno)


class _Replay:
    """``prefix``, then the rest of ``stream`` (or the read error that stopped it).

    Just what :func:`~kaudit.model.documents.iter_records` uses: line iteration and
    ``read``.
    """

    def __init__(self, prefix: bytes, stream: IO[bytes], failure: BaseException | None) -> None:
        self._buf = io.BytesIO(prefix)
        self._stream = stream
        self._failure = failure

    def _more(self, readline: bool, n: int = -1) -> bytes:
        if self._failure is not None:
            raise self._failure
        return self._stream.readline() if readline else self._stream.read(n)

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> bytes:
        line = self._buf.readline()
        if not line.endswith(b"\n"):
            line += self._more(True)
        if not line:
            raise StopIteration
        return line

    def read(self, n: int = -1) -> bytes:
        head = self._buf.read(n)
        if n < 0:
            return head + self._more(False)
        if len(head) < n:
            head += self._more(False, n - len(head))
        return head


class _NoLegacy:
    """A byte stream that holds back legacy lines (reporting them) for ``--format json``.

    Implements just what :func:`~kaudit.model.documents.iter_records` uses: line
    iteration and ``read``.
    """

    def __init__(
        self, stream: IO[bytes], source: str, on_error: Callable[[DecodeError, bytes], None]
    ) -> None:
        self._stream = stream
        self._source = source
        self._on_error = on_error
        self._lineno = 0

    def __iter__(self) -> _NoLegacy:
        return self

    def __next__(self) -> bytes:
        while True:
            line = next(self._stream)
            self._lineno += 1
            if line[:1].isdigit() and legacy.is_legacy_line(line):
                self._on_error(
                    DecodeError(
                        "a legacy audit line, but --format json reads only JSON "
                        "(use --format legacy or auto)",
                        Location(self._source, self._lineno),
                    ),
                    line.rstrip(b"\r\n"),
                )
                # Keep line numbers right: hand the reader an empty line instead.
                return b"\n"
            return line

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "INPUT_FORMATS",
    "Appender",
    "IngestStats",
    "Progress",
    "Transform",
    "ingest",
]
