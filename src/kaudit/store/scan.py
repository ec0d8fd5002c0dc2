"""JSON lines straight to rows of the flat schema, for the lines where that is exact.

The exact reader decodes each line into an :class:`~kaudit.model.types.Event` and
:func:`~kaudit.store.flatten.flatten` turns those into columns: about 10 µs of Python
per event. The native scanner (``kaudit.store._scan``, C) reads the one shape nearly
every apiserver line has — the fields of ``audit.k8s.io/v1`` Event in Go's order,
each once, no whitespace, no ``null``, no request or response body — and writes the
columns directly, with the GIL released. Every other line is handed back for the exact
reader. A line the scanner accepts gives exactly the row the exact reader would
give (``tests/store/test_scan.py`` holds it to that); rejecting only costs time.

The scanner also computes each row's dedup key (the SHA-256 of the line) where the CPU
has the SHA extensions. The extension is optional: when it was not built, nothing is
accepted and the caller reads every line.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Final, cast

import pyarrow as pa

from kaudit.store.flatten import SCHEMA, event_times

#: The string columns the scanner gives, in its order (``ts``/``stage_ts`` come from
#: the two timestamp strings, ``rrt`` and ``sts``).
_STRINGS: Final = (
    "audit_id",
    "stage",
    "level",
    "verb",
    "request_uri",
    "username",
    "impersonated_user",
    "source_ip",
    "user_agent",
    "api_group",
    "api_version",
    "resource",
    "subresource",
    "namespace",
    "name",
    "status_reason",
    "status_message",
    "decision",
    "authz_reason",
    "rrt",
    "sts",
    "event",
)


#: ``KAUDIT_SCANNER=off`` reads every line with the exact reader (slower, same rows).
SCANNER_ENV: Final = "KAUDIT_SCANNER"


def _load() -> ModuleType | None:
    if os.environ.get(SCANNER_ENV, "").lower() in ("off", "0", "false", "no"):
        return None
    try:
        return importlib.import_module("kaudit.store._scan")
    except ImportError:
        return None


_native: ModuleType | None = _load()


def available() -> bool:
    """Whether the native scanner is in use: built (``pip install`` compiles it when it
    can) and not turned off with ``KAUDIT_SCANNER=off``."""
    return _native is not None


_Buffers = tuple[bytes | None, bytes, bytes]


@dataclass(frozen=True, slots=True)
class Scanned:
    """What :func:`scan_buffer` read."""

    #: The rows of the accepted lines, in order (None: none), ``cluster`` empty.
    table: pa.Table | None
    #: Their dedup keys (:func:`kaudit.store.dedup.keys_of`), when the scanner hashed them.
    keys: list[str] | None
    #: (index among the lines read, start, end) of each other line; ``end`` is before
    #: its ``\n`` (a ``\r`` stays).
    rejected: list[tuple[int, int, int]]
    #: How many lines were read.
    lines: int
    #: Where the unread rest of the buffer starts (a last line without ``\n``).
    end: int


def scan_buffer(buf: bytes, pos: int = 0, *, final: bool = False, native: bool = True) -> Scanned:
    """Read the lines of ``buf`` from ``pos``: each that ends in ``\n``, and with
    ``final`` the last one without it too.

    Without the native scanner (or with ``native=False``) every line is rejected: the
    caller reads them all.
    A trailing ``\r`` is not part of a row's ``event``, as the line reader strips it.
    """
    module = _native if native else None
    if module is None:
        return _all_rejected(buf, pos, final)
    fn = cast(
        Callable[[bytes, int, bool], tuple[int, int, bytes, int, tuple[object, ...], object]],
        module.scan,
    )
    n, lines, rejected_buf, end, cols, key_col = fn(buf, pos, final)
    flat = memoryview(rejected_buf).cast("q").tolist()
    rejected = list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))
    if n == 0:
        return Scanned(None, None, rejected, lines, end)
    keys: list[str] | None = None
    if key_col is not None:
        keys = _strings(n, cast(_Buffers, key_col)).to_pylist()
    return Scanned(_table(n, cols), keys, rejected, lines, end)


def _all_rejected(buf: bytes, pos: int, final: bool) -> Scanned:
    rejected: list[tuple[int, int, int]] = []
    at = pos
    while at < len(buf):
        nl = buf.find(b"\n", at)
        if nl < 0:
            if not final:
                break
            nl = len(buf)
        rejected.append((len(rejected), at, nl))
        at = nl + 1
    return Scanned(None, None, rejected, len(rejected), min(at, len(buf)))


def scan_lines(lines: list[bytes]) -> tuple[pa.Table | None, list[int]]:
    """(the rows of the lines read natively, or None; the indexes of the other lines)."""
    got = scan_buffer(b"".join(line + b"\n" for line in lines), final=True)
    return got.table, [i for i, _, _ in got.rejected]


def _strings(n: int, bufs: _Buffers) -> pa.Array:
    valid, offsets, data = bufs
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [None if valid is None else pa.py_buffer(valid), pa.py_buffer(offsets), pa.py_buffer(data)],
    )


def _lists(n: int, offsets: bytes, child: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), n + 1, [None, pa.py_buffer(offsets)]), child
    )


def _table(n: int, cols: tuple[object, ...]) -> pa.Table:
    k = len(_STRINGS)
    strs = {name: _strings(n, cast(_Buffers, cols[i])) for i, name in enumerate(_STRINGS)}
    groups_off, groups, ips_off, ips, ann_off, ann_keys, ann_values, code = cols[k:]
    g_child = cast(_Buffers, groups)
    i_child = cast(_Buffers, ips)
    k_child = cast(_Buffers, ann_keys)
    v_child = cast(_Buffers, ann_values)
    n_groups = len(g_child[1]) // 4 - 1
    n_ips = len(i_child[1]) // 4 - 1
    n_ann = len(k_child[1]) // 4 - 1
    code_valid, code_values = cast(tuple[bytes | None, bytes], code)
    ts, stage_ts = event_times(strs["rrt"], strs["sts"])
    ann_offsets = pa.Array.from_buffers(
        pa.int32(), n + 1, [None, pa.py_buffer(cast(bytes, ann_off))]
    )
    columns: dict[str, pa.Array] = {
        **strs,
        "ts": ts,
        "stage_ts": stage_ts,
        "groups": _lists(n, cast(bytes, groups_off), _strings(n_groups, g_child)),
        "source_ips": _lists(n, cast(bytes, ips_off), _strings(n_ips, i_child)),
        "annotations": pa.MapArray.from_arrays(
            ann_offsets, _strings(n_ann, k_child), _strings(n_ann, v_child)
        ),
        "code": pa.Array.from_buffers(
            pa.int32(),
            n,
            [None if code_valid is None else pa.py_buffer(code_valid), pa.py_buffer(code_values)],
        ),
        "request_object": pa.nulls(n, pa.string()),
        "response_object": pa.nulls(n, pa.string()),
        "cluster": pa.repeat(pa.scalar("", pa.string()), n),
    }
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMA], schema=SCHEMA)


__all__ = ["Scanned", "available", "scan_buffer", "scan_lines"]
