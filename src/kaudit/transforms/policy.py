"""``policy``: store what a (stricter) audit policy would have recorded.

Each event is re-evaluated under the policy (spec 7.2) and shaped to the level it
gives (:func:`kaudit.policy.apply`): events at level None or in an omitted stage
are dropped and counted; bodies above the level are removed; managedFields
stripped per ``omitManagedFields``. An event can't gain what it never had: when the
policy asks for more than the event holds, it is kept as it is and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.policy import Evaluator, Policy, apply


@dataclass
class PolicyFilter:
    """The ``policy`` transform."""

    evaluator: Evaluator
    dropped: int = 0
    reshaped: int = 0
    above_capture: int = 0

    name = "policy"

    def counters(self) -> dict[str, int]:
        return {
            "dropped": self.dropped,
            "reshaped": self.reshaped,
            "above_capture": self.above_capture,
        }

    @classmethod
    def from_policy(cls, policy: Policy) -> PolicyFilter:
        return cls(Evaluator(policy))

    def __call__(self, batch: list[Record]) -> list[Record]:
        out: list[Record] = []
        for rec in batch:
            applied = apply(self.evaluator, rec.event)
            if applied.above_capture:
                self.above_capture += 1
            ev = applied.event
            if ev is None:
                self.dropped += 1
            elif ev is rec.event:
                out.append(rec)
            else:
                self.reshaped += 1
                out.append(Record(ev, encode_event(ev)[:-1], rec.source, rec.line))
        return out


__all__ = ["PolicyFilter"]
