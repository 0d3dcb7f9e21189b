"""The authorization endpoint's request and answer: ``parse_authorize``, ``complete``.

Which refusals may redirect (never without a registered redirect URI), the
exact match of redirect URIs in every spelling, PKCE S256 only, scopes and
audiences, the code's storage (hashed, short-lived), the metadata.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from authbridge.errors import ConfigurationError
from authbridge.issuer import (
    ACCESS_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    AppIssuer,
    AuthorizeError,
    AuthorizeRequest,
    IssuerRuntime,
    complete,
    error_redirect,
    parse_authorize,
)
from authbridge.issuer._authorize import CODE_KIND, code_hash, redirect_uri_matches
from authbridge.issuer._secrets import CODE_PREFIX, well_formed
from authbridge.store import UserRecord

from .code_support import (  # the fixtures too
    ALICE,
    BOB,
    ISSUER,
    LOOPBACK,
    OTHER_RESOURCE,
    REDIRECT,
    REDIRECT_WITH_QUERY,
    WEB,
    Clock,
    authorize_params,
    clock,
    pkce,
    postgres_database,
    postgres_store_url,
    query_of,
    runtime,
    sqlite_store_url,
    start_runtime,
)

__all__ = [
    "clock",
    "postgres_database",
    "postgres_store_url",
    "runtime",
    "sqlite_store_url",
]


@pytest.fixture
def store_url(sqlite_store_url: str) -> str:
    """The request's rules do not depend on the backend: a SQLite file is enough."""
    return sqlite_store_url


async def page_refusal(runtime: IssuerRuntime, params: list[tuple[str, str]]) -> AuthorizeError:
    with pytest.raises(AuthorizeError) as caught:
        await parse_authorize(runtime, params)
    assert caught.value.redirect is None, caught.value.reason
    assert caught.value.status == 400
    return caught.value


async def redirected(
    runtime: IssuerRuntime, params: list[tuple[str, str]], error: str, *, to: str = REDIRECT
) -> dict[str, str]:
    with pytest.raises(AuthorizeError) as caught:
        await parse_authorize(runtime, params)
    refusal = caught.value
    assert refusal.error == error, refusal.reason
    assert refusal.redirect is not None
    assert refusal.redirect.startswith(to + ("&" if "?" in to else "?"))
    query = query_of(refusal.redirect)
    assert query["error"] == error
    assert query["iss"] == ISSUER
    assert query["error_description"] == refusal.description
    assert "code" not in query
    return query


# --- success --------------------------------------------------------------------------------


async def test_a_valid_request_and_its_code(runtime: IssuerRuntime) -> None:
    verifier, challenge = pkce()
    params = authorize_params(
        challenge, scope="items:read", nonce="n-1", prompt="login", login_hint="bob", idp="github"
    )
    request = await parse_authorize(runtime, params)
    state = dict(params)["state"]
    assert request == AuthorizeRequest(
        client_id="web",
        redirect_uri=REDIRECT,
        state=state,
        scopes=frozenset({"items:read"}),
        code_challenge=challenge,
        audiences=(ISSUER,),
        nonce="n-1",
        idp="github",
        prompt="login",
        login_hint="bob",
        issuer=ISSUER,
    )
    url = await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
    assert url.startswith(REDIRECT + "?")
    query = query_of(url)
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == state
    assert query["iss"] == ISSUER
    assert well_formed(query["code"], CODE_PREFIX)
    assert len(query["code"]) - len(CODE_PREFIX) - 6 == 43  # 256 bits, base64url
    assert verifier not in url


async def test_the_code_is_stored_hashed_for_the_configured_ttl(
    store_url: str, clock: Clock
) -> None:
    runtime = await start_runtime(store_url, clock, authorization_code_ttl=30.0)
    try:
        _, challenge = pkce()
        request = await parse_authorize(runtime, authorize_params(challenge))
        code = query_of(await complete(runtime, request, BOB, auth_time=clock(), amr="pwd"))["code"]
        one_time = runtime.store.one_time
        assert await one_time.take(CODE_KIND, code, now=clock()) is None  # not under itself
        assert await one_time.take(CODE_KIND, code_hash(code), now=clock() + 30) is None  # expired
        # Still there just before the end (take removes it: the last look).
        _, challenge = pkce()
        request = await parse_authorize(runtime, authorize_params(challenge))
        code = query_of(await complete(runtime, request, BOB, auth_time=clock(), amr="pwd"))["code"]
        value = await one_time.take(CODE_KIND, code_hash(code), now=clock() + 29.9)
        assert value is not None
        assert code not in value.decode()
        record = json.loads(value)
        assert record["client_id"] == "web"
        assert record["user_id"] == BOB.id
        assert record["code_challenge"] == challenge
    finally:
        await runtime.aclose()


async def test_the_redirect_keeps_a_registered_query(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(
        runtime, authorize_params(challenge, redirect_uri=REDIRECT_WITH_QUERY)
    )
    url = await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
    assert url.startswith(REDIRECT_WITH_QUERY + "&")
    assert query_of(url)["tenant"] == "7"


async def test_without_state_the_answer_has_none(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge, state=None))
    assert request.state is None
    url = await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
    assert set(query_of(url)) == {"code", "iss"}


async def test_empty_parameters_count_as_absent(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge, state="", scope=""))
    assert request.state is None
    assert request.scopes == WEB.scopes


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/native",
        "http://127.0.0.1:1/native",
        "http://127.0.0.1:51234/native",
        "http://127.0.0.1:65535/native",
    ],
)
async def test_loopback_redirect_may_name_any_port(runtime: IssuerRuntime, uri: str) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge, redirect_uri=uri))
    assert request.redirect_uri == uri
    url = await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
    assert url.startswith(uri + "?")


def test_loopback_rule_for_ipv6_and_registered_ports() -> None:
    assert redirect_uri_matches("http://[::1]/cb", "http://[::1]:8080/cb")
    assert redirect_uri_matches("http://127.0.0.1:9000/cb", "http://127.0.0.1:8080/cb")
    assert redirect_uri_matches("http://127.0.0.1:9000", "http://127.0.0.1:8080")
    assert not redirect_uri_matches("http://[::1]/cb", "http://127.0.0.1:8080/cb")
    assert not redirect_uri_matches("http://localhost/cb", "http://localhost:8080/cb")
    assert not redirect_uri_matches("https://127.0.0.1/cb", "https://127.0.0.1:8443/cb")
    assert not redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:8080/cb#x")
    assert not redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:8080/cb/")


# --- scopes and audiences -------------------------------------------------------------------


async def test_scopes_are_requested_and_the_clients_and_the_issuers(
    runtime: IssuerRuntime,
) -> None:
    _, challenge = pkce()
    # admin is the issuer's but not this client's: dropped, not granted.
    request = await parse_authorize(runtime, authorize_params(challenge, scope="items:read admin"))
    assert request.scopes == frozenset({"items:read"})
    request = await parse_authorize(runtime, authorize_params(challenge))
    assert request.scopes == frozenset({"items:read", "items:write"})


async def test_the_code_gets_the_users_scopes_only(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(
        runtime, authorize_params(challenge, scope="items:read items:write")
    )
    url = await complete(runtime, request, ALICE, auth_time=runtime.clock(), amr="pwd")
    value = await runtime.store.one_time.take(
        CODE_KIND, code_hash(query_of(url)["code"]), now=runtime.clock()
    )
    assert value is not None
    # Alice has items:read and admin; the client never had admin.
    assert json.loads(value)["scopes"] == ["items:read"]


@pytest.mark.parametrize("scope", ["admin", "nope", "items:read nope", 'items:"read', "x" * 3000])
async def test_scope_escalation_is_invalid_scope(runtime: IssuerRuntime, scope: str) -> None:
    _, challenge = pkce()
    await redirected(runtime, authorize_params(challenge, scope=scope), "invalid_scope")


async def test_a_served_resource_becomes_the_audience(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge, resource=OTHER_RESOURCE))
    assert request.audiences == (OTHER_RESOURCE,)


@pytest.mark.parametrize(
    "resource",
    [
        "https://evil.example.test",
        OTHER_RESOURCE + "/",
        OTHER_RESOURCE + "#x",
        OTHER_RESOURCE.upper(),
        "reports",
    ],
)
async def test_audience_escalation_is_invalid_target(runtime: IssuerRuntime, resource: str) -> None:
    _, challenge = pkce()
    await redirected(runtime, authorize_params(challenge, resource=resource), "invalid_target")


# --- refusals shown as a page: never a redirect ----------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "response_type",
        "code_challenge",
        "code_challenge_method",
        "resource",
        "nonce",
    ],
)
async def test_a_repeated_parameter_never_redirects(runtime: IssuerRuntime, name: str) -> None:
    _, challenge = pkce()
    params = authorize_params(challenge, scope="items:read", resource=OTHER_RESOURCE, nonce="n")
    value = dict(params)[name]
    # The same value twice, and another value: both refused.
    for extra in (value, "https://evil.example.test/cb"):
        refusal = await page_refusal(runtime, [*params, (name, extra)])
        assert refusal.error == "invalid_request"
        assert refusal.reason == "duplicate_parameter"
    refusal = await page_refusal(runtime, [(name, ""), *params])
    assert refusal.reason == "duplicate_parameter"


@pytest.mark.parametrize(
    ("client_id", "reason"),
    [
        (None, "no_client_id"),
        ("nobody", "unknown_client"),
        ("gone", "client_disabled"),
        ("password-only", "grant_not_allowed_for_client"),
        ("web\n", "invalid_client_id"),
        ("w" * 300, "invalid_client_id"),
    ],
)
async def test_a_client_that_cannot_use_the_flow_never_redirects(
    runtime: IssuerRuntime, client_id: str | None, reason: str
) -> None:
    _, challenge = pkce()
    params = authorize_params(challenge)
    params = [(k, v) for k, v in params if k != "client_id"]
    if client_id is not None:
        params.append(("client_id", client_id))
    refusal = await page_refusal(runtime, params)
    assert refusal.reason == reason


# Every spelling that is not the registered value, character for character.
MISMATCHED_REDIRECTS = [
    REDIRECT + "/",  # trailing slash
    REDIRECT[:-1],  # a prefix
    REDIRECT + "x",  # a suffix
    REDIRECT + "/../callback",
    REDIRECT.upper(),
    "HTTPS://app.example.test/callback",  # scheme case
    "https://APP.example.test/callback",  # host case
    "https://app.example.test/Callback",  # path case
    REDIRECT + "?",
    REDIRECT + "?next=https://evil.example.test",  # extra query
    REDIRECT_WITH_QUERY + "&x=1",
    "https://app.example.test/cb?tenant=8",
    "https://app.example.test/cb",
    REDIRECT + "#",  # fragment
    REDIRECT + "#frag",
    "https://user@app.example.test/callback",  # userinfo
    "https://app.example.test@evil.example.test/callback",
    "https://evil.example.test@app.example.test/callback",
    "https://app.example.test/%63allback",  # encoded characters
    "https://app.example.test%2Fcallback",
    "https://app.example.test/callback%2F",
    "https://app.example.test/call%62ack",
    "https://app.example.test:443/callback",  # default port spelled out
    "https://app.example.test:8443/callback",
    "http://app.example.test/callback",  # another scheme
    "https://app.example.test./callback",  # trailing dot
    "https://sub.app.example.test/callback",
    "https://app.example.test.evil.example/callback",
    "//app.example.test/callback",
    " " + REDIRECT,
    REDIRECT + " ",
    REDIRECT + "\r\nLocation: https://evil.example.test",
    "https://app.example.test\\@evil.example.test/callback",
    "https://\u0430pp.example.test/callback",  # Cyrillic a
    "https://app.example.test/callback\x00",
    # loopback spellings that are not a port change
    "http://localhost/native",
    "http://localhost:51234/native",
    "http://127.0.0.2:51234/native",
    "http://127.1:51234/native",
    "http://[::1]:51234/native",
    "http://127.0.0.1:051234/native",
    "http://127.0.0.1:0/native",
    "http://127.0.0.1:65536/native",
    "http://127.0.0.1:99999/native",
    "http://127.0.0.1:/native",
    "http://127.0.0.1:8080/native/",
    "http://127.0.0.1:8080/Native",
    "http://127.0.0.1:8080/native?x=1",
    "http://127.0.0.1:8080/native#x",
    "http://127.0.0.1:80@evil.example.test/native",
    "http://127.0.0.1@evil.example.test/native",
    "https://127.0.0.1:8443/native",
    "HTTP://127.0.0.1:8080/native",
    "http://127.0.0.1:8080\\native",
    "http://127.0.0.1:8080%2Fnative",
    "x" * 5000,
]


@pytest.mark.parametrize("uri", MISMATCHED_REDIRECTS)
async def test_an_unregistered_redirect_uri_never_redirects(
    runtime: IssuerRuntime, uri: str
) -> None:
    _, challenge = pkce()
    refusal = await page_refusal(runtime, authorize_params(challenge, redirect_uri=uri))
    assert refusal.reason == "unregistered_redirect"


async def test_another_clients_redirect_uri_never_redirects(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    refusal = await page_refusal(
        runtime,
        authorize_params(challenge, client_id="other", redirect_uri=REDIRECT),
    )
    assert refusal.reason == "unregistered_redirect"


async def test_a_missing_redirect_uri_never_redirects(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    refusal = await page_refusal(runtime, authorize_params(challenge, redirect_uri=None))
    assert refusal.reason == "no_redirect_uri"


async def test_page_refusals_come_before_the_others(runtime: IssuerRuntime) -> None:
    # Bad PKCE and scope too: the redirect URI decides first.
    params = authorize_params("x", redirect_uri="https://evil.example.test/cb", scope="nope")
    refusal = await page_refusal(runtime, params)
    assert refusal.reason == "unregistered_redirect"


async def test_an_issuer_without_the_grant_never_redirects(store_url: str, clock: Clock) -> None:
    runtime = await start_runtime(store_url, clock, grant_types=["password", "refresh_token"])
    try:
        _, challenge = pkce()
        refusal = await page_refusal(runtime, authorize_params(challenge))
        assert refusal.reason == "authorization_code_disabled"
    finally:
        await runtime.aclose()


# --- refusals redirected with error, state and iss --------------------------------------------


@pytest.mark.parametrize(
    ("extra", "error", "reason"),
    [
        ({"response_type": None}, "invalid_request", "no_response_type"),
        ({"response_type": "token"}, "unsupported_response_type", "unsupported_response_type"),
        (
            {"response_type": "code id_token"},
            "unsupported_response_type",
            "unsupported_response_type",
        ),
        ({"response_type": "CODE"}, "unsupported_response_type", "unsupported_response_type"),
        ({"response_mode": "fragment"}, "invalid_request", "response_mode"),
        ({"response_mode": "form_post"}, "invalid_request", "response_mode"),
        ({"prompt": "none login"}, "invalid_request", "invalid_prompt"),
        ({"prompt": "always"}, "invalid_request", "invalid_prompt"),
        ({"nonce": "n" * 600}, "invalid_request", "invalid_nonce"),
        ({"nonce": "a\nb"}, "invalid_request", "invalid_nonce"),
        ({"idp": "git\rhub"}, "invalid_request", "invalid_idp"),
        ({"login_hint": "b" * 300}, "invalid_request", "invalid_login_hint"),
    ],
)
async def test_redirected_refusals(
    runtime: IssuerRuntime, extra: dict[str, str | None], error: str, reason: str
) -> None:
    _, challenge = pkce()
    params = authorize_params(challenge, **extra)
    with pytest.raises(AuthorizeError) as caught:
        await parse_authorize(runtime, params)
    assert caught.value.reason == reason
    query = await redirected(runtime, params, error)
    assert query["state"] == dict(params)["state"]


@pytest.mark.parametrize(
    ("challenge", "method", "reason"),
    [
        (None, "S256", "no_pkce"),
        ("C" * 43, None, "no_pkce_method"),
        ("C" * 43, "plain", "pkce_method"),
        ("C" * 43, "s256", "pkce_method"),
        ("C" * 43, "S512", "pkce_method"),
        ("C" * 42, "S256", "invalid_code_challenge"),  # short
        ("C" * 44, "S256", "invalid_code_challenge"),
        ("C" * 128, "S256", "invalid_code_challenge"),  # the plain length: not S256's
        ("C" * 42 + "=", "S256", "invalid_code_challenge"),
        ("C" * 42 + "+", "S256", "invalid_code_challenge"),
        ("C" * 42 + "~", "S256", "invalid_code_challenge"),
        ("C" * 42 + " ", "S256", "invalid_code_challenge"),
    ],
)
async def test_pkce_s256_is_required(
    runtime: IssuerRuntime, challenge: str | None, method: str | None, reason: str
) -> None:
    params = authorize_params("unused", code_challenge=challenge, code_challenge_method=method)
    with pytest.raises(AuthorizeError) as caught:
        await parse_authorize(runtime, params)
    assert caught.value.reason == reason
    await redirected(runtime, params, "invalid_request")


async def test_plain_pkce_with_a_verifier_as_challenge_is_refused(runtime: IssuerRuntime) -> None:
    verifier, _ = pkce()
    params = authorize_params(verifier, code_challenge_method="plain")
    await redirected(runtime, params, "invalid_request")


async def test_a_malformed_state_is_not_echoed(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    for state in ("a\x00b", "s" * 3000, "é"):
        query = await redirected(
            runtime, authorize_params(challenge, state=state), "invalid_request"
        )
        assert "state" not in query


async def test_errors_go_to_the_requested_loopback_port(runtime: IssuerRuntime) -> None:
    uri = "http://127.0.0.1:40000/native"
    params = authorize_params("bad", redirect_uri=uri)
    await redirected(runtime, params, "invalid_request", to=uri)


async def test_error_redirect_for_a_later_refusal(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge, redirect_uri=LOOPBACK))
    url = error_redirect(request, "access_denied", "The user cancelled")
    assert url.startswith(LOOPBACK + "?")
    assert query_of(url) == {
        "error": "access_denied",
        "error_description": "The user cancelled",
        "state": request.state,
        "iss": ISSUER,
    }


# --- complete: checks again ---------------------------------------------------------------


async def test_complete_refuses_a_client_disabled_or_changed_since(
    runtime: IssuerRuntime,
) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge))
    clients = runtime.store.clients
    for changed in (
        dataclasses.replace(WEB, disabled=True),
        dataclasses.replace(WEB, grant_types=frozenset({"password"})),
        dataclasses.replace(WEB, redirect_uris=("https://app.example.test/new",)),
    ):
        await clients.update(changed)
        with pytest.raises(AuthorizeError) as caught:
            await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
        assert caught.value.redirect is None
    await clients.delete("web")
    with pytest.raises(AuthorizeError) as caught:
        await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
    assert caught.value.redirect is None
    assert caught.value.reason == "unknown_client"


async def test_complete_refuses_a_disabled_account(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(runtime, authorize_params(challenge))
    disabled = UserRecord(id="user-carol", username="carol", disabled=True)
    with pytest.raises(AuthorizeError) as caught:
        await complete(runtime, request, disabled, auth_time=runtime.clock(), amr="pwd")
    assert caught.value.error == "access_denied"
    assert caught.value.redirect is not None
    query = query_of(caught.value.redirect)
    assert query["error"] == "access_denied"
    assert "code" not in query


# --- the login transaction's copy ------------------------------------------------------------


async def test_to_dict_and_back(runtime: IssuerRuntime) -> None:
    _, challenge = pkce()
    request = await parse_authorize(
        runtime, authorize_params(challenge, nonce="n", resource=OTHER_RESOURCE, idp="google")
    )
    data = json.loads(json.dumps(request.to_dict()))
    assert AuthorizeRequest.from_dict(data) == request
    minimal = dataclasses.replace(request, state=None, nonce=None, idp=None)
    assert AuthorizeRequest.from_dict(json.loads(json.dumps(minimal.to_dict()))) == minimal


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": None},
        {"client_id": 7},
        {"redirect_uri": ""},
        {"scopes": "items:read"},
        {"scopes": [1]},
        {"audiences": []},
        {"code_challenge": "short"},
        {"state": 5},
    ],
)
def test_from_dict_refuses_what_to_dict_never_gives(change: dict[str, Any]) -> None:
    good = AuthorizeRequest(
        client_id="web",
        redirect_uri=REDIRECT,
        state="s",
        scopes=frozenset({"items:read"}),
        code_challenge="C" * 43,
        audiences=(ISSUER,),
        issuer=ISSUER,
    ).to_dict()
    assert AuthorizeRequest.from_dict(good).client_id == "web"
    bad = {**good, **change}
    if change.get("client_id", 0) is None:
        del bad["client_id"]
    with pytest.raises(ValueError, match="not an authorization request"):
        AuthorizeRequest.from_dict(bad)


# --- configuration and metadata ----------------------------------------------------------------


def test_defaults_include_the_code_and_the_exchange_grants() -> None:
    config = AppIssuer(ISSUER, development=True)
    assert {"authorization_code", TOKEN_EXCHANGE} <= config.grant_types
    assert config.authorization_code_ttl == 60.0
    assert config.endpoint("authorize") == ISSUER + "/oauth/authorize"
    assert config.endpoint("callback") == ISSUER + "/oauth/callback"


@pytest.mark.parametrize("ttl", [0.0, -1.0, 601.0])
def test_authorization_code_ttl_is_bounded(ttl: float) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AppIssuer(ISSUER, development=True, authorization_code_ttl=ttl)
    assert caught.value.reason == "invalid_authorization_code_ttl"


class Resolver:
    async def resolve(self, subject_token: str, subject_token_type: str) -> tuple[UserRecord, str]:
        raise AssertionError("not called")


async def test_metadata_advertises_the_flow(runtime: IssuerRuntime) -> None:
    # Only once the endpoint is served (the login routes installed).
    assert "authorization_endpoint" not in runtime.metadata()
    assert "authorization_code" not in runtime.metadata()["grant_types_supported"]
    runtime.authorization_endpoint = True
    document = runtime.metadata()
    assert document["authorization_endpoint"] == ISSUER + "/oauth/authorize"
    assert document["response_types_supported"] == ["code"]
    assert document["response_modes_supported"] == ["query"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert "authorization_code" in document["grant_types_supported"]
    # Token exchange is answered, so advertised, once a resolver is set.
    assert TOKEN_EXCHANGE not in document["grant_types_supported"]
    runtime.subject_tokens = Resolver()
    assert TOKEN_EXCHANGE in runtime.metadata()["grant_types_supported"]
    assert ACCESS_TOKEN_TYPE.startswith("urn:ietf:params:oauth:token-type:")


async def test_metadata_without_the_flow(store_url: str, clock: Clock) -> None:
    runtime = await start_runtime(store_url, clock, grant_types=["client_credentials"])
    try:
        document = runtime.metadata()
        assert "authorization_endpoint" not in document
        assert document["response_types_supported"] == []
        assert "code_challenge_methods_supported" not in document
        assert document["grant_types_supported"] == ["client_credentials"]
    finally:
        await runtime.aclose()
