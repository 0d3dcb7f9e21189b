"""/me/delegations from a browser session (CSRF), and what never reaches a log or an error body."""

from __future__ import annotations

import logging

import pytest

from authbridge.testing import FakeIssuer

from .support import ALICE, HUB, ISSUER, PASSWORD, ROBOT, running


async def test_a_session_user_needs_the_csrf_token_for_changes(
    store_url: str, fake_issuer: FakeIssuer
) -> None:
    async with running(store_url, fake_issuer, login=True) as h:
        csrf = await h.session("alice")
        body = {"actor": ROBOT, "scope": "garage:open", "expires_in": 600}
        for headers in ({}, {"x-csrf-token": "A" * 43}, {"x-csrf-token": ""}):
            refused = await h.client.post("/me/delegations", json=body, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json() == {"detail": "CSRF check failed"}
        cross = await h.client.post(
            "/me/delegations",
            json=body,
            headers={"x-csrf-token": csrf, "origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        site = await h.client.post(
            "/me/delegations",
            json=body,
            headers={"x-csrf-token": csrf, "sec-fetch-site": "cross-site"},
        )
        assert site.status_code == 403
        assert (await h.client.get("/me/delegations")).json() == {"delegations": []}

        made = await h.client.post(
            "/me/delegations", json=body, headers={"x-csrf-token": csrf, "origin": ISSUER}
        )
        assert made.status_code == 201, made.text
        delegation = made.json()["delegation"]
        assert delegation["scope"] == "garage:open"
        assert delegation["audiences"] == [ISSUER]
        assert (await h.garage(made.json()["token"]["access_token"])).json()["user"] == ALICE
        # Reading needs no CSRF token (a safe method), but the same origin.
        listed = await h.client.get("/me/delegations")
        assert [d["id"] for d in listed.json()["delegations"]] == [delegation["id"]]
        evil = await h.client.get("/me/delegations", headers={"origin": "https://evil.example"})
        assert evil.status_code == 403

        path = f"/me/delegations/{delegation['id']}"
        assert (await h.client.delete(path)).status_code == 403
        assert (await h.client.delete(path, headers={"x-csrf-token": "B" * 43})).status_code == 403
        assert (await h.client.delete(path, headers={"x-csrf-token": csrf})).status_code == 204
        assert (await h.client.get("/me/delegations")).json() == {"delegations": []}

        # Another session user sees none of it, and cannot revoke it.
        h.client.cookies.clear()
        bob_csrf = await h.session("bob")
        assert (await h.client.get("/me/delegations?include_inactive=true")).json() == {
            "delegations": []
        }
        theirs = await h.client.delete(path, headers={"x-csrf-token": bob_csrf})
        assert theirs.status_code == 404


async def test_no_token_secret_password_or_cookie_in_logs_or_error_bodies(
    sqlite_store_url: str, fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    secrets: list[str] = [PASSWORD]
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with running(sqlite_store_url, fake_issuer, login=True) as h:
            secrets += [h.robot_secret, h.hub_secret]
            alice = h.own_token()
            secrets.append(alice)
            made = (await h.create(alice, scope="garage:open", may_delegate=True)).json()
            token = made["token"]
            secrets += [token["access_token"], token["refresh_token"]]
            refreshed = (await h.refresh(token["refresh_token"])).json()
            secrets += [refreshed["access_token"], refreshed["refresh_token"]]
            sibling = (await h.refresh(token["refresh_token"])).json()  # a benign retry
            secrets += [sibling["access_token"], sibling["refresh_token"]]
            child = (await h.create(token["access_token"], actor=HUB, expires_in=60)).json()
            secrets.append(child["token"]["access_token"])
            # Refusals of every kind, each with a credential in the request.
            for answer in (
                await h.create(token["access_token"], actor=HUB, scope="admin"),
                await h.create(token["refresh_token"]),
                await h.create(alice, expires_in=-1, label=h.robot_secret),
                await h.create(alice, actor=h.robot_secret),
                await h.create(alice, scope=h.robot_secret),
                await h.create(alice, audience=token["access_token"][:2000]),
                await h.listed(token["access_token"]),
                await h.revoke(alice, token["refresh_token"][:60]),
                await h.revoke(alice, made["delegation"]["id"]),
                await h.refresh(refreshed["refresh_token"]),
            ):
                assert answer.status_code >= 204
                bodies.append(answer.text)
            csrf = await h.session("alice")
            cookie = h.client.cookies.get("__Host-authbridge_session")
            assert cookie
            secrets += [csrf, cookie]
            refused = await h.client.post(
                "/me/delegations", json={"actor": ROBOT, "expires_in": 60, "label": csrf}
            )
            assert refused.status_code == 403
            bodies.append(refused.text)
            ok = await h.client.post(
                "/me/delegations",
                json={"actor": ROBOT, "expires_in": 60},
                headers={"x-csrf-token": csrf},
            )
            assert ok.status_code == 201
    # The server's records: httpx's are the test client's own request lines.
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [record.getMessage() for record in records]
    lines += [str(record.args) for record in records]
    assert any("Delegation" in line for line in lines)  # the flow was logged at all
    for secret in secrets:
        assert len(secret) >= 20
        leaked = [line for line in lines if secret in line]
        assert leaked == [], f"a secret in the log: {leaked[:1]}"
        assert not [body for body in bodies if secret in body]
