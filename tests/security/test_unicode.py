"""SECURITY-CASES §2: strings that cannot be encoded (lone surrogates) never get in.

A JSON ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 log line or
response can carry. Such a string anywhere in a token's header or claims (keys,
nested values) is refused at parse time, as is one in a provider's answer; a
properly paired escape (an emoji outside the BMP) is an ordinary character.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authbridge import (
    AuthBridge,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
)
from authbridge._http import RawResponse
from authbridge._json import UnencodableText, has_lone_surrogate, loads, surrogate_escaped
from authbridge.jose import parse_compact
from authbridge.jose._compact import json_object

from ._support import (
    assert_r401,
    bearer,
    claims_at,
    make_app,
    make_token,
    outcome,
    outcomes,
    rejected,
    token_at,
)

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text of every kind, lone surrogates included (hypothesis leaves category Cs out by default).
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(st.characters(codec=None) | surrogates, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=10,
)


def unencodable(value: Any) -> bool:
    """The oracle: the standard library cannot write ``value`` out as UTF-8 JSON."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def escaped(value: Any) -> bytes:
    """``value`` as ASCII JSON: every non-ASCII character becomes a ``\\u`` escape."""
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def expected_refusal(raw: bytes) -> str | None:
    """The reason strict parsing must give for the JSON ``raw`` (``None``: accepted).

    Two distinct keys can decode to one (a two-surrogate key and the character
    they pair into): that is a duplicate member, found while decoding.
    """
    duplicates = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        duplicates = duplicates or len({k for k, _ in items}) != len(items)
        return dict(items)

    decoded = json.loads(raw, object_pairs_hook=pairs)
    if duplicates:
        return "duplicate_json_member"
    return "invalid_unicode" if unencodable(decoded) else None


def _signed(fake_issuer, header: dict[str, Any], claims: dict[str, Any]) -> str:
    # make_token writes ASCII JSON: every non-ASCII character as a \u escape.
    return make_token(header, claims, fake_issuer.key, alg="RS256")


# -- the shared check -----------------------------------------------------------------------


@given(value=json_values)
@PROPERTY
def test_check_matches_the_encoder(value) -> None:
    text = escaped(value).decode()
    decoded = json.loads(text)
    assert has_lone_surrogate(decoded) is unencodable(decoded)
    assert surrogate_escaped(text, decoded) is unencodable(decoded)


@given(value=json_values)
@PROPERTY
def test_token_json_refused_exactly_when_unencodable(value) -> None:
    raw = escaped({"v": value})
    reason = expected_refusal(raw)
    if reason is None:
        assert json_object(raw, "payload") == json.loads(raw)
    else:
        with pytest.raises(InvalidToken) as caught:
            json_object(raw, "payload")
        assert caught.value.reason == reason


@given(
    prefix=st.text(max_size=6),
    suffix=st.text(max_size=6),
    unit=st.integers(0xD800, 0xDFFF),
    spelling=st.sampled_from(["{:04x}", "{:04X}"]),
)
@PROPERTY
def test_a_lone_escape_anywhere_is_refused(prefix, suffix, unit, spelling) -> None:
    """A single surrogate escape spliced into a string, a key or a nested array."""
    escape = "\\u" + spelling.format(unit)
    for template in ('{{"sub":"{s}"}}', '{{"{s}":1}}', '{{"a":{{"b":["x","{s}"]}}}}'):
        text = template.format(s=json.dumps(prefix)[1:-1] + escape + json.dumps(suffix)[1:-1])
        with pytest.raises(InvalidToken, match="invalid_unicode"):
            json_object(text.encode(), "payload")


@pytest.mark.parametrize("escape", ["\\ud83d\\ude00", "\\uD83D\\uDE00", "\\udbff\\udfff"])
def test_paired_escapes_are_characters(escape) -> None:
    value = json_object(f'{{"sub":"a{escape}b"}}'.encode(), "payload")
    assert value["sub"].encode("utf-8")  # encodable: one code point outside the BMP
    assert len(value["sub"]) == 3


@pytest.mark.parametrize(
    "escape", ["\\ude00\\ud83d", "\\ud83d\\ud83d", "\\ud83d \\ude00", "\\ud83d\\u0041", "\\udfff"]
)
def test_unpaired_orders_are_refused(escape) -> None:
    with pytest.raises(InvalidToken, match="invalid_unicode"):
        json_object(f'{{"sub":"{escape}"}}'.encode(), "payload")


def test_escaped_backslash_is_not_an_escape() -> None:
    """``\\\\ud800`` is a backslash followed by ``ud800``: ordinary text."""
    assert json_object(b'{"sub":"\\\\ud800"}', "payload") == {"sub": "\\ud800"}


def test_encoded_surrogates_without_escape_are_malformed() -> None:
    """UTF-8 cannot carry a surrogate: CESU-style bytes are invalid UTF-8."""
    raw = '{"sub":"\ud800"}'.encode("utf-8", "surrogatepass")
    with pytest.raises(InvalidToken, match="malformed_payload"):
        json_object(raw, "payload")
    with pytest.raises(ValueError, match="utf-8"):
        loads(raw)


def test_deep_nesting_is_walked_without_recursion() -> None:
    depth = 900
    text = "[" * depth + '"\\ud800"' + "]" * depth
    assert has_lone_surrogate(json.loads(text))
    assert not has_lone_surrogate(json.loads("[" * depth + "]" * depth))


# -- tokens, through the whole resource server -------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("sub", "\ud800"),
        ("sub", "alice\udfff"),
        ("scope", "items:read \udc00"),
        ("aud", ["https://api.example.test", "\ud800"]),
        ("nested", {"roles": ["admin", "\udbff"]}),
        ("key", {"\ud800": "x"}),
    ],
)
def test_signed_token_with_lone_surrogate_claim(make_auth, fake_issuer, clock, where, value):
    claims = claims_at(fake_issuer, clock)
    if where == "nested":
        claims["realm_access"] = value
    elif where == "key":
        claims["ext"] = value
    else:
        claims[where] = value
    header = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
    token = _signed(fake_issuer, header, claims)
    results = outcomes(make_auth(), [token, token_at(fake_issuer, clock)])
    assert isinstance(results[0], InvalidToken)
    assert results[0].reason == "invalid_unicode"
    assert isinstance(results[1], Principal)


@pytest.mark.parametrize(
    "header",
    [
        {"kid": "test-key-1\ud800"},
        {"typ": "at+jwt\udc00"},
        {"alg": "RS256\ud800"},
        {"x-\ud800": 1},
        {"jwk": {"kid": "\ud800"}},
    ],
    ids=repr,
)
def test_signed_token_with_lone_surrogate_header(make_auth, fake_issuer, clock, header):
    jose = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid, **header}
    result = outcome(make_auth(), _signed(fake_issuer, jose, claims_at(fake_issuer, clock)))
    assert isinstance(result, InvalidToken)
    assert result.reason == "invalid_unicode"


def test_refused_before_any_routing(make_auth, fake_issuer, clock, upstream) -> None:
    """parse_compact refuses it: no issuer lookup, no key fetch, no Principal."""
    token = make_token({"alg": "RS256"}, {"iss": "x", "sub": "\ud800"}, signature=b"x")
    with pytest.raises(InvalidToken, match="invalid_unicode"):
        parse_compact(token, max_bytes=16384)
    genuine_issuer = _signed(
        fake_issuer, {"alg": "RS256", "kid": "\udc00"}, claims_at(fake_issuer, clock)
    )
    assert rejected(make_auth(), genuine_issuer, warm=False).reason == "invalid_unicode"
    assert upstream.urls == []


@given(value=json_values)
@PROPERTY
def test_any_claim_value_outcome(make_auth, fake_issuer, clock, value) -> None:
    """Any extra claim: refused as invalid_unicode exactly when it cannot be encoded."""
    claims = {**claims_at(fake_issuer, clock), "ext": value}
    header = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
    result = outcome(make_auth(), _signed(fake_issuer, header, claims))
    reason = expected_refusal(escaped(claims))
    if reason is not None:
        assert isinstance(result, InvalidToken)
        assert result.reason == reason
    else:
        assert isinstance(result, Principal), result
        json.dumps(dict(result.claims), ensure_ascii=False).encode("utf-8")


def test_lone_surrogate_subject_over_http_is_a_401_not_a_500(make_auth, fake_issuer, clock):
    header = {"alg": "RS256", "typ": "at+jwt", "kid": fake_issuer.kid}
    bad = _signed(fake_issuer, header, claims_at(fake_issuer, clock, sub="\ud800"))
    emoji = make_token(header, claims_at(fake_issuer, clock, sub="al\U0001f600ce"), fake_issuer.key)
    with TestClient(make_app(make_auth())) as client:
        assert_r401(client.get("/items", headers=bearer(bad)))
        answer = client.get("/items", headers=bearer(emoji))
        assert answer.status_code == 200
        assert answer.json() == {"sub": "al\U0001f600ce"}


# -- provider answers ---------------------------------------------------------------------


def _raw(body: bytes) -> RawResponse:
    return RawResponse(200, httpx.Headers(), body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"active":true,"sub":"\\ud800"}',
        b'{"active":true,"\\udfff":1}',
        b'{"a":[{"b":["\\ud83d"]}]}',
    ],
)
def test_provider_answer_with_lone_surrogate_is_garbage(body) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        _raw(body).json_object(provider="p")
    assert caught.value.reason == "invalid_unicode"
    assert caught.value.provider == "p"
    with pytest.raises(ProviderUnavailable, match="invalid_unicode"):
        _raw(b"[" + body + b"]").json_array()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"sub":"\ud800"}'.encode("utf-8", "surrogatepass"), "invalid_json"),
        ('{"sub":"x"}'.encode("utf-16"), "invalid_json"),
        (b'{"sub":"\\ud83d\\ude00"}', None),
        (b'\xef\xbb\xbf{"sub":"x"}', None),
    ],
)
def test_provider_answers_must_be_utf8(body, reason) -> None:
    if reason is None:
        assert isinstance(_raw(body).json_object(), dict)
    else:
        with pytest.raises(ProviderUnavailable, match=reason):
            _raw(body).json_object()


@given(value=json_values)
@PROPERTY
def test_provider_answer_property(value) -> None:
    """Refused exactly as a token segment would be: a key spelled twice is garbage too."""
    body = escaped({"v": value})
    reason = expected_refusal(body)
    if reason is None:
        assert _raw(body).json_object() == json.loads(body)
    else:
        expected = "invalid_json" if reason == "duplicate_json_member" else reason
        with pytest.raises(ProviderUnavailable, match=expected):
            _raw(body).json_object()


@pytest.mark.parametrize(
    "body",
    [
        '{"\\ud83d\\ude00":1,"\U0001f600":2}',  # a pair of escapes and the character they spell
        '{"a":{"\\u00e9":1,"\u00e9":2}}',  # an escape and the character, nested
        '{"sub":"alice","\\u0073ub":"mallory"}',
    ],
)
def test_provider_answer_with_one_name_spelled_twice_is_garbage(body: str) -> None:
    with pytest.raises(ProviderUnavailable, match="invalid_json"):
        _raw(body.encode()).json_object()
    with pytest.raises(InvalidToken, match="duplicate_json_member"):
        json_object(body.encode(), "payload")  # what a token segment gets for the same text


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ('{"sub":"\ud800"}', '{"sub":"\\ud800"}'),
        ('{"\udfff":1}', '{"\\udfff":1}'),
        ('["a\udbff"]', '["a\\udbff"]'),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_escaped_or_not(text: str, escaped: str) -> None:
    """JSON that arrives as ``str`` (inside another document) can hold the surrogate itself."""
    with pytest.raises(UnencodableText):
        loads(text)
    with pytest.raises(UnencodableText):
        loads(escaped)
    assert loads(escaped.replace("\\u", "\\\\u")) == json.loads(escaped.replace("\\u", "\\\\u"))


def test_introspection_answer_with_lone_surrogate_fails_closed(fake_issuer, clock, caplog):
    endpoint = f"{fake_issuer.issuer}/introspect"
    answers: list[httpx.Request] = []

    def introspect(request: httpx.Request) -> httpx.Response:
        answers.append(request)
        body = {
            "active": True,
            "iss": fake_issuer.issuer,
            "aud": fake_issuer.audience,
            "sub": "\ud800",
            "client_id": "c",
            "exp": int(clock.now) + 60,
            "token_type": "Bearer",
        }
        return httpx.Response(
            200, content=escaped(body), headers={"content-type": "application/json"}
        )

    provider = OIDCProvider(
        "idp",
        issuer=fake_issuer.issuer,
        audience=fake_issuer.audience,
        introspection=Introspection(endpoint=endpoint, client_id="api", client_secret="s" * 32),
    )
    auth = AuthBridge(providers=[provider], transport=httpx.MockTransport(introspect), clock=clock)
    with caplog.at_level(logging.DEBUG):
        result = outcome(auth, "opaque-token-0123456789", warm=False)
    assert answers, "the introspection endpoint was asked"
    assert isinstance(result, ProviderUnavailable)
    assert result.reason == "invalid_unicode"
    assert "\ud800" not in caplog.text
    assert "opaque-token-0123456789" not in caplog.text


def test_jwks_with_lone_surrogate_is_garbage(fake_issuer, clock, upstream, make_auth) -> None:
    upstream.on(
        "/jwks",
        lambda request: httpx.Response(200, content=b'{"keys":[{"kty":"RSA","kid":"\\ud800"}]}'),
    )
    result = outcome(make_auth(), token_at(fake_issuer, clock), warm=False)
    assert isinstance(result, ProviderUnavailable)
