"""Policy: lint a pasted or uploaded audit policy and replay the stored traffic under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

MAX_POLICY_BYTES: Final = 1024 * 1024


def check_policy(store: Path, data: bytes, source: str, *, top: int = 10) -> dict[str, Any]:
    """Lint findings and, when the policy loads, the simulation against the store at
    ``store`` (from the per-segment capture rollups, as ``kaudit policy simulate``)."""
    from kaudit.policy.lint import lint_bytes, summary

    policy, findings = lint_bytes(data, source)
    valid = policy is not None and not any(f.check == "invalid" for f in findings)
    out: dict[str, Any] = {
        "source": source,
        "valid": valid,
        "findings": [f.to_dict() for f in findings],
        "summary": summary(findings),
        "simulation": None,
    }
    if policy is None or not valid:
        return out
    from kaudit.policy.simulate import capture_from_store, names_of, simulate

    capture = capture_from_store(str(store), names=names_of([policy]))
    capture.description = "the store"
    sim = simulate(policy, capture).to_dict(top=top)
    out["simulation"] = sim
    return out


__all__ = ["MAX_POLICY_BYTES", "check_policy"]
