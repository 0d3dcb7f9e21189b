"""ID-token verification at the login callback (OIDC Core §3.1.3.7, SECURITY-CASES §6).

Also holds the signing helpers the other login tests use (`Keys`, `sign`, `jwk_of`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from authbridge._http import HttpClientHolder
from authbridge.client._id_token import at_hash, id_token_policy, verify_id_token
from authbridge.errors import ConfigurationError, LoginError
from authbridge.jose import RemoteJWKS

ISSUER = "https://op.example.test"
CLIENT_ID = "app-client"
JWKS_URI = f"{ISSUER}/jwks"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int, length: int | None = None) -> str:
    return b64(value.to_bytes(length or (value.bit_length() + 7) // 8, "big"))


def jwk_of(key: PrivateKey | ed448.Ed448PrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of ``key``."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "kid": kid, "use": "sig", "n": _int_b64(numbers.n), "e": "AQAB"}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        point = key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "kid": kid,
            "x": _int_b64(point.x, 32),
            "y": _int_b64(point.y, 32),
        }
    raw = key.public_key().public_bytes_raw()
    crv = "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "Ed448"
    return {"kty": "OKP", "crv": crv, "kid": kid, "x": b64(raw)}


def sign(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    key: PrivateKey | ed448.Ed448PrivateKey | bytes | None,
) -> str:
    """A compact JWS with exactly this header, signed with ``key`` (bytes: HS256; None: empty)."""
    signing_input = (
        f"{b64(json.dumps(dict(header)).encode())}.{b64(json.dumps(dict(claims)).encode())}"
    )
    data = signing_input.encode("ascii")
    if key is None:
        signature = b""
    elif isinstance(key, bytes):
        signature = hmac.digest(key, data, "sha256")
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(data)
    return f"{signing_input}.{b64(signature)}"


class Keys:
    """An OP's signing keys (RSA, EC P-256, Ed25519, Ed448) and its JWKS."""

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed448_key = ed448.Ed448PrivateKey.generate()
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def __init__(self) -> None:
        self.by_alg: dict[str, tuple[str, Any]] = {
            "RS256": ("rsa-1", self.rsa_key),
            "ES256": ("ec-1", self.ec_key),
            "EdDSA": ("ed-1", self.ed_key),
        }

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                jwk_of(self.rsa_key, "rsa-1"),
                jwk_of(self.ec_key, "ec-1"),
                jwk_of(self.ed_key, "ed-1"),
                jwk_of(self.ed448_key, "ed448-1"),
            ]
        }

    def id_token(
        self,
        claims: Mapping[str, Any],
        *,
        alg: str = "RS256",
        kid: str | None = None,
        header: Mapping[str, Any] | None = None,
        key: Any = None,
    ) -> str:
        default_kid, default_key = self.by_alg.get(alg, ("rsa-1", self.rsa_key))
        head = {"alg": alg, "kid": kid or default_kid, "typ": "JWT"}
        if header is not None:
            head = dict(header)
        return sign(head, claims, key if key is not None else default_key)


def id_claims(now: float | None = None, **overrides: Any) -> dict[str, Any]:
    """Valid ID-token claims for CLIENT_ID at ISSUER; ``None`` values remove a claim."""
    moment = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT_ID,
        "exp": int(moment) + 300,
        "iat": int(moment),
        "nonce": "the-nonce",
        "email": "alice@example.test",
        "email_verified": True,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def jwks(keys: Keys) -> RemoteJWKS:
    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URI
        return httpx.Response(200, json=keys.jwks())

    holder = HttpClientHolder(httpx.MockTransport(handler))
    return RemoteJWKS(JWKS_URI, client=holder.session, label="op")


async def verify(jwks: RemoteJWKS, token: str, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "keys": jwks,
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "nonce": "the-nonce",
        "algorithms": ("RS256", "ES256", "EdDSA"),
        "leeway": 30.0,
        "now": time.time(),
    }
    arguments.update(overrides)
    return await verify_id_token(token, **arguments)


async def refused(jwks: RemoteJWKS, token: str, **overrides: Any) -> str:
    with pytest.raises(LoginError) as caught:
        await verify(jwks, token, **overrides)
    assert caught.value.code == "login_failed"
    return caught.value.reason


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_a_valid_id_token_is_accepted_with_each_asymmetric_algorithm(
    keys: Keys, jwks: RemoteJWKS, alg: str
) -> None:
    claims = await verify(jwks, keys.id_token(id_claims(), alg=alg))
    assert claims["sub"] == "user-1"
    assert claims["email"] == "alice@example.test"


async def test_an_alias_spelling_of_the_issuer_is_accepted_when_configured(
    keys: Keys, jwks: RemoteJWKS
) -> None:
    token = keys.id_token(id_claims(iss="op.example.test"))
    assert await refused(jwks, token) == "id_token_invalid:issuer_mismatch"
    claims = await verify(jwks, token, issuer_aliases=("op.example.test",))
    assert claims["iss"] == "op.example.test"


async def test_several_audiences_need_azp_naming_the_client(keys: Keys, jwks: RemoteJWKS) -> None:
    both = [CLIENT_ID, "other-client"]
    assert (
        await refused(jwks, keys.id_token(id_claims(aud=both)))
        == "id_token_invalid:authorized_party_mismatch"
    )
    assert (
        await refused(jwks, keys.id_token(id_claims(aud=both, azp="other-client")))
        == "id_token_invalid:authorized_party_mismatch"
    )
    claims = await verify(jwks, keys.id_token(id_claims(aud=both, azp=CLIENT_ID)))
    assert claims["azp"] == CLIENT_ID


async def test_an_azp_naming_another_client_is_refused_even_with_one_audience(
    keys: Keys, jwks: RemoteJWKS
) -> None:
    token = keys.id_token(id_claims(azp="other-client"))
    assert await refused(jwks, token) == "id_token_invalid:authorized_party_mismatch"


async def test_no_nonce_expected_accepts_a_token_without_one(keys: Keys, jwks: RemoteJWKS) -> None:
    claims = await verify(jwks, keys.id_token(id_claims(nonce=None)), nonce=None)
    assert "nonce" not in claims


# -- refused: header and signature ------------------------------------------------------------


async def test_alg_none_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    # An unsecured JWS (empty signature) does not even parse.
    token = sign({"alg": "none", "typ": "JWT"}, id_claims(), None)
    assert await refused(jwks, token) == "id_token_invalid:malformed_token"
    # Spelled otherwise, with a signature segment, or a kid of a real key: still refused.
    for alg in ("None", "NONE", "nOnE"):
        token = sign({"alg": alg, "kid": "rsa-1"}, id_claims(), b"x" * 32)
        assert await refused(jwks, token) == "id_token_invalid:algorithm_not_allowed"
    assert jwks.fetch_count == 0  # refused before any key is looked up


async def test_hmac_signed_with_the_public_key_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    # Algorithm confusion: HS256 keyed with the RSA public key's bytes.
    public = json.dumps(jwk_of(keys.rsa_key, "rsa-1")).encode()
    token = sign({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, id_claims(), public)
    assert await refused(jwks, token) == "id_token_invalid:algorithm_not_allowed"


async def test_an_unexpected_or_unknown_algorithm_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    es = keys.id_token(id_claims(), alg="ES256")
    assert (
        await refused(jwks, es, algorithms=("RS256",)) == "id_token_invalid:algorithm_not_allowed"
    )
    weird = sign({"alg": "RS1024", "kid": "rsa-1"}, id_claims(), keys.rsa_key)
    assert await refused(jwks, weird) == "id_token_invalid:algorithm_not_allowed"
    missing = sign({"kid": "rsa-1"}, id_claims(), keys.rsa_key)
    assert await refused(jwks, missing) == "id_token_invalid:algorithm_not_allowed"


async def test_a_bad_signature_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    # Signed by a key the OP does not publish, under the OP key's kid.
    forged = keys.id_token(id_claims(), key=keys.other_rsa)
    assert await refused(jwks, forged) == "id_token_invalid:bad_signature"
    # A genuine token whose claims were changed afterwards.
    genuine = keys.id_token(id_claims())
    head, _, signature = genuine.split(".")
    changed = b64(json.dumps(id_claims(sub="admin")).encode())
    assert await refused(jwks, f"{head}.{changed}.{signature}") == "id_token_invalid:bad_signature"


async def test_an_rsa_kid_with_an_ec_alg_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(), alg="ES256", kid="rsa-1")
    assert await refused(jwks, token) == "id_token_invalid:unknown_key"


async def test_an_unknown_kid_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(), kid="not-published")
    assert await refused(jwks, token) == "id_token_invalid:unknown_key"


async def test_an_oversized_token_is_refused_before_decoding(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(padding="x" * 20000))
    assert await refused(jwks, token) == "id_token_invalid:token_too_large"
    assert jwks.fetch_count == 0
    small = keys.id_token(id_claims())
    assert await refused(jwks, small, max_bytes=len(small) - 1) == (
        "id_token_invalid:token_too_large"
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed_token"),
        ("a.b", "malformed_token"),
        ("a.b.c.d.e", "jwe_not_accepted"),
        ("eyJhbGciOiJSUzI1NiJ9.e30.", "malformed_token"),
    ],
)
async def test_malformed_tokens_are_refused(jwks: RemoteJWKS, token: str, reason: str) -> None:
    assert await refused(jwks, token) == f"id_token_invalid:{reason}"


async def test_an_access_token_type_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(), header={"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"})
    assert await refused(jwks, token) == "id_token_invalid:wrong_token_type"


# -- refused: claims --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.test"}, "issuer_mismatch"),
        ({"iss": ISSUER + "/"}, "issuer_mismatch"),
        ({"aud": "other-client"}, "audience_mismatch"),
        ({"aud": ["other-client", "third"]}, "audience_mismatch"),
        ({"aud": None}, "missing_claim"),
        ({"sub": None}, "missing_claim"),
        ({"sub": ""}, "invalid_claim_type"),
        ({"sub": 42}, "invalid_claim_type"),
        ({"iat": None}, "missing_claim"),
        ({"exp": None}, "missing_claim"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": int(time.time()) + 3600}, "issued_in_the_future"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"exp": "tomorrow"}, "invalid_claim_type"),
    ],
)
async def test_claims_outside_the_rules_are_refused(
    keys: Keys, jwks: RemoteJWKS, overrides: dict[str, Any], reason: str
) -> None:
    token = keys.id_token(id_claims(**overrides))
    assert await refused(jwks, token) == f"id_token_invalid:{reason}"


async def test_the_leeway_applies_to_exp(keys: Keys, jwks: RemoteJWKS) -> None:
    now = time.time()
    token = keys.id_token(id_claims(exp=int(now) - 10))
    assert (await verify(jwks, token, now=now))["sub"] == "user-1"
    assert await refused(jwks, token, now=now, leeway=0.0) == "id_token_invalid:expired"


# -- nonce ------------------------------------------------------------------------------------


async def test_a_mismatched_nonce_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(nonce="another-nonce"))
    assert await refused(jwks, token) == "nonce_mismatch"


async def test_a_missing_nonce_is_refused_when_the_transaction_has_one(
    keys: Keys, jwks: RemoteJWKS
) -> None:
    assert await refused(jwks, keys.id_token(id_claims(nonce=None))) == "nonce_mismatch"
    assert (
        await refused(jwks, keys.id_token(id_claims(nonce=123)))
        == "id_token_invalid:invalid_claim_type"
    )


async def test_a_replayed_id_token_fails_the_next_transactions_nonce(
    keys: Keys, jwks: RemoteJWKS
) -> None:
    # A genuine, unexpired token of an earlier login presented for a new transaction.
    earlier = keys.id_token(id_claims(nonce="earlier-transaction"))
    assert (await verify(jwks, earlier, nonce="earlier-transaction"))["sub"] == "user-1"
    assert await refused(jwks, earlier, nonce="this-transaction") == "nonce_mismatch"


# -- at_hash ----------------------------------------------------------------------------------


def test_at_hash_is_the_left_half_of_the_algs_hash() -> None:
    # OIDC Core §3.1.3.6: SHA-256 for RS256/ES256/PS256, SHA-384 for *384, SHA-512 for *512.
    for alg, name in (("RS256", "sha256"), ("ES384", "sha384"), ("PS512", "sha512")):
        digest = hashlib.new(name, b"access-token").digest()
        assert at_hash("access-token", alg) == b64(digest[: len(digest) // 2])
    assert at_hash("access-token", "EdDSA") == b64(hashlib.sha512(b"access-token").digest()[:32])
    assert at_hash("access-token", "Ed448") == b64(
        hashlib.shake_256(b"access-token").digest(114)[:57]
    )
    assert at_hash("access-token", "HS256") is None


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_a_matching_at_hash_is_accepted(keys: Keys, jwks: RemoteJWKS, alg: str) -> None:
    token = keys.id_token(id_claims(at_hash=at_hash("the-access-token", alg)), alg=alg)
    assert (await verify(jwks, token, access_token="the-access-token"))["sub"] == "user-1"


async def test_a_wrong_at_hash_is_refused(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(at_hash=at_hash("another-access-token", "RS256")))
    assert await refused(jwks, token, access_token="the-access-token") == "at_hash_mismatch"
    # The hash of another algorithm (SHA-512 halves) does not pass either.
    token = keys.id_token(id_claims(at_hash=at_hash("the-access-token", "RS512")))
    assert await refused(jwks, token, access_token="the-access-token") == "at_hash_mismatch"
    token = keys.id_token(id_claims(at_hash=12))
    assert await refused(jwks, token, access_token="the-access-token") == "at_hash_mismatch"


async def test_ed448_at_hash_uses_shake256(keys: Keys) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=keys.jwks())

    remote = RemoteJWKS(JWKS_URI, client=HttpClientHolder(httpx.MockTransport(handler)).session)
    good = at_hash("tok", "Ed448")
    token = keys.id_token(id_claims(at_hash=good), alg="EdDSA", kid="ed448-1", key=keys.ed448_key)
    assert (await verify(remote, token, access_token="tok"))["sub"] == "user-1"
    sha512 = at_hash("tok", "EdDSA")
    token = keys.id_token(id_claims(at_hash=sha512), alg="EdDSA", kid="ed448-1", key=keys.ed448_key)
    assert await refused(remote, token, access_token="tok") == "at_hash_mismatch"


# -- configuration and secrecy ----------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [("HS256",), ("RS256", "HS256"), ("none",), ()])
def test_hmac_none_or_no_algorithms_are_a_configuration_error(
    algorithms: tuple[str, ...],
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        id_token_policy(issuer=ISSUER, client_id=CLIENT_ID, algorithms=algorithms)
    assert caught.value.reason == "id_token_algorithms_must_be_asymmetric"


async def test_refusals_never_carry_the_token_or_claim_values(keys: Keys, jwks: RemoteJWKS) -> None:
    token = keys.id_token(id_claims(nonce="secret-nonce-value", sub="subject-value"))
    with pytest.raises(LoginError) as caught:
        await verify(jwks, token, nonce="expected-nonce-value")
    text = str(caught.value) + repr(caught.value.detail)
    for secret in (token, "secret-nonce-value", "expected-nonce-value", "subject-value"):
        assert secret not in text
