"""Delegations minted by the user (``runtime.delegations``): records, tokens, refusals, revocation.

Real stores (a SQLite file, and PostgreSQL where the rule is decided by the
store); every refusal is checked for its OAuth error, for leaving nothing in
the store and for keeping tokens out of the logs.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import event

from authbridge import Principal
from authbridge.errors import InvalidToken
from authbridge.issuer import (
    MAX_ACT_DEPTH,
    DelegationRequest,
    IssuerRuntime,
    OAuthError,
    _introspection,
    _refresh,
)
from authbridge.jose._jwt import MAX_LEEWAY
from authbridge.store import DelegationRecord, UserRecord

from .code_support import (  # the fixtures too
    ALICE,
    BOB,
    ISSUER,
    OTHER_RESOURCE,
    SQLITE_ONLY,
    Clock,
    clock,
    postgres_database,
    postgres_store_url,
    sqlite_store_url,
    store_url,
)
from .test_delegation_support import (
    CAROL,
    assert_no_secret_logged,
    claims_of,
    debug_logs,
    delegation_runtime,
    exchange,
    principal_of,
    refresh,
    refusal,
    runtime,
    stored,
    user_token,
)

__all__ = [
    "clock",
    "debug_logs",
    "postgres_database",
    "postgres_store_url",
    "runtime",
    "sqlite_store_url",
    "store_url",
]


async def bob(runtime: IssuerRuntime, **options: Any) -> Principal:
    return await principal_of(runtime, user_token(runtime, **options))


async def create(
    runtime: IssuerRuntime, user: Principal | None = None, **options: Any
) -> tuple[DelegationRecord, dict[str, Any]]:
    options.setdefault("actor", "robot")
    options.setdefault("scopes", None)
    options.setdefault("audience", None)
    options.setdefault("expires_in", 3600)
    return await runtime.delegations.create(user or await bob(runtime), **options)


# --- success --------------------------------------------------------------------------------------


async def test_a_delegation_and_the_actors_tokens(runtime: IssuerRuntime, clock: Clock) -> None:
    now = clock.now
    record, body = await create(
        runtime, scopes=["items:read"], expires_in=3600, label="garage robot <b>"
    )
    assert record.id.startswith("dlg_")
    assert len(record.id) == len("dlg_") + 22  # 128 random bits, url-safe
    assert (record.user_id, record.actor, record.scopes) == (BOB.id, "robot", {"items:read"})
    assert record.audiences == (ISSUER, OTHER_RESOURCE)  # the user token's
    assert (record.created_at, record.expires_at) == (now, now + 3600)
    assert (record.label, record.may_delegate, record.parent, record.revoked_at) == (
        "garage robot <b>",
        False,
        None,
        None,
    )
    assert await runtime.store.delegations.get(record.id) == record
    assert body["token_type"] == "Bearer"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert (body["scope"], body["expires_in"]) == ("items:read", 600)
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["did"]) == (BOB.id, "robot", record.id)
    assert claims["act"] == {"sub": "robot", "client_id": "robot"}
    assert claims["aud"] == [ISSUER, OTHER_RESOURCE]
    assert claims["exp"] == int(now) + 600
    # The resource server sees a delegated principal of Bob.
    principal = await principal_of(runtime, body["access_token"])
    assert (principal.subject, principal.client_id, principal.actors) == (
        BOB.id,
        "robot",
        ("robot",),
    )
    await runtime.source.check_active(body["access_token"], principal)
    # Its refresh family is bound to the robot and ends with the delegation.
    found = await runtime.store.refresh.find(_refresh.token_hash(body["refresh_token"]))
    assert found is not None
    family = found[1]
    assert (family.id, family.client_id, family.subject) == (record.id, "robot", BOB.id)
    assert family.expires_at == record.expires_at
    assert family.extra == {"did": record.id, "act": {"sub": "robot", "client_id": "robot"}}
    assert runtime.delegations.list is not None
    assert [d.id for d in await runtime.delegations.list(BOB.id)] == [record.id]


async def test_defaults_are_everything_the_token_and_the_robot_share(
    runtime: IssuerRuntime,
) -> None:
    user = await bob(runtime, scopes=("items:read", "items:write", "admin"))
    record, body = await create(runtime, user)
    assert record.scopes == {"items:read", "items:write"}  # the robot has no admin
    assert body["scope"] == "items:read items:write"
    record, _ = await create(runtime, user, scopes="items:write", audience=OTHER_RESOURCE)
    assert (record.scopes, record.audiences) == ({"items:write"}, (OTHER_RESOURCE,))


async def test_no_refresh_token_without_the_refresh_grant(runtime: IssuerRuntime) -> None:
    before = await stored(runtime)
    record, body = await create(runtime, actor="robot2")
    assert "refresh_token" not in body
    assert await stored(runtime) == (before[0] + 1, *before[1:])  # one insert, no family
    assert claims_of(body["access_token"])["did"] == record.id


async def test_a_session_principal_may_delegate(runtime: IssuerRuntime) -> None:
    """A session's principal (no aud, no exp): the app's default audience."""
    user = Principal(
        provider="app",
        issuer=ISSUER,
        subject=BOB.id,
        scopes=frozenset({"items:read"}),
        claims={"iss": ISSUER, "sub": BOB.id, "scope": "items:read"},
    )
    record, _ = await create(runtime, user)
    assert (record.scopes, record.audiences) == ({"items:read"}, (ISSUER,))
    with pytest.raises(OAuthError) as caught:
        await create(runtime, user, audience=OTHER_RESOURCE)
    assert refusal(caught) == ("invalid_target", 400, "audience_not_allowed")


async def test_lifetimes(runtime: IssuerRuntime, clock: Clock) -> None:
    now = clock.now
    record, body = await create(runtime, expires_in=10 * 86400)  # capped, not refused
    assert record.expires_at == now + 86400
    record, body = await create(runtime, expires_in=90.5)  # shorter than access_token_ttl
    assert body["expires_in"] == 90
    assert claims_of(body["access_token"])["exp"] <= record.expires_at
    found = await runtime.store.refresh.find(_refresh.token_hash(body["refresh_token"]))
    assert found is not None
    assert found[1].expires_at == now + 90.5


@SQLITE_ONLY
async def test_the_configured_maximum(store_url: str, clock: Clock) -> None:
    runtime = await delegation_runtime(store_url, clock, delegation_max_ttl=120)
    try:
        record, _ = await create(runtime, expires_in=3600)
        assert record.expires_at == clock.now + 120
    finally:
        await runtime.aclose()


async def test_refreshes_keep_the_delegation_and_end_with_it(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    record, body = await create(runtime, expires_in=700)
    clock.advance(200)
    refreshed = await refresh(runtime, body["refresh_token"])
    claims = claims_of(refreshed["access_token"])
    assert (claims["sub"], claims["client_id"], claims["did"]) == (BOB.id, "robot", record.id)
    assert claims["act"] == {"sub": "robot", "client_id": "robot"}
    assert refreshed["expires_in"] == 500  # capped at the delegation's end
    assert claims["exp"] <= record.expires_at
    clock.advance(499)
    again = await refresh(runtime, refreshed["refresh_token"])
    assert again["expires_in"] == 1
    clock.advance(1)
    with pytest.raises(OAuthError) as caught:
        await refresh(runtime, again["refresh_token"])
    assert refusal(caught)[:2] == ("invalid_grant", 400)


async def test_the_family_is_the_robots(runtime: IssuerRuntime) -> None:
    _, body = await create(runtime)
    with pytest.raises(OAuthError) as caught:
        await refresh(runtime, body["refresh_token"], client_id="robot3")
    assert refusal(caught) == ("invalid_grant", 400, "client_mismatch")
    assert (await refresh(runtime, body["refresh_token"]))["access_token"]


# --- refusals -------------------------------------------------------------------------------------


def other_provider() -> Principal:
    return Principal(
        provider="google",
        issuer="https://accounts.google.com",
        subject=BOB.id,
        scopes=frozenset({"items:read"}),
        claims={"iss": "https://accounts.google.com", "sub": BOB.id},
    )


REFUSALS: list[tuple[str, dict[str, Any], tuple[str, int, str]]] = [
    ("scope beyond the user's token", {"scopes": ["admin"]}, ("invalid_scope", 400, "")),
    (
        "scope beyond the robot's",
        {"actor": "narrow", "scopes": ["items:write"]},
        ("invalid_scope", 400, "scope_beyond_allowed"),
    ),
    ("unknown scope", {"scopes": ["nope"]}, ("invalid_scope", 400, "unknown_scope")),
    ("malformed scope", {"scopes": ["a b"]}, ("invalid_scope", 400, "unknown_scope")),
    (
        "audience beyond the user's token",
        {"audience": "https://evil.example.test"},
        ("invalid_target", 400, "audience_not_allowed"),
    ),
    ("unknown actor", {"actor": "nobody"}, ("invalid_request", 400, "unknown_actor")),
    ("disabled actor", {"actor": "off-robot"}, ("invalid_request", 400, "unknown_actor")),
    ("public actor", {"actor": "public-robot"}, ("invalid_request", 400, "public_actor")),
    ("actor is the user", {"actor": BOB.id}, ("invalid_request", 400, "self_delegation")),
    ("no lifetime", {"expires_in": 0}, ("invalid_request", 400, "invalid_expires_in")),
    ("negative lifetime", {"expires_in": -5}, ("invalid_request", 400, "invalid_expires_in")),
    ("below a second", {"expires_in": 0.5}, ("invalid_request", 400, "invalid_expires_in")),
    ("nan", {"expires_in": math.nan}, ("invalid_request", 400, "invalid_expires_in")),
    ("infinite", {"expires_in": math.inf}, ("invalid_request", 400, "invalid_expires_in")),
    ("bool", {"expires_in": True}, ("invalid_request", 400, "invalid_expires_in")),
    ("long label", {"label": "x" * 201}, ("invalid_request", 400, "invalid_label")),
    ("control in label", {"label": "a\x00b"}, ("invalid_request", 400, "invalid_label")),
    ("newline in label", {"label": "a\nb"}, ("invalid_request", 400, "invalid_label")),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("case", "options", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refusals_issue_and_store_nothing(
    runtime: IssuerRuntime,
    debug_logs: pytest.LogCaptureFixture,
    case: str,
    options: dict[str, Any],
    expected: tuple[str, int, str],
) -> None:
    token = user_token(runtime, scopes=("items:read", "items:write"))
    user = await principal_of(runtime, token)
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await create(runtime, user, **options)
    error, status, reason = refusal(caught)
    assert (error, status) == expected[:2], case
    if expected[2]:
        assert reason == expected[2], case
    assert caught.value.body()["error"] == error
    assert await stored(runtime) == before
    assert f"Delegation refused for account {BOB.id}: {reason}" in debug_logs.text
    assert_no_secret_logged(debug_logs, token)


async def test_a_token_of_another_provider_may_not_delegate(runtime: IssuerRuntime) -> None:
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await create(runtime, other_provider())
    assert refusal(caught) == ("access_denied", 403, "not_own_token")
    assert await stored(runtime) == before


@SQLITE_ONLY
async def test_a_disabled_or_removed_user(runtime: IssuerRuntime) -> None:
    user = await bob(runtime)
    await runtime.store.users.update(UserRecord(**{**_fields(BOB), "disabled": True}))
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await create(runtime, user)
    assert refusal(caught) == ("access_denied", 403, "account_disabled")
    await runtime.store.users.delete(BOB.id)
    with pytest.raises(OAuthError) as caught:
        await create(runtime, user)
    assert refusal(caught) == ("access_denied", 403, "account_disabled")
    assert await stored(runtime) == before


def _fields(user: UserRecord) -> dict[str, Any]:
    return {name: getattr(user, name) for name in UserRecord.__slots__}  # type: ignore[attr-defined]


async def test_the_users_current_scopes_bound_it(runtime: IssuerRuntime) -> None:
    """A token minted before the user lost a scope delegates no more than the account has now."""
    user = await principal_of(runtime, user_token(runtime, CAROL, scopes=("items:read",)))
    await runtime.store.users.update(UserRecord(**{**_fields(CAROL), "scopes": frozenset()}))
    with pytest.raises(OAuthError) as caught:
        await create(runtime, user)
    assert refusal(caught) == ("invalid_scope", 400, "no_scope")


async def test_too_many_delegations(store_url: str, clock: Clock) -> None:
    runtime = await delegation_runtime(store_url, clock, max_delegations_per_user=3)
    try:
        user = await bob(runtime)
        records = [(await create(runtime, user, actor="robot2"))[0] for _ in range(3)]
        before = await stored(runtime)
        with pytest.raises(OAuthError) as caught:
            await create(runtime, user, actor="robot2")
        assert refusal(caught) == ("invalid_request", 400, "too_many_delegations")
        assert await stored(runtime) == before
        # Another user is not counted; a revoked or ended one frees a place.
        alice = await principal_of(runtime, user_token(runtime, ALICE, scopes=("items:read",)))
        await create(runtime, alice, actor="robot2")
        assert await runtime.delegations.revoke(BOB.id, records[0].id)
        await create(runtime, user, actor="robot2", expires_in=10)
        clock.advance(10)
        await create(runtime, user, actor="robot2")
    finally:
        await runtime.aclose()


@SQLITE_ONLY
async def test_the_policy_decides_too(store_url: str, clock: Clock) -> None:
    asked: list[DelegationRequest] = []

    async def policy(request: DelegationRequest) -> bool:
        asked.append(request)
        return request.actor != "robot2"

    runtime = await delegation_runtime(store_url, clock, delegation_policy=policy)
    try:
        record, _ = await create(runtime, scopes=["items:read"])
        assert asked == [
            DelegationRequest(
                BOB.id, "robot", frozenset({"items:read"}), record.audiences, (), "api"
            )
        ]
        before = await stored(runtime)
        with pytest.raises(OAuthError) as caught:
            await create(runtime, actor="robot2")
        assert refusal(caught) == ("access_denied", 403, "policy_refused")
        assert await stored(runtime) == before
    finally:
        await runtime.aclose()


@SQLITE_ONLY
@pytest.mark.parametrize("answer", [False, None, 1, "yes", RuntimeError("policy bug")])
async def test_anything_but_true_refuses(
    store_url: str, clock: Clock, answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    def policy(request: DelegationRequest) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    runtime = await delegation_runtime(store_url, clock, delegation_policy=policy)
    try:
        with pytest.raises(OAuthError) as caught:
            await create(runtime)
        assert refusal(caught) == ("access_denied", 403, "policy_refused")
        assert await runtime.store.delegations.count_active(BOB.id, now=clock.now) == 0
    finally:
        await runtime.aclose()


# --- chains: a robot holding a delegated token ----------------------------------------------------


async def test_a_robot_passes_on_only_with_may_delegate(runtime: IssuerRuntime) -> None:
    root, body = await create(runtime, scopes=["items:read"], expires_in=1000, may_delegate=True)
    robot = await principal_of(runtime, body["access_token"])
    child, child_body = await create(runtime, robot, actor="robot2", expires_in=5000)
    assert (child.user_id, child.actor, child.parent) == (BOB.id, "robot2", root.id)
    assert child.scopes == {"items:read"}  # within the parent's
    assert child.expires_at == root.expires_at  # never past the parent's end
    assert claims_of(child_body["access_token"])["act"] == {
        "sub": "robot2",
        "client_id": "robot2",
        "act": {"sub": "robot", "client_id": "robot"},
    }
    with pytest.raises(OAuthError) as caught:
        await create(runtime, robot, actor="robot3", scopes=["items:write"])
    assert refusal(caught)[:2] == ("invalid_scope", 400)
    # Without may_delegate: refused, nothing stored.
    _, plain = await create(runtime)
    robot = await principal_of(runtime, plain["access_token"])
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await create(runtime, robot, actor="robot2")
    assert refusal(caught) == ("access_denied", 403, "delegation_by_actor")
    with pytest.raises(OAuthError) as caught:
        await create(runtime, robot, actor="robot")  # itself again
    assert refusal(caught) == ("invalid_request", 400, "actor_in_chain")
    assert await stored(runtime) == before


async def test_chains_are_at_most_four_actors_deep(runtime: IssuerRuntime) -> None:
    _, body = await create(runtime, may_delegate=True)
    holder = await principal_of(runtime, body["access_token"])
    for number in range(2, MAX_ACT_DEPTH + 1):
        _, body = await create(runtime, holder, actor=f"robot{number}", may_delegate=True)
        holder = await principal_of(runtime, body["access_token"])
    assert len(holder.actors) == MAX_ACT_DEPTH
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await create(runtime, holder, actor="robot5")
    assert refusal(caught) == ("access_denied", 403, "chain_too_deep")
    assert await stored(runtime) == before


async def test_revoking_the_parent_revokes_the_chain(runtime: IssuerRuntime) -> None:
    root, body = await create(runtime, may_delegate=True)
    robot = await principal_of(runtime, body["access_token"])
    child, child_body = await create(runtime, robot, actor="robot2", may_delegate=True)
    robot2 = await principal_of(runtime, child_body["access_token"])
    grandchild, grand_body = await create(runtime, robot2, actor="robot3")
    assert await runtime.delegations.revoke(BOB.id, root.id)
    for record, token in (
        (child, child_body["access_token"]),
        (grandchild, grand_body["access_token"]),
    ):
        stored_record = await runtime.store.delegations.get(record.id)
        assert stored_record is not None
        assert stored_record.revoked_at is not None
        with pytest.raises(InvalidToken):
            await runtime.source.check_active(token, await principal_of(runtime, token))
    # A delegated token whose delegation is gone delegates nothing.
    with pytest.raises(OAuthError) as caught:
        await create(runtime, robot2, actor="robot4")
    assert refusal(caught) == ("access_denied", 403, "parent_inactive")


# --- revocation -----------------------------------------------------------------------------------


async def test_revocation_ends_every_token(
    runtime: IssuerRuntime, clock: Clock, debug_logs: pytest.LogCaptureFixture
) -> None:
    record, body = await create(runtime)
    refreshed = await refresh(runtime, body["refresh_token"])
    access = refreshed["access_token"]
    principal = await principal_of(runtime, access)
    await runtime.source.check_active(access, principal)
    introspected = await _introspection._access_token(runtime, access)
    assert introspected["active"] is True
    assert (introspected["act"], introspected["did"]) == (claims_of(access)["act"], record.id)
    assert await runtime.delegations.revoke(ALICE.id, record.id) is False  # not Alice's
    assert (await runtime.store.delegations.get(record.id)) == record
    clock.advance(5)
    assert await runtime.delegations.revoke(BOB.id, record.id) is True
    assert await runtime.delegations.revoke(BOB.id, record.id) is False  # once
    assert await runtime.delegations.revoke(BOB.id, "dlg_unknown") is False
    revoked = await runtime.store.delegations.get(record.id)
    assert revoked is not None
    assert revoked.revoked_at == clock.now
    # The access tokens: refused from the next check on (both of them).
    assert await runtime.store.replay.seen("dg:" + record.id, now=clock.now)
    assert await runtime.store.replay.seen("dg:" + record.id, now=record.expires_at + 1)
    assert not await runtime.store.replay.seen(
        "dg:" + record.id, now=record.expires_at + MAX_LEEWAY
    )
    for token in (access, body["access_token"]):
        with pytest.raises(InvalidToken) as invalid:
            await runtime.source.check_active(token, await principal_of(runtime, token))
        assert invalid.value.reason == "revoked"
        # RFC 7662: inactive for the APIs that introspect.
        assert await _introspection._access_token(runtime, token) == {"active": False}
    # The refresh family: revoked; a refresh is refused.
    found = await runtime.store.refresh.find(_refresh.token_hash(refreshed["refresh_token"]))
    assert found is not None
    assert (found[1].revoked_at, found[1].revoked_reason) == (clock.now, "delegation_revoked")
    with pytest.raises(OAuthError) as caught:
        await refresh(runtime, refreshed["refresh_token"])
    assert refusal(caught) == ("invalid_grant", 400, "family_revoked")
    # The listing: inactive now.
    assert await runtime.delegations.list(BOB.id) == []
    assert [d.id for d in await runtime.delegations.list(BOB.id, include_inactive=True)] == [
        record.id
    ]
    # Exchanging the user's own token for it again: no delegation covers it.
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, user_token(runtime))
    assert refusal(caught) == ("invalid_request", 400, "not_delegated")
    assert_no_secret_logged(
        debug_logs, body["access_token"], body["refresh_token"], refreshed["refresh_token"]
    )


async def test_a_refresh_rechecks_the_delegation_whatever_the_family(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    """Revoked in the store by another instance, its family not yet: the refresh finds out."""
    record, body = await create(runtime)
    assert await runtime.store.delegations.revoke(record.id, user_id=BOB.id, now=clock.now)
    with pytest.raises(OAuthError) as caught:
        await refresh(runtime, body["refresh_token"])
    assert refusal(caught) == ("invalid_grant", 400, "delegation_inactive")
    found = await runtime.store.refresh.find(_refresh.token_hash(body["refresh_token"]))
    assert found is not None
    assert found[1].revoked_reason == "delegation_revoked"
    # A revocation run again completes what was left undone.
    assert await runtime.delegations.revoke(BOB.id, record.id) is False
    assert await runtime.store.replay.seen("dg:" + record.id, now=clock.now)


async def test_a_disabled_user_refreshes_nothing(runtime: IssuerRuntime) -> None:
    _, body = await create(runtime)
    await runtime.store.users.update(UserRecord(**{**_fields(BOB), "disabled": True}))
    with pytest.raises(OAuthError) as caught:
        await refresh(runtime, body["refresh_token"])
    assert refusal(caught) == ("invalid_grant", 400, "user_disabled")


async def test_an_ended_delegation_refreshes_nothing(runtime: IssuerRuntime, clock: Clock) -> None:
    record, body = await create(runtime, expires_in=100)
    clock.advance(100)
    with pytest.raises(OAuthError) as caught:
        await refresh(runtime, body["refresh_token"])
    assert refusal(caught)[:2] == ("invalid_grant", 400)
    assert await runtime.delegations.list(BOB.id) == []
    assert await runtime.delegations.revoke(BOB.id, record.id)  # an ended one may still be


@SQLITE_ONLY
async def test_creation_costs_one_insert_and_the_family(runtime: IssuerRuntime) -> None:
    """Reads of the account, the count and the token's revocation, the delegation's insert,
    the count again (concurrent creations keep to the bound), the family's two inserts."""
    statements: list[str] = []
    engine = runtime.store._db.engine.sync_engine  # type: ignore[attr-defined]

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()[:3]))

    user = await bob(runtime)
    await runtime.client("robot")  # client records are cached for a few seconds
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await create(runtime, user)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    work = [s for s in statements if not s.startswith(("BEGIN", "COMMIT"))]
    assert [s.split()[0] for s in work] == [
        "SELECT",
        "SELECT",
        "SELECT",
        "INSERT",
        "SELECT",
        "INSERT",
        "INSERT",
    ]
    assert [s.split()[2] for s in work if s.startswith("INSERT")] == [
        "authbridge_delegations",
        "authbridge_refresh_families",
        "authbridge_refresh_tokens",
    ]
