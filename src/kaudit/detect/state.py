"""Streaming state: sliding windows, distinct sets, first-seen terms, sequences.

Each rule kind has a small state machine fed the rule's matching events in order
(``ts``, ``audit_id``, ``stage``). They decide exactly what the retro-hunt SQL of
:mod:`kaudit.detect.sql` decides for the same events, keeping only what can still
matter: at most ``threshold`` entries per group for windows and distinct counts,
entries younger than the window/lookback otherwise, and at most ``max_keys``
keys per rule (the oldest are dropped first when that bound is hit).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

Key = tuple[str | None, ...]


@dataclass(slots=True)
class Trigger:
    """One firing of a rule before suppression (the streaming twin of a trigger row)."""

    ts_us: int
    first_ts_us: int
    audit_ids: list[str]
    key: list[str | None]
    count: int


def _key(v: Any) -> Key:
    return tuple(v) if v is not None else ()


class _Bounded:
    """Insertion-ordered dict with a key bound (oldest evicted first)."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.d: OrderedDict[Any, Any] = OrderedDict()

    def touch(self, k: Any, v: Any) -> None:
        d = self.d
        if k in d:
            d.move_to_end(k)
        d[k] = v
        if len(d) > self.max_keys:
            d.popitem(last=False)


class Suppressor:
    """At most one alert per key per window bucket (``ts // window``)."""

    def __init__(self, window_us: int | None, max_keys: int) -> None:
        self.window_us = window_us
        self.last = _Bounded(max_keys)

    def admit(self, key: Key, ts_us: int) -> bool:
        if self.window_us is None:
            return True
        bucket = ts_us // self.window_us
        if self.last.d.get(key) == bucket:
            return False
        self.last.touch(key, bucket)
        return True

    def expire(self, now_us: int) -> None:
        if self.window_us is None:
            return
        cur = now_us // self.window_us
        for k in [k for k, b in self.last.d.items() if b < cur]:
            del self.last.d[k]

    def dump(self) -> list[Any]:
        return [[list(k), b] for k, b in self.last.d.items()]

    def load(self, data: list[Any]) -> None:
        for k, b in data:
            self.last.touch(tuple(k), b)


class ThresholdState:
    """``threshold`` events per group within a sliding ``window``."""

    def __init__(self, threshold: int, window_us: int, max_keys: int) -> None:
        self.n = threshold
        self.w = window_us
        self.groups = _Bounded(max_keys)

    def feed(self, key: Key, ts_us: int, audit_id: str) -> Trigger | None:
        dq = self.groups.d.get(key)
        if dq is None:
            dq = deque(maxlen=self.n)
        dq.append((ts_us, audit_id))
        self.groups.touch(key, dq)
        if len(dq) == self.n and dq[0][0] > ts_us - self.w:
            return Trigger(ts_us, dq[0][0], [a for _, a in dq], list(key), self.n)
        return None

    def expire(self, now_us: int) -> None:
        cut = now_us - self.w
        for k in [k for k, dq in self.groups.d.items() if dq[-1][0] <= cut]:
            del self.groups.d[k]

    def dump(self) -> list[Any]:
        return [[list(k), [list(x) for x in dq]] for k, dq in self.groups.d.items()]

    def load(self, data: list[Any]) -> None:
        for k, items in data:
            self.groups.touch(tuple(k), deque((tuple(x) for x in items), maxlen=self.n))


class DistinctState:
    """``threshold`` distinct values per group within a sliding ``window``."""

    def __init__(self, threshold: int, window_us: int, max_keys: int) -> None:
        self.n = threshold
        self.w = window_us
        self.groups = _Bounded(max_keys)

    def feed(self, key: Key, ts_us: int, audit_id: str, value: str) -> Trigger | None:
        od: OrderedDict[str, tuple[int, str]] | None = self.groups.d.get(key)
        if od is None:
            od = OrderedDict()
        if value in od:
            od.move_to_end(value)
        od[value] = (ts_us, audit_id)
        if len(od) > self.n:
            od.popitem(last=False)
        self.groups.touch(key, od)
        if len(od) == self.n:
            oldest = next(iter(od.values()))
            if oldest[0] > ts_us - self.w:
                return Trigger(ts_us, oldest[0], [a for _, a in od.values()], list(key), self.n)
        return None

    def expire(self, now_us: int) -> None:
        cut = now_us - self.w
        for k in [k for k, od in self.groups.d.items() if next(reversed(od.values()))[0] <= cut]:
            del self.groups.d[k]

    def dump(self) -> list[Any]:
        return [
            [list(k), [[v, t, a] for v, (t, a) in od.items()]] for k, od in self.groups.d.items()
        ]

    def load(self, data: list[Any]) -> None:
        for k, items in data:
            self.groups.touch(tuple(k), OrderedDict((v, (t, a)) for v, t, a in items))


class NewTermsState:
    """A combination of terms not seen for a known entity within ``lookback``."""

    def __init__(self, lookback_us: int, max_keys: int) -> None:
        self.lb = lookback_us
        self.entities = _Bounded(max_keys)
        self.terms = _Bounded(max_keys)

    def feed(self, key: Key, terms: Key, ts_us: int, audit_id: str) -> Trigger | None:
        pe = self.entities.d.get(key)
        pt = self.terms.d.get((key, terms))
        self.entities.touch(key, ts_us)
        self.terms.touch((key, terms), ts_us)
        cut = ts_us - self.lb
        if pe is not None and pe > cut and (pt is None or pt <= cut):
            return Trigger(ts_us, ts_us, [audit_id], [*key, *terms], 1)
        return None

    def expire(self, now_us: int) -> None:
        cut = now_us - self.lb
        for store in (self.entities.d, self.terms.d):
            for k in [k for k, t in store.items() if t <= cut]:
                del store[k]

    def dump(self) -> dict[str, Any]:
        return {
            "entities": [[list(k), t] for k, t in self.entities.d.items()],
            "terms": [[list(k), list(tm), t] for (k, tm), t in self.terms.d.items()],
        }

    def load(self, data: dict[str, Any]) -> None:
        for k, t in data["entities"]:
            self.entities.touch(tuple(k), t)
        for k, tm, t in data["terms"]:
            self.terms.touch((tuple(k), tuple(tm)), t)


class SequenceState:
    """Step 1 then step 2 by the same key within ``within``."""

    def __init__(self, within_us: int, max_keys: int) -> None:
        self.w = within_us
        self.last_a = _Bounded(max_keys)

    def feed(self, key: Key, ts_us: int, audit_id: str, is_a: bool, is_b: bool) -> Trigger | None:
        trig = None
        if is_b:
            a = self.last_a.d.get(key)
            if a is not None and a[0] > ts_us - self.w:
                trig = Trigger(ts_us, a[0], [a[1], audit_id], list(key), 2)
        if is_a:
            self.last_a.touch(key, (ts_us, audit_id))
        return trig

    def expire(self, now_us: int) -> None:
        cut = now_us - self.w
        for k in [k for k, a in self.last_a.d.items() if a[0] <= cut]:
            del self.last_a.d[k]

    def dump(self) -> list[Any]:
        return [[list(k), list(a)] for k, a in self.last_a.d.items()]

    def load(self, data: list[Any]) -> None:
        for k, a in data:
            self.last_a.touch(tuple(k), tuple(a))


StateMachine = ThresholdState | DistinctState | NewTermsState | SequenceState
