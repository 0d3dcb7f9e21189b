"""Refusals a developer can understand: explained bodies, log lines, Retry-After, scope mistakes."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from authbridge import (
    AuthBridge,
    ConfigurationError,
    GitHubProvider,
    InvalidToken,
    Principal,
    ProviderUnavailable,
    SwaggerLogin,
)
from authbridge.fastapi._refusals import MAX_KINDS, RefusalLog, render_detail, retry_after
from authbridge.testing import FakeIssuer

LOGGER = "authbridge.fastapi"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"subject": user.subject}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: Principal = Security(auth.principal)) -> None:
        await websocket.accept()
        await websocket.close()

    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refusal_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and "Request refused" in r.getMessage()]


def raising(error: Exception) -> Any:
    async def verify(token: str) -> Principal:
        raise error

    return verify


# --- the development switch ------------------------------------------------------------------


def test_refusals_are_generic_by_default(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(fake_issuer.bad.wrong_audience()))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or expired access token"}


def test_explain_refusals_is_loud(
    fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    at_construction = [r for r in caplog.records if "explain_refusals is ON" in r.getMessage()]
    assert [r.levelno for r in at_construction] == [logging.WARNING]
    with TestClient(make_app(auth)):
        pass
    at_startup = [r for r in caplog.records if "explain_refusals is ON" in r.getMessage()]
    assert [r.levelno for r in at_startup] == [logging.WARNING, logging.WARNING]


def test_explained_wrong_audience(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(fake_issuer.bad.wrong_audience()))
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert detail["message"] == "Invalid or expired access token"
    assert detail["error"] == "invalid_token"
    assert detail["reason"] == "audience_mismatch"
    assert detail["provider"] == "fake"
    assert detail["claim"] == "aud"
    # The challenge header stays generic: values travel in the JSON body only.
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="Invalid or expired access token"'
    )


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("expired", "expired"),
        ("not_yet_valid", "not_yet_valid"),
        ("wrong_issuer", "unknown_issuer"),
        ("alg_none", None),
        ("unknown_kid", "unknown_key"),
        ("bad_signature", "bad_signature"),
        ("wrong_type", "wrong_token_type"),
    ],
)
def test_each_refusal_says_why(fake_issuer: FakeIssuer, kind: str, reason: str | None) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(getattr(fake_issuer.bad, kind)()))
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert detail["error"] == "invalid_token"
    if reason is not None:
        assert detail["reason"] == reason
    else:
        assert detail["reason"]  # some structural reason, which the JOSE layer names


def test_an_unknown_issuer_lists_the_configured_ones(fake_issuer: FakeIssuer) -> None:
    provider = fake_issuer.provider()
    auth = AuthBridge(providers=[provider], transport=fake_issuer.transport, explain_refusals=True)
    slashed = fake_issuer.token(iss=fake_issuer.issuer + "/", scopes=["items:read"])
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(slashed))
    detail = response.json()["detail"]
    assert detail["reason"] == "unknown_issuer"
    assert detail["detail"]["configured"] == [fake_issuer.issuer]
    assert detail["detail"]["actual"] == fake_issuer.issuer + "/"
    assert "trailing slash" in detail["detail"]["hint"]


def test_an_unroutable_opaque_token_lists_the_prefixes(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider(), GitHubProvider()],
        transport=fake_issuer.transport,
        explain_refusals=True,
    )
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer("refresh-token-abc"))
    detail = response.json()["detail"]
    assert detail["reason"] == "unknown_token_format"
    assert "ghp_" in detail["detail"]["configured_prefixes"]
    assert "prefix" in detail["detail"]["hint"]


def test_missing_scopes_are_listed(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    with TestClient(make_app(auth)) as client:
        response = client.get("/items", headers=bearer(fake_issuer.token(scopes=["other"])))
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert detail["reason"] == "missing_scopes"
    assert detail["detail"] == {
        "required": ["items:read"],
        "missing": ["items:read"],
        "granted": ["other"],
    }


def test_layer_details_are_passed_on(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    error = InvalidToken(
        "issuer_mismatch",
        provider="fake",
        claim="iss",
        detail={"expected": "https://a.example/", "actual": "https://a.example"},
    )
    app = make_app(auth)
    auth.principal._verify = raising(error)
    with TestClient(app) as client:
        body = client.get("/items", headers=bearer("opaque")).json()
    assert body["detail"]["detail"] == {
        "expected": "https://a.example/",
        "actual": "https://a.example",
    }


HOSTILE = 'evil"\r\nSet-Cookie: x=1\x1b[31m\u2028</script>\ud800'


def test_hostile_values_are_json_in_the_body_only(
    fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    error = InvalidToken(
        "audience_mismatch", provider="fake", claim="aud", detail={"actual": HOSTILE}
    )
    app = make_app(auth)
    auth.principal._verify = raising(error)
    with TestClient(app) as client:
        response = client.get("/items", headers=bearer("opaque"))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    headers = json.dumps(dict(response.headers))
    assert "evil" not in headers
    assert "Set-Cookie" not in response.headers
    assert "set-cookie" not in headers.lower()
    actual = response.json()["detail"]["detail"]["actual"]
    assert actual.startswith('evil"\r\nSet-Cookie')  # the value, as JSON, intact but bounded
    [record] = refusal_records(caplog)
    line = record.getMessage()
    assert "\r" not in line
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert line.isascii()


# --- log lines -------------------------------------------------------------------------------


def test_first_refusal_of_a_kind_per_minute_is_a_warning(
    fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    clock = Clock()
    auth.refusal_log = RefusalLog(clock=clock)
    with TestClient(make_app(auth)) as client:
        for _ in range(5):
            client.get("/items", headers=bearer(fake_issuer.bad.wrong_audience()))
        client.get("/items", headers=bearer(fake_issuer.bad.expired()))
        clock.now += 61
        client.get("/items", headers=bearer(fake_issuer.bad.wrong_audience()))
    records = refusal_records(caplog)
    levels = [(r.levelno, "audience_mismatch" in r.getMessage()) for r in records]
    assert levels == [
        (logging.WARNING, True),
        *[(logging.INFO, True)] * 4,
        (logging.WARNING, False),  # another reason: its own first warning
        (logging.WARNING, True),
    ]
    first, last = records[0].getMessage(), records[-1].getMessage()
    assert first.startswith(
        "authbridge: Request refused with 401 invalid_token (audience_mismatch)"
    )
    assert "on GET '/items'" in first
    assert "provider=fake" in first
    assert "claim=aud" in first
    assert "https://another-api.example.test" in first  # the detail
    assert "(4 more like it since the last warning, logged at INFO)" in last


def test_missing_credentials_and_unavailability_are_logged_too(
    fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    app = make_app(auth)
    with TestClient(app) as client:
        client.get("/items")
        auth.principal._verify = raising(ProviderUnavailable("timeout", provider="fake"))
        client.get("/items", headers=bearer("opaque"))
    lines = [r.getMessage() for r in refusal_records(caplog) if r.levelno == logging.WARNING]
    [missing] = [line for line in lines if "401 missing_token (no_credentials)" in line]
    assert "send 'Authorization: Bearer <token>'" in missing
    assert any("503 provider_unavailable (timeout)" in line for line in lines)


def test_websocket_refusals_are_logged_and_explained(
    fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    with (
        TestClient(make_app(auth)) as client,
        pytest.raises(WebSocketDisconnect) as excinfo,
        client.websocket_connect("/ws", headers=bearer(fake_issuer.bad.expired())),
    ):
        pass
    assert excinfo.value.code == 1008
    assert excinfo.value.reason == "Invalid or expired access token (expired)"
    assert any("on WEBSOCKET '/ws'" in r.getMessage() for r in refusal_records(caplog))


def test_the_rate_limit_memory_is_bounded() -> None:
    log = RefusalLog(clock=Clock())
    for number in range(MAX_KINDS * 3):
        log.should_warn(InvalidToken(f"reason_{number}", provider=f"p{number}"))
    assert len(log._last) <= MAX_KINDS
    assert len(log._quiet) <= MAX_KINDS


def test_reason_suffixes_share_one_kind() -> None:
    log = RefusalLog(clock=Clock())
    # The part after ":" can name a header or an HTTP status: not a new kind each time.
    assert log.should_warn(InvalidToken("unsupported_header:jku", provider="p"))
    assert not log.should_warn(InvalidToken("unsupported_header:x5u", provider="p"))
    assert log.should_warn(InvalidToken("unsupported_header:jku", provider="q"))


@settings(max_examples=200)
@given(
    detail=st.dictionaries(
        st.text(max_size=10), st.text() | st.lists(st.text(), max_size=20), max_size=20
    )
)
def test_rendered_details_are_bounded_ascii(detail: dict[str, Any]) -> None:
    text = render_detail(InvalidToken("x", detail=detail).detail)
    assert text.isascii()
    assert text.isprintable()
    assert len(text) <= 603


def test_no_token_material_in_the_log_lines(
    fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    tokens = list(fake_issuer.bad.all().values())
    with TestClient(make_app(auth)) as client:
        for token in tokens:
            response = client.get("/items", headers=bearer(token))
            for segment in token.split("."):
                if len(segment) >= 16:
                    assert segment[:24] not in response.text
    logged = "\n".join(r.getMessage() for r in refusal_records(caplog))
    for token in tokens:
        for segment in token.split("."):
            if len(segment) >= 16:
                assert segment[:24] not in logged


# --- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (None, "5"),
        (0.0, "1"),
        (0.2, "1"),
        (1.0, "1"),
        (7.01, "8"),
        (29.5, "30"),
        (float("inf"), "5"),
        (float("nan"), "5"),
        (-3.0, "1"),
        (1e9, "3600"),
    ],
)
def test_retry_after_follows_the_error(seconds: float | None, header: str) -> None:
    assert retry_after(ProviderUnavailable("x", retry_after=seconds)) == header


def test_the_503_carries_the_retry_hint(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    app = make_app(auth)
    auth.principal._verify = raising(
        ProviderUnavailable("jwks_recently_failed", provider="fake", retry_after=12.3)
    )
    with TestClient(app) as client:
        response = client.get("/items", headers=bearer("opaque"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "13"
    assert response.json() == {"detail": "Authentication temporarily unavailable"}


# --- scopes given as a string ----------------------------------------------------------------


@pytest.fixture
def auth(fake_issuer: FakeIssuer) -> AuthBridge:
    return AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)


def test_install_refuses_a_scope_string(auth: AuthBridge) -> None:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes="items:read")) -> dict:
        return {}

    with pytest.raises(ConfigurationError) as excinfo:
        auth.install(app)
    message = str(excinfo.value)
    assert excinfo.value.reason == "scopes_must_be_a_list"
    assert "GET /items (items)" in message
    assert "Security(auth.principal, scopes='items:read')" in message
    assert "scopes=['items:read']" in message


def test_the_lifespan_refuses_a_scope_string_declared_after_install(auth: AuthBridge) -> None:
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)
    auth.install(app)
    router = APIRouter(dependencies=[Security(auth.principal, scopes="admin")])

    @router.get("/admin")
    async def admin() -> dict:
        return {}

    app.include_router(router, prefix="/v1")
    with pytest.raises(ConfigurationError, match=r"GET /v1/admin .*scopes=\['admin'\]"):
        app.openapi()
    with pytest.raises(ConfigurationError, match="scopes must be a list"), TestClient(app):
        pass


def test_a_lifespan_without_install_checks_too(auth: AuthBridge) -> None:
    app = FastAPI(lifespan=auth.lifespan)

    async def items(user: Any) -> dict:
        return {}

    # Evaluated here: this module's string annotations cannot see the local `auth`.
    items.__annotations__ = {
        "user": Annotated[Principal, Security(auth.optional_principal, scopes="items:read write")],
        "return": dict,
    }
    app.get("/items")(items)
    with (
        pytest.raises(ConfigurationError, match=r"scopes=\['items:read', 'write'\]"),
        TestClient(app),
    ):
        pass


def test_the_first_refused_request_names_the_mistake(
    auth: AuthBridge, fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()  # no lifespan, no install: the 403 path still tells

    async def current_admin(user: Principal = Security(auth.principal, scopes="admin")) -> str:
        return user.subject or ""

    @app.get("/admin")
    async def admin(name: str = Depends(current_admin)) -> dict:
        return {"name": name}

    client = TestClient(app)
    token = fake_issuer.token(scopes=["admin"])
    with pytest.raises(ConfigurationError, match="GET /admin"):
        client.get("/admin", headers=bearer(token))
    assert any("scopes must be a list" in r.getMessage() for r in caplog.records)


def test_lists_tuples_and_empty_scopes_are_fine(auth: AuthBridge, fake_issuer: FakeIssuer) -> None:
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/a")
    async def a(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {}

    @app.get("/b")
    async def b(user: Principal = Security(auth.principal, scopes=("items:read",))) -> dict:
        return {}

    @app.get("/c")
    async def c(user: Principal = Security(auth.principal)) -> dict:
        return {}

    auth.install(app)
    with TestClient(app) as client:
        token = fake_issuer.token(scopes=["items:read"])
        assert [client.get(p, headers=bearer(token)).status_code for p in ["/a", "/b", "/c"]] == [
            200,
            200,
            200,
        ]


@pytest.mark.parametrize("scopes", ["openid items:read", b"items"])
def test_swagger_login_refuses_a_scope_string(scopes: Any) -> None:
    with pytest.raises(ConfigurationError, match="SwaggerLogin") as excinfo:
        SwaggerLogin("p", client_id="docs", scopes=scopes)
    assert excinfo.value.reason == "scopes_must_be_a_list"


def test_scopes_supported_refuses_a_string(fake_issuer: FakeIssuer) -> None:
    with pytest.raises(ConfigurationError, match=r"\['items:read'\]"):
        AuthBridge(providers=[fake_issuer.provider()], scopes_supported="items:read")


# --- the default uvicorn logging shows them --------------------------------------------------

APP_MODULE = """
from fastapi import FastAPI, Security

from authbridge import AuthBridge, Principal
from authbridge.testing import FakeIssuer

fake = FakeIssuer()
auth = AuthBridge(providers=[fake.provider()], transport=fake.transport, explain_refusals={explain})
app = FastAPI(lifespan=auth.lifespan)
WRONG_AUDIENCE = fake.bad.wrong_audience()


@app.get("/items")
async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
    return {{}}


@app.get("/wrong-audience")
async def wrong_audience() -> dict:
    return {{"token": WRONG_AUDIENCE}}
"""

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("explain", [False, True])
def test_default_uvicorn_logging_shows_refusals(tmp_path: Path, explain: bool) -> None:
    (tmp_path / "refusing_app.py").write_text(
        textwrap.dedent(APP_MODULE.format(explain=explain)), encoding="utf-8"
    )
    port = free_port()
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "refusing_app:app", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                token = httpx.get(f"{base}/wrong-audience", timeout=5).json()["token"]
                break
            except httpx.TransportError:
                assert process.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        assert httpx.get(f"{base}/items", headers=bearer(token), timeout=10).status_code == 401
        assert httpx.get(f"{base}/items", timeout=10).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)
    logged = stderr.read_text(encoding="utf-8")
    assert "authbridge: Request refused with 401 invalid_token (audience_mismatch)" in logged
    assert "on GET '/items' provider=fake claim=aud" in logged
    assert "authbridge: Request refused with 401 missing_token (no_credentials)" in logged
    assert token.split(".")[1][:24] not in logged
    assert ("explain_refusals is ON" in logged) is explain
