"""Deployment settings and the demo under attack (SECURITY-CASES §8, §9): passwords in
URLs, values that start an app which then fails, development mode from the environment,
and the demo's page and environment.

Where the product is wrong, the test asserts the right behaviour and is marked
``xfail(strict=True)`` with the exact defect.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from authbridge._demo import DemoCredentials, create_demo_app, demo_store, prepare_demo_store
from authbridge._demo_accounts import DEMO_AUDIENCE, DEMO_PAGE, demo_tokens
from authbridge.cli._stores import redacted
from authbridge.errors import ConfigurationError, StoreUnavailable
from authbridge.issuer._kek import new_kek
from authbridge.settings import STORE_VARIABLE, AuthBridgeSettings
from authbridge.store import RedisEphemeral, SQLStore
from authbridge.testing import FakeIssuer

from .test_ephemeral_review import RedisServers, servers

__all__ = ["servers"]

SECRET = "Qu3ry-Pa55word-of-the-review"
PUBLIC_ISSUER = "https://api.example.com"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTHBRIDGE_* variable of the machine running the tests leaks into these."""
    import os  # noqa: PLC0415

    for name in list(os.environ):
        if name.upper().startswith("AUTHBRIDGE_"):
            monkeypatch.delenv(name)


# --- passwords in a URL's query ---------------------------------------------------------------


async def test_a_password_in_the_urls_query_never_shows(servers: RedisServers) -> None:
    port = servers.start("--requirepass", SECRET)
    redis_url = f"redis://127.0.0.1:{port}/0?password={SECRET}"
    # it is a credential: Redis lets this URL in, and refuses it without the query
    with_query = RedisEphemeral(redis_url, prefix="q:")
    without = RedisEphemeral(f"redis://127.0.0.1:{port}/0", prefix="q:")
    try:
        await with_query.ping()
        with pytest.raises(StoreUnavailable):
            await without.ping()
    finally:
        await with_query.aclose()
        await without.aclose()
    store_url = f"postgresql+asyncpg://app@db.internal/app?password={SECRET}"
    settings = AuthBridgeSettings(store_url=store_url, redis_url=redis_url)
    shown = [
        repr(settings),
        str(settings),
        json.dumps(settings.model_dump()),
        settings.model_dump_json(),
        repr(settings.store()),
        repr(SQLStore(store_url)),
        redacted(redis_url),
        redacted(store_url),
    ]
    for text in shown:
        assert SECRET not in text, text


# --- values that start an app which then fails ------------------------------------------------


LIFETIMES = [
    "AUTHBRIDGE_ACCESS_TOKEN_TTL",
    "AUTHBRIDGE_REFRESH_TOKEN_IDLE_TTL",
    "AUTHBRIDGE_REFRESH_TOKEN_TTL",
    "AUTHBRIDGE_KEY_ROTATION_INTERVAL",
    "AUTHBRIDGE_PASSWORD_WINDOW",
    "AUTHBRIDGE_LOGIN_TRANSACTION_TTL",
    "AUTHBRIDGE_LOGIN_SESSION_TTL",
]


@pytest.mark.parametrize("value", ["inf", "1e300"])
@pytest.mark.parametrize("variable", LIFETIMES)
def test_an_infinite_or_absurd_lifetime_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as refused:
        AuthBridgeSettings()
    assert refused.value.reason == "invalid_settings"
    assert variable in str(refused.value)


def test_development_mode_is_not_switched_on_from_the_environment_for_a_public_issuer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHBRIDGE_ISSUER", PUBLIC_ISSUER)
    monkeypatch.setenv(STORE_VARIABLE, f"sqlite+aiosqlite:///{tmp_path / 'ab.db'}")
    monkeypatch.setenv("AUTHBRIDGE_DEVELOPMENT", "true")
    with pytest.raises(ConfigurationError):
        AuthBridgeSettings().app_issuer()


def test_a_public_issuer_without_development_or_kek_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The default is safe: unset, development mode follows the issuer (off for https).
    monkeypatch.setenv("AUTHBRIDGE_ISSUER", PUBLIC_ISSUER)
    monkeypatch.setenv(STORE_VARIABLE, f"sqlite+aiosqlite:///{tmp_path / 'ab.db'}")
    issuer = AuthBridgeSettings().app_issuer()
    assert issuer.development is False
    assert issuer.key_encryption_keys == ()


# --- the demo ---------------------------------------------------------------------------------


def _secrets_of(credentials: DemoCredentials) -> list[str]:
    return [
        *credentials.passwords.values(),
        *credentials.provider_passwords.values(),
        credentials.robot_secret,
        credentials.login_secret,
        credentials.garage_secret,
    ]


def test_the_demo_page_shows_no_secret_sends_a_strict_csp_and_escapes_what_users_add(
    tmp_path: Path,
) -> None:
    # Attack: read the demo's passwords and client secrets from its page (anyone who reaches
    # the port can), or store markup through the API for the page to run.
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    credentials = DemoCredentials.generate()

    async def prepare() -> None:
        store = demo_store(url)
        await store.start()
        try:
            await prepare_demo_store(store, credentials)
        finally:
            await store.aclose()

    asyncio.run(prepare())
    hidden = _secrets_of(credentials)
    markup = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with FakeIssuer.serve(audience=DEMO_AUDIENCE) as issuer:
        tokens = demo_tokens(issuer)
        app, _ = create_demo_app(
            issuer, resource="http://127.0.0.1:8000", store=url, credentials=credentials
        )
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            pages = {
                path: client.get(path)
                for path in (DEMO_PAGE, f"{DEMO_PAGE}/guide.css", "/openapi.json", "/docs")
            }
            writer = {"Authorization": f"Bearer {tokens['writer']}"}
            assert client.post("/items", params={"name": markup}, headers=writer).status_code == 201
            login = client.get("/auth/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert csrf is not None
            form = {
                "csrf_token": csrf.group(1),
                "username": "alice",
                "password": credentials.passwords["alice"],
            }
            assert client.post("/auth/login", data=form, follow_redirects=False).status_code == 303
            mine = client.get(DEMO_PAGE)
    assert 'id="username">alice</strong>' in mine.text
    for path, page in {**pages, "/auth/login": login, "logged in": mine}.items():
        assert page.status_code == 200, path
        for secret in hidden:
            assert secret not in page.text, path
    assert "<script" not in mine.text
    assert "onerror=alert(1)>" not in mine.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in mine.text
    for page in (pages[DEMO_PAGE], mine):
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # no script at all
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"


def test_the_demo_never_takes_the_apps_key_encryption_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHBRIDGE_KEY_ENCRYPTION_KEY", new_kek())
    issuer = FakeIssuer(audience=DEMO_AUDIENCE)
    _, auth = create_demo_app(issuer, store=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    runtime = auth.issuer
    assert runtime is not None
    assert runtime.config.key_encryption_keys == ()
