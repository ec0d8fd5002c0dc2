"""One JSON shape for every HTTP error kaudit answers.

::

    {"error": {"status": 413, "reason": "PayloadTooLarge",
               "message": "request body is larger than max_body_bytes (12582912)"}}

``reason`` is a stable, machine-readable word (CamelCase, like the Kubernetes
``Status.reason``); ``message`` is for a person and says what was wrong and what
was expected. Every route, the 404/405 of the router and unexpected exceptions
go through :func:`error_response`.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    411: "LengthRequired",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class HTTPError(Exception):
    """Raised inside a handler to answer with the JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or REASONS.get(status, "Error")
        self.headers = dict(headers or {})


def error_body(status: int, message: str, reason: str | None = None) -> bytes:
    return msgspec.json.encode(
        {
            "error": {
                "status": status,
                "reason": reason or REASONS.get(status, "Error"),
                "message": message,
            }
        }
    )


def error_response(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, message, reason),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error_response(exc.status, exc.message, reason=exc.reason, headers=exc.headers)


async def handle_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else REASONS.get(exc.status_code, "")
    if exc.status_code == 404:
        message = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    return error_response(500, f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS = {
    HTTPError: handle_http_error,
    HTTPException: handle_starlette_error,
    Exception: handle_unexpected,
}
