"""SECURITY-CASES §8: no token, signature, payload or secret in logs, errors or responses."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from authbridge import AuthBridge, AuthBridgeError, InvalidToken, OIDCProvider

from ._support import (
    OMIT,
    FakeClock,
    Upstream,
    b64,
    bearer,
    claims_at,
    make_app,
    make_token,
    sign_bytes,
    token_at,
)

HMAC_SECRET = b"correct-horse-battery-staple-0123456789-XYZ"
URL_SECRET = "s3cr3t-in-the-query-string-0xDEADBEEF"


@pytest.fixture
def wall_clock() -> FakeClock:
    # The test kit's bad tokens use the wall clock; so does this bridge.
    return FakeClock(int(time.time()))


def _bad_tokens(fake_issuer, clock, attacker_key) -> dict[str, str]:
    good = token_at(fake_issuer, clock)
    h, p, s = good.split(".")
    claims = claims_at(fake_issuer, clock)
    tokens = dict(fake_issuer.bad.all())
    tokens.update(
        {
            "alg_none_uppercase": make_token({"alg": "NONE"}, claims, signature=b"x"),
            "hmac_with_jwk_json": make_token(
                {"alg": "HS256", "kid": fake_issuer.kid},
                claims,
                json.dumps(fake_issuer.jwks()["keys"][0]).encode(),
            ),
            "kid_sql": token_at(
                fake_issuer, clock, header={"kid": "' OR 1=1 --"}, key=attacker_key
            ),
            "kid_path": token_at(fake_issuer, clock, header={"kid": "../../etc/passwd"}),
            "kid_int": token_at(fake_issuer, clock, header={"kid": 7}),
            "jku": token_at(
                fake_issuer,
                clock,
                header={"jku": "https://attacker.example.net/k"},
                key=attacker_key,
            ),
            "crit": token_at(fake_issuer, clock, header={"crit": ["exp"]}),
            "typ_refresh_claim": token_at(fake_issuer, clock, typ="Refresh"),
            "missing_exp": token_at(fake_issuer, clock, exp=OMIT),
            "exp_string": token_at(fake_issuer, clock, exp="tomorrow"),
            "aud_list_of_ints": token_at(fake_issuer, clock, aud=[1, 2]),
            "sub_empty": token_at(fake_issuer, clock, sub=""),
            "scp_object": token_at(fake_issuer, clock, scp={"admin": True}),
            "duplicate_members": _signed(
                fake_issuer,
                b64(b'{"alg":"RS256","alg":"none"}'),
                p,
            ),
            "non_canonical_signature": f"{h}.{p}.{s[:-1]}{_odd_last(s)}",
            "padded": f"{good}==",
            "jwe": f"{h}.{p}.{s}.{s}.{s}",
            "two_segments": f"{h}.{p}",
            "huge": f"{h}.{p}{'A' * 20000}.{s}",
            "json_serialization": json.dumps({"protected": h, "payload": p, "signature": s}),
            "truncated_signature": f"{good[:-10]}",
            "swapped_segments": f"{p}.{h}.{s}",
            "not_an_object": _signed(fake_issuer, h, b64(b"[1,2,3]")),
            "invalid_utf8": _signed(fake_issuer, h, b64(b'{"sub":"\xff"}')),
        }
    )
    return tokens


def _signed(fake_issuer, h: str, p: str) -> str:
    data = f"{h}.{p}"
    return f"{data}.{b64(sign_bytes('RS256', fake_issuer.key, data.encode()))}"


def _odd_last(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return alphabet[alphabet.index(segment[-1]) | 1]


BAD_KINDS = [
    "expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "alg_none", "hmac_confusion",
    "unknown_kid", "bad_signature", "wrong_type", "alg_none_uppercase", "hmac_with_jwk_json",
    "kid_sql", "kid_path", "kid_int", "jku", "crit", "typ_refresh_claim", "missing_exp",
    "exp_string", "aud_list_of_ints", "sub_empty", "scp_object", "duplicate_members",
    "non_canonical_signature", "padded", "jwe", "two_segments", "huge", "json_serialization",
    "truncated_signature", "swapped_segments", "not_an_object", "invalid_utf8",
]  # fmt: skip


def _fragments(token: str) -> list[str]:
    """Token material that must never be echoed: the token and each long-enough piece."""
    pieces = [token]
    for part in token.split("."):
        if len(part) >= 16:
            pieces.append(part)
            pieces.append(part[:24])  # a prefix is still a leak
    return pieces


def _everything_logged(caplog) -> str:
    out = []
    for record in caplog.records:
        if record.name.startswith(("httpx", "httpcore")):
            continue  # the test client's own request log
        out.append(record.getMessage())
        out.append(repr(record.args))
        if record.exc_text:
            out.append(record.exc_text)
        if record.exc_info and record.exc_info[1] is not None:
            out.append(repr(record.exc_info[1]))
    return "\n".join(out)


def _assert_absent(haystack: str, needles: list[str], where: str) -> None:
    for needle in needles:
        assert needle not in haystack, f"{where} contains token/secret material"


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="authbridge")
    return caplog


def test_bad_token_kinds_are_all_covered(fake_issuer, wall_clock, attacker_key) -> None:
    assert sorted(_bad_tokens(fake_issuer, wall_clock, attacker_key)) == sorted(BAD_KINDS)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_failing_paths_over_http_leak_nothing(
    fake_issuer, wall_clock, attacker_key, debug_logs, kind
) -> None:
    token = _bad_tokens(fake_issuer, wall_clock, attacker_key)[kind]
    upstream = Upstream(fake_issuer)
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=upstream.transport, clock=wall_clock
    )
    with TestClient(make_app(auth)) as client:
        responses = [
            client.get("/items", headers=bearer(token)),
            client.get("/maybe", headers=bearer(token)),
            client.get("/items", headers={"Authorization": f"Bearer {token} "}),
        ]
    for response in responses:
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid or expired access token"}
        _assert_absent(response.text, _fragments(token), "response body")
        _assert_absent(json.dumps(dict(response.headers)), _fragments(token), "response headers")
    logged = _everything_logged(debug_logs)
    assert "Request refused" in logged  # the failure was logged, just without the token
    _assert_absent(logged, _fragments(token), "logs")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_core_errors_leak_nothing(fake_issuer, wall_clock, attacker_key, debug_logs, kind) -> None:
    token = _bad_tokens(fake_issuer, wall_clock, attacker_key)[kind]
    auth = AuthBridge(
        providers=[fake_issuer.provider()],
        transport=Upstream(fake_issuer).transport,
        clock=wall_clock,
    )

    async def go():
        async with auth:
            try:
                await auth.verify(token)
            except AuthBridgeError as exc:
                return exc
        raise AssertionError("accepted")

    error = asyncio.run(go())
    assert isinstance(error, InvalidToken)
    text = "\n".join([str(error), repr(error), repr(error.args), error.reason, str(error.claim)])
    _assert_absent(text, _fragments(token), "the exception")
    # No chained exception carrying decoded material into a traceback.
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None
    _assert_absent(_everything_logged(debug_logs), _fragments(token), "logs")


def test_claim_values_never_reach_the_client(fake_issuer, wall_clock) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, clock=wall_clock
    )
    marker = "MARKER-claim-value-7f3a"
    tokens = [
        token_at(fake_issuer, wall_clock, iss=f"https://{marker}.example"),
        token_at(fake_issuer, wall_clock, aud=marker),
        token_at(fake_issuer, wall_clock, sub=marker, exp=1),
        token_at(fake_issuer, wall_clock, header={"kid": marker}),
        token_at(fake_issuer, wall_clock, header={"typ": marker}),
    ]
    with TestClient(make_app(auth)) as client:
        for token in tokens:
            response = client.get("/items", headers=bearer(token))
            assert response.status_code == 401
            assert marker not in response.text
            assert marker not in json.dumps(dict(response.headers))


def test_hmac_secret_never_leaks(fake_issuer, wall_clock, debug_logs) -> None:
    provider = OIDCProvider(
        "shared", issuer=fake_issuer.issuer, audience=fake_issuer.audience, hmac_secret=HMAC_SECRET
    )
    auth = AuthBridge(providers=[provider], clock=wall_clock)
    claims = claims_at(fake_issuer, wall_clock)
    expired = dict(claims, exp=int(wall_clock.now) - 3600)
    tokens = [
        make_token({"alg": "HS256"}, claims, b"wrong-secret-wrong-secret-wrong-secret"),
        make_token({"alg": "HS256"}, expired, HMAC_SECRET),
        make_token({"alg": "HS512"}, claims, HMAC_SECRET),
        make_token({"alg": "HS256", "typ": "Refresh"}, claims, HMAC_SECRET),
        make_token({"alg": "RS256"}, claims, fake_issuer.key),
    ]
    secret_forms = [
        HMAC_SECRET.decode(),
        HMAC_SECRET.hex(),
        base64.b64encode(HMAC_SECRET).decode(),
        b64(HMAC_SECRET),
        HMAC_SECRET.decode()[:16],
    ]
    with TestClient(make_app(auth)) as client:
        for token in tokens:
            response = client.get("/items", headers=bearer(token))
            assert response.status_code == 401
            _assert_absent(
                response.text + json.dumps(dict(response.headers)), secret_forms, "response"
            )
            _assert_absent(response.text, _fragments(token), "response")
    logged = _everything_logged(debug_logs)
    _assert_absent(logged, secret_forms, "logs")
    for token in tokens:
        _assert_absent(logged, _fragments(token), "logs")
    assert HMAC_SECRET.decode() not in repr(provider)
    assert HMAC_SECRET.decode() not in repr(auth.resource_server.bound("shared").keyset.keys)


@pytest.mark.parametrize(
    "failure",
    ["connect_error", "timeout", "status_500", "html", "huge", "issuer_mismatch", "redirect"],
)
def test_provider_down_leaks_nothing(fake_issuer, wall_clock, debug_logs, failure) -> None:
    jwks_uri = f"{fake_issuer.issuer}/jwks?client_secret={URL_SECRET}"
    upstream = Upstream(fake_issuer)

    def broken(request):
        if failure == "connect_error":
            raise httpx.ConnectError(f"cannot reach {request.url}")
        if failure == "timeout":
            raise httpx.ReadTimeout(f"timed out on {request.url}")
        if failure == "status_500":
            return httpx.Response(500, text=f"Traceback: {request.url}")
        if failure == "html":
            return httpx.Response(200, text=f"<html>{request.url}</html>")
        if failure == "huge":
            return httpx.Response(200, content=b"[" + b" " * (600 * 1024))
        if failure == "redirect":
            return httpx.Response(302, headers={"location": f"https://x.example/?{URL_SECRET}"})
        return httpx.Response(200, json={"keys": []})

    upstream.on("/jwks", broken)
    if failure == "issuer_mismatch":
        provider = fake_issuer.provider(discovery_url=f"{fake_issuer.issuer}/meta?k={URL_SECRET}")
        upstream.on(
            "/meta",
            lambda request: httpx.Response(
                # The issuer a document names is logged (both spellings, to fix a mismatch):
                # it is the public iss of every token. The URL's secret must not be.
                200,
                json={**fake_issuer.discovery_document(), "issuer": "https://other.test"},
            ),
        )
    else:
        provider = fake_issuer.provider(jwks_uri=jwks_uri)
    auth = AuthBridge(providers=[provider], transport=upstream.transport, clock=wall_clock)
    token = token_at(fake_issuer, wall_clock)
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(token))
    assert response.status_code == 503
    assert response.json() == {"detail": "Authentication temporarily unavailable"}
    needles = [*_fragments(token), URL_SECRET]
    _assert_absent(response.text + json.dumps(dict(response.headers)), needles, "response")
    authbridge_logs = [r for r in debug_logs.records if r.name.startswith("authbridge")]
    assert authbridge_logs  # start-up warning and the refusal were logged
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in authbridge_logs)
    _assert_absent(text, needles, "authbridge logs")
    _assert_absent(text, [fake_issuer.issuer + "/jwks", "/meta"], "authbridge logs (URLs)")
