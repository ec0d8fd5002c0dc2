"""Query benchmark: kaudit over its store vs jq and DuckDB over the raw JSON log.

    python bench/bench_query.py [--events 1000000] [--copies 10] [--repeat 3] [--keep DIR]

Generates a JSON audit log with ``kaudit.traffic`` (streamed to ``bench/.cache``,
reused on later runs); ``--copies K`` makes a log K times as long from it (10M events
from 1M in a minute or two instead of an hour of generation): copy k's ``auditID``
values get their 15th character (a UUID's version digit) turned k hex digits on, so
they stay UUIDs that DuckDB's type detection reads as such, and its two audit
timestamps move k spans later; byte for byte otherwise (each line stays valid JSON).
Ingests the log with ``kaudit ingest`` (timed, for reference), then times four
questions, each as a whole process (wall time, best of ``--repeat``):

  (a) user + verb lookup        (b) who deleted a named object
  (c) counts by response code   (d) top 10 users in a time window

answered by ``kaudit`` (query / stats over the store), by ``jq`` over the JSON log,
and by DuckDB reading the JSON log (``read_json_auto``). Prints a table of times and
ratios. Asserts nothing about time. ``jq`` must be on PATH (scripts/apt-packages.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE_DIR, machine_line

KAUDIT = [sys.executable, "-m", "kaudit"]


def log_file(n: int, seed: int) -> Path:
    """The JSON log of ``n`` generated events (cached, written as it is generated)."""
    from kaudit.traffic import generate_lines

    path = CACHE_DIR / f"traffic-seed{seed}-{n}.jsonl"
    if path.exists():
        print(f"log: {path} ({path.stat().st_size / 1e6:,.0f} MB, cached)")
        return path
    CACHE_DIR.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    t0 = time.perf_counter()
    with tmp.open("wb") as f:
        for line in generate_lines(n, seed=seed):
            f.write(line)
    tmp.replace(path)
    dt = time.perf_counter() - t0
    print(f"log: generated {n:,} events ({path.stat().st_size / 1e6:,.0f} MB) in {dt:.0f} s")
    return path


_ID = b'"auditID":"'
_STAMPS = (b'"requestReceivedTimestamp":"', b'"stageTimestamp":"')


def _stamp(line: bytes, key: bytes) -> str | None:
    i = line.rfind(key)
    if i < 0:
        return None
    i += len(key)
    return line[i : line.index(b'"', i)].decode()


_HEX = b"0123456789abcdef"


def _other_id(line: bytes, start: int, k: int) -> bytes:
    """``line`` with the auditID starting at ``start`` made unique to copy ``k``: a UUID's
    15th character turned ``k`` hex digits on (anything else gets the suffix ``-k``)."""
    end = line.index(b'"', start)
    pos = start + 14
    if end - start == 36 and line[pos : pos + 1].lower() in [bytes([c]) for c in _HEX]:
        digit = _HEX[(_HEX.index(line[pos : pos + 1].lower()) + k) % 16]
        return line[:pos] + bytes([digit]) + line[pos + 1 :]
    return line[:end] + f"-{k}".encode() + line[end:]


def replicated_log(base: Path, copies: int) -> Path:
    """``copies`` copies of the log ``base`` in one file (cached): unique auditIDs,
    timestamps shifted by whole minutes past the span of ``base`` for each copy."""
    from datetime import UTC, datetime, timedelta

    if copies > 16:
        raise SystemExit("--copies: at most 16 (one per hex digit)")
    path = base.with_name(f"{base.stem}-x{copies}u.jsonl")
    if path.exists():
        print(f"log: {path} ({path.stat().st_size / 1e6:,.0f} MB, cached)")
        return path
    with base.open("rb") as f:
        first = f.readline()
        f.seek(max(0, base.stat().st_size - (1 << 20)))
        last = f.read().splitlines()[-1]
    lo, hi = _stamp(first, _STAMPS[0]), _stamp(last, _STAMPS[0])
    if lo is None or hi is None:
        raise SystemExit(f"{base}: no requestReceivedTimestamp on the first or last line")

    def parse(text: str) -> datetime:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)

    minutes = int((parse(hi) - parse(lo)).total_seconds()) // 60 + 2
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for k in range(copies):
            step = timedelta(minutes=minutes * k)
            seconds: dict[bytes, bytes] = {}  # "YYYY-MM-DDTHH:MM:SS" -> shifted

            def shift(
                sec: bytes, step: timedelta = step, seconds: dict[bytes, bytes] = seconds
            ) -> bytes:
                got = seconds.get(sec)
                if got is None:
                    moved = parse(sec.decode()) + step
                    got = seconds[sec] = moved.strftime("%Y-%m-%dT%H:%M:%S").encode()
                return got

            with base.open("rb") as f:
                for line in f:
                    if k:
                        i = line.find(_ID)
                        if i >= 0:
                            line = _other_id(line, i + len(_ID), k)
                        for key in _STAMPS:
                            i = line.rfind(key)
                            if i >= 0:
                                i += len(key)
                                line = line[:i] + shift(line[i : i + 19]) + line[i + 19 :]
                    out.write(line)
            print(f"log: copy {k + 1}/{copies} written", flush=True)
    tmp.replace(path)
    dt = time.perf_counter() - t0
    print(f"log: {copies} copies ({path.stat().st_size / 1e6:,.0f} MB) in {dt:.0f} s")
    return path


def wall(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, bytes]:
    """Best wall time of ``cmd`` as a process, and its output (of the last run)."""
    best = float("inf")
    out = b""
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, env=env, check=False)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr.decode(errors='replace')}")
        best = min(best, dt)
        out = p.stdout
    return best, out


def duckdb_cmd(sql: str) -> list[str]:
    code = f"import duckdb; duckdb.sql({sql!r}).to_arrow_table()"
    return [sys.executable, "-c", code]


def pick_targets(store: str, env: dict[str, str]) -> dict[str, str]:
    """A user+verb pair, a deleted object and a time window found in the data."""

    def sql(q: str) -> list[dict[str, object]]:
        out = subprocess.run(
            [*KAUDIT, "sql", "--format", "json", q], capture_output=True, env=env, check=True
        ).stdout
        rows: list[dict[str, object]] = json.loads(out)
        return rows

    uv = sql(
        "SELECT username, verb, count(*) n FROM events WHERE stage = 'ResponseComplete' "
        "AND verb IN ('delete', 'create', 'patch') AND username NOT LIKE 'system:%' "
        "GROUP BY ALL ORDER BY n DESC LIMIT 1"
    ) or sql("SELECT username, verb FROM events GROUP BY ALL ORDER BY count(*) LIMIT 1")
    deleted = sql(
        "SELECT resource, namespace, name FROM events WHERE verb = 'delete' AND name IS NOT NULL "
        "AND stage = 'ResponseComplete' AND code < 300 ORDER BY ts DESC LIMIT 1"
    )
    span = sql("SELECT min(ts) lo, max(ts) hi FROM events")[0]
    lo, hi = str(span["lo"]), str(span["hi"])
    from kaudit.model.codec import format_micro, to_micros

    a, b = to_micros(lo), to_micros(hi)
    return {
        "user": str(uv[0]["username"]),
        "verb": str(uv[0]["verb"]),
        "resource": str(deleted[0]["resource"]) if deleted else "pods",
        "namespace": str(deleted[0]["namespace"] or "") if deleted else "",
        "name": str(deleted[0]["name"]) if deleted else "none",
        "since": str(format_micro(a + (b - a) // 4)),
        "until": str(format_micro(a + (b - a) // 2)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument(
        "--copies",
        type=int,
        default=1,
        help="Copies of the --events log to query (--events 1000000 --copies 10: 10M).",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="Keep the store in this directory.")
    ap.add_argument("--skip-raw", action="store_true", help="Skip jq and DuckDB-over-JSON.")
    args = ap.parse_args()

    print(machine_line())
    jq = shutil.which("jq")
    jq_version = (
        subprocess.run([jq, "--version"], capture_output=True, text=True).stdout.strip()
        if jq
        else "-"
    )
    print(f"jq: {jq_version}")
    log = log_file(args.events, args.seed)
    if args.copies > 1:
        log = replicated_log(log, args.copies)
    total = args.events * max(1, args.copies)

    tmp = Path(tempfile.mkdtemp(prefix="kaudit-bench-query-"))
    store = args.keep or tmp / "store"
    env = {**os.environ, "KAUDIT_STORE": str(store)}
    try:
        if not store.exists():
            t_ingest, _ = wall([*KAUDIT, "ingest", str(log)], 1, env)
            print(
                f"ingest: {total:,} events in {t_ingest:.1f} s "
                f"= {total / t_ingest:,.0f} events/s (kaudit ingest, one process)"
            )
        t_first, _ = wall([*KAUDIT, "stats", "--by", "code", "--format", "json"], 1, env)
        print(
            f"first question after ingest: {t_first:.2f} s "
            "(computes the final-stage cache of every partition, once)"
        )
        t = pick_targets(str(store), env)
        print(
            f"targets: user={t['user']} verb={t['verb']} object={t['resource']}/"
            f"{t['namespace']}/{t['name']} window=[{t['since']}, {t['until']})"
        )

        lo, hi = t["since"], t["until"]
        ns_filter = ["--namespace", t["namespace"]] if t["namespace"] else []
        jq_ns = f' and .objectRef.namespace=="{t["namespace"]}"' if t["namespace"] else ""
        duck_ns = f" AND objectRef.namespace = '{t['namespace']}'" if t["namespace"] else ""
        src = f"read_json_auto('{log}', format='newline_delimited', maximum_object_size=67108864)"
        final = '.stage=="ResponseComplete" or .stage=="Panic"'
        cases = [
            (
                "(a) user+verb lookup",
                [
                    *KAUDIT,
                    "query",
                    "--user",
                    t["user"],
                    "--verb",
                    t["verb"],
                    "--limit",
                    "0",
                    "--format",
                    "jsonl",
                ],
                [
                    "jq",
                    "-c",
                    f'select(.user.username=="{t["user"]}" and .verb=="{t["verb"]}" and ({final}))',
                    str(log),
                ],
                duckdb_cmd(
                    f"SELECT * FROM {src} WHERE \"user\".username = '{t['user']}' "
                    f"AND verb = '{t['verb']}' AND stage IN ('ResponseComplete','Panic')"
                ),
            ),
            (
                "(b) who deleted an object",
                [
                    *KAUDIT,
                    "query",
                    "--verb",
                    "delete",
                    "--resource",
                    t["resource"],
                    "--name",
                    t["name"],
                    *ns_filter,
                    "--format",
                    "json",
                ],
                [
                    "jq",
                    "-c",
                    f'select(.verb=="delete" and .objectRef.resource=="{t["resource"]}" '
                    f'and .objectRef.name=="{t["name"]}"{jq_ns} and ({final})) '
                    "| {user: .user.username, code: .responseStatus.code, "
                    "ts: .requestReceivedTimestamp}",
                    str(log),
                ],
                duckdb_cmd(
                    f'SELECT "user".username, responseStatus.code, requestReceivedTimestamp '
                    f"FROM {src} WHERE verb = 'delete' AND objectRef.resource = "
                    f"'{t['resource']}' AND objectRef.name = '{t['name']}'{duck_ns} "
                    "AND stage IN ('ResponseComplete','Panic')"
                ),
            ),
            (
                "(c) counts by code",
                [*KAUDIT, "stats", "--by", "code", "--top", "100", "--format", "json"],
                [
                    "jq",
                    "-n",
                    f"reduce (inputs | select({final}) | .responseStatus.code | tostring)"
                    " as $c ({}; .[$c] += 1)",
                    str(log),
                ],
                duckdb_cmd(
                    f"SELECT responseStatus.code, count(*) FROM {src} "
                    "WHERE stage IN ('ResponseComplete','Panic') GROUP BY ALL"
                ),
            ),
            (
                "(d) top 10 users in a window",
                [
                    *KAUDIT,
                    "stats",
                    "--by",
                    "user",
                    "--top",
                    "10",
                    "--since",
                    lo,
                    "--until",
                    hi,
                    "--format",
                    "json",
                ],
                [
                    "jq",
                    "-n",
                    f'reduce (inputs | select(({final}) and .requestReceivedTimestamp >= "{lo}" '
                    f'and .requestReceivedTimestamp < "{hi}") | .user.username) '
                    "as $u ({}; .[$u] += 1)"
                    " | to_entries | sort_by(-.value) | .[:10]",
                    str(log),
                ],
                duckdb_cmd(
                    f'SELECT "user".username u, count(*) n FROM {src} WHERE stage IN '
                    f"('ResponseComplete','Panic') AND requestReceivedTimestamp >= '{lo}' "
                    f"AND requestReceivedTimestamp < '{hi}' GROUP BY u ORDER BY n DESC LIMIT 10"
                ),
            ),
        ]
        rows = []
        for label, kcmd, jcmd, dcmd in cases:
            tk, out = wall(kcmd, args.repeat, env)
            tj = td = float("nan")
            if not args.skip_raw:
                if jq:
                    tj, _ = wall(jcmd, 1, env)
                td, _ = wall(dcmd, 1, env)
            rows.append((label, tk, tj, td, len(out)))
            print(
                f"  {label}: kaudit {tk:.3f} s, jq {tj:.2f} s, duckdb-json {td:.2f} s", flush=True
            )

        print()
        print(
            f"{total:,} events; wall time of a whole process (kaudit best of {args.repeat}; "
            "jq and DuckDB over the JSON log once)"
        )
        print(
            f"{'question':30} {'kaudit s':>9} {'jq s':>9} {'duckdb-json s':>14} "
            f"{'jq/kaudit':>10} {'duckdb/kaudit':>14}"
        )
        for label, tk, tj, td, _n in rows:
            print(f"{label:30} {tk:9.3f} {tj:9.2f} {td:14.2f} {tj / tk:10.1f} {td / tk:14.1f}")
        t_help, _ = wall([*KAUDIT, "query", "--help"], 3, env)
        print(f"kaudit query --help (start-up): {t_help:.3f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
