"""The app's authorization endpoint: the chooser, the local password, the idp hint, the code.

Every app runs its lifespan on a real SQLite store; the upstream provider
answers through httpx.MockTransport (its token endpoint counts requests).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from authbridge.client import AccountPolicy
from authbridge.client._settings import LoginSettings

from .support import (
    IDP,
    PASSWORD,
    SPA,
    SPA_REDIRECT,
    LoginApp,
    Page,
    authorize_params,
    pkce_pair,
    query_of,
    running,
)


async def chooser(h: LoginApp, challenge: str) -> Page:
    response = await h.client.get("/oauth/authorize", params=authorize_params(challenge))
    assert response.status_code == 200, response.text
    return Page(response.text)


async def test_chooser_lists_the_password_form_and_each_provider(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        response = await h.client.get("/oauth/authorize", params=authorize_params(challenge))
        assert response.status_code == 200
        page = Page(response.text)
        assert len(page.forms) == 1
        form = page.forms[0]
        assert form["action"] == "/oauth/authorize"
        assert form["method"] == "post"
        fields = form["fields"]
        assert fields["client_id"] == SPA
        assert fields["code_challenge"] == challenge
        assert fields["csrf_token"]
        assert {"username", "password"} <= fields.keys()
        provider_links = [link for link in page.links if "idp=stub" in link]
        assert len(provider_links) == 1
        assert provider_links[0].startswith("/oauth/authorize?")
        # The client's name and the provider's label are escaped text.
        assert 'The <SPA> & "friends"' in page.all_text
        assert 'Stub <IdP> & "Co"' in page.all_text
        assert "<SPA>" not in response.text
        assert response.headers["set-cookie"].startswith("authbridge_browser=")


async def test_password_login_ends_in_a_code_the_token_endpoint_redeems_with_pkce(
    tmp_path: Path,
) -> None:
    verifier, challenge = pkce_pair()
    async with running(tmp_path) as h:
        page = await chooser(h, challenge)
        fields = {**page.forms[0]["fields"], "username": "alice", "password": PASSWORD}
        answer = await h.client.post("/oauth/authorize", data=fields)
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        assert location.startswith(SPA_REDIRECT + "?")
        query = query_of(location)
        assert query["state"] == ["client-state-1"]
        assert query["iss"] == ["http://127.0.0.1:8000"]
        code = query["code"][0]
        # A wrong verifier is refused; the right one gets tokens.
        token_form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": SPA_REDIRECT,
            "client_id": SPA,
            "code_verifier": verifier,
        }
        tokens = await h.client.post("/oauth/token", data=token_form)
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        assert body["scope"] == "items:read"
        items = await h.client.get(
            "/items", headers={"authorization": f"Bearer {body['access_token']}"}
        )
        assert items.status_code == 200
        assert items.json()["subject"] == "user-alice"
        # Single use.
        again = await h.client.post("/oauth/token", data=token_form)
        assert again.status_code == 400
        assert h.upstream.requests == []


async def test_a_wrong_verifier_gets_no_tokens(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    other, _ = pkce_pair()
    async with running(tmp_path) as h:
        page = await chooser(h, challenge)
        fields = {**page.forms[0]["fields"], "username": "alice", "password": PASSWORD}
        code = query_of((await h.client.post("/oauth/authorize", data=fields)).headers["location"])
        tokens = await h.client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code["code"][0],
                "redirect_uri": SPA_REDIRECT,
                "client_id": SPA,
                "code_verifier": other,
            },
        )
        assert tokens.status_code == 400
        assert tokens.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password"), ("nobody", PASSWORD), ("", PASSWORD), ("alice", "")],
)
async def test_a_failed_password_shows_the_chooser_again_with_one_message(
    tmp_path: Path, username: str, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, challenge = pkce_pair()
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as h:
        page = await chooser(h, challenge)
        fields = {**page.forms[0]["fields"], "username": username, "password": password}
        answer = await h.client.post("/oauth/authorize", data=fields)
        assert answer.status_code == 400
        assert "location" not in answer.headers
        again = Page(answer.text)
        assert "Invalid username or password" in again.all_text
        assert again.forms[0]["fields"]["code_challenge"] == challenge
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    if password:
        assert password not in logged
    if username:
        assert username not in logged


async def test_the_password_form_needs_this_browsers_csrf_token(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        page = await chooser(h, challenge)
        fields = {**page.forms[0]["fields"], "username": "alice", "password": PASSWORD}
        forged = {**fields, "csrf_token": "x" * 43}
        answer = await h.client.post("/oauth/authorize", data=forged)
        assert answer.status_code == 400
        assert "csrf_mismatch" in answer.text
        # Another browser (no cookie) with the page's token.
        h.client.cookies.clear()
        answer = await h.client.post("/oauth/authorize", data=fields)
        assert answer.status_code == 400
        assert "location" not in answer.headers


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"client_id": "unknown"}, "authorize:"),
        ({"redirect_uri": "https://evil.example/callback"}, "authorize:"),
        ({"redirect_uri": SPA_REDIRECT + "/extra"}, "authorize:"),
    ],
)
async def test_an_untrusted_client_or_redirect_gets_a_page_never_a_redirect(
    tmp_path: Path, change: dict[str, str], reason: str
) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        params = authorize_params(challenge, **change)
        answer = await h.client.get("/oauth/authorize", params=params)
        assert answer.status_code == 400
        assert "location" not in answer.headers
        assert reason in answer.text
        assert "evil.example" not in answer.text
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_repeated_parameter_gets_a_page(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        params = [*authorize_params(challenge).items(), ("redirect_uri", "https://evil.example/")]
        answer = await h.client.get("/oauth/authorize", params=params)
        assert answer.status_code == 400
        assert "location" not in answer.headers


async def test_other_errors_go_back_to_the_client(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        params = authorize_params("short", code_challenge_method="plain")
        answer = await h.client.get("/oauth/authorize", params=params)
        assert answer.status_code == 303
        query = query_of(answer.headers["location"])
        assert answer.headers["location"].startswith(SPA_REDIRECT)
        assert query["error"] == ["invalid_request"]
        assert query["state"] == ["client-state-1"]


async def test_idp_hint_goes_straight_to_the_provider(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        answer = await h.client.get(
            "/oauth/authorize", params=authorize_params(challenge, idp="stub")
        )
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith(f"{IDP}/authorize?")
        query = query_of(location)
        assert query["redirect_uri"] == ["http://127.0.0.1:8000/oauth/callback"]
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["state"][0]) >= 43
        # The app's client's challenge stays here; the provider gets its own.
        assert query["code_challenge"] != [challenge]
        assert "authbridge_browser=" in answer.headers["set-cookie"]


async def test_unknown_idp_gets_a_page(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        answer = await h.client.get(
            "/oauth/authorize", params=authorize_params(challenge, idp="<nope>")
        )
        assert answer.status_code == 400
        assert "unknown_provider" in answer.text
        assert "<nope>" not in answer.text


async def test_login_at_the_provider_ends_in_a_code_for_the_client(tmp_path: Path) -> None:
    verifier, challenge = pkce_pair()
    async with running(tmp_path) as h:
        users_before = await h.count_users()
        start = await h.client.get(
            "/oauth/authorize", params=authorize_params(challenge, idp="stub")
        )
        callback = await h.client.get(
            "/oauth/callback", params=h.upstream.approve(start.headers["location"])
        )
        assert callback.status_code == 303, callback.text
        query = query_of(callback.headers["location"])
        assert callback.headers["location"].startswith(SPA_REDIRECT)
        assert query["state"] == ["client-state-1"]
        tokens = await h.client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": SPA_REDIRECT,
                "client_id": SPA,
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200, tokens.text
        assert await h.count_users() == users_before + 1
        assert h.upstream.token_requests == 1


async def test_form_post_callback_is_kept_out_of_the_url_until_its_get(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as h:
        posted = {"code": "c<1>", "state": "s&2", "user": '{"email":"ana@example.test"}'}
        answer = await h.client.post("/oauth/callback", data=posted)
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith("/oauth/callback?form_post=")
        for value in ("c%3C1%3E", "c<1>", "s%262", "ana", "example.test"):
            assert value not in location
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        # The GET reads what was posted (here a state no login started): refused.
        again = await h.client.get(location)
        assert again.status_code == 400
        assert "state_unknown" in again.text
        # Once only.
        replay = await h.client.get(location)
        assert replay.status_code == 400
        assert "state_unknown" in replay.text
        # A made-up reference, or one mixed with other parameters, finds nothing.
        for params in ({"form_post": "x" * 43}, {"form_post": "abc", "state": "s"}):
            refused = await h.client.get("/oauth/callback", params=params)
            assert refused.status_code == 400
        assert h.upstream.token_requests == 0
        assert "c<1>" not in caplog.text
        assert "ana@example.test" not in caplog.text


async def test_posted_callbacks_are_counted_per_address(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        answers = [
            (await h.client.post("/oauth/callback", data={"code": "c", "state": "s"})).status_code
            for _ in range(31)
        ]
        assert answers[:30] == [303] * 30
        assert answers[30] == 429


async def test_a_refused_account_sends_access_denied_to_the_client(tmp_path: Path) -> None:
    async def refuse(identity: object, proposed: object) -> None:
        return None

    settings = LoginSettings(accounts=AccountPolicy(on_first_login=refuse))
    _, challenge = pkce_pair()
    async with running(tmp_path, settings=settings) as h:
        users_before = await h.count_users()
        start = await h.client.get(
            "/oauth/authorize", params=authorize_params(challenge, idp="stub")
        )
        callback = await h.client.get(
            "/oauth/callback", params=h.upstream.approve(start.headers["location"])
        )
        assert callback.status_code == 303
        assert callback.headers["location"].startswith(SPA_REDIRECT)
        query = query_of(callback.headers["location"])
        assert query["error"] == ["access_denied"]
        assert query["state"] == ["client-state-1"]
        assert "code" not in query
        assert await h.count_users() == users_before


async def test_without_local_password_the_chooser_has_no_form(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path, settings=LoginSettings(local_password=False)) as h:
        response = await h.client.get("/oauth/authorize", params=authorize_params(challenge))
        page = Page(response.text)
        assert page.forms == []
        assert any("idp=stub" in link for link in page.links)
        fields = {**authorize_params(challenge), "username": "alice", "password": PASSWORD}
        answer = await h.client.post("/oauth/authorize", data=fields)
        assert answer.status_code == 404
