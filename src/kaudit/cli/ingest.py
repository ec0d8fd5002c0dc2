"""``kaudit ingest``: read audit log files (and cloud exports) into the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from kaudit.cli import report_error
from kaudit.sources import importer
from kaudit.sources.files import expand_paths
from kaudit.sources.importer import DEFAULT_BATCH_SIZE, INPUT_FORMATS, IngestStats, Progress
from kaudit.sources.quarantine import Quarantine, default_path

EXIT_OK = 0
EXIT_ERROR = 1


@click.command(
    "ingest",
    epilog="""\b
Exit status:
  0  every input was read; lines that are not audit events (if any) were
     quarantined and the summary says how many
  1  an input could not be read (it is named; the others were still ingested),
     nothing but bad lines was found, or the store failed
  2  usage error""",
)
@click.argument("paths", nargs=-1, required=True, metavar="PATH... | -")
@click.option(
    "--store",
    "store_path",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KAUDIT_STORE",
    help="Store directory (default: $KAUDIT_STORE, else ./kaudit-data).",
)
@click.option("--cluster", default="", help="Label every event with this cluster name.")
@click.option(
    "--quarantine",
    "quarantine_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where lines that are not audit events go, as JSON Lines "
    "(default: <store>/quarantine/<UTC time>.jsonl, created only when needed).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(INPUT_FORMATS),
    default="auto",
    show_default=True,
    help="Input format: auto detects each line; json/legacy are the apiserver's log "
    "formats; eks/gke/aks are cloud exports.",
)
@click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Summary format (json: one machine-readable object on stdout).",
)
@click.option(
    "--rotated/--no-rotated",
    default=True,
    show_default=True,
    help="With a live log file, also read its rotated backups (oldest first).",
)
@click.option(
    "--redact/--no-redact",
    default=True,
    show_default=True,
    envvar="KAUDIT_REDACT",
    help="Replace secret material before storing, as kaudit serve does: Secret "
    "data/stringData and their last-applied-configuration, TokenRequest and "
    "TokenReview tokens, PEM private keys. Redacted events carry the annotation "
    "kaudit.io/redacted.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Events per batch handed to the store.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar (default: when stderr is a terminal).",
)
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[str, ...],
    store_path: Path | None,
    cluster: str,
    quarantine_path: Path | None,
    fmt: str,
    output: str,
    rotated: bool,
    redact: bool,
    batch_size: int,
    progress: bool | None,
) -> None:
    """Read audit logs into the store.

    PATH is an audit log file (JSON Lines, legacy lines, EventList documents or JSON
    arrays; gzip is detected by content), a directory of them, or - for standard
    input. A live log such as audit.log brings its rotated backups
    (audit-2024-05-06T07-08-09.123.log[.gz]) with it, read oldest first. Events
    already in the store (same auditID, stage and bytes) are not stored twice.
    Secret material is redacted unless --no-redact is given.
    """
    from kaudit.store import open_store

    expansion = expand_paths(paths, rotated=rotated)
    if not expansion.inputs:
        # Nothing to read: say why, and do not create a store for nothing.
        for err in expansion.errors:
            report_error(err)
        ctx.exit(EXIT_ERROR)
    transform = None
    if redact:
        from kaudit.transforms.redact import Redactor

        transform = Redactor()
    store = open_store(store_path)
    q_path = quarantine_path or default_path(store.path)
    show_progress = progress if progress is not None else _is_tty(sys.stderr)

    started = time.perf_counter()
    with Quarantine(q_path) as quarantine, store.writer() as writer:
        bar = _ProgressBar() if show_progress else None
        try:
            stats = importer.ingest(
                expansion.inputs,
                writer,
                quarantine,
                cluster=cluster,
                fmt=fmt,
                batch_size=batch_size,
                progress=bar.update if bar is not None else None,
                transform=transform,
            )
        finally:
            if bar is not None:
                bar.stop()
    # Until the writer has closed: every event is in a segment then.
    stats.elapsed_secs = time.perf_counter() - started
    stats.errors[:0] = expansion.errors

    written = q_path if stats.quarantined else None
    if output == "json":
        click.echo(_json_summary(stats, written))
    else:
        _text_summary(stats, written, _is_tty(sys.stdout))
    for err in stats.errors:
        report_error(err)
    if stats.errors:
        ctx.exit(EXIT_ERROR)
    if stats.read == 0 and stats.quarantined:
        click.echo(
            f"error: no audit events found; {stats.quarantined} lines or records "
            f"quarantined in {q_path}",
            err=True,
        )
        ctx.exit(EXIT_ERROR)


def _is_tty(stream: Any) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False


def summary_dict(stats: IngestStats, quarantine_file: Path | None) -> dict[str, Any]:
    """The summary as data (the ``--output json`` object)."""
    return {
        "files": stats.files,
        "inputs": stats.inputs,
        "events_read": stats.read,
        "stored": stats.stored,
        "duplicates": stats.duplicates,
        "quarantined": stats.quarantined,
        "redacted": stats.redacted,
        "quarantine_file": str(quarantine_file) if quarantine_file else None,
        "errors": [str(e) for e in stats.errors],
        "elapsed_secs": round(stats.elapsed_secs, 3),
        "events_per_sec": round(stats.events_per_sec),
    }


def _json_summary(stats: IngestStats, quarantine_file: Path | None) -> str:
    return msgspec.json.encode(summary_dict(stats, quarantine_file)).decode()


def _text_summary(stats: IngestStats, quarantine_file: Path | None, tty: bool) -> None:
    q = str(stats.quarantined)
    if quarantine_file is not None:
        q += f" (not audit events; written to {quarantine_file})"
    rows = [
        ("files", str(stats.files)),
        ("events read", str(stats.read)),
        ("stored", str(stats.stored)),
        ("duplicates", str(stats.duplicates)),
        ("quarantined", q),
        ("redacted", str(stats.redacted)),
        ("elapsed", f"{stats.elapsed_secs:.2f} s"),
        ("events/s", f"{stats.events_per_sec:.0f}"),
    ]
    if stats.errors:
        rows.append(("unreadable", str(len(stats.errors))))
    for key, value in rows:
        label = f"{key}:"
        if tty:
            click.echo(click.style(f"{label:<13}", bold=True) + value)
        else:
            click.echo(f"{label:<13}{value}")


class _ProgressBar:
    """A rich progress bar on stderr: bytes read of the inputs, events and events/s."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self._progress = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[events]} events"),
            TextColumn("{task.fields[rate]} events/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None
        self._progress.start()

    def update(self, p: Progress) -> None:
        if self._task is None:
            self._task = self._progress.add_task("ingest", total=p.bytes_total, events=0, rate="0")
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f"{p.events / elapsed:,.0f}" if elapsed > 0 else "-"
        name = p.input if len(p.input) <= 30 else "..." + p.input[-27:]
        self._progress.update(
            self._task,
            completed=p.bytes_done,
            description=name,
            events=f"{p.events:,}",
            rate=rate,
        )

    def stop(self) -> None:
        self._progress.stop()
