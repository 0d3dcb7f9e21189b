"""The outbound client: httpx and httpx2 side by side, and how proxies are configured.

Starlette's TestClient (and so FastAPI's) runs on httpx2 when it is installed, as it is
here; users inject transports of either library; authbridge's own network client uses
httpx2. Each path is exercised, and the two other set-ups an app can have (httpx alone;
``httpx2.alias_httpx()``) run in a subprocess.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx
import httpx2
import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from authbridge import AuthBridge, Principal, ProviderUnavailable
from authbridge import _httpx as compat
from authbridge._http import HttpClientHolder, fetch_json, new_client, request
from authbridge._proxy import NoProxy, is_loopback, parse_proxy_url, proxy_routes
from authbridge._proxy import _ip as numeric_host_address
from authbridge.errors import ConfigurationError
from authbridge.resource.server import ResourceServer
from authbridge.testing import FakeIssuer

LIBRARIES = {"httpx": httpx, "httpx2": httpx2}


# -- which library drives what ---------------------------------------------------------------


def test_httpx2_is_preferred_for_the_network_client() -> None:
    assert (httpx2, httpx) == compat.LIBRARIES
    assert compat.NETWORK is httpx2
    assert isinstance(HttpClientHolder(trust_env=False).client(), httpx2.AsyncClient)


@pytest.mark.parametrize(
    ("transport", "library"),
    [
        (httpx.MockTransport(lambda r: httpx.Response(200)), httpx),
        (httpx2.MockTransport(lambda r: httpx2.Response(200)), httpx2),
        (httpx.AsyncHTTPTransport(), httpx),
        (httpx2.AsyncHTTPTransport(), httpx2),
        (object(), httpx),  # duck-typed: the library the API names
    ],
)
def test_a_transport_is_driven_by_a_client_of_its_own_library(transport: Any, library: Any) -> None:
    assert compat.library_of(transport) is library
    client = new_client(transport)
    assert isinstance(client, library.AsyncClient)
    assert client.follow_redirects is False
    assert client.trust_env is False


async def _chunks() -> AsyncIterator[bytes]:
    yield b"\x1f\x8b"


def _mock(library: Any, handler: Callable[[Any], Any]) -> Any:
    return library.MockTransport(handler)


@pytest.fixture(params=list(LIBRARIES))
def lib(request: pytest.FixtureRequest) -> Any:
    return LIBRARIES[request.param]


async def test_responses_of_either_library_read_the_same(lib: Any) -> None:
    def handler(req: Any) -> Any:
        assert req.headers["accept-encoding"] == "identity"
        return lib.Response(200, json={"issuer": "x"}, headers={"Cache-Control": "max-age=60"})

    holder = HttpClientHolder(_mock(lib, handler))
    response = await fetch_json(holder.session, "https://idp.example/doc")
    assert response.body == {"issuer": "x"}
    assert response.cache_control == "max-age=60"
    raw = await request(holder.session, "GET", "https://idp.example/doc")
    assert type(raw.headers) is httpx.Headers
    assert raw.headers["cache-control"] == "max-age=60"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("connect_error", "transport_error:ConnectError"),
        ("read_timeout", "transport_error:ReadTimeout"),
        ("redirect", "http_status:302"),
        ("huge", "response_too_large"),
        ("gzip", "unexpected_content_encoding"),
    ],
)
async def test_bounds_and_errors_hold_for_either_library(
    lib: Any, answer: str, reason: str
) -> None:
    def handler(req: Any) -> Any:
        if answer == "connect_error":
            raise lib.ConnectError("refused", request=req)
        if answer == "read_timeout":
            raise lib.ReadTimeout("slow", request=req)
        if answer == "redirect":
            return lib.Response(302, headers={"Location": "https://elsewhere.example/"})
        if answer == "huge":
            return lib.Response(200, content=b"x" * (600 * 1024))
        # A streamed body: a complete one would be decoded by the mock's Response itself.
        return lib.Response(200, content=_chunks(), headers={"Content-Encoding": "gzip"})

    holder = HttpClientHolder(_mock(lib, handler))
    with pytest.raises(ProviderUnavailable) as caught:
        await fetch_json(holder.session, "https://idp.example/doc")
    assert caught.value.reason == reason
    assert "idp.example" not in str(caught.value)


async def test_the_timeout_bounds_each_operation_too(lib: Any) -> None:
    seen: list[dict[str, float]] = []

    def handler(req: Any) -> Any:
        seen.append(req.extensions["timeout"])
        return lib.Response(200, json={})

    await fetch_json(
        HttpClientHolder(_mock(lib, handler)).session, "https://a.example/", timeout=12
    )
    assert seen == [{"connect": 12, "read": 12, "write": 12, "pool": 12}]


def _issuer_handler(fake: FakeIssuer, lib: Any) -> Callable[[Any], Any]:
    def handler(req: Any) -> Any:
        if req.url.path == "/.well-known/openid-configuration":
            return lib.Response(200, json=fake.discovery_document())
        if req.url.path == "/jwks":
            return lib.Response(200, json=fake.jwks())
        return lib.Response(404, json={})

    return handler


async def test_a_resource_server_takes_a_transport_of_either_library(
    lib: Any, fake_issuer: FakeIssuer
) -> None:
    transport = _mock(lib, _issuer_handler(fake_issuer, lib))
    async with ResourceServer([fake_issuer.provider()], transport=transport) as server:
        principal = await server.verify(fake_issuer.token(scopes=["items:read"]))
    assert principal.subject == "alice"


@pytest.mark.parametrize("kind", ["test kit (httpx)", "httpx2", "network"])
def test_an_app_under_starlettes_httpx2_test_client(kind: str, fake_issuer: FakeIssuer) -> None:
    with FakeIssuer.serve(key=fake_issuer.key) as served:
        issuer: FakeIssuer = served if kind == "network" else fake_issuer
        transport = {
            "test kit (httpx)": fake_issuer.transport,
            "httpx2": _mock(httpx2, _issuer_handler(fake_issuer, httpx2)),
            "network": None,
        }[kind]
        auth = AuthBridge([issuer.provider()], transport=transport)
        app = FastAPI(lifespan=auth.lifespan)

        @app.get("/me")
        async def me(user: Principal = Security(auth.principal)) -> dict[str, str]:
            return {"sub": user.subject or ""}

        with TestClient(app) as client:
            assert isinstance(client, httpx2.Client)
            ok = client.get("/me", headers={"Authorization": f"Bearer {issuer.token()}"})
            refused = client.get("/me", headers={"Authorization": "Bearer nope"})
    assert (ok.status_code, ok.json()) == (200, {"sub": "alice"})
    assert refused.status_code == 401


_APP = """
import warnings, httpx
from fastapi import FastAPI, Security
from authbridge import AuthBridge, Principal
from authbridge import _httpx as compat
from authbridge.testing import FakeIssuer

fake = FakeIssuer()
results = {"libraries": [m.__name__ for m in compat.LIBRARIES]}
with FakeIssuer.serve(key=fake.key) as served:
    for name, issuer, transport in [("kit", fake, fake.transport), ("network", served, None)]:
        auth = AuthBridge([issuer.provider()], transport=transport)
        app = FastAPI(lifespan=auth.lifespan)

        @app.get("/me")
        async def me(user: Principal = Security(auth.principal)) -> dict:
            return {"sub": user.subject}

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Starlette's TestClient warns without httpx2
            from fastapi.testclient import TestClient
        with TestClient(app) as client:
            answer = client.get("/me", headers={"Authorization": "Bearer " + issuer.token()})
        base = type(client).__mro__[1]  # the library's Client that Starlette's derives from
        results[name] = [answer.status_code, answer.json(), base.__module__]
print(json.dumps(results))
"""


def _run(prelude: str) -> dict[str, Any]:
    code = "import json, sys\n" + textwrap.dedent(prelude) + _APP
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_app_without_httpx2() -> None:
    # A None entry in sys.modules makes `import httpx2` fail, as if it were not installed.
    result = _run('sys.modules["httpx2"] = None\n')
    assert result["libraries"] == ["httpx"]
    assert result["kit"] == result["network"] == [200, {"sub": "alice"}, "httpx"]


def test_an_app_that_aliases_httpx_to_httpx2() -> None:
    result = _run("import httpx2\nhttpx2.alias_httpx()\nimport httpx\nassert httpx is httpx2\n")
    assert result["libraries"] == ["httpx2"]
    assert result["kit"] == result["network"] == [200, {"sub": "alice"}, "httpx2"]


# -- proxy configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("proxy.corp:3128", "http://proxy.corp:3128"),
        ("http://proxy.corp:3128", "http://proxy.corp:3128"),
        ("HTTPS://Proxy.Corp", "https://proxy.corp"),
        ("http://user:pw@proxy.corp:3128/", "http://***@proxy.corp:3128"),
        ("http://[::1]:3128", "http://[::1]:3128"),
    ],
)
def test_proxy_urls(value: str, shown: str) -> None:
    proxy = parse_proxy_url(value, source="HTTPS_PROXY")
    assert proxy.shown == shown
    assert "pw" not in repr(proxy)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("socks5://user:pw@proxy:1080", "unsupported_proxy_scheme"),
        ("ftp://proxy", "unsupported_proxy_scheme"),
        ("http://user:pw@proxy:99999", "invalid_proxy_url"),
        ("http://user:pw@proxy:3128/path", "invalid_proxy_url"),
        ("http://user:pw@proxy:3128?x=1", "invalid_proxy_url"),
        ("http://", "invalid_proxy_url"),
        ("http://user:pw@:3128", "invalid_proxy_url"),
    ],
)
def test_bad_proxy_urls_are_refused_without_their_credentials(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        proxy_routes(None, {"HTTPS_PROXY": value})
    assert caught.value.reason == reason
    assert "HTTPS_PROXY" in str(caught.value)
    assert "pw" not in str(caught.value)
    with pytest.raises(ConfigurationError):
        HttpClientHolder(proxy=value)


@pytest.mark.parametrize("value", ["", "  ", 3128])
def test_an_explicit_proxy_must_be_a_url(value: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        HttpClientHolder(proxy=value)
    assert caught.value.reason == "invalid_proxy_url"


_PASSWORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=6)


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(password=_PASSWORDS, port=st.integers(min_value=-10, max_value=100_000))
def test_a_proxy_password_is_never_shown(password: str, port: int) -> None:
    password = f"zq{password}"  # nothing else in the texts contains "zq"
    value = f"http://user:{quote(password, safe='')}@proxy.example:{port}"
    try:
        routes = proxy_routes(None, {"ALL_PROXY": value})
    except ConfigurationError as error:
        texts = [str(error), error.message]
    else:
        texts = [routes.describe(), repr(routes)]
    for text in texts:
        assert quote(password, safe="") not in text
        assert password not in text


# What a user name or password may hold unencoded: the characters that end a netloc early
# ("#", "?", "/", "@"), ":" (so "user:1234" reads as a host and port), brackets and digits;
# the letters appear in no message, so any 4 of these characters in a text come from them.
_USERINFO = st.text(st.sampled_from("QJZVKW5679#?/@:[]%!~.-_"), min_size=4, max_size=24)
_PREFIXES = st.sampled_from(["", "http://", "https://", "HTTP://", "socks5://", "Q5:"])
_HOSTPORTS = st.sampled_from(
    ["proxy.example:3128", "proxy.example", "[::1]:8080", ":3128", "proxy.example:99999", ""]
)
_SUFFIXES = st.sampled_from(["", "/", "/path", "?q=1", "#f", "/#"])


def _shown_texts(value: str) -> list[str]:
    """Every text authbridge produces from a proxy value: errors, start-up line, reprs."""
    texts: list[str] = []
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("authbridge")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        for attempt in (
            lambda: proxy_routes(None, {"HTTPS_PROXY": value}),
            lambda: proxy_routes(value, {}),
            lambda: HttpClientHolder(proxy=value, trust_env=False).routes,
        ):
            try:
                routes = attempt()
            except ConfigurationError as error:
                texts += [str(error), repr(error), error.message, json.dumps(error.detail)]
            else:
                texts += [routes.describe(), repr(routes)]
                texts += [proxy.shown for proxy in routes.by_scheme.values()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return texts + [record.getMessage() for record in records]


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(prefix=_PREFIXES, userinfo=_USERINFO, hostport=_HOSTPORTS, suffix=_SUFFIXES)
def test_no_part_of_the_credentials_is_ever_shown(
    prefix: str, userinfo: str, hostport: str, suffix: str
) -> None:
    """Whatever the credentials hold (unencoded "#", "?", "/", "@", ":"), and wherever the
    URL parser splits them, no 4 consecutive characters of them reach an error or a log."""
    value = f"{prefix}{userinfo}@{hostport}{suffix}"
    pieces = {userinfo[i : i + 4] for i in range(len(userinfo) - 3)}
    for text in _shown_texts(value):
        leaked = [piece for piece in pieces if piece in text]
        assert not leaked, (leaked, text)


@pytest.mark.parametrize(
    ("value", "secrets"),
    [
        ("http://svc:1234#secret@proxy:3128", ["svc", "1234", "secret"]),
        ("http://svc:1234?secret@proxy:3128", ["svc", "1234", "secret"]),
        ("http://svc:1234/secret@proxy:3128", ["svc", "1234", "secret"]),
        ("http://user:p@zz#qq@proxy:3128", ["zz", "qq"]),  # urlsplit's host would be "zz"
        ("hunter22:x://@proxy:3128", ["hunter22"]),  # "hunter22" would be the scheme
    ],
)
def test_a_value_with_an_at_sign_is_named_but_never_shown(value: str, secrets: list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        proxy_routes(None, {"HTTPS_PROXY": value})
    message = caught.value.message
    assert message.startswith("HTTPS_PROXY ")
    assert "percent-encode" in message  # the fix
    for piece in [*secrets, "proxy:3128"]:
        assert piece not in str(caught.value)


def test_without_credentials_the_invalid_value_is_shown() -> None:
    with pytest.raises(ConfigurationError) as caught:
        proxy_routes(None, {"HTTPS_PROXY": "http://proxy.corp:3128/path"})
    assert "HTTPS_PROXY=http://proxy.corp:3128 is not a valid proxy URL" in str(caught.value)
    assert "percent-encode" not in str(caught.value)


def test_the_environment_spellings() -> None:
    a, b, c = "http://a.example:1", "http://b.example:2", "http://c.example:3"

    def shown(environ: dict[str, str]) -> dict[str, str]:
        routes = proxy_routes(None, environ)
        return {scheme: proxy.shown for scheme, proxy in routes.by_scheme.items()}

    assert shown({}) == {}
    assert shown({"HTTPS_PROXY": a}) == {"https": a}
    assert shown({"https_proxy": a, "HTTPS_PROXY": b}) == {"https": a}  # lower-case wins
    assert shown({"https_proxy": "", "HTTPS_PROXY": b}) == {}  # an empty one unsets
    assert shown({"ALL_PROXY": c, "HTTP_PROXY": b}) == {"https": c, "http": b}
    assert shown({"all_proxy": c}) == {"https": c, "http": c}
    # Under CGI a client's "Proxy:" header becomes HTTP_PROXY (httpoxy): ignored there.
    assert shown({"HTTP_PROXY": b, "REQUEST_METHOD": "GET"}) == {}
    assert shown({"http_proxy": b, "REQUEST_METHOD": "GET"}) == {"http": b}
    # NO_PROXY alone configures nothing; an explicit proxy ignores the environment.
    assert shown({"NO_PROXY": "*"}) == {}
    explicit = proxy_routes(a, {"HTTPS_PROXY": b, "NO_PROXY": "*"})
    assert explicit.describe() == f"http and https URLs through {a} (proxy=)"
    assert explicit.bypass is None
    assert explicit.proxy_for("https", "localhost", 443) is not None


def test_the_start_up_line_names_the_proxy_without_credentials(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="authbridge.http")
    monkeypatch.setenv("HTTPS_PROXY", "http://me:hunter22@proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.corp,10.0.0.0/8")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    holder = HttpClientHolder()
    assert holder.routes.describe() in caplog.text
    assert "https URLs through http://***@proxy.corp:3128 (HTTPS_PROXY)" in caplog.text
    assert "2 NO_PROXY entries" in caplog.text
    assert "hunter22" not in caplog.text


# -- NO_PROXY and loopback ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "host", "port", "direct"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "API.Example.COM.", 443, True),
        ("example.com", "badexample.com", 443, False),
        ("example.com", "example.com.evil", 443, False),
        (".example.com", "example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.1.2.3", "10.1.2.3", 80, True),
        ("10.1.2.3:80", "10.1.2.3", 443, False),
        ("fd00::/8", "fd12::1", 443, True),
        ("[fd12::1]:443", "fd12::1", 443, True),
        ("::1", "0.0.0.1", 443, False),  # families never cross-match
        ("0.0.0.0/0", "::1", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),  # no name is resolved
        ("*", "anything.example", 1, True),
        ("a.example, *", "b.example", 1, True),
        ("[, */x, a/b, *.*", "a", 1, False),  # unusable entries are ignored
    ],
)
def test_no_proxy_entries(entry: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy.parse(entry).matches(host, port) is direct


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(domain=_DOMAIN, sub=_DOMAIN, glue=_LABEL, spelling=st.sampled_from(["", ".", "*."]))
def test_a_domain_entry_matches_the_domain_and_its_subdomains_only(
    domain: str, sub: str, glue: str, spelling: str
) -> None:
    # All-number names ("1.1", "0x10") are addresses to the resolver, not domains.
    assume(all(numeric_host_address(h) is None for h in (domain, f"{sub}.{domain}", glue + domain)))
    rules = NoProxy.parse(f"{spelling}{domain}")
    assert rules.matches(domain, 443)
    assert rules.matches(f"{sub}.{domain}", 443)
    assert not rules.matches(f"{glue}{domain}", 443)  # no label boundary: another domain


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(st.text(max_size=60), st.text(max_size=60), st.integers(0, 70_000))
def test_any_no_proxy_value_parses_and_matches_without_error(
    value: str, host: str, port: int
) -> None:
    NoProxy.parse(value).matches(host, port)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.200.3.4", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        # What the resolver reads as 127.0.0.1 (inet_aton), though `ipaddress` does not.
        ("127.1", True),
        ("127.0.1", True),
        ("2130706433", True),
        ("0x7f.1", True),
        ("0X7F000001", True),
        ("0177.0.0.1", True),
        ("0x7f.0.0.0x1", True),
        ("127.16777215", True),
        # The unspecified address: a connection to it reaches this machine.
        ("0.0.0.0", True),
        ("0", True),
        ("0x0", True),
        ("::", True),
        ("[::]", True),
        ("::ffff:0.0.0.0", True),
        ("localhost.example.com", False),
        ("mylocalhost", False),
        ("127.example", False),
        ("10.0.0.1", False),
        ("10.1", False),
        ("0.0.0.1", False),
        ("128.1", False),
        ("0x80000001", False),
        ("127.0.0.1 x", False),  # inet_aton stops at the space; the resolver refuses it
        ("127.0.0.256", False),
        ("08.0.0.1", False),  # not octal: no address
        ("1.2.3.4.5", False),
        ("0x", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    routes = proxy_routes(None, {"HTTPS_PROXY": "http://proxy.example:3128"})
    assert (routes.proxy_for("https", host, 443) is None) is loopback


def _aton_part(value: int, base: str, zeros: int, upper: bool) -> str:
    """One part of an address as inet_aton reads it, in ``base``, with extra leading zeros."""
    if base == "hex":
        digits = f"{value:x}".upper() if upper else f"{value:x}"
        return ("0X" if upper else "0x") + "0" * zeros + digits
    if base == "octal":
        return "0" + "0" * zeros + f"{value:o}"
    return str(value)


@st.composite
def _numeric_spellings(draw: st.DrawFn, addresses: st.SearchStrategy[int]) -> tuple[int, str]:
    """(an IPv4 address, one of its inet_aton spellings: 1 to 4 parts, each decimal, octal
    or hexadecimal; the last part holds the remaining bytes)."""
    address = draw(addresses)
    count = draw(st.integers(1, 4))
    packed = address.to_bytes(4, "big")
    values = [*packed[: count - 1], int.from_bytes(packed[count - 1 :], "big")]
    parts = [
        _aton_part(
            value,
            draw(st.sampled_from(["decimal", "octal", "hex"])),
            draw(st.integers(0, 3)),
            draw(st.booleans()),
        )
        for value in values
    ]
    return address, ".".join(parts)


def _resolver_reads(host: str) -> ipaddress.IPv4Address | None:
    """What getaddrinfo connects to for a numeric host (no name is looked up)."""
    try:
        found = socket.getaddrinfo(host, 80, socket.AF_INET, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.IPv4Address(found[0][4][0])


_PROXIED = proxy_routes(None, {"HTTP_PROXY": "http://proxy.example:3128"})


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(_numeric_spellings(st.integers(0x7F000000, 0x7FFFFFFF)))
def test_every_spelling_of_a_loopback_address_goes_direct(found: tuple[int, str]) -> None:
    address, spelling = found
    assert _resolver_reads(spelling) == ipaddress.IPv4Address(address)  # a real spelling
    assert is_loopback(spelling)
    assert is_loopback(spelling.upper())
    assert _PROXIED.proxy_for("http", spelling, 80) is None


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(_numeric_spellings(st.integers(0, 2**32 - 1)))
def test_numeric_hosts_are_the_address_the_resolver_connects_to(found: tuple[int, str]) -> None:
    address, spelling = found
    ip = ipaddress.IPv4Address(address)
    assert numeric_host_address(spelling.lower()) == ip == _resolver_reads(spelling)
    local = ip.is_loopback or address == 0
    assert is_loopback(spelling) is local
    assert (_PROXIED.proxy_for("http", spelling, 80) is None) is local
    # NO_PROXY networks and addresses see the same address, in either spelling.
    assert NoProxy.parse(f"{ip}/8").matches(spelling, 80)
    assert NoProxy.parse(str(ip)).matches(spelling, 80)
    assert NoProxy.parse(spelling).matches(str(ip), 80)
    assert not NoProxy.parse(f"{ipaddress.IPv4Address(address ^ 1)}").matches(spelling, 80)


@settings(deadline=None)  # timing on a shared, loaded machine is no property
@given(st.text(st.sampled_from("0123456789abcdefxX. "), max_size=20))
def test_any_host_of_number_characters_reads_as_the_resolver_reads_it(host: str) -> None:
    """No false positive either: what the resolver refuses is no address."""
    assert numeric_host_address(host.lower()) == _resolver_reads(host)


@pytest.mark.parametrize(
    ("entry", "host", "direct"),
    [
        ("10.0.0.0/8", "10.1", True),
        ("10.0.0.0/8", "167772161", True),
        ("10.0.0.0/8", "0xa.0x1", True),
        ("10.0.0.0/8", "012.1", True),
        ("10.0.0.1", "10.1", True),
        ("10.1", "10.0.0.1", True),
        ("0xa000001:8080", "10.0.0.1", True),
        ("10.0.0.2", "10.1", False),
        ("10.0.0.0/8", "11.1", False),
    ],
)
def test_no_proxy_networks_match_every_spelling(entry: str, host: str, direct: bool) -> None:
    assert NoProxy.parse(entry).matches(host, 8080) is direct
    routes = proxy_routes(None, {"HTTP_PROXY": "http://proxy.example:3128", "NO_PROXY": entry})
    assert (routes.proxy_for("http", host, 8080) is None) is direct
