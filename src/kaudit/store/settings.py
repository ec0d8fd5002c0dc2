"""Store settings as data: one table drives defaults, validation and the docs.

Every setting has its unit in its name. :data:`SETTINGS` is the table;
:class:`StoreSettings` is the typed value a :class:`~kaudit.store.Store` uses.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from kaudit.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    type: type
    default: object
    help: str


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "flush_max_bytes",
        int,
        64 * 1024 * 1024,
        "Flush the write-ahead log to Parquet segments once it holds this many bytes.",
    ),
    Setting(
        "flush_max_age_secs",
        float,
        60.0,
        "Flush the write-ahead log once its oldest unflushed batch is this old "
        "(checked on each append and on close).",
    ),
    Setting(
        "zstd_level",
        int,
        1,
        "zstd compression level of Parquet segments (1-22).",
    ),
    Setting(
        "row_group_rows",
        int,
        131_072,
        "Rows per Parquet row group (the unit DuckDB skips with min/max statistics).",
    ),
    Setting(
        "dedup_window_secs",
        float,
        3 * 3600.0,
        "Dedup keys (auditID, stage, hash of the bytes) of events whose ts is this "
        "recent are kept in memory; older events are checked against the Parquet "
        "partitions their ts falls in.",
    ),
    Setting(
        "dedup_max_keys",
        int,
        5_000_000,
        "Upper bound of keys kept in memory for deduplication; when exceeded the oldest "
        "hours are dropped from memory (and checked on disk instead).",
    ),
    Setting(
        "retention_keep_days",
        float,
        0.0,
        "A writer deletes partitions older than this many days when it flushes; 0 keeps "
        "everything.",
    ),
    Setting(
        "compact_min_segments",
        int,
        8,
        "When a partition at least an hour old holds this many small segments, a writer "
        "merges them after a flush (as `kaudit compact` does); 0 turns it off.",
    ),
)

_BY_NAME: Final = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class StoreSettings:
    flush_max_bytes: int = 64 * 1024 * 1024
    flush_max_age_secs: float = 60.0
    zstd_level: int = 1
    row_group_rows: int = 131_072
    dedup_window_secs: float = 3 * 3600.0
    dedup_max_keys: int = 5_000_000
    retention_keep_days: float = 0.0
    compact_min_segments: int = 8

    @classmethod
    def from_mapping(cls, values: dict[str, object]) -> StoreSettings:
        """Validate ``values`` (every problem at once) and build the settings."""
        problems: list[str] = []
        out: dict[str, object] = {}
        for key, value in values.items():
            setting = _BY_NAME.get(key)
            if setting is None:
                import difflib

                near = difflib.get_close_matches(key, list(_BY_NAME), n=1)
                hint = f' (did you mean "{near[0]}"?)' if near else ""
                problems.append(f"store.{key}: unknown setting{hint}")
                continue
            if setting.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, setting.type) or isinstance(value, bool):
                problems.append(f"store.{key}: expected {setting.type.__name__}, got {value!r}")
                continue
            if isinstance(value, int | float) and value < 0:
                problems.append(f"store.{key}: expected a value >= 0, got {value!r}")
                continue
            out[key] = value
        if problems:
            raise ConfigError(problems[0], problems)
        return cls(**out)  # type: ignore[arg-type]


assert [f.name for f in fields(StoreSettings)] == [s.name for s in SETTINGS]
assert all(getattr(StoreSettings(), s.name) == s.default for s in SETTINGS)

__all__ = ["SETTINGS", "Setting", "StoreSettings"]
