"""Authorization-server metadata: the RFC 8414 supplement, refusals' retry times, start-up logs.

- An introspection endpoint published only in the RFC 8414 document (not in the
  OpenID configuration) is found there; that document must name exactly the same
  issuer (fail closed), and it is fetched only when needed, once in flight, at
  most once per cooldown after a failure.
- Start-up problems are logged at WARNING in plain words: "unavailable" only for
  network failures, and an issuer mismatch with both spellings and the fix.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import FakeClock

from authbridge import (
    AuthBridge,
    AuthBridgeError,
    Introspection,
    Principal,
    ProviderUnavailable,
    ResourceServer,
    UserinfoProvider,
)
from authbridge.metadata import MetadataCache, describe_unavailable
from authbridge.testing import FakeIssuer

OIDC = "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server"
INTROSPECT = "/oauth2/introspect"
SECRET = "introspection-secret-" + "x" * 16

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def opaque() -> str:
    return "at_" + secrets.token_urlsafe(24)


async def _outcome(server: ResourceServer, token: str) -> Principal | AuthBridgeError:
    try:
        return await server.verify(token)
    except AuthBridgeError as exc:
        return exc


class AuthServer:
    """One authorization server whose OpenID configuration lacks ``introspection_endpoint``.

    ``rfc8414`` answers the RFC 8414 document (by default: the same metadata plus
    ``introspection_endpoint``); every request is recorded.
    """

    def __init__(self, fake: FakeIssuer) -> None:
        self.fake = fake
        self.base = fake.issuer.rstrip("/")
        self.calls: list[httpx.Request] = []
        self.oidc_extra: dict[str, Any] = {}
        self.rfc8414: Handler = lambda request: httpx.Response(200, json=self.rfc8414_document())
        self.transport = httpx.MockTransport(self._handle)

    def rfc8414_document(self, **changes: Any) -> dict[str, Any]:
        doc = {**self.fake.discovery_document(), "introspection_endpoint": self.base + INTROSPECT}
        doc.update(changes)
        return doc

    @property
    def introspect_path(self) -> str:
        return httpx.URL(self.base + INTROSPECT).path

    @property
    def rfc8414_path(self) -> str:
        return RFC8414 + httpx.URL(self.fake.issuer).path.rstrip("/")

    def paths(self) -> list[str]:
        return [r.url.path for r in self.calls]

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path = request.url.path
        if path == httpx.URL(self.base + OIDC).path:
            return httpx.Response(200, json={**self.fake.discovery_document(), **self.oidc_extra})
        if path == self.rfc8414_path:
            answer = self.rfc8414(request)
            return await answer if isinstance(answer, Awaitable) else answer
        if path == self.introspect_path:
            return httpx.Response(
                200,
                json={
                    "active": True,
                    "sub": "bob",
                    "iss": self.fake.issuer,
                    "aud": self.fake.audience,
                    "token_type": "Bearer",
                    "client_id": "orders-app",
                    "exp": int(self.fake.claims()["exp"]),
                },
            )
        return await self.fake.transport.handle_async_request(request)


def bridge(server: AuthServer, clock: FakeClock | None = None, **options: Any) -> ResourceServer:
    options.setdefault("jwks_cooldown", 30.0)
    options.setdefault("introspection", Introspection(client_id="api", client_secret=SECRET))
    provider = server.fake.provider(**options)
    if clock is None:
        return ResourceServer([provider], transport=server.transport)
    return ResourceServer([provider], transport=server.transport, clock=clock)


@pytest.fixture(params=["https://as.example.test", "https://as.example.test/realms/acme"])
def auth_server(request: pytest.FixtureRequest, authbridge_signing_key: Any) -> AuthServer:
    return AuthServer(FakeIssuer(issuer=request.param, key=authbridge_signing_key))


def _token_sent_only_to_introspection(server: AuthServer, token: str) -> None:
    for request in server.calls:
        carried = token in str(request.url) or token in request.content.decode("ascii", "replace")
        assert not carried or request.url.path.endswith(INTROSPECT)


# -- the RFC 8414 document supplies a missing member -----------------------------------


async def test_introspection_endpoint_from_the_rfc8414_document(
    auth_server: AuthServer, clock: FakeClock
) -> None:
    async with bridge(auth_server, clock) as rs:
        before = len(auth_server.calls)  # start-up: OpenID configuration and JWKS
        principal = await rs.verify(token := opaque())
        assert principal.subject == "bob"
        assert auth_server.paths()[before:] == [
            auth_server.rfc8414_path,
            auth_server.introspect_path,
        ]
        assert (await rs.verify(opaque())).subject == "bob"
        assert auth_server.paths()[before + 2 :] == [
            auth_server.introspect_path
        ]  # the document is kept
    _token_sent_only_to_introspection(auth_server, token)


def test_introspection_from_rfc8414_through_the_app(auth_server: AuthServer) -> None:
    provider = auth_server.fake.provider(
        introspection=Introspection(client_id="api", client_secret=SECRET)
    )
    auth = AuthBridge([provider], transport=auth_server.transport)
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict:
        return {"sub": user.subject}

    with TestClient(app) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {opaque()}"})
    assert response.status_code == 200
    assert response.json() == {"sub": "bob"}


@pytest.mark.parametrize(
    "issuer",
    ["https://as.example.test/", "https://evil.example.test", "https://AS.example.test", None],
    ids=repr,
)
async def test_rfc8414_document_naming_another_issuer_is_refused(
    authbridge_signing_key: Any, clock: FakeClock, issuer: str | None
) -> None:
    server = AuthServer(FakeIssuer(issuer="https://as.example.test", key=authbridge_signing_key))
    doc = server.rfc8414_document(issuer=issuer)
    server.rfc8414 = lambda request: httpx.Response(200, json=doc)
    async with bridge(server, clock) as rs:
        refused = await _outcome(rs, token := opaque())
        assert isinstance(refused, ProviderUnavailable)
        assert refused.reason == "discovery_issuer_mismatch"
        assert refused.detail["configured"] == "https://as.example.test"
        assert refused.detail["discovered"] == issuer
        assert refused.detail["document"] == "oauth-authorization-server"
        assert refused.retry_after == 30
        # Within the cooldown: refused without asking again; never introspected.
        again = await _outcome(rs, opaque())
        assert isinstance(again, ProviderUnavailable)
        assert again.reason == "rfc8414_metadata_recently_failed"
        assert again.detail["discovered"] == issuer
    assert server.paths().count(server.rfc8414_path) == 1
    assert server.introspect_path not in server.paths()
    _token_sent_only_to_introspection(server, token)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spelling=st.one_of(
        st.text(max_size=40),
        st.sampled_from(["https://as.example.test"]).flatmap(
            lambda base: st.tuples(st.text(max_size=3), st.text(max_size=3)).map(
                lambda affixes: affixes[0] + base + affixes[1]
            )
        ),
    )
)
def test_rfc8414_issuer_must_match_exactly(authbridge_signing_key: Any, spelling: str) -> None:
    configured = "https://as.example.test"
    server = AuthServer(FakeIssuer(issuer=configured, key=authbridge_signing_key))
    server.rfc8414 = lambda request: httpx.Response(
        200, json=server.rfc8414_document(issuer=spelling)
    )

    async def scenario() -> Principal | AuthBridgeError:
        async with bridge(server) as rs:
            return await _outcome(rs, opaque())

    result = asyncio.run(scenario())
    if spelling == configured:
        assert isinstance(result, Principal)
    else:
        assert isinstance(result, ProviderUnavailable)
        assert server.introspect_path not in server.paths()


async def test_neither_document_has_an_introspection_endpoint(
    auth_server: AuthServer, clock: FakeClock
) -> None:
    doc = {**auth_server.fake.discovery_document()}
    auth_server.rfc8414 = lambda request: httpx.Response(200, json=doc)
    async with bridge(auth_server, clock) as rs:
        for _ in range(3):
            refused = await _outcome(rs, opaque())
            assert isinstance(refused, ProviderUnavailable)
            assert refused.reason == "metadata_without_introspection_endpoint"
    assert auth_server.paths().count(auth_server.rfc8414_path) == 1  # kept once fetched


async def test_no_rfc8414_document_at_all(auth_server: AuthServer, clock: FakeClock) -> None:
    auth_server.rfc8414 = lambda request: httpx.Response(404, json={"error": "not_found"})
    async with bridge(auth_server, clock) as rs:
        for _ in range(3):
            refused = await _outcome(rs, opaque())
            assert isinstance(refused, ProviderUnavailable)
            assert refused.reason == "metadata_without_introspection_endpoint"
        assert auth_server.paths().count(auth_server.rfc8414_path) == 1
        clock.advance(30)  # asked again at most once per cooldown
        assert isinstance(await _outcome(rs, opaque()), ProviderUnavailable)
        assert auth_server.paths().count(auth_server.rfc8414_path) == 2
        # It gets published: found at the next allowed attempt.
        auth_server.rfc8414 = lambda request: httpx.Response(
            200, json=auth_server.rfc8414_document()
        )
        clock.advance(30)
        assert isinstance(await _outcome(rs, opaque()), Principal)
    assert auth_server.introspect_path in auth_server.paths()


async def test_rfc8414_failure_is_503_with_the_exact_retry_time(
    auth_server: AuthServer, clock: FakeClock
) -> None:
    auth_server.rfc8414 = lambda request: httpx.Response(500, text="<html>oops</html>")
    async with bridge(auth_server, clock) as rs:
        first = await _outcome(rs, opaque())
        assert isinstance(first, ProviderUnavailable)
        assert (first.reason, first.retry_after) == ("http_status:500", 30)
        clock.advance(12)
        within = await _outcome(rs, opaque())
        assert isinstance(within, ProviderUnavailable)
        assert (within.reason, within.retry_after) == ("rfc8414_metadata_recently_failed", 18)
        assert within.detail["last_failure"] == "http_status:500"
        assert auth_server.paths().count(auth_server.rfc8414_path) == 1
        auth_server.rfc8414 = lambda request: httpx.Response(
            200, json=auth_server.rfc8414_document()
        )
        clock.advance(18)  # exactly when the next attempt is allowed
        assert isinstance(await _outcome(rs, opaque()), Principal)


async def test_rfc8414_insecure_endpoint_is_refused(
    auth_server: AuthServer, clock: FakeClock
) -> None:
    plain = auth_server.base.replace("https://", "http://") + INTROSPECT
    doc = auth_server.rfc8414_document(introspection_endpoint=plain)
    auth_server.rfc8414 = lambda request: httpx.Response(200, json=doc)
    async with bridge(auth_server, clock) as rs:
        refused = await _outcome(rs, token := opaque())
    assert isinstance(refused, ProviderUnavailable)
    assert refused.reason == "metadata_insecure_url:introspection_endpoint"
    assert auth_server.introspect_path not in auth_server.paths()
    _token_sent_only_to_introspection(auth_server, token)


async def test_rfc8414_document_fetched_once_for_concurrent_tokens(
    auth_server: AuthServer,
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)  # real time: the others arrive while it is in flight
        return httpx.Response(200, json=auth_server.rfc8414_document())

    auth_server.rfc8414 = slow
    async with bridge(auth_server) as rs:
        # Fewer than the per-source limit on concurrent checks (16 by default).
        results = await asyncio.gather(*(_outcome(rs, opaque()) for _ in range(12)))
    assert [type(r).__name__ for r in results] == ["Principal"] * 12
    assert auth_server.paths().count(auth_server.rfc8414_path) == 1


async def test_rfc8414_document_only_when_needed(auth_server: AuthServer, clock: FakeClock) -> None:
    # The OpenID configuration has the member: the RFC 8414 document is never asked.
    auth_server.oidc_extra = {"introspection_endpoint": auth_server.base + INTROSPECT}
    async with bridge(auth_server, clock) as rs:
        assert (await rs.verify(opaque())).subject == "bob"
        assert (await rs.verify(auth_server.fake.token())).subject == "alice"
    assert auth_server.rfc8414_path not in auth_server.paths()


async def test_jwt_only_provider_never_asks_for_rfc8414(auth_server: AuthServer) -> None:
    async with bridge(auth_server, introspection=None) as rs:
        assert (await rs.verify(auth_server.fake.token())).subject == "alice"
    assert auth_server.rfc8414_path not in auth_server.paths()


async def test_configured_discovery_url_is_the_only_document(
    auth_server: AuthServer, clock: FakeClock
) -> None:
    url = auth_server.base + OIDC
    async with bridge(auth_server, clock, discovery_url=url) as rs:
        refused = await _outcome(rs, opaque())
    assert isinstance(refused, ProviderUnavailable)
    assert refused.reason == "metadata_without_introspection_endpoint"
    assert auth_server.rfc8414_path not in auth_server.paths()


async def test_metadata_from_the_rfc8414_fallback_is_not_supplemented(
    authbridge_signing_key: Any, clock: FakeClock
) -> None:
    """OpenID configuration missing, RFC 8414 document used: nothing else to ask."""
    fake = FakeIssuer(issuer="https://as.example.test", key=authbridge_signing_key)
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == RFC8414:
            return httpx.Response(200, json=fake.discovery_document())
        if request.url.path == OIDC:
            return httpx.Response(404)
        return fake.transport.handle_request(request)

    cache = MetadataCache(
        lambda: httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        fake.issuer,
        clock=clock,
    )
    assert await cache.endpoint("introspection_endpoint") is None
    assert await cache.endpoint("jwks_uri") == fake.jwks_uri
    assert calls == [OIDC, RFC8414]
    with pytest.raises(ValueError, match="not a metadata endpoint"):
        await cache.endpoint("issuer")


# -- refusals on the discovery path carry the exact retry time ----------------------------


async def test_userinfo_discovery_failure_retry_after(clock: FakeClock) -> None:
    calls: list[float] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(clock())
        return httpx.Response(503)

    provider = UserinfoProvider("u", "https://u.example.test")
    server = ResourceServer([provider], transport=httpx.MockTransport(down), clock=clock)
    first = await _outcome(server, "opaque-token-value")
    assert isinstance(first, ProviderUnavailable)
    assert first.retry_after == 30
    clock.advance(12)
    later = await _outcome(server, "another-opaque-token")
    assert isinstance(later, ProviderUnavailable)
    assert (later.reason, later.retry_after) == ("discovery_recently_failed", 18)
    assert later.detail["last_failure"] == "http_status:503"
    assert later.detail["document"] == "openid-configuration"
    assert len(calls) == 2  # OIDC and RFC 8414 once; nothing within the cooldown


# -- start-up problems, said plainly ------------------------------------------------------


def _start_up_log(
    caplog: pytest.LogCaptureFixture, handler: Callable[[httpx.Request], httpx.Response], **kw: Any
) -> logging.LogRecord:
    issuer = kw.pop("issuer", "https://sso.example.test/realms/acme")
    fake = FakeIssuer(issuer=issuer)

    async def scenario() -> None:
        rs = ResourceServer([fake.provider(**kw)], transport=httpx.MockTransport(handler_for))
        async with rs:
            pass

    def handler_for(request: httpx.Request) -> httpx.Response:
        answer = handler(request)
        return answer if answer is not None else fake.transport.handle_request(request)

    with caplog.at_level(logging.WARNING, logger="authbridge"):
        asyncio.run(scenario())
    (record,) = [r for r in caplog.records if r.name == "authbridge.resource"]
    assert record.levelno == logging.WARNING
    return record


def _discovery_says(issuer: object) -> Callable[[httpx.Request], httpx.Response | None]:
    def handler(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith(OIDC):
            doc = FakeIssuer(issuer="https://placeholder.test").discovery_document()
            return httpx.Response(200, json={**doc, "issuer": issuer})
        return None

    return handler


@pytest.mark.parametrize(
    ("configured", "discovered"),
    [
        ("https://sso.example.test/realms/acme/", "https://sso.example.test/realms/acme"),
        ("https://sso.example.test/realms/acme", "https://sso.example.test/realms/acme/"),
    ],
)
def test_start_up_trailing_slash_mismatch_says_both_and_the_fix(
    caplog: pytest.LogCaptureFixture, configured: str, discovered: str
) -> None:
    record = _start_up_log(caplog, _discovery_says(discovered), issuer=configured)
    message = record.getMessage()
    assert (
        f"issuer mismatch: configured {configured!r} but the provider says {discovered!r}: "
        f"set issuer={discovered!r} (tokens' iss must match exactly)"
    ) in message
    assert "[discovery_issuer_mismatch]" in message
    assert "unavailable" not in message


def test_start_up_other_mismatch_says_both_without_the_slash_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = _start_up_log(caplog, _discovery_says("https://login.example.test/tenant"))
    message = record.getMessage()
    assert "configured 'https://sso.example.test/realms/acme'" in message
    assert "the provider says 'https://login.example.test/tenant'" in message
    assert "set issuer=" not in message
    assert "unavailable" not in message


@pytest.mark.parametrize(
    "discovered",
    ["https://x.test/\nWARNING forged log line", "\x1b[31mred", "https://" + "a" * 10_000, 42,
     ["https://sso.example.test/realms/acme"], None],
    ids=["newline", "ansi", "huge", "int", "list", "missing"],
)  # fmt: skip
def test_start_up_logs_provider_values_safely(
    caplog: pytest.LogCaptureFixture, discovered: object
) -> None:
    record = _start_up_log(caplog, _discovery_says(discovered))
    message = record.getMessage()
    assert "\n" not in message
    assert "\x1b" not in message
    assert len(message) < 800
    assert "issuer mismatch" in message


def test_mismatch_error_detail_has_both_spellings() -> None:
    configured, discovered = "https://sso.example.test/a/", "https://sso.example.test/a"
    fake = FakeIssuer(issuer=configured)

    async def scenario() -> Principal | AuthBridgeError:
        handler = _discovery_says(discovered)
        transport = httpx.MockTransport(lambda r: handler(r) or fake.transport.handle_request(r))
        rs = ResourceServer([fake.provider(jwks_cooldown=30.0)], transport=transport)
        await rs.start(warm_up=False)
        try:
            return await _outcome(rs, fake.token())
        finally:
            await rs.aclose()

    error = asyncio.run(scenario())
    assert isinstance(error, ProviderUnavailable)
    assert error.reason == "discovery_issuer_mismatch"
    assert error.detail == {
        "configured": configured,
        "discovered": discovered,
        "document": "openid-configuration",
    }
    assert discovered not in str(error)
    assert configured not in str(error)


def _refuse(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def _jwks(answer: httpx.Response) -> Callable[[httpx.Request], httpx.Response | None]:
    return lambda request: answer if request.url.path == "/realms/acme/jwks" else None


WORDING = {
    "connect_error": (
        _refuse(httpx.ConnectError("refused")),
        True,
        "is unreachable (ConnectError)",
    ),
    "read_timeout": (_refuse(httpx.ReadTimeout("slow")), True, "did not answer in time"),
    "http_404": (
        lambda r: httpx.Response(404),
        False,
        "the OpenID discovery document answered HTTP 404, and the RFC 8414 metadata document "
        "answered HTTP 404: is the issuer exactly right? Otherwise give discovery_url=...",
    ),
    "html": (
        lambda r: httpx.Response(200, text="<html>Sign in</html>"),
        False,
        "is not a JSON object (an HTML page?)",
    ),
    "no_jwks_uri": (
        lambda r: (
            httpx.Response(200, json={"issuer": "https://sso.example.test/realms/acme"})
            if r.url.path.endswith(OIDC)
            else None
        ),
        False,
        "the discovery document has no jwks_uri",
    ),
    "jwks_500": (_jwks(httpx.Response(500)), False, "the JWKS (jwks_uri) answered HTTP 500"),
    "jwks_empty": (_jwks(httpx.Response(200, json={"keys": []})), False, "has no usable key"),
    "jwks_down": (
        lambda r: _refuse(httpx.ConnectError("x"))(r) if r.url.path.endswith("/jwks") else None,
        True,
        "the JWKS (jwks_uri) is unreachable (ConnectError)",
    ),
}


@pytest.mark.parametrize("case", list(WORDING))
def test_start_up_wording(caplog: pytest.LogCaptureFixture, case: str) -> None:
    handler, network, text = WORDING[case]
    message = _start_up_log(caplog, handler).getMessage()
    assert text in message
    assert message.startswith(
        "Provider fake unavailable at start-up: " if network else "Provider fake not usable"
    )
    assert ("unavailable" in message) is network


def test_start_up_timeout_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeIssuer(issuer="https://sso.example.test")

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    async def scenario() -> None:
        async with ResourceServer(
            [fake.provider()], transport=httpx.MockTransport(hang), http_timeout=0.2
        ):
            pass

    with caplog.at_level(logging.WARNING, logger="authbridge"):
        asyncio.run(scenario())
    assert "Provider fake unavailable at start-up: the OpenID discovery document did not " in (
        caplog.text
    )


def test_start_up_log_names_no_url(caplog: pytest.LogCaptureFixture) -> None:
    """Configured URLs may carry credentials in their query: logs never show URLs."""
    record = _start_up_log(
        caplog,
        lambda r: httpx.Response(500),
        discovery_url=f"https://sso.example.test/meta?k={SECRET}",
    )
    message = record.getMessage()
    assert SECRET not in message
    assert "/meta" not in message
    assert "the metadata document at discovery_url answered HTTP 500" in message


def test_describe_unavailable_for_other_reasons() -> None:
    text, network = describe_unavailable(ProviderUnavailable("something_new", provider="p"))
    assert (text, network) == ("the provider could not be used (something_new)", False)
