"""``kaudit convert``: audit events from one format to another.

Reads JSON Lines (the log backend), ``EventList`` documents (webhook bodies, one per
line or pretty-printed), JSON arrays and legacy text lines, in any mix, from a file
or stdin; ``.gz`` input is decompressed whatever its name. Writes JSON Lines exactly
as the apiserver's log backend does (``--to json``) or its legacy text lines
(``--to legacy``).

A record that cannot be read is reported on stderr as ``source:line: reason`` and
skipped; the rest is converted, and the exit status is 1.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, cast

import click

from kaudit.errors import DecodeError
from kaudit.model.codec import encode_event
from kaudit.model.documents import iter_records
from kaudit.model.legacy import format_legacy
from kaudit.model.types import Event

_GZIP_MAGIC = b"\x1f\x8b"

Encoder = Callable[[Event], bytes]

_ENCODERS: dict[str, Encoder] = {
    "json": encode_event,
    "legacy": lambda ev: format_legacy(ev).encode("utf-8"),
}


def _read_events(
    stream: IO[bytes], source: str, on_error: Callable[[DecodeError], None]
) -> Iterator[Event]:
    """Every event in ``stream``, in order; each bad record goes to ``on_error``.

    The one place that knows how input is read: :func:`kaudit.model.documents.iter_records`.
    """
    for record in iter_records(stream, source, lambda err, _raw: on_error(err)):
        yield record.event


def _maybe_gunzip(stream: IO[bytes]) -> IO[bytes]:
    """``stream``, decompressed when it starts with the gzip magic number."""
    peek = getattr(stream, "peek", None)
    if peek is None:  # e.g. a BytesIO
        stream = cast(IO[bytes], io.BufferedReader(cast(io.RawIOBase, stream)))
        peek = getattr(stream, "peek")  # noqa: B009
    head = bytes(peek(2)[:2])
    if head == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@click.command()
@click.option(
    "--to",
    "to",
    type=click.Choice(sorted(_ENCODERS)),
    required=True,
    help="Output format: json (the log backend's JSON Lines) or legacy (its text lines).",
)
@click.argument(
    "input_path",
    metavar="[INPUT]",
    default="-",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@click.option(
    "-o",
    "--output",
    default="-",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    help="Write here instead of stdout ('.gz' compresses).",
)
@click.pass_context
def convert(ctx: click.Context, to: str, input_path: str, output: str) -> None:
    """Convert audit events between the JSON and legacy formats.

    INPUT (default: stdin) may hold JSON Lines, EventList documents, JSON arrays or
    legacy lines, plain or gzip-compressed.
    """
    encode = _ENCODERS[to]
    source = "<stdin>" if input_path == "-" else input_path
    bad = 0

    def report(err: DecodeError) -> None:
        nonlocal bad
        bad += 1
        click.echo(str(err), err=True)

    raw_in: IO[bytes] = sys.stdin.buffer if input_path == "-" else open(input_path, "rb")
    out: IO[bytes]
    if output == "-":
        out = sys.stdout.buffer
    elif output.endswith(".gz"):
        out = cast(IO[bytes], gzip.open(output, "wb"))
    else:
        out = open(output, "wb")
    try:
        stream = _maybe_gunzip(raw_in)
        try:
            for ev in _read_events(stream, source, report):
                out.write(encode(ev))
        except BrokenPipeError:  # `kaudit convert ... | head`: the reader has gone
            _silence_stdout()
            return
        except (OSError, EOFError) as exc:  # a corrupt or truncated .gz
            bad += 1
            click.echo(f"{source}: cannot read: {exc}", err=True)
    finally:
        try:
            out.flush()
        except BrokenPipeError:
            _silence_stdout()
        if output != "-":
            out.close()
        if input_path != "-":
            raw_in.close()
    if bad:
        click.echo(f"error: {bad} bad record(s) skipped", err=True)
        ctx.exit(1)


__all__ = ["convert"]
