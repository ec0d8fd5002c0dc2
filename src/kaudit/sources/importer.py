"""Importing audit log files into the store: what ``kaudit ingest`` does, without the CLI.

:func:`ingest` reads each :class:`~kaudit.sources.files.Input` in order, turns it into
:class:`~kaudit.model.documents.Record` s for the chosen input format, hands them to
the store's writer in batches (each batch durable when ``append`` returns) and sends
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

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Final, Protocol, cast

from kaudit.errors import DecodeError, Location
from kaudit.model import legacy
from kaudit.model.codec import encode_event
from kaudit.model.documents import Adapter, Record, iter_records
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

INPUT_FORMATS: Final = ("auto", "json", "legacy", *cloud.FORMATS)
DEFAULT_BATCH_SIZE: Final = 10_000


class AppendResultLike(Protocol):
    @property
    def received(self) -> int: ...
    @property
    def stored(self) -> int: ...
    @property
    def duplicates(self) -> int: ...


class Appender(Protocol):
    """What :func:`ingest` needs of a store writer."""

    def append(self, records: Iterable[Record], *, cluster: str = "") -> AppendResultLike: ...


@dataclass(slots=True)
class IngestStats:
    """What an ingest did. ``errors`` are the inputs that could not be (fully) read."""

    inputs: list[str] = field(default_factory=list)
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
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
) -> IngestStats:
    """Read ``inputs`` in order into ``writer`` (see the module docstring)."""
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {INPUT_FORMATS}")
    stats = IngestStats()
    start = time.perf_counter()
    known = [i.size for i in inputs]
    total = sum(s for s in known if s is not None) if all(s is not None for s in known) else None
    done_before = 0
    q_start = quarantine.count

    def send(batch: list[Record]) -> None:
        quarantine.flush()  # bad lines are durable no later than the good ones
        res = writer.append(batch, cluster=cluster)
        stats.read += len(batch)
        stats.stored += res.stored
        stats.duplicates += res.duplicates

    for inp in inputs:
        try:
            opened = open_input(inp, stdin)
        except ReadError as err:
            stats.errors.append(err)
            continue
        stats.inputs.append(inp.name)
        with opened:
            records = _records(opened, fmt, quarantine)
            while True:
                batch: list[Record] = []
                failed = False
                try:
                    # extend() keeps the items it got before an exception.
                    batch.extend(islice(records, batch_size))
                except READ_ERRORS as exc:
                    # Keep what was read before the damage; report the input.
                    failed = True
                    stats.errors.append(
                        ReadError(f"{inp.name}: cannot read: {describe_read_error(exc)}")
                    )
                if batch:
                    send(batch)
                    if progress is not None:
                        position = done_before + opened.position()
                        progress(Progress(inp.name, position, total, stats.read))
                if failed or len(batch) < batch_size:
                    break
        done_before += inp.size or 0
        if progress is not None:
            progress(Progress(inp.name, done_before, total, stats.read))
    quarantine.flush()
    stats.quarantined = quarantine.count - q_start
    stats.elapsed_secs = time.perf_counter() - start
    return stats


def _records(opened: Opened, fmt: str, quarantine: Quarantine) -> Iterator[Record]:
    """The records of one open input in format ``fmt``; bad ones go to ``quarantine``."""
    on_error = quarantine.add_error
    if fmt == "legacy":
        return _legacy_records(opened.stream, opened.name, on_error)
    adapters: Sequence[Adapter] = ()
    stream = opened.stream
    if fmt == "auto":
        adapters = (cloud.adapter(None, on_error),)
    elif fmt == "json":
        stream = cast(IO[bytes], _NoLegacy(stream, opened.name, on_error))
    else:
        adapters = (cloud.adapter([fmt], on_error),)
    return iter_records(stream, opened.name, on_error, adapters)


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
    "ingest",
]
