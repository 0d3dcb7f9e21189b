"""SECURITY-CASES §3: malformed tokens and Authorization header variants."""

from __future__ import annotations

import base64
import json
import time
import types

import pytest
from fastapi.testclient import TestClient

from authbridge import AuthBridge, ConfigurationError, InvalidToken, OIDCProvider
from authbridge.jose import _compact, parse_compact

from ._support import (
    T0,
    accepted,
    assert_bare_challenge,
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

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _signed(fake_issuer, header_segment: str, payload_segment: str) -> str:
    """Sign the two segments exactly as given (even if malformed)."""
    data = f"{header_segment}.{payload_segment}"
    return f"{data}.{b64(sign_bytes('RS256', fake_issuer.key, data.encode('latin-1')))}"


def _raw(fake_issuer, header: bytes, payload: bytes) -> str:
    return _signed(fake_issuer, b64(header), b64(payload))


def _header_bytes(fake_issuer, **extra) -> bytes:
    return json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid, **extra}).encode()


def _payload_bytes(fake_issuer, clock, **extra) -> bytes:
    return json.dumps(claims_at(fake_issuer, clock, **extra)).encode()


# -- segments ------------------------------------------------------------------------------


def _segment_variants(token: str) -> dict[str, str]:
    h, p, s = token.split(".")
    return {
        "empty": "",
        "one_segment": h,
        "two_segments": f"{h}.{p}",
        "two_segments_trailing_dot": f"{h}.{p}.",
        "four_segments": f"{h}.{p}.{s}.{s}",
        "six_segments": f"{h}.{p}.{s}.{s}.{s}.{s}",
        "dots_only": "..",
        "four_dots": "....",
        "empty_header": f".{p}.{s}",
        "empty_payload": f"{h}..{s}",
        "empty_signature": f"{h}.{p}.",
        "leading_dot": f".{h}.{p}.{s}",
        "trailing_dot": f"{h}.{p}.{s}.",
        "double_dot": f"{h}..{p}.{s}",
        "swapped": f"{p}.{h}.{s}",
        "json_serialization": json.dumps({"payload": p, "protected": h, "signature": s}),
        "json_general": json.dumps(
            {"payload": p, "signatures": [{"protected": h, "signature": s}]}
        ),
        "quoted": f'"{token}"',
        "bearer_prefix": f"Bearer {token}",
        "url_encoded": token.replace("-", "%2D"),
    }


SEGMENT_CASES = list(_segment_variants("a.b.c"))


@pytest.mark.parametrize("case", SEGMENT_CASES)
def test_segment_structure(make_auth, fake_issuer, clock, upstream, case) -> None:
    token = _segment_variants(token_at(fake_issuer, clock))[case]
    result = rejected(make_auth(), token, warm=False)
    assert result.reason in {
        "malformed_token", "jwe_not_accepted", "malformed_base64url", "malformed_header",
        "unknown_issuer",  # "swapped": the header decodes as claims without an iss
        "unknown_token_format",  # not two dots, and no provider takes opaque tokens
    }  # fmt: skip
    assert upstream.urls == []  # refused before any key lookup: nothing fetched


@pytest.mark.parametrize("encrypted_key", ["", "ZW5jcnlwdGVkLWtleQ"])
def test_jwe_is_not_accepted(make_auth, fake_issuer, clock, upstream, encrypted_key) -> None:
    header = b64(
        json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": fake_issuer.kid}).encode()
    )
    jwe = f"{header}.{encrypted_key}.aXZpdml2aXZpdml2.Y2lwaGVydGV4dA.dGFndGFndGFndGFn"
    assert rejected(make_auth(), jwe, warm=False).reason == "jwe_not_accepted"
    # "dir" JWE with a JWS-like alg in its header: still not a JWS.
    header = b64(json.dumps({"alg": "RS256", "enc": "A256GCM"}).encode())
    assert rejected(make_auth(), f"{header}..aXY.Y3Q.dGFn", warm=False).reason == (
        "jwe_not_accepted"
    )
    # Three segments but a JWE-only header parameter.
    token = _raw(
        fake_issuer, _header_bytes(fake_issuer, enc="A256GCM"), _payload_bytes(fake_issuer, clock)
    )
    assert rejected(make_auth(), token, warm=False).reason == "unsupported_header:enc"
    assert upstream.urls == []


# -- base64url -----------------------------------------------------------------------------


def _non_canonical(segment: str) -> str:
    """The same bytes, spelled with non-zero unused bits in the last character."""
    unused = {2: 0x0F, 3: 0x03}[len(segment) % 4]
    value = _ALPHABET.index(segment[-1])
    assert value & unused == 0
    return segment[:-1] + _ALPHABET[value | 1]


def _header_of_length_mod3(fake_issuer, remainder: int) -> bytes:
    pad = ""
    while True:
        raw = _header_bytes(fake_issuer, x=pad)
        if len(raw) % 3 == remainder:
            return raw
        pad += "p"


@pytest.mark.parametrize("remainder", [1, 2])
@pytest.mark.parametrize("where", ["header", "payload"])
def test_non_canonical_base64url_in_signed_segments(
    make_auth, fake_issuer, clock, remainder, where
) -> None:
    header = _header_of_length_mod3(fake_issuer, remainder)
    payload = _payload_bytes(fake_issuer, clock)
    while len(payload) % 3 != remainder:
        payload = _payload_bytes(fake_issuer, clock, x="p" * (len(payload) % 7 + 1))
    h, p = b64(header), b64(payload)
    if where == "header":
        h = _non_canonical(h)
    else:
        p = _non_canonical(p)
    # Lenient decoders read the same bytes: the premise of the test.
    assert base64.urlsafe_b64decode(h + "==") == header
    assert base64.urlsafe_b64decode(p + "==") == payload
    # Signed over the odd spelling, so only the canonical-encoding rule refuses it.
    token = _signed(fake_issuer, h, p)
    assert rejected(make_auth(), token).reason == "non_canonical_base64url"


def test_non_canonical_signature(make_auth, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock)
    head, payload, sig = token.split(".")
    assert len(sig) % 4 == 2  # 256-byte RSA signature
    odd = _non_canonical(sig)
    assert base64.urlsafe_b64decode(odd + "==") == base64.urlsafe_b64decode(sig + "==")
    results = outcomes(make_auth(), [token, f"{head}.{payload}.{odd}"])
    assert results[0].subject == "alice"
    assert results[1].reason == "non_canonical_base64url"


def test_every_non_canonical_last_character(fake_issuer, clock) -> None:
    """All 15 (resp. 3) other spellings of the final character are refused."""
    for segment in ("QQ", "QUI"):  # b"A", b"AB"
        unused = {2: 0x0F, 3: 0x03}[len(segment) % 4]
        base = _ALPHABET.index(segment[-1])
        for extra in range(1, unused + 1):
            odd = segment[:-1] + _ALPHABET[base | extra]
            with pytest.raises(InvalidToken, match="non_canonical_base64url"):
                _compact.b64url_decode(odd)


@pytest.mark.parametrize(
    "mutation",
    [
        "pad_header_1", "pad_header_2", "pad_signature", "pad_all", "std_plus", "std_slash",
        "len_mod_4_is_1", "space_inside", "tab_inside", "newline_inside", "crlf_end",
        "leading_space", "trailing_space", "trailing_newline", "nul_inside", "percent",
        "non_ascii", "fullwidth_dot", "zero_width_space", "bom",
    ],
)  # fmt: skip
def test_invalid_base64url_and_whitespace(make_auth, fake_issuer, clock, upstream, mutation):
    token = token_at(fake_issuer, clock)
    h, p, s = token.split(".")
    variant = {
        "pad_header_1": f"{h}=.{p}.{s}",
        "pad_header_2": f"{h}==.{p}.{s}",
        "pad_signature": f"{h}.{p}.{s}==",
        "pad_all": f"{h}==.{p}==.{s}==",
        "std_plus": f"{h}.{p}.{s[:10]}+{s[11:]}",
        "std_slash": f"{h}.{p}.{s[:10]}/{s[11:]}",
        "len_mod_4_is_1": f"{h}.{p}A.{s}"
        if len(p) % 4 == 0
        else f"{h}.{p[: len(p) - len(p) % 4]}A.{s}",
        "space_inside": f"{h}.{p[:5]} {p[5:]}.{s}",
        "tab_inside": f"{h}.{p}.{s[:7]}\t{s[7:]}",
        "newline_inside": f"{h}.\n{p}.{s}",
        "crlf_end": f"{token}\r\n",
        "leading_space": f" {token}",
        "trailing_space": f"{token} ",
        "trailing_newline": f"{token}\n",
        "nul_inside": f"{h}.{p}\x00.{s}",
        "percent": f"{h}.{p}.{s[:4]}%3D{s[4:]}",
        "non_ascii": f"{h}.{p}é.{s}",
        "fullwidth_dot": f"{h}\uff0e{p}.{s}",
        "zero_width_space": f"{h}\u200b.{p}.{s}",
        "bom": f"\ufeff{token}",
    }[mutation]
    result = rejected(make_auth(), variant, warm=False)
    assert result.reason in {
        "malformed_token", "malformed_base64url", "jwe_not_accepted", "malformed_payload",
        "unknown_token_format",
    }  # fmt: skip
    assert upstream.urls == []


# -- JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe{}",
        b'{"alg":"RS256","x":"\xff"}',
        b'{"alg":"RS256","x":"\xc0\xaf"}',  # overlong
        b'{"alg":"RS256","x":"\xed\xa0\x80"}',  # UTF-8-encoded surrogate
        b'{"alg":"RS256","x":"\xf8\x88\x80\x80\x80"}',
        b"\xef\xbb\xbf" + b'{"alg":"RS256"}',  # BOM
        '{"alg":"RS256"}'.encode("utf-16"),
        '{"alg":"RS256"}'.encode("utf-32-le"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("where", ["header", "payload"])
def test_invalid_utf8(make_auth, fake_issuer, clock, raw, where) -> None:
    header = raw if where == "header" else _header_bytes(fake_issuer)
    payload = raw if where == "payload" else _payload_bytes(fake_issuer, clock)
    assert rejected(make_auth(), _raw(fake_issuer, header, payload)).reason == f"malformed_{where}"


@pytest.mark.parametrize(
    "value",
    [b"[]", b'["RS256"]', b'"RS256"', b"1", b"1.5", b"null", b"true", b"false", b'""', b"[{}]"],
    ids=repr,
)
@pytest.mark.parametrize("where", ["header", "payload"])
def test_non_object_json(make_auth, fake_issuer, clock, value, where) -> None:
    header = value if where == "header" else _header_bytes(fake_issuer)
    payload = value if where == "payload" else _payload_bytes(fake_issuer, clock)
    result = rejected(make_auth(), _raw(fake_issuer, header, payload))
    assert result.reason == f"{where}_not_an_object"


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"{", b"}", b"{}}", b"{} {}", b'{"a":1,}', b"{'alg':'RS256'}", b'{"a":01}',
     b'{"a":1}x', b"{a:1}", b'{"a":.5}', b'{"a":0x10}', b'{"a":"\x01"}', b'{"a":"\\x41"}'],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("where", ["header", "payload"])
def test_invalid_json(make_auth, fake_issuer, clock, raw, where) -> None:
    header = raw if where == "header" else _header_bytes(fake_issuer)
    payload = raw if where == "payload" else _payload_bytes(fake_issuer, clock)
    if raw == b"":
        # An empty segment fails the structural check before any decoding.
        assert rejected(make_auth(), _raw(fake_issuer, header, payload)).reason == "malformed_token"
        return
    assert rejected(make_auth(), _raw(fake_issuer, header, payload)).reason == f"malformed_{where}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999"])
@pytest.mark.parametrize("where", ["header", "payload"])
def test_non_finite_numbers_anywhere(make_auth, fake_issuer, clock, literal, where) -> None:
    """ "JSON must be ... without ... non-finite numbers" (jose/_compact.py): every spelling.

    ``NaN``/``Infinity`` literals are refused; an overflowing literal such as ``1e400``
    is the same non-finite value (``inf``) and must be refused as well.
    """
    if where == "header":
        header = _header_bytes(fake_issuer)[:-1] + f', "x": {literal}}}'.encode()
        payload = _payload_bytes(fake_issuer, clock)
    else:
        header = _header_bytes(fake_issuer)
        payload = _payload_bytes(fake_issuer, clock)[:-1] + f', "x": {literal}}}'.encode()
    with pytest.raises(InvalidToken):
        _compact.json_object(payload if where == "payload" else header, where)
    assert rejected(make_auth(), _raw(fake_issuer, header, payload)).reason in {
        "non_finite_number", f"malformed_{where}",
    }  # fmt: skip


@pytest.mark.parametrize("shape", ["array", "object", "mixed"])
@pytest.mark.parametrize("where", ["header", "payload"])
def test_deeply_nested_json(make_auth, fake_issuer, clock, shape, where) -> None:
    depth = 4000 if shape == "array" else 1800
    nested = {
        "array": "[" * depth + "]" * depth,
        "object": '{"a":' * depth + "1" + "}" * depth,
        "mixed": '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2),
    }[shape]
    if where == "header":
        header = b'{"alg":"RS256","typ":"at+jwt","x":' + nested.encode() + b"}"
        payload = _payload_bytes(fake_issuer, clock)
    else:
        header = _header_bytes(fake_issuer)
        payload = (
            json.dumps(claims_at(fake_issuer, clock, x="__X__")).replace('"__X__"', nested).encode()
        )
    token = _raw(fake_issuer, header, payload)
    assert len(token) < 16384
    assert rejected(make_auth(), token).reason == f"malformed_{where}"


def test_moderately_nested_json_is_fine(make_auth, fake_issuer, clock) -> None:
    nested = {"a": 1}
    for _ in range(50):
        nested = {"a": [nested]}
    assert accepted(make_auth(), token_at(fake_issuer, clock, deep=nested)).subject == "alice"


DUPLICATES = {
    "header_alg_none_last": (b'{"alg":"RS256","typ":"at+jwt","alg":"none"}', None),
    "header_alg_none_first": (b'{"alg":"none","typ":"at+jwt","alg":"RS256"}', None),
    "header_kid": (b'{"alg":"RS256","kid":"attacker","kid":"test-key-1"}', None),
    "header_escaped_name": (b'{"alg":"RS256","\\u0061lg":"RS256"}', None),
    "header_typ": (b'{"alg":"RS256","typ":"JWT","typ":"at+jwt"}', None),
    "payload_iss": (None, '"iss":"https://evil.example.test","iss":"{iss}"'),
    "payload_aud": (None, '"aud":"https://other.example.test","aud":"{aud}"'),
    "payload_sub": (None, '"sub":"admin","sub":"alice"'),
    "payload_exp": (None, '"exp":1,"exp":{exp}'),
    "payload_scope": (None, '"scope":"","scope":"admin items:read"'),
    "payload_escaped_name": (None, '"\\u0073ub":"admin","sub":"alice"'),
    "payload_nested": (None, '"realm_access":{{"roles":["user"],"roles":["admin"]}}'),
    "payload_nested_deep": (None, '"x":[{{"a":{{"b":1,"b":2}}}}]'),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_member_names(make_auth, fake_issuer, clock, case) -> None:
    header, members = DUPLICATES[case]
    if header is None:
        header = _header_bytes(fake_issuer)
    if members is None:
        payload = _payload_bytes(fake_issuer, clock)
    else:
        claims = claims_at(fake_issuer, clock)
        text = members.format(iss=fake_issuer.issuer, aud=fake_issuer.audience, exp=T0 + 300)
        payload = (json.dumps(claims)[:-1] + ", " + text + "}").encode()
    assert rejected(make_auth(), _raw(fake_issuer, header, payload)).reason == (
        "duplicate_json_member"
    )


def test_duplicate_check_premise() -> None:
    """Python's own json module silently keeps the last duplicate: the parser must not."""
    assert json.loads('{"alg":"RS256","alg":"none"}') == {"alg": "none"}
    with pytest.raises(InvalidToken, match="duplicate_json_member"):
        _compact.json_object(b'{"alg":"RS256","alg":"none"}', "header")


# -- size cap ------------------------------------------------------------------------------


def _big_token(fake_issuer, clock, size: int) -> str:
    token = token_at(fake_issuer, clock)
    h, p, s = token.split(".")
    filler = "A" * max(0, size - len(token))
    return f"{h}.{p}{filler}.{s}"


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any decoding or hashing work starts."""

    def boom(*args, **kwargs):
        raise AssertionError("decoding work started on an oversized token")

    monkeypatch.setattr(_compact, "b64url_decode", boom)
    monkeypatch.setattr(_compact, "_b64decode", boom)
    monkeypatch.setattr(_compact, "json_object", boom)
    monkeypatch.setattr(_compact, "_CACHED", types.SimpleNamespace(get=boom))  # no cache lookup
    monkeypatch.setattr("authbridge.resource.server.hashlib", types.SimpleNamespace(sha256=boom))


@pytest.mark.parametrize("size", [16385, 20_000, 64 * 1024, 1024 * 1024, 5 * 1024 * 1024])
def test_oversized_tokens_refused_before_decoding(
    make_auth, fake_issuer, clock, upstream, no_decoding, size
) -> None:
    token = _big_token(fake_issuer, clock, size)
    assert len(token) >= size
    auth = make_auth()
    started = time.perf_counter()
    result = rejected(auth, token, warm=False)
    assert time.perf_counter() - started < 0.5
    assert result.reason == "token_too_large"
    assert upstream.urls == []


def test_parse_compact_checks_size_first(no_decoding) -> None:
    with pytest.raises(InvalidToken, match="token_too_large"):
        parse_compact("\xff" * (5 * 1024 * 1024), max_bytes=16384)


def test_size_cap_boundary(make_auth, fake_issuer, clock) -> None:
    token = token_at(fake_issuer, clock)
    padded = token_at(fake_issuer, clock, pad="x" * 5000)
    results = outcomes(make_auth(max_token_bytes=len(padded)), [padded, token])
    assert [r.subject for r in results] == ["alice", "alice"]
    assert rejected(make_auth(max_token_bytes=len(padded) - 1), padded).reason == "token_too_large"


def test_per_provider_size_cap(fake_issuer, clock, upstream) -> None:
    """With several providers, each one's own cap applies to tokens routed to it."""
    small = fake_issuer.provider(max_token_bytes=1024)
    big = OIDCProvider(
        "big", issuer="https://big.example.test", audience="x", max_token_bytes=65536
    )
    auth = AuthBridge(providers=[small, big], transport=upstream.transport, clock=clock)
    token = token_at(fake_issuer, clock, pad="x" * 2000)
    assert 1024 < len(token) < 65536
    assert rejected(auth, token, warm=False).reason == "token_too_large"


@pytest.mark.parametrize("cap", [0, 1, 255, -1])
def test_tiny_size_cap_is_a_configuration_error(fake_issuer, cap) -> None:
    with pytest.raises(ConfigurationError):
        fake_issuer.provider(max_token_bytes=cap)


def test_oversized_token_over_http(make_auth, fake_issuer, clock, no_decoding) -> None:
    token = _big_token(fake_issuer, clock, 1024 * 1024)
    with TestClient(make_app(make_auth())) as client:
        started = time.perf_counter()
        assert_r401(client.get("/items", headers=bearer(token)))
        assert time.perf_counter() - started < 2.0


# -- Authorization header variants -----------------------------------------------------------


@pytest.fixture
def http(make_auth):
    def open_client(**bridge):
        return TestClient(make_app(make_auth(bridge=bridge)))

    return open_client


@pytest.fixture
def token(fake_issuer, clock):
    return token_at(fake_issuer, clock)


def test_no_credentials(http) -> None:
    with http() as client:
        assert_bare_challenge(client.get("/items"))
        assert client.get("/maybe").json() == {"sub": None}


@pytest.mark.parametrize(
    "value", ["Bearer", "bearer", "Bearer ", "Bearer    ", "BEARER\t", "  Bearer  "], ids=repr
)
def test_bearer_without_token(http, value) -> None:
    with http() as client:
        assert_r401(client.get("/items", headers={"Authorization": value}))
        # Presenting the scheme is not anonymity.
        assert_r401(client.get("/maybe", headers={"Authorization": value}))


@pytest.mark.parametrize(
    "template",
    ["Bearer {t}", "bearer {t}", "BEARER {t}", "BeArEr {t}", "Bearer  {t}", "Bearer     {t}",
     "  Bearer {t}", "Bearer {t}  ", " Bearer  {t} "],
    ids=repr,
)  # fmt: skip
def test_valid_header_spellings(http, token, template) -> None:
    with http() as client:
        response = client.get("/items", headers={"Authorization": template.format(t=token)})
        assert response.status_code == 200, response.text
        assert response.json() == {"sub": "alice"}


@pytest.mark.parametrize(
    "template",
    ["Bearer {t}=", "Bearer {t}==", "Bearer ={t}", "Bearer {t},", "Bearer {t};",
     'Bearer "{t}"', "Bearer {t}\x00", "Bearer <{t}>", "Bearer {t}%20", "Bearer {t}.",
     "Bearer {t}~", "Bearer {t}+"],
    ids=repr,
)  # fmt: skip
def test_corrupted_token_in_header(http, token, template) -> None:
    with http() as client:
        value = template.format(t=token)
        assert_r401(client.get("/items", headers={"Authorization": value}))
        assert_r401(client.get("/maybe", headers={"Authorization": value}))


@pytest.mark.parametrize(
    "value",
    ["Basic dXNlcjpwYXNzd29yZA==", "Digest username=\"u\", realm=\"r\"", "DPoP {t}", "Token {t}",
     "JWT {t}", "MAC id=\"x\"", "Negotiate YIIB", "{t}", "Bearer-{t}", "Bearer={t}", "Bearer:{t}",
     "Bearer\u00a0{t}", "", "   "],
    ids=repr,
)  # fmt: skip
def test_other_schemes_get_a_bare_challenge(http, token, value) -> None:
    # Passed as latin-1 bytes: that is how servers decode header values.
    header = value.format(t=token).encode("latin-1")
    with http() as client:
        assert_bare_challenge(client.get("/items", headers={"Authorization": header}))


@pytest.mark.parametrize("value", ["Bearer {t} {t}", "Bearer {t} extra", "Bearer\t{t}"], ids=repr)
def test_malformed_bearer_credentials(http, token, value) -> None:
    value = value.format(t=token)
    with http() as client:
        assert client.get("/items", headers={"Authorization": value}).status_code == 401


@pytest.mark.parametrize("value", ["Bearer {t} {t}", "Bearer {t} extra", "Bearer\t{t}"], ids=repr)
def test_malformed_bearer_credentials_are_not_anonymous(http, token, value) -> None:
    """``optional_principal``: "a presented but invalid token is still refused"."""
    value = value.format(t=token)
    with http() as client:
        response = client.get("/maybe", headers={"Authorization": value})
        assert response.status_code == 401, response.text


@pytest.mark.parametrize("second", ["same", "garbage", "basic"])
def test_repeated_authorization_header(http, token, second) -> None:
    other = {"same": f"Bearer {token}", "garbage": "Bearer x.y.z", "basic": "Basic dTpw"}[second]
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", other)]
    with http() as client:
        assert_r401(client.get("/items", headers=headers))
        assert_r401(client.get("/maybe", headers=headers))
        assert_r401(client.get("/items", headers=list(reversed(headers))))


def test_token_in_query_string_is_ignored_by_default(http, token) -> None:
    with http() as client:
        assert_bare_challenge(client.get("/items", params={"access_token": token}))
        assert client.get("/maybe", params={"access_token": token}).json() == {"sub": None}


def test_token_in_form_body_is_ignored(http, token) -> None:
    with http() as client:
        response = client.request(
            "GET", "/items", content=f"access_token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert_bare_challenge(response)


def test_token_in_query_string_when_enabled(http, token) -> None:
    with http(allow_query_token=True) as client:
        assert client.get("/items", params={"access_token": token}).json() == {"sub": "alice"}
        assert_r401(client.get("/items", params=[("access_token", token)] * 2))
        assert_r401(client.get("/items", params={"access_token": ""}))
        assert_r401(client.get("/items", params={"access_token": "x.y.z"}))
        assert_r401(client.get("/items", params={"access_token": token + "="}))
        # The header wins over the query parameter.
        response = client.get(
            "/items", params={"access_token": token}, headers={"Authorization": "Bearer x.y.z"}
        )
        assert_r401(response)
        assert_bare_challenge(client.get("/items", params={"token": token}))
