"""audit.k8s.io/v1: the event model and its formats (JSON, legacy text, EventList)."""

from kaudit.model.codec import (
    canonical,
    canonical_time,
    decode_event,
    decode_event_list,
    encode_event,
    encode_event_list,
    format_micro,
    parse_time,
    to_micros,
)
from kaudit.model.types import (
    API_VERSION,
    LEVELS,
    STAGES,
    AuthenticationMetadata,
    Event,
    EventList,
    ObjectReference,
    Status,
    UserInfo,
    level_less,
    level_rank,
)

__all__ = [
    "API_VERSION",
    "LEVELS",
    "STAGES",
    "AuthenticationMetadata",
    "Event",
    "EventList",
    "ObjectReference",
    "Status",
    "UserInfo",
    "canonical",
    "canonical_time",
    "decode_event",
    "decode_event_list",
    "encode_event",
    "encode_event_list",
    "format_micro",
    "level_less",
    "level_rank",
    "parse_time",
    "to_micros",
]
