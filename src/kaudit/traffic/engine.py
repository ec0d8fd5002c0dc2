"""The generator's core: the clock, IDs, event construction and stage-time ordering.

Requests arrive as a Poisson process whose rate is chosen so that *events* come out at
``rate_per_s``. Each request is turned into its stage events at once: the
``RequestReceived`` event is due now, the later stages (and every event of a scripted
incident) go into a heap keyed by ``stageTimestamp``, which is drained as the clock
passes them. The output is therefore in ``stageTimestamp`` order, as the log backend
writes it, with watches completing minutes after they started.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Final, TypeVar

from msgspec import UNSET, Raw, UnsetType

from kaudit.model import Event, ObjectReference, Status, UserInfo
from kaudit.traffic.cluster import Cluster, ClusterProfile, build_cluster

T = TypeVar("T")

DEFAULT_START: Final = datetime(2025, 3, 3, 9, 0, 0, tzinfo=UTC)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

RR: Final = "RequestReceived"
RS: Final = "ResponseStarted"
RC: Final = "ResponseComplete"

# Shared, never mutated: events of the same outcome point at the same Status.
OK: Final = Status(code=200)
CREATED: Final = Status(code=201)
SWITCHING: Final = Status(code=101)
UNAUTHORIZED: Final = Status(
    status="Failure", message="Unauthorized", reason="Unauthorized", code=401
)
FORBID: Final = {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}


@dataclass(slots=True)
class Incident:
    """One scripted incident in a generated stream, with the audit IDs of its requests.

    ``pending`` counts the incident's events not yet emitted; an incident is
    :attr:`complete` when every one of its events is in the output.
    """

    kind: str
    title: str
    actor: str
    source_ip: str
    start: str
    audit_ids: list[str] = field(default_factory=list)
    detail: dict[str, str] = field(default_factory=dict)
    pending: int = 0

    @property
    def complete(self) -> bool:
        return self.pending == 0


def go_duration(us: int) -> str:
    """A Go ``time.Duration`` string for ``us`` microseconds (``512.3ms``, ``1.25s``, ``850µs``)."""
    if us < 1000:
        return f"{us}µs"
    if us < 1_000_000:
        return f"{us / 1000:.3f}".rstrip("0").rstrip(".") + "ms"
    return f"{us / 1_000_000:.6f}".rstrip("0").rstrip(".") + "s"


class Traffic:
    """A deterministic stream of audit events from a simulated cluster.

    One instance is one stream: :meth:`events` (or :meth:`lines`) may be consumed once.
    :attr:`incidents` lists the incidents started so far; those whose events have all
    been emitted are :attr:`Incident.complete`.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        start: datetime | None = None,
        rate_per_s: float = 1000.0,
        cluster_profile: ClusterProfile | None = None,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        self.seed = seed
        self.profile = cluster_profile if cluster_profile is not None else ClusterProfile()
        self.rng = random.Random(seed)
        self.cluster: Cluster = build_cluster(self.profile, random.Random(seed * 7919 + 17))
        start = start if start is not None else DEFAULT_START
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        delta = start - _EPOCH
        self.t = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        self.gap_us = 1_000_000.0 / rate_per_s
        self.incidents: list[Incident] = []
        self.requests = 0
        self._rv = 4_000_000 + self.rng.randrange(1_000_000)
        self._heap: list[tuple[int, int, Event, Incident | None]] = []
        self._seq = 0
        self._out: list[Event] = []
        self._sec_cache: dict[int, str] = {}
        self._refs: dict[tuple[str, str, str, str, str, str], ObjectReference] = {}
        self._allow: dict[str, dict[str, str]] = {}
        every = self.profile.incident_every_requests
        self._next_incident = max(1, every // 3) if every > 0 else -1
        self._incident_order: list[int] = []
        self._started = False

    # --- building blocks for actions -------------------------------------------------

    def uuid(self) -> str:
        b = self.rng.getrandbits(128)
        b = (b & 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF) | 0x00000000000040008000000000000000
        h = "%032x" % b  # noqa: UP031 (3x faster than an f-string here)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def ts(self, us: int) -> str:
        """``us`` as a MicroTime string (``2006-01-02T15:04:05.000000Z``)."""
        sec, frac = divmod(us, 1_000_000)
        p = self._sec_cache.get(sec)
        if p is None:
            if len(self._sec_cache) > 4096:
                self._sec_cache.clear()
            p = (_EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S.")
            self._sec_cache[sec] = p
        return f"{p}{frac:06d}Z"

    def ts_s(self, us: int) -> str:
        """``us`` as an object timestamp (RFC 3339, whole seconds)."""
        return self.ts(us)[:19] + "Z"

    def rv(self) -> str:
        """A new resourceVersion (each write advances the cluster's counter)."""
        self._rv += 1 + self.rng.randrange(8)
        return str(self._rv)

    def rv_now(self) -> str:
        return str(self._rv)

    def lat(self, lo_ms: float, hi_ms: float) -> int:
        """A latency in µs between ``lo_ms`` and ``hi_ms``, skewed towards ``lo_ms``."""
        r = self.rng.random()
        return int(lo_ms * 1000 + (hi_ms - lo_ms) * 1000 * r * r * r) + 1

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.rng.random() * len(items))]

    def allow(self, reason: str) -> dict[str, str]:
        a = self._allow.get(reason)
        if a is None:
            a = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": reason}
            self._allow[reason] = a
        return a

    def ref(
        self,
        resource: str,
        namespace: str = "",
        name: str = "",
        group: str = "",
        version: str = "v1",
        subresource: str = "",
    ) -> ObjectReference:
        """A shared ObjectReference (empty fields left out, as the apiserver does)."""
        key = (resource, namespace, name, group, version, subresource)
        r = self._refs.get(key)
        if r is None:
            if len(self._refs) > 100_000:
                self._refs.clear()
            r = ObjectReference(
                resource=resource,
                namespace=namespace or UNSET,
                name=name or UNSET,
                api_group=group or UNSET,
                api_version=version,
                subresource=subresource or UNSET,
            )
            self._refs[key] = r
        return r

    def request(
        self,
        t: int,
        level: str,
        verb: str,
        uri: str,
        user: UserInfo,
        ips: list[str],
        ua: str,
        ref: ObjectReference | UnsetType,
        status: Status,
        ann: dict[str, str] | None,
        lat: int,
        *,
        ref_done: ObjectReference | None = None,
        req_obj: Raw | UnsetType = UNSET,
        resp_obj: Raw | UnsetType = UNSET,
        imp: UserInfo | UnsetType = UNSET,
        long_running: bool = False,
        started_after: int = 0,
        slow_layer: str = "etcd",
        inc: Incident | None = None,
    ) -> str:
        """Emit the stage events of one request received at ``t``; return its auditID.

        ``ref_done`` is the objectRef after back-fill from the request body (later
        stages); ``started_after`` is when a long-running request writes its headers;
        ``slow_layer`` is the latency layer blamed when the request takes over 500 ms.
        """
        aid = self.uuid()
        ts0 = self.ts(t)
        rr = Event(
            level=level,
            audit_id=aid,
            stage=RR,
            request_uri=uri,
            verb=verb,
            user=user,
            source_ips=ips,
            user_agent=ua,
            object_ref=ref,
            request_received_timestamp=ts0,
            stage_timestamp=ts0,
        )
        heap = self._heap
        if inc is None and t == self.t:
            self._out.append(rr)
        else:
            self._seq += 1
            heapq.heappush(heap, (t, self._seq, rr, inc))
        if ref_done is None:
            ref_done = ref  # type: ignore[assignment]
        annotations: dict[str, str] | UnsetType = UNSET
        if ann is not None:
            annotations = dict(ann)
        n = 2
        if long_running:
            n = 3
            t_rs = t + (started_after or self.lat(0.6, 4.0))
            rs = Event(
                level=level,
                audit_id=aid,
                stage=RS,
                request_uri=uri,
                verb=verb,
                user=user,
                impersonated_user=imp,
                source_ips=ips,
                user_agent=ua,
                object_ref=ref_done if ref_done is not None else UNSET,
                response_status=status,
                request_object=req_obj,
                request_received_timestamp=ts0,
                stage_timestamp=self.ts(t_rs),
                annotations=dict(ann) if ann is not None else UNSET,
            )
            self._seq += 1
            heapq.heappush(heap, (t_rs, self._seq, rs, inc))
            lat = max(lat, t_rs - t + 1)
        elif lat >= 500_000 and ann is not None:
            # The apiserver's latency annotations (spec 3), on ResponseComplete only.
            annotations = dict(ann)
            annotations[f"apiserver.latency.k8s.io/{slow_layer}"] = go_duration(lat * 9 // 10)
            annotations["apiserver.latency.k8s.io/serialize-response-object"] = go_duration(
                lat // 40
            )
            annotations["apiserver.latency.k8s.io/total"] = go_duration(lat)
        t_rc = t + lat
        rc = Event(
            level=level,
            audit_id=aid,
            stage=RC,
            request_uri=uri,
            verb=verb,
            user=user,
            impersonated_user=imp,
            source_ips=ips,
            user_agent=ua,
            object_ref=ref_done if ref_done is not None else UNSET,
            response_status=status,
            request_object=req_obj,
            response_object=resp_obj,
            request_received_timestamp=ts0,
            stage_timestamp=self.ts(t_rc),
            annotations=annotations,
        )
        self._seq += 1
        heapq.heappush(heap, (t_rc, self._seq, rc, inc))
        if inc is not None:
            inc.audit_ids.append(aid)
            inc.pending += n
        return aid

    def failed_auth(
        self,
        t: int,
        level: str,
        verb: str,
        uri: str,
        ips: list[str],
        ua: str,
        ref: ObjectReference | UnsetType,
        inc: Incident | None = None,
    ) -> str:
        """A failed authentication: one ResponseStarted event, empty user, 401 (spec 12)."""
        aid = self.uuid()
        t_rs = t + self.lat(0.05, 0.4)
        ev = Event(
            level=level,
            audit_id=aid,
            stage=RS,
            request_uri=uri,
            verb=verb,
            user=UserInfo(),
            source_ips=ips,
            user_agent=ua,
            object_ref=ref,
            response_status=UNAUTHORIZED,
            request_received_timestamp=self.ts(t),
            stage_timestamp=self.ts(t_rs),
        )
        self._seq += 1
        heapq.heappush(self._heap, (t_rs, self._seq, ev, inc))
        if inc is not None:
            inc.audit_ids.append(aid)
            inc.pending += 1
        return aid

    def incident(self, kind: str, title: str, actor: str, ip: str, t: int) -> Incident:
        inc = Incident(kind=kind, title=title, actor=actor, source_ip=ip, start=self.ts(t))
        self.incidents.append(inc)
        return inc

    # --- the stream ------------------------------------------------------------------

    def events(self, n: int | None = None) -> Iterator[Event]:
        """The stream's events (``n`` of them, or without end), in stageTimestamp order."""
        if self._started:
            raise RuntimeError("a Traffic stream can be consumed once; create a new one")
        self._started = True
        it = self._run()
        return it if n is None else islice(it, n)

    def lines(self, n: int | None = None) -> Iterator[bytes]:
        """The same stream as :meth:`events`, as JSON log lines (``kaudit.model.encode_event``)."""
        from kaudit.model import encode_event

        return map(encode_event, self.events(n))

    def _run(self) -> Iterator[Event]:
        from kaudit.traffic.background import weighted_actions
        from kaudit.traffic.incidents import SCRIPTS

        actions, cum = weighted_actions(self)
        total = cum[-1]
        rnd = self.rng.random
        log = math.log
        heap = self._heap
        pop = heapq.heappop
        out = self._out
        gap = self.gap_us
        every = self.profile.incident_every_requests
        while True:
            t = self.t
            while heap and heap[0][0] <= t:
                item = pop(heap)
                inc = item[3]
                if inc is not None:
                    inc.pending -= 1
                yield item[2]
            self.requests += 1
            if self.requests == self._next_incident:
                if not self._incident_order:
                    self._incident_order = list(range(len(SCRIPTS)))
                    self.rng.shuffle(self._incident_order)
                SCRIPTS[self._incident_order.pop()](self, t + 1000)
                self._next_incident += int(every * (0.75 + 0.5 * rnd()))
            k = actions[bisect(cum, rnd() * total)](t)
            if out:
                yield from out
                out.clear()
            self.t = t + 1 + int(k * gap * -log(1.0 - rnd()))
