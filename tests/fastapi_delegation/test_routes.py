"""/me/delegations on SQLite and PostgreSQL: create, use, refresh, list, revoke."""

from __future__ import annotations

import asyncio
import time

from authbridge.testing import FakeIssuer

from .support import ALICE, BOB, ISSUER, ROBOT, Harness, claims_of, running

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


async def garage_delegation(h: Harness, **body: object) -> dict[str, object]:
    answer = await h.create(
        h.own_token(), scope="garage:open", label="garage robot", expires_in=3600, **body
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"] == "application/json"
    return answer.json()  # type: ignore[no-any-return]


async def test_a_user_lets_the_robot_open_the_garage(
    store_url: str, fake_issuer: FakeIssuer
) -> None:
    async with running(store_url, fake_issuer) as h:
        before = time.time()
        created = await garage_delegation(h)
        delegation, token = created["delegation"], created["token"]
        assert isinstance(delegation, dict)
        assert isinstance(token, dict)
        assert delegation["id"].startswith("dlg_")
        assert {
            k: v for k, v in delegation.items() if k not in ("id", "created_at", "expires_at")
        } == {
            "actor": ROBOT,
            "scope": "garage:open",
            "audiences": [ISSUER],
            "label": "garage robot",
            "may_delegate": False,
            "revoked_at": None,
            "active": True,
            "parent": None,
        }
        assert before - 1 <= delegation["created_at"] <= time.time()
        assert abs(delegation["expires_at"] - (delegation["created_at"] + 3600)) < 1
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "garage:open"
        assert token["issued_token_type"] == ACCESS_TOKEN_TYPE
        assert token["refresh_token"].startswith("abrt_")
        claims = claims_of(token["access_token"])
        assert (claims["sub"], claims["client_id"], claims["did"]) == (
            ALICE,
            ROBOT,
            delegation["id"],
        )
        assert claims["act"] == {"sub": ROBOT, "client_id": ROBOT}

        # The robot opens the garage: the principal says who acts for whom.
        opened = await h.garage(token["access_token"])
        assert opened.json() == {"user": ALICE, "client": ROBOT, "actors": [ROBOT]}
        # It may do nothing else: items:write was not handed over.
        assert (await h.garage(h.own_token(scopes={"items:read"}))).status_code == 403

        # It refreshes with its own client secret, not with the user's anything.
        refreshed = await h.refresh(token["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        again = refreshed.json()
        assert claims_of(again["access_token"])["act"] == {"sub": ROBOT, "client_id": ROBOT}
        assert (await h.garage(again["access_token"])).status_code == 200
        wrong_secret = await h.refresh(again["refresh_token"], secret=h.hub_secret)
        assert wrong_secret.status_code == 401

        listed = await h.listed(h.own_token())
        assert listed.status_code == 200
        assert listed.headers["cache-control"] == "no-store"
        assert listed.json() == {"delegations": [delegation]}


async def test_after_delete_the_robots_tokens_stop_at_once(
    store_url: str, fake_issuer: FakeIssuer
) -> None:
    async with running(store_url, fake_issuer) as h:
        created = await garage_delegation(h)
        delegation, token = created["delegation"], created["token"]
        assert isinstance(delegation, dict)
        assert isinstance(token, dict)
        access, refresh = token["access_token"], token["refresh_token"]
        assert (await h.garage(access)).status_code == 200

        deleted = await h.revoke(h.own_token(), delegation["id"])
        assert deleted.status_code == 204
        assert deleted.content == b""
        # active_principal looks at the store: refused from the next request on.
        refused = await h.garage(access)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        # The refresh token is dead too, with the robot's right secret.
        dead = await h.refresh(refresh)
        assert dead.status_code == 400
        assert dead.json()["error"] == "invalid_grant"
        # auth.principal does not look at the store: the documented bound (access_token_ttl).
        assert (await h.garage(access, active=False)).status_code == 200

        assert (await h.listed(h.own_token())).json() == {"delegations": []}
        inactive = (await h.listed(h.own_token(), include_inactive="true")).json()["delegations"]
        assert [d["id"] for d in inactive] == [delegation["id"]]
        assert inactive[0]["active"] is False
        assert inactive[0]["revoked_at"] is not None
        # Deleting it again is still the caller's own: 204, and nothing changes.
        assert (await h.revoke(h.own_token(), delegation["id"])).status_code == 204


async def test_one_users_delegations_are_invisible_to_another(
    store_url: str, fake_issuer: FakeIssuer
) -> None:
    async with running(store_url, fake_issuer) as h:
        created = await garage_delegation(h)
        delegation = created["delegation"]
        assert isinstance(delegation, dict)
        bob = h.own_token(BOB, {"items:read"})
        assert (await h.listed(bob)).json() == {"delegations": []}
        assert (await h.listed(bob, include_inactive="true")).json() == {"delegations": []}
        theirs = await h.revoke(bob, delegation["id"])
        unknown = await h.revoke(bob, "dlg_" + "A" * 22)
        malformed = await h.revoke(bob, "x" * 300)
        # Never 403: the same 404 whether the id exists or not.
        for answer in (theirs, unknown, malformed):
            assert answer.status_code == 404
            assert answer.json() == {
                "error": "invalid_request",
                "error_description": "No such delegation",
            }
        # Alice's delegation still works.
        token = created["token"]
        assert isinstance(token, dict)
        assert (await h.garage(token["access_token"])).status_code == 200
        listed = (await h.listed(h.own_token())).json()["delegations"]
        assert [d["id"] for d in listed] == [delegation["id"]]


async def test_concurrent_creations_and_revocations(
    store_url: str, fake_issuer: FakeIssuer
) -> None:
    async with running(store_url, fake_issuer) as h:
        token = h.own_token()
        answers = await asyncio.gather(
            *(h.create(token, scope="items:read", label=f"robot {i}") for i in range(8))
        )
        assert [a.status_code for a in answers] == [201] * 8
        ids = {a.json()["delegation"]["id"] for a in answers}
        assert len(ids) == 8
        listed = (await h.listed(token)).json()["delegations"]
        assert {d["id"] for d in listed} == ids
        # Newest first.
        created = [d["created_at"] for d in listed]
        assert created == sorted(created, reverse=True)
        one = next(iter(ids))
        revoked = await asyncio.gather(*(h.revoke(token, one) for _ in range(4)))
        assert [r.status_code for r in revoked] == [204] * 4
        assert {d["id"] for d in (await h.listed(token)).json()["delegations"]} == ids - {one}
