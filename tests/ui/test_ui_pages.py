"""The HTML pages in process: login, session cookie, CSRF, every page renders."""

from __future__ import annotations

import re

import pytest
from ui_harness import TOKEN, Client, UIStore, ui_app

PAGES = [
    "/ui",
    "/ui/search",
    "/ui/search?verb=delete&columns=ts&columns=username&columns=verb",
    "/ui/history?object=configmap/app-config&namespace=shop",
    "/ui/timeline?user=alice@example.com&since=7d",
    "/ui/alerts",
    "/ui/policy",
]


def login(c: Client, token: str = TOKEN, next_url: str = "/ui") -> object:
    page = c.get(f"/ui/login?next={next_url}")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    return c.post("/ui/login", data={"token": token, "csrf": csrf.group(1), "next": next_url})


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_to_login_without_a_session(client: Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login?next=%2Fui")


def test_root_redirects_to_the_dashboard(client: Client) -> None:
    r = client.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/ui"


def test_login_sets_a_strict_httponly_session_and_every_page_renders(client: Client) -> None:
    r = login(client)
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = r.headers["set-cookie"]
    assert "kaudit_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http here; Secure over TLS
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert 'class="skip" href="#main"' in page.text
        assert "Error:" not in page.text, path


def test_a_wrong_token_or_a_missing_csrf_does_not_log_in(client: Client) -> None:
    r = login(client, token="wrong")
    assert r.status_code == 401 and "the bearer token is not valid" in r.text  # type: ignore[attr-defined]
    client.get("/ui/login")
    no_csrf = client.post("/ui/login", data={"token": TOKEN, "csrf": "forged", "next": "/ui"})
    assert no_csrf.status_code == 403
    assert client.get("/ui").status_code == 303


def test_a_forged_session_cookie_is_refused(client: Client) -> None:
    login(client)
    value = client.cookies.get("kaudit_session")
    assert value
    sid, _, mac = value.rpartition(".")
    client.cookies.set("kaudit_session", f"{sid}.{'0' * len(mac)}")
    assert client.get("/ui").status_code == 303


def test_login_does_not_redirect_off_site(client: Client) -> None:
    r = login(client, next_url="//evil.example/ui")
    assert r.status_code == 303 and r.headers["location"] == "/ui"  # type: ignore[attr-defined]


def test_bad_input_is_shown_on_the_page(client: Client) -> None:
    login(client)
    r = client.get("/ui/search?verb=gett")
    assert r.status_code == 400
    assert "unknown verb" in r.text and "Error:" in r.text
    r = client.get("/ui/events/no-such-id")
    assert r.status_code == 404 and "no stored event has this auditID" in r.text


def test_acknowledge_needs_the_csrf_token(fresh_store: UIStore) -> None:
    c = Client(ui_app(fresh_store.store))
    login(c)
    page = c.get("/ui/alerts")
    aid = "a" * 32
    assert f'id="alert-{aid}"' in page.text
    forged = c.post(f"/ui/alerts/{aid}/state", data={"state": "acknowledged", "csrf": "x"})
    assert forged.status_code == 403
    r = c.post(
        f"/ui/alerts/{aid}/state",
        data={"state": "acknowledged", "csrf": csrf_of(page.text), "next": "/ui/alerts"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/alerts"
    after = c.get("/ui/alerts?state=acknowledged")
    assert f'id="alert-{aid}"' in after.text and "admin (token)" in after.text


def test_policy_form_lints_and_simulates(client: Client) -> None:
    login(client)
    page = client.get("/ui/policy")
    policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
    r = client.post("/ui/policy", data={"policy": policy, "csrf": csrf_of(page.text)})
    assert r.status_code == 200
    assert "Simulation against" in r.text and "Lint:" in r.text
    upload = client.post(
        "/ui/policy",
        data={"csrf": csrf_of(page.text)},
        files={"file": ("policy.yaml", b"apiVersion: audit.k8s.io/v1\nkind: Nope\n")},
    )
    assert upload.status_code == 200 and "policy.yaml" in upload.text
    forged = client.post("/ui/policy", data={"policy": policy, "csrf": "x"})
    assert forged.status_code == 403


def test_bearer_header_also_opens_pages(client: Client) -> None:
    r = client.get("/ui/alerts", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200


def test_insecure_mode_needs_no_login(ui_store: UIStore) -> None:
    c = Client(ui_app(ui_store.store, tokens=[], insecure=True))
    assert c.get("/ui/alerts").status_code == 200
    assert c.get("/api/v1/alerts").status_code == 200
