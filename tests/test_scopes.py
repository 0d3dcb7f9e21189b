"""Scope syntax (RFC 6749 §3.3, SECURITY-CASES §2) wherever scopes are read.

Only U+0020 separates scope tokens, and a token with a character outside
``%x21 / %x23-5B / %x5D-7E`` grants nothing. Checked on the parser itself
(property-based), then end to end for every source of scopes: JWT ``scope`` and
``scp``, introspection answers, Google's token-info ``scope``, GitHub's
``X-OAuth-Scopes`` header and Facebook's ``scopes`` array.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authbridge import (
    AuthBridge,
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    Introspection,
    OIDCProvider,
    Principal,
    ResourceServer,
)
from authbridge.resource.base import scope_tokens
from authbridge.testing import FakeFacebook, FakeGitHub, FakeGoogle, FakeIssuer

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
"""RFC 6749 §3.3 ``scope-token``, written independently of the implementation."""

# Every character Python's str.split() treats as whitespace, except U+0020.
OTHER_WHITESPACE = sorted(
    c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace() and c != " "
)
# Characters that are not whitespace but are outside the scope-token syntax.
OTHER_INVALID = ['"', "\\", "\x7f", "\x00", "é", "\u200b", "\ufeff", "\U0001f600"]

scope_token = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)
any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from([" ", " ", "a", ":", '"', "\\", *OTHER_WHITESPACE]),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=40,
)


def reference(value: str) -> frozenset[str]:
    """What RFC 6749 §3.3 grants for a scope string (empty tokens between spaces ignored)."""
    return frozenset(t for t in value.split(" ") if SCOPE_TOKEN.fullmatch(t))


# -- the parser -------------------------------------------------------------------------------


def test_every_other_whitespace_character_is_covered() -> None:
    names = {unicodedata.name(c, f"U+{ord(c):04X}") for c in OTHER_WHITESPACE}
    for expected in ("NO-BREAK SPACE", "IDEOGRAPHIC SPACE", "LINE SEPARATOR", "U+001F"):
        assert expected in names
    assert {"\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85"} <= set(OTHER_WHITESPACE)


@pytest.mark.parametrize("separator", OTHER_WHITESPACE, ids=lambda c: f"U+{ord(c):04X}")
def test_only_u0020_separates(separator: str) -> None:
    value = f"openid{separator}items:read"
    assert scope_tokens(value) == frozenset()
    assert scope_tokens(f"email {value} profile") == {"email", "profile"}
    assert scope_tokens([value, "email"]) == {"email"}


@pytest.mark.parametrize("char", OTHER_INVALID, ids=lambda c: f"U+{ord(c):04X}")
def test_a_token_with_a_character_outside_the_syntax_grants_nothing(char: str) -> None:
    assert scope_tokens(f"items:read{char} admin") == {"admin"}
    assert scope_tokens(f"{char}items:read") == frozenset()
    assert scope_tokens([f"items:read{char}", "admin"]) == {"admin"}


@given(st.lists(scope_token, max_size=8), st.lists(st.integers(1, 3), min_size=9, max_size=9))
def test_valid_tokens_separated_by_spaces_are_granted(tokens: list[str], gaps: list[int]) -> None:
    value = "".join(token + " " * gap for token, gap in zip(tokens, gaps, strict=False))
    assert scope_tokens(value) == frozenset(tokens)
    assert scope_tokens(" " + value) == frozenset(tokens)
    assert scope_tokens(tokens) == frozenset(tokens)


@given(any_text)
def test_the_fast_path_agrees_with_the_rfc(value: str) -> None:
    granted = scope_tokens(value)
    assert granted == reference(value)
    for token in granted:
        assert SCOPE_TOKEN.fullmatch(token)
        assert token in value.split(" ")


@given(st.lists(st.one_of(any_text, st.integers(), st.none(), st.lists(scope_token))))
def test_arrays_grant_exactly_their_valid_string_elements(values: list[Any]) -> None:
    expected = {v for v in values if isinstance(v, str) and SCOPE_TOKEN.fullmatch(v)}
    assert scope_tokens(values) == expected


@pytest.mark.parametrize("value", [None, 1, True, {"items:read": True}, ("items:read",)])
def test_other_types_grant_nothing(value: Any) -> None:
    assert scope_tokens(value) == frozenset()


# -- JWTs and introspection answers -------------------------------------------------------------

SMUGGLED = [f"openid{c}items:read" for c in ("\t", "\n", "\u00a0", "\u3000", "\x1f")]


@pytest.fixture
def issuer(authbridge_signing_key: Any) -> FakeIssuer:
    return FakeIssuer(key=authbridge_signing_key)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=any_text)
async def test_jwt_scope_and_scp_follow_the_rfc(issuer: FakeIssuer, value: str) -> None:
    server = ResourceServer([issuer.provider()], transport=issuer.transport)
    async with server:
        by_scope = await server.verify(issuer.token(scope=value))
        by_scp = await server.verify(issuer.token(scp=value))
        by_list = await server.verify(issuer.token(scp=[value, "email"]))
    assert by_scope.scopes == by_scp.scopes == reference(value)
    assert by_list.scopes == {"email"} | ({value} & reference(value))


@pytest.mark.parametrize("value", SMUGGLED, ids=repr)
def test_smuggled_scope_is_403_over_http(issuer: FakeIssuer, value: str) -> None:
    auth = AuthBridge([issuer.provider()], transport=issuer.transport)
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"scopes": sorted(user.scopes)}

    with TestClient(app) as client:
        smuggled = client.get(
            "/items", headers={"Authorization": f"Bearer {issuer.token(scope=value)}"}
        )
        honest = client.get(
            "/items", headers={"Authorization": f"Bearer {issuer.token(scope='openid items:read')}"}
        )
    assert smuggled.status_code == 403
    assert 'error="insufficient_scope"' in smuggled.headers["www-authenticate"]
    assert honest.status_code == 200


def introspecting(issuer: FakeIssuer, scope: Any) -> tuple[OIDCProvider, httpx.MockTransport]:
    endpoint = f"{issuer.issuer}/introspect"

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/introspect":
            return httpx.Response(
                200,
                json={
                    "active": True,
                    "aud": issuer.audience,
                    "token_type": "Bearer",
                    "scope": scope,
                },
            )
        return await issuer.transport.handle_async_request(request)

    provider = issuer.provider(
        introspection=Introspection(client_id="api", client_secret="secret", endpoint=endpoint)
    )
    return provider, httpx.MockTransport(handle)


@pytest.mark.parametrize("value", [*SMUGGLED, "items:read\\ admin", 'a"b items:read'], ids=repr)
async def test_introspection_scope_follows_the_rfc(issuer: FakeIssuer, value: str) -> None:
    provider, transport = introspecting(issuer, value)
    async with ResourceServer([provider], transport=transport) as server:
        principal = await server.verify("opaque-token-0123456789")
    assert principal.scopes == reference(value)
    assert "items:read" not in principal.scopes or value.endswith(" items:read")


# -- provider APIs ----------------------------------------------------------------------------


async def verified(provider: Any, transport: httpx.AsyncBaseTransport, token: str) -> Principal:
    async with ResourceServer([provider], transport=transport) as server:
        return await server.verify(token)


def _sorted_sets_id(value: object) -> str:
    """``repr`` with sets sorted: the same test id in every process (pytest-xdist compares them)."""
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(map(repr, value))) + "}" if value else "set()"
    return repr(value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"repo, read:user", {"repo", "read:user"}),
        (b"repo,\tgist ,  read:user,,", {"repo", "gist", "read:user"}),  # OWS: SP / HTAB
        (b"repo\xa0admin:org, read:user", {"read:user"}),  # NBSP (Latin-1) is not OWS
        (b"repo\x0badmin:org", set()),
        (b"read:user\tadmin:org", set()),  # HTAB only around an element
        (b"repo admin:org", set()),  # one element with a space: not a scope token
        (b"", set()),
    ],
    ids=_sorted_sets_id,
)
async def test_github_scope_header_is_an_rfc_9110_list(header: bytes, expected: set[str]) -> None:
    github = FakeGitHub()
    token = github.issue_token("mona", 7, scopes=("repo",), kind="gho")

    async def handle(request: httpx.Request) -> httpx.Response:
        response = await github.transport.handle_async_request(request)
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        headers = [(k, v) for k, v in headers if k != b"x-oauth-scopes"]
        headers.append((b"x-oauth-scopes", header))
        return httpx.Response(response.status_code, headers=headers, content=response.content)

    provider = GitHubProvider(api_base=github.api_base)
    principal = await verified(provider, httpx.MockTransport(handle), token)
    assert principal.scopes == expected


async def test_google_tokeninfo_scope_follows_the_rfc(authbridge_signing_key: Any) -> None:
    google = FakeGoogle()
    token = google.issue_access_token("1101", scopes=("openid\titems:read", "email"))
    provider = GoogleProvider(
        client_ids="1234567890-fake.apps.googleusercontent.com",
        tokeninfo_url=google.tokeninfo_url,
        jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
    )
    principal = await verified(provider, google.transport, token)
    assert principal.scopes == {"email"}


async def test_facebook_scopes_array_elements_are_checked() -> None:
    facebook = FakeFacebook()
    token = facebook.issue_token("10001", scopes=("email", "public_profile\u3000admin"))
    provider = FacebookProvider(
        facebook.app_id, facebook.app_secret, graph_base=facebook.graph_base
    )
    principal = await verified(provider, facebook.transport, token)
    assert principal.scopes == {"email"}
