"""The flat schema: one row per audit event, the same columns everywhere.

CLI filters, SQL, detection rules, the HTTP API and the dashboard all speak these
column names. This table is the public contract; ``docs/schema.md`` is generated
from it and a test fails when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql_type: str  # DuckDB type
    source: str  # where the value comes from in the audit event
    doc: str  # meaning and null rules


COLUMNS: Final[tuple[Column, ...]] = (
    Column(
        "ts",
        "TIMESTAMP WITH TIME ZONE",
        "requestReceivedTimestamp",
        "When the request reached the apiserver (UTC, microseconds). For events without it "
        "(hand-written or trimmed exports) the stage timestamp; never null.",
    ),
    Column(
        "stage_ts",
        "TIMESTAMP WITH TIME ZONE",
        "stageTimestamp",
        "When this stage's event was emitted (UTC, microseconds); null when absent.",
    ),
    Column("audit_id", "VARCHAR", "auditID", "Per-request ID shared by all stages; '' if absent."),
    Column(
        "stage",
        "VARCHAR",
        "stage",
        "RequestReceived, ResponseStarted, ResponseComplete or Panic.",
    ),
    Column("level", "VARCHAR", "level", "Metadata, Request or RequestResponse."),
    Column(
        "verb",
        "VARCHAR",
        "verb",
        "Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection, "
        "proxy) or the lower-cased HTTP method for non-resource requests.",
    ),
    Column("request_uri", "VARCHAR", "requestURI", "Path and query exactly as sent."),
    Column(
        "username",
        "VARCHAR",
        "user.username",
        "The authenticated user (before impersonation); '' after failed authentication.",
    ),
    Column("groups", "VARCHAR[]", "user.groups", "The authenticated user's groups; [] if none."),
    Column(
        "impersonated_user",
        "VARCHAR",
        "impersonatedUser.username",
        "The identity assumed through impersonation; null when not impersonating.",
    ),
    Column(
        "source_ip",
        "VARCHAR",
        "sourceIPs[0]",
        "The first source IP (the X-Forwarded-For client when present); null if none.",
    ),
    Column("source_ips", "VARCHAR[]", "sourceIPs", "All source IPs in order; [] if none."),
    Column("user_agent", "VARCHAR", "userAgent", "The User-Agent header; null if absent."),
    Column(
        "api_group",
        "VARCHAR",
        "objectRef.apiGroup",
        "API group; '' for the core group; null for non-resource requests.",
    ),
    Column("api_version", "VARCHAR", "objectRef.apiVersion", "API version; null if absent."),
    Column(
        "resource",
        "VARCHAR",
        "objectRef.resource",
        "Resource (plural, e.g. pods); null for non-resource requests.",
    ),
    Column(
        "subresource",
        "VARCHAR",
        "objectRef.subresource",
        "Subresource (exec, log, status, ...); null if none.",
    ),
    Column(
        "namespace",
        "VARCHAR",
        "objectRef.namespace",
        "Namespace; null for cluster-scoped objects, all-namespace lists and non-resource "
        "requests.",
    ),
    Column("name", "VARCHAR", "objectRef.name", "Object name; null when the request has none."),
    Column(
        "code",
        "INTEGER",
        "responseStatus.code",
        "HTTP status code; null when not yet known (RequestReceived).",
    ),
    Column("status_reason", "VARCHAR", "responseStatus.reason", "Status reason; null if absent."),
    Column(
        "status_message", "VARCHAR", "responseStatus.message", "Status message; null if absent."
    ),
    Column(
        "decision",
        "VARCHAR",
        "annotations['authorization.k8s.io/decision']",
        "allow or forbid; null when no authorization decision was recorded.",
    ),
    Column(
        "authz_reason",
        "VARCHAR",
        "annotations['authorization.k8s.io/reason']",
        "The authorizer's reason ('' for system:masters); null if absent.",
    ),
    Column(
        "annotations",
        "MAP(VARCHAR, VARCHAR)",
        "annotations",
        "All audit annotations (not the object's own annotations); empty map if none.",
    ),
    Column(
        "request_object",
        "VARCHAR",
        "requestObject",
        "The request body as JSON text (level Request or above); null if not recorded.",
    ),
    Column(
        "response_object",
        "VARCHAR",
        "responseObject",
        "The response body as JSON text (level RequestResponse); null if not recorded.",
    ),
    Column(
        "cluster",
        "VARCHAR",
        "(kaudit)",
        "Which cluster sent the event: the receiver's token/certificate name or "
        "`ingest --cluster`; '' if not given.",
    ),
    Column(
        "event",
        "VARCHAR",
        "(the whole event)",
        "The complete original event as received, one JSON line without the newline: an "
        "export reproduces it byte for byte.",
    ),
)

COLUMN_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in COLUMNS)
BY_NAME: Final[dict[str, Column]] = {c.name: c for c in COLUMNS}

__all__ = ["BY_NAME", "COLUMNS", "COLUMN_NAMES", "Column"]
