"""The one exception tree of kaudit.

Every error a user can cause or meet derives from :class:`KauditError`. The CLI
turns them into a message on stderr and an exit code in one place
(:mod:`kaudit.cli`): ``exit_code`` says which.

::

    KauditError                      exit 1
    ├── InputError                   bad input: names the input, the place, what was expected
    │   ├── DecodeError              an audit event / document that cannot be decoded
    │   └── PolicyError              an audit policy that cannot be loaded
    │       ├── PolicyDecodeError    YAML/JSON syntax, unknown or duplicate fields, wrong version
    │       └── PolicyInvalidError   apiserver validation failed (every field error at once)
    ├── ConfigError                  exit 78: kaudit's own configuration is wrong
    ├── StoreError                   the store cannot do what was asked
    │   ├── StoreLockedError         another writer holds the store
    │   ├── StoreFullError           no space left; nothing was lost, try again later
    │   └── IntegrityError           verify found altered, missing or unexpected data
    ├── QueryError                   a query or filter that cannot run
    ├── RuleError                    a detection rule that cannot be loaded
    └── SinkError                    a destination that did not accept what was sent
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class KauditError(Exception):
    """Root of every kaudit error."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Location:
    """Where in an input a problem is: ``source:line:col`` (line and col are 1-based)."""

    source: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        parts = [self.source]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)


class InputError(KauditError):
    """Bad input. ``location`` names the input and place when known."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.location = location
        self.detail = message
        super().__init__(f"{location}: {message}" if location else message)


class DecodeError(InputError):
    """An audit event or event document that cannot be decoded."""


class PolicyError(InputError):
    """An audit policy that cannot be loaded."""


class PolicyDecodeError(PolicyError):
    """The policy file cannot be decoded (syntax, unknown/duplicate fields, version)."""

    def __init__(
        self,
        message: str,
        location: Location | None = None,
        problems: Sequence[str] = (),
    ) -> None:
        super().__init__(message, location)
        self.problems = list(problems) or [str(self)]


class PolicyInvalidError(PolicyError):
    """The policy decoded but failed validation: ``errors`` holds every field error."""

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors = list(errors)
        unique = list(dict.fromkeys(self.errors))
        msg = unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
        super().__init__(msg, Location(source) if source else None)


class ConfigError(KauditError):
    """kaudit's own configuration is wrong (exit 78, as ``vector validate``)."""

    exit_code = 78

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems) or [message]
        super().__init__(message)


class StoreError(KauditError):
    """The store cannot do what was asked."""


class StoreLockedError(StoreError):
    """Another writer holds the store."""


class StoreFullError(StoreError):
    """The disk is full; nothing acknowledged was lost."""


class IntegrityError(StoreError):
    """Verification found altered, missing or unexpected data."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems) or [message]
        super().__init__(message)


class QueryError(KauditError):
    """A query or filter that cannot run."""


class RuleError(InputError):
    """A detection rule that cannot be loaded or validated."""


class SinkError(KauditError):
    """A destination did not accept what was sent."""
