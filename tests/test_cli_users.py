"""``authbridge users``: accounts in a real SQLite store, used by the password grant."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from authbridge.cli._users import users_app
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest
from authbridge.issuer._passwords import PasswordHasher
from authbridge.jose import parse_compact
from authbridge.store import ClientRecord, UserRecord, open_store

PASSWORD = "hunter2 with spaces "
ISSUER = "http://127.0.0.1:8000"
APP = ClientRecord(
    client_id="app",
    auth_method="none",
    grant_types=frozenset({"password", "refresh_token"}),
    scopes=frozenset({"items:read", "items:write"}),
)


class Result:
    def __init__(self, args: list[str], stdin: str | None) -> None:
        result = CliRunner().invoke(users_app, args, input=stdin)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        self.code = result.exit_code
        self.out = result.stdout
        self.err = result.stderr
        self.text = self.out + self.err


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"


def users(url: str, *args: str, stdin: str | None = None) -> Result:
    return Result([*args, "--store", url], stdin)


def listed(url: str) -> list[dict[str, Any]]:
    result = users(url, "list", "--json")
    assert result.code == 0, result.text
    found: list[dict[str, Any]] = json.loads(result.out)
    return found


def stored(url: str, username: str) -> UserRecord | None:
    async def read() -> UserRecord | None:
        store = open_store(url)
        await store.start()
        try:
            return await store.users.by_username(username)
        finally:
            await store.aclose()

    return asyncio.run(read())


def login(url: str, username: str, password: str, **form: str) -> dict[str, Any]:
    """A password-grant login on a runtime over the same store (raises OAuthError)."""

    async def run() -> dict[str, Any]:
        runtime = IssuerRuntime(
            AppIssuer(ISSUER, store=url, scopes=["items:read", "items:write"], development=True),
            time.time,
        )
        await runtime.start()
        runtime.add_builtin_client(APP)
        try:
            return await runtime.token(
                TokenRequest(
                    form={"client_id": "app", "username": username, "password": password, **form}
                    | {"grant_type": form.get("grant_type", "password")},
                    client_address="127.0.0.1",
                )
            )
        finally:
            runtime.passwords.close()
            await runtime.aclose()

    return asyncio.run(run())


def add(url: str, username: str = "Alice", *extra: str, password: str = PASSWORD) -> Result:
    return users(url, "add", username, "--password-stdin", *extra, stdin=password + "\n")


def test_add_and_list(url: str) -> None:
    result = add(url, " Alice ", "--scope", "items:read", "--email", "alice@example.test")
    assert result.code == 0, result.text
    assert PASSWORD.strip() not in result.text
    user_id = result.out.strip().removeprefix("id: ")
    assert len(user_id) == 22
    [alice] = listed(url)
    assert alice == {
        "id": user_id,
        "username": "alice",
        "scopes": ["items:read"],
        "disabled": False,
        "has_password": True,
        "email": "alice@example.test",
        "email_verified": False,
        "created_at": alice["created_at"],
    }
    record = stored(url, "alice")
    assert record is not None
    assert record.password_hash is not None
    assert record.password_hash.startswith("$argon2id$")
    # The whole line is the password, trailing space included; no hash is ever printed.
    assert asyncio.run(PasswordHasher().verify(PASSWORD, record.password_hash)) == (True, None)
    text = users(url, "list")
    assert text.code == 0
    assert f"alice  id={user_id}  scopes=items:read" in text.out
    assert "$argon2" not in text.text + json.dumps(listed(url))


def test_ids_are_random(url: str) -> None:
    assert add(url, "one").code == 0
    assert add(url, "two").code == 0
    ids = {user["id"] for user in listed(url)}
    assert len(ids) == 2


def test_prompted_twice(url: str) -> None:
    result = users(url, "add", "bob", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.code == 0, result.text
    assert PASSWORD.strip() not in result.text
    record = stored(url, "bob")
    assert record is not None
    assert record.password_hash is not None
    assert asyncio.run(PasswordHasher().verify(PASSWORD, record.password_hash))[0]


def test_prompt_mismatch_asks_again(url: str) -> None:
    result = users(url, "add", "bob", stdin="one\ntwo\nthree\nthree\n")
    assert result.code == 0, result.text
    assert "do not match" in result.text
    assert "one" not in result.out
    record = stored(url, "bob")
    assert record is not None
    assert record.password_hash is not None
    assert asyncio.run(PasswordHasher().verify("three", record.password_hash))[0]


def test_username_taken(url: str) -> None:
    assert add(url, "alice").code == 0
    result = add(url, "ALICE")
    assert result.code == 1
    assert 'a user named "alice" exists already' in result.err


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "  "], f"{PASSWORD}\n", "username is empty"),
        (["add", "bad\u202ename"], f"{PASSWORD}\n", "control or invisible"),
        (["add", "x" * 2000], f"{PASSWORD}\n", "at most 1024"),
        (["add", "carol"], "\n", "password is empty"),
        (["add", "carol"], "x" * 1025 + "\n", "at most 1024 bytes"),
        (["add", "carol", "--scope", "bad scope"], f"{PASSWORD}\n", "scope names"),
    ],
)
def test_bad_input(url: str, args: list[str], stdin: str, message: str) -> None:
    result = users(url, *args, "--password-stdin", stdin=stdin)
    assert result.code == 2
    assert message in result.err
    assert listed(url) == []


def test_logs_in_with_the_password_grant(url: str) -> None:
    add_result = add(url, "Alice", "--scope", "items:read")
    user_id = add_result.out.strip().removeprefix("id: ")
    body = login(url, "alice", PASSWORD)
    assert body["scope"] == "items:read"
    assert parse_compact(body["access_token"], max_bytes=16384).claims["sub"] == user_id
    with pytest.raises(OAuthError) as caught:
        login(url, "alice", PASSWORD.strip())
    assert caught.value.error == "invalid_grant"


def test_passwd_ends_refresh_tokens(url: str) -> None:
    add(url, "alice")
    refresh_token = login(url, "alice", PASSWORD)["refresh_token"]
    result = users(url, "passwd", "Alice", "--password-stdin", stdin="new password\n")
    assert result.code == 0, result.text
    assert "1 refresh token family ended" in result.err
    with pytest.raises(OAuthError):
        login(url, "alice", PASSWORD)
    assert login(url, "alice", "new password")["access_token"]
    with pytest.raises(OAuthError) as caught:
        login(url, "", "", grant_type="refresh_token", refresh_token=refresh_token)
    assert caught.value.error == "invalid_grant"


def test_disable_and_enable(url: str) -> None:
    add(url, "alice")
    login(url, "alice", PASSWORD)
    result = users(url, "disable", "alice")
    assert result.code == 0, result.text
    assert "1 refresh token family ended" in result.err
    assert listed(url)[0]["disabled"] is True
    with pytest.raises(OAuthError) as caught:
        login(url, "alice", PASSWORD)
    assert caught.value.reason == "account_disabled"
    assert users(url, "enable", "alice").code == 0
    assert listed(url)[0]["disabled"] is False
    assert login(url, "alice", PASSWORD)["access_token"]


def test_scopes(url: str) -> None:
    add(url, "alice", "--scope", "items:read")
    shown = users(url, "scopes", "alice")
    assert (shown.code, shown.out) == (0, "items:read\n")
    result = users(url, "scopes", "alice", "--scope", "items:write", "--scope", "items:read")
    assert (result.code, result.out) == (0, "items:read items:write\n")
    assert login(url, "alice", PASSWORD)["scope"] == "items:read items:write"
    cleared = users(url, "scopes", "alice", "--clear")
    assert (cleared.code, cleared.out) == (0, "\n")
    assert listed(url)[0]["scopes"] == []
    assert users(url, "scopes", "alice", "--clear", "--scope", "x").code == 2


def test_remove(url: str) -> None:
    add(url, "alice")
    login(url, "alice", PASSWORD)
    result = users(url, "remove", "ALICE")
    assert result.code == 0, result.text
    assert "1 refresh token family ended" in result.err
    assert listed(url) == []
    assert users(url, "remove", "alice").code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["passwd", "ghost", "--password-stdin"],
        ["disable", "ghost"],
        ["enable", "ghost"],
        ["scopes", "ghost"],
        ["remove", "ghost"],
    ],
)
def test_unknown_user(url: str, args: list[str]) -> None:
    result = users(url, *args, stdin="pw\n")
    assert result.code == 1
    assert 'no user named "ghost"' in result.err


def test_store_unavailable() -> None:
    result = users("postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/nothing", "list", "--json")
    assert result.code == 2
    assert "unavailable" in result.err
    assert "s3cret" not in result.text


def test_empty_list(url: str) -> None:
    result = users(url, "list")
    assert result.code == 0
    assert "No users." in result.err
