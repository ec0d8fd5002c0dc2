"""The row tests the overview's panels share, as SQL over the flat schema.

Both the scans of :mod:`kaudit.web.ui.pages.overview` and the per-segment rollups of
:mod:`kaudit.web.ui.rollups` use these, so the two answer with the same rows.
"""

from __future__ import annotations

from typing import Final

STREAMING: Final = ("exec", "attach", "portforward")
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
WRITE_VERBS: Final = ("create", "update", "patch", "delete", "deletecollection")

#: The row that stands for a request in the overview's counts (see the overview's doc).
REQUEST: Final = (
    "(stage IN ('ResponseComplete', 'Panic') OR (stage = 'ResponseStarted' AND code = 401))"
)
#: The anonymous identity: the apiserver's anonymous authenticator gives the user
#: ``system:anonymous`` (with the group ``system:unauthenticated``).
ANONYMOUS: Final = "username = 'system:anonymous'"
SECRET_READ: Final = (
    "resource = 'secrets' AND subresource IS NULL AND verb IN ('get', 'list', 'watch')"
)
RBAC_WRITE: Final = (
    f"api_group = '{RBAC_GROUP}' AND verb IN ({', '.join(repr(v) for v in WRITE_VERBS)})"
)
STREAM: Final = f"subresource IN ({', '.join(repr(v) for v in STREAMING)})"
#: What a denied request is shown as: its resource (and subresource), or its URI.
DENIED_TARGET: Final = "coalesce(resource || coalesce('/' || subresource, ''), request_uri)"
#: The path of a request URI (the query string cut off).
PATH: Final = "split_part(request_uri, '?', 1)"

#: Latency: ``stage_ts - ts`` of a completed request, in microseconds.
LAT_US: Final = "(epoch_us(stage_ts) - epoch_us(ts))"
LAT_WHERE: Final = (
    "stage = 'ResponseComplete' AND stage_ts IS NOT NULL AND verb <> 'watch' "
    "AND NOT list_contains(['exec', 'attach', 'portforward', 'proxy', 'log'], "
    "coalesce(subresource, ''))"
)
LAT_RES: Final = "coalesce(resource || coalesce('/' || subresource, ''), '(non-resource)')"

#: The columns of the session and RBAC-change lists (besides ``cluster``).
SESSION_COLS: Final = (
    "ts, stage, audit_id, username, namespace, name, subresource, code, request_uri"
)
RBAC_COLS: Final = "ts, audit_id, username, verb, resource, namespace, name, code"

__all__ = [
    "ANONYMOUS",
    "DENIED_TARGET",
    "LAT_RES",
    "LAT_US",
    "LAT_WHERE",
    "PATH",
    "RBAC_COLS",
    "RBAC_GROUP",
    "RBAC_WRITE",
    "REQUEST",
    "SECRET_READ",
    "SESSION_COLS",
    "STREAM",
    "STREAMING",
    "WRITE_VERBS",
]
