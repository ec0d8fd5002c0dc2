"""The README's first command: ``kaudit demo`` runs the whole job for real."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_collects_answers_and_verifies(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("KAUDIT_STORE", None)
    done = subprocess.run(
        [sys.executable, "-m", "kaudit", "demo", "--events", "30000", "--keep-logs", str(logs)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "stored:      30000" in out
    # Who deleted that ConfigMap? The history names the deletion.
    history = out.split("Who deleted that ConfigMap?")[1].split("== ")[0]
    assert "delete" in history and "deleted" in history
    assert "ok: kaudit-data" in out
    store = tmp_path / "kaudit-data"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    backups = [p.name for p in logs.iterdir() if p.name.endswith(".log.gz")]
    assert len(backups) == 1 and backups[0].startswith("audit-")
