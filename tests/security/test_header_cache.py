"""SECURITY-CASES §10: the decoded-header cache holds only verified, small headers, read-only.

Decoding a header is part of every first-sight token, and an issuer sends the
same few over and over, so decoded headers are remembered, but only once a
token carrying one has passed a signature check (anything else is attacker
data), only small flat ones, within a byte budget; and what `parse_compact`
hands out can never be changed by its caller.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import secrets
import threading
import tracemalloc
from collections.abc import Iterator, Mapping

import pytest

from authbridge import InvalidToken, Principal
from authbridge.jose import _compact, key_from_secret, parse_compact

from ._support import b64, claims_at, make_token, outcomes, token_at

SECRET = b"header-cache-test-secret-0123456789abcdef"
HS256 = key_from_secret(SECRET, algorithms=["HS256"])
CACHE = _compact._HEADERS


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    CACHE.clear()
    yield
    CACHE.clear()


def _h64(token: str) -> bytes:
    return token.split(".", 1)[0].encode()


def _hs_token(header: dict, claims: dict | None = None) -> str:
    data = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims or {'iss': 'x'}).encode())}"
    return f"{data}.{b64(hmac.digest(SECRET, data.encode(), 'sha256'))}"


def _verify(token: str) -> bool:
    parsed = parse_compact(token, max_bytes=64 * 1024)
    return HS256.verify(parsed.header["alg"], parsed.signing_input, parsed.signature)


def _traced(fn) -> int:
    """Bytes still allocated after ``fn()`` (and a collection) that were not before."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# -- what is handed out -----------------------------------------------------------------------


def test_header_is_read_only_before_and_after_caching(make_auth, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock)
    for round_ in ("decoded", "cached"):
        parsed = parse_compact(token, max_bytes=16384)
        assert isinstance(parsed.header, Mapping)
        assert not isinstance(parsed.header, dict), round_
        with pytest.raises(TypeError):
            parsed.header["alg"] = "none"  # type: ignore[index]
        with pytest.raises(AttributeError):
            parsed.header.pop("kid")  # type: ignore[attr-defined]
        copy = dict(parsed.header)
        copy["alg"] = "none"
        copy.clear()
        assert parse_compact(token, max_bytes=16384).header["alg"] == "RS256"
        assert isinstance(outcomes(make_auth(), [token])[0], Principal)
        assert _h64(token) in CACHE


def test_nested_header_values_are_never_shared() -> None:
    """A header with a list or object is decoded afresh each time: nothing to share."""
    token = _hs_token({"alg": "HS256", "crit_list": ["a"], "obj": {"k": 1}})
    first = parse_compact(token, max_bytes=16384)
    assert _verify(token)
    first.header["crit_list"].append("mutated")
    first.header["obj"]["k"] = 2
    again = parse_compact(token, max_bytes=16384).header
    assert again["crit_list"] == ["a"]
    assert again["obj"] == {"k": 1}
    assert _h64(token) not in CACHE


def test_claims_are_a_new_dict_each_time(fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock)
    parse_compact(token, max_bytes=16384).claims["sub"] = "mallory"
    assert parse_compact(token, max_bytes=16384).claims["sub"] == "alice"


# -- what is cached ---------------------------------------------------------------------------


def test_only_headers_of_verified_tokens_are_cached(
    make_auth, fake_issuer, clock, attacker_key
) -> None:
    claims = claims_at(fake_issuer, clock)
    refused = {
        "forged": token_at(fake_issuer, clock, header={"x": "forged"}, key=attacker_key),
        "unknown_kid": token_at(fake_issuer, clock, header={"kid": "nope"}),
        "alg_none": make_token({"alg": "none", "kid": fake_issuer.kid}, claims, signature=b""),
        "alg_hs256": make_token({"alg": "HS256", "kid": fake_issuer.kid}, claims, b"k" * 32),
        "unknown_issuer": token_at(fake_issuer, clock, header={"x": "iss"}, iss="https://evil"),
        "garbage_signature": make_token(
            {"alg": "RS256", "kid": fake_issuer.kid, "x": "g"}, claims, signature=bytes(256)
        ),
        "crit": token_at(fake_issuer, clock, header={"crit": ["exp"]}),
    }
    genuine = token_at(fake_issuer, clock)
    results = outcomes(make_auth(), [*refused.values(), genuine])
    for name, result in zip(refused, results, strict=False):
        assert isinstance(result, InvalidToken), name
        assert _h64(refused[name]) not in CACHE, name
    assert isinstance(results[-1], Principal)
    assert _h64(genuine) in CACHE
    assert len(CACHE) == 1


def test_cached_header_is_not_decoded_again(monkeypatch) -> None:
    decoded: list[str] = []
    real = _compact.json_object

    def counting(raw: bytes, what: str):
        decoded.append(what)
        return real(raw, what)

    monkeypatch.setattr(_compact, "json_object", counting)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    tokens = [_hs_token(header, {"iss": "x", "jti": str(n)}) for n in range(5)]
    assert all(_verify(t) for t in tokens)
    # The first token's header is decoded once, kept when it verified; then payloads only.
    assert decoded.count("header") == 1
    assert decoded.count("payload") == 5


def test_large_signed_headers_are_not_cached() -> None:
    big = _hs_token({"alg": "HS256", "kid": "k" * 600})
    assert len(_h64(big)) > CACHE.max_segment
    assert _verify(big)
    assert _h64(big) not in CACHE
    assert CACHE.bytes_used == 0


def test_refused_16k_headers_leave_nothing_behind(make_auth, fake_issuer, clock) -> None:
    """1000 distinct, well-formed, 16 KiB-class headers with a bad signature."""
    claims = claims_at(fake_issuer, clock)
    tokens = []
    for n in range(1000):
        header = {"alg": "RS256", "kid": fake_issuer.kid, "n": n}
        header.update({f"m{i}": i for i in range(1000)})  # many small members: a big dict
        tokens.append(make_token(header, claims, signature=secrets.token_bytes(256)))
    assert 14_000 < len(tokens[0]) <= 16 * 1024
    auth = make_auth()
    reasons: list[str] = []

    async def verify_all() -> None:
        async with auth:
            for token in tokens:
                try:
                    await auth.verify(token)
                except InvalidToken as exc:  # kept as a reason: a traceback holds frames
                    reasons.append(exc.reason)

    retained = _traced(lambda: asyncio.run(verify_all()))
    assert reasons == ["bad_signature"] * len(tokens)
    assert len(CACHE) == 0
    assert CACHE.bytes_used == 0
    # The tokens themselves were allocated before; what stays is bookkeeping, not headers
    # (one decoded header of this kind alone is about 100 KiB).
    assert retained < 1024 * 1024, retained


def test_byte_budget_holds_for_many_verified_headers() -> None:
    tokens = [
        _hs_token({"alg": "HS256", "typ": "at+jwt", "kid": f"key-{n}", "pad": "p" * (n % 300)})
        for n in range(1000)
    ]

    def verify_all() -> None:
        for token in tokens:
            assert _verify(token)
            assert CACHE.bytes_used <= CACHE.budget

    retained = _traced(verify_all)
    assert CACHE.bytes_used <= CACHE.budget
    assert 0 < len(CACHE) < 1000
    # The cache's own accounting is an honest estimate of what it really holds.
    assert retained <= 1.25 * CACHE.bytes_used + 16 * 1024, (retained, CACHE.bytes_used)
    assert retained >= 0.5 * CACHE.bytes_used, (retained, CACHE.bytes_used)
    # Oldest first out: the latest headers are the ones kept.
    assert _h64(tokens[-1]) in CACHE
    assert _h64(tokens[0]) not in CACHE
    assert _verify(tokens[0])
    assert _h64(tokens[0]) in CACHE


def test_accounting_stays_exact_under_threads() -> None:
    tokens = [_hs_token({"alg": "HS256", "kid": f"t{n}"}) for n in range(800)]
    chunks = [tokens[i::8] + tokens[:50] for i in range(8)]
    errors: list[BaseException] = []

    def work(chunk: list[str]) -> None:
        try:
            for token in chunk:
                assert _verify(token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert CACHE.bytes_used == sum(CACHE._costs.values())
    assert CACHE.bytes_used <= CACHE.budget


def test_only_the_exact_header_segment_is_promoted() -> None:
    """A verified token whose header segment merely starts like the pending one caches nothing."""
    short = _hs_token({"alg": "HS256", "kid": "a"})
    parse_compact(short, max_bytes=16384)  # leaves its header pending
    pending = CACHE.pending
    assert pending is not None
    # Another header whose base64url text begins with the pending segment.
    longer = _hs_token({"alg": "HS256", "kid": "a", "x": 1})
    segment = _h64(short)
    forged_input = segment + b"QQ." + b"e30"
    assert HS256.verify("HS256", forged_input, hmac.digest(SECRET, forged_input, "sha256"))
    assert len(CACHE) == 0
    assert _verify(longer)
    assert _h64(longer) in CACHE
    assert segment not in CACHE


def test_verify_without_parse_caches_nothing() -> None:
    """Signature checks on inputs parse_compact never saw leave the cache alone."""
    data = (b64(json.dumps({"alg": "HS256"}).encode()) + "." + b64(b"{}")).encode()
    assert HS256.verify("HS256", data, hmac.digest(SECRET, data, "sha256"))
    assert len(CACHE) == 0
