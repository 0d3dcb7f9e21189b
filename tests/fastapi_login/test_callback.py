"""Refused callbacks, end to end (SECURITY-CASES §6): 400 page, nothing created,
transaction consumed, no request to the provider's token endpoint; outages are 503 pages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from authbridge.errors import StoreUnavailable

from .support import LoginApp, Page, Upstream, authorize_params, pkce_pair, running


async def start(h: LoginApp) -> dict[str, str]:
    """Start a login at the provider; what the provider would send back."""
    _, challenge = pkce_pair()
    answer = await h.client.get("/oauth/authorize", params=authorize_params(challenge, idp="stub"))
    assert answer.status_code == 303
    return h.upstream.approve(answer.headers["location"])


def assert_refused(answer: httpx.Response, reason: str) -> None:
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    assert f"<code>{reason}</code>" in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    page = Page(answer.text)
    assert page.scripts == 0
    assert page.styles == 0


Tamper = Callable[[dict[str, str]], list[tuple[str, str]]]

CASES: list[tuple[str, Tamper, str]] = [
    ("state missing", lambda p: [("code", p["code"])], "state_missing"),
    ("state unknown", lambda p: [("code", p["code"]), ("state", "A" * 43)], "state_unknown"),
    (
        "state duplicated",
        lambda p: [("code", p["code"]), ("state", p["state"]), ("state", p["state"])],
        "duplicate_parameter",
    ),
    (
        "code duplicated",
        lambda p: [("code", p["code"]), ("code", "other"), ("state", p["state"])],
        "duplicate_parameter",
    ),
    ("code missing", lambda p: [("state", p["state"])], "code_missing"),
    (
        "provider error",
        lambda p: [("state", p["state"]), ("error", "access_denied<script>")],
        "provider_error",
    ),
    (
        "iss of another provider",
        lambda p: [("code", p["code"]), ("state", p["state"]), ("iss", "https://evil.test")],
        "iss_mismatch",
    ),
]


@pytest.mark.parametrize(("case", "tamper", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_refused_callback(
    tmp_path: Path, case: str, tamper: Tamper, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as h:
        users = await h.count_users()
        sent = await start(h)
        answer = await h.client.get("/oauth/callback", params=tamper(sent))
        assert_refused(answer, reason)
        assert h.upstream.token_requests == 0
        assert await h.count_users() == users
        if reason not in ("state_missing", "state_unknown", "duplicate_parameter"):
            # The transaction was consumed: the genuine answer no longer works.
            replay = await h.client.get("/oauth/callback", params=sent)
            assert_refused(replay, "state_unknown")
            assert h.upstream.token_requests == 0
        assert "set-cookie" not in answer.headers
    # The app's log lines (the test's own HTTP client logs the URLs it requests).
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    for secret in (sent["code"], sent["state"], *h.client.cookies.values()):
        assert secret not in logged


async def test_provider_error_text_is_escaped(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        sent = await start(h)
        params = {"state": sent["state"], "error": '"><img src=x onerror=alert(1)>'}
        answer = await h.client.get("/oauth/callback", params=params)
        assert answer.status_code == 400
        assert "<img" not in answer.text
        assert Page(answer.text).inline_handlers == []


async def test_callback_in_another_browser_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        users = await h.count_users()
        sent = await start(h)
        h.client.cookies.clear()
        answer = await h.client.get("/oauth/callback", params=sent)
        assert_refused(answer, "browser_mismatch")
        assert h.upstream.token_requests == 0
        assert await h.count_users() == users


async def test_replayed_callback_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        sent = await start(h)
        first = await h.client.get("/oauth/callback", params=sent)
        assert first.status_code == 303
        users = await h.count_users()
        again = await h.client.get("/oauth/callback", params=sent)
        assert_refused(again, "state_unknown")
        assert h.upstream.token_requests == 1
        assert await h.count_users() == users


async def test_injected_code_fails_at_the_provider_and_creates_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        users = await h.count_users()
        sent = await start(h)
        answer = await h.client.get(
            "/oauth/callback", params={"code": "attacker-code", "state": sent["state"]}
        )
        assert_refused(answer, "token_error")
        assert await h.count_users() == users


async def test_missing_iss_is_refused_when_the_provider_advertises_it(tmp_path: Path) -> None:
    async with running(tmp_path, upstream=Upstream(iss_supported=True)) as h:
        sent = await start(h)
        del sent["iss"]
        answer = await h.client.get("/oauth/callback", params=sent)
        assert_refused(answer, "iss_missing")
        assert h.upstream.token_requests == 0


async def test_provider_down_is_a_503_page(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        users = await h.count_users()
        sent = await start(h)
        h.upstream.down = True
        answer = await h.client.get("/oauth/callback", params=sent)
        assert answer.status_code == 503
        assert int(answer.headers["retry-after"]) >= 1
        assert "temporarily unavailable" in answer.text
        assert await h.count_users() == users


async def test_store_down_is_a_503_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:

        async def down(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("connection_refused")

        monkeypatch.setattr(h.runtime.store.one_time, "put", down)
        monkeypatch.setattr(h.runtime.store.one_time, "take", down)
        monkeypatch.setattr(h.runtime.store.clients, "get", down)
        answer = await h.client.get(
            "/oauth/authorize", params=authorize_params(challenge, client_id="not-cached")
        )
        assert answer.status_code == 503
        assert answer.headers["retry-after"]
        answer = await h.client.get("/oauth/callback", params={"code": "c", "state": "s" * 43})
        assert answer.status_code == 503
        assert "connection_refused" not in answer.text
