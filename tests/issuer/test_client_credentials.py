"""The client_credentials grant (RFC 6749 §4.4) through the token endpoint's runtime.

A real SQLite store and real signing keys; every issued token is checked independently
of the issuer's own verifier (the published JWKS and the strict RFC 9068 policy).
SECURITY-CASES §7: scope and audience escalation, public clients refused, no refresh token.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import store_support
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest, _client_grant
from authbridge.issuer._client_auth import ASSERTION_TYPE
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.jose import JWTPolicy, check_claims, check_header, import_jwks, parse_compact
from authbridge.store import ClientRecord

sqlite_store_url = store_support.sqlite_store_url  # the fixture

ISSUER = "http://127.0.0.1:8000"
OTHER_API = "https://reports.example.test/api"
SECRET = new_secret(CLIENT_SECRET_PREFIX)
KEY = ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def es256_assertion(client_id: str, now: float) -> str:
    def part(value: dict[str, Any]) -> str:
        return b64(json.dumps(value).encode())

    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "exp": int(now) + 60,
        "jti": secrets.token_urlsafe(12),
    }
    signing_input = f"{part({'alg': 'ES256', 'kid': 'k1'})}.{part(claims)}"
    r, s = decode_dss_signature(KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def public_jwk() -> dict[str, str]:
    numbers = KEY.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "kid": "k1",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


CC = frozenset({"client_credentials"})


@pytest.fixture
async def runtime(sqlite_store_url: str, clock: Any) -> AsyncIterator[IssuerRuntime]:
    config = AppIssuer(
        ISSUER,
        store=sqlite_store_url,
        scopes={"items:read": "Read", "items:write": "Write", "admin": "Everything"},
        resources=[OTHER_API],
        development=True,
    )
    issuer = IssuerRuntime(config, clock)
    await issuer.start()
    for record in (
        ClientRecord(
            "robot",
            secret_hash=hash_secret(SECRET, "client_secret"),
            grant_types=CC,
            scopes=frozenset({"items:read", "items:write", "not-configured"}),
        ),
        ClientRecord(
            "machine",
            auth_method="private_key_jwt",
            jwks={"keys": [public_jwk()]},
            grant_types=CC,
            scopes=frozenset({"items:read"}),
        ),
        # Only a direct store write can register this (the command line refuses it).
        ClientRecord("browser", auth_method="none", grant_types=CC, scopes=frozenset({"admin"})),
        ClientRecord(
            "app",
            secret_hash=hash_secret(SECRET, "client_secret"),
            grant_types=frozenset({"password", "refresh_token"}),
            scopes=frozenset({"items:read"}),
        ),
    ):
        await issuer.store.clients.add(record)
    try:
        yield issuer
    finally:
        await issuer.aclose()


async def token(
    runtime: IssuerRuntime, form: dict[str, str], authorization: str | None = None
) -> dict[str, Any]:
    request = TokenRequest(
        form={"grant_type": "client_credentials", **form}, authorization=authorization
    )
    return await runtime.token(request)


async def refused(
    runtime: IssuerRuntime, form: dict[str, str], authorization: str | None = None
) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await token(runtime, form, authorization)
    return caught.value


def verified_claims(
    runtime: IssuerRuntime, access_token: str, audience: str = ISSUER
) -> dict[str, Any]:
    """The token's claims, checked with the published JWKS under the strict RFC 9068 policy."""
    keys = import_jwks(runtime.keys.jwks())
    policy = JWTPolicy(
        issuer=ISSUER,
        audiences=frozenset({audience}),
        algorithms=frozenset({"ES256"}),
        token_type="strict",
        required_claims=frozenset({"iss", "sub", "aud", "exp", "iat", "jti", "client_id"}),
    )
    parsed = parse_compact(access_token, max_bytes=16 * 1024)
    alg, kid = check_header(parsed.header, policy)
    assert any(
        k.verify(alg, parsed.signing_input, parsed.signature) for k in keys.candidates(kid, alg)
    )
    check_claims(parsed.claims, policy, runtime.clock())
    return parsed.claims


async def test_issues_an_rfc9068_token_for_the_client(runtime: IssuerRuntime, clock: Any) -> None:
    body = await token(runtime, {}, basic("robot", SECRET))
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh token
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    # Every allowed scope the issuer knows when none is requested; never an unknown one.
    assert body["scope"] == "items:read items:write"
    claims = verified_claims(runtime, body["access_token"])
    assert claims["sub"] == claims["client_id"] == "robot"
    assert claims["aud"] == ISSUER
    assert claims["scope"] == "items:read items:write"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iat"] == int(clock())
    again = await token(runtime, {}, basic("robot", SECRET))
    assert verified_claims(runtime, again["access_token"])["jti"] != claims["jti"]


async def test_requested_scopes_are_narrowed(runtime: IssuerRuntime) -> None:
    body = await token(runtime, {"scope": "items:read"}, basic("robot", SECRET))
    assert body["scope"] == "items:read"
    assert verified_claims(runtime, body["access_token"])["scope"] == "items:read"
    # Requested ∩ allowed: a configured scope the client may not have is dropped.
    body = await token(runtime, {"scope": "items:write admin"}, basic("robot", SECRET))
    assert body["scope"] == "items:write"


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ("nope", "unknown_scope"),
        ("items:read nope", "unknown_scope"),
        ("not-configured", "unknown_scope"),
        ("admin", "scope_not_allowed"),
    ],
)
async def test_invalid_scope(runtime: IssuerRuntime, scope: str, reason: str) -> None:
    error = await refused(runtime, {"scope": scope}, basic("robot", SECRET))
    assert (error.error, error.status, error.reason) == ("invalid_scope", 400, reason)


async def test_resource_becomes_the_audience(runtime: IssuerRuntime) -> None:
    body = await token(runtime, {"resource": OTHER_API}, basic("robot", SECRET))
    assert verified_claims(runtime, body["access_token"], OTHER_API)["aud"] == OTHER_API
    for resource in ("https://evil.example/api", OTHER_API + "/", ISSUER + "/"):
        error = await refused(runtime, {"resource": resource}, basic("robot", SECRET))
        assert (error.error, error.status, error.reason) == (
            "invalid_target",
            400,
            "unknown_resource",
        )


async def test_private_key_jwt_client(runtime: IssuerRuntime, clock: Any) -> None:
    form = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": es256_assertion("machine", clock()),
    }
    body = await token(runtime, form)
    claims = verified_claims(runtime, body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (
        "machine",
        "machine",
        "items:read",
    )
    # The same assertion again is a replay.
    error = await refused(runtime, form)
    assert (error.error, error.status, error.reason) == (
        "invalid_client",
        401,
        "client_assertion_replayed",
    )


async def test_public_client_refused(runtime: IssuerRuntime) -> None:
    error = await refused(runtime, {"client_id": "browser"})
    assert (error.error, error.status, error.reason) == (
        "unauthorized_client",
        400,
        "public_client_credentials",
    )
    client = await runtime.client("browser")
    assert client is not None
    with pytest.raises(OAuthError) as caught:
        await _client_grant.grant(runtime, client, TokenRequest(form={}))
    assert caught.value.error == "unauthorized_client"


async def test_client_without_the_grant(runtime: IssuerRuntime) -> None:
    error = await refused(runtime, {}, basic("app", SECRET))
    assert (error.error, error.reason) == ("unauthorized_client", "grant_not_allowed_for_client")


async def test_client_authentication_failures(runtime: IssuerRuntime) -> None:
    for header in (basic("robot", new_secret(CLIENT_SECRET_PREFIX)), basic("ghost", SECRET)):
        error = await refused(runtime, {}, header)
        assert (error.error, error.status, error.basic_challenge) == ("invalid_client", 401, True)
    error = await refused(runtime, {"client_id": "robot"})
    assert (error.error, error.status) == ("invalid_client", 401)


async def test_nothing_secret_in_logs(
    runtime: IssuerRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = await token(runtime, {"scope": "items:read"}, basic("robot", SECRET))
    await refused(runtime, {}, basic("robot", SECRET + "x"))
    await refused(runtime, {"client_id": "robot", "client_secret": SECRET, "scope": "nope"})
    for value in (SECRET, body["access_token"]):
        assert value[5:40] not in caplog.text
