"""Adversarial review of /me/delegations: escalation, robots, direct_principal, oracles, bodies.

Each test is one attack on a real app (its own issuer, a SQLite file; the
store-dependent races are in test_delegation_review_races.py on PostgreSQL).
Where the product is wrong the test asserts the right behaviour and is an
expected failure naming the defect.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Security

from authbridge import Principal
from authbridge.issuer._refresh import token_hash
from authbridge.testing import FakeIssuer
from fastapi_delegation.support import (
    ALICE,
    BOB,
    HUB,
    ISSUER,
    ROBOT,
    Harness,
    claims_of,
    running,
)
from store_support import sqlite_store_url  # noqa: F401 - fixture

MARKER = "zq-review-marker"


@pytest.fixture
async def h(sqlite_store_url: str, fake_issuer: FakeIssuer) -> AsyncIterator[Harness]:  # noqa: F811
    async with running(sqlite_store_url, fake_issuer) as harness:
        yield harness


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def delegate(h: Harness, token: str | None = None, **body: Any) -> dict[str, Any]:
    body.setdefault("scope", "garage:open")
    answer = await h.create(token or h.own_token(), **body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def stored(h: Harness, user: str = ALICE) -> list[Any]:
    return list(
        await h.runtime.store.delegations.for_user(
            user, now=h.runtime.clock(), include_inactive=True
        )
    )


def refusal(answer: httpx.Response, status: int, error: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    assert MARKER not in answer.text
    if error is not None:
        assert answer.json()["error"] == error


# --- escalation by scope, audience, lifetime ------------------------------------------------


async def test_scope_beyond_the_token_the_robot_or_the_app_is_refused(h: Harness) -> None:
    narrow = h.own_token(scopes={"garage:open"})
    refusal(await h.create(narrow, scope="items:read"), 400, "invalid_scope")  # not in the token
    refusal(await h.create(h.own_token(), scope="items:write"), 400, "invalid_scope")  # not robot's
    refusal(await h.create(h.own_token(), scope="admin"), 400, "invalid_scope")  # not the account's
    refusal(await h.create(h.own_token(), scope=f"{MARKER}"), 400, "invalid_scope")  # unknown
    # Only U+0020 separates scopes: a tab or NBSP does not smuggle a second one in.
    for spelled in ("garage:open\titems:write", "garage:open\u00a0items:write"):
        refusal(await h.create(h.own_token(), scope=spelled), 400)
    # Bob's account has no garage:open: a token that claims it (minted before a
    # change of rights) hands over only what the account still has.
    refusal(await h.create(h.own_token(BOB), scope="garage:open"), 400, "invalid_scope")
    assert await stored(h) == []
    assert await stored(h, BOB) == []


async def test_a_scope_the_account_lost_is_not_delegated_by_an_older_token(h: Harness) -> None:
    token = h.own_token()  # garage:open items:read items:write
    users = h.runtime.store.users
    alice = await users.get(ALICE)
    assert alice is not None
    await users.update(dataclasses.replace(alice, scopes=frozenset({"items:read"})))
    refusal(await h.create(token, scope="garage:open"), 400, "invalid_scope")
    made = await delegate(h, token, scope=None)
    assert made["delegation"]["scope"] == "items:read"
    assert claims_of(made["token"]["access_token"])["scope"] == "items:read"


async def test_audience_beyond_the_token_is_refused(h: Harness) -> None:
    for audience in ("https://other.example", ISSUER + "/", ISSUER.upper(), MARKER):
        refusal(await h.create(h.own_token(), audience=audience), 400, "invalid_target")
    refusal(await h.create(h.own_token(), audience=["x"]), 400)  # not a string
    assert await stored(h) == []


async def test_lifetime_is_capped_and_every_token_ends_with_the_delegation(h: Harness) -> None:
    made = await delegate(h, expires_in=10 * 365 * 86400)
    delegation, token = made["delegation"], made["token"]
    assert delegation["expires_at"] - delegation["created_at"] == pytest.approx(86400.0)
    access = claims_of(token["access_token"])
    assert access["exp"] - access["iat"] <= h.runtime.config.access_token_ttl
    found = await h.runtime.store.refresh.find(token_hash(token["refresh_token"]))
    assert found is not None
    assert found[1].expires_at <= delegation["expires_at"]
    for wrong in (0, -1, 1.5, True, "3600", 10 * 365 * 86400 + 1, 10**400):
        refusal(await h.create(h.own_token(), expires_in=wrong), 400, "invalid_request")


# --- who acts for whom comes from tokens, never from the body --------------------------------


async def test_act_sub_and_may_act_in_the_body_are_refused(h: Harness) -> None:
    for member in ("act", "may_act", "sub", "user_id", "parent", "did", "client_id", "revoked_at"):
        value: Any = {"sub": HUB} if member in ("act", "may_act") else MARKER
        answer = await h.create(h.own_token(), **{member: value})
        refusal(answer, 400, "invalid_request")
    assert await stored(h) == []
    made = await delegate(h)
    assert claims_of(made["token"]["access_token"])["act"] == {"sub": ROBOT, "client_id": ROBOT}


# --- robots ---------------------------------------------------------------------------------


async def test_a_robot_cannot_create_list_or_revoke_without_may_delegate(h: Harness) -> None:
    made = await delegate(h)
    robot = made["token"]["access_token"]
    refusal(await h.create(robot, actor=HUB), 403, "access_denied")
    listed = await h.listed(robot)
    assert listed.status_code == 403
    assert listed.json() == {"detail": "Delegated tokens are not accepted here"}
    assert (await h.revoke(robot, made["delegation"]["id"])).status_code == 403
    # The robot's exchanged token (another kind of delegated token) is refused the same way.
    exchanged = await h.client.post(
        "/oauth/token",
        auth=(ROBOT, h.robot_secret),
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": h.own_token(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    other = exchanged.json()["access_token"]
    assert (await h.listed(other)).status_code == 403
    assert (await h.revoke(other, made["delegation"]["id"])).status_code == 403
    refusal(await h.create(other, actor=HUB), 403, "access_denied")
    assert [d.id for d in await stored(h) if d.active(h.runtime.clock())] == [
        made["delegation"]["id"]
    ]


async def test_a_robots_own_client_token_delegates_nothing(h: Harness) -> None:
    machine = await h.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(ROBOT, h.robot_secret)
    )
    token = machine.json()["access_token"]
    for actor in (HUB, ROBOT):
        refusal(await h.create(token, actor=actor), 403 if actor == HUB else 400)
    assert await stored(h, ROBOT) == []


async def test_a_robot_with_may_delegate_stays_within_its_delegation(h: Harness) -> None:
    parent = await delegate(h, expires_in=600, may_delegate=True)
    robot = parent["token"]["access_token"]
    refusal(await h.create(robot, actor=HUB, scope="items:read"), 400, "invalid_scope")
    refusal(await h.create(robot, actor=HUB, audience="https://x.example"), 400, "invalid_target")
    refusal(await h.create(robot, actor=ROBOT), 400, "invalid_request")  # itself again
    child = await delegate(h, robot, actor=HUB, expires_in=86400, may_delegate=True)
    assert child["delegation"]["parent"] == parent["delegation"]["id"]
    assert child["delegation"]["expires_at"] <= parent["delegation"]["expires_at"]
    assert claims_of(child["token"]["access_token"])["act"] == {
        "sub": HUB,
        "client_id": HUB,
        "act": {"sub": ROBOT, "client_id": ROBOT},
    }
    # The hub cannot hand it back to the robot (already in the chain).
    refusal(await h.create(child["token"]["access_token"], actor=ROBOT), 400, "invalid_request")


# --- direct_principal against every way a delegated token can arrive -------------------------


async def test_no_dependency_turns_a_delegated_token_into_the_users_own(h: Harness) -> None:
    auth = h.auth

    @h.app.get("/review/direct")
    async def direct(user: Principal = Security(auth.direct_principal)) -> dict[str, Any]:
        return {"user": user.subject}

    @h.app.get("/review/optional")
    async def optional(
        user: Principal | None = Security(auth.optional_principal),
    ) -> dict[str, Any]:
        return {"actors": list(user.actors) if user else None}

    @h.app.get("/review/active")
    async def active(user: Principal = Security(auth.active_principal)) -> dict[str, Any]:
        return {"actors": list(user.actors)}

    made = await delegate(h)
    robot = made["token"]["access_token"]
    refreshed = await h.refresh(made["token"]["refresh_token"])
    again = refreshed.json()["access_token"]
    for token in (robot, again):
        assert (await h.client.get("/review/direct", headers=bearer(token))).status_code == 403
        for path in ("/review/optional", "/review/active"):
            answer = await h.client.get(path, headers=bearer(token))
            assert answer.json()["actors"] == [ROBOT]  # always told, never hidden
    assert (await h.client.get("/review/direct", headers=bearer(h.own_token()))).json() == {
        "user": ALICE
    }
    # Revoked: still refused by direct_principal (never a 200 on the user's own routes).
    await h.revoke(h.own_token(), made["delegation"]["id"])
    assert (await h.client.get("/review/direct", headers=bearer(robot))).status_code == 403


async def test_a_public_client_cannot_launder_a_delegated_token(h: Harness) -> None:
    """The users' public login client exchanging the robot's token: no secret, no actor."""
    made = await delegate(h)
    answer = await h.client.post(
        "/oauth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": "spa",
            "subject_token": made["token"]["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
    )
    assert answer.status_code in (400, 401), answer.text
    assert "access_token" not in answer.json()


# --- the user's token that delegates --------------------------------------------------------


async def test_a_revoked_user_token_creates_no_delegation(h: Harness) -> None:
    token = h.own_token()
    revoked = await h.client.post("/oauth/revoke", data={"client_id": "spa", "token": token})
    assert revoked.status_code == 200
    assert (await h.garage(token)).status_code == 401  # revoked for active_principal
    answer = await h.create(token)
    assert answer.status_code == 401, answer.text
    assert await stored(h) == []


async def test_a_revoked_user_token_neither_lists_nor_revokes(h: Harness) -> None:
    made = await delegate(h)
    token = h.own_token()
    await h.client.post("/oauth/revoke", data={"client_id": "spa", "token": token})
    assert (await h.listed(token)).status_code == 401
    assert (await h.revoke(token, made["delegation"]["id"])).status_code == 401
    assert all(d.active(h.runtime.clock()) for d in await stored(h))


async def test_a_token_of_a_revoked_delegation_creates_nothing(h: Harness) -> None:
    parent = await delegate(h, may_delegate=True)
    await h.revoke(h.own_token(), parent["delegation"]["id"])
    refusal(await h.create(parent["token"]["access_token"], actor=HUB), 403, "access_denied")
    assert [d.parent for d in await stored(h)] == [None]


# --- oracles over other users' delegations -------------------------------------------------


async def test_ids_are_random_and_other_users_ids_are_404_and_untouched(h: Harness) -> None:
    ids = [(await delegate(h))["delegation"]["id"] for _ in range(5)]
    assert len(set(ids)) == 5
    assert all(re.fullmatch(r"dlg_[A-Za-z0-9_-]{22}", i) for i in ids)
    bob = h.own_token(BOB, scopes={"items:read"})
    answers = [await h.revoke(bob, i) for i in (ids[0], "dlg_" + "A" * 22, "x" * 300, "..")]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers[:3]}) == 1  # one body, existing or not
    assert (await h.listed(bob)).json() == {"delegations": []}
    assert (await h.listed(bob, include_inactive="true")).json() == {"delegations": []}
    assert all(d.active(h.runtime.clock()) for d in await stored(h))
    assert (await h.revoke(h.own_token(), ids[0])).status_code == 204
    assert (await h.revoke(h.own_token(), ids[0])).status_code == 204  # again: same answer


# --- bodies, JSON and bounds ---------------------------------------------------------------


async def test_json_edge_cases_are_4xx_and_store_nothing(h: Harness) -> None:
    token = h.own_token()
    good = {"actor": ROBOT, "expires_in": 60}
    bodies = [
        b'{"actor": "garage-robot", "actor": "hub", "expires_in": 60}',  # duplicate member
        b'{"actor": "garage-robot", "expires_in": 60, "label": "\\ud800"}',  # lone surrogate
        b'{"actor": "garage-robot", "expires_in": 1e400}',
        b'{"actor": "garage-robot", "expires_in": NaN}',
        b'{"actor": "garage-robot", "expires_in": 60}\n{"x": 1}',  # two values
        b"[" * 5000 + b"]" * 5000,
        b'{"actor": "garage-\\u0000robot", "expires_in": 60}',  # NUL in a store lookup
        b'{"actor": "garage-robot", "expires_in": 60, "label": "a\\u2028b"}',
        b'{"actor": "garage-robot", "expires_in": 60, "label": "a\\u0000b"}',
        json.dumps({**good, "label": "x" * 201}).encode(),
        json.dumps({**good, "scope": " ".join(f"s{i}" for i in range(65))}).encode(),
        json.dumps({**good, "may_delegate": "true"}).encode(),
        '{"actor": "garage-robot", "expires_in": 60}'.encode("utf-16"),
        b"",
        b"null",
    ]
    for body in bodies:
        answer = await h.post_raw(token, body)
        assert 400 <= answer.status_code < 500, (body[:60], answer.status_code, answer.text)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json5"):
        answer = await h.post_raw(token, json.dumps(good).encode(), content_type)
        assert answer.status_code == 415
    assert await stored(h) == []


async def test_oversized_bodies_are_refused_without_reading_them(h: Harness) -> None:
    token = h.own_token()
    declared = await h.client.post(
        "/me/delegations",
        content=b"{}",
        headers={**bearer(token), "content-type": "application/json", "content-length": "99999999"},
    )
    assert declared.status_code in (400, 413)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"actor": "garage-robot", "expires_in": 60, "label": "'
        for _ in range(1000):
            yield b"a" * 1024

    streamed = await h.client.post(
        "/me/delegations",
        content=chunks(),
        headers={**bearer(token), "content-type": "application/json"},
    )
    assert streamed.status_code == 413
    nobody = await h.client.post(
        "/me/delegations", content=b"{" * 100_000, headers={"content-type": "application/json"}
    )
    assert nobody.status_code == 401
    assert await stored(h) == []


async def test_a_user_cannot_pile_up_delegations(
    sqlite_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
) -> None:
    async with running(
        sqlite_store_url, fake_issuer, issuer_options={"max_delegations_per_user": 3}
    ) as h:
        for _ in range(3):
            await delegate(h)
        refusal(await h.create(h.own_token()), 400, "invalid_request")
        for _ in range(30):  # the per-user creation rate, refused ones included
            await h.create(h.own_token())
        limited = await h.create(h.own_token())
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert len(await stored(h)) == 3


# --- revocation of a chain ------------------------------------------------------------------


async def test_revoking_a_parent_ends_every_child_however_many_delegations_came_after(
    sqlite_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
) -> None:
    async with running(
        sqlite_store_url, fake_issuer, issuer_options={"max_delegations_per_user": 3}
    ) as h:
        parent = await delegate(h, may_delegate=True)
        child = await delegate(h, parent["token"]["access_token"], actor=HUB)
        hub_token = child["token"]["access_token"]
        assert (await h.garage(hub_token)).status_code == 200
        # The user goes on using delegations (one at a time), as anyone does over a day
        # (through the issuer's API: the routes' per-minute rate is not what is tested).
        alice = await h.auth.resource_server.verify(h.own_token())
        for _ in range(30):
            made, _ = await h.runtime.delegations.create(
                alice, actor=ROBOT, scopes=None, audience=None, expires_in=60
            )
            assert await h.runtime.delegations.revoke(ALICE, made.id)
        assert (await h.revoke(h.own_token(), parent["delegation"]["id"])).status_code == 204
        records = {d.id: d for d in await stored(h)}
        assert records[child["delegation"]["id"]].revoked_at is not None
        assert (await h.garage(hub_token)).status_code == 401
        # Nor may the hub go on exchanging the user's tokens under the orphaned child.
        exchanged = await h.client.post(
            "/oauth/token",
            auth=(HUB, h.hub_secret),
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": h.own_token(),
                "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            },
        )
        assert exchanged.status_code == 400, exchanged.text


# --- secrets ---------------------------------------------------------------------------------


async def test_no_token_secret_or_csrf_token_in_logs_or_error_bodies(
    sqlite_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(sqlite_store_url, fake_issuer, login=True) as h:
        user = h.own_token()
        made = await delegate(h, user, may_delegate=True)
        robot, refresh = made["token"]["access_token"], made["token"]["refresh_token"]
        bodies = [
            await h.create(user, scope="items:write"),
            await h.create(user, actor=MARKER),
            await h.create(robot, actor=ROBOT),
            await h.listed(robot),
            await h.refresh(refresh, secret="abcs_wrong"),
            await h.refresh(refresh + "x"),
        ]
        rotated = await h.refresh(refresh)
        reused = await h.refresh(refresh)
        reused_again = await h.refresh(refresh)
        bodies += [reused, reused_again]
        await h.revoke(user, made["delegation"]["id"])
        bodies.append(await h.garage(robot))
        bodies.append(await h.refresh(rotated.json()["refresh_token"]))
        csrf = await h.session("alice")
        bodies.append(await h.client.post("/me/delegations", json={"actor": ROBOT}))
        secrets = [user, robot, refresh, rotated.json()["refresh_token"], h.robot_secret, csrf]
        secrets += [s.split(".")[2] for s in (user, robot)]  # signatures alone
        text = "\n".join(r.getMessage() for r in caplog.records) + "".join(a.text for a in bodies)
        for secret in secrets:
            assert secret not in text


# --- sessions and CSRF ------------------------------------------------------------------------


async def test_a_forged_cross_site_request_with_the_session_cookie_changes_nothing(
    sqlite_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
) -> None:
    async with running(sqlite_store_url, fake_issuer, login=True) as h:
        csrf = await h.session("alice")
        body = json.dumps({"actor": ROBOT, "expires_in": 60}).encode()
        # What a page elsewhere can send without a preflight: a "simple" request.
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            answer = await h.client.post(
                "/me/delegations",
                content=body,
                headers={"content-type": content_type, "origin": "https://evil.example"},
            )
            assert answer.status_code == 403, answer.text
        no_token = await h.client.post(
            "/me/delegations", content=body, headers={"content-type": "application/json"}
        )
        assert no_token.status_code == 403
        made = await h.client.post(
            "/me/delegations",
            content=body,
            headers={"content-type": "application/json", "x-csrf-token": csrf, "origin": ISSUER},
        )
        assert made.status_code == 201, made.text
        delegation_id = made.json()["delegation"]["id"]
        for headers in ({}, {"origin": "https://evil.example", "x-csrf-token": csrf}):
            gone = await h.client.delete(f"/me/delegations/{delegation_id}", headers=headers)
            assert gone.status_code == 403
        stolen = await h.client.get("/me/delegations", headers={"sec-fetch-site": "cross-site"})
        assert stolen.status_code == 403
        assert all(d.active(h.runtime.clock()) for d in await stored(h))


# --- the policy --------------------------------------------------------------------------------


def garage_policy(request: Any) -> bool:
    """docs/delegation.md's example: only the known robots, only for the garage."""
    return request.actor in {ROBOT, HUB} and request.scopes <= {"garage:open"}


async def test_a_restricting_policy_does_not_let_robots_pass_delegations_on(
    sqlite_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
) -> None:
    async with running(
        sqlite_store_url, fake_issuer, issuer_options={"delegation_policy": garage_policy}
    ) as h:
        made = await delegate(h, may_delegate=False)
        refusal(await h.create(h.own_token(), scope="items:read"), 403, "access_denied")
        passed_on = await h.create(made["token"]["access_token"], actor=HUB)
        refusal(passed_on, 403, "access_denied")
        assert [d.actor for d in await stored(h)] == [ROBOT]
