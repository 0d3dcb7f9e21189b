"""Server-side sessions: login (password and provider), the session as a principal,
CSRF, rotation, logout, linking."""

from __future__ import annotations

from pathlib import Path

import httpx

from authbridge.client._accounts import AccountPolicy
from authbridge.client._settings import LoginSettings

from .support import IDP, ISSUER, PASSWORD, LoginApp, Page, running

HTTPS = "https://app.example.org"


async def password_session(h: LoginApp, next_path: str | None = None) -> httpx.Response:
    params = {"next": next_path} if next_path else {}
    page = await h.client.get("/auth/login", params=params)
    assert page.status_code == 200, page.text
    fields = {**Page(page.text).forms[0]["fields"], "username": "alice", "password": PASSWORD}
    return await h.client.post("/auth/login", data=fields)


def session_cookie(h: LoginApp, name: str = "authbridge_session") -> str:
    value = h.client.cookies.get(name)
    assert value
    return value


async def test_password_session_and_the_session_principal(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        answer = await password_session(h, "/items?page=2")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/items?page=2"
        cookie = answer.headers["set-cookie"]
        assert "authbridge_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/" in cookie
        items = await h.client.get("/items")
        assert items.status_code == 200
        assert items.json() == {
            "provider": "app",
            "subject": "user-alice",
            "scopes": ["items:read", "items:write"],
        }
        maybe = await h.client.get("/maybe")
        assert maybe.json() == {"subject": "user-alice"}
        session = (await h.client.get("/auth/session")).json()
        assert session["user"]["id"] == "user-alice"
        assert session["csrf_token"]
        assert session["identities"] == []


async def test_unsafe_methods_need_the_csrf_token_and_this_origin(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        await password_session(h)
        csrf = (await h.client.get("/auth/session")).json()["csrf_token"]
        assert (await h.client.post("/items")).status_code == 403
        wrong = await h.client.post("/items", headers={"x-csrf-token": "A" * 43})
        assert wrong.status_code == 403
        ok = await h.client.post("/items", headers={"x-csrf-token": csrf})
        assert ok.status_code == 200
        assert ok.json() == {"added_by": "user-alice"}
        form = await h.client.post("/items", data={"csrf_token": csrf})
        assert form.status_code == 200
        cross = await h.client.post(
            "/items", headers={"x-csrf-token": csrf, "origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        same = await h.client.post("/items", headers={"x-csrf-token": csrf, "origin": ISSUER})
        assert same.status_code == 200
        # A bearer token is not a session: no CSRF rule applies to it.
        h.client.cookies.clear()
        assert (await h.client.post("/items")).status_code == 401
        assert (await h.client.get("/maybe")).json() == {"subject": None}


async def test_login_rotates_the_session(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        await password_session(h)
        first = session_cookie(h)
        await password_session(h)
        second = session_cookie(h)
        assert second != first
        h.client.cookies.clear()
        h.client.cookies.set("authbridge_session", first)
        assert (await h.client.get("/items")).status_code == 401
        h.client.cookies.clear()
        h.client.cookies.set("authbridge_session", second)
        assert (await h.client.get("/items")).status_code == 200


async def test_a_planted_session_value_opens_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.client.cookies.set("authbridge_session", "A" * 43)
        assert (await h.client.get("/items")).status_code == 401
        assert (await h.client.get("/auth/session")).status_code == 401
        assert (await h.client.get("/maybe")).json() == {"subject": None}


async def test_logout_needs_csrf_and_ends_the_session(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        await password_session(h)
        cookie = session_cookie(h)
        refused = await h.client.post("/auth/logout")
        assert refused.status_code == 403
        assert (await h.client.get("/items")).status_code == 200
        csrf = (await h.client.get("/auth/session")).json()["csrf_token"]
        out = await h.client.post("/auth/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert out.headers["location"] == "/"
        assert 'authbridge_session=""' in out.headers["set-cookie"]
        h.client.cookies.clear()
        h.client.cookies.set("authbridge_session", cookie)
        assert (await h.client.get("/items")).status_code == 401


async def test_provider_session_login_and_rp_initiated_logout(tmp_path: Path) -> None:
    accounts = AccountPolicy(default_scopes=frozenset({"items:read"}))
    async with running(tmp_path, settings=LoginSettings(accounts=accounts)) as h:
        start = await h.client.get("/auth/login/stub", params={"next": "/items"})
        assert start.status_code == 303
        callback = await h.client.get(
            "/oauth/callback", params=h.upstream.approve(start.headers["location"])
        )
        assert callback.status_code == 303, callback.text
        assert callback.headers["location"] == "/items"
        items = await h.client.get("/items")
        assert items.status_code == 200
        session = (await h.client.get("/auth/session")).json()
        assert session["provider"] == "stub"
        assert [i["issuer"] for i in session["identities"]] == [IDP]
        out = await h.client.post("/auth/logout", headers={"x-csrf-token": session["csrf_token"]})
        assert out.status_code == 303
        assert out.headers["location"].startswith(f"{IDP}/logout?")
        assert (await h.client.get("/items")).status_code == 401


async def test_link_and_unlink(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        await password_session(h)
        csrf = (await h.client.get("/auth/session")).json()["csrf_token"]
        refused = await h.client.post("/auth/link/stub")
        assert refused.status_code == 403
        start = await h.client.post("/auth/link/stub", data={"csrf_token": csrf, "next": "/me"})
        assert start.status_code == 303
        callback = await h.client.get(
            "/oauth/callback", params=h.upstream.approve(start.headers["location"])
        )
        assert callback.status_code == 303, callback.text
        assert callback.headers["location"] == "/me"
        identities = (await h.client.get("/auth/session")).json()["identities"]
        assert [(i["issuer"], i["subject"]) for i in identities] == [(IDP, "upstream-1")]
        gone = await h.client.post(
            "/auth/unlink", data={"csrf_token": csrf, "issuer": IDP, "subject": "upstream-1"}
        )
        assert gone.status_code == 200
        assert gone.json() == {"unlinked": True}
        assert (await h.client.get("/auth/session")).json()["identities"] == []


async def test_https_cookies_are_host_prefixed_and_secure(tmp_path: Path) -> None:
    async with running(tmp_path, issuer=HTTPS) as h:
        page = await h.client.get("/auth/login")
        browser = page.headers["set-cookie"]
        assert browser.startswith("__Host-authbridge_browser=")
        assert "Secure" in browser
        assert "HttpOnly" in browser
        fields = {**Page(page.text).forms[0]["fields"], "username": "alice", "password": PASSWORD}
        answer = await h.client.post("/auth/login", data=fields)
        assert answer.status_code == 303, answer.text
        session = answer.headers["set-cookie"]
        assert session.startswith("__Host-authbridge_session=")
        assert "Secure" in session
        assert (await h.client.get("/items")).status_code == 200
        # An unprefixed cookie of the same name (set by a sibling host) is not the session.
        value = h.client.cookies.get("__Host-authbridge_session")
        h.client.cookies.clear()
        h.client.cookies.set("authbridge_session", value or "")
        assert (await h.client.get("/items")).status_code == 401
