"""Values from providers' APIs outside any usable range never crash (SECURITY-CASES §2).

A provider's answer is data from the network. Whatever the numbers and strings
in it (an expiry in year 1 or 10000, a NumericDate of four hundred digits, an
id that is a boolean or 2**64, a date that is not a date), verifying a token
ends in exactly one of: a `Principal` a route can serialise, `InvalidToken`
(401) or `ProviderUnavailable` (503). Never another exception (a 500).

Each property throws arbitrary JSON values into one field of one verifier's
answer (every field each verifier reads), through the full `ResourceServer` and
the test kit's fake of that API; the regression examples pin what the answer is
for the values that used to crash.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authbridge import (
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
    UserinfoProvider,
)
from authbridge._http import RawResponse
from authbridge.resource._upstream import expiry_time, iso_time, numeric_id, retry_after, utc
from authbridge.testing import FakeFacebook, FakeGitHub, FakeGoogle, FakeUserinfo

NOW = 1_700_000_000.0
GOOGLE_CLIENT = "1234567890-fake.apps.googleusercontent.com"  # FakeGoogle's default client
AUDIENCE = "https://api.example.test"

# -- arbitrary values ----------------------------------------------------------------------

EDGES = [
    0, -1, 1, NOW - 1, NOW + 1, -(10**10), -(10**11), -(10**11) - 1, 10**11, 10**11 + 1,
    -62135596800, -62135600400, 253402300799, 253402300800, 2**31, 2**53 + 1, 2**63 - 1,
    2**63, 2**64, -(2**63), 10**20, -(10**20), 10**400, -(10**400), 1e308, -1e308, 5e-324,
    0.5, -0.5, True, False, None, "", "0", "1", "-1", "1e3", "NaN", "Infinity", " 1", "1 ",
    "9" * 12, "9" * 13, "0" * 40, "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() is True
]  # fmt: skip
"""Numbers and near-numbers at every boundary the code has (or might have had)."""

OFFSETS = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
DATES = st.one_of(
    st.builds(lambda m, tz: m.replace(tzinfo=tz).isoformat(), MOMENTS, OFFSETS),
    st.builds(lambda m: m.isoformat() + "Z", MOMENTS),
    st.builds(lambda m: m.isoformat(), MOMENTS),  # no offset: read as UTC
    st.builds(lambda m: m.strftime("%Y-%m-%d %H:%M:%S UTC"), MOMENTS),  # GitHub's header form
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "0001-01-01 00:00:00 UTC",
            "yesterday",
        ]
    ),
)
JSON_SCALARS = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    DATES,
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
HEADER_TEXT = st.one_of(
    st.sampled_from(
        [str(e) for e in EDGES if isinstance(e, int | float | str) and str(e).isascii()]
    ),
    DATES,
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
"""What a response header can carry (printable ASCII)."""

MISSING = object()


def with_value(base: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    body = dict(base)
    if value is MISSING:
        body.pop(name, None)
    else:
        body[name] = value
    return body


def field_values() -> st.SearchStrategy[Any]:
    return JSON | st.just(MISSING)


# -- the outcome -----------------------------------------------------------------------------


def check_outcome(result: object) -> None:
    """A clean refusal, or a Principal a route can serialise: nothing else."""
    if isinstance(result, InvalidToken | ProviderUnavailable):
        str(result)  # safe to log
        return
    assert isinstance(result, Principal), repr(result)
    if result.expires_at is not None:
        assert result.expires_at.tzinfo is not None
        assert result.expires_at.timestamp() > NOW  # never an expired token
    assert result.subject is None or 0 < len(result.subject) <= 255
    json.dumps(result.model_dump(mode="json"))


def verify(provider: Any, transport: httpx.AsyncBaseTransport, token: str) -> object:
    async def run() -> object:
        server = ResourceServer([provider], transport=transport, clock=lambda: NOW, cache_size=0)
        try:
            return await server.verify(token)
        except (InvalidToken, ProviderUnavailable) as exc:
            return exc

    return asyncio.run(run())


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- GitHub ----------------------------------------------------------------------------------

GITHUB_USER = {"login": "mona", "id": 583231, "type": "User"}


@PROPERTY
@given(
    st.sampled_from(["id", "login", "type"]),
    field_values(),
    HEADER_TEXT | st.just(MISSING),
    HEADER_TEXT | st.just(MISSING),
)
@example("id", 583231, "2023-02-23 16:06:26 UTC", "repo")
@example("id", True, MISSING, MISSING)
@example("id", 2**64, MISSING, MISSING)
@example("id", 10**400, MISSING, MISSING)
@example("id", "583231", MISSING, MISSING)
@example("id", 583231, "0001-01-01 00:00:00 UTC", MISSING)
@example("id", 583231, "9999-12-31 23:59:59 UTC", MISSING)
def test_github_user_answers(name: str, value: Any, expiry: Any, scopes: Any) -> None:
    fake = FakeGitHub(clock=lambda: NOW)
    headers = {}
    if expiry is not MISSING:
        headers["github-authentication-token-expiration"] = expiry
    if scopes is not MISSING:
        headers["x-oauth-scopes"] = scopes
    fake.fail_next(200, body=with_value(GITHUB_USER, name, value), headers=headers)
    result = verify(GitHubProvider(), fake.transport, FakeGitHub.well_formed_token())
    check_outcome(result)
    raw_id = value if name == "id" else GITHUB_USER["id"]
    if not isinstance(raw_id, int) or isinstance(raw_id, bool) or not 0 < raw_id < 2**63:
        assert isinstance(result, ProviderUnavailable)  # not an id: not an answer


@PROPERTY
@given(st.sampled_from(["expires_at", "scopes", "user", "app"]), field_values())
@example("expires_at", "0001-01-01T00:00:00Z")  # the year-1 expiry that crashed
@example("expires_at", "0001-01-01T00:00:00+23:59")  # year 0 once in UTC
@example("expires_at", "9999-12-31T23:59:59-23:59")  # year 10000 once in UTC
@example("user", {"id": -1})
@example("user", {"id": 2**63})
def test_github_app_check_answers(name: str, value: Any) -> None:
    fake = FakeGitHub(clock=lambda: NOW)
    answer = {
        "app": {"client_id": fake.client_id},
        "scopes": ["repo"],
        "expires_at": "2030-01-01T00:00:00Z",
        "user": dict(GITHUB_USER),
    }
    fake.fail_next(200, body=with_value(answer, name, value))
    provider = GitHubProvider(client_id=fake.client_id, client_secret=fake.client_secret)
    result = verify(provider, fake.transport, FakeGitHub.well_formed_token())
    check_outcome(result)
    if name == "expires_at" and isinstance(value, str) and value[:5] == "0001-" and "T" in value:
        assert isinstance(result, InvalidToken)  # any ISO 8601 time in year 1 is past
        assert result.reason == "expired"


# -- Google ----------------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(["exp", "expires_in", "sub", "azp", "scope", "aud"]), field_values())
@example("exp", str(10**11 + 1))
@example("exp", -(10**400))
@example("expires_in", 10**11)
@example("expires_in", -(10**11))
@example("sub", "x" * 256)
@example("sub", "")
def test_google_tokeninfo_answers(name: str, value: Any) -> None:
    fake = FakeGoogle(clock=lambda: NOW)
    answer = {
        "azp": GOOGLE_CLIENT,
        "aud": GOOGLE_CLIENT,
        "sub": "110169484474386276334",
        "scope": "openid email",
        "exp": str(int(NOW) + 600),
        "expires_in": "600",
    }
    fake.fail_next(200, body=with_value(answer, name, value))
    provider = GoogleProvider(GOOGLE_CLIENT, tokeninfo_url=fake.tokeninfo_url)
    check_outcome(verify(provider, fake.transport, "ya29." + secrets.token_urlsafe(40)))


# -- Facebook --------------------------------------------------------------------------------


@PROPERTY
@given(
    st.sampled_from(["expires_at", "user_id", "app_id", "scopes", "type", "is_valid"]),
    field_values(),
)
@example("expires_at", -(10**10))  # far in the past: the value that crashed
@example("expires_at", -(10**12))  # beyond the NumericDate range, still past
@example("expires_at", 10**12)
@example("expires_at", "tomorrow")
@example("expires_at", True)
@example("user_id", 2**64)
@example("user_id", "1" * 33)
@example("app_id", 10**400)
def test_facebook_debug_token_answers(name: str, value: Any) -> None:
    fake = FakeFacebook(clock=lambda: NOW)
    data = {
        "app_id": fake.app_id,
        "type": "USER",
        "is_valid": True,
        "expires_at": int(NOW) + 600,
        "user_id": "10001",
        "scopes": ["public_profile"],
    }
    batch = [{"code": 200, "body": json.dumps({"data": with_value(data, name, value)})}]
    fake.fail_next(200, body=json.dumps(batch).encode())
    provider = FacebookProvider(fake.app_id, fake.app_secret, graph_base=fake.graph_base)
    result = verify(provider, fake.transport, "EAA" + secrets.token_hex(40))
    check_outcome(result)
    past = isinstance(value, int) and not isinstance(value, bool) and value < 0
    if name == "expires_at" and past:  # however far in the past: expired
        assert isinstance(result, InvalidToken)
        assert result.reason == "expired"


@PROPERTY
@given(JSON)
@example(-1)
@example(10**400)
@example(float("nan"))
@example(float("inf"))
def test_facebook_graph_error_codes(code: Any) -> None:
    fake = FakeFacebook(clock=lambda: NOW)
    body = json.dumps({"error": {"code": code, "message": "x"}})
    fake.fail_next(200, body=json.dumps([{"code": 400, "body": body}]).encode())
    provider = FacebookProvider(fake.app_id, fake.app_secret, graph_base=fake.graph_base)
    result = verify(provider, fake.transport, "EAA" + secrets.token_hex(40))
    assert isinstance(result, ProviderUnavailable)
    assert len(result.reason) <= len("graph_error:999999999")


# -- userinfo --------------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(["sub", "name", "email"]), field_values())
@example("sub", "x" * 256)
@example("sub", 10**400)
def test_userinfo_answers(name: str, value: Any) -> None:
    fake = FakeUserinfo(clock=lambda: NOW)
    fake.fail_next(200, body=with_value({"sub": "alice", "name": "Alice"}, name, value))
    provider = UserinfoProvider("op", fake.issuer, userinfo_endpoint=fake.userinfo_endpoint)
    check_outcome(verify(provider, fake.transport, secrets.token_urlsafe(32)))


# -- introspection ---------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(["exp", "nbf", "iat", "sub", "client_id", "scope", "aud"]), field_values())
@example("exp", -(10**10))
@example("exp", 10**400)
@example("nbf", 1e308)
def test_introspection_answers(name: str, value: Any) -> None:
    answer = {
        "active": True,
        "sub": "alice",
        "client_id": "orders",
        "scope": "items:read",
        "aud": AUDIENCE,
        "token_type": "Bearer",
        "exp": int(NOW) + 600,
        "iat": int(NOW),
    }
    provider = OIDCProvider(
        "op",
        issuer="https://op.example.test",
        audience=AUDIENCE,
        jwks_uri="https://op.example.test/jwks",
        introspection=Introspection(
            client_id="api", client_secret="secret", endpoint="https://op.example.test/introspect"
        ),
    )
    body = json.dumps(with_value(answer, name, value))
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=body.encode(), headers={"content-type": "application/json"}
        )
    )
    check_outcome(verify(provider, transport, secrets.token_urlsafe(32)))


# -- the helpers, at their edges ---------------------------------------------------------------


@given(JSON_SCALARS)
def test_expiry_time_is_in_range_or_refused(value: Any) -> None:
    try:
        result = expiry_time(value)
    except ValueError:
        return
    assert result is None or (-1e11 <= result <= 1e11 and not math.isnan(result))
    assert utc(result) is None or utc(result).tzinfo is UTC  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (-(10**12), -1e11),  # long past is still past
        (-(10**400), -1e11),
        (10**12, None),  # year 33658: no usable expiry
        (float("inf"), None),
        ("1700000000", 1_700_000_000.0),
    ],
)
def test_expiry_time_examples(value: Any, expected: float | None) -> None:
    assert expiry_time(value) == expected


@pytest.mark.parametrize("value", [True, False, float("nan"), "soon", "1e3", "-1", [1], {}])
def test_expiry_time_refuses_what_is_not_a_number(value: Any) -> None:
    with pytest.raises(ValueError, match="NumericDate"):
        expiry_time(value)


@given(DATES | st.text(max_size=80))
def test_iso_time_is_in_range_or_none(value: str) -> None:
    result = iso_time(value)
    assert result is None or -1e11 <= result <= 1e11


@given(JSON_SCALARS)
def test_numeric_id_is_a_positive_64_bit_number_or_none(value: Any) -> None:
    result = numeric_id(value)
    assert result is None or (result.isascii() and result.isdigit() and 0 < len(result) <= 32)
    if isinstance(value, int) and not isinstance(value, bool):
        assert (result is not None) == (0 < value < 2**63)


@given(HEADER_TEXT | st.just(None), HEADER_TEXT | st.just(None))
@example("99999999999", None)
@example(None, "99999999999")
@example(None, "1")  # a reset in the past: retry now
def test_retry_after_is_bounded(retry: str | None, reset: str | None) -> None:
    headers = {k: v for k, v in (("retry-after", retry), ("x-ratelimit-reset", reset)) if v}
    delay = retry_after(RawResponse(429, httpx.Headers(headers), b""), NOW)
    assert delay is None or 0 <= delay <= 3600


def test_utc_holds_what_a_datetime_can_and_nothing_else() -> None:
    assert utc(0.0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert utc(253402300799.0) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    for edge in (None, -1.0, 253402300800.0, 1e308, -1e308):
        assert utc(edge) is None


@pytest.mark.parametrize(
    "inner",
    [
        '{"data": {"is_valid": true, "app_id": "123", "type": "USER", "user_id": "42", '
        '"application": "\\ud800"}}',
        '{"data": {"is_valid": true, "app_id": "123", "type": "USER", "user_id": "42", "x": NaN}}',
        '{"data": {"is_valid": false, "is_valid": true, "app_id": "123", "user_id": "42"}}',
    ],
    ids=["lone_surrogate", "nan", "duplicate_member"],
)
async def test_facebook_batch_body_is_parsed_strictly(inner: str) -> None:
    # The debug_token answer is JSON inside a JSON string: its escapes only appear
    # when that inner string is parsed, which must be as strict as any answer.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"code": 200, "body": inner}])

    server = ResourceServer(
        [FacebookProvider("123", "app-secret")], transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ProviderUnavailable):
        await server.verify("EAA" + "x" * 40)
