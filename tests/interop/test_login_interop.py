"""The generic OpenID Connect login against the real OpenID Provider ``oidc-provider`` (npm).

LoginClient.start -> the provider's own login and consent pages, driven with an HTTP client
posting their forms as a browser would -> the callback URL's query -> LoginClient.finish.
Nothing is mocked between authbridge and the provider: discovery, JWKS, the token endpoint
(client_secret_basic, PKCE S256), the ID token (nonce, at_hash) and userinfo are the
provider's. Requests authbridge makes are counted by wrapping the real transport.
"""

# ruff: noqa: F811 - the store fixtures are imported, then requested by name

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urljoin, urlsplit

import httpx
import pytest

from authbridge._http import HttpClientHolder
from authbridge.client._flow import LoginClient
from authbridge.client._oidc import OIDCLogin
from authbridge.errors import LoginError
from authbridge.store import SQLStore
from store_support import sqlite_store, sqlite_store_url  # noqa: F401 - fixtures

from .op import OidcProvider, _parse_forms, default_config

pytestmark = pytest.mark.interop

CLIENT_ID = "login-client"
CLIENT_SECRET = "login-client-secret-0123456789abcdef"  # a fixed test credential
# Nothing listens here: the test reads the provider's redirect instead of following it.
CALLBACK = "http://127.0.0.1:9/oauth/callback"
AFTER_LOGOUT = "http://127.0.0.1:9/after-logout"
BROWSER = "browser-cookie-" + secrets.token_urlsafe(16)


def login_client() -> dict[str, Any]:
    """A confidential web client of the app (client_secret_basic, code flow)."""
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [AFTER_LOGOUT],
    }


@pytest.fixture(scope="module")
def provider(
    oidc_provider_install_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    base = default_config()
    config = base.replace(clients=(*base.clients, login_client()))
    op = OidcProvider(tmp_path_factory.mktemp("login-op"), install_dir=oidc_provider_install_dir)
    with op:
        op.start(config)
        yield op


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting requests by path."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        return await super().handle_async_request(request)


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
async def client(
    provider: OidcProvider, transport: CountingTransport, sqlite_store: SQLStore
) -> AsyncIterator[LoginClient]:
    holder = HttpClientHolder(transport)
    holder.open()
    login = OIDCLogin(
        name="op",
        display_name="oidc-provider",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        issuer=provider.issuer,
        client=holder.session,
        clock=time.time,
        timeout=10.0,
    )
    yield LoginClient({"op": login}, sqlite_store.one_time, clock=time.time, callback_url=CALLBACK)
    await holder.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """The user's browser: keeps the provider's cookies, follows nothing by itself."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=10.0) as http:
        yield http


def _is_callback(location: str, target: str) -> bool:
    got, want = urlsplit(location), urlsplit(target)
    return (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path)


async def drive(
    browser: httpx.AsyncClient,
    url: str,
    *,
    username: str = "alice",
    password: str = "wonderland",
    abort: bool = False,
    target: str = CALLBACK,
) -> list[tuple[str, str]]:
    """Follow the provider's pages from ``url`` to the redirect to ``target``; its query.

    Logs in (or, with ``abort``, presses Cancel on the login page) and consents.
    """
    response = await browser.get(url)
    for _ in range(12):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _is_callback(location, target):
                return parse_qsl(urlsplit(location).query, keep_blank_values=True)
            response = await browser.get(location)
            continue
        assert response.status_code == 200, response.text[:500]
        forms = _parse_forms(response.text)
        by_action = {form.action.rsplit("/", 1)[-1]: form for form in forms}
        if abort:
            form, data = by_action["abort"], {}
        elif "login" in by_action and "password" in by_action["login"].input_names:
            form, data = by_action["login"], {"login": username, "password": password}
        elif "confirm" in by_action:
            form, data = by_action["confirm"], {}
        else:
            raise AssertionError(f"unexpected page: {response.text[:500]}")
        action = urljoin(str(response.url), form.action)
        response = await browser.post(action, data={**form.fields, **data})
    raise AssertionError("no redirect to the callback")


async def test_login_with_pkce_nonce_and_iss(
    provider: OidcProvider,
    client: LoginClient,
    browser: httpx.AsyncClient,
    transport: CountingTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = await client.start("op", browser=BROWSER, purpose="session", return_to="/home")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert "nonce" in query
    assert url.startswith(f"{provider.issuer}/auth?")
    during_start = list(caplog.records)
    params = await drive(browser, url)  # the user's browser, not authbridge: not checked
    caplog.clear()
    names = [name for name, _ in params]
    assert sorted(names) == ["code", "iss", "state"]
    assert dict(params)["iss"] == provider.issuer  # RFC 9207, sent by the provider

    outcome = await client.finish(params, browser=BROWSER)
    identity = outcome.identity
    assert identity.provider == "op"
    assert identity.issuer == provider.issuer
    assert identity.subject == "alice"
    assert identity.email == "alice@example.test"  # from userinfo
    assert identity.email_verified is True
    assert identity.name == "Alice Liddell"
    assert identity.username == "alice"
    assert identity.id_token is not None
    assert outcome.transaction.return_to == "/home"
    assert transport.paths["/token"] == 1
    assert transport.paths["/me"] == 1

    # The same callback again: the transaction is gone, and so is the provider's code.
    with pytest.raises(LoginError, match="state_unknown"):
        await client.finish(params, browser=BROWSER)
    assert transport.paths["/token"] == 1

    # Over the real transport too (httpx and httpcore at DEBUG), nothing secret reached a log
    # line while authbridge started and finished the login.
    records = [*during_start, *caplog.records]
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in records)
    assert "POST" in logged  # the token request was logged (without its form)
    assert "Login refused: state_unknown" in logged
    secret = [(k, v) for k, v in params if k in ("code", "state")]
    for name, value in [*secret, ("nonce", query["nonce"][0]), ("browser", BROWSER)]:
        assert value not in logged, name
    assert identity.id_token not in logged


async def test_bob_logs_in_unverified(client: LoginClient, browser: httpx.AsyncClient) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = await drive(browser, url, username="bob", password="builder")
    identity = (await client.finish(params, browser=BROWSER)).identity
    assert identity.subject == "bob"
    assert identity.email == "bob@example.test"
    assert identity.email_verified is False


async def test_the_iss_parameter_is_checked(
    provider: OidcProvider,
    client: LoginClient,
    browser: httpx.AsyncClient,
    transport: CountingTransport,
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = await drive(browser, url)
    wrong = [(k, provider.issuer + "/other" if k == "iss" else v) for k, v in params]
    with pytest.raises(LoginError, match="iss_mismatch"):
        await client.finish(wrong, browser=BROWSER)

    url = await client.start("op", browser=BROWSER, purpose="session")
    params = await drive(browser, url)  # the provider's session: no login page this time
    missing = [(k, v) for k, v in params if k != "iss"]
    with pytest.raises(LoginError, match="iss_missing"):
        await client.finish(missing, browser=BROWSER)
    assert transport.paths["/token"] == 0


async def test_another_browser_cannot_finish(
    client: LoginClient, browser: httpx.AsyncClient, transport: CountingTransport
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = await drive(browser, url)
    with pytest.raises(LoginError, match="browser_mismatch"):
        await client.finish(params, browser="someone-elses-browser")
    assert transport.paths["/token"] == 0


async def test_an_aborted_login_is_a_provider_error(
    client: LoginClient, browser: httpx.AsyncClient, transport: CountingTransport
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    params = await drive(browser, url, abort=True)
    assert dict(params)["error"] == "access_denied"
    with pytest.raises(LoginError) as caught:
        await client.finish(params, browser=BROWSER)
    assert caught.value.reason == "provider_error"
    assert caught.value.detail == {"error": "access_denied"}
    assert transport.paths["/token"] == 0
    # Consumed: the state is gone.
    with pytest.raises(LoginError, match="state_unknown"):
        await client.finish(params, browser=BROWSER)


async def test_rp_initiated_logout(
    provider: OidcProvider, client: LoginClient, browser: httpx.AsyncClient
) -> None:
    url = await client.start("op", browser=BROWSER, purpose="session")
    identity = (await client.finish(await drive(browser, url), browser=BROWSER)).identity
    login = client.logins["op"]
    assert login.supports_logout
    logout = await login.logout_url(
        id_token_hint=identity.id_token, post_logout_redirect_uri=AFTER_LOGOUT, state="after-1"
    )
    assert logout is not None
    assert logout.startswith(f"{provider.issuer}/session/end?")
    # The provider asks the user to confirm; the browser posts the confirmation form.
    page = await browser.get(logout)
    assert page.status_code == 200, page.text[:500]
    form = next(f for f in _parse_forms(page.text) if f.action.endswith("/session/end/confirm"))
    done = await browser.post(
        urljoin(str(page.url), form.action), data={**form.fields, "logout": "yes"}
    )
    assert done.is_redirect, done.text[:500]
    location = done.headers["location"]
    assert _is_callback(location, AFTER_LOGOUT)
    assert parse_qs(urlsplit(location).query) == {"state": ["after-1"]}
    # The provider's session ended: the next login shows its login page again.
    again = await client.start("op", browser=BROWSER, purpose="session")
    first = await browser.get(again)
    assert first.is_redirect
    interaction = await browser.get(urljoin(str(first.url), first.headers["location"]))
    assert any("password" in f.input_names for f in _parse_forms(interaction.text))
