"""Client authentication at the token endpoint (SECURITY-CASES §7 client authentication, §8).

Every method against a real SQLite store: ``client_secret_basic`` (form-urlencoded inside
Basic, RFC 6749 §2.3.1), ``client_secret_post``, ``private_key_jwt`` (RFC 7523, single-use
``jti`` through the store's replay cache, also under 20 concurrent uses) and public clients.
Every refusal is checked for its OAuth error, status and challenge, and for the absence of
the credential in the error and in the logs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote_plus

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import store_support
from authbridge.errors import StoreUnavailable
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest, _client_auth
from authbridge.issuer._client_auth import ASSERTION_TYPE, authenticate
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord
from authbridge.testing import sign_jwt

# The store fixtures this module uses (pytest finds them in its namespace).
postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store_url = store_support.store_url

ISSUER = "http://127.0.0.1:8000"
TOKEN_ENDPOINT = f"{ISSUER}/oauth/token"
ROBOT_SECRET = new_secret(CLIENT_SECRET_PREFIX)
POSTER_SECRET = new_secret(CLIENT_SECRET_PREFIX)
ODD_ID = "odd:id%+ x"
ODD_SECRET = "se:cr%et+1 two:%41"
OFF_SECRET = new_secret(CLIENT_SECRET_PREFIX)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    return {"kty": "RSA", "kid": kid, "n": b64(numbers.n.to_bytes(size, "big")), "e": "AQAB"}


def es256(
    key: ec.EllipticCurvePrivateKey, header: Mapping[str, Any], claims: Mapping[str, Any]
) -> str:
    def part(value: Mapping[str, Any]) -> str:
        return b64(json.dumps(value, separators=(",", ":")).encode())

    signing_input = f"{part(header)}.{part(claims)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def basic(client_id: str, secret: str, *, encode: bool = True) -> str:
    if encode:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")


def raw_basic(payload: bytes) -> str:
    return "Basic " + base64.b64encode(payload).decode("ascii")


async def started_runtime(
    url: str, clock: Any, rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[IssuerRuntime]:
    config = AppIssuer(
        ISSUER,
        store=url,
        scopes=["items:read", "items:write"],
        development=True,
    )
    issuer = IssuerRuntime(config, clock)
    await issuer.store.start()
    clients = issuer.store.clients
    cc = frozenset({"client_credentials"})
    for record in (
        ClientRecord(
            "robot", secret_hash=hash_secret(ROBOT_SECRET, "client_secret"), grant_types=cc
        ),
        ClientRecord(
            "poster",
            auth_method="client_secret_post",
            secret_hash=hash_secret(POSTER_SECRET, "client_secret"),
            grant_types=cc,
        ),
        ClientRecord(ODD_ID, secret_hash=hash_secret(ODD_SECRET, "client_secret"), grant_types=cc),
        ClientRecord(
            "off",
            secret_hash=hash_secret(OFF_SECRET, "client_secret"),
            disabled=True,
            grant_types=cc,
        ),
        ClientRecord("swagger", auth_method="none", grant_types=frozenset({"password"})),
        ClientRecord(
            "machine",
            auth_method="private_key_jwt",
            jwks={"keys": [ec_jwk(EC_KEY, "ec-1"), rsa_jwk(rsa_key, "rsa-1")]},
            grant_types=cc,
        ),
        ClientRecord(
            "machine-off",
            auth_method="private_key_jwt",
            jwks={"keys": [ec_jwk(EC_KEY, "ec-1")]},
            disabled=True,
        ),
    ):
        await clients.add(record)
    try:
        yield issuer
    finally:
        await issuer.aclose()


@pytest.fixture
async def runtime(
    sqlite_store_url: str, clock: Any, authbridge_signing_key: rsa.RSAPrivateKey
) -> AsyncIterator[IssuerRuntime]:
    async for started in started_runtime(sqlite_store_url, clock, authbridge_signing_key):
        yield started


@pytest.fixture
async def any_runtime(
    store_url: str, clock: Any, authbridge_signing_key: rsa.RSAPrivateKey
) -> AsyncIterator[IssuerRuntime]:
    """The runtime on each backend (SQLite, PostgreSQL)."""
    async for started in started_runtime(store_url, clock, authbridge_signing_key):
        yield started


async def auth(
    runtime: IssuerRuntime, form: Mapping[str, str] | None = None, authorization: str | None = None
) -> ClientRecord:
    return await authenticate(
        runtime, TokenRequest(form=dict(form or {}), authorization=authorization)
    )


async def refused(
    runtime: IssuerRuntime, form: Mapping[str, str] | None = None, authorization: str | None = None
) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await auth(runtime, form, authorization)
    return caught.value


def assert_invalid_client(error: OAuthError, reason: str, *, basic: bool) -> None:
    assert (error.error, error.status, error.reason) == ("invalid_client", 401, reason)
    assert error.basic_challenge is basic
    assert error.body() == {
        "error": "invalid_client",
        "error_description": "Client authentication failed",
    }


# --- client_secret_basic -------------------------------------------------------------------


async def test_basic_authenticates(runtime: IssuerRuntime) -> None:
    client = await auth(runtime, authorization=basic("robot", ROBOT_SECRET))
    assert client.client_id == "robot"
    # The form may name the same client again.
    client = await auth(runtime, {"client_id": "robot"}, basic("robot", ROBOT_SECRET))
    assert client.client_id == "robot"
    # The scheme name is case-insensitive (RFC 7235 §2.1), several spaces may follow it.
    header = basic("robot", ROBOT_SECRET).replace("Basic ", "bAsIc   ")
    assert (await auth(runtime, authorization=header)).client_id == "robot"


async def test_basic_client_id_contradicting_the_form(runtime: IssuerRuntime) -> None:
    error = await refused(runtime, {"client_id": "poster"}, basic("robot", ROBOT_SECRET))
    assert (error.error, error.status, error.reason) == (
        "invalid_request",
        400,
        "client_id_mismatch",
    )


async def test_basic_parts_are_form_urlencoded(runtime: IssuerRuntime) -> None:
    # ':' '%' '+' and a space in both the id and the secret: RFC 6749 §2.3.1, Appendix B.
    client = await auth(runtime, authorization=basic(ODD_ID, ODD_SECRET))
    assert client.client_id == ODD_ID
    # Percent-encoding every character is the same value.
    every = "".join(f"%{b:02X}" for b in ODD_SECRET.encode())
    header = raw_basic(f"{quote_plus(ODD_ID)}:{every}".encode())
    assert (await auth(runtime, authorization=header)).client_id == ODD_ID


async def test_basic_unencoded_values(runtime: IssuerRuntime) -> None:
    # A raw ':' in the id cannot be told from the separator: the first one splits (RFC
    # 7617 §2), so the id is "odd" — unknown.
    header = basic(ODD_ID, ODD_SECRET, encode=False)
    assert_invalid_client(
        await refused(runtime, authorization=header), "unknown_client", basic=True
    )
    # A raw '+' decodes to a space (form encoding): not the secret.
    header = raw_basic(f"{quote_plus(ODD_ID)}:{ODD_SECRET}".encode())
    assert_invalid_client(
        await refused(runtime, authorization=header), "wrong_client_secret", basic=True
    )
    # A raw ':' in the secret is kept: everything after the first ':' is the secret.
    colon_secret = new_secret(CLIENT_SECRET_PREFIX)[:20] + ":" + "x" * 10
    await runtime.store.clients.add(
        ClientRecord("colon", secret_hash=hash_secret(colon_secret, "client_secret"))
    )
    header = raw_basic(f"colon:{colon_secret}".encode())
    assert (await auth(runtime, authorization=header)).client_id == "colon"


def _non_canonical_padding() -> str:
    good = base64.b64encode(f"robot:{ROBOT_SECRET}".encode()).decode()
    return "Basic " + good.rstrip("=") + "===="


MALFORMED_BASIC = {
    "not base64": "Basic !!!!",
    "no credentials": "Basic",
    "empty credentials": "Basic ",
    "url-safe alphabet": "Basic " + base64.urlsafe_b64encode(b"robot:\xfb\xff?>").decode(),
    "missing padding": "Basic " + base64.b64encode(b"robot:ab").decode().rstrip("="),
    "extra padding": _non_canonical_padding(),
    "unused bits set": "Basic cm9ib3Q6YR==",  # "robot:a" spelled with a non-zero last digit
    "embedded newline": "Basic " + base64.encodebytes(b"robot:" + b"s" * 80).decode().strip(),
    "no colon": raw_basic(b"robot"),
    "empty id": raw_basic(b":" + ROBOT_SECRET.encode()),
    "invalid utf-8": raw_basic(b"robot:\xff\xfe"),
    "invalid utf-8 percent-encoded": raw_basic(b"robot:%ff%fe"),
    "non-ascii header": "Basic cm9ib3Q6é",
}


@pytest.mark.parametrize("header", MALFORMED_BASIC.values(), ids=MALFORMED_BASIC.keys())
async def test_malformed_basic(runtime: IssuerRuntime, header: str) -> None:
    assert_invalid_client(
        await refused(runtime, authorization=header), "malformed_basic_credentials", basic=True
    )


async def test_basic_bounds_and_scheme(runtime: IssuerRuntime) -> None:
    header = basic("robot", ROBOT_SECRET + "x" * 1024)
    assert_invalid_client(
        await refused(runtime, authorization=header), "oversized_basic_credentials", basic=True
    )
    header = "Bearer " + ROBOT_SECRET
    assert_invalid_client(
        await refused(runtime, authorization=header), "unsupported_authorization_scheme", basic=True
    )
    # A control character in the id (percent-encoded) never reaches the store.
    header = basic("rob\x00ot", ROBOT_SECRET)
    assert_invalid_client(
        await refused(runtime, authorization=header), "invalid_client_id", basic=True
    )


# --- client_secret_post, and secrets either way --------------------------------------------


async def test_post_authenticates(runtime: IssuerRuntime) -> None:
    client = await auth(runtime, {"client_id": "poster", "client_secret": POSTER_SECRET})
    assert client.client_id == "poster"
    wrong = POSTER_SECRET[:-1] + ("A" if POSTER_SECRET[-1] != "A" else "B")
    error = await refused(runtime, {"client_id": "poster", "client_secret": wrong})
    assert_invalid_client(error, "wrong_client_secret", basic=False)


async def test_secret_methods_are_interchangeable(runtime: IssuerRuntime) -> None:
    # A secret proves the same thing in the header or in the body (module docstring).
    assert (
        await auth(runtime, {"client_id": "robot", "client_secret": ROBOT_SECRET})
    ).client_id == "robot"
    assert (await auth(runtime, authorization=basic("poster", POSTER_SECRET))).client_id == "poster"


async def test_post_secret_without_client_id(runtime: IssuerRuntime) -> None:
    error = await refused(runtime, {"client_secret": POSTER_SECRET})
    assert (error.error, error.status, error.reason) == ("invalid_request", 400, "no_client_id")


async def test_no_client_at_all(runtime: IssuerRuntime) -> None:
    assert_invalid_client(await refused(runtime, {}), "no_client_authentication", basic=False)
    # An empty secret is no secret.
    error = await refused(runtime, {"client_secret": ""})
    assert_invalid_client(error, "no_client_authentication", basic=False)


@pytest.mark.parametrize(
    ("form", "with_basic"),
    [
        ({"client_id": "robot", "client_secret": ROBOT_SECRET}, True),
        ({"client_assertion_type": ASSERTION_TYPE, "client_assertion": "a.b.c"}, True),
        (
            {
                "client_id": "robot",
                "client_secret": ROBOT_SECRET,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": "a.b.c",
            },
            False,
        ),
        ({"client_id": "robot", "client_secret": ROBOT_SECRET, "client_assertion": "a.b.c"}, False),
    ],
    ids=["basic and post", "basic and assertion", "post and assertion", "post and half assertion"],
)
async def test_several_methods_at_once(
    runtime: IssuerRuntime, form: dict[str, str], with_basic: bool
) -> None:
    # RFC 6749 §2.3: the client MUST NOT use more than one method in a request.
    header = basic("robot", ROBOT_SECRET) if with_basic else None
    error = await refused(runtime, form, header)
    assert (error.error, error.status, error.reason) == (
        "invalid_request",
        400,
        "multiple_client_auth_methods",
    )


async def test_unknown_disabled_and_wrong_secret_look_alike(runtime: IssuerRuntime) -> None:
    cases = {
        "unknown_client": basic("nobody", ROBOT_SECRET),
        "client_disabled": basic("off", OFF_SECRET),
        "wrong_client_secret": basic("robot", POSTER_SECRET),
    }
    bodies = set()
    for reason, header in cases.items():
        error = await refused(runtime, authorization=header)
        assert_invalid_client(error, reason, basic=True)
        bodies.add(json.dumps(error.body()))
    for reason, form in {
        "unknown_client": {"client_id": "nobody", "client_secret": POSTER_SECRET},
        "client_disabled": {"client_id": "off", "client_secret": OFF_SECRET},
        "wrong_client_secret": {"client_id": "poster", "client_secret": ROBOT_SECRET},
    }.items():
        error = await refused(runtime, form)
        assert_invalid_client(error, reason, basic=False)
        bodies.add(json.dumps(error.body()))
    assert len(bodies) == 1


async def test_unknown_client_costs_a_secret_comparison(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[str] = []
    real = _client_auth.same_secret

    def counting(value: str, kind: str, stored: str) -> bool:
        compared.append(stored)
        return real(value, kind, stored)

    monkeypatch.setattr(_client_auth, "same_secret", counting)
    await refused(runtime, authorization=basic("nobody", ROBOT_SECRET))
    await refused(runtime, authorization=basic("off", OFF_SECRET))
    await refused(runtime, authorization=basic("machine", ROBOT_SECRET))
    await auth(runtime, authorization=basic("robot", ROBOT_SECRET))
    # One comparison each, against a hash of the same shape (a dummy one where none is stored).
    assert len(compared) == 4
    assert {len(stored) for stored in compared} == {64}


async def test_oversized_values_are_refused_before_any_lookup(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    real = runtime.client

    async def counting(client_id: str) -> ClientRecord | None:
        looked_up.append(client_id)
        return await real(client_id)

    monkeypatch.setattr(runtime, "client", counting)
    error = await refused(runtime, {"client_id": "robot", "client_secret": "s" * 513})
    assert_invalid_client(error, "invalid_client_secret", basic=False)
    error = await refused(runtime, {"client_id": "r" * 256, "client_secret": ROBOT_SECRET})
    assert_invalid_client(error, "invalid_client_id", basic=False)
    error = await refused(runtime, {"client_id": "robot\n", "client_secret": ROBOT_SECRET})
    assert_invalid_client(error, "invalid_client_id", basic=False)
    assert looked_up == []
    # 512 characters are compared (and wrong).
    error = await refused(runtime, {"client_id": "robot", "client_secret": "s" * 512})
    assert_invalid_client(error, "wrong_client_secret", basic=False)
    assert looked_up == ["robot"]


# --- public clients ------------------------------------------------------------------------


async def test_public_client_is_identified_by_id(runtime: IssuerRuntime) -> None:
    assert (await auth(runtime, {"client_id": "swagger"})).client_id == "swagger"
    # Swagger UI sends Basic with the id and an empty secret: identification only.
    assert (await auth(runtime, authorization=basic("swagger", ""))).client_id == "swagger"
    assert (await auth(runtime, {"client_id": "swagger", "client_secret": ""})).public


async def test_public_client_never_authenticates_with_a_secret(runtime: IssuerRuntime) -> None:
    error = await refused(runtime, authorization=basic("swagger", "anything"))
    assert_invalid_client(error, "public_client_with_secret", basic=True)
    error = await refused(runtime, {"client_id": "swagger", "client_secret": "anything"})
    assert_invalid_client(error, "public_client_with_secret", basic=False)
    assertion = es256(EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims_for("swagger", 0))
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    assert_invalid_client(await refused(runtime, form), "auth_method_not_registered", basic=False)


async def test_confidential_client_never_authenticates_without_credentials(
    runtime: IssuerRuntime,
) -> None:
    for client_id in ("robot", "poster", "machine"):
        error = await refused(runtime, {"client_id": client_id})
        assert_invalid_client(error, "client_authentication_required", basic=False)
    error = await refused(runtime, authorization=basic("robot", ""))
    assert_invalid_client(error, "client_authentication_required", basic=True)
    assert_invalid_client(
        await refused(runtime, {"client_id": "nobody"}), "unknown_client", basic=False
    )
    assert_invalid_client(
        await refused(runtime, {"client_id": "off"}), "client_disabled", basic=False
    )


async def test_builtin_client_first(runtime: IssuerRuntime) -> None:
    runtime.add_builtin_client(ClientRecord("robot", auth_method="none"))
    assert (await auth(runtime, {"client_id": "robot"})).public


async def test_store_down_is_503(runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(client_id: str) -> ClientRecord | None:
        raise StoreUnavailable("connection_refused", retry_after=2.0)

    monkeypatch.setattr(runtime.store.clients, "get", down)
    error = await refused(runtime, authorization=basic("robot", ROBOT_SECRET))
    assert (error.error, error.status, error.retry_after) == ("temporarily_unavailable", 503, 2.0)


# --- private_key_jwt -----------------------------------------------------------------------


def claims_for(client_id: str, now: float, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_ENDPOINT,
        "exp": int(now) + 120,
        "iat": int(now),
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def assertion_form(assertion: str, **extra: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **extra}


async def test_private_key_jwt_authenticates(
    runtime: IssuerRuntime, clock: Any, authbridge_signing_key: rsa.RSAPrivateKey
) -> None:
    now = clock()
    for aud in (TOKEN_ENDPOINT, ISSUER, [ISSUER, "https://elsewhere.example"]):
        assertion = es256(
            EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims_for("machine", now, aud=aud)
        )
        assert (await auth(runtime, assertion_form(assertion))).client_id == "machine"
    # RS256 with the client's RSA key, no kid, typ JWT, and client_id in the form.
    assertion = sign_jwt(
        {"alg": "RS256", "typ": "JWT"}, claims_for("machine", now), authbridge_signing_key
    )
    form = assertion_form(assertion, client_id="machine")
    assert (await auth(runtime, form)).client_id == "machine"
    # The dedicated type of draft-ietf-oauth-rfc7523bis.
    header = {"alg": "ES256", "typ": "client-authentication+jwt"}
    assertion = es256(EC_KEY, header, claims_for("machine", now))
    assert (await auth(runtime, assertion_form(assertion))).client_id == "machine"


def _bad_assertions(now: float, rsa_key: rsa.RSAPrivateKey) -> dict[str, tuple[str, str]]:
    """name -> (assertion, reason) for the client ``machine``."""
    ok = {"alg": "ES256", "kid": "ec-1"}

    def signed(**changes: Any) -> str:
        return es256(EC_KEY, ok, claims_for("machine", now, **changes))

    return {
        "wrong aud": (
            signed(aud="https://other.example/token"),
            "client_assertion_audience_mismatch",
        ),
        "revocation endpoint as aud": (
            signed(aud=f"{ISSUER}/oauth/revoke"),
            "client_assertion_audience_mismatch",
        ),
        "no aud": (signed(aud=None), "client_assertion_missing_claim"),
        "expired": (signed(exp=int(now) - 31, iat=int(now) - 100), "client_assertion_expired"),
        "exp too far ahead": (signed(exp=int(now) + 331), "client_assertion_lifetime_too_long"),
        "no exp": (signed(exp=None), "client_assertion_missing_claim"),
        "no jti": (signed(jti=None), "client_assertion_missing_claim"),
        "empty jti": (signed(jti=""), "client_assertion_invalid_jti"),
        "jti not a string": (signed(jti=12345), "client_assertion_invalid_claim_type"),
        "huge jti": (signed(jti="j" * 257), "client_assertion_invalid_jti"),
        "iss is not the client": (signed(iss="robot"), "client_assertion_issuer_mismatch"),
        "iss is the issuer": (signed(iss=ISSUER), "client_assertion_issuer_mismatch"),
        "no iss": (signed(iss=None), "client_assertion_missing_claim"),
        "nbf ahead": (signed(nbf=int(now) + 60), "client_assertion_not_yet_valid"),
        "iat ahead": (signed(iat=int(now) + 60), "client_assertion_issued_in_the_future"),
        "alg none": (
            sign_jwt({"alg": "none"}, claims_for("machine", now), None),
            "malformed_client_assertion",  # no signature: an empty segment
        ),
        "alg none with a signature": (
            sign_jwt({"alg": "none"}, claims_for("machine", now), None) + "c2ln",
            "client_assertion_algorithm_not_allowed",
        ),
        "HS256 over the public key": (
            sign_jwt(
                {"alg": "HS256", "kid": "ec-1"},
                claims_for("machine", now),
                json.dumps(ec_jwk(EC_KEY, "ec-1")).encode(),
            ),
            "client_assertion_algorithm_not_allowed",
        ),
        "key not registered": (
            es256(OTHER_EC_KEY, ok, claims_for("machine", now)),
            "client_assertion_bad_signature",
        ),
        "unknown kid": (
            es256(EC_KEY, {"alg": "ES256", "kid": "ec-9"}, claims_for("machine", now)),
            "client_assertion_bad_signature",
        ),
        "alg of another key": (
            sign_jwt({"alg": "RS256", "kid": "ec-1"}, claims_for("machine", now), rsa_key),
            "client_assertion_bad_signature",
        ),
        "an access token type": (
            es256(EC_KEY, {**ok, "typ": "at+jwt"}, claims_for("machine", now)),
            "client_assertion_wrong_typ",
        ),
        "crit header": (
            es256(EC_KEY, {**ok, "crit": ["exp"]}, claims_for("machine", now)),
            "client_assertion_unsupported_header:crit",
        ),
        "refresh typ claim": (signed(typ="refresh"), "client_assertion_wrong_token_type"),
        "tampered": (signed()[:-4] + "AAAA", "client_assertion_bad_signature"),
    }


async def test_private_key_jwt_refusals(
    runtime: IssuerRuntime, clock: Any, authbridge_signing_key: rsa.RSAPrivateKey
) -> None:
    for name, (assertion, reason) in _bad_assertions(clock(), authbridge_signing_key).items():
        with pytest.raises(OAuthError) as caught:
            await auth(runtime, assertion_form(assertion))
        assert (caught.value.error, caught.value.status, caught.value.reason) == (
            "invalid_client",
            401,
            reason,
        ), name
        assert not caught.value.basic_challenge


async def test_private_key_jwt_subject_and_client_id(runtime: IssuerRuntime, clock: Any) -> None:
    now = clock()
    header = {"alg": "ES256", "kid": "ec-1"}
    # sub is not the client (iss is).
    assertion = es256(EC_KEY, header, claims_for("machine", now, sub="robot"))
    error = await refused(runtime, assertion_form(assertion, client_id="machine"))
    assert_invalid_client(error, "client_assertion_sub_mismatch", basic=False)
    # iss is the client, sub another client: looked up by sub, then iss ≠ sub.
    error = await refused(runtime, assertion_form(assertion))
    assert_invalid_client(error, "auth_method_not_registered", basic=False)
    assertion = es256(EC_KEY, header, claims_for("machine", now, sub=None))
    error = await refused(runtime, assertion_form(assertion))
    assert_invalid_client(error, "client_assertion_without_sub", basic=False)
    # The form names another client than the assertion.
    assertion = es256(EC_KEY, header, claims_for("machine", now))
    error = await refused(runtime, assertion_form(assertion, client_id="robot"))
    assert_invalid_client(error, "client_assertion_sub_mismatch", basic=False)
    # Signed by the right key, for a disabled or a secret client.
    for client_id, reason in (
        ("machine-off", "client_disabled"),
        ("robot", "auth_method_not_registered"),
    ):
        assertion = es256(EC_KEY, header, claims_for(client_id, now))
        assert_invalid_client(
            await refused(runtime, assertion_form(assertion)), reason, basic=False
        )
    assertion = es256(EC_KEY, header, claims_for("nobody", now))
    assert_invalid_client(
        await refused(runtime, assertion_form(assertion)), "unknown_client", basic=False
    )


async def test_private_key_jwt_client_never_uses_a_secret(runtime: IssuerRuntime) -> None:
    error = await refused(runtime, {"client_id": "machine", "client_secret": ROBOT_SECRET})
    assert_invalid_client(error, "auth_method_not_registered", basic=False)


async def test_malformed_assertion_requests(runtime: IssuerRuntime, clock: Any) -> None:
    good = es256(EC_KEY, {"alg": "ES256"}, claims_for("machine", clock()))
    error = await refused(runtime, {"client_assertion": good})
    assert (error.error, error.status) == ("invalid_request", 400)
    error = await refused(runtime, {"client_assertion_type": ASSERTION_TYPE})
    assert (error.error, error.status) == ("invalid_request", 400)
    form = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}
    error = await refused(runtime, {**form, "client_assertion": good})
    assert_invalid_client(error, "unsupported_client_assertion_type", basic=False)
    for bad in ("not-a-jwt", "a.b.c", good + ".x.y", good + "=", "x" * 9000):
        error = await refused(runtime, assertion_form(bad))
        assert_invalid_client(error, "malformed_client_assertion", basic=False)
    payload = b64(json.dumps(["machine"]).encode())
    error = await refused(runtime, assertion_form(f"{b64(b'{}')}.{payload}.{b64(b'sig')}"))
    assert_invalid_client(error, "malformed_client_assertion", basic=False)


async def test_jti_is_single_use(any_runtime: IssuerRuntime, clock: Any) -> None:
    runtime = any_runtime
    assertion = es256(EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims_for("machine", clock()))
    assert (await auth(runtime, assertion_form(assertion))).client_id == "machine"
    error = await refused(runtime, assertion_form(assertion))
    assert_invalid_client(error, "client_assertion_replayed", basic=False)
    # Still refused just before it expires.
    clock.advance(140)
    error = await refused(runtime, assertion_form(assertion))
    assert_invalid_client(error, "client_assertion_replayed", basic=False)


async def test_jti_is_per_client(runtime: IssuerRuntime, clock: Any) -> None:
    await runtime.store.clients.add(
        ClientRecord("twin", auth_method="private_key_jwt", jwks={"keys": [ec_jwk(EC_KEY, "ec-1")]})
    )
    jti = secrets.token_urlsafe(16)
    for client_id in ("machine", "twin"):
        assertion = es256(EC_KEY, {"alg": "ES256"}, claims_for(client_id, clock(), jti=jti))
        assert (await auth(runtime, assertion_form(assertion))).client_id == client_id


async def test_a_refused_signature_uses_up_no_jti(runtime: IssuerRuntime, clock: Any) -> None:
    claims = claims_for("machine", clock())
    forged = es256(OTHER_EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims)
    await refused(runtime, assertion_form(forged))
    genuine = es256(EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims)
    assert (await auth(runtime, assertion_form(genuine))).client_id == "machine"


async def test_concurrent_uses_of_one_assertion(any_runtime: IssuerRuntime, clock: Any) -> None:
    runtime = any_runtime
    assertion = es256(EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims_for("machine", clock()))
    results = await asyncio.gather(
        *(auth(runtime, assertion_form(assertion)) for _ in range(20)), return_exceptions=True
    )
    successes = [r for r in results if isinstance(r, ClientRecord)]
    failures = [r for r in results if isinstance(r, OAuthError)]
    assert len(successes) == 1
    assert len(failures) == 19
    assert {f.reason for f in failures} == {"client_assertion_replayed"}


async def test_registered_keys_follow_the_store(runtime: IssuerRuntime, clock: Any) -> None:
    header = {"alg": "ES256", "kid": "ec-1"}
    assertion = es256(EC_KEY, header, claims_for("machine", clock()))
    assert (await auth(runtime, assertion_form(assertion))).client_id == "machine"
    client = await runtime.store.clients.get("machine")
    assert client is not None
    # The client rotates its key: the old one stops working at once, the new one works.
    await runtime.store.clients.update(
        replace(client, jwks={"keys": [ec_jwk(OTHER_EC_KEY, "ec-1")]})
    )
    assertion = es256(EC_KEY, header, claims_for("machine", clock()))
    error = await refused(runtime, assertion_form(assertion))
    assert_invalid_client(error, "client_assertion_bad_signature", basic=False)
    assertion = es256(OTHER_EC_KEY, header, claims_for("machine", clock()))
    assert (await auth(runtime, assertion_form(assertion))).client_id == "machine"


async def test_unusable_registered_jwks(runtime: IssuerRuntime, clock: Any) -> None:
    await runtime.store.clients.add(
        ClientRecord("broken", auth_method="private_key_jwt", jwks={"not": "a jwks"})
    )
    assertion = es256(EC_KEY, {"alg": "ES256"}, claims_for("broken", clock()))
    assert_invalid_client(
        await refused(runtime, assertion_form(assertion)), "client_jwks_unusable", basic=False
    )


# --- nothing secret in errors or logs --------------------------------------------------------


async def test_no_credential_in_errors_or_logs(
    runtime: IssuerRuntime, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assertion = es256(OTHER_EC_KEY, {"alg": "ES256", "kid": "ec-1"}, claims_for("machine", clock()))
    attempts: list[tuple[dict[str, str], str | None]] = [
        ({}, basic("robot", POSTER_SECRET)),
        ({}, basic("nobody", ROBOT_SECRET)),
        ({}, basic("swagger", ROBOT_SECRET)),
        ({}, "Bearer " + ROBOT_SECRET),
        ({}, "Basic " + ROBOT_SECRET),
        ({"client_id": "poster", "client_secret": ROBOT_SECRET}, None),
        ({"client_id": "off", "client_secret": OFF_SECRET}, None),
        ({"client_id": "robot", "client_secret": ROBOT_SECRET}, basic("robot", ROBOT_SECRET)),
        (assertion_form(assertion), None),
        (assertion_form(assertion + "x"), None),
    ]
    secrets_used = [ROBOT_SECRET, POSTER_SECRET, OFF_SECRET, assertion]
    for form, header in attempts:
        error = await refused(runtime, form, header)
        shown = f"{error} {error!r} {error.reason} {json.dumps(error.body())}"
        for secret in secrets_used:
            assert secret not in shown
            assert secret[5:30] not in shown
    for secret in secrets_used:
        assert secret[5:30] not in caplog.text
