"""SECURITY-CASES §4: keys, JWKS and discovery under attack and failure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import secrets
import time
import tracemalloc

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from authbridge import AuthBridge, InvalidToken, Principal, ProviderUnavailable
from authbridge.jose.keys import VerificationKey
from authbridge.testing import FakeIssuer

from ._support import (
    T0,
    Upstream,
    assert_r401,
    b64,
    b64_int,
    bearer,
    claims_at,
    make_app,
    make_token,
    public_ec_jwk,
    public_rsa_jwk,
    token_at,
)

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/jwks"


@contextlib.asynccontextmanager
async def opened(auth: AuthBridge, *, warm: bool = True):
    await auth.resource_server.start(warm_up=warm)
    try:
        yield auth
    finally:
        await auth.resource_server.aclose()


async def attempt(auth: AuthBridge, token: str) -> Principal | Exception:
    try:
        return await auth.verify(token)
    except (InvalidToken, ProviderUnavailable) as exc:
        return exc


def reasons(results) -> list[str]:
    return [getattr(r, "reason", "ok") for r in results]


def run(coro):
    return asyncio.run(coro)


def _random_kid_token(fake_issuer, clock, key) -> str:
    return token_at(fake_issuer, clock, header={"kid": secrets.token_urlsafe(8)}, key=key)


# -- unknown-kid storms ------------------------------------------------------------------------


def test_storm_before_first_load_costs_one_fetch(
    make_auth, fake_issuer, clock, upstream, attacker_key
):
    in_flight = 0
    peak = 0

    async def slow_jwks(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1

    upstream.on(JWKS, slow_jwks)
    bad = [_random_kid_token(fake_issuer, clock, attacker_key) for _ in range(200)]
    good = [token_at(fake_issuer, clock) for _ in range(10)]

    async def scenario():
        async with opened(make_auth(), warm=False) as auth:
            return await asyncio.gather(*(attempt(auth, t) for t in bad + good))

    results = run(scenario())
    assert reasons(results[:200]) == ["unknown_key"] * 200
    assert all(isinstance(r, Principal) for r in results[200:])
    assert upstream.count(JWKS) == 1
    assert upstream.count(DISCOVERY) == 1
    assert peak == 1


def test_storm_after_load_one_fetch_per_cooldown(
    make_auth, fake_issuer, clock, upstream, attacker_key
):
    async def storm(auth):
        bad = [_random_kid_token(fake_issuer, clock, attacker_key) for _ in range(200)]
        good = [token_at(fake_issuer, clock) for _ in range(20)]
        mixed = bad[:100] + good + bad[100:]
        results = await asyncio.gather(*(attempt(auth, t) for t in mixed))
        # Good cached keys keep working during the storm.
        assert sum(isinstance(r, Principal) for r in results) == 20
        assert reasons(results).count("unknown_key") == 200

    async def scenario():
        async with opened(make_auth()) as auth:
            assert upstream.count(JWKS) == 1
            await storm(auth)
            await storm(auth)
            assert upstream.count(JWKS) == 1  # within the cooldown of the start-up fetch
            clock.advance(31)
            await storm(auth)
            await storm(auth)
            assert upstream.count(JWKS) == 2
            clock.advance(10)
            await storm(auth)
            assert upstream.count(JWKS) == 2
            clock.advance(25)
            await storm(auth)
            assert upstream.count(JWKS) == 3

    run(scenario())


def test_storm_against_a_dead_jwks_endpoint(make_auth, fake_issuer, clock, upstream, attacker_key):
    def down(request):
        raise httpx.ConnectError("refused")

    async def scenario():
        async with opened(make_auth()) as auth:
            upstream.on(JWKS, down)
            for _ in range(3):
                clock.advance(31)
                bad = [_random_kid_token(fake_issuer, clock, attacker_key) for _ in range(100)]
                good = token_at(fake_issuer, clock)
                results = await asyncio.gather(*(attempt(auth, t) for t in [*bad, good]))
                # A kid we cannot look up while the JWKS endpoint fails may be a new
                # key: 503 (provider unavailable), never "invalid token".
                assert all(isinstance(r, ProviderUnavailable) for r in results[:-1])
                assert isinstance(results[-1], Principal)  # cached keys still serve
                late = await attempt(auth, _random_kid_token(fake_issuer, clock, attacker_key))
                assert isinstance(late, ProviderUnavailable)
                assert late.reason == "jwks_recently_failed"
            assert upstream.count(JWKS) == 1 + 3

    run(scenario())


# -- rotation ------------------------------------------------------------------------------


def test_rotation_picked_up_after_cooldown_and_removed_key_stops(
    make_auth, fake_issuer, clock, upstream
) -> None:
    async def scenario():
        async with opened(make_auth()) as auth:
            old = token_at(fake_issuer, clock)
            assert isinstance(await attempt(auth, old), Principal)  # now cached
            fake_issuer.rotate_key()  # the old key is no longer published
            new = token_at(fake_issuer, clock)
            # Within the cooldown of the last fetch a new kid is not fetched for.
            assert (await attempt(auth, new)).reason == "unknown_key"
            assert isinstance(await attempt(auth, old), Principal)
            assert upstream.count(JWKS) == 1

            clock.advance(31)
            assert isinstance(await attempt(auth, new), Principal)  # first use: refetch
            assert upstream.count(JWKS) == 2
            # The removed key stops working at once, cached verification or not.
            assert (await attempt(auth, old)).reason == "unknown_key"
            assert (await attempt(auth, token_at(fake_issuer, clock, key=None))).subject == "alice"
            clock.advance(31)
            assert (await attempt(auth, old)).reason == "unknown_key"
            assert upstream.count(JWKS) == 3  # the old kid may be refetched once per cooldown

    run(scenario())


def test_rotation_keeping_the_old_key(make_auth, fake_issuer, clock, upstream) -> None:
    async def scenario():
        async with opened(make_auth()) as auth:
            old = token_at(fake_issuer, clock)
            fake_issuer.rotate_key(keep_old=True)
            clock.advance(31)
            new = token_at(fake_issuer, clock)
            assert isinstance(await attempt(auth, new), Principal)
            assert isinstance(await attempt(auth, old), Principal)

    run(scenario())


def test_expired_key_set_is_refetched(make_auth, fake_issuer, clock, upstream) -> None:
    async def scenario():
        async with opened(make_auth()) as auth:
            fake_issuer.rotate_key()
            clock.advance(599)
            old_kid_gone = token_at(fake_issuer, clock)
            clock.advance(2)  # past the default max age (600 s)
            assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            assert upstream.count(JWKS) == 2
            assert isinstance(await attempt(auth, old_kid_gone), Principal)

    run(scenario())


@pytest.mark.parametrize(
    ("cache_control", "refetch_after"),
    [
        ("max-age=120", 120),
        ("public, max-age=120, must-revalidate", 120),
        ("max-age=1", 60),  # clamped up to the minimum age
        ("no-store", 60),
        ("no-cache", 60),
        ("max-age=999999999", 3600),  # clamped down to the maximum age
        ("max-age=-5", 600),  # invalid: the default applies
        ("max-age=abc", 600),
        ("max-age=1e3", 600),
        (None, 600),
    ],
)
def test_cache_control_bounds(
    make_auth, fake_issuer, clock, upstream, cache_control, refetch_after
):
    def jwks(request):
        headers = {"cache-control": cache_control} if cache_control else {}
        return httpx.Response(200, json=fake_issuer.jwks(), headers=headers)

    upstream.on(JWKS, jwks)

    async def scenario():
        async with opened(make_auth()) as auth:
            clock.advance(refetch_after - 1)
            assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            assert upstream.count(JWKS) == 1
            clock.advance(2)
            assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            assert upstream.count(JWKS) == 2

    run(scenario())


@pytest.mark.parametrize(
    "cache_control",
    [
        "max-age=" + "9" * 5000,
        "max-age=\u00b2",
        "max-age=\u0661\u0662\u0660",
        'max-age="' + "9" * 5000 + '"',
    ],
    ids=["5000_digits", "superscript_two", "arabic_indic_digits", "quoted_5000_digits"],
)
def test_odd_cache_control_from_jwks_server(make_auth, fake_issuer, clock, upstream, cache_control):
    """A Cache-Control value the cache cannot use must not crash verification."""

    def jwks(request):
        body = json.dumps(fake_issuer.jwks()).encode()
        return httpx.Response(
            200, content=body, headers=[(b"cache-control", cache_control.encode("utf-8"))]
        )

    upstream.on(JWKS, jwks)

    async def scenario():
        async with opened(make_auth(), warm=False) as auth:
            try:
                return await attempt(auth, token_at(fake_issuer, clock))
            except Exception as exc:  # anything else would be a 500
                pytest.fail(f"verification crashed: {type(exc).__name__}: {exc}")

    assert isinstance(run(scenario()), Principal)


def test_odd_cache_control_does_not_break_startup_or_requests(
    make_auth, fake_issuer, clock, upstream
):
    def jwks(request):
        return httpx.Response(
            200, json=fake_issuer.jwks(), headers={"cache-control": "max-age=" + "9" * 5000}
        )

    upstream.on(JWKS, jwks)
    with TestClient(make_app(make_auth()), raise_server_exceptions=False) as client:
        response = client.get("/items", headers=bearer(token_at(fake_issuer, clock)))
        assert response.status_code == 200, response.text


# -- kid-less tokens, duplicate kids ---------------------------------------------------------


def test_no_kid_with_a_single_key(make_auth, fake_issuer, clock, upstream, attacker_key) -> None:
    async def scenario():
        async with opened(make_auth()) as auth:
            good = make_token(
                {"alg": "RS256", "typ": "at+jwt"}, claims_at(fake_issuer, clock), fake_issuer.key
            )
            forged = make_token(
                {"alg": "RS256", "typ": "at+jwt"}, claims_at(fake_issuer, clock), attacker_key
            )
            assert isinstance(await attempt(auth, good), Principal)
            clock.advance(60)
            assert (await attempt(auth, forged)).reason == "bad_signature"
            # No kid, nothing to look for: a forged kid-less token never triggers a fetch.
            assert upstream.count(JWKS) == 1

    run(scenario())


def test_no_kid_with_several_keys(make_auth, fake_issuer, clock, upstream, second_key, ec_key):
    fake_issuer.add_jwk(public_rsa_jwk(second_key, "second", alg="RS256"))
    fake_issuer.add_jwk(public_ec_jwk(ec_key, "ec", alg="ES256"))

    async def scenario():
        async with opened(make_auth()) as auth:
            claims = claims_at(fake_issuer, clock)
            for key, alg in ((fake_issuer.key, "RS256"), (second_key, "RS256"), (ec_key, "ES256")):
                token = make_token({"alg": alg, "typ": "at+jwt"}, claims, key)
                assert isinstance(await attempt(auth, token), Principal), alg

    run(scenario())


def test_no_kid_against_a_big_key_set_is_bounded(
    make_auth, fake_issuer, clock, upstream, monkeypatch
):
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(12)]
    upstream.on(
        JWKS,
        lambda request: httpx.Response(
            200,
            json={"keys": [public_ec_jwk(k, f"ec-{i}", alg="ES256") for i, k in enumerate(keys)]},
        ),
    )
    calls = 0
    original = VerificationKey.verify

    def counting(self, alg, signing_input, signature):
        nonlocal calls
        calls += 1
        return original(self, alg, signing_input, signature)

    monkeypatch.setattr(VerificationKey, "verify", counting)
    header = {"alg": "ES256", "typ": "at+jwt"}
    first = make_token(header, claims_at(fake_issuer, clock), keys[0])
    last = make_token(header, claims_at(fake_issuer, clock), keys[-1])

    async def scenario():
        async with opened(make_auth()) as auth:
            assert isinstance(await attempt(auth, first), Principal)
            result = await attempt(auth, last)
            assert isinstance(result, InvalidToken)  # beyond the per-token verification cap
            return result

    run(scenario())
    assert calls <= 1 + 4


def test_duplicate_kids(make_auth, fake_issuer, clock, upstream, second_key, attacker_key):
    twin = public_rsa_jwk(second_key, fake_issuer.kid, alg="RS256", use="sig")
    upstream.on(
        JWKS,
        lambda request: httpx.Response(200, json={"keys": [twin, *fake_issuer.jwks()["keys"]]}),
    )

    async def scenario():
        async with opened(make_auth()) as auth:
            by_main = token_at(fake_issuer, clock)
            by_twin = token_at(fake_issuer, clock, key=second_key)
            forged = token_at(fake_issuer, clock, key=attacker_key)
            results = [await attempt(auth, t) for t in (by_main, by_twin, forged)]
            assert reasons(results) == ["ok", "ok", "bad_signature"]

    run(scenario())


# -- odd keys in the set -------------------------------------------------------------------


@pytest.fixture(scope="module")
def weak_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def p384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _off_curve(jwk: dict) -> dict:
    y = int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big")
    return {**jwk, "kid": "off", "y": b64_int((y + 1) % 2**256, 32)}


def _odd_keys(weak_rsa_key, second_key, ec_key, p384_key) -> dict[str, object]:
    p256 = public_ec_jwk(ec_key, "p256")
    n = b64_int(second_key.public_key().public_numbers().n)
    return {
        "rsa_1024": public_rsa_jwk(weak_rsa_key, "weak", alg="RS256"),
        "rsa_1024_no_alg": public_rsa_jwk(weak_rsa_key, "weak2"),
        "rsa_e_1": {"kty": "RSA", "kid": "e1", "n": n, "e": b64_int(1)},
        "rsa_e_even": {"kty": "RSA", "kid": "e2", "n": n, "e": b64_int(65536)},
        "rsa_missing_e": {"kty": "RSA", "kid": "noe", "n": n},
        "rsa_bad_base64": {"kty": "RSA", "kid": "b64", "n": "!!!not-base64!!!", "e": "AQAB"},
        "rsa_n_int": {"kty": "RSA", "kid": "nint", "n": 12345, "e": 65537},
        "rsa_use_enc": public_rsa_jwk(second_key, "enc", use="enc"),
        "rsa_key_ops_encrypt": public_rsa_jwk(second_key, "ops", key_ops=["encrypt"]),
        "rsa_key_ops_string": public_rsa_jwk(second_key, "ops2", key_ops="verify"),
        "rsa_alg_es256": public_rsa_jwk(second_key, "ralg", alg="ES256"),
        "rsa_alg_hs256": public_rsa_jwk(second_key, "rhs", alg="HS256"),
        "rsa_alg_none": public_rsa_jwk(second_key, "rnone", alg="none"),
        "rsa_kid_int": {**public_rsa_jwk(second_key, None), "kid": 7},
        "ec_off_curve": _off_curve(p256),
        "ec_zero_point": {**p256, "kid": "zero", "x": b64(bytes(32)), "y": b64(bytes(32))},
        "ec_p256_alg_es384": {**p256, "kid": "es384", "alg": "ES384"},
        "ec_p384_alg_es256": public_ec_jwk(p384_key, "p384", alg="ES256"),
        "ec_unknown_curve": {**p256, "kid": "k1", "crv": "secp256k1"},
        "ec_missing_y": {**{k: v for k, v in p256.items() if k != "y"}, "kid": "noy"},
        "oct": {"kty": "oct", "kid": "hmac", "k": b64(b"s" * 32), "alg": "HS256"},
        "okp_x25519": {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64(bytes(range(32)))},
        "okp_bad_length": {"kty": "OKP", "kid": "edbad", "crv": "Ed25519", "x": b64(b"\x01" * 5)},
        "unknown_kty": {"kty": "PQC", "kid": "pqc", "pub": b64(b"x" * 64)},
        "missing_kty": {"kid": "nokty", "n": n, "e": "AQAB"},
        "kty_null": {"kty": None, "kid": "ktynull"},
        "string_entry": "not-a-key",
        "number_entry": 42,
        "null_entry": None,
        "list_entry": [public_rsa_jwk(second_key, "nested")],
    }


ODD_KEY_NAMES = [
    "rsa_1024", "rsa_1024_no_alg", "rsa_e_1", "rsa_e_even", "rsa_missing_e", "rsa_bad_base64",
    "rsa_n_int", "rsa_use_enc", "rsa_key_ops_encrypt", "rsa_key_ops_string", "rsa_alg_es256",
    "rsa_alg_hs256", "rsa_alg_none", "rsa_kid_int", "ec_off_curve", "ec_zero_point",
    "ec_p256_alg_es384", "ec_p384_alg_es256", "ec_unknown_curve", "ec_missing_y", "oct",
    "okp_x25519", "okp_bad_length", "unknown_kty", "missing_kty", "kty_null", "string_entry",
    "number_entry", "null_entry", "list_entry",
]  # fmt: skip

# Tokens the holder of an odd key could mint with it: (kid, alg, which private key).
ODD_KEY_FORGERIES = {
    "rsa_1024": ("weak", "RS256", "weak"),
    "rsa_1024_no_alg": ("weak2", "RS256", "weak"),
    "rsa_use_enc": ("enc", "RS256", "second"),
    "rsa_key_ops_encrypt": ("ops", "RS256", "second"),
    "rsa_key_ops_string": ("ops2", "RS256", "second"),
    "rsa_alg_es256": ("ralg", "RS256", "second"),
    "ec_p256_alg_es384": ("es384", "ES384", "ec"),
    "ec_p384_alg_es256": ("p384", "ES256", "p384"),
    "oct": ("hmac", "HS256", "secret"),
}


@pytest.fixture
def odd_keys(weak_rsa_key, second_key, ec_key, p384_key):
    keys = _odd_keys(weak_rsa_key, second_key, ec_key, p384_key)
    assert sorted(keys) == sorted(ODD_KEY_NAMES)
    return keys


def _serve_keys(upstream, fake_issuer, extra: list) -> None:
    upstream.on(
        JWKS,
        lambda request: httpx.Response(200, json={"keys": [*extra, *fake_issuer.jwks()["keys"]]}),
    )


@pytest.mark.parametrize("name", ODD_KEY_NAMES)
def test_odd_key_skipped_with_warning(
    make_auth, fake_issuer, clock, upstream, odd_keys, caplog, name,
    weak_rsa_key, second_key, ec_key, p384_key,
) -> None:  # fmt: skip
    _serve_keys(upstream, fake_issuer, [odd_keys[name]])
    tokens = [token_at(fake_issuer, clock)]
    if name in ODD_KEY_FORGERIES:
        kid, alg, which = ODD_KEY_FORGERIES[name]
        signer = {
            "weak": weak_rsa_key, "second": second_key, "ec": ec_key, "p384": p384_key,
            "secret": b"s" * 32,
        }[which]  # fmt: skip
        tokens.append(
            make_token(
                {"alg": alg, "typ": "at+jwt", "kid": kid}, claims_at(fake_issuer, clock), signer
            )
        )

    async def scenario():
        async with opened(make_auth()) as auth:
            return [await attempt(auth, t) for t in tokens]

    with caplog.at_level(logging.WARNING, logger="authbridge"):
        results = run(scenario())
    assert isinstance(results[0], Principal)  # the good key still works
    assert all(isinstance(r, InvalidToken) for r in results[1:])
    warnings = [r for r in caplog.records if r.name == "authbridge.keys"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "Skipping" in warnings[0].getMessage()
    # The warning names the key, never its material.
    odd = odd_keys[name]
    material = (
        [v for k, v in odd.items() if k in ("n", "x", "y", "k")] if isinstance(odd, dict) else []
    )
    for value in material:
        assert str(value) not in caplog.text


def test_all_odd_keys_at_once(make_auth, fake_issuer, clock, upstream, odd_keys, caplog) -> None:
    _serve_keys(upstream, fake_issuer, list(odd_keys.values()))

    async def scenario():
        async with opened(make_auth()) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    with caplog.at_level(logging.WARNING, logger="authbridge"):
        assert isinstance(run(scenario()), Principal)
    skipped = [r for r in caplog.records if r.name == "authbridge.keys"]
    assert len(skipped) == len(odd_keys)


def test_only_odd_keys_means_provider_unavailable(
    make_auth, fake_issuer, clock, upstream, odd_keys
):
    upstream.on(JWKS, lambda request: httpx.Response(200, json={"keys": list(odd_keys.values())}))

    async def scenario():
        async with opened(make_auth(), warm=False) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    result = run(scenario())
    assert isinstance(result, ProviderUnavailable)
    assert result.reason == "jwks_without_usable_keys"
    with TestClient(make_app(make_auth())) as client:
        response = client.get("/items", headers=bearer(token_at(fake_issuer, clock)))
        assert response.status_code == 503
        assert response.json() == {"detail": "Authentication temporarily unavailable"}


def test_private_members_are_ignored(make_auth, fake_issuer, clock, upstream) -> None:
    """A JWKS leaking private members: only the public part is used (and still verifies)."""
    jwk = fake_issuer.jwks()["keys"][0]
    numbers = fake_issuer.key.private_numbers()
    leaked = {**jwk, "d": b64_int(numbers.d), "p": b64_int(numbers.p), "q": b64_int(numbers.q)}
    upstream.on(JWKS, lambda request: httpx.Response(200, json={"keys": [leaked]}))

    async def scenario():
        async with opened(make_auth()) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    assert isinstance(run(scenario()), Principal)


# -- key sets are per issuer -----------------------------------------------------------------

B_ISSUER = "https://second-issuer.example.test"


@pytest.fixture
def two_issuers(fake_issuer, second_key, attacker_key, clock):
    other = FakeIssuer(issuer=B_ISSUER, audience=fake_issuer.audience, key=second_key)
    assert other.kid == fake_issuer.kid  # same kid on purpose: lookups must not cross
    fake_issuer.add_jwk(public_rsa_jwk(attacker_key, "a-only", alg="RS256"))
    upstream = Upstream(fake_issuer, other)
    auth = AuthBridge(
        providers=[
            fake_issuer.provider("a", jwks_cooldown=30.0),
            other.provider("b", jwks_cooldown=30.0),
        ],
        transport=upstream.transport,
        clock=clock,
    )
    return auth, upstream, other


def test_keys_are_scoped_per_issuer(two_issuers, fake_issuer, clock, attacker_key) -> None:
    auth, _, other = two_issuers
    tokens = {
        "a": token_at(fake_issuer, clock),
        "b": token_at(other, clock),
        "b_claimed_signed_by_a": token_at(fake_issuer, clock, iss=B_ISSUER),
        "a_claimed_signed_by_b": token_at(other, clock, iss=fake_issuer.issuer),
        "b_claimed_with_a_only_kid": token_at(
            fake_issuer, clock, iss=B_ISSUER, header={"kid": "a-only"}, key=attacker_key
        ),
    }

    async def scenario():
        async with opened(auth) as bridge:
            clock.advance(31)
            return {name: await attempt(bridge, t) for name, t in tokens.items()}

    results = run(scenario())
    assert results["a"].provider == "a"
    assert results["b"].provider == "b"
    assert results["b_claimed_signed_by_a"].reason == "bad_signature"
    assert results["a_claimed_signed_by_b"].reason == "bad_signature"
    assert results["b_claimed_with_a_only_kid"].reason == "unknown_key"


def test_one_issuers_token_never_fetches_anothers_keys(two_issuers, fake_issuer, clock) -> None:
    auth, upstream, _ = two_issuers

    async def scenario():
        async with opened(auth, warm=False) as bridge:
            assert isinstance(await attempt(bridge, token_at(fake_issuer, clock)), Principal)

    run(scenario())
    assert upstream.urls
    assert all(url.startswith(fake_issuer.issuer + "/") for url in upstream.urls)


# -- discovery -----------------------------------------------------------------------------


def _discovery(fake_issuer, **changes):
    doc = fake_issuer.discovery_document()
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not _DROP}


class _Drop:
    """The type of _DROP: a discovery member to leave out."""

    def __repr__(self) -> str:
        return "_DROP"  # the same in every process: test ids show it (pytest-xdist compares them)


_DROP = _Drop()


@pytest.mark.parametrize(
    "issuer",
    ["https://issuer.example.test/", "https://ISSUER.example.test", "https://evil.example.test",
     "http://issuer.example.test", "https://issuer.example.test ", "", None, _DROP,
     ["https://issuer.example.test"], 1],
    ids=repr,
)  # fmt: skip
def test_discovery_issuer_mismatch_fails_closed(make_auth, fake_issuer, clock, upstream, issuer):
    doc = _discovery(fake_issuer, issuer=issuer)
    upstream.on(DISCOVERY, lambda request: httpx.Response(200, json=doc))

    async def scenario():
        async with opened(make_auth()) as auth:  # start-up survives
            results = [await attempt(auth, token_at(fake_issuer, clock)) for _ in range(3)]
            clock.advance(31)
            results.append(await attempt(auth, token_at(fake_issuer, clock)))
            return results

    results = run(scenario())
    assert all(isinstance(r, ProviderUnavailable) for r in results)
    assert upstream.count(JWKS) == 0  # keys are never loaded from a mismatching document
    assert upstream.count("oauth-authorization-server") == 0  # no fallback around the mismatch
    with TestClient(make_app(make_auth())) as client:
        response = client.get("/items", headers=bearer(token_at(fake_issuer, clock)))
        assert response.status_code == 503
        assert response.headers["retry-after"]


@pytest.mark.parametrize(
    "jwks_uri",
    ["http://issuer.example.test/jwks", "file:///etc/passwd", "javascript:alert(1)", "", 42,
     ["https://issuer.example.test/jwks"], "//issuer.example.test/jwks", "/jwks"],
    ids=repr,
)  # fmt: skip
def test_discovery_with_unusable_jwks_uri(make_auth, fake_issuer, clock, upstream, jwks_uri):
    doc = _discovery(fake_issuer, jwks_uri=jwks_uri)
    upstream.on(DISCOVERY, lambda request: httpx.Response(200, json=doc))

    async def scenario():
        async with opened(make_auth()) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    assert isinstance(run(scenario()), ProviderUnavailable)
    assert upstream.count(JWKS) == 0


@pytest.mark.parametrize(
    "jwks_uri",
    ["https://[::1/jwks", "https://issuer.example.test\x00/jwks", "https://issuer.example.test:99999/jwks",
     "https://[fe80::1%eth0]/jwks", "https://exa mple.test/jwks"],
    ids=repr,
)  # fmt: skip
def test_discovery_with_malformed_jwks_uri(make_auth, fake_issuer, clock, upstream, jwks_uri):
    """A syntactically broken URL from the provider is a provider failure (503), not a crash."""
    doc = _discovery(fake_issuer, jwks_uri=jwks_uri)
    upstream.on(DISCOVERY, lambda request: httpx.Response(200, json=doc))
    upstream.on(JWKS, lambda request: httpx.Response(404))

    async def scenario():
        async with opened(make_auth(), warm=False) as auth:
            try:
                return await attempt(auth, token_at(fake_issuer, clock))
            except Exception as exc:  # anything else would be a 500
                pytest.fail(f"verification crashed: {type(exc).__name__}: {exc}")

    assert isinstance(run(scenario()), ProviderUnavailable)


def test_malformed_jwks_uri_over_http(make_auth, fake_issuer, clock, upstream) -> None:
    doc = _discovery(fake_issuer, jwks_uri="https://[::1/jwks")
    upstream.on(DISCOVERY, lambda request: httpx.Response(200, json=doc))
    with TestClient(make_app(make_auth()), raise_server_exceptions=False) as client:
        response = client.get("/items", headers=bearer(token_at(fake_issuer, clock)))
        assert response.status_code == 503


TENANT = "https://as.example.test/tenant1"
OIDC_URL = TENANT + DISCOVERY
RFC8414_PATH = "/.well-known/oauth-authorization-server/tenant1"


@pytest.fixture
def tenant(authbridge_signing_key, clock):
    fake = FakeIssuer(issuer=TENANT, key=authbridge_signing_key)
    upstream = Upstream(fake)
    auth = AuthBridge(
        providers=[fake.provider(jwks_cooldown=30.0)], transport=upstream.transport, clock=clock
    )
    return fake, upstream, auth


@pytest.mark.parametrize("oidc_failure", ["404", "500", "html", "connect_error", "timeout_like"])
def test_rfc8414_fallback(tenant, clock, oidc_failure) -> None:
    fake, upstream, auth = tenant

    def oidc(request):
        if oidc_failure == "404":
            return httpx.Response(404, json={"error": "not_found"})
        if oidc_failure == "500":
            return httpx.Response(500)
        if oidc_failure == "html":
            return httpx.Response(200, text="<html>Sign in</html>")
        if oidc_failure == "connect_error":
            raise httpx.ConnectError("refused")
        raise httpx.ReadTimeout("slow")

    upstream.on("/tenant1" + DISCOVERY, oidc)
    upstream.on(RFC8414_PATH, lambda request: httpx.Response(200, json=fake.discovery_document()))

    async def scenario():
        async with opened(auth) as bridge:
            return await attempt(bridge, token_at(fake, clock))

    assert isinstance(run(scenario()), Principal)
    assert upstream.urls == [OIDC_URL, "https://as.example.test" + RFC8414_PATH, fake.jwks_uri]


def test_rfc8414_issuer_is_checked_too(tenant, clock) -> None:
    fake, upstream, auth = tenant
    upstream.on("/tenant1" + DISCOVERY, lambda request: httpx.Response(404))
    upstream.on(
        RFC8414_PATH,
        lambda request: httpx.Response(
            200, json={**fake.discovery_document(), "issuer": "https://as.example.test"}
        ),
    )

    async def scenario():
        async with opened(auth) as bridge:
            return await attempt(bridge, token_at(fake, clock))

    assert isinstance(run(scenario()), ProviderUnavailable)
    assert upstream.count("/jwks") == 0


def test_no_fallback_when_oidc_document_names_another_issuer(tenant, clock) -> None:
    fake, upstream, auth = tenant
    upstream.on(
        "/tenant1" + DISCOVERY,
        lambda request: httpx.Response(
            200, json={**fake.discovery_document(), "issuer": "https://x.test"}
        ),
    )
    upstream.on(RFC8414_PATH, lambda request: httpx.Response(200, json=fake.discovery_document()))

    async def scenario():
        async with opened(auth) as bridge:
            return await attempt(bridge, token_at(fake, clock))

    assert isinstance(run(scenario()), ProviderUnavailable)
    assert upstream.urls == [OIDC_URL]


# -- endpoints down, slow, or answering garbage ------------------------------------------------


def _raise(exc):
    def handler(request):
        raise exc

    return handler


BROKEN = {
    "connect_error": _raise(httpx.ConnectError("refused")),
    "connect_timeout": _raise(httpx.ConnectTimeout("slow")),
    "read_error": _raise(httpx.ReadError("reset")),
    "remote_protocol_error": _raise(httpx.RemoteProtocolError("garbage")),
    "status_204": lambda request: httpx.Response(204),
    "status_304": lambda request: httpx.Response(304),
    "status_400": lambda request: httpx.Response(400, json={"error": "bad"}),
    "status_401": lambda request: httpx.Response(401),
    "status_403": lambda request: httpx.Response(403, text="<html>Forbidden</html>"),
    "status_404": lambda request: httpx.Response(404),
    "status_429": lambda request: httpx.Response(429, headers={"retry-after": "9999"}),
    "status_500": lambda request: httpx.Response(500, text="Traceback ..."),
    "status_503": lambda request: httpx.Response(503),
    "html": lambda request: httpx.Response(
        200, text="<!doctype html><html><body>Login</body></html>"
    ),
    "empty": lambda request: httpx.Response(200, content=b""),
    "truncated": lambda request: httpx.Response(200, content=b'{"keys": [{"kty": "RSA", "n": "'),
    "not_json_object_list": lambda request: httpx.Response(200, json=[]),
    "not_json_object_string": lambda request: httpx.Response(200, json="keys"),
    "not_json_object_null": lambda request: httpx.Response(200, content=b"null"),
    "keys_not_a_list": lambda request: httpx.Response(200, json={"keys": {"kty": "RSA"}}),
    "keys_string": lambda request: httpx.Response(200, json={"keys": "[]"}),
    "keys_null": lambda request: httpx.Response(200, json={"keys": None}),
    "keys_missing": lambda request: httpx.Response(200, json={"jwks": []}),
    "keys_empty": lambda request: httpx.Response(200, json={"keys": []}),
    "key_not_an_object": lambda request: httpx.Response(200, json={"keys": [1, "a", None, []]}),
    "nan": lambda request: httpx.Response(200, content=b'{"keys": NaN}'),
    "deeply_nested": lambda request: httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000),
    "utf16": lambda request: httpx.Response(200, content='{"keys": []}'.encode("utf-16")),
    "invalid_utf8": lambda request: httpx.Response(200, content=b'{"keys": ["\xff"]}'),
    "gzip_lie": lambda request: httpx.Response(
        200, content=b"\x1f\x8b\x08garbage", headers={"content-encoding": "gzip"}
    ),
}


@pytest.mark.parametrize("endpoint", [DISCOVERY, JWKS])
@pytest.mark.parametrize("failure", list(BROKEN))
def test_broken_endpoint_fails_closed(make_auth, fake_issuer, clock, upstream, endpoint, failure):
    upstream.on(endpoint, BROKEN[failure])

    async def scenario():
        async with opened(make_auth()) as auth:  # start-up is not fatal
            return await attempt(auth, token_at(fake_issuer, clock))

    result = run(scenario())
    assert isinstance(result, ProviderUnavailable), result
    assert "issuer.example.test" not in str(result)


@pytest.mark.parametrize("failure", ["connect_error", "status_500", "html", "keys_not_a_list"])
def test_broken_endpoint_over_http(make_auth, fake_issuer, clock, upstream, failure) -> None:
    upstream.on(JWKS, BROKEN[failure])
    with TestClient(make_app(make_auth())) as client:
        response = client.get("/items", headers=bearer(token_at(fake_issuer, clock)))
        assert response.status_code == 503
        assert response.json() == {"detail": "Authentication temporarily unavailable"}
        assert "www-authenticate" not in response.headers
        # A bad token is still a 401, not a 503: the token is judged first where possible.
        assert_r401(client.get("/items", headers=bearer("x.y.z")))


def test_failures_are_retried_at_most_once_per_cooldown(make_auth, fake_issuer, clock, upstream):
    upstream.on(JWKS, BROKEN["connect_error"])

    async def scenario():
        async with opened(make_auth()) as auth:
            assert upstream.count(JWKS) == 1
            for _ in range(50):
                assert isinstance(
                    await attempt(auth, token_at(fake_issuer, clock)), ProviderUnavailable
                )
            assert upstream.count(JWKS) == 1
            clock.advance(31)
            await asyncio.gather(*(attempt(auth, token_at(fake_issuer, clock)) for _ in range(50)))
            assert upstream.count(JWKS) == 2
            upstream.clear()  # the endpoint recovers
            assert isinstance(
                await attempt(auth, token_at(fake_issuer, clock)), ProviderUnavailable
            )
            clock.advance(31)
            assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            assert upstream.count(JWKS) == 3

    run(scenario())


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", [DISCOVERY, JWKS])
def test_redirects_are_not_followed(make_auth, fake_issuer, clock, upstream, status, endpoint):
    location = "https://attacker.example.net/jwks.json"
    upstream.on(endpoint, lambda request: httpx.Response(status, headers={"location": location}))
    upstream.on("/jwks.json", lambda request: httpx.Response(200, json=fake_issuer.jwks()))

    async def scenario():
        async with opened(make_auth()) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    assert isinstance(run(scenario()), ProviderUnavailable)
    assert upstream.count("attacker") == 0


# -- bounded time and size, and a responsive event loop ---------------------------------------


def _ticker():
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    return tick, lambda: ticks


@pytest.mark.parametrize("endpoint", [DISCOVERY, JWKS])
@pytest.mark.parametrize("how", ["slow_headers", "slow_body"])
def test_slow_endpoint_is_bounded_and_loop_stays_responsive(
    make_auth, fake_issuer, clock, upstream, endpoint, how
) -> None:
    async def slow_headers(request):
        await asyncio.sleep(30)

    async def trickle():
        yield b'{"keys": ['
        while True:
            await asyncio.sleep(0.02)
            yield b" "

    def slow_body(request):
        return httpx.Response(200, content=trickle())

    upstream.on(endpoint, slow_headers if how == "slow_headers" else slow_body)

    async def scenario():
        tick, ticks = _ticker()
        ticker = asyncio.create_task(tick())
        auth = make_auth(bridge={"http_timeout": 0.3})
        async with opened(auth, warm=False):
            started = time.perf_counter()
            results = await asyncio.gather(
                *(attempt(auth, token_at(fake_issuer, clock)) for _ in range(20))
            )
            elapsed = time.perf_counter() - started
        ticker.cancel()
        return results, elapsed, ticks()

    results, elapsed, ticks = run(scenario())
    assert all(isinstance(r, ProviderUnavailable) for r in results)
    assert {r.reason for r in results} == {"timeout"}
    assert elapsed < 2.0
    assert ticks >= 10  # other coroutines kept running during the fetch
    assert upstream.count(endpoint) == 1  # the 20 callers shared one fetch


def test_slow_fetch_does_not_delay_cached_keys(
    make_auth, fake_issuer, clock, upstream, attacker_key
):
    """While an unknown-kid refetch hangs, tokens with known kids are served at once."""

    async def slow(request):
        await asyncio.sleep(30)

    async def scenario():
        async with opened(make_auth(bridge={"http_timeout": 0.5})) as auth:
            upstream.on(JWKS, slow)
            clock.advance(31)
            stuck = asyncio.create_task(
                attempt(auth, _random_kid_token(fake_issuer, clock, attacker_key))
            )
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            ok = await attempt(auth, token_at(fake_issuer, clock))
            fast = time.perf_counter() - started
            stuck_result = await stuck
            return ok, fast, stuck_result

    ok, fast, stuck_result = run(scenario())
    assert isinstance(ok, Principal)
    assert fast < 0.1
    assert stuck_result.reason == "timeout"  # refetch timed out: refused as unavailable (503)


@pytest.mark.parametrize("endpoint", [DISCOVERY, JWKS])
@pytest.mark.parametrize("how", ["declared", "streamed", "endless"])
def test_huge_bodies_are_cut_off(make_auth, fake_issuer, clock, upstream, endpoint, how) -> None:
    sent = 0

    async def endless():
        nonlocal sent
        yield b'{"keys": ["'
        while True:
            sent += 65536
            yield b"A" * 65536

    def handler(request):
        if how == "declared":
            return httpx.Response(
                200, content=b'{"keys": []}', headers={"content-length": str(10**9)}
            )
        if how == "streamed":
            return httpx.Response(200, content=b'{"keys": ["' + b"A" * (600 * 1024) + b'"]}')
        return httpx.Response(200, content=endless())

    upstream.on(endpoint, handler)

    async def scenario():
        async with opened(make_auth(), warm=False) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    result = run(scenario())
    assert isinstance(result, ProviderUnavailable)
    assert result.reason == "response_too_large"
    assert sent <= 1024 * 1024  # the endless body was abandoned after about the cap


# -- last known good keys ---------------------------------------------------------------------


def test_last_known_good_keys_for_a_bounded_staleness(
    make_auth, fake_issuer, clock, upstream, caplog
):
    async def scenario():
        async with opened(make_auth()) as auth:  # keys fresh for 600 s
            upstream.on(JWKS, BROKEN["status_503"])
            clock.advance(601)
            with caplog.at_level(logging.WARNING, logger="authbridge"):
                assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            assert "last known good" in caplog.text
            assert upstream.count(JWKS) == 2
            # Hammering during staleness costs one request per cooldown.
            for _ in range(20):
                assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            assert upstream.count(JWKS) == 2
            clock.now = T0 + 600 + 6 * 3600 - 1
            assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)
            clock.now = T0 + 600 + 6 * 3600 + 1
            refused = await attempt(auth, token_at(fake_issuer, clock))
            assert isinstance(refused, ProviderUnavailable)
            clock.advance(10)
            assert isinstance(
                await attempt(auth, token_at(fake_issuer, clock)), ProviderUnavailable
            )
            upstream.clear()
            clock.advance(31)
            assert isinstance(await attempt(auth, token_at(fake_issuer, clock)), Principal)

    run(scenario())


def test_stale_keys_never_serve_a_removed_kid_forever(make_auth, fake_issuer, clock, upstream):
    """Staleness only extends keys already known; it does not make bad tokens good."""

    async def scenario():
        async with opened(make_auth()) as auth:
            upstream.on(JWKS, BROKEN["connect_error"])
            clock.advance(601)
            forged = token_at(fake_issuer, clock, header={"kid": "never-published"})
            # Unknown while the endpoint fails: maybe a new key, so 503, never accepted.
            refused = await attempt(auth, forged)
            assert isinstance(refused, ProviderUnavailable)
            assert refused.retry_after == 30
            upstream.clear()
            clock.advance(30)
            assert (await attempt(auth, forged)).reason == "unknown_key"  # known now: not ours

    run(scenario())


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """~130 KB on the wire, 128 MiB inflated."""
    bomb = gzip.compress(b'{"keys": ["' + b"A" * (128 * 1024 * 1024), 9)
    assert len(bomb) < 512 * 1024  # passes any check on the compressed size
    return bomb


@pytest.mark.parametrize("endpoint", [DISCOVERY, JWKS])
def test_compressed_body_is_bounded_after_decoding(
    make_auth, fake_issuer, clock, upstream, gzip_bomb, endpoint
) -> None:
    """The size cap must bound memory even when the server compresses (we ask for identity)."""

    async def chunks():
        for i in range(0, len(gzip_bomb), 16 * 1024):
            yield gzip_bomb[i : i + 16 * 1024]

    upstream.on(
        endpoint,
        lambda request: httpx.Response(200, content=chunks(), headers={"content-encoding": "gzip"}),
    )

    async def scenario():
        async with opened(make_auth(), warm=False) as auth:
            return await attempt(auth, token_at(fake_issuer, clock))

    tracemalloc.start()
    try:
        result = run(scenario())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(result, ProviderUnavailable)
    # "A huge or endless body costs at most max_bytes" (512 KiB); allow generous slack.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB for a 512 KiB-capped body"
