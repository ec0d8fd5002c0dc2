"""``kaudit serve``: the HTTP server around the store.

* :class:`GroupCommitter` is the one :class:`Sink` every source hands batches to. A
  single writer thread takes every batch waiting, runs the transform chain over each,
  and makes them durable with one store append per cluster: concurrent webhook
  requests share one fsync (group commit). Each caller is answered when its batch is
  durable, or with the store's error.
* :func:`build_app` is the Starlette application: the webhook endpoint, ``/metrics``,
  ``/healthz``, ``/readyz``, the query API and the dashboard (``/ui``, see
  :mod:`kaudit.web.ui`), all API errors in one JSON shape.
* :func:`serve` runs it under uvicorn with TLS and client certificates, plus any other
  :class:`Source` (e.g. a file tailer) in the same event loop.

Extension points: a source is anything with ``name`` and ``async run(sink)``; a
transform is a callable ``list[Record] -> list[Record]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import shutil
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kaudit.config import ServeConfig, import_transform, resolve_store_path
from kaudit.errors import ConfigError, KauditError, StoreError, StoreFullError
from kaudit.model.codec import gc_paused
from kaudit.model.documents import Record
from kaudit.sources.webhook import AppendResultLike, Sink, WebhookEndpoint, WebhookLimits
from kaudit.web.auth import Authenticator
from kaudit.web.errors import EXCEPTION_HANDLERS, HTTPError, error_response
from kaudit.web.metrics import CONTENT_TYPE, ServeMetrics

log = logging.getLogger("kaudit.serve")

Transform = Callable[[list[Record]], list[Record]]


class Source(Protocol):
    """Something that produces audit records and hands them to a sink."""

    name: str

    async def run(self, sink: Sink) -> None: ...


class WriterLike(Protocol):
    def append(self, records: Iterable[Record], *, cluster: str = "") -> AppendResultLike: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# --- group commit ----------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    records: list[Record]
    cluster: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[AppendResultLike]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What happened to one batch. ``stored``/``duplicates`` are for its whole group commit."""

    received: int
    stored: int
    duplicates: int


class GroupCommitter:
    """The sink: one writer thread, one store append (one fsync) for many batches."""

    def __init__(
        self,
        writer: WriterLike,
        metrics: ServeMetrics,
        transforms: Sequence[Transform] = (),
        *,
        max_group_events: int = 50_000,
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self.transforms = list(transforms)
        self.max_group_events = max_group_events
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="kaudit-commit", daemon=True)
        self.last_error: BaseException | None = None
        self.disk_full = False
        # A store Writer can write Parquet segments on a background thread: an
        # acknowledgement then never waits for a flush (only for its WAL fsync).
        if getattr(writer, "flush_in_background", None) is False:
            setattr(writer, "flush_in_background", True)  # noqa: B010 - not in WriterLike

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish every batch already submitted, then close the writer."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.writer.close()

    async def __call__(self, records: list[Record], *, cluster: str = "") -> AppendResultLike:
        if not self._thread.is_alive():
            raise StoreError("the store writer is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[AppendResultLike] = loop.create_future()
        self._pending += 1
        self.metrics.pending_batches.set(self._pending)
        self._queue.put(_Batch(records, cluster, loop, fut))
        return await asyncio.shield(fut)

    def _done(self, fut: asyncio.Future[AppendResultLike], outcome: object) -> None:
        self._pending -= 1
        self.metrics.pending_batches.set(self._pending)
        if fut.done():
            return
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)  # type: ignore[arg-type]

    def _answer(self, batch: _Batch, outcome: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown)
            batch.loop.call_soon_threadsafe(self._done, batch.future, outcome)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            events = len(first.records)
            while events < self.max_group_events:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
                events += len(nxt.records)
            self._commit(group)

    def _transform(self, batch: _Batch) -> list[Record] | BaseException:
        records = batch.records
        for t in self.transforms:
            try:
                records = t(records)
            except Exception as exc:
                name = getattr(t, "__qualname__", repr(t))
                log.error(
                    "transform failed",
                    extra={
                        "fields": {
                            "transform": name,
                            "events": len(batch.records),
                            "error": repr(exc),
                        }
                    },
                )
                return KauditError(f"transform {name} failed: {exc}")
        return records

    def _commit(self, group: list[_Batch]) -> None:
        # Transforms and flattening allocate many short-lived containers next to the
        # group's live events: the cyclic GC would rescan them over and over.
        with gc_paused():
            self._commit_group(group)

    def _commit_group(self, group: list[_Batch]) -> None:
        by_cluster: dict[str, list[tuple[_Batch, list[Record]]]] = {}
        for batch in group:
            out = self._transform(batch)
            if isinstance(out, BaseException):
                self._answer(batch, out)
                continue
            by_cluster.setdefault(batch.cluster, []).append((batch, out))
        self.metrics.commit_batches.observe(len(group))
        for cluster, items in by_cluster.items():
            records = [r for _, recs in items for r in recs]
            try:
                result = self.writer.append(records, cluster=cluster)
            except BaseException as exc:  # answered, never swallowed
                self.last_error = exc
                self.disk_full = isinstance(exc, StoreFullError)
                log.warning(
                    "store append failed",
                    extra={
                        "fields": {
                            "cluster": cluster,
                            "batches": len(items),
                            "events": len(records),
                            "error": str(exc),
                        }
                    },
                )
                for batch, _ in items:
                    self._answer(batch, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.disk_full = False
            self.last_error = None
            self.metrics.events_stored.inc(result.stored)
            self.metrics.events_duplicate.inc(result.duplicates)
            for batch, recs in items:
                self._answer(batch, BatchResult(len(recs), result.stored, result.duplicates))


# --- detection -------------------------------------------------------------------


class DetectingWriter:
    """The store writer, plus: each batch it made durable is queued for detection."""

    def __init__(self, inner: WriterLike, detector: Any) -> None:
        self.inner = inner
        self.detector = detector

    def append(self, records: Iterable[Record], *, cluster: str = "") -> AppendResultLike:
        recs = records if isinstance(records, list) else list(records)
        result = self.inner.append(recs, cluster=cluster)
        self.detector.submit(recs, cluster=cluster, duplicates=result.duplicates)
        return result

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Settings such as flush_in_background belong to the wrapped writer.
        if name in ("inner", "detector"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)


def start_detection(config: ServeConfig, store_path: Path) -> Any:
    """The streaming detector of ``config`` (rules, allowlist, sinks) on the store.

    By default a :class:`~kaudit.detect.process.DetectorProcess` (detection in a child
    process, off the acknowledgement path's interpreter lock); with a false
    ``detect_process`` setting, a :class:`~kaudit.detect.stream.StreamingDetector` in a
    thread of this process.
    """
    if config.detect_process:
        from kaudit.detect.process import DetectorProcess, settings_for

        level = logging.getLevelName(logging.getLogger("kaudit").getEffectiveLevel())
        settings = settings_for(
            store_path,
            config.rules_dirs,
            config.allowlist_file,
            config.alert_sinks,
            log_level=level if isinstance(level, str) else "INFO",
        )
        # The settings were validated before serving: readiness does not wait for the
        # child to load its rules (batches queue meanwhile; a failure is logged, retried).
        return DetectorProcess(settings, wait_ready=False)
    from kaudit.detect.rule import load_rules
    from kaudit.detect.stream import StreamingDetector
    from kaudit.sinks import sink_from_spec

    rules = load_rules(config.rules_dirs, allowlist=config.allowlist_file)
    sinks = [sink_from_spec(spec) for spec in config.alert_sinks]
    return StreamingDetector(store_path, rules, sinks)


# --- logging ---------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("kaudit", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False


# --- the application -------------------------------------------------------------


@dataclass
class ServerState:
    config: ServeConfig
    store: Any
    committer: GroupCommitter
    metrics: ServeMetrics
    auth: Authenticator


def make_authenticator(config: ServeConfig) -> Authenticator:
    tokens = config.all_tokens()
    anonymous = None if config.authenticated else config.default_cluster
    return Authenticator(
        tokens,
        client_certificates=config.client_ca_file is not None,
        anonymous=anonymous,
        writers=config.write_identities,
        readers=config.read_identities,
    )


def _wal_bytes(root: Path) -> float:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(root / "wal"):
            if entry.name.endswith(".wal"):
                total += entry.stat().st_size
    return float(total)


def build_app(
    config: ServeConfig,
    store: Any,
    *,
    transforms: Sequence[Transform] = (),
    sources: Sequence[Source] = (),
    quarantine: Any = None,
) -> Starlette:
    """The ASGI app. ``store`` is an open :class:`kaudit.store.Store`; its writer is
    taken when the app starts (lifespan) and closed when it stops."""
    metrics = ServeMetrics()
    auth = make_authenticator(config)
    from kaudit.pipeline import builtin_transforms, tail_sources

    chain = (
        builtin_transforms(config)
        + list(transforms)
        + [import_transform(s) for s in config.transforms]
    )
    sources = [*tail_sources(config, Path(store.path)), *sources]
    _register_pipeline_metrics(metrics, chain, sources)
    holder: dict[str, Any] = {}

    def committer() -> GroupCommitter:
        c = holder.get("committer")
        if c is None:
            raise StoreError("the store writer is not running")
        assert isinstance(c, GroupCommitter)
        return c

    class _LazySink:
        @property
        def pending(self) -> int:
            c = holder.get("committer")
            return c.pending if c is not None else 0

        async def __call__(self, records: list[Record], *, cluster: str = "") -> AppendResultLike:
            return await committer()(records, cluster=cluster)

    sink = _LazySink()
    if quarantine is None:
        from kaudit.sources.quarantine import Quarantine, default_path

        quarantine = Quarantine(default_path(Path(store.path)))
    limits = WebhookLimits(
        max_body_bytes=config.max_body_bytes,
        max_inflight_bytes=config.max_inflight_bytes,
        max_pending_batches=config.max_pending_batches,
        retry_after_secs=config.retry_after_secs,
        quarantine_max_bytes=config.quarantine_max_bytes,
    )
    webhook = WebhookEndpoint(sink, auth, metrics, limits, quarantine)
    metrics.inflight_bytes._func = lambda: float(webhook.inflight_bytes)
    metrics.wal_backlog_bytes._func = lambda: _wal_bytes(Path(store.path))

    async def metrics_endpoint(request: Request) -> Response:
        text = metrics.render()
        det = holder.get("detector")
        if det is not None:
            text += det.render_metrics()
        return Response(text, media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        c = holder.get("committer")
        if c is None or not c.alive:
            return error_response(503, "not ready: the store writer is not running")
        if c.disk_full and not _has_room(Path(store.path)):
            # Behind a readiness probe no write arrives to clear the flag: look at the
            # disk itself, and be ready again once a batch would fit.
            return error_response(
                503,
                f"not ready: the store is full: {c.last_error}",
                headers={"Retry-After": str(config.retry_after_secs)},
            )
        return Response(b'{"status":"ready"}', media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer = await asyncio.to_thread(store.writer)
        detector = None
        if config.detect:
            try:
                detector = await asyncio.to_thread(start_detection, config, Path(store.path))
            except BaseException:
                await asyncio.to_thread(writer.close)
                raise
            holder["detector"] = detector
            writer = DetectingWriter(writer, detector)
        c = GroupCommitter(writer, metrics, chain)
        c.start()
        holder["committer"] = c
        tasks = [asyncio.create_task(_run_source(s, sink)) for s in sources]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            holder.pop("committer", None)
            await asyncio.to_thread(c.stop)
            if detector is not None:
                await asyncio.to_thread(detector.stop)
            close = getattr(quarantine, "close", None)
            if callable(close):
                close()

    routes: list[BaseRoute] = [
        Route(config.webhook_path, webhook.handle, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if config.query_api:
        routes += query_routes(store, auth, max_rows=config.query_max_rows)
        # The dashboard: pages under /ui (and / redirecting there), JSON twins under
        # /api/v1, with the same authentication as the API.
        from kaudit.web.ui.app import root_redirect, ui_routes

        routes += ui_routes(store, auth, metrics=metrics, tls=config.tls)
        routes.append(Route("/", root_redirect, methods=["GET"]))
    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.kaudit = ServerState(config, store, committer, metrics, auth)  # type: ignore[arg-type]
    app.state.metrics = metrics
    app.state.webhook = webhook
    app.state.holder = holder
    return app


async def _run_source(source: Source, sink: Sink) -> None:
    try:
        await source.run(sink)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("source stopped", extra={"fields": {"source": source.name, "error": repr(exc)}})


# --- the query API ---------------------------------------------------------------

QUERY_TIMEOUT_SECS = 30.0


class _SqlRequest(msgspec.Struct, forbid_unknown_fields=True):
    sql: str
    params: list[Any] | dict[str, Any] | None = None


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def run_sql(store: Any, sql: str, params: object, max_rows: int) -> dict[str, Any]:
    """Run ``sql`` on a fresh read-only connection: columns, rows, truncated."""
    con = store.connect()  # sandboxed: the store's files only (kaudit.store.reader)
    try:
        timer = threading.Timer(QUERY_TIMEOUT_SECS, con.interrupt)
        timer.start()
        try:
            rel = con.sql(sql, params=params) if params else con.sql(sql)
            if rel is None:
                raise HTTPError(400, "the statement returned no result: expected a query")
            reader = rel.to_arrow_reader(min(max_rows + 1, 65536))
            columns = list(reader.schema.names)
            rows: list[list[Any]] = []
            for batch in reader:
                rows.extend(list(r.values()) for r in batch.to_pylist())
                if len(rows) > max_rows:
                    break
        finally:
            timer.cancel()
    except (KauditError, HTTPError):
        raise
    except Exception as exc:
        raise HTTPError(400, f"query failed: {exc}", reason="QueryError") from None
    finally:
        con.close()
    truncated = len(rows) > max_rows
    return {
        "columns": columns,
        "rows": rows[:max_rows],
        "truncated": truncated,
    }


def query_routes(store: Any, auth: Authenticator, *, max_rows: int) -> list[Route]:
    """``POST /api/v1/sql {"sql": ..., "params": ...}`` -> ``{"columns", "rows", "truncated"}``."""

    async def sql_endpoint(request: Request) -> Response:
        auth.check(request.scope, "read")
        body = await request.body()
        try:
            req = msgspec.json.decode(body, type=_SqlRequest)
        except msgspec.DecodeError as exc:
            raise HTTPError(
                400, f'expected {{"sql": "...", "params": [...]}}: {exc}', reason="BadRequest"
            ) from None
        result = await asyncio.to_thread(run_sql, store, req.sql, req.params, max_rows)
        return Response(
            msgspec.json.encode(result, enc_hook=_jsonable), media_type="application/json"
        )

    routes = [Route("/api/v1/sql", sql_endpoint, methods=["POST"])]
    try:
        from kaudit.query.filters import Filters, select_sql
    except ImportError:  # the friendly filters are optional
        return routes

    names = (
        "user",
        "group",
        "verb",
        "resource",
        "namespace",
        "name",
        "code",
        "source_ip",
        "user_agent",
        "cluster",
    )

    async def events_endpoint(request: Request) -> Response:
        auth.check(request.scope, "read")
        q = request.query_params
        unknown = sorted(set(q) - set(names) - {"since", "until", "limit", "stage", "order"})
        if unknown:
            raise HTTPError(
                400,
                f"unknown query parameter(s) {', '.join(unknown)}: expected "
                f"{', '.join(names)}, since, until, stage, order, limit",
            )
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise HTTPError(400, f'limit: expected a number, got "{q.get("limit")}"') from None
        limit = max(1, min(limit, max_rows))
        kw: dict[str, Any] = {n: q.getlist(n) or None for n in names}
        f = Filters(**kw, since=q.get("since"), until=q.get("until"), stage=q.get("stage", "final"))
        try:
            compiled = select_sql(f, limit=limit, order=q.get("order", "desc"))
        except KauditError as exc:
            raise HTTPError(400, str(exc), reason="QueryError") from None
        result = await asyncio.to_thread(run_sql, store, compiled.sql, compiled.params, max_rows)
        return Response(
            msgspec.json.encode(result, enc_hook=_jsonable), media_type="application/json"
        )

    routes.append(Route("/api/v1/events", events_endpoint, methods=["GET"]))
    return routes


# --- TLS: the client certificate into the ASGI scope -----------------------------


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension for a connection (client cert verified by the handshake)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    name: str | None = None
    chain: list[str] = []
    if der:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        name = cert.subject.rfc4514_string()
        chain = [ssl.DER_cert_to_PEM_cert(der)]
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


def _tls_protocol_class() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TLSExtensionProtocol(H11Protocol):
        """h11, plus the verified client certificate in ``scope["extensions"]["tls"]``."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ext = tls_extension(transport.get_extra_info("ssl_object"))
            if ext is not None:
                inner = self.app

                async def app(scope: Any, receive: Any, send: Any) -> None:
                    if scope["type"] == "http":
                        scope.setdefault("extensions", {})["tls"] = ext
                    await inner(scope, receive, send)

                self.app = app

    return TLSExtensionProtocol


# --- running ---------------------------------------------------------------------


def uvicorn_config(config: ServeConfig, app: Starlette, **overrides: Any) -> Any:
    import uvicorn

    kwargs: dict[str, Any] = {
        "host": config.listen_address,
        "port": config.port,
        "log_config": None,
        "access_log": False,
        "http": _tls_protocol_class(),
        "lifespan": "on",
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    if config.tls:
        kwargs["ssl_certfile"] = str(config.tls_cert_file)
        kwargs["ssl_keyfile"] = str(config.tls_key_file)
        if config.client_ca_file is not None:
            kwargs["ssl_ca_certs"] = str(config.client_ca_file)
            # Optional at the handshake: a certificate that is presented must be signed by
            # the CA, but a client without one gets the application's 401 (and health
            # probes, which present none, reach /healthz and /readyz).
            kwargs["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    kwargs.update(overrides)
    return uvicorn.Config(app, **kwargs)


def _counted(parts: Sequence[object]) -> dict[tuple[str, ...], float]:
    """``counters()`` of each part that has them, by (name, what)."""
    out: dict[tuple[str, ...], float] = {}
    for part in parts:
        counters = getattr(part, "counters", None)
        if not callable(counters):
            continue
        name = str(getattr(part, "name", None) or getattr(part, "__name__", type(part).__name__))
        for what, n in counters().items():
            out[(name, str(what))] = float(n)
    return out


def _register_pipeline_metrics(
    metrics: ServeMetrics, chain: Sequence[object], sources: Sequence[object]
) -> None:
    from kaudit.web.metrics import Collected

    metrics.registry.register(
        Collected(
            "kaudit_transform_events_total",
            "Events a transform of the ingest pipeline acted on, by transform and outcome "
            "(policy: dropped, reshaped, above_capture; redact: redacted; truncate: "
            "truncated, dropped).",
            ["transform", "outcome"],
            lambda: _counted(chain),
        )
    )
    metrics.registry.register(
        Collected(
            "kaudit_source_total",
            "What the sources besides the webhook met, by source and kind (tail: bad_lines, "
            "failures, rotations).",
            ["source", "what"],
            lambda: _counted(sources),
        )
    )


def _has_room(path: Path, min_free_bytes: int = 1 << 20) -> bool:
    """Room to try writing again (a write that still fails is answered 503 again)."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return False
    return free >= min_free_bytes


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a ConfigError that says why not."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise ConfigError(
            f"listen_address/port: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(
    config: ServeConfig,
    *,
    sources: Sequence[Source] = (),
    transforms: Sequence[Transform] = (),
    ready: Callable[[int], None] | None = None,
) -> None:
    """Open the store and serve until SIGINT/SIGTERM. ``ready(port)`` once listening."""
    import uvicorn

    from kaudit.config import check_config
    from kaudit.store import open_store

    problems = check_config(config)
    if problems:
        raise ConfigError(
            problems[0] if len(problems) == 1 else f"{len(problems)} configuration problems",
            problems,
        )
    configure_logging(config.log_level)
    if config.tls is False and (config.tokens or config.tokens_file):
        log.warning(
            "bearer tokens over plain http: the apiserver sends tokens only to https URLs",
            extra={"fields": {"listen_address": config.listen_address}},
        )
    store = open_store(resolve_store_path(config))
    # Fail fast and plainly (no traceback from inside the server) on the two things
    # that most often stop it: another writer on the store, and a busy port.
    from kaudit.store.lock import WriterLock

    WriterLock(store.path).release()
    listener = _bind(config.listen_address, config.port)
    app = build_app(config, store, transforms=transforms, sources=sources)
    server = uvicorn.Server(uvicorn_config(config, app))

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = config.port
            for s in server.servers:
                for sock in s.sockets:
                    port = sock.getsockname()[1]
            log.info(
                "kaudit serve listening",
                extra={
                    "fields": {
                        "address": config.listen_address,
                        "port": port,
                        "tls": config.tls,
                        "webhook_path": config.webhook_path,
                        "store": str(store.path),
                    }
                },
            )
            if ready is not None:
                ready(port)
        await task

    asyncio.run(main())
    if not server.started:
        raise ConfigError(
            f"cannot listen on {config.listen_address}:{config.port} (see the log above)"
        )
