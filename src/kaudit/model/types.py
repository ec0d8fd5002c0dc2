"""audit.k8s.io/v1 types, field for field and in the apiserver's serialisation order.

Python attribute names are snake_case; the JSON names are exactly the apiserver's
(``auditID``, ``sourceIPs``, ``objectRef``...). Fields the apiserver marks
``omitempty`` default to :data:`msgspec.UNSET`, so the encoder leaves them out;
the others (``level``, ``auditID``, ``stage``, ``requestURI``, ``verb``, ``user``
and the two timestamps) are always written, as Go does.

``requestObject`` and ``responseObject`` stay :class:`msgspec.Raw` (the JSON bytes
as received) until someone asks for them: most readers never do.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType, field

API_GROUP: Final = "audit.k8s.io"
API_VERSION: Final = "audit.k8s.io/v1"

LEVEL_NONE: Final = "None"
LEVEL_METADATA: Final = "Metadata"
LEVEL_REQUEST: Final = "Request"
LEVEL_REQUEST_RESPONSE: Final = "RequestResponse"
LEVELS: Final = (LEVEL_NONE, LEVEL_METADATA, LEVEL_REQUEST, LEVEL_REQUEST_RESPONSE)

STAGE_REQUEST_RECEIVED: Final = "RequestReceived"
STAGE_RESPONSE_STARTED: Final = "ResponseStarted"
STAGE_RESPONSE_COMPLETE: Final = "ResponseComplete"
STAGE_PANIC: Final = "Panic"
STAGES: Final = (
    STAGE_REQUEST_RECEIVED,
    STAGE_RESPONSE_STARTED,
    STAGE_RESPONSE_COMPLETE,
    STAGE_PANIC,
)

_LEVEL_RANK: Final = {LEVEL_NONE: 0, LEVEL_METADATA: 1, LEVEL_REQUEST: 2, LEVEL_REQUEST_RESPONSE: 3}


def level_rank(level: str) -> int:
    """Order of levels: None < Metadata < Request < RequestResponse; unknown ranks as None."""
    return _LEVEL_RANK.get(level, 0)


def level_less(a: str, b: str) -> bool:
    return level_rank(a) < level_rank(b)


class UserInfo(Struct, kw_only=True):
    """``user`` / ``impersonatedUser``: every sub-field omitempty (``{}`` when empty)."""

    username: str | UnsetType = UNSET
    uid: str | UnsetType = UNSET
    groups: list[str] | UnsetType = UNSET
    extra: dict[str, list[str]] | UnsetType = UNSET


class ObjectReference(Struct, kw_only=True):
    """``objectRef``: all fields omitempty, in the apiserver's order."""

    resource: str | UnsetType = UNSET
    namespace: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    uid: str | UnsetType = UNSET
    api_group: str | UnsetType = field(default=UNSET, name="apiGroup")
    api_version: str | UnsetType = field(default=UNSET, name="apiVersion")
    resource_version: str | UnsetType = field(default=UNSET, name="resourceVersion")
    subresource: str | UnsetType = UNSET


class Status(Struct, kw_only=True):
    """``responseStatus`` (meta/v1 Status). ``metadata`` is always written (``{}``)."""

    kind: str | UnsetType = UNSET
    api_version: str | UnsetType = field(default=UNSET, name="apiVersion")
    metadata: Raw = field(default_factory=lambda: Raw(b"{}"))
    status: str | UnsetType = UNSET
    message: str | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    details: Raw | UnsetType = UNSET
    code: int | UnsetType = UNSET


class AuthenticationMetadata(Struct, kw_only=True):
    impersonation_constraint: str | UnsetType = field(default=UNSET, name="impersonationConstraint")


class Event(Struct, kw_only=True):
    """One audit event (``kind: Event``, ``apiVersion: audit.k8s.io/v1``).

    ``kind`` and ``api_version`` are read (to reject what is not an event) but never
    kept: the encoder writes them, or not, as the output format requires. The
    v1beta1-era ``timestamp`` and ``metadata`` are read only to fill in the v1
    timestamps (see :func:`kaudit.model.codec.decode_event`).
    """

    kind: str | UnsetType = UNSET
    api_version: str | UnsetType = field(default=UNSET, name="apiVersion")
    level: str = ""
    audit_id: str = field(default="", name="auditID")
    stage: str = ""
    request_uri: str = field(default="", name="requestURI")
    verb: str = ""
    user: UserInfo = field(default_factory=UserInfo)
    impersonated_user: UserInfo | UnsetType = field(default=UNSET, name="impersonatedUser")
    authentication_metadata: AuthenticationMetadata | UnsetType = field(
        default=UNSET, name="authenticationMetadata"
    )
    source_ips: list[str] | UnsetType = field(default=UNSET, name="sourceIPs")
    user_agent: str | UnsetType = field(default=UNSET, name="userAgent")
    object_ref: ObjectReference | UnsetType = field(default=UNSET, name="objectRef")
    response_status: Status | UnsetType = field(default=UNSET, name="responseStatus")
    request_object: Raw | UnsetType = field(default=UNSET, name="requestObject")
    response_object: Raw | UnsetType = field(default=UNSET, name="responseObject")
    request_received_timestamp: str | None = field(default=None, name="requestReceivedTimestamp")
    stage_timestamp: str | None = field(default=None, name="stageTimestamp")
    annotations: dict[str, str] | UnsetType = UNSET
    # v1beta1 only; consumed by the decoder, never written.
    timestamp: str | UnsetType = UNSET
    metadata: Raw | UnsetType = UNSET

    # --- convenience accessors (no allocation on the hot path) -------------------

    @property
    def username(self) -> str:
        u = self.user.username
        return u if u is not UNSET else ""

    @property
    def groups(self) -> list[str]:
        g = self.user.groups
        return g if g is not UNSET else []

    @property
    def namespace(self) -> str:
        ref = self.object_ref
        if ref is UNSET or ref.namespace is UNSET:
            return ""
        return ref.namespace

    @property
    def code(self) -> int | None:
        st = self.response_status
        if st is UNSET or st.code is UNSET:
            return None
        return st.code

    def request_json(self) -> object:
        """The request body as Python data (decoded on demand), or ``None``."""
        if self.request_object is UNSET:
            return None
        return msgspec.json.decode(self.request_object)

    def response_json(self) -> object:
        """The response body as Python data (decoded on demand), or ``None``."""
        if self.response_object is UNSET:
            return None
        return msgspec.json.decode(self.response_object)


class ListMeta(Struct, kw_only=True):
    self_link: str | UnsetType = field(default=UNSET, name="selfLink")
    resource_version: str | UnsetType = field(default=UNSET, name="resourceVersion")
    continue_: str | UnsetType = field(default=UNSET, name="continue")
    remaining_item_count: int | UnsetType = field(default=UNSET, name="remainingItemCount")


class EventList(Struct, kw_only=True):
    """``kind: EventList``: what the webhook backend POSTs."""

    kind: str | UnsetType = UNSET
    api_version: str | UnsetType = field(default=UNSET, name="apiVersion")
    metadata: ListMeta = field(default_factory=ListMeta)
    items: list[Event] = field(default_factory=list)


__all__ = [
    "API_GROUP",
    "API_VERSION",
    "LEVELS",
    "STAGES",
    "LEVEL_NONE",
    "LEVEL_METADATA",
    "LEVEL_REQUEST",
    "LEVEL_REQUEST_RESPONSE",
    "STAGE_REQUEST_RECEIVED",
    "STAGE_RESPONSE_STARTED",
    "STAGE_RESPONSE_COMPLETE",
    "STAGE_PANIC",
    "AuthenticationMetadata",
    "Event",
    "EventList",
    "ListMeta",
    "ObjectReference",
    "Status",
    "UserInfo",
    "level_less",
    "level_rank",
]
