"""Shared helpers for the benchmarks: the machine line, timing, and cached traffic.

Benchmarks print figures; they never assert a time (STYLE.md: benchmarks are not tests).
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line naming what the figures were measured on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    libs = []
    for name in ("kaudit", "msgspec", "orjson", "pyarrow", "duckdb"):
        try:
            libs.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            libs.append(f"{name} -")
    try:
        load = f"load {os.getloadavg()[0]:.1f}"
    except OSError:
        load = "load ?"
    return (
        f"machine: {cpu_model()} | {cores} cores, {load} | {platform.python_implementation()} "
        f"{platform.python_version()} | {platform.system()} {platform.release()} | "
        + ", ".join(libs)
    )


class Timing(NamedTuple):
    """Seconds one run took: ``cpu`` (this process's CPU time) and ``wall``."""

    cpu: float
    wall: float

    def __add__(self, other: object) -> Timing:
        assert isinstance(other, Timing)
        return Timing(self.cpu + other.cpu, self.wall + other.wall)


ZERO = Timing(0.0, 0.0)


def best_of(repeat: int, fn: Callable[[], object]) -> Timing:
    """The fastest (by CPU time) of ``repeat`` runs of ``fn``, each after a full GC.

    The benchmarks are single-threaded, so CPU time is the work done even when the
    machine is shared; wall time is printed next to it.
    """
    best: Timing | None = None
    for _ in range(max(1, repeat)):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        t = Timing(time.process_time() - c0, time.perf_counter() - w0)
        if best is None or t.cpu < best.cpu:
            best = t
    assert best is not None
    return best


def traffic_file(n: int, seed: int = 0) -> Path:
    """The cached file of :func:`traffic_lines` (generated first when missing), so that
    a benchmark can read it without holding every line in its own memory."""
    path = CACHE_DIR / f"traffic-seed{seed}-{n}.jsonl"
    if not path.exists():
        del traffic_lines(n, seed)[:]
    return path


def traffic_lines(n: int, seed: int = 0, *, cache: bool = True) -> list[bytes]:
    """``n`` lines of :func:`kaudit.traffic.generate_lines`, cached under ``bench/.cache``.

    Also prints how fast they were generated when it had to generate them.
    """
    from kaudit.traffic import generate_lines

    path = CACHE_DIR / f"traffic-seed{seed}-{n}.jsonl"
    if cache and path.exists():
        with path.open("rb") as f:
            lines = f.readlines()
        if len(lines) == n:
            print(f"traffic: {n:,} lines read from {path}")
            return lines
    t0 = time.perf_counter()
    lines = list(generate_lines(n, seed=seed))
    dt = time.perf_counter() - t0
    size = sum(map(len, lines))
    print(
        f"traffic: generated {n:,} lines ({size / 1e6:,.0f} MB, {size / n:,.0f} B/event) "
        f"in {dt:.1f} s = {n / dt:,.0f} lines/s"
    )
    if cache:
        CACHE_DIR.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.writelines(lines)
        tmp.replace(path)
    return lines


def rate(n: int, t: Timing) -> str:
    """``n`` events in ``t``: events/s of CPU time, µs/event, and events/s of wall time."""
    return (
        f"{n / t.cpu:>11,.0f} events/s  ({t.cpu * 1e6 / n:6.2f} µs/event CPU; "
        f"wall {n / t.wall:>9,.0f}/s)"
    )
