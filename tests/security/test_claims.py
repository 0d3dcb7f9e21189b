"""SECURITY-CASES §2: registered claims, checked against an injected clock."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient

from authbridge import AuthBridge, ConfigurationError, InvalidToken, OIDCProvider, Principal
from authbridge.jose import JWTPolicy

from ._support import (
    OMIT,
    T0,
    accepted,
    assert_r401,
    b64,
    bearer,
    claims_at,
    make_app,
    outcomes,
    rejected,
    sign_bytes,
    token_at,
)

# Values that are not a NumericDate (RFC 7519 §2).
NOT_NUMERIC_DATES = [
    "1700000300", "", "now", True, False, None, [], [T0 + 300], {}, {"$date": T0 + 300},
    10**11 + 1, 10**12, 10**20, -(10**12), 1e300, 2**63, 2**64 + 1,
]  # fmt: skip


def _raw_payload_token(fake_issuer, payload: bytes) -> str:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
    data = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    return f"{data}.{b64(sign_bytes('RS256', fake_issuer.key, data.encode()))}"


def _claims_json_with(fake_issuer, clock, name: str, literal: str) -> bytes:
    """The claims as JSON text, with ``name`` set to a raw JSON ``literal``."""
    claims = claims_at(fake_issuer, clock, **{name: "__X__"})
    return json.dumps(claims).replace('"__X__"', literal).encode()


# -- exp -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leeway", "offset", "ok"),
    [
        (30, -3600, False),
        (30, -31, False),
        (30, -30, False),  # now == exp + leeway: expired
        (30, -29, True),
        (30, 0, True),
        (0, -1, False),
        (0, 0, False),  # exp == now: "on or after" exp the token is expired
        (0, 1, True),
        (300, -299, True),
        (300, -300, False),
    ],
)
def test_exp_boundaries(make_auth, fake_issuer, clock, leeway, offset, ok) -> None:
    token = token_at(fake_issuer, clock, exp=T0 + offset, iat=T0 - 3600)
    result = outcomes(make_auth(leeway=leeway), [token])[0]
    if ok:
        assert isinstance(result, Principal)
    else:
        assert isinstance(result, InvalidToken)
        assert (result.reason, result.claim) == ("expired", "exp")


def test_exp_float_and_fraction(make_auth, fake_issuer, clock) -> None:
    auth = make_auth(leeway=0)
    assert accepted(auth, token_at(fake_issuer, clock, exp=T0 + 0.5))
    assert rejected(make_auth(leeway=0), token_at(fake_issuer, clock, exp=T0 - 0.5)).reason == (
        "expired"
    )


def test_exp_missing(make_auth, fake_issuer, clock) -> None:
    result = rejected(make_auth(), token_at(fake_issuer, clock, exp=OMIT))
    assert (result.reason, result.claim) == ("missing_claim", "exp")


def test_expired_token_over_http(make_auth, fake_issuer, clock) -> None:
    with TestClient(make_app(make_auth())) as client:
        expired = token_at(fake_issuer, clock, exp=T0 - 600, iat=T0 - 900)
        assert_r401(client.get("/items", headers=bearer(expired)))
        fresh = token_at(fake_issuer, clock)
        assert client.get("/items", headers=bearer(fresh)).status_code == 200
        clock.advance(330)  # the same token, later: refused, even though it was cached
        assert_r401(client.get("/items", headers=bearer(fresh)))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", NOT_NUMERIC_DATES, ids=repr)
def test_numeric_dates_of_wrong_type(make_auth, fake_issuer, clock, claim, value) -> None:
    result = rejected(make_auth(), token_at(fake_issuer, clock, **{claim: value}))
    assert result.claim == claim
    assert result.reason in {"invalid_claim_type", "expired"}
    if not isinstance(value, int | float) or isinstance(value, bool) or value > 0:
        assert result.reason == "invalid_claim_type"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "literal",
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999", "9" * 5000, "1" + "0" * 4400],
)
def test_numeric_dates_non_finite_or_huge(make_auth, fake_issuer, clock, claim, literal) -> None:
    token = _raw_payload_token(fake_issuer, _claims_json_with(fake_issuer, clock, claim, literal))
    result = rejected(make_auth(), token)
    assert result.reason in {"invalid_claim_type", "non_finite_number", "malformed_payload"}


def test_numeric_date_limits(make_auth, fake_issuer, clock) -> None:
    """The largest accepted NumericDate still yields a valid Principal (no overflow)."""
    principal = accepted(make_auth(), token_at(fake_issuer, clock, exp=10**11))
    assert principal.expires_at.year > 5000
    rejected(make_auth(), token_at(fake_issuer, clock, exp=10**11 + 1))
    assert math.isclose(
        accepted(make_auth(), token_at(fake_issuer, clock, exp=T0 + 1e2)).expires_at.timestamp(),
        T0 + 100,
    )


# -- nbf / iat -------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize(
    ("leeway", "offset", "ok"),
    [
        (30, 3600, False),
        (30, 31, False),
        (30, 30, True),
        (30, 10, True),  # within leeway
        (30, 0, True),
        (30, -3600, True),
        (0, 1, False),
        (0, 0, True),
        (5, 6, False),
        (300, 300, True),
        (300, 301, False),
    ],
)
def test_nbf_and_iat_in_the_future(make_auth, fake_issuer, clock, claim, leeway, offset, ok):
    token = token_at(fake_issuer, clock, exp=T0 + 7200, **{claim: T0 + offset})
    result = outcomes(make_auth(leeway=leeway), [token])[0]
    if ok:
        assert isinstance(result, Principal)
    else:
        assert isinstance(result, InvalidToken)
        assert result.claim == claim
        assert result.reason in {"not_yet_valid", "issued_in_the_future"}


def test_not_yet_valid_from_test_kit(fake_issuer) -> None:
    # The test kit uses the wall clock: use the system clock here too.
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    assert rejected(auth, fake_issuer.bad.not_yet_valid()).reason == "not_yet_valid"
    assert rejected(auth, fake_issuer.bad.expired()).reason == "expired"


# -- leeway ----------------------------------------------------------------------------------


@pytest.mark.parametrize("leeway", [-1, -0.001, 300.001, 301, 3600, 1e9, math.inf, math.nan])
def test_leeway_is_capped(fake_issuer, leeway) -> None:
    with pytest.raises(ConfigurationError):
        fake_issuer.provider(leeway=leeway)
    with pytest.raises(ConfigurationError):
        JWTPolicy(
            issuer="https://i", audiences=frozenset({"a"}), algorithms=frozenset({"RS256"}),
            leeway=leeway,
        )  # fmt: skip


@pytest.mark.parametrize("leeway", [0, 0.5, 30, 300])
def test_leeway_within_range(fake_issuer, leeway) -> None:
    assert fake_issuer.provider(leeway=leeway).policy.leeway == leeway


def test_default_leeway_is_small(fake_issuer) -> None:
    assert 0 < fake_issuer.provider().policy.leeway <= 60


# -- iss -----------------------------------------------------------------------------------

ISSUER = "https://issuer.example.test"
ISSUER_VARIANTS = [
    ISSUER + "/", ISSUER + "//", ISSUER[:-1], ISSUER + "t", ISSUER + ".evil.example",
    ISSUER + ":443", ISSUER + "/realms/other", ISSUER + "?", ISSUER + "#", ISSUER + " ",
    " " + ISSUER, ISSUER.upper(), "HTTPS://issuer.example.test", "https://ISSUER.example.test",
    "http://issuer.example.test", "https://issuer.example.test.", "https://issuer%2Eexample.test",
    "https://issuer.example.test\u0000", "https://issuer.example.test\n", "https://evil.example.test",
    "https://user@issuer.example.test", "issuer.example.test", "", "\u0130ssuer",
]  # fmt: skip


@pytest.mark.parametrize("iss", ISSUER_VARIANTS, ids=repr)
def test_iss_exact_match_only_and_no_fetch(make_auth, fake_issuer, clock, upstream, iss) -> None:
    assert fake_issuer.issuer == ISSUER
    token = token_at(fake_issuer, clock, iss=iss)
    result = rejected(make_auth(), token, warm=False)
    assert result.reason == "unknown_issuer"
    assert upstream.urls == []  # no discovery, no JWKS: nothing for an unconfigured issuer


@pytest.mark.parametrize("iss", [OMIT, None, 1, True, [ISSUER], {"iss": ISSUER}], ids=repr)
def test_iss_missing_or_wrong_type(make_auth, fake_issuer, clock, upstream, iss) -> None:
    result = rejected(make_auth(), token_at(fake_issuer, clock, iss=iss), warm=False)
    assert result.reason == "unknown_issuer"
    assert upstream.urls == []


def test_wrong_issuer_from_test_kit_over_http(make_auth, fake_issuer, upstream) -> None:
    with TestClient(make_app(make_auth())) as client:
        before = list(upstream.urls)
        assert_r401(client.get("/items", headers=bearer(fake_issuer.bad.wrong_issuer())))
        assert upstream.urls == before


def test_trailing_slash_issuer_configured(fake_issuer, clock, upstream) -> None:
    """Configured with a trailing slash, the form without one is a different issuer."""
    slash = OIDCProvider(
        "slash", issuer=ISSUER + "/", audience=fake_issuer.audience, jwks_uri=fake_issuer.jwks_uri
    )
    auth = AuthBridge(providers=[slash], transport=upstream.transport, clock=clock)
    assert rejected(auth, token_at(fake_issuer, clock), warm=False).reason == "unknown_issuer"
    assert upstream.urls == []
    assert accepted(auth, token_at(fake_issuer, clock, iss=ISSUER + "/"), warm=False)


# -- aud -----------------------------------------------------------------------------------

AUD = "https://api.example.test"


@pytest.mark.parametrize(
    ("aud", "reason"),
    [
        (AUD, None),
        ([AUD], None),
        (["https://other.example.test", AUD], None),
        ([AUD, AUD], None),
        (OMIT, "missing_claim"),
        ("https://other.example.test", "audience_mismatch"),
        (["https://other.example.test"], "audience_mismatch"),
        (AUD + "/", "audience_mismatch"),
        (AUD[:-1], "audience_mismatch"),
        (AUD.upper(), "audience_mismatch"),
        (AUD + " ", "audience_mismatch"),
        ("", "audience_mismatch"),
        (f"{AUD} https://other.example.test", "audience_mismatch"),
        ([], "invalid_claim_type"),
        ([AUD, 1], "invalid_claim_type"),
        ([AUD, None], "invalid_claim_type"),
        ([[AUD]], "invalid_claim_type"),
        ([{"aud": AUD}], "invalid_claim_type"),
        (None, "invalid_claim_type"),
        (1, "invalid_claim_type"),
        (True, "invalid_claim_type"),
        ({AUD: True}, "invalid_claim_type"),
    ],
    ids=repr,
)
def test_aud(make_auth, fake_issuer, clock, aud, reason) -> None:
    result = outcomes(make_auth(), [token_at(fake_issuer, clock, aud=aud)])[0]
    if reason is None:
        assert isinstance(result, Principal)
    else:
        assert isinstance(result, InvalidToken)
        assert (result.reason, result.claim) == (reason, "aud")


def test_several_configured_audiences(make_auth, fake_issuer, clock) -> None:
    auth = make_auth(audience=["api-1", "api-2"])
    results = outcomes(
        auth,
        [
            token_at(fake_issuer, clock, aud="api-2"),
            token_at(fake_issuer, clock, aud=["x", "api-1"]),
            token_at(fake_issuer, clock, aud=AUD),
            token_at(fake_issuer, clock, aud="api-1 api-2"),
        ],
    )
    assert [type(r).__name__ for r in results] == [
        "Principal", "Principal", "InvalidToken", "InvalidToken",
    ]  # fmt: skip


def test_wrong_audience_from_test_kit_over_http(make_auth, fake_issuer) -> None:
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    with TestClient(make_app(auth)) as client:
        assert_r401(client.get("/items", headers=bearer(fake_issuer.bad.wrong_audience())))


def test_audience_required_in_configuration(fake_issuer) -> None:
    with pytest.raises(ConfigurationError):
        OIDCProvider("x", issuer=fake_issuer.issuer)
    with pytest.raises(ConfigurationError):
        OIDCProvider("x", issuer=fake_issuer.issuer, audience=[])
    with pytest.raises(ConfigurationError):
        OIDCProvider("x", issuer="", audience="a")


# -- client_ids ----------------------------------------------------------------------------


@pytest.fixture
def client_ids_auth(fake_issuer, clock, upstream):
    provider = OIDCProvider("cognito", issuer=fake_issuer.issuer, client_ids=["app-1", "app-2"])
    return AuthBridge(providers=[provider], transport=upstream.transport, clock=clock)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"client_id": "app-1", "aud": OMIT}, None),
        ({"client_id": "app-2", "aud": OMIT}, None),
        ({"client_id": OMIT, "azp": "app-1", "aud": OMIT}, None),
        ({"client_id": "app-1", "aud": "anything"}, None),
        ({"client_id": "app-3", "aud": OMIT}, "client_mismatch"),
        ({"client_id": "APP-1", "aud": OMIT}, "client_mismatch"),
        ({"client_id": "app-1 ", "aud": OMIT}, "client_mismatch"),
        ({"client_id": "", "aud": OMIT}, "client_mismatch"),
        ({"client_id": "app-3", "azp": "app-1", "aud": OMIT}, "client_mismatch"),
        ({"client_id": OMIT, "aud": OMIT}, "client_mismatch"),
        ({"client_id": OMIT, "aud": "app-1"}, "client_mismatch"),
        ({"client_id": 1, "aud": OMIT}, "invalid_claim_type"),
        ({"client_id": ["app-1"], "aud": OMIT}, "invalid_claim_type"),
        ({"client_id": None, "aud": OMIT}, "invalid_claim_type"),
        ({"client_id": OMIT, "azp": ["app-1"], "aud": OMIT}, "invalid_claim_type"),
        ({"client_id": "app-1", "aud": []}, "invalid_claim_type"),
        ({"client_id": "app-1", "aud": [1]}, "invalid_claim_type"),
    ],
    ids=repr,
)
def test_client_ids_mode(client_ids_auth, fake_issuer, clock, claims, reason) -> None:
    result = outcomes(client_ids_auth, [token_at(fake_issuer, clock, **claims)])[0]
    if reason is None:
        assert isinstance(result, Principal)
    else:
        assert isinstance(result, InvalidToken)
        assert result.reason == reason


def test_client_ids_and_audience_both_enforced(fake_issuer, clock, upstream) -> None:
    provider = OIDCProvider("both", issuer=fake_issuer.issuer, audience=AUD, client_ids=["app-1"])
    auth = AuthBridge(providers=[provider], transport=upstream.transport, clock=clock)
    results = outcomes(
        auth,
        [
            token_at(fake_issuer, clock, client_id="app-1"),
            token_at(fake_issuer, clock, client_id="app-9"),
            token_at(fake_issuer, clock, client_id="app-1", aud="other"),
            token_at(fake_issuer, clock, client_id="app-1", aud=OMIT),
        ],
    )
    assert [getattr(r, "reason", "ok") for r in results] == [
        "ok", "client_mismatch", "audience_mismatch", "missing_claim",
    ]  # fmt: skip


# -- sub -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub", ["", None, 0, 1, True, [], ["alice"], {}, {"id": "alice"}], ids=repr
)
def test_sub_of_wrong_type_or_empty(make_auth, fake_issuer, clock, sub) -> None:
    result = rejected(make_auth(), token_at(fake_issuer, clock, sub=sub))
    assert (result.reason, result.claim) == ("invalid_claim_type", "sub")


def test_sub_missing(make_auth, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock, sub=OMIT)
    # Not required unless configured (client-credentials tokens may lack it) ...
    assert accepted(make_auth(), token).subject is None
    # ... and refused when required.
    result = rejected(make_auth(required_claims=["sub"]), token)
    assert (result.reason, result.claim) == ("missing_claim", "sub")
    # An ID token always needs one.
    id_token = token_at(fake_issuer, clock, sub=OMIT, header={"typ": "JWT"})
    assert rejected(make_auth(token_type="id_token"), id_token).claim == "sub"


@pytest.mark.parametrize("claim", ["jti", "iat", "nbf", "client_id", "sub"])
def test_required_claims_configurable(make_auth, fake_issuer, clock, claim) -> None:
    result = rejected(
        make_auth(required_claims=[claim]), token_at(fake_issuer, clock, **{claim: OMIT})
    )
    assert (result.reason, result.claim) == ("missing_claim", claim)


def test_principal_keyed_by_issuer_and_subject(make_auth, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock, email="bob@example.test", sub="alice")
    principal = accepted(make_auth(), token)
    assert (principal.issuer, principal.subject) == (fake_issuer.issuer, "alice")


# -- other string claims, scope / scp ------------------------------------------------------


@pytest.mark.parametrize("claim", ["jti", "client_id", "azp", "scope", "nonce"])
@pytest.mark.parametrize("value", [None, 1, True, [], ["x"], {}], ids=repr)
def test_string_claims_of_wrong_type(make_auth, fake_issuer, clock, claim, value) -> None:
    result = rejected(make_auth(), token_at(fake_issuer, clock, **{claim: value}))
    assert (result.reason, result.claim) == ("invalid_claim_type", claim)


def _sorted_sets_id(value: object) -> str:
    """``repr`` with sets sorted: the same test id in every process (pytest-xdist compares them)."""
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(map(repr, value))) + "}" if value else "set()"
    return repr(value)


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "items:read items:write"}, {"items:read", "items:write"}),
        ({"scope": "  items:read  items:write  "}, {"items:read", "items:write"}),
        # RFC 6749 §3.3: only U+0020 separates; "items:read\titems:write" is one invalid token.
        ({"scope": "items:read\titems:write"}, set()),
        ({"scope": "openid items:read\u00a0admin"}, {"openid"}),
        ({"scope": ""}, set()),
        ({"scope": OMIT, "scp": ["items:read", "admin"]}, {"items:read", "admin"}),
        ({"scope": OMIT, "scp": "items:read admin"}, {"items:read", "admin"}),
        ({"scope": OMIT, "scp": []}, set()),
        ({"scope": "a", "scp": ["b"]}, {"a", "b"}),
    ],
    ids=_sorted_sets_id,
)
def test_scope_forms(make_auth, fake_issuer, clock, claims, scopes) -> None:
    assert accepted(make_auth(), token_at(fake_issuer, clock, **claims)).scopes == scopes


@pytest.mark.parametrize(
    "scp",
    [None, 1, True, {}, {"items:read": True}, [1], ["items:read", None], [["admin"]]],
    ids=repr,
)
def test_scp_of_wrong_type(make_auth, fake_issuer, clock, scp) -> None:
    result = rejected(make_auth(), token_at(fake_issuer, clock, scope=OMIT, scp=scp))
    assert (result.reason, result.claim) == ("invalid_claim_type", "scp")


@pytest.mark.parametrize(
    "claims",
    [
        {"scope": ["items:read"]},  # scope must be a string
        {"scope": "items:reader"},
        {"scope": "items:read:x"},
        {"scope": "ITEMS:READ"},
        {"scope": "items:read,admin"},
        {"scope": OMIT, "scp": ["items:read admin"]},
        {"scope": OMIT, "scopes": ["items:read"]},
        {"scope": OMIT, "permissions": ["items:read"]},
    ],
    ids=repr,
)
def test_scope_confusion_over_http(make_auth, fake_issuer, clock, claims) -> None:
    with TestClient(make_app(make_auth())) as client:
        response = client.get("/items", headers=bearer(token_at(fake_issuer, clock, **claims)))
        assert response.status_code in (401, 403)
        if response.status_code == 403:
            assert response.headers["www-authenticate"] == (
                'Bearer error="insufficient_scope", error_description="Insufficient scope", '
                'scope="items:read"'
            )
            assert response.json() == {"detail": "Insufficient scope"}
        else:
            assert_r401(response)


def test_insufficient_scope_challenge(make_auth, fake_issuer, clock) -> None:
    with TestClient(make_app(make_auth())) as client:
        response = client.get("/admin", headers=bearer(token_at(fake_issuer, clock)))
        assert response.status_code == 403
        challenge = response.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="admin"' in challenge


# -- ID-token mode: azp ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"aud": AUD}, True),
        ({"aud": [AUD]}, True),
        ({"aud": [AUD, "other"], "azp": AUD}, True),
        ({"aud": [AUD, "other"]}, False),
        ({"aud": [AUD, "other"], "azp": "other"}, False),
        ({"aud": ["other", AUD], "azp": "evil"}, False),
    ],
    ids=repr,
)
def test_id_token_azp(make_auth, fake_issuer, clock, claims, ok) -> None:
    claims = {"client_id": OMIT, "scope": OMIT, **claims}
    token = token_at(fake_issuer, clock, header={"typ": "JWT"}, **claims)
    result = outcomes(make_auth(token_type="id_token"), [token])[0]
    assert isinstance(result, Principal) is ok
    if not ok:
        assert result.reason in {"authorized_party_mismatch", "invalid_claim_type"}
