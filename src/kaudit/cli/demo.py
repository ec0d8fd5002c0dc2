"""``kaudit demo``: the whole job on a simulated cluster, one real command at a time.

A production-like cluster's audit log (system components, people using
kubectl, deployers, failures, and a few incidents) is written as the apiserver's log
backend would leave it: a live ``audit.log`` and a rotated, compressed backup. Then
each step runs the real ``kaudit`` command a user would type, printed before its
output: ingest into the embedded store, answer "who deleted that ConfigMap?", look
at the statistics, hunt for the incidents, and verify the store.
"""

from __future__ import annotations

import gzip
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from kaudit.cli import COMMANDS, _module_exists
from kaudit.model import decode_event, to_micros
from kaudit.sources.files import backup_name


@click.command()
@click.option(
    "--store",
    "store",
    envvar="KAUDIT_STORE",
    default="kaudit-data",
    show_default=True,
    help="Store directory to fill (created if missing).",
)
@click.option(
    "--events",
    type=click.IntRange(min=1000),
    default=200_000,
    show_default=True,
    help="How many audit events to simulate.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Simulation seed.")
@click.option(
    "--keep-logs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the simulated audit logs here and keep them (default: a temporary directory).",
)
def demo(store: str, events: int, seed: int, keep_logs: Path | None) -> None:
    """Simulate a cluster's audit log, then collect, question and check it with kaudit."""
    from kaudit.traffic import Traffic

    tmp: tempfile.TemporaryDirectory[str] | None = None
    if keep_logs is None:
        tmp = tempfile.TemporaryDirectory(prefix="kaudit-demo-")
        logs = Path(tmp.name)
    else:
        logs = keep_logs
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        _say(f"Simulating {events:,} audit events of a production-like cluster (seed {seed})")
        traffic = Traffic(seed=seed)
        live = logs / "audit.log"
        lines = traffic.lines(events)
        part = logs / "audit.log.part"
        last = b""
        with gzip.open(part, "wb") as gz:
            for _ in range(events // 2):
                last = next(lines)
                gz.write(last)
        # Named as lumberjack names a backup: the time of the rotation (UTC).
        rotated = to_micros(decode_event(last).stage_timestamp or "1970-01-01T00:00:00Z")
        backup = logs / (backup_name(live.name, datetime.fromtimestamp(rotated / 1e6, UTC)) + ".gz")
        part.rename(backup)
        with open(live, "wb") as f:
            for line in lines:
                f.write(line)
        click.echo(f"  wrote {backup.name} (rotated, gzip) and {live.name} in {logs}")

        _run("ingest", str(live), "--cluster", "demo", "--store", store)

        deleted = [i for i in traffic.incidents if i.kind == "configmap-deleted" and i.complete]
        if deleted:
            d = deleted[0].detail
            _say("Who deleted that ConfigMap?")
            _run(
                "history",
                f"configmap/{d['configmap']}",
                "-n",
                d["namespace"],
                "--writes",
                "--store",
                store,
            )
        _say("Who is busiest, and what fails?")
        _run("stats", "--by", "user,code", "--top", "5", "--store", store)
        _say("Every shell opened in a pod")
        _run("query", "--resource", "pods/exec", "--limit", "5", "--store", store)
        if _module_exists(COMMANDS["hunt"]):
            _say("Hunting for known attack patterns with the built-in rules")
            _run("hunt", "--store", store)
        _say("Proving the store is untouched")
        _run("verify", "--store", store)
        _say(f"Done. The store is in {store}/")
        click.echo(f"  look at it:  kaudit ui --store {store}    (prints a login token)")
        click.echo("  ask it:      kaudit query --help, kaudit sql, kaudit history --help")
    finally:
        if tmp is not None:
            tmp.cleanup()


def _say(text: str) -> None:
    click.echo()
    click.secho(f"== {text}", bold=True)


def _run(*args: str) -> None:
    click.secho("$ kaudit " + " ".join(shlex.quote(a) for a in args), fg="cyan")
    env = dict(os.environ)
    env.setdefault("COLUMNS", "120")
    done = subprocess.run([sys.executable, "-m", "kaudit", *args], env=env, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"`kaudit {args[0]}` exited with {done.returncode}")
