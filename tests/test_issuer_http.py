"""The app's own authorization server over HTTP: endpoints, bad input, outages, end to end.

Every app here runs its lifespan against a real SQLite store in a temporary
directory, and its outbound HTTP transport fails any request: the app's own
tokens are validated with no network call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Security
from openapi_spec_validator import validate
from tests.conftest import FakeClock

from authbridge import (
    AppIssuer,
    AuthBridge,
    ConfigurationError,
    OIDCProvider,
    Principal,
    SwaggerLogin,
)
from authbridge.errors import StoreUnavailable
from authbridge.fastapi import _issuer
from authbridge.issuer import IssuerRuntime
from authbridge.issuer._config import KEK_ENV
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord, UserRecord
from authbridge.testing import FakeIssuer

ISSUER = "http://127.0.0.1:8000"
SCOPES = {"items:read": "Read items", "items:write": "Change items"}
PASSWORD = "correct horse battery staple"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache", "x-content-type-options": "nosniff"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected outbound request to {request.url}")


@dataclass
class Harness:
    app: FastAPI
    auth: AuthBridge
    client: httpx.AsyncClient

    @property
    def runtime(self) -> IssuerRuntime:
        assert self.auth.issuer is not None
        return self.auth.issuer


def build(
    store: str,
    *,
    issuer: str = ISSUER,
    clock: Callable[[], float] | None = None,
    swagger_login: SwaggerLogin | None = None,
    providers: list[Any] | None = None,
    transport: Any = None,
    **issuer_options: Any,
) -> tuple[FastAPI, AuthBridge]:
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    auth = AuthBridge(
        providers or [],
        issuer=AppIssuer(issuer, store=store, scopes=SCOPES, **issuer_options),
        transport=transport or httpx.MockTransport(no_http),
        swagger_login=swagger_login,
        **kwargs,
    )
    app = FastAPI(title="Items", docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {
            "provider": user.provider,
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
        }

    auth.install(app)
    return app, auth


@asynccontextmanager
async def serve(app: FastAPI, auth: AuthBridge, base: str = ISSUER) -> AsyncIterator[Harness]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            yield Harness(app, auth, client)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    app, auth = build(sqlite_url(tmp_path))
    async with serve(app, auth) as running:
        yield running


async def add_user(runtime: IssuerRuntime, username: str = "alice") -> UserRecord:
    return await runtime.store.users.add(
        UserRecord(
            id=f"user-{username}",
            username=username,
            password_hash=await runtime.passwords.hash(PASSWORD),
            scopes=frozenset(SCOPES),
        )
    )


async def add_machine(runtime: IssuerRuntime, client_id: str = "robot") -> str:
    secret = new_secret(CLIENT_SECRET_PREFIX)
    await runtime.store.clients.add(
        ClientRecord(
            client_id=client_id,
            name="Robot",
            auth_method="client_secret_basic",
            secret_hash=hash_secret(secret, "client_secret"),
            grant_types=frozenset({"client_credentials"}),
            scopes=frozenset({"items:read"}),
        )
    )
    return secret


def basic(client_id: str, secret: str = "") -> dict[str, str]:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {value}"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error
    for name, value in NO_STORE.items():
        assert response.headers[name] == value


async def password_login(h: Harness, **extra: str) -> httpx.Response:
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD, **extra}
    return await h.client.post("/oauth/token", data=form, headers=basic("swagger-ui"))


# --- published documents -------------------------------------------------------------------


async def test_metadata_at_both_well_known_paths(harness: Harness) -> None:
    response = await harness.client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"
    document = response.json()
    assert document == harness.runtime.metadata()
    assert document["issuer"] == ISSUER
    assert document["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert document["jwks_uri"] == f"{ISSUER}/oauth/jwks"
    # No ID tokens yet: nothing of OpenID Connect's login side is announced.
    assert "userinfo_endpoint" not in document
    assert "id_token_signing_alg_values_supported" not in document
    oidc = await harness.client.get("/.well-known/openid-configuration")
    assert oidc.status_code == 200
    assert oidc.json() == document


async def test_jwks_has_public_members_only(harness: Harness) -> None:
    response = await harness.client.get("/oauth/jwks")
    assert response.status_code == 200
    assert response.headers["cache-control"] == harness.runtime.keys.jwks_cache_control()
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert not PRIVATE_MEMBERS & key.keys(), key
        assert key["kid"]


async def test_issuer_with_a_path(tmp_path: Path) -> None:
    issuer = "http://127.0.0.1:8000/tenant"
    app, auth = build(sqlite_url(tmp_path), issuer=issuer)
    async with serve(app, auth) as h:
        inserted = await h.client.get("/.well-known/oauth-authorization-server/tenant")
        assert inserted.status_code == 200
        assert inserted.json()["issuer"] == issuer
        plain = await h.client.get("/.well-known/oauth-authorization-server")
        appended = await h.client.get("/tenant/.well-known/openid-configuration")
        assert plain.json() == appended.json() == inserted.json()
        assert (await h.client.get("/tenant/oauth/jwks")).status_code == 200
        assert (await h.client.get("/oauth/jwks")).status_code == 404
        answer = await h.client.post("/tenant/oauth/token", data={"grant_type": "nope"})
        assert_oauth_error(answer, 400, "unsupported_grant_type")


async def test_another_app_discovers_the_issuer(tmp_path: Path) -> None:
    """A second app's OIDCProvider finds the keys through discovery and accepts the token."""
    app, auth = build(sqlite_url(tmp_path))
    async with serve(app, auth) as h:
        await add_user(h.runtime)
        token = (await password_login(h)).json()["access_token"]
        other = AuthBridge(
            [OIDCProvider("main", issuer=ISSUER, audience=ISSUER)],
            transport=httpx.ASGITransport(app=app),
        )
        async with other:
            principal = await other.verify(token)
        assert principal.provider == "main"
        assert principal.subject == "user-alice"


# --- bad input -------------------------------------------------------------------------------


async def _chunks(total: int, sent: list[int]) -> AsyncIterator[bytes]:
    chunk = b"a=" + b"b" * 1022
    while sent[0] < total:
        sent[0] += len(chunk)
        yield chunk


BAD_BODIES: list[tuple[str, dict[str, str], bytes | None, int, str]] = [
    ("no body", FORM, None, 400, "invalid_request"),
    ("no content type", {}, b"grant_type=password", 400, "invalid_request"),
    ("text/plain", {"content-type": "text/plain"}, b"grant_type=password", 400, "invalid_request"),
    (
        "JSON",
        {"content-type": "application/json"},
        b'{"grant_type": "password"}',
        400,
        "invalid_request",
    ),
    (
        "form media type as a prefix",
        {"content-type": "application/x-www-form-urlencodedx"},
        b"grant_type=password",
        400,
        "invalid_request",
    ),
    (
        "another charset",
        {"content-type": "application/x-www-form-urlencoded; charset=iso-8859-1"},
        b"grant_type=password",
        400,
        "invalid_request",
    ),
    ("oversized", FORM, b"grant_type=password&x=" + b"a" * 16 * 1024, 413, "invalid_request"),
    ("1 MB of parameters", FORM, b"&".join([b"p=v"] * 250_000), 413, "invalid_request"),
    (
        "too many parameters",
        FORM,
        b"&".join(b"p%d=v" % i for i in range(65)),
        400,
        "invalid_request",
    ),
    (
        "repeated parameter",
        FORM,
        b"grant_type=password&grant_type=password",
        400,
        "invalid_request",
    ),
    (
        "repeated parameter, one blank",
        FORM,
        b"grant_type=password&username=&username=alice",
        400,
        "invalid_request",
    ),
    ("invalid UTF-8", FORM, b"grant_type=password&username=\xff\xfe", 400, "invalid_request"),
    ("invalid percent-encoded UTF-8", FORM, b"grant_type=%FF%FE", 400, "invalid_request"),
    ("a field without '='", FORM, b"grant_type", 400, "invalid_request"),
    ("an empty field", FORM, b"grant_type=password&&username=a", 400, "invalid_request"),
    ("missing grant_type", FORM, b"username=alice", 400, "invalid_request"),
    ("unknown grant_type", FORM, b"grant_type=magic", 400, "unsupported_grant_type"),
    ("NUL in grant_type", FORM, b"grant_type=pass%00word", 400, "unsupported_grant_type"),
]


# Well-formed bodies, refused by the grant dispatcher rather than by the form parser.
GRANT_LEVEL = {"no body", "missing grant_type", "unknown grant_type", "NUL in grant_type"}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "error"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_token_endpoint_refuses_bad_input(
    harness: Harness, content_type: dict[str, str], body: bytes | None, status: int, error: str
) -> None:
    response = await harness.client.post("/oauth/token", content=body, headers=content_type)
    assert_oauth_error(response, status, error)


@pytest.mark.parametrize("endpoint", ["revoke", "introspect"])
async def test_other_form_endpoints_refuse_bad_input_alike(harness: Harness, endpoint: str) -> None:
    path = f"/oauth/{endpoint}"
    for name, headers, body, status, error in BAD_BODIES:
        if name not in GRANT_LEVEL:
            response = await harness.client.post(path, content=body, headers=headers)
            assert_oauth_error(response, status, error)
    response = await harness.client.post(path, content=b"token=a&token=b", headers=FORM)
    assert_oauth_error(response, 400, "invalid_request")
    too_big = await harness.client.post(path, content=b"t=" + b"a" * 20_000, headers=FORM)
    assert_oauth_error(too_big, 413, "invalid_request")


async def test_chunked_body_is_cut_off_at_the_cap(harness: Harness) -> None:
    sent = [0]
    response = await harness.client.post(
        "/oauth/token", content=_chunks(1_000_000, sent), headers=FORM
    )
    assert_oauth_error(response, 413, "invalid_request")
    assert response.headers["connection"] == "close"
    # Reading stopped at the cap: most of the megabyte was never asked for.
    assert sent[0] <= _issuer.MAX_FORM_BYTES + 2 * 1024


async def test_a_slow_body_is_refused(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_issuer, "MAX_BODY_SECONDS", 0.1)
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"grant_type="
        await never.wait()

    response = await harness.client.post("/oauth/token", content=stalled(), headers=FORM)
    assert_oauth_error(response, 408, "invalid_request")


async def test_malformed_content_length_is_refused(harness: Harness) -> None:
    """A Content-Length that is not a number (sent as raw ASGI: clients would fix it)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"grant_type=password", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/oauth/token",
        "raw_path": b"/oauth/token",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", b"+19"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await harness.app(scope, receive, send)
    assert sent[0]["status"] == 400


async def test_form_endpoints_take_only_post(harness: Harness) -> None:
    for endpoint in ("token", "revoke", "introspect"):
        for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH"):
            url = f"/oauth/{endpoint}?grant_type=password"
            response = await harness.client.request(method, url)
            assert response.status_code == 405, (method, endpoint)
            assert response.headers["allow"] == "POST"
            assert response.headers["cache-control"] == "no-store"
            if method != "HEAD":
                assert_oauth_error(response, 405, "invalid_request")


async def test_parameters_in_the_query_are_ignored(harness: Harness) -> None:
    response = await harness.client.post(
        "/oauth/token?grant_type=client_credentials", content=b"", headers=FORM
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_a_bug_answers_a_generic_500_and_logs_no_message(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Any) -> dict[str, Any]:
        raise RuntimeError("the-secret-in-the-message")

    monkeypatch.setattr(harness.runtime, "token", broken)
    with caplog.at_level(logging.DEBUG):
        response = await harness.client.post("/oauth/token", data={"grant_type": "password"})
    assert response.status_code == 500
    assert response.json() == {"error": "server_error"}
    assert response.headers["cache-control"] == "no-store"
    assert "RuntimeError" in caplog.text
    assert "the-secret-in-the-message" not in caplog.text


# --- the store down --------------------------------------------------------------------------


async def test_store_unreachable_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app, auth = build("postgresql+asyncpg://postgres:hunter2@127.0.0.1:9/authbridge")
    with caplog.at_level(logging.WARNING, logger="authbridge.fastapi"):
        async with serve(app, auth) as h:
            assert "could not reach its store" in caplog.text
            metadata = await h.client.get("/.well-known/oauth-authorization-server")
            assert metadata.status_code == 200
            for path, form in (
                ("/oauth/token", {"grant_type": "client_credentials"}),
                ("/oauth/revoke", {"token": "x"}),
                ("/oauth/introspect", {"token": "x"}),
            ):
                response = await h.client.post(path, data=form, headers=basic("robot", "s"))
                assert_oauth_error(response, 503, "temporarily_unavailable")
                assert int(response.headers["retry-after"]) >= 1
            jwks = await h.client.get("/oauth/jwks")
            assert jwks.status_code == 503
            assert int(jwks.headers["retry-after"]) >= 1
            # Bad input is still refused as such, before the store is needed.
            bad = await h.client.post("/oauth/token", content=b"a&a", headers=FORM)
            assert_oauth_error(bad, 400, "invalid_request")
    assert "hunter2" not in caplog.text


async def test_start_is_retried_after_the_cooldown_once_for_concurrent_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    app, auth = build(sqlite_url(tmp_path), clock=clock)
    runtime = auth.issuer
    assert runtime is not None
    real_start = runtime.start
    attempts: list[float] = []
    down = True

    async def flaky_start() -> None:
        attempts.append(clock())
        await asyncio.sleep(0.01)  # concurrent requests arrive meanwhile
        if down:
            raise StoreUnavailable("connection_refused", retry_after=2.0)
        await real_start()

    monkeypatch.setattr(runtime, "start", flaky_start)
    async with serve(app, auth) as h:
        assert len(attempts) == 1  # at start-up

        async def ask() -> httpx.Response:
            return await h.client.post("/oauth/token", data={"grant_type": "client_credentials"})

        within = await asyncio.gather(*(ask() for _ in range(5)))
        for response in within:
            assert_oauth_error(response, 503, "temporarily_unavailable")
            assert 1 <= int(response.headers["retry-after"]) <= 5
        assert len(attempts) == 1  # refused within the cooldown, no new attempt

        clock.advance(_issuer.START_RETRY_COOLDOWN)
        still_down = await asyncio.gather(*(ask() for _ in range(5)))
        assert {r.status_code for r in still_down} == {503}
        assert len(attempts) == 2  # one attempt shared by the five requests

        down = False
        clock.advance(_issuer.START_RETRY_COOLDOWN)
        recovered = await asyncio.gather(*(ask() for _ in range(5)))
        assert len(attempts) == 3
        for response in recovered:
            # Started: now the request itself is judged (no client authentication).
            assert_oauth_error(response, 401, "invalid_client")
        assert (await h.client.get("/oauth/jwks")).status_code == 200
        assert len(attempts) == 3


async def test_a_clock_stepping_back_ends_the_cooldown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    app, auth = build(sqlite_url(tmp_path), clock=clock)
    runtime = auth.issuer
    assert runtime is not None
    attempts = 0

    async def failing_start() -> None:
        nonlocal attempts
        attempts += 1
        raise StoreUnavailable("connection_refused")

    monkeypatch.setattr(runtime, "start", failing_start)
    async with serve(app, auth) as h:
        clock.advance(-3600)
        response = await h.client.post("/oauth/token", data={"grant_type": "password"})
        assert_oauth_error(response, 503, "temporarily_unavailable")
        assert attempts == 2


async def test_configuration_error_at_start_stops_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEK_ENV, raising=False)
    app, _ = build(sqlite_url(tmp_path), issuer="https://api.example.com")
    with pytest.raises(ConfigurationError) as raised:
        async with app.router.lifespan_context(app):
            pass
    assert raised.value.reason == "key_encryption_key_required"


async def test_store_failing_later_503_while_issued_tokens_still_work(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_user(harness.runtime)
    issued = await password_login(harness)
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]

    async def store_down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("connection_lost", retry_after=3.2)

    monkeypatch.setattr(harness.runtime, "client", store_down)
    refused = await password_login(harness)
    assert_oauth_error(refused, 503, "temporarily_unavailable")
    assert refused.headers["retry-after"] == "4"  # seconds, rounded up

    allowed = await harness.client.get("/items", headers=bearer(token))
    assert allowed.status_code == 200
    assert allowed.json()["subject"] == "user-alice"


async def test_store_unavailable_escaping_a_grant_is_a_503(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def escaping(request: Any) -> dict[str, Any]:
        raise StoreUnavailable("timeout")

    monkeypatch.setattr(harness.runtime, "introspect", escaping)
    response = await harness.client.post("/oauth/introspect", data={"token": "x"})
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "5"


# --- tokens end to end -------------------------------------------------------------------------


async def test_password_refresh_revoke_end_to_end(harness: Harness) -> None:
    await add_user(harness.runtime)
    login = await password_login(harness, scope="items:read")
    assert login.status_code == 200, login.text
    for name, value in NO_STORE.items():
        assert login.headers[name] == value
    body = login.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "items:read"
    access, refresh = body["access_token"], body["refresh_token"]

    me = await harness.client.get("/items", headers=bearer(access))
    assert me.status_code == 200
    assert me.json() == {
        "provider": "app",
        "subject": "user-alice",
        "client_id": "swagger-ui",
        "scopes": ["items:read"],
    }
    # A refresh token is not a bearer credential.
    refused = await harness.client.get("/items", headers=bearer(refresh))
    assert refused.status_code == 401

    refreshed = await harness.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        headers=basic("swagger-ui"),
    )
    assert refreshed.status_code == 200, refreshed.text
    renewed = refreshed.json()
    assert renewed["refresh_token"] != refresh
    again = await harness.client.get("/items", headers=bearer(renewed["access_token"]))
    assert again.status_code == 200

    revoked = await harness.client.post(
        "/oauth/revoke", data={"token": renewed["refresh_token"]}, headers=basic("swagger-ui")
    )
    assert revoked.status_code == 200
    assert revoked.headers["cache-control"] == "no-store"
    after = await harness.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]},
        headers=basic("swagger-ui"),
    )
    assert_oauth_error(after, 400, "invalid_grant")


async def test_wrong_password_is_invalid_grant(harness: Harness) -> None:
    await add_user(harness.runtime)
    response = await harness.client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "alice", "password": "wrong"},
        headers=basic("swagger-ui"),
    )
    assert_oauth_error(response, 400, "invalid_grant")
    assert PASSWORD not in response.text


async def test_client_credentials_with_basic(harness: Harness) -> None:
    secret = await add_machine(harness.runtime)
    response = await harness.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic("robot", secret)
    )
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()
    me = await harness.client.get("/items", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200
    assert me.json()["client_id"] == "robot"

    wrong = await harness.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic("robot", "nope")
    )
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"] == f'Basic realm="{ISSUER}"'
    assert "nope" not in wrong.text


async def test_introspection_and_revocation_of_an_access_token(harness: Harness) -> None:
    await add_user(harness.runtime)
    secret = await add_machine(harness.runtime)
    access = (await password_login(harness)).json()["access_token"]
    robot = basic("robot", secret)

    active = await harness.client.post("/oauth/introspect", data={"token": access}, headers=robot)
    assert active.status_code == 200, active.text
    assert active.headers["cache-control"] == "no-store"
    assert active.json()["active"] is True
    assert active.json()["sub"] == "user-alice"
    # A public client may not introspect.
    public = await harness.client.post(
        "/oauth/introspect", data={"token": access}, headers=basic("swagger-ui")
    )
    assert_oauth_error(public, 401, "invalid_client")
    unknown = await harness.client.post(
        "/oauth/introspect", data={"token": "made-up"}, headers=robot
    )
    assert unknown.json() == {"active": False}

    revoked = await harness.client.post(
        "/oauth/revoke", data={"token": access}, headers=basic("swagger-ui")
    )
    assert revoked.status_code == 200
    after = await harness.client.post("/oauth/introspect", data={"token": access}, headers=robot)
    assert after.json() == {"active": False}
    # RFC 7009 §2.2: an unknown token is not an error.
    again = await harness.client.post(
        "/oauth/revoke", data={"token": "made-up"}, headers=basic("swagger-ui")
    )
    assert again.status_code == 200


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    app, auth = build(sqlite_url(tmp_path), password_failures_per_account=2)
    async with serve(app, auth) as h:
        await add_user(h.runtime)
        form = {"grant_type": "password", "username": "alice", "password": "wrong"}
        statuses = []
        for _ in range(3):
            response = await h.client.post("/oauth/token", data=form, headers=basic("swagger-ui"))
            statuses.append(response.status_code)
        assert statuses == [400, 400, 429]
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"] in {"slow_down", "temporarily_unavailable"}
        for name, value in NO_STORE.items():
            assert response.headers[name] == value


# --- configuration, OpenAPI, Swagger UI ------------------------------------------------------


def test_providers_may_be_empty_only_with_an_issuer(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        AuthBridge([])
    auth = AuthBridge([], issuer=AppIssuer(ISSUER, store=sqlite_url(tmp_path)))
    assert isinstance(auth.issuer, IssuerRuntime)
    assert auth.resource_server.bound("app").runtime is auth.issuer


def test_openapi_has_the_issuer_flows_as_alternatives(tmp_path: Path) -> None:
    app, auth = build(sqlite_url(tmp_path))
    document = app.openapi()
    validate(document)
    schemes = document["components"]["securitySchemes"]
    password = schemes["AppPassword"]
    assert password["type"] == "oauth2"
    assert password["flows"] == {
        "password": {"tokenUrl": "/oauth/token", "refreshUrl": "/oauth/token", "scopes": SCOPES}
    }
    assert schemes["AppClientCredentials"]["flows"] == {
        "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": SCOPES}
    }
    security = document["paths"]["/items"]["get"]["security"]
    assert security == [
        {"BearerToken": ["items:read"]},
        {"AppPassword": ["items:read"]},
        {"AppClientCredentials": ["items:read"]},
    ]
    # None of the issuer's endpoints is an operation of the API.
    assert not [path for path in document["paths"] if "oauth" in path or "well-known" in path]
    assert auth.swagger_ui_init_oauth == {"clientId": "swagger-ui"}


async def test_docs_page_and_the_builtin_swagger_client(harness: Harness) -> None:
    client = await harness.runtime.client("swagger-ui")
    assert client is not None
    assert client.public
    assert client.grant_types == {"password", "refresh_token"}
    assert client.scopes == frozenset(SCOPES)
    page = await harness.client.get("/docs")
    assert page.status_code == 200
    assert '"initOAuth":{"clientId":"swagger-ui"}' in page.text
    assert "connect-src 'self';" in page.headers["content-security-policy"]


async def test_no_builtin_client_without_docs(tmp_path: Path) -> None:
    auth = AuthBridge([], issuer=AppIssuer(ISSUER, store=sqlite_url(tmp_path), scopes=SCOPES))
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)
    auth.install(app, docs_url=None)
    async with serve(app, auth) as h:
        assert await h.runtime.client("swagger-ui") is None
        response = await password_login(h)
        assert_oauth_error(response, 401, "invalid_client")


async def test_with_a_swagger_login_the_builtin_client_takes_its_client_id(
    tmp_path: Path, fake_issuer: FakeIssuer
) -> None:
    login = SwaggerLogin("hydra", client_id="docs", scopes=["items:read"])
    app, auth = build(
        sqlite_url(tmp_path),
        swagger_login=login,
        providers=[fake_issuer.provider("hydra")],
        transport=fake_issuer.transport,
    )
    document = app.openapi()
    validate(document)
    security = document["paths"]["/items"]["get"]["security"]
    assert [next(iter(r)) for r in security] == [
        "BearerToken",
        "hydra",
        "AppPassword",
        "AppClientCredentials",
    ]
    assert auth.swagger_ui_init_oauth is not None
    assert auth.swagger_ui_init_oauth["clientId"] == "docs"
    async with serve(app, auth) as h:
        assert await h.runtime.client("docs") is not None
        assert await h.runtime.client("swagger-ui") is None
        await add_user(h.runtime)
        response = await h.client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            headers=basic("docs"),
        )
        assert response.status_code == 200, response.text


# --- over a real socket ------------------------------------------------------------------------


@pytest.fixture
def served_url(tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1."""
    app, _ = build(sqlite_url(tmp_path))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        config = uvicorn.Config(
            app, lifespan="on", ws="none", log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.started
            yield f"{host}:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


def _connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _read_response(connection: socket.socket) -> tuple[int, bytes]:
    """Status and everything up to the server closing the connection."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1]), received


def _head(address: str, extra: str) -> bytes:
    return (
        f"POST /oauth/token HTTP/1.1\r\nHost: {address}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{extra}\r\n"
    ).encode()


def test_declared_huge_body_is_refused_before_it_is_sent(served_url: str) -> None:
    with _connect(served_url) as connection:
        connection.sendall(_head(served_url, "Content-Length: 1000000000\r\n"))
        status, received = _read_response(connection)  # the server answers, then closes
    assert status == 413
    assert b'"error":"invalid_request"' in received
    assert b"cache-control: no-store" in received.lower()


def test_endless_chunked_body_is_cut_off_and_the_app_stays_responsive(served_url: str) -> None:
    stop = threading.Event()
    sent = [0]
    with _connect(served_url) as connection:
        connection.sendall(_head(served_url, "Transfer-Encoding: chunked\r\n"))

        def flood() -> None:
            chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
            with contextlib.suppress(OSError):
                while not stop.is_set() and sent[0] < 100_000_000:
                    connection.sendall(chunk)
                    sent[0] += 1024

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        try:
            status, received = _read_response(connection)
        finally:
            stop.set()
            sender.join(10)
    assert status == 413
    assert b'"error":"invalid_request"' in received
    assert sent[0] < 100_000_000  # refused while the body was still coming
    # Another client is served as usual.
    answer = httpx.get(f"http://{served_url}/.well-known/oauth-authorization-server")
    assert answer.status_code == 200
