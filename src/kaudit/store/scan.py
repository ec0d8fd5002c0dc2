"""JSON lines straight to rows of the flat schema, for the lines where that is exact.

The exact reader decodes each line into an :class:`~kaudit.model.types.Event` and
:func:`~kaudit.store.flatten.flatten` turns those into columns: about 10 µs of Python
per event. The native scanner (``kaudit.store._scan``, C) reads the one shape nearly
every apiserver line has — the fields of ``audit.k8s.io/v1`` Event in Go's order,
each once, no whitespace, no ``null``, no request or response body — and writes the
columns directly, with the GIL released. Every other line is handed back for the exact
reader. A line the scanner accepts gives exactly the row the exact reader would
give (``tests/store/test_scan.py`` holds it to that); rejecting only costs time.

The extension is optional: when it was not built, :func:`scan_lines` accepts nothing.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Final, cast

import pyarrow as pa
import pyarrow.compute as pc

from kaudit.store.flatten import SCHEMA, _timestamps

_TS_TYPE: Final = pa.timestamp("us", tz="UTC")

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


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("kaudit.store._scan")
    except ImportError:
        return None


_native: ModuleType | None = _load()


def available() -> bool:
    """Whether the native scanner was built (``pip install`` compiles it when it can)."""
    return _native is not None


_Buffers = tuple[bytes | None, bytes, bytes]


def scan_lines(lines: list[bytes], cluster: str = "") -> tuple[pa.Table | None, list[int]]:
    """(the rows of the lines read here, or None; the indexes of the other lines).

    ``lines`` are single lines without their ``\\n`` (a trailing ``\\r`` is ignored, as
    the line reader does). The rows keep the order of their lines; each row's
    ``event`` is its line without the ``\\r``.
    """
    native = _native
    if native is None or not lines:
        return None, list(range(len(lines)))
    fn = cast(Callable[[list[bytes]], tuple[int, bytes, tuple[object, ...]]], native.scan)
    n, rejected_buf, cols = fn(lines)
    rejected: list[int] = memoryview(rejected_buf).cast("i").tolist()
    if n == 0:
        return None, rejected
    return _table(n, cols, cluster), rejected


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


def _table(n: int, cols: tuple[object, ...], cluster: str) -> pa.Table:
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
    stage_ts = _timestamps_of(strs["sts"])
    ts = _timestamps_of(strs["rrt"])
    if ts.null_count:
        ts = pc.coalesce(ts, stage_ts, pa.scalar(time.time_ns() // 1000, _TS_TYPE))
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
        "cluster": pa.repeat(pa.scalar(cluster, pa.string()), n),
    }
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def _timestamps_of(arr: pa.Array) -> pa.Array:
    """``flatten``'s timestamp parsing, from an Arrow string column."""
    try:
        return arr.cast(_TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _timestamps(arr.to_pylist())


__all__ = ["available", "scan_lines"]
