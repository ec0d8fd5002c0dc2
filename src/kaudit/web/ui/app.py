"""The dashboard's routes: pages under ``/ui``, their JSON twins under ``/api/v1``.

Every page is one *data* function (request → plain dict) rendered by a template; the
JSON twin returns the same dict. Pages authenticate with the session cookie (see
:mod:`.session`), a client certificate, or a bearer header, and redirect to the login
page otherwise; the JSON twins authenticate exactly like the rest of the API (bearer
token or client certificate; 401 in the one JSON error shape otherwise).

==================================  =========================================
page                                JSON twin
==================================  =========================================
``GET /ui``                         ``GET /api/v1/overview``
``GET /ui/search``                  ``GET /api/v1/search``
``GET /ui/search/export.jsonl|csv`` ``GET /api/v1/search/export.jsonl|csv``
``GET /ui/events/{audit_id}``       ``GET /api/v1/events/{audit_id}``
``GET /ui/history``                 ``GET /api/v1/history``
``GET /ui/timeline``                ``GET /api/v1/timeline``
``GET /ui/alerts``                  ``GET /api/v1/alerts``
``POST /ui/alerts/{id}/state``      ``POST /api/v1/alerts/{id}/state``
``GET|POST /ui/policy``             ``POST /api/v1/policy/check``
==================================  =========================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from kaudit.errors import KauditError, QueryError
from kaudit.web.auth import Authenticator, Identity
from kaudit.web.errors import HTTPError
from kaudit.web.ui import charts
from kaudit.web.ui.alertstate import STATES, AlertStates
from kaudit.web.ui.pages import alerts as alerts_page
from kaudit.web.ui.pages import event as event_page
from kaudit.web.ui.pages import history as history_page
from kaudit.web.ui.pages import overview as overview_page
from kaudit.web.ui.pages import policy as policy_page
from kaudit.web.ui.pages import search as search_page
from kaudit.web.ui.pages import timeline as timeline_page
from kaudit.web.ui.session import COOKIE, LOGIN_CSRF_COOKIE, SESSION_TTL_SECS, Sessions
from kaudit.web.ui.span import ResultCache, data_version, open_span
from kaudit.web.ui.timerange import PRESETS, TimeRange, newest_event, resolve

HERE: Final = Path(__file__).parent
PREFIX: Final = "/ui"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NAV: Final = (
    ("overview", "Overview", PREFIX),
    ("search", "Search", PREFIX + "/search"),
    ("alerts", "Alerts", PREFIX + "/alerts"),
    ("timeline", "Timeline", PREFIX + "/timeline"),
    ("history", "History", PREFIX + "/history"),
    ("policy", "Policy", PREFIX + "/policy"),
)

Data = dict[str, Any]


@dataclass
class UI:
    """Everything the routes share."""

    store: Any
    auth: Authenticator
    metrics: Any | None = None
    tls: bool = False
    sessions: Sessions = field(default_factory=Sessions)
    started: float = field(default_factory=time.monotonic)
    cache: ResultCache = field(default_factory=ResultCache)
    env: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(HERE / "templates")),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            nav=NAV,
            presets=PRESETS,
            charts=charts,
            prefix=PREFIX,
            states=STATES,
            qs=_qs,
            fmt_pct=lambda v: f"{100 * float(v):.1f}%",
            pairs=lambda items, k, v: [(str(i[k]), float(i[v])) for i in items],
        )
        self.alert_states = AlertStates.for_store(self.store.path)

    # --- connections -------------------------------------------------------------

    def connect(self, *, sandbox: bool = False) -> Any:
        """A fresh read-only connection; with ``sandbox`` (a user's own SQL) files outside
        the store are out of reach and the configuration is locked."""
        # Every store connection is sandboxed (kaudit.store.reader.connect).
        return self.store.connect()

    def with_con(self, fn: Callable[[Any], Data], *, sandbox: bool = False) -> Data:
        con = self.connect(sandbox=sandbox)
        try:
            return fn(con)
        finally:
            con.close()

    # --- identity ----------------------------------------------------------------

    def identity(self, request: Request) -> tuple[Identity, str | None]:
        """The caller and their session id; :class:`HTTPError` 401/403 otherwise."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is not None:
            ident, sid = session.identity, session.id
        else:
            ident, sid = self.auth.authenticate(request.scope), None
        self.auth.authorize(ident, "read")
        return ident, sid

    def csrf_subject(self, ident: Identity, sid: str | None) -> str:
        return sid if sid is not None else f"identity:{ident.method}:{ident.name}"

    # --- rendering ---------------------------------------------------------------

    def render(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _qs(base: dict[str, Any] | None = None, **changes: Any) -> str:
    merged = {k: v for k, v in (base or {}).items() if v not in (None, "", [])}
    for k, v in changes.items():
        if v in (None, ""):
            merged.pop(k, None)
        else:
            merged[k] = v
    return urlencode(merged, doseq=True)


def _enc(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def json_response(data: object, status: int = 200) -> Response:
    return Response(
        msgspec.json.encode(data, enc_hook=_enc),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _range(ui: UI, con: Any, request: Request, default: str = "24h") -> TimeRange:
    q = request.query_params
    return resolve(q.get("since"), q.get("until"), newest_event(con), default=default)


def _safe_next(value: str | None) -> str:
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


# --- the data of each page (the JSON twins) ----------------------------------------


def overview_data(ui: UI, request: Request) -> Data:
    """The overview's panels come from the cache while the store is unchanged (its
    manifest head and write-ahead log size) and the range's presets resolve alike."""
    q = request.query_params
    cluster = (q.get("cluster") or "").strip() or None
    now = datetime.now(UTC)
    key = (
        "overview",
        data_version(ui.store.path),
        (q.get("since") or "").strip(),
        (q.get("until") or "").strip(),
        cluster,
        now.replace(second=0, microsecond=0),  # presets of a live store move each minute
    )
    data = ui.cache.get(key)
    if data is None:
        span = open_span(ui.store.path)
        try:
            newest = (
                datetime.fromtimestamp(span.newest_us / 1e6, UTC)
                if span.newest_us is not None
                else None
            )
            rng = resolve(q.get("since"), q.get("until"), newest, now=now)
            data = overview_page.panels(span, rng, cluster)
        finally:
            span.close()
        ui.cache.put(key, data)
    return overview_page.finish(data, metrics=ui.metrics, started=ui.started, now=now)


def search_data(ui: UI, request: Request) -> Data:
    form = search_page.parse_form(request.query_params)
    return ui.with_con(lambda con: search_page.search(con, form), sandbox=True)


def event_data(ui: UI, request: Request) -> Data:
    audit_id = request.path_params["audit_id"]
    return ui.with_con(lambda con: event_page.event(con, audit_id))


def history_data(ui: UI, request: Request) -> Data:
    q = request.query_params
    obj = (q.get("object") or "").strip()
    if not obj:
        return {"object": None, "namespace": None, "range": None, "requests": [], "changes": 0}
    rng = None
    if q.get("since") or q.get("until"):
        rng = ui.with_con(lambda con: {"r": _range(ui, con, request)})["r"]
    return history_page.history(ui.store, obj, q.get("namespace"), rng, q.get("cluster"))


def timeline_data(ui: UI, request: Request) -> Data:
    q = request.query_params
    user = (q.get("user") or "").strip()
    rng = ui.with_con(lambda con: {"r": _range(ui, con, request, default="7d")})["r"]
    if not user:
        return {"user": None, "range": rng.to_dict(), "rows": [], "truncated": False, "requests": 0}
    return timeline_page.timeline(ui.store, user, rng, q.get("cluster"))


def alerts_data(ui: UI, request: Request) -> Data:
    q = request.query_params
    rules = [r for r in q.getlist("rule") if r.strip()]
    return alerts_page.alerts(
        ui.store.path,
        rules=rules,
        severity=(q.get("severity") or "").strip() or None,
        state=(q.get("state") or "").strip() or None,
    )


def policy_data(ui: UI, data: bytes, source: str) -> Data:
    if len(data) > policy_page.MAX_POLICY_BYTES:
        raise QueryError(
            f"{source}: the policy is {len(data)} bytes: expected at most "
            f"{policy_page.MAX_POLICY_BYTES}"
        )
    if not data.strip():
        raise QueryError(f"{source}: the policy is empty: expected an audit.k8s.io/v1 Policy")
    return policy_page.check_policy(ui.store.path, data, source)


# --- route factories ----------------------------------------------------------------

DataFn = Callable[[UI, Request], Data]


def _status_of(exc: KauditError) -> int:
    return 404 if isinstance(exc, event_page.NotFound) else 400


def api_route(ui: UI, path: str, fn: DataFn) -> Route:
    async def endpoint(request: Request) -> Response:
        ui.auth.check(request.scope, "read")
        try:
            data = await asyncio.to_thread(fn, ui, request)
        except KauditError as exc:
            status = _status_of(exc)
            raise HTTPError(
                status, str(exc), reason="QueryError" if status == 400 else None
            ) from None
        return json_response(data)

    return Route(path, endpoint, methods=["GET"])


PageHandler = Callable[[Request, Identity, str | None], Awaitable[Response]]


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303)


def guarded(ui: UI, handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate a page: redirect to the login page on 401, an HTML error on 403."""

    async def endpoint(request: Request) -> Response:
        try:
            ident, sid = ui.identity(request)
        except HTTPError as exc:
            if exc.status == 401:
                return _login_redirect(request)
            return ui.render(
                "error.html",
                exc.status,
                title="Forbidden",
                message=exc.message,
                page="",
                identity=None,
                csrf="",
            )
        return await handler(request, ident, sid)

    return endpoint


def page_route(ui: UI, path: str, name: str, template: str, fn: DataFn) -> Route:
    async def handler(request: Request, ident: Identity, sid: str | None) -> Response:
        ctx = _ctx(ui, request, name, ident, sid)
        try:
            data = await asyncio.to_thread(fn, ui, request)
        except KauditError as exc:
            return ui.render(template, _status_of(exc), error=str(exc), data=None, **ctx)
        return ui.render(template, data=data, error=None, **ctx)

    return Route(path, guarded(ui, handler), methods=["GET"])


def _ctx(ui: UI, request: Request, page: str, ident: Identity, sid: str | None) -> dict[str, Any]:
    return {
        "page": page,
        "identity": ident,
        "csrf": ui.sessions.csrf_token(ui.csrf_subject(ident, sid)),
        "params": dict(request.query_params),
        "query": request.query_params,
        "path": request.url.path,
        "full_path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "logged_in": sid is not None,
    }


# --- login ---------------------------------------------------------------------------


def login_routes(ui: UI) -> list[Route]:
    def cookie_kw() -> dict[str, Any]:
        return {"httponly": True, "samesite": "strict", "secure": ui.tls, "path": "/"}

    def login_form(next_url: str, error: str | None, status: int = 200) -> Response:
        nonce = ui.sessions.login_nonce()
        resp = ui.render(
            "login.html",
            status,
            next=next_url,
            error=error,
            csrf=nonce,
            page="login",
            identity=None,
            certificates=ui.auth.client_certificates,
        )
        resp.set_cookie(LOGIN_CSRF_COOKIE, nonce, max_age=3600, **cookie_kw())
        return resp

    async def login_get(request: Request) -> Response:
        return login_form(_safe_next(request.query_params.get("next")), None)

    async def login_post(request: Request) -> Response:
        form = await request.form()
        next_url = _safe_next(str(form.get("next") or ""))
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        given = str(form.get("csrf") or "")
        if not expected or not given or expected != given:
            return login_form(next_url, "the form expired: log in again", 403)
        token = str(form.get("token") or "").strip()
        if not token:
            return login_form(next_url, "token: expected the bearer token of an API identity", 400)
        scope = {"headers": [(b"authorization", f"Bearer {token}".encode("utf-8", "replace"))]}
        try:
            ident = ui.auth.authenticate(scope)
            ui.auth.authorize(ident, "read")
        except HTTPError as exc:
            return login_form(next_url, exc.message, exc.status)
        _, cookie = ui.sessions.create(ident)
        resp = RedirectResponse(next_url, status_code=303)
        resp.set_cookie(COOKIE, cookie, max_age=int(SESSION_TTL_SECS), **cookie_kw())
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return resp

    async def logout(request: Request) -> Response:
        form = await request.form()
        session = ui.sessions.get(request.cookies.get(COOKIE))
        if session is not None and ui.sessions.check_csrf(session.id, str(form.get("csrf") or "")):
            ui.sessions.end(request.cookies.get(COOKIE))
        resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    return [
        Route(f"{PREFIX}/login", login_get, methods=["GET"]),
        Route(f"{PREFIX}/login", login_post, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
    ]


# --- state-changing forms ------------------------------------------------------------


def _alert_state(ui: UI, alert_id: str, state: str, by: Identity, note: str) -> Data:
    if state not in STATES:
        raise QueryError(f"state: unknown value {state!r}: expected one of {', '.join(STATES)}")
    if alerts_page.find(ui.store.path, alert_id) is None:
        raise event_page.NotFound(f"alert {alert_id!r}: no such alert")
    d = ui.alert_states.set(alert_id, state, f"{by.name} ({by.method})", note)
    return {"id": d.id, "state": d.state, "by": d.by, "at": d.at, "note": d.note}


def form_routes(ui: UI) -> list[Route]:
    async def alert_state_post(request: Request, ident: Identity, sid: str | None) -> Response:
        form = await request.form()
        if not ui.sessions.check_csrf(ui.csrf_subject(ident, sid), str(form.get("csrf") or "")):
            return ui.render(
                "error.html",
                403,
                title="Forbidden",
                message="the form's CSRF token is missing or wrong: reload the page and retry",
                **_ctx(ui, request, "alerts", ident, sid),
            )
        alert_id = request.path_params["alert_id"]
        try:
            await asyncio.to_thread(
                _alert_state,
                ui,
                alert_id,
                str(form.get("state") or ""),
                ident,
                str(form.get("note") or ""),
            )
        except KauditError as exc:
            return ui.render(
                "error.html",
                _status_of(exc),
                title="Cannot change the alert",
                message=str(exc),
                **_ctx(ui, request, "alerts", ident, sid),
            )
        back = _safe_next(str(form.get("next") or "")) or f"{PREFIX}/alerts"
        return RedirectResponse(back, status_code=303)

    async def policy_post(request: Request, ident: Identity, sid: str | None) -> Response:
        ctx = _ctx(ui, request, "policy", ident, sid)
        async with request.form(max_part_size=policy_page.MAX_POLICY_BYTES + 1) as form:
            if not ui.sessions.check_csrf(ui.csrf_subject(ident, sid), str(form.get("csrf") or "")):
                return ui.render(
                    "error.html",
                    403,
                    title="Forbidden",
                    message="the form's CSRF token is missing or wrong: reload the page and retry",
                    **ctx,
                )
            text = str(form.get("policy") or "")
            upload = form.get("file")
            source = "pasted policy"
            data = text.encode()
            if upload is not None and not isinstance(upload, str) and upload.filename:
                data = await upload.read(policy_page.MAX_POLICY_BYTES + 1)
                source = upload.filename
                text = data.decode("utf-8", "replace")
        try:
            result = await asyncio.to_thread(policy_data, ui, data, source)
        except KauditError as exc:
            return ui.render("policy.html", 400, data=None, error=str(exc), text=text, **ctx)
        return ui.render("policy.html", data=result, error=None, text=text, **ctx)

    async def policy_get(request: Request, ident: Identity, sid: str | None) -> Response:
        ctx = _ctx(ui, request, "policy", ident, sid)
        return ui.render("policy.html", data=None, error=None, text="", **ctx)

    return [
        Route(
            f"{PREFIX}/alerts/{{alert_id}}/state", guarded(ui, alert_state_post), methods=["POST"]
        ),
        Route(f"{PREFIX}/policy", guarded(ui, policy_get), methods=["GET"]),
        Route(f"{PREFIX}/policy", guarded(ui, policy_post), methods=["POST"]),
    ]


def api_form_routes(ui: UI) -> list[Route]:
    class StateBody(msgspec.Struct, forbid_unknown_fields=True):
        state: str
        note: str = ""

    async def alert_state(request: Request) -> Response:
        ident = ui.auth.check(request.scope, "read")
        try:
            body = msgspec.json.decode(await request.body(), type=StateBody)
        except msgspec.DecodeError as exc:
            raise HTTPError(
                400, f'expected {{"state": "acknowledged", "note": "..."}}: {exc}'
            ) from None
        try:
            d = await asyncio.to_thread(
                _alert_state, ui, request.path_params["alert_id"], body.state, ident, body.note
            )
        except KauditError as exc:
            raise HTTPError(_status_of(exc), str(exc)) from None
        return json_response(d)

    async def policy_check(request: Request) -> Response:
        ui.auth.check(request.scope, "read")
        data = await request.body()
        try:
            result = await asyncio.to_thread(policy_data, ui, data, "request body")
        except KauditError as exc:
            raise HTTPError(400, str(exc), reason="QueryError") from None
        return json_response(result)

    return [
        Route("/api/v1/alerts/{alert_id}/state", alert_state, methods=["POST"]),
        Route("/api/v1/policy/check", policy_check, methods=["POST"]),
    ]


# --- exports ---------------------------------------------------------------------------


def _export(ui: UI, request: Request, kind: str) -> Response:
    form = search_page.parse_form(request.query_params)
    con = ui.connect(sandbox=True)
    try:
        gen = (
            search_page.export_jsonl(con, form)
            if kind == "jsonl"
            else search_page.export_csv(con, form)
        )
        first = next(gen, b"")
    except BaseException:
        con.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from gen
        finally:
            con.close()

    media = "application/x-ndjson" if kind == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="kaudit-events.{kind}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def export_routes(ui: UI) -> list[Route]:
    def make(kind: str, api: bool) -> Route:
        async def page(request: Request, ident: Identity, sid: str | None) -> Response:
            try:
                return await asyncio.to_thread(_export, ui, request, kind)
            except KauditError as exc:
                return ui.render(
                    "error.html",
                    400,
                    title="Export failed",
                    message=str(exc),
                    **_ctx(ui, request, "search", ident, sid),
                )

        async def api_endpoint(request: Request) -> Response:
            ui.auth.check(request.scope, "read")
            try:
                return await asyncio.to_thread(_export, ui, request, kind)
            except KauditError as exc:
                raise HTTPError(400, str(exc), reason="QueryError") from None

        if api:
            return Route(f"/api/v1/search/export.{kind}", api_endpoint, methods=["GET"])
        return Route(f"{PREFIX}/search/export.{kind}", guarded(ui, page), methods=["GET"])

    return [make(k, api) for k in ("jsonl", "csv") for api in (False, True)]


# --- everything ------------------------------------------------------------------------

PAGES: Final[tuple[tuple[str, str, str, str, DataFn], ...]] = (
    # name, page path, JSON path, template, data
    ("overview", PREFIX, "/api/v1/overview", "overview.html", overview_data),
    ("search", PREFIX + "/search", "/api/v1/search", "search.html", search_data),
    (
        "event",
        PREFIX + "/events/{audit_id}",
        "/api/v1/events/{audit_id}",
        "event.html",
        event_data,
    ),
    ("history", PREFIX + "/history", "/api/v1/history", "history.html", history_data),
    ("timeline", PREFIX + "/timeline", "/api/v1/timeline", "timeline.html", timeline_data),
    ("alerts", PREFIX + "/alerts", "/api/v1/alerts", "alerts.html", alerts_data),
)


def ui_routes(
    store: Any,
    auth: Authenticator,
    *,
    metrics: Any | None = None,
    tls: bool = False,
    sessions: Sessions | None = None,
) -> list[BaseRoute]:
    """Every dashboard route (pages, JSON twins, login, static assets)."""
    ui = UI(store, auth, metrics=metrics, tls=tls, sessions=sessions or Sessions())
    routes: list[BaseRoute] = [
        Mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    ]
    routes += login_routes(ui)
    routes += export_routes(ui)
    routes += form_routes(ui)
    routes += api_form_routes(ui)
    for name, page_path, api_path, template, fn in PAGES:
        routes.append(page_route(ui, page_path, name, template, fn))
        routes.append(api_route(ui, api_path, fn))

    async def slash(request: Request) -> Response:
        return RedirectResponse(PREFIX, status_code=307)

    routes.append(Route(PREFIX + "/", slash, methods=["GET"]))
    return routes


async def root_redirect(request: Request) -> Response:
    """``/`` → ``/ui``."""
    return RedirectResponse(PREFIX, status_code=307)


__all__ = ["PREFIX", "UI", "root_redirect", "ui_routes"]
