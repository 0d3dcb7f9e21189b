"""Which tokens count as "an access token for this API" (SECURITY-CASES §2, §5).

Introspection: an active answer must carry evidence of an access token for this
resource under every policy (audience only, ``client_ids`` only, both); members
naming another kind of token refuse it whatever the policy. JWTs: without an
audience, a token addressed to one of the configured clients (an ID token's
shape) is refused. Also the opt-in reading of a space-separated ``aud`` string.

The answers below are modelled on what real servers send (oidc-provider, ORY
Hydra, Keycloak); the interop tests check the same matrix against oidc-provider.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authbridge import (
    AuthBridgeError,
    ConfigurationError,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ResourceServer,
)
from authbridge.testing import FakeIssuer, sign_jwt

ISSUER = "https://issuer.example.test"
API = "https://api.example.test"
CLIENT = "web-app"
ENDPOINT = f"{ISSUER}/introspect"
NOW = int(time.time())

POLICIES: dict[str, dict[str, Any]] = {
    "audience": {"audience": API},
    "client_ids": {"client_ids": [CLIENT]},
    "both": {"audience": API, "client_ids": [CLIENT]},
}

COMMON = {"active": True, "iss": ISSUER, "sub": "alice", "exp": NOW + 86_400, "iat": NOW}
COMMON_CLIENT = {**COMMON, "client_id": CLIENT, "scope": "items:read"}

# name -> (answer, accepted under each policy)
ANSWERS: dict[str, tuple[dict[str, Any], dict[str, bool]]] = {
    "oidc-provider-access-token": (
        {**COMMON_CLIENT, "aud": API, "token_type": "Bearer"},
        {"audience": True, "client_ids": True, "both": True},
    ),
    "oidc-provider-refresh-token": (
        {**COMMON_CLIENT, "scope": "openid offline_access items:read"},
        {"audience": False, "client_ids": False, "both": False},
    ),
    "hydra-access-token": (
        {**COMMON_CLIENT, "aud": [API], "token_type": "Bearer", "token_use": "access_token"},
        {"audience": True, "client_ids": True, "both": True},
    ),
    "hydra-refresh-token": (
        {**COMMON_CLIENT, "aud": [API], "token_type": "Bearer", "token_use": "refresh_token"},
        {"audience": False, "client_ids": False, "both": False},
    ),
    "keycloak-access-token": (
        {**COMMON, "azp": CLIENT, "aud": [API, "account"], "typ": "Bearer", "scope": "x"},
        {"audience": True, "client_ids": True, "both": True},
    ),
    "keycloak-refresh-token": (
        {**COMMON, "azp": CLIENT, "aud": API, "typ": "Refresh", "scope": "x"},
        {"audience": False, "client_ids": False, "both": False},
    ),
    "keycloak-id-token": (
        {**COMMON, "azp": CLIENT, "aud": CLIENT, "typ": "ID"},
        {"audience": False, "client_ids": False, "both": False},
    ),
    "refresh-token-by-token-type": (
        {**COMMON_CLIENT, "aud": API, "token_type": "refresh_token"},
        {"audience": False, "client_ids": False, "both": False},
    ),
    "dpop-bound": (
        {**COMMON_CLIENT, "aud": API, "token_type": "DPoP"},
        {"audience": False, "client_ids": False, "both": False},
    ),
    # An audience is evidence: it names this API. client_id alone is not.
    "audience-without-type": (
        {**COMMON_CLIENT, "aud": API},
        {"audience": True, "client_ids": False, "both": True},
    ),
    "type-without-audience": (
        {**COMMON_CLIENT, "token_type": "Bearer"},
        {"audience": False, "client_ids": True, "both": False},
    ),
    "another-client": (
        {**COMMON_CLIENT, "client_id": "other", "aud": API, "token_type": "Bearer"},
        {"audience": True, "client_ids": False, "both": False},
    ),
}

REASONS = {
    "wrong_token_type", "not_an_access_token", "missing_claim", "client_mismatch",
    "audience_mismatch",
}  # fmt: skip


def introspecting(answer: dict[str, Any]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/introspect"
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handle)


def provider(policy: dict[str, Any], **introspection: Any) -> OIDCProvider:
    return OIDCProvider(
        "idp",
        issuer=ISSUER,
        introspection=Introspection(
            client_id="api", client_secret="api-secret", endpoint=ENDPOINT, **introspection
        ),
        **policy,
    )


async def outcome(
    answer: dict[str, Any], policy: dict[str, Any], **introspection: Any
) -> Principal | AuthBridgeError:
    server = ResourceServer([provider(policy, **introspection)], transport=introspecting(answer))
    await server.start(warm_up=False)  # nothing but the introspection endpoint is asked
    try:
        return await server.verify("an-opaque-token-0123456789")
    except AuthBridgeError as exc:
        return exc
    finally:
        await server.aclose()


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("name", sorted(ANSWERS))
async def test_policy_matrix(name: str, policy: str) -> None:
    answer, accepted = ANSWERS[name]
    result = await outcome(answer, POLICIES[policy])
    if accepted[policy]:
        assert isinstance(result, Principal), f"{name} under {policy}: {result!r}"
    else:
        assert isinstance(result, InvalidToken), f"{name} accepted under {policy}"
        assert result.reason in REASONS
        assert result.provider == "idp"


def test_neither_audience_nor_client_ids_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider({})
    assert caught.value.reason == "audience_or_client_ids_required"


async def test_refresh_token_without_evidence_is_refused_with_a_clear_reason() -> None:
    answer = ANSWERS["oidc-provider-refresh-token"][0]
    by_client = await outcome(answer, POLICIES["client_ids"])
    assert isinstance(by_client, InvalidToken)
    assert (by_client.reason, by_client.claim) == ("not_an_access_token", None)
    assert "access_token_marker" in str(by_client.detail)
    by_audience = await outcome(answer, POLICIES["audience"])
    assert isinstance(by_audience, InvalidToken)
    assert (by_audience.reason, by_audience.claim) == ("missing_claim", "aud")


# -- a configured marker ---------------------------------------------------------------------

MARKER = {"token_kind": "access"}


ALL = {"audience": True, "client_ids": True, "both": True}
NONE = {"audience": False, "client_ids": False, "both": False}


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize(
    ("members", "accepted"),
    [
        # The marker alone is the evidence without an audience; with one, `aud` is required.
        ({"token_kind": "access"}, {"audience": False, "client_ids": True, "both": False}),
        ({"token_kind": "access", "aud": API}, ALL),
        ({"token_kind": "refresh", "aud": API}, NONE),
        ({"token_kind": "ACCESS", "aud": API}, NONE),
        ({"token_kind": ["access"], "aud": API}, NONE),
        # With a marker configured, every answer must carry it, even with other evidence.
        ({"token_type": "Bearer", "aud": API}, NONE),
        ({"token_kind": "access", "aud": API, "token_type": "refresh_token"}, NONE),
    ],
    ids=repr,
)
async def test_configured_marker(
    policy: str, members: dict[str, Any], accepted: dict[str, bool]
) -> None:
    result = await outcome(
        {**COMMON_CLIENT, **members}, POLICIES[policy], access_token_marker=MARKER
    )
    assert isinstance(result, Principal) is accepted[policy], repr(result)


@pytest.mark.parametrize(
    "marker", [{}, {"": "x"}, {"kind": None}, {"kind": 1.5}, {"kind": ["a"]}, {1: "a"}], ids=repr
)
def test_marker_must_be_names_and_exact_values(marker: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Introspection(client_id="api", client_secret="s", access_token_marker=marker)
    assert caught.value.reason == "invalid_access_token_marker"
    assert "token_kind" in str(caught.value)  # the message shows an example


def test_marker_is_kept_read_only() -> None:
    marker = {"token_kind": "access"}
    config = Introspection(client_id="api", client_secret="s", access_token_marker=marker)
    marker["token_kind"] = "refresh"
    assert config.access_token_marker == {"token_kind": "access"}
    with pytest.raises(TypeError):
        config.access_token_marker["token_kind"] = "x"  # type: ignore[index]


# -- the rule as a property ------------------------------------------------------------------

member_values = {
    "aud": st.sampled_from([API, [API], ["other"], "other", [API, "other"]]),
    "client_id": st.sampled_from([CLIENT, "other"]),
    "token_type": st.sampled_from(["Bearer", "bearer", "refresh_token", "DPoP", "N_A", 1]),
    "token_use": st.sampled_from(["access_token", "refresh_token", "id_token"]),
    "typ": st.sampled_from(["Bearer", "Refresh", "ID", "Offline", "Logout", "unknown"]),
}
answers = st.fixed_dictionaries({}, optional=member_values)


def rule(answer: dict[str, Any], policy: dict[str, Any]) -> bool:
    """The documented rule, stated independently of the implementation."""
    token_type, token_use, typ = (answer.get(k) for k in ("token_type", "token_use", "typ"))
    if token_type is not None and not (
        isinstance(token_type, str) and token_type.lower() == "bearer"
    ):
        return False
    if token_use is not None and token_use != "access_token":
        return False
    if isinstance(typ, str) and typ.lower() in {"refresh", "id", "offline", "logout"}:
        return False
    if "client_ids" in policy and answer.get("client_id") != CLIENT:
        return False
    if "audience" in policy:
        aud = answer.get("aud")
        return API in (aud if isinstance(aud, list) else [aud])
    return token_type is not None or token_use is not None or typ == "Bearer"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(members=answers, policy=st.sampled_from(sorted(POLICIES)))
async def test_accepted_exactly_when_the_rule_says_so(members: dict[str, Any], policy: str) -> None:
    answer = {**COMMON, **members}
    result = await outcome(answer, POLICIES[policy])
    assert isinstance(result, Principal) is rule(answer, POLICIES[policy]), (answer, result)


# -- JWTs: an ID token is not an access token, whatever the policy -----------------------------


@pytest.fixture
def issuer(authbridge_signing_key: Any) -> FakeIssuer:
    return FakeIssuer(ISSUER, API, key=authbridge_signing_key)


async def jwt_outcome(issuer: FakeIssuer, token: str, **policy: Any) -> Principal | AuthBridgeError:
    server = ResourceServer(
        [OIDCProvider("idp", issuer=ISSUER, **policy)], transport=issuer.transport
    )
    async with server:
        try:
            return await server.verify(token)
        except AuthBridgeError as exc:
            return exc


def id_token(issuer: FakeIssuer, **claims: Any) -> str:
    """An OpenID Connect ID token for CLIENT, as oidc-provider shapes one (no ``typ``)."""
    claims = {"aud": CLIENT, "client_id": None, "nonce": "n-0S6_WzA2Mj", **claims}
    return sign_jwt({"alg": "RS256", "kid": issuer.kid}, issuer.claims(**claims), issuer.key)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"azp": CLIENT},  # the client named by azp, as Keycloak and others do
        {"azp": CLIENT, "aud": [CLIENT, "another-client"]},
        {"client_id": CLIENT},
    ],
    ids=repr,
)
async def test_id_token_is_refused_under_every_policy(
    issuer: FakeIssuer, policy: str, claims: dict[str, Any]
) -> None:
    result = await jwt_outcome(issuer, id_token(issuer, **claims), **POLICIES[policy])
    assert isinstance(result, InvalidToken), f"ID token accepted under {policy}"
    assert result.reason in {"audience_mismatch", "client_mismatch", "wrong_token_type"}


@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_access_token_is_accepted_under_every_policy(issuer: FakeIssuer, policy: str) -> None:
    token = issuer.token(client_id=CLIENT, scope="items:read")
    result = await jwt_outcome(issuer, token, **POLICIES[policy])
    assert isinstance(result, Principal), repr(result)


async def test_client_ids_only_refuses_a_token_addressed_to_the_client(issuer: FakeIssuer) -> None:
    token = issuer.token(client_id=CLIENT, aud=["https://api.example.test", CLIENT])
    result = await jwt_outcome(issuer, token, client_ids=[CLIENT])
    assert isinstance(result, InvalidToken)
    assert (result.reason, result.claim) == ("wrong_token_type", "aud")
    # An explicit audience equal to the client id is the user's choice (Entra's own-app tokens).
    assert isinstance(await jwt_outcome(issuer, token, audience=CLIENT), Principal)


async def test_id_token_policy_still_accepts_id_tokens(issuer: FakeIssuer) -> None:
    token = id_token(issuer, azp=CLIENT, scope=None)
    result = await jwt_outcome(issuer, token, client_ids=[CLIENT], token_type="id_token")
    assert isinstance(result, Principal), repr(result)


# -- aud as one space-separated string (opt-in) -------------------------------------------------


@pytest.mark.parametrize(
    ("aud", "strict", "opted_in"),
    [
        (f"{API} https://other.example.test", "audience_mismatch", None),
        (f"https://other.example.test {API}", "audience_mismatch", None),
        (f"https://other.example.test  {API} ", "audience_mismatch", None),
        (API, None, None),
        ([API, "https://other.example.test"], None, None),
        (f"{API}\thttps://other.example.test", "audience_mismatch", "audience_mismatch"),
        (f"{API}\u00a0x", "audience_mismatch", "audience_mismatch"),
        (
            "https://other.example.test https://third.example.test",
            "audience_mismatch",
            "audience_mismatch",
        ),
        ("", "audience_mismatch", "audience_mismatch"),
        (" ", "audience_mismatch", "audience_mismatch"),
        ([f"{API} x"], "audience_mismatch", "audience_mismatch"),  # arrays are never split
    ],
    ids=repr,
)
async def test_space_separated_aud(
    issuer: FakeIssuer, aud: Any, strict: str | None, opted_in: str | None
) -> None:
    token = issuer.token(aud=aud)
    default = await jwt_outcome(issuer, token, audience=API)
    split = await jwt_outcome(issuer, token, audience=API, space_separated_aud=True)
    for result, expected in ((default, strict), (split, opted_in)):
        if expected is None:
            assert isinstance(result, Principal), repr(result)
        else:
            assert isinstance(result, InvalidToken)
            assert (result.reason, result.claim) == (expected, "aud")

    answer = {**COMMON_CLIENT, "aud": aud, "token_type": "Bearer"}
    for opt_in, expected in ((False, strict), (True, opted_in)):
        policy = {"audience": API, "space_separated_aud": opt_in}
        result = await outcome(answer, policy)
        assert isinstance(result, Principal) is (expected is None), (opt_in, result)


async def test_space_separated_aud_still_spots_id_tokens(issuer: FakeIssuer) -> None:
    token = issuer.token(client_id=CLIENT, aud=f"{API} {CLIENT}")
    result = await jwt_outcome(issuer, token, client_ids=[CLIENT], space_separated_aud=True)
    assert isinstance(result, InvalidToken)
    assert result.reason == "wrong_token_type"
    assert isinstance(await jwt_outcome(issuer, token, client_ids=[CLIENT]), Principal)


def test_space_separated_aud_is_not_for_id_tokens() -> None:
    with pytest.raises(ConfigurationError) as caught:
        OIDCProvider(
            "idp", issuer=ISSUER, audience=CLIENT, token_type="id_token", space_separated_aud=True
        )
    assert caught.value.reason == "space_separated_aud_with_id_token"
    assert caught.value.provider == "idp"
