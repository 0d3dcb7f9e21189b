"""RFC 8693 exchange of the app's own tokens by a robot (delegation, ``act``) at the token endpoint.

A SQLite file (the rules are the issuer's; the store steps they use are in
the store's contract, on both backends). Every refusal: its OAuth error, no
token issued, nothing stored, no token in the logs.
"""

from __future__ import annotations

from typing import Any

import pytest

from authbridge.errors import InvalidToken
from authbridge.issuer import (
    ID_TOKEN_TYPE,
    MAX_ACT_DEPTH,
    DelegationRequest,
    IssuerRuntime,
    OAuthError,
    TokenRequest,
)
from authbridge.store import DelegationRecord, UserRecord
from authbridge.testing import FakeIssuer

from .code_support import (  # the fixtures too
    ALICE,
    BOB,
    ISSUER,
    OTHER_RESOURCE,
    Clock,
    basic,
    clock,
    sqlite_store_url,
)
from .test_delegation_support import (
    ACCESS,
    CAROL,
    ROBOT_SECRET,
    NeverResolver,
    assert_no_secret_logged,
    claims_of,
    client_token,
    debug_logs,
    delegation_runtime,
    exchange,
    exchange_form,
    principal_of,
    refusal,
    runtime,
    stored,
    user_token,
)

__all__ = ["clock", "debug_logs", "runtime", "sqlite_store_url"]


@pytest.fixture
def store_url(sqlite_store_url: str) -> str:
    return sqlite_store_url


async def delegate(
    runtime: IssuerRuntime, actor: str = "robot", **options: Any
) -> tuple[DelegationRecord, dict[str, Any]]:
    """Bob delegates to ``actor`` through the API (``scopes=None``: all the token has)."""
    options.setdefault("scopes", None)
    options.setdefault("audience", None)
    options.setdefault("expires_in", 3600)
    user = await principal_of(runtime, user_token(runtime))
    return await runtime.delegations.create(user, actor=actor, **options)


# --- allowed --------------------------------------------------------------------------------------


async def test_an_active_delegation_covers_the_exchange(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    record, _ = await delegate(runtime, scopes=["items:read"], audience=ISSUER)
    subject = user_token(runtime)
    before = await stored(runtime)
    body = await exchange(runtime, subject)
    assert body["issued_token_type"] == ACCESS
    assert (body["token_type"], body["scope"], body["expires_in"]) == ("Bearer", "items:read", 600)
    assert "refresh_token" not in body  # never from the exchange
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["did"]) == (BOB.id, "robot", record.id)
    assert claims["act"] == {"sub": "robot", "client_id": "robot"}
    assert (claims["aud"], claims["iss"]) == (ISSUER, ISSUER)
    assert claims["exp"] <= claims_of(subject)["exp"]
    assert await stored(runtime) == before  # nothing stored
    assert isinstance(runtime.subject_tokens, NeverResolver)
    assert runtime.subject_tokens.calls == []
    principal = await principal_of(runtime, body["access_token"])
    assert principal.actors == ("robot",)
    await runtime.source.check_active(body["access_token"], principal)


async def test_the_request_may_narrow(runtime: IssuerRuntime) -> None:
    await delegate(runtime)
    body = await exchange(
        runtime, user_token(runtime), scope="items:write", resource=OTHER_RESOURCE
    )
    claims = claims_of(body["access_token"])
    assert (claims["scope"], claims["aud"]) == ("items:write", OTHER_RESOURCE)
    body = await exchange(runtime, user_token(runtime), audience=OTHER_RESOURCE)
    assert claims_of(body["access_token"])["aud"] == OTHER_RESOURCE


async def test_the_newest_covering_delegation_is_named(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    reader, _ = await delegate(runtime, scopes=["items:read"])
    clock.advance(1)
    writer, _ = await delegate(runtime, scopes=["items:write"])
    other, _ = await delegate(runtime, actor="robot2")
    body = await exchange(runtime, user_token(runtime), scope="items:read")
    assert claims_of(body["access_token"])["did"] == reader.id
    body = await exchange(runtime, user_token(runtime))
    assert claims_of(body["access_token"])["did"] == writer.id
    assert claims_of(body["access_token"])["scope"] == "items:write"
    body = await exchange(runtime, user_token(runtime), actor="robot2")
    assert claims_of(body["access_token"])["did"] == other.id


async def test_an_actor_token_confirming_the_client(runtime: IssuerRuntime) -> None:
    await delegate(runtime)
    body = await exchange(
        runtime,
        user_token(runtime),
        actor_token=client_token(runtime, "robot"),
        actor_token_type=ACCESS,
    )
    assert claims_of(body["access_token"])["act"]["sub"] == "robot"


async def test_lifetimes_are_capped(store_url: str, clock: Clock) -> None:
    runtime = await delegation_runtime(store_url, clock, delegation_max_ttl=400)
    try:
        record, _ = await delegate(runtime, expires_in=300)
        # the delegation's end (300 s) before the policy cap (400) and the TTL (600)
        body = await exchange(runtime, user_token(runtime))
        assert body["expires_in"] == 300
        assert claims_of(body["access_token"])["exp"] <= record.expires_at
        # the subject token's remaining life (100 s)
        body = await exchange(runtime, user_token(runtime, lifetime=100))
        assert body["expires_in"] == 100
        # a delegation of its own longer than the policy cap: the cap
        await runtime.delegations.revoke(BOB.id, record.id)
        await delegate(runtime, expires_in=50_000)
        body = await exchange(runtime, user_token(runtime))
        assert body["expires_in"] == 400
    finally:
        await runtime.aclose()


async def test_a_policy_allows_without_a_delegation(store_url: str, clock: Clock) -> None:
    asked: list[DelegationRequest] = []

    def policy(request: DelegationRequest) -> bool:
        asked.append(request)
        return request.actor == "robot2"

    runtime = await delegation_runtime(store_url, clock, delegation_policy=policy)
    try:
        body = await exchange(runtime, user_token(runtime), actor="robot2", scope="items:read")
        claims = claims_of(body["access_token"])
        assert "did" not in claims  # no delegation behind it
        assert claims["act"] == {"sub": "robot2", "client_id": "robot2"}
        assert asked == [
            DelegationRequest(
                BOB.id,
                "robot2",
                frozenset({"items:read"}),
                (ISSUER, OTHER_RESOURCE),
                (),
                "token_exchange",
            )
        ]
        with pytest.raises(OAuthError) as caught:
            await exchange(runtime, user_token(runtime))
        assert refusal(caught) == ("invalid_request", 400, "not_delegated")
    finally:
        await runtime.aclose()


# --- chains ---------------------------------------------------------------------------------------


async def test_a_chain_needs_may_delegate(runtime: IssuerRuntime) -> None:
    _, plain_body = await delegate(runtime)
    # robot's delegated token, taken by robot2 to the exchange: refused.
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, plain_body["access_token"], actor="robot2")
    assert refusal(caught) == ("invalid_request", 400, "delegation_by_actor")
    # ... even when robot2 holds a delegation of its own from Bob.
    await delegate(runtime, actor="robot2")
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, plain_body["access_token"], actor="robot2")
    assert refusal(caught) == ("invalid_request", 400, "delegation_by_actor")
    assert await stored(runtime) == before
    # With may_delegate: the chain is nested, the root delegation named.
    root, root_body = await delegate(runtime, scopes=["items:read"], may_delegate=True)
    body = await exchange(runtime, root_body["access_token"], actor="robot3")
    claims = claims_of(body["access_token"])
    assert claims["act"] == {
        "sub": "robot3",
        "client_id": "robot3",
        "act": {"sub": "robot", "client_id": "robot"},
    }
    assert (claims["did"], claims["sub"], claims["scope"]) == (root.id, BOB.id, "items:read")
    assert claims["exp"] <= claims_of(root_body["access_token"])["exp"]
    with pytest.raises(OAuthError) as caught:  # beyond the subject token
        await exchange(runtime, root_body["access_token"], actor="robot3", scope="items:write")
    assert refusal(caught)[:2] == ("invalid_scope", 400)


async def test_chains_end_at_four_actors(runtime: IssuerRuntime) -> None:
    _, body = await delegate(runtime, may_delegate=True)
    token = body["access_token"]
    for number in range(2, MAX_ACT_DEPTH + 1):
        token = (await exchange(runtime, token, actor=f"robot{number}"))["access_token"]
    assert (await principal_of(runtime, token)).actors == ("robot4", "robot3", "robot2", "robot")
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, token, actor="robot5")
    assert refusal(caught) == ("invalid_request", 400, "chain_too_deep")
    with pytest.raises(OAuthError) as caught:  # a loop
        await exchange(runtime, body["access_token"], actor="robot")
    assert refusal(caught) == ("invalid_request", 400, "actor_in_chain")


async def test_a_chain_ends_with_its_root(runtime: IssuerRuntime) -> None:
    root, body = await delegate(runtime, may_delegate=True)
    chained = (await exchange(runtime, body["access_token"], actor="robot2"))["access_token"]
    assert await runtime.delegations.revoke(BOB.id, root.id)
    for token in (body["access_token"], chained):
        with pytest.raises(OAuthError) as caught:
            await exchange(runtime, token, actor="robot3")
        assert refusal(caught) == ("invalid_request", 400, "subject_token_refused:revoked")


# --- refusals -------------------------------------------------------------------------------------


class Case:
    def __init__(
        self, name: str, expected: tuple[str, int, str], *, actor: str = "robot", **form: Any
    ) -> None:
        self.name = name
        self.expected = expected
        self.actor = actor
        self.form = form


FAKE = FakeIssuer("https://evil.example.test", ISSUER)

CASES = [
    Case(
        "scope beyond the user's token",
        ("invalid_scope", 400, "scope_beyond_allowed"),
        scope="admin",
    ),
    Case(
        "scope beyond the robot's",
        ("invalid_scope", 400, "scope_beyond_allowed"),
        actor="narrow",
        scope="items:write",
    ),
    Case(
        "scope beyond the delegation's",
        ("invalid_scope", 400, "scope_beyond_delegation"),
        scope="items:write",
    ),
    Case("unknown scope", ("invalid_scope", 400, "unknown_scope"), scope="nope"),
    Case(
        "audience beyond the user's token",
        ("invalid_target", 400, "audience_not_allowed"),
        resource="https://evil.example.test",
    ),
    Case(
        "audience beyond the delegation's",
        ("invalid_target", 400, "audience_beyond_delegation"),
        resource=OTHER_RESOURCE,
    ),
    Case(
        "two targets",
        ("invalid_target", 400, "two_targets"),
        resource=OTHER_RESOURCE,
        audience=ISSUER,
    ),
    Case("no delegation to this robot", ("invalid_request", 400, "not_delegated"), actor="robot2"),
    Case("public actor", ("invalid_request", 400, "public_actor"), actor="public-robot"),
    Case(
        "act as a parameter", ("invalid_request", 400, "act_parameter_refused"), act='{"sub":"x"}'
    ),
    Case("may_act as a parameter", ("invalid_request", 400, "act_parameter_refused"), may_act="x"),
    Case(
        "an own token as an ID token",
        ("invalid_request", 400, "subject_token_type_mismatch"),
        subject_token_type=ID_TOKEN_TYPE,
    ),
    Case(
        "actor_token without its type",
        ("invalid_request", 400, "incomplete_actor_token"),
        actor_token="robot",
    ),
    Case(
        "actor_token_type alone",
        ("invalid_request", 400, "incomplete_actor_token"),
        actor_token_type=ACCESS,
    ),
    Case(
        "actor token of another type",
        ("invalid_request", 400, "unsupported_actor_token_type"),
        actor_token="robot",
        actor_token_type=ID_TOKEN_TYPE,
    ),
    Case(
        "actor token from another issuer",
        ("invalid_request", 400, "actor_token_refused:foreign_issuer"),
        actor_token="foreign",
        actor_token_type=ACCESS,
    ),
    Case(
        "actor token forged with our iss",
        ("invalid_request", 400, "actor_token_refused:unknown_key"),
        actor_token="forged",
        actor_token_type=ACCESS,
    ),
    Case(
        "actor token with a broken signature",
        ("invalid_request", 400, "actor_token_refused:bad_signature"),
        actor_token="tampered",
        actor_token_type=ACCESS,
    ),
    Case(
        "an expired actor token",
        ("invalid_request", 400, "actor_token_refused:expired"),
        actor_token="expired",
        actor_token_type=ACCESS,
    ),
    Case(
        "a revoked actor token",
        ("invalid_request", 400, "actor_token_refused:revoked"),
        actor_token="revoked",
        actor_token_type=ACCESS,
    ),
    Case(
        "a user's token as actor token",
        ("invalid_request", 400, "actor_token_refused:not_a_client_token"),
        actor_token="user",
        actor_token_type=ACCESS,
    ),
    Case(
        "another client's actor token",
        ("invalid_request", 400, "actor_token_refused:other_client"),
        actor_token="robot2",
        actor_token_type=ACCESS,
    ),
    Case(
        "a delegated token as actor token",
        ("invalid_request", 400, "actor_token_refused:delegated"),
        actor_token="delegated",
        actor_token_type=ACCESS,
    ),
]


async def actor_token(runtime: IssuerRuntime, clock: Clock, kind: str) -> str:
    exp = int(clock.now) + 300
    if kind == "foreign":
        return FAKE.token("robot", client_id="robot", exp=exp, iat=int(clock.now))
    if kind == "forged":
        return FAKE.token("robot", client_id="robot", iss=ISSUER, exp=exp, iat=int(clock.now))
    if kind == "tampered":
        head, payload, signature = client_token(runtime, "robot").split(".")
        return f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    if kind == "expired":
        token, _ = runtime.mint_access_token(
            subject="robot", client_id="robot", scopes=(), audiences=(ISSUER,), lifetime=1
        )
        clock.advance(1)  # within the verifier's leeway, refused here
        return token
    if kind == "revoked":
        token = client_token(runtime, "robot")
        form = {"token": token}
        await runtime.revoke(TokenRequest(form, authorization=basic("robot", ROBOT_SECRET)))
        return token
    if kind == "user":
        return user_token(runtime, client_id="robot")
    if kind == "delegated":
        return client_token(runtime, "robot", act={"sub": "robot2", "client_id": "robot2"})
    if kind in ("robot", "robot2"):
        return client_token(runtime, kind)
    raise AssertionError(kind)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_refusals_issue_and_store_nothing(
    runtime: IssuerRuntime, clock: Clock, debug_logs: pytest.LogCaptureFixture, case: Case
) -> None:
    await delegate(runtime, scopes=["items:read"], audience=ISSUER)
    subject = user_token(runtime)
    form = dict(case.form)
    if "actor_token" in form:
        form["actor_token"] = await actor_token(runtime, clock, form["actor_token"])
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, subject, actor=case.actor, **form)
    assert refusal(caught) == case.expected, case.name
    body = caught.value.body()
    assert body["error"] == case.expected[0]
    assert subject not in str(body)
    assert await stored(runtime) == before
    assert f"Token exchange refused for client {case.actor}: {case.expected[2]}" in debug_logs.text
    assert_no_secret_logged(debug_logs, subject, *(v for v in form.values() if len(v) > 40))


async def subject_of(runtime: IssuerRuntime, clock: Clock, kind: str) -> str:
    if kind == "expired":
        token = user_token(runtime, lifetime=1)
        clock.advance(1)
        return token
    if kind == "revoked":
        token = user_token(runtime)
        await runtime.revoke(
            TokenRequest({"token": token, "client_id": "web"})  # the web client is public
        )
        return token
    if kind == "another audience":
        return user_token(runtime, audiences=(OTHER_RESOURCE,))
    if kind == "a client's own token":
        return client_token(runtime, "robot2")
    if kind == "another issuer's, claiming ours":
        return FAKE.token(BOB.id, iss=ISSUER, exp=int(clock.now) + 300, iat=int(clock.now))
    if kind == "a forged act":
        return user_token(runtime, act={"sub": 7})
    if kind == "a disabled user's":
        await runtime.store.users.update(
            UserRecord(id=CAROL.id, username=CAROL.username, scopes=CAROL.scopes, disabled=True)
        )
        return user_token(runtime, CAROL, scopes=("items:read",))
    if kind == "a removed user's":
        await runtime.store.users.delete(ALICE.id)
        return user_token(runtime, ALICE, scopes=("items:read",))
    raise AssertionError(kind)


SUBJECTS = [
    ("expired", "subject_token_refused:expired"),
    ("revoked", "subject_token_refused:revoked"),
    ("another audience", "subject_token_refused:audience_mismatch"),
    ("a client's own token", "subject_not_a_user"),
    ("another issuer's, claiming ours", "subject_token_refused:unknown_key"),
    # refused by the resource server's reading of act, or by the issuer's own
    ("a forged act", "subject_token_refused:invalid_claim_type|malformed_act"),
    ("a disabled user's", "subject_token_refused:account_disabled"),
    ("a removed user's", "subject_token_refused:account_disabled"),
]


@pytest.mark.parametrize(("kind", "reason"), SUBJECTS, ids=[s[0] for s in SUBJECTS])
async def test_refused_subject_tokens(
    runtime: IssuerRuntime,
    clock: Clock,
    debug_logs: pytest.LogCaptureFixture,
    kind: str,
    reason: str,
) -> None:
    await delegate(runtime)
    subject = await subject_of(runtime, clock, kind)
    before = await stored(runtime)
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, subject, actor="robot")
    error, status, found = refusal(caught)
    assert (error, status) == ("invalid_request", 400)
    prefix, _, choices = reason.rpartition(":")
    assert found in {f"{prefix}:{choice}" if prefix else choice for choice in choices.split("|")}
    assert caught.value.body() == {
        "error": "invalid_request",
        "error_description": "The subject token is invalid or not accepted",
    }
    assert await stored(runtime) == before
    assert_no_secret_logged(debug_logs, subject)


async def test_a_disabled_robot_is_not_authenticated(runtime: IssuerRuntime) -> None:
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, user_token(runtime), actor="off-robot")
    assert refusal(caught)[:2] == ("invalid_client", 401)


async def test_revoked_and_ended_delegations_cover_nothing(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    await delegate(runtime, expires_in=100)
    assert await exchange(runtime, user_token(runtime))
    # ended
    clock.advance(100)
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, user_token(runtime))
    assert refusal(caught) == ("invalid_request", 400, "not_delegated")
    # revoked: the user's token covers nothing, the delegated token is refused
    record, _ = await delegate(runtime)
    delegated = (await exchange(runtime, user_token(runtime)))["access_token"]
    assert await runtime.delegations.revoke(BOB.id, record.id)
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, user_token(runtime))
    assert refusal(caught) == ("invalid_request", 400, "not_delegated")
    with pytest.raises(InvalidToken):
        await runtime.source.check_active(delegated, await principal_of(runtime, delegated))


async def test_a_provider_token_keeps_its_refusal_of_actor_tokens(runtime: IssuerRuntime) -> None:
    form = exchange_form(
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", actor_token="x", actor_token_type=ACCESS
    )
    with pytest.raises(OAuthError) as caught:
        await runtime.token(TokenRequest(form, authorization=basic("robot", ROBOT_SECRET)))
    assert refusal(caught) == ("invalid_request", 400, "actor_token_unsupported")
