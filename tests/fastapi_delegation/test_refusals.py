"""What /me/delegations refuses: callers, token kinds, bodies, lifetimes, scopes, rates.

SQLite (a real file) for these: the store-dependent paths run on PostgreSQL too
in test_routes.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from authbridge.errors import StoreUnavailable
from authbridge.testing import FakeIssuer

from .support import ALICE, BOB, HUB, ROBOT, Harness, claims_of, running

OAUTH_ERROR_KEYS = {"error", "error_description"}
MARKER = "zq-marker-7"  # put in refused values: an error body must never echo it


@pytest.fixture
async def h(sqlite_store_url: str, fake_issuer: FakeIssuer) -> AsyncIterator[Harness]:
    async with running(sqlite_store_url, fake_issuer) as harness:
        yield harness


def oauth_error(answer: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) <= OAUTH_ERROR_KEYS
    assert body["error"] == error
    assert answer.headers["cache-control"] == "no-store"
    assert MARKER not in answer.text
    return body  # type: ignore[no-any-return]


async def test_unauthenticated_callers_are_401_before_any_body_is_read(h: Harness) -> None:
    for answer in (
        await h.create(None),
        await h.client.get("/me/delegations"),
        await h.client.delete("/me/delegations/dlg_x"),
        await h.create("not-a-token"),
        await h.create(h.fake.bad.expired()),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json() == {"detail": answer.json()["detail"]}  # the routes' usual body
    # A megabyte from nobody: refused by who it is, the body never read.
    huge = await h.client.post(
        "/me/delegations",
        content=b"{" + b" " * 1_000_000,
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 401


async def test_only_the_apps_own_users_may_call(h: Harness) -> None:
    provider = h.fake.token(subject=ALICE, scopes=["garage:open"])  # a trusted provider's token
    for answer in (
        await h.create(provider),
        await h.listed(provider),
        await h.revoke(provider, "dlg_" + "A" * 22),
    ):
        body = oauth_error(answer, 403, "access_denied")
        assert body["error_description"] == "Use a token of this app or a session"
    created = (await h.create(h.own_token(), scope="garage:open")).json()
    refresh_token = created["token"]["refresh_token"]
    assert (await h.create(refresh_token)).status_code == 401  # a refresh token is no bearer token
    # A machine's own token (client credentials: no user) hands out nothing.
    machine = await h.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(ROBOT, h.robot_secret)
    )
    assert machine.status_code == 200, machine.text
    refused = await h.create(machine.json()["access_token"], actor=HUB)
    assert refused.status_code in (400, 403)
    assert refused.json()["error"] in ("access_denied", "invalid_request")


async def test_a_robot_may_pass_on_only_what_may_be_passed_on(h: Harness) -> None:
    plain = (await h.create(h.own_token(), scope="garage:open")).json()
    robot = plain["token"]["access_token"]
    body = oauth_error(await h.create(robot, actor=HUB), 403, "access_denied")
    assert body["error_description"] == "This token may not delegate"
    # Listing and revoking are the user's alone, even for a robot that may pass its delegation on.
    for answer in (await h.listed(robot), await h.revoke(robot, plain["delegation"]["id"])):
        assert answer.status_code == 403
        assert answer.json() == {"detail": "Delegated tokens are not accepted here"}
    assert (await h.listed(h.own_token())).json()["delegations"][0]["active"] is True

    chained = (await h.create(h.own_token(), scope="garage:open", may_delegate=True)).json()
    parent = chained["delegation"]["id"]
    robot = chained["token"]["access_token"]
    # The robot cannot widen what it was given, nor hand it back to itself.
    oauth_error(await h.create(robot, actor=HUB, scope="items:read"), 400, "invalid_scope")
    oauth_error(await h.create(robot, actor=ROBOT), 400, "invalid_request")
    child = await h.create(robot, actor=HUB, expires_in=600, label="hub")
    assert child.status_code == 201, child.text
    made = child.json()
    assert made["delegation"]["parent"] == parent
    assert made["delegation"]["scope"] == "garage:open"
    assert "refresh_token" not in made["token"] or made["token"]["refresh_token"] is None
    assert claims_of(made["token"]["access_token"])["act"] == {
        "sub": HUB,
        "client_id": HUB,
        "act": {"sub": ROBOT, "client_id": ROBOT},
    }
    hub = made["token"]["access_token"]
    assert (await h.garage(hub)).json()["actors"] == [HUB, ROBOT]
    # Revoking the parent ends the child too.
    assert (await h.revoke(h.own_token(), parent)).status_code == 204
    assert (await h.garage(hub)).status_code == 401
    everything = (await h.listed(h.own_token(), include_inactive="true")).json()["delegations"]
    revoked = {d["id"]: d["revoked_at"] is not None for d in everything}
    assert revoked[made["delegation"]["id"]] is True
    assert revoked[parent] is True


MALFORMED_BODIES = [
    (b"{" + b'"label": "' + b"x" * 9000 + b'"}', "application/json", 413),
    (b'{"actor": "garage-robot", "expires_in": 60}', "text/plain", 415),
    (b"actor=garage-robot&expires_in=60", "application/x-www-form-urlencoded", 415),
    (b"", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'"garage-robot"', "application/json", 400),
    (b"[" * 3000 + b"]" * 3000, "application/json", 400),
    (b'{"actor": "garage-robot", "actor": "hub", "expires_in": 60}', "application/json", 400),
    (
        b'{"actor": "garage-robot", "expires_in": 60, "label": "\\ud800"}',
        "application/json",
        400,
    ),
    (b'{"actor": "garage-robot", "expires_in": 60, "label": "\xff"}', "application/json", 400),
    (b'{"actor": "garage-robot", "expires_in": NaN}', "application/json", 400),
    (b'{"actor": "garage-robot", "expires_in": 1e400}', "application/json", 400),
    (b'{"actor": "garage-robot", "expires_in": 60', "application/json", 400),
]


async def test_malformed_and_oversized_bodies(h: Harness) -> None:
    # One app for every case (starting one per case would cost more than the cases).
    for content, content_type, status in MALFORMED_BODIES:
        answer = await h.post_raw(h.own_token(), content, content_type)
        try:
            oauth_error(answer, status, "invalid_request")
        except AssertionError as exc:
            raise AssertionError(f"{content[:60]!r}: {exc}") from None
    assert (await h.listed(h.own_token())).json() == {"delegations": []}


async def test_a_chunked_body_is_cut_off_at_the_limit(h: Harness) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"actor": "garage-robot", "label": "'
        for _ in range(1000):
            sent += 1
            yield b"x" * 1024

    answer = await h.client.post(
        "/me/delegations",
        content=chunks(),
        headers={"Authorization": f"Bearer {h.own_token()}", "content-type": "application/json"},
    )
    oauth_error(answer, 413, "invalid_request")
    assert answer.headers["connection"] == "close"


BAD_MEMBERS: list[dict[str, Any]] = [
    {"actor": ""},
    {"actor": "r" * 201},
    {"actor": 7},
    {"actor": None},
    {"label": "x" * 201},
    {"label": f"{MARKER}\n"},
    {"label": f"{MARKER}\x1b[31m"},
    {"label": f"{MARKER}\u2028"},
    {"label": ["garage"]},
    {"audience": "a" * 2049},
    {"audience": 5},
    {"may_delegate": "true"},
    {"may_delegate": 1},
    {"scope": ["garage:open"]},
    {"scope": "s" * 2049},
    {"act": {"sub": "mallory"}},
    {"may_act": {"sub": MARKER}},
    {"sub": MARKER},
    {"user_id": BOB},
    {"did": MARKER},
]


async def test_every_member_is_bounded_and_nothing_else_is_accepted(h: Harness) -> None:
    for member in BAD_MEMBERS:
        body = {"actor": ROBOT, "expires_in": 600, **member}
        answer = await h.post_raw(h.own_token(), json.dumps(body).encode())
        try:
            oauth_error(answer, 400, "invalid_request")
        except AssertionError as exc:
            raise AssertionError(f"{member!r}: {exc}") from None
    assert (await h.listed(h.own_token())).json() == {"delegations": []}


BAD_LIFETIMES = [0, -1, -3600, "3600", 3600.5, 60.0, True, None, 10 * 365 * 86400 + 1, 2**64, "P1D"]


async def test_bad_lifetimes_are_refused(h: Harness) -> None:
    for expires_in in BAD_LIFETIMES:
        answer = await h.create(h.own_token(), expires_in=expires_in)
        body = oauth_error(answer, 400, "invalid_request")
        assert body["error_description"] == "Invalid or missing expires_in", expires_in


async def test_a_missing_lifetime_is_refused_and_a_long_one_is_capped(h: Harness) -> None:
    raw = json.dumps({"actor": ROBOT}).encode()
    body = oauth_error(await h.post_raw(h.own_token(), raw), 400, "invalid_request")
    assert body["error_description"] == "Invalid or missing expires_in"
    long = await h.create(h.own_token(), expires_in=10 * 365 * 86400, scope="garage:open")
    assert long.status_code == 201
    delegation = long.json()["delegation"]
    assert round(delegation["expires_at"] - delegation["created_at"]) == 86400  # the issuer's cap
    token = long.json()["token"]
    assert token["expires_in"] <= h.runtime.config.access_token_ttl
    assert claims_of(token["access_token"])["exp"] <= delegation["expires_at"]


async def test_no_scope_or_audience_escalation_through_the_api(h: Harness) -> None:
    token = h.own_token()
    for scope in ("admin", "items:write", "garage:open admin", "nope", f"garage:open {MARKER}"):
        oauth_error(await h.create(token, scope=scope), 400, "invalid_scope")
    for scope in ("garage:open\titems:read", "garage:open\u00a0items:read", 'garage"open', " " * 3):
        answer = await h.create(token, scope=scope)
        if scope.strip():
            oauth_error(answer, 400, "invalid_scope")
        else:  # spaces only: no scope asked, the default
            assert answer.status_code == 201
            assert answer.json()["delegation"]["scope"] == "garage:open items:read"
    too_many = " ".join(f"s{i}" for i in range(65))
    oauth_error(await h.create(token, scope=too_many), 400, "invalid_scope")
    reader = h.own_token(scopes={"items:read"})
    oauth_error(await h.create(reader, scope="garage:open"), 400, "invalid_scope")
    for audience in ("https://other.example.test", MARKER):
        oauth_error(await h.create(token, audience=audience), 400, "invalid_target")
    # The default: what both the user's token and the robot client have, nothing more.
    default = (await h.create(reader)).json()
    assert default["delegation"]["scope"] == "items:read"
    assert claims_of(default["token"]["access_token"])["scope"] == "items:read"
    # Unknown actors, public clients, oneself.
    for actor in ("nobody", "public-app", ALICE):
        oauth_error(await h.create(token, actor=actor), 400, "invalid_request")


async def test_creations_are_rate_limited_per_user(h: Harness) -> None:
    alice = h.own_token()
    for _ in range(30):
        # Refused requests count too: the limit bounds the work, not the successes.
        assert (await h.create(alice, expires_in=0)).status_code == 400
    limited = await h.create(alice, scope="garage:open")
    body = oauth_error(limited, 429, "slow_down")
    assert body["error_description"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Another user is not affected; listing is not limited.
    bob = await h.create(h.own_token(BOB, {"items:read"}), scope="items:read")
    assert bob.status_code == 201
    assert (await h.listed(alice)).status_code == 200


async def test_answers_are_escaped_json(h: Harness) -> None:
    label = '<script>alert("x")</script> & </label>'
    answer = await h.create(h.own_token(), scope="garage:open", label=label)
    assert answer.status_code == 201
    listed = await h.listed(h.own_token())
    for raw in (answer.content, listed.content):
        assert b"<" not in raw
        assert b">" not in raw
        assert b"&" not in raw
        assert raw.isascii()
        assert b"\\u003cscript\\u003e" in raw
    assert answer.json()["delegation"]["label"] == label
    assert listed.json()["delegations"][0]["label"] == label
    assert listed.headers["x-content-type-options"] == "nosniff"


async def test_query_and_path_refusals_are_oauth_errors(h: Harness) -> None:
    token = h.own_token()
    body = oauth_error(await h.listed(token, include_inactive=MARKER), 400, "invalid_request")
    assert body["error_description"] == "Invalid request parameter"
    assert (await h.listed(token, include_inactive="false")).status_code == 200
    oauth_error(await h.revoke(token, "dlg_%00"), 404, "invalid_request")
    oauth_error(await h.revoke(token, "dlg_" + "x" * 100), 404, "invalid_request")


async def test_outages_and_bugs_are_bounded_answers_without_their_text(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token = h.own_token()

    async def store_down(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable(f"connection_failed {MARKER}", retry_after=3.0)

    async def bug(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"a bug holding {MARKER}")

    with caplog.at_level(logging.INFO):
        monkeypatch.setattr(h.runtime.store.rate_limits, "hit", store_down)
        down = await h.create(token)
        body = oauth_error(down, 503, "temporarily_unavailable")
        assert body["error_description"]
        assert down.headers["retry-after"] == "3"
        monkeypatch.undo()
        monkeypatch.setattr(h.runtime.delegations, "list", bug)
        broken = await h.listed(token)
        assert broken.status_code == 500
        assert broken.json() == {"error": "server_error"}
        assert MARKER not in broken.text
    logged = [r.getMessage() for r in caplog.records]
    assert any("RuntimeError" in line for line in logged)
    assert not [line for line in logged if MARKER in line and "store_unavailable" not in line]
