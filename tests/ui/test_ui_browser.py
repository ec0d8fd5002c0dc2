"""The dashboard in a real browser: Chromium (Debian's) driven by Playwright against a
real ``kaudit serve`` process on generated traffic. Screenshots go to
``test-artifacts/ui/``; any console error fails the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import playwright.sync_api as playwright_sync  # noqa: E402 - a dev dependency (pyproject)
import pytest
from ui_harness import TOKEN, build_store

from kaudit.model.codec import encode_event_list
from kaudit.traffic import generate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREEN_RANGE = "since=2025-03-03T09:00:00Z&until=2025-03-03T09:24:00Z"

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    # A real browser is part of the test: scripts/setup installs Debian's chromium.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/setup (installs chromium)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``kaudit serve`` on a store of its own (a free port); its base URL."""
    ui_store = build_store(tmp_path_factory.mktemp("browser") / "store")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kaudit",
            "serve",
            "--store",
            str(ui_store.path),
            "--port",
            "0",
            "--token",
            f"admin={TOKEN}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    port = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"kaudit serve exited with {proc.wait()}")
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "kaudit serve listening":
            port = int(entry["port"])
            break
    assert port, "kaudit serve did not start listening"
    url = f"http://127.0.0.1:{port}"
    # A few events through the webhook, so the pipeline panel has serve figures.
    body = encode_event_list(list(generate(20, seed=11)))
    r = httpx.post(
        f"{url}/audit/webhook",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page that records console errors and failed requests."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.base = base
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()


def log_in(p: Page, path: str) -> None:
    p.goto(path)
    assert "/ui/login" in p.page.url
    p.page.fill("#token", TOKEN)
    p.page.click("form.login button[type=submit]")
    p.page.wait_for_load_state()


def test_unauthenticated_access_is_refused(server: str, browser: Any) -> None:
    p = Page(browser, server)
    try:
        p.goto("/ui/alerts")
        assert p.page.url.startswith(server + "/ui/login?next=")
        p.shot("login")
        api = p.context.request.get(server + "/api/v1/overview")
        assert api.status == 401
        assert api.json()["error"]["reason"] == "Unauthorized"
        p.page.fill("#token", "not-the-token")
        p.page.click("form.login button[type=submit]")
        assert "the bearer token is not valid" in p.page.inner_text("main")
        # the failed login answered 401: Chromium logs that as a console error
        p.errors = [e for e in p.errors if "401" not in e]
        assert p.errors == []
    finally:
        p.close()


def test_the_dashboard_end_to_end(server: str, browser: Any) -> None:
    p = Page(browser, server, viewport={"width": 1280, "height": 900})
    try:
        log_in(p, f"/ui?{SCREEN_RANGE}")
        page = p.page
        assert page.url == f"{server}/ui?{SCREEN_RANGE}"
        assert page.locator("h1").inner_text() == "Overview"
        assert page.locator("svg.chart rect").count() > 10
        assert "events/s since start" in page.inner_text("#h-pipe + dl")
        assert "your local time is UTC" in page.inner_text(".tz")
        p.shot("overview")
        p.shot("overview-top", full_page=False)

        # keyboard: the first Tab reaches the skip link, which moves focus to main
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

        # a preset link is a real link
        page.click(".presets a:has-text('1h')")
        page.wait_for_load_state()
        assert "since=1h" in page.url

        # search: apply a filter, then open an event
        page.click("nav a:has-text('Search')")
        page.fill("input[name=verb]", "delete")
        page.click("#search-form button[type=submit]")
        page.wait_for_load_state()
        assert "verb=delete" in page.url and "user=" not in page.url
        verbs = page.locator("table.results td[data-col=verb]").all_inner_texts()
        assert verbs and set(verbs) == {"delete"}
        p.shot("search")
        page.locator("table.results a:has-text('open')").first.click()
        page.wait_for_load_state()
        assert "/ui/events/" in page.url
        assert page.locator("h2:has-text('ResponseComplete')").count() == 1
        page.locator("details.whole summary").last.click()
        assert '"auditID"' in page.locator("details.whole pre").last.inner_text()
        p.shot("event")

        # object history with a side-by-side diff
        p.goto("/ui/history?object=configmap/app-config&namespace=shop")
        assert page.locator("table.diff td.add").count() > 0
        assert page.locator("table.diff td.del").count() > 0
        p.shot("history")

        # a user's timeline
        p.goto("/ui/timeline?user=alice@example.com&since=7d")
        assert "configmaps" in page.inner_text("table")
        p.shot("timeline")

        # alerts: acknowledge one
        p.goto("/ui/alerts")
        row = page.locator(f"#alert-{'a' * 32}")
        assert "open" in row.inner_text()
        row.locator("button:has-text('Acknowledge')").click()
        page.wait_for_load_state()
        row = page.locator(f"#alert-{'a' * 32}")
        assert "acknowledged" in row.inner_text() and "admin (token)" in row.inner_text()
        p.shot("alerts")

        # policy: paste, lint, simulate
        p.goto("/ui/policy")
        page.fill(
            "#policy",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
            "- level: None\n  resources: [{group: '', resources: [events]}]\n"
            "- level: Metadata\n",
        )
        page.click("form.policy button[type=submit]")
        page.wait_for_load_state()
        assert "Simulation against" in page.inner_text("main")
        p.shot("policy")

        # narrow window: nothing wider than the viewport
        page.set_viewport_size({"width": 420, "height": 900})
        p.goto(f"/ui?{SCREEN_RANGE}")
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "() => [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 440)"
            ".map(e => e.tagName + '.' + e.getAttribute('class') + ' ' + "
            "Math.round(e.getBoundingClientRect().right)).slice(0, 10)"
        )
        assert width <= 440, (width, wide)
        p.shot("overview-narrow")

        assert p.errors == []
    finally:
        p.close()
    if os.environ.get("KAUDIT_UPDATE_SCREENSHOT"):
        docs = Path(__file__).resolve().parents[2] / "docs" / "img"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "overview-top.png", docs / "overview.png")
