"""Provider answers are JSON from the network, decoded strictly (SECURITY-CASES §3, §5, §10).

Discovery documents, key sets, introspection, userinfo and the provider APIs
all go through one decoder. What no JSON encoder writes (``NaN``,
``Infinity``, numbers that overflow to infinity), what two parsers read two
ways (a member name given twice, ``{"active": false, "active": true}``) and
nesting deeper than `MAX_DEPTH` make the whole answer garbage: the provider is
unavailable (``invalid_json``, a 503), never a `Principal` carrying values a
route cannot serialise, never a `RecursionError` (a 500).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authbridge import (
    AuthBridge,
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    Introspection,
    InvalidToken,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
    ResourceServer,
    UserinfoProvider,
)
from authbridge._http import RawResponse
from authbridge._json import MAX_DEPTH, InvalidJSON, UnencodableText, loads
from authbridge.testing import FakeFacebook, FakeGitHub, FakeGoogle, FakeIssuer, FakeUserinfo

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

NOW = 1_700_000_000.0
GOOGLE_CLIENT = "1234567890-fake.apps.googleusercontent.com"  # FakeGoogle's default client

NON_FINITE = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999", "1.5e309", "-2.0E+400",
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946"
    "649017977587207096330286416692887910946555547851940402630657488671505820681908902000"
    "708383676273854845817711531764475730270069855571366959622842914819860834936475292719"
    "074168444365510704342711559699508093042880177904174497792.0",  # just above float max
]  # fmt: skip
"""Every spelling of a number no JSON encoder can write back."""


# -- JSON text with duplicates and odd numbers, written by hand --------------------------------


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: its members in order, a name possibly twice."""

    members: tuple[tuple[tuple[str, str], Any], ...]  # ((spelling, decoded name), value)


@dataclass(frozen=True)
class Arr:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Raw:
    """A number written as this exact text."""

    text: str


# Different spellings of one name: escapes decode to the same member name.
NAMES = st.sampled_from(
    [("a", "a"), ("\\u0061", "a"), ("b", "b"), ("B", "B"), ("sub", "sub"), ("s\\u0075b", "sub")]
)
ANY_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=4).map(
    lambda name: (json.dumps(name)[1:-1], name)
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=5)
)


def trees(leaves: st.SearchStrategy[Any], names: st.SearchStrategy[Any] = NAMES) -> Any:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4).map(lambda items: Arr(tuple(items)))
            | st.lists(st.tuples(names, inner), max_size=4).map(lambda m: Obj(tuple(m)))
        ),
        max_leaves=12,
    )


def write(tree: Any) -> str:
    if isinstance(tree, Obj):
        return "{" + ",".join(f'"{s}":{write(v)}' for (s, _), v in tree.members) + "}"
    if isinstance(tree, Arr):
        return "[" + ",".join(write(v) for v in tree.items) + "]"
    if isinstance(tree, Raw):
        return tree.text
    return json.dumps(tree)


def has_duplicate(tree: Any) -> bool:
    if isinstance(tree, Obj):
        names = [name for (_, name), _ in tree.members]
        return len(set(names)) != len(names) or any(has_duplicate(v) for _, v in tree.members)
    if isinstance(tree, Arr):
        return any(has_duplicate(v) for v in tree.items)
    return False


def has_raw(tree: Any) -> bool:
    if isinstance(tree, Obj):
        return any(has_raw(v) for _, v in tree.members)
    if isinstance(tree, Arr):
        return any(has_raw(v) for v in tree.items)
    return isinstance(tree, Raw)


def nested(depth: int, shape: str, inner: str = "1") -> str:
    """``inner`` inside ``depth`` levels of arrays, objects, or both in turn."""
    if depth == 0:
        return inner
    opening = {"array": "[", "object": '{"a":', "mixed": '[{"a":'}[shape]
    closing = {"array": "]", "object": "}", "mixed": "}]"}[shape]
    if shape == "mixed":  # two levels per repetition; an odd depth gets one more array
        half, odd = divmod(depth, 2)
        return "[" * odd + opening * half + inner + closing * half + "]" * odd
    return opening * depth + inner + closing * depth


def answer(text: str | bytes) -> RawResponse:
    body = text.encode() if isinstance(text, str) else text
    return RawResponse(200, httpx.Headers({"content-type": "application/json"}), body)


def refusal(text: str) -> str | None:
    """The reason ``loads`` gives for ``text``, or ``None`` when it accepts it."""
    try:
        loads(text.encode())
    except InvalidJSON as exc:
        reason = str(exc)
    else:
        return None
    # The provider answer built from the same text is garbage too.
    response = answer(text)
    read = response.json_array if text.startswith("[") else response.json_object
    with pytest.raises(ProviderUnavailable) as caught:
        read()
    assert caught.value.reason == "invalid_json"
    return reason


# -- the decoder ----------------------------------------------------------------------------


@given(tree=trees(SCALARS))
@PROPERTY
def test_a_repeated_member_name_at_any_depth_is_refused(tree: Any) -> None:
    text = write(tree)
    if has_duplicate(tree):
        assert refusal(text) == "duplicate_json_member"
    else:
        assert loads(text.encode()) == json.loads(text)
        assert loads(text) == json.loads(text)


@given(tree=trees(SCALARS | st.sampled_from(NON_FINITE).map(Raw), names=ANY_NAMES))
@PROPERTY
@example(tree=Obj(((("score", "score"), Raw("NaN")),)))
def test_a_non_finite_number_anywhere_is_refused(tree: Any) -> None:
    text = write(tree)
    reason = refusal(text)
    if has_raw(tree):
        assert reason in {"non_finite_number", "duplicate_json_member"}
        if not has_duplicate(tree):
            assert reason == "non_finite_number"
    else:
        assert reason in {None, "duplicate_json_member"}


@pytest.mark.parametrize("spelling", NON_FINITE)
def test_each_non_finite_spelling(spelling: str) -> None:
    for text in (f'{{"x":{spelling}}}', f"[1,{spelling}]", f'{{"a":[{{"b":{spelling}}}]}}'):
        assert refusal(text) == "non_finite_number"
    assert refusal('{"x":1.7976931348623157e308,"y":-5e-324,"z":1e-400}') is None


@given(depth=st.integers(1, 1200), shape=st.sampled_from(["array", "object", "mixed"]))
@PROPERTY
@example(depth=MAX_DEPTH, shape="array")
@example(depth=MAX_DEPTH + 1, shape="array")
@example(depth=MAX_DEPTH, shape="mixed")
@example(depth=MAX_DEPTH + 1, shape="object")
@example(depth=100_000, shape="array")
def test_nesting_is_bounded(depth: int, shape: str) -> None:
    text = nested(depth, shape)
    if depth <= MAX_DEPTH:
        assert refusal(text) is None
        assert loads(text) == json.loads(text)
    else:
        assert refusal(text) == "json_too_deep"


@given(
    brackets=st.integers(MAX_DEPTH, 5000),
    depth=st.integers(1, MAX_DEPTH - 2),
)
@PROPERTY
def test_many_brackets_but_shallow_is_fine(brackets: int, depth: int) -> None:
    """Brackets in strings, and many sibling containers, are not nesting."""
    text = json.dumps(
        {"s": "[{" * brackets, "a": [[]] * brackets, "d": json.loads(nested(depth, "mixed"))}
    )
    assert loads(text) == json.loads(text)


def test_text_in_a_string_is_decoded_as_strictly() -> None:
    """JSON carried inside a JSON string (Facebook's batch answers) arrives as ``str``."""
    assert loads('{"data": {"is_valid": true}}') == {"data": {"is_valid": True}}
    for text, error in [
        ('{"a": NaN}', InvalidJSON),
        ('{"a": 1, "a": 2}', InvalidJSON),
        (nested(MAX_DEPTH + 1, "array"), InvalidJSON),
        ('{"a": "\\ud800"}', UnencodableText),
        ('{"a": "\ud800"}', UnencodableText),  # the surrogate itself, no escape
        ('{"\udfff": 1}', UnencodableText),
    ]:
        with pytest.raises(error):
            loads(text)
    with pytest.raises(ValueError):  # noqa: PT011 - the decoder's own error
        loads('\ufeff{"a": 1}')  # a byte order mark belongs to bytes, not to decoded text


# -- through the resource server ----------------------------------------------------------------


def outcome(
    provider: Any, transport: httpx.AsyncBaseTransport, token: str, *, now: float | None = NOW
) -> Any:
    """What ``verify`` ends in: a `Principal` or a clean refusal (anything else fails the test)."""
    clock = {} if now is None else {"clock": lambda: now}

    async def run() -> Any:
        async with ResourceServer([provider], transport=transport, cache_size=0, **clock) as server:
            try:
                return await server.verify(token)
            except (InvalidToken, ProviderUnavailable) as exc:
                return exc

    return asyncio.run(run())


def assert_garbage(result: Any, provider: str) -> None:
    assert isinstance(result, ProviderUnavailable), result
    assert (result.reason, result.provider) == ("invalid_json", provider)


USERINFO_GARBAGE = {
    "nan": b'{"sub":"alice","score":NaN}',
    "infinity": b'{"sub":"alice","score":Infinity}',
    "minus_infinity": b'{"sub":"alice","nested":{"x":[-Infinity]}}',
    "overflow": b'{"sub":"alice","score":1e400}',
    "duplicate_sub": b'{"sub":"alice","sub":"mallory"}',
    "duplicate_escaped": b'{"sub":"alice","s\\u0075b":"mallory"}',
    "duplicate_nested": b'{"sub":"alice","address":{"country":"NL","country":"US"}}',
    "deep_600": nested(600, "object", '{"sub":"alice"}').encode(),
    "deep_sub_600": ('{"sub":"alice","x":' + nested(600, "array") + "}").encode(),
    "deep_just_over": ('{"sub":"alice","x":' + nested(MAX_DEPTH, "array") + "}").encode(),
}


def userinfo_with(body: bytes) -> tuple[UserinfoProvider, FakeUserinfo, str]:
    fake = FakeUserinfo(clock=lambda: NOW)
    token = fake.issue_token()
    fake.fail_next(200, body=body, headers={"content-type": "application/json"}, count=None)
    return (
        UserinfoProvider("op", fake.issuer, userinfo_endpoint=fake.userinfo_endpoint),
        fake,
        token,
    )


@pytest.mark.parametrize("body", list(USERINFO_GARBAGE.values()), ids=list(USERINFO_GARBAGE))
def test_userinfo_garbage_is_unavailable(body: bytes) -> None:
    provider, fake, token = userinfo_with(body)
    assert_garbage(outcome(provider, fake.transport, token), "op")


@given(depth=st.integers(0, 700), shape=st.sampled_from(["array", "object", "mixed"]))
@PROPERTY
@example(depth=MAX_DEPTH - 1, shape="object")  # the answer object is one level more
@example(depth=MAX_DEPTH, shape="object")
def test_userinfo_nesting_property(depth: int, shape: str) -> None:
    """Any nesting: a Principal a route can serialise, or invalid_json; nothing else."""
    provider, fake, token = userinfo_with(
        ('{"sub":"alice","x":' + nested(depth, shape) + "}").encode()
    )
    result = outcome(provider, fake.transport, token)
    if depth + 1 > MAX_DEPTH:
        assert_garbage(result, "op")
        return
    assert isinstance(result, Principal), result
    assert json.loads(result.model_dump_json())["claims"]["x"] == json.loads(nested(depth, shape))
    value, levels = result.claims["x"], 0
    while isinstance(value, list | dict):  # read-only all the way down
        with pytest.raises(TypeError, match="read-only"):
            value.clear()
        value, levels = (value[0] if isinstance(value, list) else value["a"]), levels + 1
    assert (levels, value) == (depth, 1)


def test_userinfo_garbage_over_http_is_a_503_not_a_500() -> None:
    fake = FakeUserinfo(clock=lambda: NOW)
    tokens = {name: fake.issue_token() for name in USERINFO_GARBAGE}
    deep_ok = fake.issue_token(x=json.loads(nested(MAX_DEPTH - 1, "mixed")))
    by_token = {token: USERINFO_GARBAGE[name] for name, token in tokens.items()}

    original = fake.transport.handle_async_request

    async def serve(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in by_token:
            return httpx.Response(
                200, content=by_token[token], headers={"content-type": "application/json"}
            )
        return await original(request)

    auth = AuthBridge(
        [UserinfoProvider("op", fake.issuer, userinfo_endpoint=fake.userinfo_endpoint)],
        transport=httpx.MockTransport(serve),
    )
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me", response_model=Principal)
    async def me(user: Principal = Security(auth.principal)) -> Principal:
        return user

    with TestClient(app, raise_server_exceptions=False) as client:
        for name, token in tokens.items():
            response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 503, (name, response.status_code, response.text)
            for leaked in ("mallory", "NaN", "Infinity", token):
                assert leaked not in response.text
        served = client.get("/me", headers={"Authorization": f"Bearer {deep_ok}"})
    assert served.status_code == 200
    assert served.json()["claims"]["x"] == json.loads(nested(MAX_DEPTH - 1, "mixed"))


# -- introspection --------------------------------------------------------------------------

INTROSPECT = "https://issuer.example.test/introspect"
ACTIVE = {
    "active": True,
    "iss": "https://issuer.example.test",
    "aud": "https://api.example.test",
    "sub": "alice",
    "client_id": "web",
    "token_type": "Bearer",
    "scope": "items:read",
    "exp": int(NOW) + 600,
}


def introspecting(body: Callable[[], bytes]) -> tuple[OIDCProvider, httpx.MockTransport]:
    provider = OIDCProvider(
        "idp",
        issuer="https://issuer.example.test",
        audience="https://api.example.test",
        introspection=Introspection(endpoint=INTROSPECT, client_id="api", client_secret="s" * 32),
    )

    issuer = FakeIssuer()  # the discovery document and key set of the same server

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == INTROSPECT:
            return httpx.Response(200, content=body(), headers={"content-type": "application/json"})
        return issuer.transport.handle_request(request)

    return provider, httpx.MockTransport(handler)


def active_with(extra: str) -> bytes:
    """The active answer with raw JSON text ``extra`` spliced in as further members."""
    return (json.dumps(ACTIVE)[:-1] + "," + extra + "}").encode()


INTROSPECTION_GARBAGE = {
    "inactive_then_active": b'{"active":false,"active":true,'
    + json.dumps({k: v for k, v in ACTIVE.items() if k != "active"}).encode()[1:],
    "active_then_inactive": active_with('"active":false'),
    "exp_infinite": active_with('"exp":Infinity'),
    "exp_nan": active_with('"exp":NaN'),
    "exp_overflow": active_with('"exp":1e400'),
    "extra_infinity": active_with('"x":Infinity'),
    "aud_twice": active_with('"aud":"https://other.example.test"'),
    "nested_duplicate": active_with('"ext":{"roles":["user"],"roles":["admin"]}'),
    "deep": active_with('"ext":' + nested(600, "mixed")),
}


@pytest.mark.parametrize(
    "body", list(INTROSPECTION_GARBAGE.values()), ids=list(INTROSPECTION_GARBAGE)
)
def test_introspection_garbage_is_unavailable(body: bytes) -> None:
    assert_garbage(outcome(*introspecting(lambda: body), "opaque-token-0123456789"), "idp")


def test_the_same_answer_written_plainly_is_accepted() -> None:
    result = outcome(*introspecting(lambda: json.dumps(ACTIVE).encode()), "opaque-token-0123456789")
    assert isinstance(result, Principal)
    assert result.subject == "alice"


@given(
    name=st.sampled_from([*ACTIVE, "ext"]),
    second=st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=2), max_leaves=4),
    where=st.sampled_from(["top", "nested"]),
)
@PROPERTY
def test_introspection_member_given_twice_is_never_believed(
    name: str, second: Any, where: str
) -> None:
    """Whichever member is repeated, with whatever second value: never a verdict."""
    repeated = f'"{name}":{json.dumps(second)}'
    extra = repeated if where == "top" else f'"ext":{{"{name}":1,{repeated}}}'
    result = outcome(*introspecting(lambda: active_with(extra)), "opaque-token-0123456789")
    if where == "top" and name == "ext":
        assert isinstance(result, Principal)  # "ext" given once: nothing repeated
    else:
        assert_garbage(result, "idp")


# -- discovery, key sets and the provider APIs ----------------------------------------------------


def with_document(fake: FakeIssuer, path: str, body: bytes) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == path:
            return httpx.Response(200, content=body, headers={"content-type": "application/json"})
        return fake.transport.handle_request(request)

    return httpx.MockTransport(handler)


def _discovery(fake: FakeIssuer, extra: str) -> bytes:
    return (json.dumps(fake.discovery_document())[:-1] + "," + extra + "}").encode()


def _jwks(fake: FakeIssuer, extra: str) -> bytes:
    return (json.dumps(fake.jwks())[:-1] + "," + extra + "}").encode()


DOCUMENTS: dict[str, Callable[[FakeIssuer], tuple[str, bytes]]] = {
    "discovery_issuer_twice": lambda f: (
        "/.well-known/openid-configuration",
        _discovery(f, '"issuer":"https://evil.example.test"'),
    ),
    "discovery_jwks_uri_twice": lambda f: (
        "/.well-known/openid-configuration",
        _discovery(f, f'"jwks_uri":"{f.jwks_uri}"'),
    ),
    "discovery_nan": lambda f: ("/.well-known/openid-configuration", _discovery(f, '"x":NaN')),
    "discovery_deep": lambda f: (
        "/.well-known/openid-configuration",
        _discovery(f, '"x":' + nested(MAX_DEPTH, "array")),
    ),
    "jwks_keys_twice": lambda f: ("/jwks", _jwks(f, '"keys":[]')),
    "jwks_key_member_twice": lambda f: (
        "/jwks",
        json.dumps(f.jwks()).replace('"kty": "RSA"', '"kty": "RSA", "kty": "oct"').encode(),
    ),
    "jwks_infinity": lambda f: ("/jwks", _jwks(f, '"x":-Infinity')),
    "jwks_deep": lambda f: ("/jwks", _jwks(f, '"x":' + nested(5000, "object"))),
}


@pytest.mark.parametrize("document", list(DOCUMENTS))
def test_metadata_and_key_set_garbage_fails_closed(document: str) -> None:
    fake = FakeIssuer()
    path, body = DOCUMENTS[document](fake)
    result = outcome(fake.provider("idp"), with_document(fake, path, body), fake.token(), now=None)
    assert isinstance(result, ProviderUnavailable), result
    assert "invalid_json" in result.reason
    # The same issuer, answering plainly, verifies the same kind of token.
    plainly = outcome(fake.provider("idp"), fake.transport, fake.token(), now=None)
    assert isinstance(plainly, Principal)


API_GARBAGE = [
    b'{"id":1,"login":"mona","id":2}',
    b'{"login":"mona","id":NaN}',
    b'{"x":' + nested(1000, "array").encode() + b"}",
]


@pytest.mark.parametrize("body", API_GARBAGE, ids=["duplicate", "nan", "deep"])
@pytest.mark.parametrize("mode", ["user", "app"])
def test_github_answer_garbage(body: bytes, mode: str) -> None:
    fake = FakeGitHub(clock=lambda: NOW)
    fake.fail_next(200, body=body, headers={"content-type": "application/json"})
    app = (
        {"client_id": fake.client_id, "client_secret": fake.client_secret} if mode == "app" else {}
    )
    provider = GitHubProvider(**app)
    assert_garbage(outcome(provider, fake.transport, FakeGitHub.well_formed_token()), provider.name)


@pytest.mark.parametrize("body", API_GARBAGE, ids=["duplicate", "nan", "deep"])
def test_google_answer_garbage(body: bytes) -> None:
    fake = FakeGoogle(clock=lambda: NOW)
    fake.fail_next(200, body=body, headers={"content-type": "application/json"})
    provider = GoogleProvider(GOOGLE_CLIENT, tokeninfo_url=fake.tokeninfo_url)
    assert_garbage(outcome(provider, fake.transport, "ya29." + "x" * 40), provider.name)


@pytest.mark.parametrize(
    "body",
    [b'[{"code":200,"body":"{}"},NaN]', b'[{"code":200,"code":400,"body":"{}"}]'],
    ids=["nan", "duplicate"],
)
def test_facebook_answer_garbage(body: bytes) -> None:
    fake = FakeFacebook(clock=lambda: NOW)
    fake.fail_next(200, body=body, headers={"content-type": "application/json"})
    provider = FacebookProvider(fake.app_id, fake.app_secret, graph_base=fake.graph_base)
    assert_garbage(outcome(provider, fake.transport, "EAA" + secrets.token_hex(40)), provider.name)
