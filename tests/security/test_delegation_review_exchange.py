"""Adversarial review of delegated tokens at the token endpoint and beyond the /me routes.

RFC 8693 exchange by robots (confused deputies, actor tokens, forged ``act``,
escalation, chains), refresh families, RFC 7662 introspection and RFC 7009
revocation of delegated tokens, what changes of accounts and clients do to
delegations, and ``act`` in other providers' tokens. A real app on a SQLite file.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security

from authbridge import AppIssuer, AuthBridge, Principal
from authbridge.issuer import TOKEN_EXCHANGE
from authbridge.issuer._kek import new_kek
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, new_secret
from authbridge.store import ClientRecord
from authbridge.testing import FakeIssuer
from fastapi_delegation.support import (
    ALICE,
    BOB,
    HUB,
    ISSUER,
    ROBOT,
    SCOPES,
    Harness,
    claims_of,
    confidential,
    running,
)
from store_support import sqlite_store_url  # noqa: F401 - fixture

ACCESS = "urn:ietf:params:oauth:token-type:access_token"
EXTRA_ROBOTS = ("robot-3", "robot-4", "robot-5")


@pytest.fixture
async def h(sqlite_store_url: str, fake_issuer: FakeIssuer) -> AsyncIterator[Harness]:  # noqa: F811
    async with running(sqlite_store_url, fake_issuer) as harness:
        yield harness


async def delegate(h: Harness, token: str | None = None, **body: Any) -> dict[str, Any]:
    body.setdefault("scope", "garage:open")
    answer = await h.create(token or h.own_token(), **body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def exchange(
    h: Harness, subject_token: str, client: tuple[str, str] | None = None, **form: str
) -> httpx.Response:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS,
        **form,
    }
    return await h.client.post("/oauth/token", data=data, auth=client or (ROBOT, h.robot_secret))


async def client_token(h: Harness, client: tuple[str, str]) -> str:
    answer = await h.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=client
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def refused(answer: httpx.Response, error: str = "invalid_request") -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error
    assert "access_token" not in answer.json()


# --- act never comes from the request ------------------------------------------------------


async def test_act_may_act_and_foreign_actor_tokens_are_refused(h: Harness) -> None:
    await delegate(h)
    alice = h.own_token()
    robot_cc = await client_token(h, (ROBOT, h.robot_secret))
    delegated = (await delegate(h))["token"]["access_token"]
    hub_secret = new_secret(CLIENT_SECRET_PREFIX)
    await h.runtime.store.clients.update(
        confidential(HUB, hub_secret, {"garage:open"}, {TOKEN_EXCHANGE, "client_credentials"})
    )
    hub_cc = await client_token(h, (HUB, hub_secret))
    for form in (
        {"act": '{"sub": "hub"}'},
        {"act": ""},
        {"may_act": '{"sub": "garage-robot"}'},
        {"actor_token": alice, "actor_token_type": ACCESS},  # a user's token names no actor
        {"actor_token": hub_cc, "actor_token_type": ACCESS},  # another client's
        {"actor_token": delegated, "actor_token_type": ACCESS},  # a delegated one
        {"actor_token": robot_cc},  # without its type
        {"actor_token_type": ACCESS},
        {"actor_token": robot_cc, "actor_token_type": "urn:ietf:params:oauth:token-type:jwt"},
        {"actor_token": "x" * 15000, "actor_token_type": ACCESS},
    ):
        refused(await exchange(h, alice, **form))
    # The robot's own client token as actor_token, but presented by the hub: refused too.
    refused(
        await exchange(
            h, alice, client=(HUB, hub_secret), actor_token=robot_cc, actor_token_type=ACCESS
        )
    )
    ok = await exchange(h, alice, actor_token=robot_cc, actor_token_type=ACCESS)
    assert ok.status_code == 200, ok.text
    assert claims_of(ok.json()["access_token"])["act"] == {"sub": ROBOT, "client_id": ROBOT}


async def test_a_revoked_or_foreign_subject_token_is_not_exchanged(h: Harness) -> None:
    await delegate(h)
    revoked = h.own_token()
    await h.client.post("/oauth/revoke", data={"client_id": "spa", "token": revoked})
    refused(await exchange(h, revoked))
    refused(await exchange(h, h.fake.token(subject=ALICE, scopes=["garage:open"])))
    refused(await exchange(h, revoked, subject_token_type="urn:ietf:params:oauth:token-type:jwt"))
    refused(await exchange(h, h.own_token(), requested_token_type="urn:x:refresh_token"))


# --- escalation through the exchange -----------------------------------------------------


async def test_the_exchange_never_widens_scope_audience_or_lifetime(h: Harness) -> None:
    made = await delegate(h, expires_in=120)
    end = made["delegation"]["expires_at"]
    refused(await exchange(h, h.own_token(), scope="items:read"), "invalid_scope")
    refused(await exchange(h, h.own_token(), scope="garage:open admin"), "invalid_scope")
    refused(await exchange(h, h.own_token(), resource="https://other.example"), "invalid_target")
    refused(await exchange(h, h.own_token(), audience=ISSUER + "/"), "invalid_target")
    short, _ = h.runtime.mint_access_token(
        subject=ALICE,
        client_id="spa",
        scopes={"garage:open"},
        audiences=(ISSUER,),
        lifetime=30,
    )
    got = await exchange(h, short)
    assert got.status_code == 200, got.text
    body = got.json()
    assert "refresh_token" not in body
    claims = claims_of(body["access_token"])
    assert claims["exp"] <= claims_of(short)["exp"]
    assert claims["exp"] <= end
    assert claims["scope"] == "garage:open"
    assert claims["did"] == made["delegation"]["id"]
    # Re-exchanging its own delegated token (to extend or widen it) is refused.
    refused(await exchange(h, body["access_token"]))
    # A token for another resource (RFC 8707) is no subject token here.
    other, _ = h.runtime.mint_access_token(
        subject=ALICE, client_id="spa", scopes={"garage:open"}, audiences=("https://x.example",)
    )
    refused(await exchange(h, other))


# --- confused deputies ----------------------------------------------------------------------


async def test_client_b_cannot_use_client_as_delegation(h: Harness) -> None:
    made = await delegate(h)  # to the robot
    hub = (HUB, h.hub_secret)
    refused(await exchange(h, h.own_token(), client=hub))  # no delegation to the hub
    refused(await exchange(h, made["token"]["access_token"], client=hub))  # no may_delegate
    stolen = await h.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": made["token"]["refresh_token"]},
        auth=hub,
    )
    assert stolen.status_code in (400, 401)
    assert stolen.json()["error"] in (
        "invalid_grant",
        "unauthorized_client",
    )
    # The hub's attempt revoked nothing: the robot still refreshes.
    assert (await h.refresh(made["token"]["refresh_token"])).status_code == 200
    # Bob's token under Alice's delegation: nothing.
    refused(await exchange(h, h.own_token(BOB, scopes={"items:read"})))


async def test_a_chain_is_at_most_four_actors_and_needs_may_delegate(h: Harness) -> None:
    secrets = {}
    for client_id in EXTRA_ROBOTS:
        secrets[client_id] = new_secret(CLIENT_SECRET_PREFIX)
        await h.runtime.store.clients.add(
            confidential(client_id, secrets[client_id], {"garage:open"}, {TOKEN_EXCHANGE})
        )
    made = await delegate(h, may_delegate=True)
    token = made["token"]["access_token"]
    chain = [ROBOT]
    for client in [(HUB, h.hub_secret)] + [(c, secrets[c]) for c in EXTRA_ROBOTS]:
        answer = await exchange(h, token, client=client)
        if len(chain) == 4:
            refused(answer)
            break
        assert answer.status_code == 200, answer.text
        new = answer.json()["access_token"]
        claims = claims_of(new)
        assert claims["exp"] <= claims_of(token)["exp"]
        assert claims["did"] == made["delegation"]["id"]
        chain.insert(0, client[0])
        principal = await h.auth.resource_server.verify(new)
        assert principal.actors == tuple(chain)
        token = new
    assert len(chain) == 4
    # Revoking the delegation ends the whole chain at once.
    await h.revoke(h.own_token(), made["delegation"]["id"])
    assert (await h.garage(token)).status_code == 401
    refused(await exchange(h, token, client=(EXTRA_ROBOTS[2], secrets[EXTRA_ROBOTS[2]])))


# --- refresh families of delegations ---------------------------------------------------------


async def test_a_delegated_refresh_never_widens_and_ends_with_the_delegation(h: Harness) -> None:
    made = await delegate(h, expires_in=1)
    refresh_token = made["token"]["refresh_token"]
    assert claims_of(made["token"]["access_token"])["exp"] <= made["delegation"]["expires_at"]
    for form in ({"scope": "garage:open items:read"}, {"resource": "https://x.example"}):
        answer = await h.client.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, **form},
            auth=(ROBOT, h.robot_secret),
        )
        assert answer.status_code == 400, answer.text
    # A refresh keeps act and did (a robot never turns into the user by refreshing).
    ignored = await h.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "act": "x"},
        auth=(ROBOT, h.robot_secret),
    )
    if ignored.status_code == 200:
        claims = claims_of(ignored.json()["access_token"])
        assert claims["act"] == {"sub": ROBOT, "client_id": ROBOT}
        assert claims["did"] == made["delegation"]["id"]
        assert claims["exp"] <= made["delegation"]["expires_at"]
        refresh_token = ignored.json()["refresh_token"]
    await asyncio.sleep(max(0.0, made["delegation"]["expires_at"] - h.runtime.clock()) + 0.05)
    assert (await h.refresh(refresh_token)).status_code == 400
    refused(await exchange(h, h.own_token()))
    assert (await h.listed(h.own_token())).json() == {"delegations": []}


# --- changes of rights after the delegation ---------------------------------------------


async def test_rights_withdrawn_after_the_delegation_are_not_carried_on(h: Harness) -> None:
    made = await delegate(h, scope="garage:open items:read")
    users, clients = h.runtime.store.users, h.runtime.store.clients
    alice = await users.get(ALICE)
    assert alice is not None
    await users.update(dataclasses.replace(alice, scopes=frozenset({"items:read"})))
    refreshed = await h.refresh(made["token"]["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "items:read"
    refused(await exchange(h, h.own_token(), scope="garage:open"), "invalid_scope")
    # The robot's client loses items:read too: a refresh carries nothing it lost.
    robot = await clients.get(ROBOT)
    assert robot is not None
    await clients.update(dataclasses.replace(robot, scopes=frozenset({"garage:open"})))
    again = await h.refresh(refreshed.json()["refresh_token"])
    assert again.status_code in (200, 400), again.text
    if again.status_code == 200:
        assert "items:read" not in again.json()["scope"].split(" ")
    # A disabled account stops everything the robot could get.
    await users.update(dataclasses.replace(alice, disabled=True))
    refused(await exchange(h, h.own_token()))
    last = await h.refresh(again.json()["refresh_token"]) if again.status_code == 200 else again
    assert last.status_code == 400


async def test_a_deleted_user_leaves_no_delegation_behind(h: Harness) -> None:
    made = await delegate(h)
    assert await h.runtime.store.users.delete(ALICE)
    assert await h.runtime.store.delegations.get(made["delegation"]["id"]) is None
    assert (await h.refresh(made["token"]["refresh_token"])).status_code == 400
    refused(await exchange(h, h.own_token()))


async def test_a_reregistered_client_id_inherits_no_delegation(h: Harness) -> None:
    made = await delegate(h)
    clients = h.runtime.store.clients
    assert await clients.delete(ROBOT)
    # The refresh family went with the client.
    assert (await h.refresh(made["token"]["refresh_token"])).status_code in (400, 401)
    newcomer = new_secret(CLIENT_SECRET_PREFIX)
    await clients.add(
        confidential(ROBOT, newcomer, {"garage:open", "items:read"}, {TOKEN_EXCHANGE})
    )
    refused(await exchange(h, h.own_token(), client=(ROBOT, newcomer)))
    listed = (await h.listed(h.own_token())).json()["delegations"]
    assert listed == []


# --- introspection and revocation of delegated tokens ----------------------------------------


async def test_introspection_and_rfc7009_revocation_of_delegated_tokens(h: Harness) -> None:
    made = await delegate(h)
    access, refresh_token = made["token"]["access_token"], made["token"]["refresh_token"]
    hub = (HUB, h.hub_secret)

    async def introspect(token: str, client: tuple[str, str]) -> dict[str, Any]:
        answer = await h.client.post("/oauth/introspect", data={"token": token}, auth=client)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    seen = await introspect(access, hub)
    assert seen["active"] is True
    assert seen["act"] == {"sub": ROBOT, "client_id": ROBOT}
    assert seen["did"] == made["delegation"]["id"]
    assert seen["sub"] == ALICE
    assert seen["client_id"] == ROBOT
    # A refresh token is its client's business only.
    assert await introspect(refresh_token, hub) == {"active": False}
    assert (await introspect(refresh_token, (ROBOT, h.robot_secret)))["active"] is True
    public = await h.client.post("/oauth/introspect", data={"token": access, "client_id": "spa"})
    assert public.status_code == 401
    # Another client, or the user's own login client, cannot revoke the robot's tokens.
    for client in (hub, None):
        data = {"token": access} if client else {"token": access, "client_id": "spa"}
        assert (await h.client.post("/oauth/revoke", data=data, auth=client)).status_code == 200
        data["token"] = refresh_token
        assert (await h.client.post("/oauth/revoke", data=data, auth=client)).status_code == 200
    assert (await h.garage(access)).status_code == 200
    rotated = await h.refresh(refresh_token)
    assert rotated.status_code == 200
    # The robot revokes its own refresh token: the family ends, nothing else changes.
    new_refresh = rotated.json()["refresh_token"]
    await h.client.post("/oauth/revoke", data={"token": new_refresh}, auth=(ROBOT, h.robot_secret))
    assert (await h.refresh(new_refresh)).status_code == 400
    # The user revokes the delegation: introspection says inactive at once.
    await h.revoke(h.own_token(), made["delegation"]["id"])
    assert await introspect(access, hub) == {"active": False}
    assert await introspect(rotated.json()["access_token"], hub) == {"active": False}


# --- act in other providers' tokens -----------------------------------------------------------


async def test_another_providers_act_claim_is_read_but_never_mistaken_for_ours(
    h: Harness,
) -> None:
    spoof = h.fake.token(
        subject=ALICE,
        scopes=["garage:open"],
        act={"sub": ROBOT, "client_id": ROBOT},
        did="dlg_" + "A" * 22,
    )
    principal = await h.auth.resource_server.verify(spoof)
    assert principal.actors == (ROBOT,)
    assert principal.provider == "sso"
    assert principal.provider != h.runtime.config.name
    # It may not create, list or revoke delegations, nor be exchanged as the app's own.
    assert (await h.create(spoof)).status_code == 403
    assert (await h.listed(spoof)).status_code == 403
    refused(await exchange(h, spoof))
    for act in ({}, {"sub": ""}, {"sub": 7}, [], "robot", {"sub": "a", "act": None}):
        bad = h.fake.token(subject=ALICE, scopes=["garage:open"], act=act)
        assert (await h.garage(bad, active=False)).status_code == 401
    nested: dict[str, Any] = {"sub": "a0"}
    for i in range(1, 9):
        nested = {"sub": f"a{i}", "act": nested}
    too_deep = h.fake.token(subject=ALICE, scopes=["garage:open"], act=nested)
    assert (await h.garage(too_deep, active=False)).status_code == 401


def laundering_app(store_url: str, fake: FakeIssuer) -> tuple[FastAPI, AuthBridge]:
    """An app whose users may also exchange tokens of their IdP ``sso`` issued to ``our-app``."""
    auth = AuthBridge(
        [fake.provider("sso", client_ids=["our-app"])],
        issuer=AppIssuer(ISSUER, store=store_url, scopes=SCOPES, key_encryption_key=new_kek()),
        transport=fake.transport,
    )
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.post("/account/email")
    async def change_email(user: Principal = Security(auth.direct_principal)) -> dict[str, Any]:
        return {"changed_for": user.subject}

    auth.install(app, docs_url=None)
    return app, auth


async def test_a_providers_delegated_token_is_not_laundered_by_the_exchange(
    sqlite_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
) -> None:
    app, auth = laundering_app(sqlite_store_url, fake_issuer)
    async with app.router.lifespan_context(app):
        assert auth.issuer is not None
        await auth.issuer.store.clients.add(
            ClientRecord(
                client_id="our-app",
                auth_method="none",
                grant_types=frozenset({TOKEN_EXCHANGE}),
                scopes=frozenset({"items:read"}),
            )
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            # The IdP's on-behalf-of token: its service "ext-robot" acts for the user.
            delegated = fake_issuer.token(
                subject="ext-alice",
                scopes=["items:read"],
                client_id="our-app",
                act={"sub": "ext-robot"},
            )
            answer = await client.post(
                "/oauth/token",
                data={
                    "grant_type": TOKEN_EXCHANGE,
                    "client_id": "our-app",
                    "subject_token": delegated,
                    "subject_token_type": ACCESS,
                },
            )
            if answer.status_code == 200:
                own = answer.json()["access_token"]
                email = await client.post(
                    "/account/email", headers={"Authorization": f"Bearer {own}"}
                )
                assert email.status_code == 403, email.text
                assert "act" in claims_of(own)
            else:
                assert answer.status_code == 400, answer.text
