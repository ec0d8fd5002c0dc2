"""The webhook source: what the apiserver's audit webhook backend POSTs (spec 8.3, 12).

:func:`decode_body` turns a request body into :class:`Record` s; :class:`WebhookEndpoint`
is the Starlette endpoint around it. The contract with the apiserver:

* ``200`` only once every event of the body is durable in the store (WAL fsync).
* ``400`` when the body is not an ``EventList``, an array of events or one event
  (malformed or truncated JSON): nothing of it is stored, the body is kept in the
  quarantine, and the apiserver's identical resends are answered the same way.
* A well-formed body some of whose *items* are not audit events: the good events
  are stored, each bad item is kept in the quarantine with its reason, and the
  answer is ``200`` (a 400 would make the apiserver drop the good events with the
  bad after its retries). Nothing is lost either way.
* ``413`` above ``max_body_bytes`` (read incrementally; reading stops at the limit),
  ``415`` for a content type other than JSON or any ``Content-Encoding`` but
  identity (the apiserver never compresses, so decompression bombs cannot happen),
  ``401``/``403`` for authentication, ``503`` with ``Retry-After`` when too much is
  waiting to be made durable or the disk is full. Never a silent drop.

Retries are safe: the store drops duplicates (same auditID, stage and bytes).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from kaudit.errors import DecodeError, KauditError, Location, StoreError, StoreFullError
from kaudit.model.codec import decode_event, encode_event, gc_paused
from kaudit.model.documents import Record
from kaudit.web.auth import Authenticator
from kaudit.web.errors import HTTPError
from kaudit.web.metrics import ServeMetrics

log = logging.getLogger("kaudit.serve")

_TYPED_PREFIX = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'
_ACCEPTED_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1")


class _Shape(msgspec.Struct):
    kind: object = None
    apiVersion: object = None  # noqa: N815 - the JSON name
    items: list[msgspec.Raw] | None = None


_SHAPE = msgspec.json.Decoder(_Shape)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass(slots=True)
class BadItem:
    """An item of a well-formed body that is not an audit event."""

    index: int
    error: DecodeError
    raw: bytes


@dataclass(slots=True)
class DecodedBody:
    records: list[Record] = field(default_factory=list)
    bad: list[BadItem] = field(default_factory=list)


def _raw_line(data: bytes, ev: Any) -> bytes:
    """The event as one log line (no newline): the item itself when it already is."""
    if b"\n" not in data and b"\r" not in data:
        if data.startswith(b'{"level":'):
            return _TYPED_PREFIX + data[1:]
        if data.startswith(_TYPED_PREFIX):
            return data
    return encode_event(ev)[:-1]


def decode_body(body: bytes, source: str = "webhook") -> DecodedBody:
    """Decode a webhook body: an ``EventList``, a JSON array of events or one event.

    Raises :class:`DecodeError` (naming ``source``) when the body as a whole is not
    one of these; items that are not audit events are returned in ``bad``.
    """
    loc = Location(source)
    head = body.lstrip(b" \t\r\n")[:1]
    items: list[msgspec.Raw]
    try:
        if head == b"[":
            items = _RAW_LIST.decode(body)
        elif head == b"{":
            shape = _SHAPE.decode(body)
            if shape.kind == "EventList" or (shape.kind is None and shape.items is not None):
                if shape.apiVersion is not None and shape.apiVersion not in _ACCEPTED_VERSIONS:
                    raise DecodeError(
                        f'apiVersion: expected "audit.k8s.io/v1", got {_show(shape.apiVersion)}',
                        loc,
                    )
                items = shape.items or []
            else:
                items = [msgspec.Raw(body)]
        elif not head:
            raise DecodeError(
                "empty body: expected an audit.k8s.io/v1 EventList, an array of events or an event",
                loc,
            )
        else:
            raise DecodeError(
                "expected a JSON audit.k8s.io/v1 EventList, an array of events or an event; "
                f"got {_preview(body)}",
                loc,
            )
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc}", loc) from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8: invalid byte at offset {exc.start}", loc) from None
    with gc_paused():  # the decoded events stay alive: no GC rescans meanwhile
        return _decode_items(body, items, loc, source)


def _decode_items(body: bytes, items: list[msgspec.Raw], loc: Location, source: str) -> DecodedBody:
    out = DecodedBody()
    utf8 = _is_utf8(body)
    for i, item in enumerate(items):
        data = bytes(item)
        try:
            ev = decode_event(data, loc)
        except DecodeError as err:
            out.bad.append(BadItem(i, DecodeError(f"items[{i}]: {err.detail}", loc), data))
            continue
        except UnicodeDecodeError as exc:  # msgspec raises it for bad bytes in strings
            detail = f"items[{i}]: not UTF-8: invalid byte at offset {exc.start}"
            out.bad.append(BadItem(i, DecodeError(detail, loc), data))
            continue
        if not utf8 and not _is_utf8(data):
            detail = f"items[{i}]: not UTF-8"
            out.bad.append(BadItem(i, DecodeError(detail, loc), data))
            continue
        out.records.append(Record(ev, _raw_line(data, ev), source, i + 1))
    return out


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _show(value: object) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _preview(body: bytes) -> str:
    text = body[:40].decode("utf-8", "replace")
    return repr(text) + ("..." if len(body) > 40 else "")


# --- the endpoint ----------------------------------------------------------------


class AppendResultLike(Protocol):
    received: int
    stored: int
    duplicates: int


class Sink(Protocol):
    """Where a source hands its batches: returns once they are durable."""

    async def __call__(self, records: list[Record], *, cluster: str = "") -> AppendResultLike: ...

    @property
    def pending(self) -> int:
        """Batches submitted and not yet durable."""
        ...


class QuarantineLike(Protocol):
    def add(self, source: str, line: int | None, reason: str, raw: bytes) -> None: ...

    def flush(self) -> None: ...


@dataclass
class WebhookLimits:
    max_body_bytes: int = 12 * 1024 * 1024
    max_inflight_bytes: int = 256 * 1024 * 1024
    max_pending_batches: int = 256
    retry_after_secs: int = 2
    quarantine_max_bytes: int = 1024 * 1024 * 1024


class WebhookEndpoint:
    """``POST <webhook_path>``: authenticate, bound, read, decode, store, acknowledge."""

    def __init__(
        self,
        sink: Sink,
        auth: Authenticator,
        metrics: ServeMetrics,
        limits: WebhookLimits,
        quarantine: QuarantineLike | None = None,
    ) -> None:
        self.sink = sink
        self.auth = auth
        self.metrics = metrics
        self.limits = limits
        self.quarantine = quarantine
        self.inflight_bytes = 0
        self.quarantined_bytes = 0
        self._seen_bodies: OrderedDict[bytes, None] = OrderedDict()

    # ASGI-level endpoint so that the body is read incrementally.
    async def handle(self, request: Request) -> Response:
        try:
            response = await self._handle(request)
        except HTTPError as exc:
            self.metrics.requests.inc(1, str(exc.status))
            self.metrics.rejected.inc(1, _reason_label(exc))
            log.log(
                logging.WARNING,
                "webhook request refused",
                extra={
                    "fields": {
                        "status": exc.status,
                        "reason": exc.reason,
                        "message": exc.message,
                        "client": _client(request),
                    }
                },
            )
            raise
        self.metrics.requests.inc(1, str(response.status_code))
        return response

    async def _handle(self, request: Request) -> Response:
        identity = self.auth.check(request.scope, "write")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise HTTPError(
                415,
                f'Content-Encoding "{encoding}" is not accepted: send the body uncompressed '
                "(as the apiserver does)",
                reason="UnsupportedContentEncoding",
            )
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise HTTPError(
                415,
                f'Content-Type must be application/json, got "{ctype}"'
                if ctype
                else "Content-Type must be application/json",
            )
        declared = request.headers.get("content-length")
        limit = self.limits.max_body_bytes
        expected = 0
        if declared is not None:
            try:
                expected = int(declared)
            except ValueError:
                raise HTTPError(400, f'Content-Length is not a number: "{declared}"') from None
            if expected > limit:
                raise HTTPError(
                    413, f"request body of {expected} bytes is larger than max_body_bytes ({limit})"
                )
        self._admit(expected)
        reserved = expected
        try:
            body = bytearray()
            try:
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        raise HTTPError(
                            413, f"request body is larger than max_body_bytes ({limit})"
                        )
                    if len(body) > reserved:
                        self._admit(len(body) - reserved)
                        reserved = len(body)
            except ClientDisconnect:
                raise HTTPError(
                    400, "the client disconnected before the body was complete"
                ) from None
            if declared is not None and len(body) != expected:
                raise HTTPError(
                    400, f"body of {len(body)} bytes does not match Content-Length {expected}"
                )
            received_at = time.perf_counter()
            data = bytes(body)
            del body
            try:
                decoded = decode_body(data, f"webhook[{identity.name}]")
            except DecodeError as err:
                await self._quarantine_body(data, err, identity.name)
                raise HTTPError(400, err.detail, reason="MalformedBody") from None
            if decoded.bad:
                await self._quarantine_items(decoded.bad, identity.name)
            self.metrics.events_received.inc(len(decoded.records))
            self.metrics.batch_events.observe(len(decoded.records))
            try:
                await self.sink(decoded.records, cluster=identity.name)
            except StoreFullError as exc:
                raise HTTPError(
                    503,
                    f"the store is full, nothing was lost; retry later: {exc}",
                    reason="StoreFull",
                    headers={"Retry-After": str(self.limits.retry_after_secs)},
                ) from None
            except StoreError as exc:
                raise HTTPError(
                    503,
                    f"the store cannot take the batch now: {exc}",
                    reason="StoreUnavailable",
                    headers={"Retry-After": str(self.limits.retry_after_secs)},
                ) from None
            except KauditError as exc:
                raise HTTPError(500, f"the batch was not stored: {exc}") from None
            self.metrics.ack_seconds.observe(time.perf_counter() - received_at)
        finally:
            self.inflight_bytes -= reserved
        log.debug(
            "webhook batch stored",
            extra={
                "fields": {
                    "cluster": identity.name,
                    "events": len(decoded.records),
                    "quarantined": len(decoded.bad),
                    "client": _client(request),
                }
            },
        )
        return Response(
            msgspec.json.encode(
                {"received": len(decoded.records), "quarantined": len(decoded.bad)}
            ),
            media_type="application/json",
        )

    def _admit(self, nbytes: int) -> None:
        """Reserve ``nbytes`` of in-flight budget or answer 503."""
        pending = self.sink.pending
        if pending >= self.limits.max_pending_batches:
            raise self._overloaded(f"{pending} batches are waiting to be stored")
        if self.inflight_bytes + nbytes > self.limits.max_inflight_bytes and self.inflight_bytes:
            raise self._overloaded(
                f"{self.inflight_bytes} bytes are waiting to be stored "
                f"(max_inflight_bytes {self.limits.max_inflight_bytes})"
            )
        self.inflight_bytes += nbytes

    def _overloaded(self, why: str) -> HTTPError:
        return HTTPError(
            503,
            f"overloaded: {why}; retry later",
            reason="Overloaded",
            headers={"Retry-After": str(self.limits.retry_after_secs)},
        )

    async def _quarantine_body(self, body: bytes, err: DecodeError, cluster: str) -> None:
        digest = hashlib.sha256(body).digest()
        if digest in self._seen_bodies:  # the apiserver resends the identical body
            self._seen_bodies.move_to_end(digest)
            return
        self._seen_bodies[digest] = None
        while len(self._seen_bodies) > 1024:
            self._seen_bodies.popitem(last=False)
        self._keep([(None, err.detail, body)], cluster)

    async def _quarantine_items(self, bad: Sequence[BadItem], cluster: str) -> None:
        self.metrics.events_quarantined.inc(len(bad))
        self._keep([(b.index + 1, b.error.detail, b.raw) for b in bad], cluster)

    def _keep(self, entries: list[tuple[int | None, str, bytes]], cluster: str) -> None:
        """Write to the quarantine durably (or 503 so that nothing is lost)."""
        if self.quarantine is None:
            return
        size = sum(len(raw) for _, _, raw in entries)
        if self.quarantined_bytes + size > self.limits.quarantine_max_bytes:
            log.warning(
                "quarantine full: not keeping bad input",
                extra={"fields": {"cluster": cluster, "items": len(entries), "bytes": size}},
            )
            return
        try:
            for line, reason, raw in entries:
                self.quarantine.add(f"webhook[{cluster}]", line, reason, raw)
            self.quarantine.flush()
        except Exception as exc:
            raise HTTPError(
                503,
                f"cannot write the quarantine, nothing was stored: {exc}",
                reason="QuarantineUnavailable",
                headers={"Retry-After": str(self.limits.retry_after_secs)},
            ) from None
        self.quarantined_bytes += size


def _reason_label(exc: HTTPError) -> str:
    return exc.reason


def _client(request: Request) -> str:
    c = request.client
    return f"{c.host}:{c.port}" if c else ""
