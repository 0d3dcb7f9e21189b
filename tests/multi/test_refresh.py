"""One refresh token, sent to A, B and C at the same moment: one rotation, the rest siblings.

Each round sends one token to every instance at once (a barrier releases threads whose
connections are already open); the family in PostgreSQL then shows exactly one rotation
(its generation moved by one) and the benign-race rule's siblings. A reuse outside
``refresh_reuse_interval`` then revokes the family, and every instance refuses its tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from authbridge.issuer._refresh import MAX_SIBLINGS, token_hash

from .flows import bearer, password_grant, refresh_grant
from .harness import Browser, Cluster, Timed, at_once, overlapped, sql
from .support import ISSUER_OPTIONS

ROUNDS = 3


def family_of(cluster: Cluster, refresh_token: str) -> dict[str, Any]:
    rows = sql(
        cluster.store_url,
        "SELECT f.* FROM authbridge_refresh_tokens t JOIN authbridge_refresh_families f "
        "ON f.id = t.family_id WHERE t.token_hash = $1",
        token_hash(refresh_token),
    )
    assert len(rows) == 1
    return rows[0]


def generations(cluster: Cluster, family_id: str) -> list[int]:
    rows = sql(
        cluster.store_url,
        "SELECT generation FROM authbridge_refresh_tokens WHERE family_id = $1 ORDER BY generation",
        family_id,
    )
    return [row["generation"] for row in rows]


@pytest.fixture
def lanes(cluster: Cluster) -> Iterator[Callable[[str], Browser]]:
    """A client per concurrent request, its connection to its instance already open."""
    opened: list[Browser] = []

    def lane(name: str) -> Browser:
        browser = Browser(cluster, [name])
        assert browser.get("/healthz", on=name).status_code == 200
        opened.append(browser)
        return browser

    yield lane
    for browser in opened:
        browser.close()


def send_at_once(
    lanes: Callable[[str], Browser], token: str, names: str
) -> tuple[list[httpx.Response], list[Timed]]:
    clients = [(lanes(name), name) for name in names]
    timed = at_once([partial(refresh_grant, b, token, on=n) for b, n in clients])
    answers = [t.result for t in timed]
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    return answers, timed


def test_one_token_at_once_on_three_instances_rotates_once_then_reuse_revokes_everywhere(
    cluster: Cluster, browser: Browser, lanes: Callable[[str], Browser]
) -> None:
    first = password_grant(browser, on="A")
    assert first.status_code == 200, first.text
    token = first.json()["refresh_token"]
    family_id = family_of(cluster, token)["id"]
    overlaps, spreads = 0, []
    previous: list[str] = []
    current: list[str] = [token]

    for round_ in range(1, ROUNDS + 1):
        answers, timed = send_at_once(lanes, current[0], "ABC")
        overlaps += overlapped(timed)
        spreads.append(max(t.sent for t in timed) - min(t.sent for t in timed))
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        issued = [a.json()["refresh_token"] for a in answers]
        assert len(set(issued)) == 3
        family = family_of(cluster, issued[0])
        # Exactly one rotation (the generation moved by one), two siblings of it.
        assert (family["id"], family["generation"], family["siblings"]) == (family_id, round_, 2)
        assert family["revoked_at"] is None
        assert all(family_of(cluster, t)["generation"] == round_ for t in issued)
        previous, current = current, issued

    # The benign-race rule's bound holds across instances: 6 at once (2 per instance) get
    # one rotation and MAX_SIBLINGS siblings; the one more is refused and revokes nothing.
    answers, timed = send_at_once(lanes, current[0], "AABBCC")
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * (1 + MAX_SIBLINGS) + [400]
    assert [a.json()["error"] for a in answers if a.status_code == 400] == ["invalid_grant"]
    family = family_of(cluster, current[0])
    assert (family["generation"], family["siblings"]) == (ROUNDS + 1, MAX_SIBLINGS)
    assert family["revoked_at"] is None
    previous = current
    current = [a.json()["refresh_token"] for a in answers if a.status_code == 200]
    # Every token ever issued is still in its family: 1 + 3 per round + 5.
    assert len(generations(cluster, family_id)) == 1 + 3 * ROUNDS + 1 + MAX_SIBLINGS

    # A predecessor presented after the interval is a reuse: the family ends for everyone.
    time.sleep(ISSUER_OPTIONS["refresh_reuse_interval"] + 0.5)
    reuse = refresh_grant(browser, previous[1], on="A")
    assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")
    family = family_of(cluster, current[0])
    assert (family["revoked_reason"], family["generation"]) == ("reuse", ROUNDS + 1)
    assert family["revoked_at"] is not None
    asked = "ABCAB"  # each of the five live tokens on an instance in turn: all refused
    for name, live in zip(asked, current, strict=True):
        refused = refresh_grant(browser, live, on=name)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant"), name
    report = {
        "rounds": ROUNDS,
        "rounds_all_in_flight_at_once": overlaps,
        "send_spread_ms": [round(s * 1000, 2) for s in spreads],
        "refused_after_reuse": len(current),
    }
    print(f"refresh race: {report}")


def test_tokens_revoked_on_one_instance_are_refused_by_the_others(
    cluster: Cluster, browser: Browser
) -> None:
    tokens = password_grant(browser, on="A").json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    assert browser.get("/active", on="C", headers=bearer(access)).status_code == 200

    revoked = browser.post("/oauth/revoke", on="A", data={"token": access, "client_id": "cli"})
    assert revoked.status_code == 200
    for name in ("A", "B", "C"):
        # The revocation list is shared: every instance's active_principal refuses it ...
        active = browser.get("/active", on=name, headers=bearer(access))
        assert active.status_code == 401, (name, active.text)
        # ... while principal, which never asks the store, accepts it until it expires.
        assert browser.whoami(access, on=name).status_code == 200

    revoked = browser.post("/oauth/revoke", on="B", data={"token": refresh, "client_id": "cli"})
    assert revoked.status_code == 200
    assert family_of(cluster, refresh)["revoked_reason"] == "revoked"
    for name in ("A", "C"):
        refused = refresh_grant(browser, refresh, on=name)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant"), name
