"""Delegations on PostgreSQL: races with several requests in flight on one app, and what
PostgreSQL itself refuses.

A delegation policy that takes real time (as one asking another service does)
holds a creation between its checks and its insert; the races below are run
while it waits. Revocations race refreshes that are really in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from authbridge.issuer import TOKEN_EXCHANGE, DelegationRequest
from authbridge.testing import FakeIssuer
from fastapi_delegation.support import ALICE, HUB, ROBOT, Harness, running
from store_support import postgres_database, postgres_store_url  # noqa: F401 - fixtures

ACCESS = "urn:ietf:params:oauth:token-type:access_token"
POLICY_SECONDS = 0.3


class SlowPolicy:
    """Allows everything, after ``POLICY_SECONDS`` for the actors in ``slow``."""

    def __init__(self, *slow: str) -> None:
        self.slow = set(slow)
        self.waiting = asyncio.Event()

    async def __call__(self, request: DelegationRequest) -> bool:
        if request.actor in self.slow:
            self.waiting.set()
            await asyncio.sleep(POLICY_SECONDS)
        return True


@pytest.fixture
def policy() -> SlowPolicy:
    return SlowPolicy()


@pytest.fixture
async def h(
    postgres_store_url: str,  # noqa: F811
    fake_issuer: FakeIssuer,
    policy: SlowPolicy,
) -> AsyncIterator[Harness]:
    options = {"delegation_policy": policy, "max_delegations_per_user": 3}
    async with running(postgres_store_url, fake_issuer, issuer_options=options) as harness:
        yield harness


async def delegate(h: Harness, token: str | None = None, **body: Any) -> dict[str, Any]:
    body.setdefault("scope", "garage:open")
    answer = await h.create(token or h.own_token(), **body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_child_created_while_its_parent_is_revoked_does_not_survive(
    h: Harness, policy: SlowPolicy
) -> None:
    parent = await delegate(h, may_delegate=True)
    policy.slow.add(HUB)
    creating = asyncio.create_task(h.create(parent["token"]["access_token"], actor=HUB))
    await asyncio.wait_for(policy.waiting.wait(), 5)  # the child's checks are done
    revoked = await h.revoke(h.own_token(), parent["delegation"]["id"])
    assert revoked.status_code == 204
    child = await creating
    if child.status_code == 201:
        record = await h.runtime.store.delegations.get(child.json()["delegation"]["id"])
        assert record is not None
        now = h.runtime.clock()
        hub_token = child.json()["token"]["access_token"]
        exchanged = await h.client.post(
            "/oauth/token",
            auth=(HUB, h.hub_secret),
            data={
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": h.own_token(),
                "subject_token_type": ACCESS,
            },
        )
        assert exchanged.status_code == 400, exchanged.text
        assert (await h.garage(hub_token)).status_code == 401
        assert not record.active(now)
    else:
        assert child.status_code == 403, child.text


async def test_concurrent_creations_keep_to_the_per_user_bound(
    h: Harness, policy: SlowPolicy
) -> None:
    policy.slow.add(ROBOT)
    answers = await asyncio.gather(
        *(h.create(h.own_token(), scope="garage:open") for _ in range(8))
    )
    assert {a.status_code for a in answers} <= {201, 400}
    active = await h.runtime.store.delegations.count_active(ALICE, now=h.runtime.clock())
    assert active <= 3, f"{active} active delegations, bound 3"


async def test_a_revocation_racing_refreshes_leaves_no_token_alive(h: Harness) -> None:
    made = await delegate(h)
    issued_access = [made["token"]["access_token"]]
    issued_refresh = [made["token"]["refresh_token"]]
    stop = asyncio.Event()
    clock = asyncio.get_running_loop().time
    spans: list[tuple[float, float]] = []

    async def refresh(token: str) -> httpx.Response:
        started = clock()
        try:
            return await h.refresh(token)
        finally:
            spans.append((started, clock()))

    async def robot() -> None:
        current = made["token"]["refresh_token"]
        while not stop.is_set():
            # The current token, twice at once (a retry): one rotation, one benign sibling.
            answers = await asyncio.gather(refresh(current), refresh(current))
            fresh = [a.json() for a in answers if a.status_code == 200]
            if not fresh:
                return
            for body in fresh:
                issued_access.append(body["access_token"])
                issued_refresh.append(body["refresh_token"])
            current = fresh[0]["refresh_token"]

    task = asyncio.create_task(robot())
    await asyncio.sleep(0.3)
    began = clock()
    revoked = await h.revoke(h.own_token(), made["delegation"]["id"])
    ended = clock()
    assert revoked.status_code == 204
    stop.set()
    await task
    # The race really ran: refreshes were in flight while the revocation was.
    assert any(start < ended and end > began for start, end in spans)
    assert len(issued_refresh) > 2
    for refresh_token in issued_refresh:
        answer = await h.refresh(refresh_token)
        assert answer.status_code == 400, answer.text
    for access in issued_access:
        assert (await h.garage(access)).status_code == 401
    introspected = await asyncio.gather(
        *(
            h.client.post("/oauth/introspect", data={"token": t}, auth=(HUB, h.hub_secret))
            for t in issued_access
        )
    )
    assert all(i.json() == {"active": False} for i in introspected)


async def test_concurrent_revocations_of_one_delegation_answer_alike(h: Harness) -> None:
    made = await delegate(h)
    answers = await asyncio.gather(
        *(h.revoke(h.own_token(), made["delegation"]["id"]) for _ in range(6))
    )
    assert {a.status_code for a in answers} == {204}
    assert (await h.garage(made["token"]["access_token"])).status_code == 401


async def test_odd_characters_in_an_actor_or_id_are_refused_on_postgresql(h: Harness) -> None:
    token = h.own_token()
    for actor in ("\udc80robot", "robot\u202e", "r" * 200, "%00", "garage-robot "):
        body = json.dumps({"actor": actor, "expires_in": 60}).encode()
        answer = await h.post_raw(token, body)
        assert answer.status_code == 400, (actor, answer.status_code, answer.text)
    for delegation_id in ("dlg_%00", "dlg_" + "\u00e9" * 10, "dlg_'; --"):
        answer = await h.revoke(token, delegation_id)
        assert answer.status_code == 404, (delegation_id, answer.text)


async def test_a_nul_in_the_actor_is_a_400_not_a_store_outage(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({"actor": "garage-\u0000robot", "expires_in": 60}).encode()
    answer = await h.post_raw(h.own_token(), body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
