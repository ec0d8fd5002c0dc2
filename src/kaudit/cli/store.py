"""``kaudit verify``, ``kaudit retention`` and ``kaudit compact``: looking after the store."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kaudit.errors import InputError

_STORE_HELP = "Store directory (default: $KAUDIT_STORE or ./kaudit-data)."


def _store_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--store",
        "store_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=_STORE_HELP,
    )(f)


@click.command()
@_store_option
def verify(store_dir: Path | None) -> None:
    """Check the manifest's hash chain and every segment's SHA-256.

    Exits 0 with a summary when everything matches; otherwise names every altered,
    missing or unexpected segment and any break in the chain, and exits 1.
    """
    from kaudit.store import open_store
    from kaudit.store.verify import verify as run_verify

    store = open_store(store_dir, create=False)
    report = run_verify(store.path)
    click.echo(
        f"ok: {store.path}: {report.entries} manifest entries, chain intact; "
        f"{report.segments} segments, {report.rows:,} events, {report.bytes:,} bytes, "
        f"all SHA-256 match; head {report.last_hash}"
    )


@click.command()
@_store_option
@click.option(
    "--keep",
    required=True,
    help="How much to keep, e.g. 365d, 12w, 48h. Whole older partitions are deleted.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
def retention(store_dir: Path | None, keep: str, dry_run: bool) -> None:
    """Delete partitions older than --keep and record it in the manifest."""
    from kaudit.store import open_store
    from kaudit.store.manifest import load
    from kaudit.store.retention import apply_retention, expired, parse_duration_secs

    try:
        secs = parse_duration_secs(keep)
    except ValueError as exc:
        raise InputError(f"--keep: {exc}") from None
    store = open_store(store_dir, create=False)
    cutoff = time.time() - secs
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cutoff))
    if dry_run:
        result = expired(load(store.path), cutoff)
        verb = "would delete"
    else:
        with store.writer() as w:
            result = apply_retention(store.path, w.manifest, cutoff)
        verb = "deleted"
    for part in result.partitions:
        click.echo(f"{verb} {part}")
    click.echo(
        f"{verb} {len(result.partitions)} partitions ({result.segments} segments, "
        f"{result.rows:,} events, {result.bytes:,} bytes) older than {when}"
    )


@click.command()
@_store_option
def compact(store_dir: Path | None) -> None:
    """Merge the small segments of each partition into one."""
    from kaudit.store import open_store
    from kaudit.store.compact import compact as run_compact

    store = open_store(store_dir, create=False)
    with store.writer() as w:
        w.flush()
        result = run_compact(store.path, w.manifest, store.settings)
    click.echo(
        f"compacted {result.partitions} partitions: {result.merged_segments} segments "
        f"merged into {result.new_segments}"
    )
