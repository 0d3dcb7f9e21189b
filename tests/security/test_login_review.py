"""Brokered login under attack (SECURITY-CASES §6, §7, §9, §10, §11).

Each test states an attack and shows that it fails.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from tests.fastapi_login.support import (
    IDP,
    PASSWORD,
    LoginApp,
    Page,
    add_user,
    authorize_params,
    pkce_pair,
    running,
)

from authbridge import Principal
from authbridge.fastapi._browser_login import LOGIN_STARTS_PER_ADDRESS
from authbridge.providers import OIDCProvider

LOGIN_STARTS = LOGIN_STARTS_PER_ADDRESS + 5
"""Unauthenticated login starts sent from one client address within a second."""


async def password_session(h: LoginApp, username: str = "alice") -> str:
    """Log ``username`` in with the password form; the session's CSRF token."""
    page = await h.client.get("/auth/login")
    fields = {**Page(page.text).forms[0]["fields"], "username": username, "password": PASSWORD}
    answer = await h.client.post("/auth/login", data=fields)
    assert answer.status_code == 303, answer.text
    return str((await h.client.get("/auth/session")).json()["csrf_token"])


# --- §10: rows any unauthenticated request can create ----------------------------------------


async def test_session_login_starts_are_bounded_per_address(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        statuses = [
            (await h.client.get("/auth/login/stub")).status_code for _ in range(LOGIN_STARTS)
        ]
        assert statuses[:LOGIN_STARTS_PER_ADDRESS] == [303] * LOGIN_STARTS_PER_ADDRESS
        assert statuses[LOGIN_STARTS_PER_ADDRESS:] == [429] * (
            LOGIN_STARTS - LOGIN_STARTS_PER_ADDRESS
        )


async def test_authorize_idp_starts_are_bounded_per_address(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(challenge, idp="stub")
    async with running(tmp_path) as h:
        statuses = [
            (await h.client.get("/oauth/authorize", params=params)).status_code
            for _ in range(LOGIN_STARTS)
        ]
        assert 429 in statuses


# --- §6: linking takeovers ---------------------------------------------------------------------


async def test_an_identity_linked_to_one_account_cannot_be_linked_to_another(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await add_user(h.runtime, "mallory")
        # alice links the upstream identity
        csrf = await password_session(h)
        start = await h.client.post("/auth/link/stub", data={"csrf_token": csrf})
        done = await h.client.get(
            "/oauth/callback", params=h.upstream.approve(start.headers["location"])
        )
        assert done.status_code == 303
        # mallory (another browser) tries to link the very same identity to hers
        h.client.cookies.clear()
        csrf = await password_session(h, "mallory")
        start = await h.client.post("/auth/link/stub", data={"csrf_token": csrf})
        refused = await h.client.get(
            "/oauth/callback", params=h.upstream.approve(start.headers["location"])
        )
        assert refused.status_code == 400
        assert "identity_linked_elsewhere" in refused.text
        assert (await h.client.get("/auth/session")).json()["identities"] == []


async def test_a_link_finished_after_the_browser_changed_account_is_refused(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await add_user(h.runtime, "mallory")
        csrf = await password_session(h, "mallory")
        start = await h.client.post("/auth/link/stub", data={"csrf_token": csrf})
        answer = h.upstream.approve(start.headers["location"])
        # the same browser is now alice's (shared computer): the link is not hers to finish
        await password_session(h, "alice")
        refused = await h.client.get("/oauth/callback", params=answer)
        assert refused.status_code == 400
        assert (await h.client.get("/auth/session")).json()["identities"] == []


async def test_a_link_started_by_one_browser_cannot_be_finished_by_another(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await add_user(h.runtime, "mallory")
        csrf = await password_session(h, "mallory")
        start = await h.client.post("/auth/link/stub", data={"csrf_token": csrf})
        answer = h.upstream.approve(start.headers["location"])
        requests_before = h.upstream.token_requests
        h.client.cookies.clear()
        await password_session(h, "alice")
        refused = await h.client.get("/oauth/callback", params=answer)
        assert refused.status_code == 400
        assert "browser_mismatch" in refused.text
        assert h.upstream.token_requests == requests_before


# --- §6/§9: CSRF on session routes -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/link/stub", "/auth/unlink", "/items"])
@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/json"},
        {"authorization": "Basic YWxpY2U6eA=="},
        {"x-http-method-override": "GET"},
        {"origin": "null"},
    ],
)
async def test_session_changes_need_the_csrf_token_whatever_the_request_looks_like(
    tmp_path: Path, path: str, headers: dict[str, str]
) -> None:
    async with running(tmp_path) as h:
        await password_session(h)
        answer = await h.client.post(path, content=b"csrf_token=x", headers=headers)
        assert answer.status_code in (401, 403), answer.text
        assert (await h.client.get("/items")).status_code == 200


# --- §8: nothing secret in the logs of a whole flow, failing parts included -----------------


async def test_debug_logs_of_a_login_and_its_replay_hold_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as h:
        verifier, challenge = pkce_pair()
        start = await h.client.get(
            "/oauth/authorize", params=authorize_params(challenge, idp="stub")
        )
        answer = h.upstream.approve(start.headers["location"])
        done = await h.client.get("/oauth/callback", params=answer)
        assert done.status_code == 303
        replay = await h.client.get("/oauth/callback", params=answer)
        assert replay.status_code == 400
        location = done.headers["location"]
        code = httpx.URL(location).params["code"]
        token = await h.client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "client_id": "spa",
                "code": code,
                "redirect_uri": "http://127.0.0.1:9999/callback",
                "code_verifier": verifier,
            },
        )
        assert token.status_code == 200, token.text
        again = await h.client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "client_id": "spa",
                "code": code,
                "redirect_uri": "http://127.0.0.1:9999/callback",
                "code_verifier": verifier,
            },
        )
        assert again.status_code == 400
        secrets = [
            answer["state"],
            answer["code"],
            code,
            verifier,
            token.json()["access_token"],
            token.json().get("refresh_token") or "no-refresh-token",
            *h.upstream.tokens,
            *(c for c in h.client.cookies.values()),
            PASSWORD,
        ]
        upstream_verifiers = [
            r for r in h.upstream.requests if r.url.path == "/token"
        ]  # what we sent upstream
        for request in upstream_verifiers:
            form = dict(httpx.QueryParams(request.content.decode()))
            secrets.append(form["code_verifier"])
        # The product's loggers, and httpx's lines about the product's outbound calls
        # (the test's own client logs its request URLs, which carry the callback's values).
        text = "\n".join(
            r.getMessage()
            for r in caplog.records
            if r.name.startswith("authbridge") or IDP in r.getMessage()
        )
        assert "Login started" in text
        for secret in secrets:
            assert secret not in text


# --- §7: token exchange substitution ---------------------------------------------------------


def test_an_id_token_issued_to_another_client_is_not_exchanged() -> None:
    provider = OIDCProvider(
        "kc", "https://kc.test", audience="ours", client_id="ours", client_secret="s"
    )
    claims = {
        "iss": "https://kc.test",
        "sub": "victim",
        "aud": ["other-site", "ours"],
        "azp": "other-site",
        "nonce": "n",
    }
    principal = Principal(
        provider="kc",
        issuer="https://kc.test",
        subject="victim",
        scopes=frozenset(),
        claims=claims,
        client_id="other-site",
    )
    assert provider.exchange_identity(principal) is None
