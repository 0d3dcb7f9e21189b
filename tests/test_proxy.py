"""Outbound HTTP through a real forward proxy on 127.0.0.1.

The identity provider is a real HTTP(S) server on a loopback port, named ``idp.test``.
That name resolves nowhere: through a proxy the request reaches it because the proxy maps
the name to the port; directly (``NO_PROXY``, ``trust_env=False``) only because the test
patches the resolver. Counting what each of the two servers saw tells which way a request
went. The proxy handles absolute-form requests (http URLs) and CONNECT tunnels (https URLs,
with the provider's certificate issued by a test CA that ``SSL_CERT_FILE`` names).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import httpx2
import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient

from authbridge import (
    AuthBridge,
    Introspection,
    OIDCProvider,
    Principal,
    ProviderUnavailable,
)
from authbridge import _httpx as compat
from authbridge._http import HttpClientHolder, TrustedCAs, fetch_json
from authbridge.errors import ConfigurationError
from authbridge.resource.server import ResourceServer
from authbridge.testing import FakeIssuer
from proxy_support import ForwardProxy, Provider, TestCA, make_test_ca, serve_provider


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


PROXY_USER = "proxy-user"
PROXY_PASSWORD = "s3cret-Proxy-pw"
PROXY_VARIABLES = [f"{name}_proxy" for name in ("http", "https", "all", "no")] + [
    f"{name.upper()}_PROXY" for name in ("http", "https", "all", "no")
]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy, CA or netrc setting from the machine running the tests."""
    for name in [*PROXY_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR", "NETRC", "REQUEST_METHOD"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture(params=["httpx", "httpx2"])
def network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """authbridge's network client built on each library in turn."""
    library = {"httpx": httpx, "httpx2": httpx2}[request.param]
    monkeypatch.setattr(compat, "NETWORK", library)
    return library


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """``idp.test`` resolves to 127.0.0.1, for direct connections (no DNS query is sent)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("idp.test", b"idp.test"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def proxy_for(provider: Provider, **kwargs: Any) -> AsyncIterator[ForwardProxy]:
    port = provider.port
    host = urlsplit(provider.fake.issuer).hostname or ""
    upstreams = {("idp.test", port): port, ("127.0.0.1", port): port, (host, port): port}
    async with ForwardProxy(upstreams, **kwargs) as proxy:
        yield proxy


async def verify(provider: Provider, **kwargs: Any) -> Principal:
    async with ResourceServer([provider.fake.provider()], **kwargs) as server:
        return await server.verify(provider.fake.token())


# -- the environment's proxy ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("case", ["upper", "lower"])
async def test_environment_proxy_carries_discovery_and_jwks(
    network: Any,
    scheme: str,
    case: str,
    test_ca: TestCA,
    monkeypatch: pytest.MonkeyPatch,
    authbridge_signing_key: Any,
) -> None:
    tls = test_ca.server if scheme == "https" else None
    with serve_provider(authbridge_signing_key, tls=tls) as provider:
        async with proxy_for(provider) as proxy:
            name = f"{scheme}_proxy"
            monkeypatch.setenv(name.upper() if case == "upper" else name, proxy.url)
            monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
            principal = await verify(provider)
    assert principal.subject == "alice"
    assert provider.paths == ["/.well-known/openid-configuration", "/jwks"]
    if scheme == "https":
        # Each request in a tunnel (the provider closes each connection): the proxy saw
        # where to, nothing of what.
        assert [(s.method, s.target) for s in proxy.seen] == 2 * [
            ("CONNECT", f"idp.test:{provider.port}")
        ]
        assert all("proxy-authorization" not in h for _, h in provider.requests)
    else:
        assert [(s.method, urlsplit(s.target).path) for s in proxy.seen] == [
            ("GET", "/.well-known/openid-configuration"),
            ("GET", "/jwks"),
        ]


async def test_all_proxy_is_the_fallback_and_lower_case_wins(
    network: Any, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider) as proxy:
            monkeypatch.setenv("ALL_PROXY", proxy.url)
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # down
            monkeypatch.setenv("http_proxy", "")  # an empty lower-case one unsets it
            await verify(provider)
    assert len(proxy.seen) == 2


@pytest.mark.parametrize(
    ("no_proxy", "direct"),
    [
        ("idp.test", True),
        ("other.example, IDP.TEST", True),
        (".idp.test", True),
        ("*.idp.test", True),
        ("*", True),
        ("idp.test:{port}", True),
        ("idp.test:1", False),
        ("p.test", False),
        ("dp.test", False),
        ("127.0.0.1", False),  # names are never resolved to decide
    ],
)
async def test_no_proxy(
    network: Any,
    resolver: None,
    no_proxy: str,
    direct: bool,
    monkeypatch: pytest.MonkeyPatch,
    authbridge_signing_key: Any,
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", no_proxy.format(port=provider.port))
            await verify(provider)
    assert len(provider.requests) == 2
    assert len(proxy.seen) == (0 if direct else 2)


# Every spelling of this machine the resolver connects to (httpx hands these hosts to it;
# 0177.0.0.1 is one too, but httpx refuses such a URL itself).
THIS_MACHINE = ["127.0.0.1", "localhost", "127.1", "2130706433", "0x7f.1", "0x7f000001", "0.0.0.0"]


@pytest.mark.parametrize("host", THIS_MACHINE)
async def test_loopback_is_never_proxied_from_the_environment(
    network: Any, host: str, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key, host=host) as provider:
        async with proxy_for(provider) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("ALL_PROXY", proxy.url)
            await verify(provider)
    assert proxy.seen == []
    assert len(provider.requests) == 2


@pytest.mark.parametrize("host", THIS_MACHINE)
async def test_a_development_providers_client_secret_never_reaches_the_proxy(
    network: Any, host: str, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    """Introspection on this machine: the Basic credentials go to it directly."""
    with serve_provider(authbridge_signing_key, host=host) as provider:
        async with proxy_for(provider) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            introspection = Introspection(
                client_id="api",
                client_secret="s3cr3t-client",
                endpoint=f"{provider.fake.issuer}/introspect",
            )
            dev = OIDCProvider(
                "dev",
                issuer=provider.fake.issuer,
                audience=provider.fake.audience,
                introspection=introspection,
            )
            async with ResourceServer([dev]) as server:
                principal = await server.verify("opaque-" + "q" * 40)
    assert principal.subject == "bob"
    assert proxy.seen == []
    basic = "Basic " + base64.b64encode(b"api:s3cr3t-client").decode()
    assert [h.get("authorization") for p, h in provider.requests if p == "/introspect"] == [basic]


async def test_trust_env_false_ignores_the_environment(
    network: Any,
    resolver: None,
    monkeypatch: pytest.MonkeyPatch,
    authbridge_signing_key: Any,
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            holder = HttpClientHolder(trust_env=False)
            doc = await fetch_json(holder.session, provider.fake.issuer + "/jwks")
    assert doc.body == provider.fake.jwks()
    assert proxy.seen == []


async def test_an_injected_transport_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, fake_issuer: FakeIssuer
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # down
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    async with ResourceServer([fake_issuer.provider()], transport=fake_issuer.transport) as rs:
        principal = await rs.verify(fake_issuer.token())
    assert principal.subject == "alice"


# -- an explicit proxy -----------------------------------------------------------------------------


async def test_explicit_proxy_overrides_the_environment(
    network: Any, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider) as from_env, proxy_for(provider) as explicit:
            monkeypatch.setenv("HTTP_PROXY", from_env.url)
            monkeypatch.setenv("NO_PROXY", "idp.test")  # not for an explicit proxy
            holder = HttpClientHolder(proxy=explicit.url)
            await fetch_json(holder.session, provider.fake.issuer + "/jwks")
            # Loopback too: an explicit proxy carries every request.
            local = f"http://127.0.0.1:{provider.port}/jwks"
            await fetch_json(holder.session, local)
    assert from_env.seen == []
    assert [s.target for s in explicit.seen] == [provider.fake.issuer + "/jwks", local]


async def test_proxy_with_a_transport_is_a_configuration_error(fake_issuer: FakeIssuer) -> None:
    with pytest.raises(ConfigurationError) as caught:
        HttpClientHolder(fake_issuer.transport, proxy="http://proxy.example:3128")
    assert caught.value.reason == "proxy_with_transport"


# -- failure stays bounded ------------------------------------------------------------------------


async def test_a_proxy_that_is_down_is_a_fast_provider_unavailable(
    network: Any, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        holder = HttpClientHolder()
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            await fetch_json(holder.session, provider.fake.issuer + "/jwks", timeout=30.0)
        with pytest.raises(ProviderUnavailable):
            await verify(provider)
    assert caught.value.reason == "transport_error:ConnectError"
    assert time.monotonic() - started < 20.0  # refused at once, not after the 30 s bound
    assert provider.requests == []


async def test_a_proxy_that_never_answers_costs_at_most_the_timeout(
    network: Any, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider, silent=True) as proxy:
            holder = HttpClientHolder(proxy=proxy.url)
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable) as caught:
                await fetch_json(holder.session, provider.fake.issuer + "/jwks", timeout=0.5)
            elapsed = time.monotonic() - started
    assert caught.value.reason == "timeout"
    assert 0.4 < elapsed < 15.0
    assert len(proxy.seen) == 1


def test_an_app_answers_503_when_the_proxy_is_down(
    monkeypatch: pytest.MonkeyPatch, fake_issuer: FakeIssuer
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    fake_issuer.issuer = "https://idp.test"
    auth = AuthBridge([fake_issuer.provider()])
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict[str, str]:
        return {"sub": user.subject or ""}

    with TestClient(app) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {fake_issuer.token()}"})
    assert response.status_code == 503


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_redirects_are_not_followed_through_the_proxy(
    network: Any, scheme: str, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch,
    authbridge_signing_key: Any,
) -> None:  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
    tls = test_ca.server if scheme == "https" else None
    with serve_provider(authbridge_signing_key, tls=tls) as provider:
        async with proxy_for(provider) as proxy:
            holder = HttpClientHolder(proxy=proxy.url)
            with pytest.raises(ProviderUnavailable) as caught:
                await fetch_json(holder.session, provider.fake.issuer + "/redirect")
    assert caught.value.reason == "http_status:302"
    assert provider.paths == ["/redirect"]
    assert len(proxy.seen) == 1


async def test_the_size_bound_holds_through_the_proxy(
    network: Any, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider) as proxy:
            holder = HttpClientHolder(proxy=proxy.url)
            with pytest.raises(ProviderUnavailable) as caught:
                await fetch_json(holder.session, provider.fake.issuer + "/big")
    assert caught.value.reason == "response_too_large"


# -- credentials ---------------------------------------------------------------------------------


def _secrets() -> list[str]:
    pair = f"{PROXY_USER}:{PROXY_PASSWORD}".encode()
    return [PROXY_PASSWORD, base64.b64encode(pair).decode()]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_credentials_reach_the_proxy_only(
    network: Any,
    scheme: str,
    test_ca: TestCA,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    authbridge_signing_key: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
    tls = test_ca.server if scheme == "https" else None
    with serve_provider(authbridge_signing_key, tls=tls) as provider:
        async with proxy_for(provider, credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
            monkeypatch.setenv(
                f"{scheme}_proxy", proxy.url_with_credentials(PROXY_USER, PROXY_PASSWORD)
            )
            await verify(provider)
    expected = "Basic " + _secrets()[1]
    assert proxy.seen
    assert all(s.proxy_authorization == expected for s in proxy.seen)
    assert all("proxy-authorization" not in h for _, h in provider.requests)
    assert "Outbound HTTP:" in caplog.text
    assert not any(secret in _logged(caplog) for secret in _secrets())


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_refused_proxy_credentials_leak_nowhere(
    network: Any,
    scheme: str,
    test_ca: TestCA,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    authbridge_signing_key: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
    tls = test_ca.server if scheme == "https" else None
    with serve_provider(authbridge_signing_key, tls=tls) as provider:
        async with proxy_for(provider, credentials=(PROXY_USER, "another-password")) as proxy:
            url = proxy.url_with_credentials(PROXY_USER, PROXY_PASSWORD)
            monkeypatch.setenv(f"{scheme.upper()}_PROXY", url)
            holder = HttpClientHolder()
            with pytest.raises(ProviderUnavailable) as caught:
                await fetch_json(holder.session, provider.fake.issuer + "/jwks")
            with pytest.raises(ProviderUnavailable) as via_server:
                await verify(provider)
    error = caught.value
    assert error.reason == ("http_status:407" if scheme == "http" else "transport_error:ProxyError")
    texts = [str(error), repr(error), json.dumps(error.detail), str(via_server.value),
             repr(holder.routes), holder.routes.describe(), _logged(caplog)]  # fmt: skip
    assert not any(secret in text for secret in _secrets() for text in texts)
    assert provider.requests == []


async def test_netrc_is_never_read(
    network: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine idp.test login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with serve_provider(authbridge_signing_key) as provider:
        async with proxy_for(provider) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            await verify(provider)
    assert len(provider.requests) == 2
    assert all("authorization" not in headers for _, headers in provider.requests)


# -- the CA certificates trusted -----------------------------------------------------------------


async def test_ssl_cert_file_names_the_trusted_cas(
    network: Any, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch, authbridge_signing_key: Any
) -> None:
    with serve_provider(authbridge_signing_key, tls=test_ca.server) as provider:
        async with proxy_for(provider) as proxy:
            url = provider.fake.issuer + "/jwks"
            default = HttpClientHolder(proxy=proxy.url)  # certifi's bundle: no test CA
            with pytest.raises(ProviderUnavailable) as untrusted:
                await fetch_json(default.session, url)
            monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
            trusted = await fetch_json(HttpClientHolder(proxy=proxy.url).session, url)
            ignored = HttpClientHolder(proxy=proxy.url, trust_env=False)
            with pytest.raises(ProviderUnavailable):
                await fetch_json(ignored.session, url)
    assert untrusted.value.reason == "transport_error:ConnectError"
    assert trusted.body == provider.fake.jwks()


def test_ssl_cert_file_wins_over_ssl_cert_dir(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    both = {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": str(tmp_path)}
    assert TrustedCAs.from_environment(both) == TrustedCAs(cafile=str(bundle))
    directory = {"SSL_CERT_DIR": str(tmp_path)}
    assert TrustedCAs.from_environment(directory) == TrustedCAs(capath=str(tmp_path))
    assert TrustedCAs.from_environment({}) == TrustedCAs()


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_a_missing_ca_setting_fails_at_construction(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError) as caught:
        HttpClientHolder()
    assert variable in str(caught.value)
    HttpClientHolder(trust_env=False)  # not read at all
