"""SECURITY-CASES §1: one token, one valid spelling: exact signature lengths for every alg.

RSA signatures are exactly k octets (k = the modulus length, RFC 8017 §8.1.2 /
§8.2.2). The crypto backend tolerates a signature stripped of its leading 0x00
octet; authbridge must not, or a third party can respell a genuine token (a new
cache key, a new token id in the logs) without any key.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from authbridge import InvalidToken, Principal
from authbridge.jose import VerificationKey, import_jwks, key_from_secret

from ._support import (
    assert_r401,
    b64,
    bearer,
    claims_at,
    make_app,
    make_token,
    outcomes,
    public_ec_jwk,
    public_rsa_jwk,
    sign_bytes,
)

RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
QUICK = settings(max_examples=150, deadline=None, database=None)


def _sig(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")


def _with_signature(token: str, signature: bytes) -> str:
    return f"{token.rsplit('.', 1)[0]}.{b64(signature)}"


def _respellings(signature: bytes) -> Iterator[tuple[str, bytes]]:
    """Every way to write the same number (or a near miss) in another length."""
    yield "leading_zero_removed", signature.lstrip(b"\x00")
    for extra in (1, 2, 8):
        yield f"zero_padded_{extra}", b"\x00" * extra + signature
        yield f"zero_extended_{extra}", signature + b"\x00" * extra
        yield f"truncated_{extra}", signature[:-extra]
        yield f"head_cut_{extra}", signature[extra:]
    yield "doubled", signature * 2
    yield "empty", b""


def _leading_zero_token(fake_issuer, clock, alg: str, kid: str) -> str:
    """A genuine token whose signature starts with 0x00 (about one in 128-256 does)."""
    header = {"alg": alg, "typ": "at+jwt", "kid": kid}
    for n in itertools.count():
        token = make_token(header, claims_at(fake_issuer, clock, jti=f"zero-{n}"), fake_issuer.key)
        if _sig(token)[0] == 0:
            return token
    raise AssertionError("unreachable")


@pytest.fixture
def any_rsa_alg(fake_issuer):
    """Publish the issuer's key a second time, under a kid without ``alg`` (all RSA algs)."""
    fake_issuer.add_jwk(public_rsa_jwk(fake_issuer.key, "rsa-any", use="sig"))
    return "rsa-any"


@pytest.mark.parametrize("alg", RSA_ALGS)
def test_rsa_signature_with_leading_zero_has_one_spelling(
    make_auth, fake_issuer, clock, any_rsa_alg, alg
) -> None:
    good = _leading_zero_token(fake_issuer, clock, alg, any_rsa_alg)
    signature = _sig(good)
    assert len(signature) == 256
    variants = dict(_respellings(signature))
    assert len(variants["leading_zero_removed"]) < 256
    results = outcomes(make_auth(), [good, *(_with_signature(good, v) for v in variants.values())])
    assert isinstance(results[0], Principal)
    for name, result in zip(variants, results[1:], strict=True):
        assert isinstance(result, InvalidToken), name
        # An empty third segment is not even a JWS; every other length is a bad signature.
        assert result.reason == ("malformed_token" if name == "empty" else "bad_signature"), name


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_stripped_leading_zero_refused_over_http(
    make_auth, fake_issuer, clock, any_rsa_alg, alg
) -> None:
    good = _leading_zero_token(fake_issuer, clock, alg, any_rsa_alg)
    stripped = _with_signature(good, _sig(good)[1:])
    padded = _with_signature(good, b"\x00" + _sig(good))
    with TestClient(make_app(make_auth())) as client:
        assert client.get("/items", headers=bearer(good)).status_code == 200
        for token in (stripped, padded):
            assert_r401(client.get("/items", headers=bearer(token)))


@pytest.mark.parametrize("bits", [2048, 2050, 2055])
def test_rsa_length_is_the_modulus_length_in_octets(bits) -> None:
    """k = ceil(bits / 8): a 2050-bit key signs in 257 octets, many of them starting 0x00."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    (verifier,) = import_jwks({"keys": [public_rsa_jwk(key, "k")]}).keys
    k = (bits + 7) // 8
    leading_zeros = 0
    for alg in RSA_ALGS:
        for n in range(8):
            data = f"h.{alg}-{n}".encode()
            signature = sign_bytes(alg, key, data)
            assert len(signature) == k
            assert verifier.verify(alg, data, signature)
            leading_zeros += signature[0] == 0
            for name, other in _respellings(signature):
                if other != signature:
                    assert not verifier.verify(alg, data, other), (alg, name)
    if bits == 2050:  # the top octet of the modulus is 2 or 3: about 1 in 3 starts 0x00
        assert leading_zeros > 0


def test_rsa_signature_plus_modulus_is_refused(fake_issuer) -> None:
    """s + n is the same residue: it must fail the s < n range check, in k octets too."""
    (verifier,) = import_jwks({"keys": [public_rsa_jwk(fake_issuer.key, "k")]}).keys
    modulus = fake_issuer.key.public_key().public_numbers().n
    tried = 0
    for n in range(400):
        data = f"h.{n}".encode()
        for alg in ("RS256", "PS256"):
            value = int.from_bytes(sign_bytes(alg, fake_issuer.key, data), "big") + modulus
            if value.bit_length() <= 2048:
                tried += 1
                assert not verifier.verify(alg, data, value.to_bytes(256, "big"))
        if tried >= 4:
            break
    assert tried >= 4


# -- every other family ------------------------------------------------------------------


def _eddsa_verifier(key) -> VerificationKey:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    crv = "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "Ed448"
    (verifier,) = import_jwks({"keys": [{"kty": "OKP", "crv": crv, "x": b64(raw)}]}).keys
    return verifier


def _families() -> list[tuple[str, VerificationKey, object, int]]:
    """(alg, verifier, signing key, exact length) for ECDSA, HMAC and EdDSA."""
    out: list[tuple[str, VerificationKey, object, int]] = []
    for alg, curve, size in (
        ("ES256", ec.SECP256R1(), 64),
        ("ES384", ec.SECP384R1(), 96),
        ("ES512", ec.SECP521R1(), 132),
    ):
        key = ec.generate_private_key(curve)
        (verifier,) = import_jwks({"keys": [public_ec_jwk(key, "e")]}).keys
        out.append((alg, verifier, key, size))
    secret = b"s" * 64
    for alg, size in (("HS256", 32), ("HS384", 48), ("HS512", 64)):
        out.append((alg, key_from_secret(secret, algorithms=[alg]), secret, size))
    ed = ed25519.Ed25519PrivateKey.generate()
    big = ed448.Ed448PrivateKey.generate()
    out += [
        ("EdDSA", _eddsa_verifier(ed), ed, 64),
        ("Ed25519", _eddsa_verifier(ed), ed, 64),
        ("EdDSA", _eddsa_verifier(big), big, 114),
        ("Ed448", _eddsa_verifier(big), big, 114),
    ]
    return out


FAMILIES = _families()


def _sign(alg: str, key, data: bytes) -> bytes:
    if alg in ("EdDSA", "Ed25519", "Ed448"):
        return key.sign(data)
    return sign_bytes(alg, key, data)


@pytest.mark.parametrize(
    ("alg", "verifier", "key", "size"), FAMILIES, ids=[f"{f[0]}-{f[3]}" for f in FAMILIES]
)
def test_exact_length_for_every_family(alg, verifier, key, size) -> None:
    for n in range(40):
        data = f"h.{alg}.{n}".encode()
        signature = _sign(alg, key, data)
        assert len(signature) == size
        assert verifier.verify(alg, data, signature)
        for name, other in _respellings(signature):
            if other != signature:
                assert not verifier.verify(alg, data, other), name


@pytest.mark.parametrize(
    ("alg", "verifier", "key", "size"), FAMILIES[3:6], ids=[f[0] for f in FAMILIES[3:6]]
)
def test_truncated_hmac_is_refused(alg, verifier, key, size) -> None:
    """A prefix of the right MAC (the classic "truncated HMAC" check) never verifies."""
    data = b"h.p"
    mac = _sign(alg, key, data)
    for cut in range(size):
        assert not verifier.verify(alg, data, mac[:cut])


def test_ed25519_s_plus_order_is_refused() -> None:
    """RFC 8032 §5.1.7: S must be below the group order, or S + L respells the signature."""
    key = ed25519.Ed25519PrivateKey.generate()
    verifier = _eddsa_verifier(key)
    data = b"h.p"
    signature = key.sign(data)
    s = int.from_bytes(signature[32:], "little")
    respelled = signature[:32] + (s + ED25519_ORDER).to_bytes(32, "little")
    assert verifier.verify("EdDSA", data, signature)
    assert not verifier.verify("EdDSA", data, respelled)


@given(data=st.data())
@QUICK
def test_any_other_length_never_verifies(data) -> None:
    alg, verifier, key, size = data.draw(st.sampled_from(FAMILIES))
    message = b"h.p"
    good = _sign(alg, key, message)
    # Keep the genuine octets and add or remove some anywhere: only the original passes.
    at = data.draw(st.integers(0, size - 1))
    inserted = data.draw(st.binary(min_size=1, max_size=8))
    removed = data.draw(st.integers(1, size - at))
    assert not verifier.verify(alg, message, good[:at] + inserted + good[at:])
    assert not verifier.verify(alg, message, good[:at] + good[at + removed :])
    other = data.draw(st.binary(max_size=2 * size + 2).filter(lambda b: len(b) != size))
    assert not verifier.verify(alg, message, other)
