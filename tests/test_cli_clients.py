"""``authbridge clients``: add, list, remove, secret against a real SQLite store file.

The printed secret authenticates at the token endpoint's client authentication; the
database holds only its hash; no listing shows a hash; a rotated secret replaces the old
one at once; bad options exit 2 with a message and no traceback, refusals exit 1.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

import store_support
from authbridge.cli._clients import clients_app
from authbridge.issuer import (
    AppIssuer,
    AuthorizeError,
    IssuerRuntime,
    OAuthError,
    TokenRequest,
    parse_authorize,
)
from authbridge.issuer._client_auth import authenticate
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, well_formed
from authbridge.store import ClientRecord, open_store

SECRET_LINE = re.compile(r"^client_secret: (\S+)$", re.MULTILINE)


class Result:
    def __init__(self, args: list[str]) -> None:
        result = CliRunner().invoke(clients_app, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        self.code = result.exit_code
        self.out = result.stdout
        self.err = result.stderr
        assert "Traceback" not in self.out + self.err

    def secret(self) -> str:
        found = SECRET_LINE.findall(self.out)
        assert len(found) == 1, self.out
        return str(found[0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "clients.db"


def cli(db: Path, *args: str) -> Result:
    return Result([*args, "--store", f"sqlite+aiosqlite:///{db}"])


def authenticates(db: Path, client_id: str, secret: str | None, *, post: bool = False) -> str:
    """'ok', or the reason client authentication refused the credentials."""

    async def attempt() -> str:
        config = AppIssuer(
            "http://127.0.0.1:8000", store=f"sqlite+aiosqlite:///{db}", development=True
        )
        runtime = IssuerRuntime(config, lambda: 0.0)
        await runtime.store.start()
        try:
            if secret is None:
                request = TokenRequest(form={"client_id": client_id})
            elif post:
                request = TokenRequest(form={"client_id": client_id, "client_secret": secret})
            else:
                raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
                request = TokenRequest(
                    form={}, authorization="Basic " + base64.b64encode(raw).decode()
                )
            await authenticate(runtime, request)
        except OAuthError as exc:
            return exc.reason
        finally:
            await runtime.aclose()
        return "ok"

    return store_support.run_async(attempt)


def stored(db: Path, client_id: str) -> ClientRecord | None:
    async def get() -> ClientRecord | None:
        opened = open_store(f"sqlite+aiosqlite:///{db}")
        await opened.start()
        try:
            return await opened.clients.get(client_id)
        finally:
            await opened.aclose()

    return store_support.run_async(get)


def database_text(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        return "\n".join(connection.iterdump())


# --- add -------------------------------------------------------------------------------------


def test_add_prints_a_secret_once_that_authenticates(db: Path) -> None:
    added = cli(db, "add", "robot", "--scope", "items:read", "--name", "Nightly job")
    assert added.code == 0, added.err
    secret = added.secret()
    assert well_formed(secret, CLIENT_SECRET_PREFIX)
    assert "cannot be shown again" in added.err
    assert secret not in added.err
    assert authenticates(db, "robot", secret) == "ok"
    assert authenticates(db, "robot", secret, post=True) == "ok"
    assert authenticates(db, "robot", secret[:-1] + "#") == "wrong_client_secret"
    assert authenticates(db, "robot", None) == "client_authentication_required"
    record = stored(db, "robot")
    assert record is not None
    assert record.grant_types == frozenset({"client_credentials"})
    assert record.scopes == frozenset({"items:read"})
    assert record.name == "Nightly job"
    assert record.auth_method == "client_secret_basic"
    # The database holds the hash only.
    text = database_text(db)
    assert secret not in text
    assert secret[5:40] not in text
    assert hash_secret(secret, "client_secret") in text


def test_add_with_post_method_and_grants(db: Path) -> None:
    added = cli(
        db,
        "add",
        "app",
        "--auth-method",
        "client_secret_post",
        "--grant",
        "password",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        "https://app.example.test/callback",
    )
    assert added.code == 0, added.err
    record = stored(db, "app")
    assert record is not None
    assert record.auth_method == "client_secret_post"
    assert record.grant_types == frozenset({"password", "refresh_token"})
    assert record.redirect_uris == ("https://app.example.test/callback",)
    assert authenticates(db, "app", added.secret(), post=True) == "ok"


def test_add_public_client(db: Path) -> None:
    added = cli(db, "add", "spa", "--public", "--grant", "password")
    assert added.code == 0, added.err
    assert "client_secret" not in added.out
    assert authenticates(db, "spa", None) == "ok"
    assert authenticates(db, "spa", "anything") == "public_client_with_secret"
    record = stored(db, "spa")
    assert record is not None
    assert (record.auth_method, record.secret_hash) == ("none", None)


def test_add_a_public_web_client_for_the_code_flow(db: Path) -> None:
    added = cli(
        db,
        "add",
        "web",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        "https://app.example.test/callback",
        "--redirect-uri",
        "http://127.0.0.1/native",
        "--scope",
        "items:read",
        "--public",
    )
    assert added.code == 0, added.err
    assert "client_secret" not in added.out
    record = stored(db, "web")
    assert record is not None
    assert record.auth_method == "none"
    assert record.grant_types == frozenset({"authorization_code", "refresh_token"})
    assert record.redirect_uris == ("https://app.example.test/callback", "http://127.0.0.1/native")

    # The issuer accepts an authorization request of that client, and only at its URIs.
    async def authorize(redirect_uri: str) -> str | None:
        config = AppIssuer(
            "http://127.0.0.1:8000",
            store=f"sqlite+aiosqlite:///{db}",
            scopes=["items:read"],
            development=True,
        )
        runtime = IssuerRuntime(config, lambda: 0.0)
        await runtime.store.start()
        params = [
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", redirect_uri),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ]
        try:
            request = await parse_authorize(runtime, params)
        except AuthorizeError as exc:
            return exc.reason
        finally:
            await runtime.aclose()
        assert request.scopes == frozenset({"items:read"})
        return None

    assert store_support.run_async(lambda: authorize("https://app.example.test/callback")) is None
    assert store_support.run_async(lambda: authorize("http://127.0.0.1:51000/native")) is None
    assert (
        store_support.run_async(lambda: authorize("https://app.example.test/callback/"))
        == "unregistered_redirect"
    )


def test_add_a_token_exchange_client(db: Path) -> None:
    added = cli(
        db, "add", "spa", "--public", "--grant", "urn:ietf:params:oauth:grant-type:token-exchange"
    )
    assert added.code == 0, added.err
    record = stored(db, "spa")
    assert record is not None
    assert record.grant_types == frozenset({"urn:ietf:params:oauth:grant-type:token-exchange"})


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.test/callback?tenant=7",
        "http://127.0.0.1:8000/callback",
        "http://[::1]/callback",
        "http://localhost:3000/callback",
        "com.example.app:/oauth2redirect",
    ],
)
def test_add_accepts_redirect_uris(db: Path, uri: str) -> None:
    added = cli(
        db, "add", "web", "--public", "--grant", "authorization_code", "--redirect-uri", uri
    )
    assert added.code == 0, added.err
    record = stored(db, "web")
    assert record is not None
    assert record.redirect_uris == (uri,)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://app.example.test/cb#", "is absolute and has no fragment"),
        ("javascript:alert(1)", "cannot use the javascript: scheme"),
        ("data:text/html,hi", "cannot use the data: scheme"),
        ("http://app.example.test/callback", "uses https"),
        ("https://user@app.example.test/callback", "no user information"),
        ("https://app.example.test@evil.example.test/cb", "no user information"),
        ("https:///callback", "names a host"),
        ("https://app.example.test/call back", "no spaces, control characters or backslashes"),
        ("https://app.example.test\\@evil.example.test/", "no spaces, control characters"),
        ("https://app.example.test/cb\r\nX: y", "no spaces, control characters"),
    ],
)
def test_add_refuses_unsafe_redirect_uris(db: Path, uri: str, message: str) -> None:
    added = cli(
        db, "add", "web", "--public", "--grant", "authorization_code", "--redirect-uri", uri
    )
    assert added.code == 2
    assert message in added.err
    assert stored(db, "web") is None


def test_the_code_grant_needs_a_redirect_uri(db: Path) -> None:
    added = cli(db, "add", "web", "--public", "--grant", "authorization_code")
    assert added.code == 2
    assert "needs at least one --redirect-uri" in added.err
    assert stored(db, "web") is None


def _jwks_file(tmp_path: Path, *, private: bool = False) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    public = numbers.public_numbers

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(public.x), "y": b64(public.y)}
    if private:
        jwk["d"] = b64(numbers.private_value)
    path = tmp_path / ("private.json" if private else "public.json")
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


def test_add_private_key_jwt_client(db: Path, tmp_path: Path) -> None:
    path = _jwks_file(tmp_path)
    added = cli(db, "add", "machine", "--auth-method", "private_key_jwt", "--jwks-file", str(path))
    assert added.code == 0, added.err
    assert "client_secret" not in added.out
    record = stored(db, "machine")
    assert record is not None
    assert record.auth_method == "private_key_jwt"
    assert record.jwks == json.loads(path.read_text())
    assert record.secret_hash is None


def test_add_refuses_a_private_jwks(db: Path, tmp_path: Path) -> None:
    path = _jwks_file(tmp_path, private=True)
    private_value = json.loads(path.read_text())["keys"][0]["d"]
    added = cli(db, "add", "machine", "--auth-method", "private_key_jwt", "--jwks-file", str(path))
    assert added.code == 2
    assert "private key material (d)" in added.err
    assert private_value not in added.out + added.err
    assert stored(db, "machine") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--public", "--grant", "client_credentials"], "cannot use client_credentials"),
        (["--public"], "name the grants"),
        (["--grant", "implicit"], "unknown grant 'implicit'"),
        (["--auth-method", "client_secret_jwt"], "--auth-method is one of"),
        (["--public", "--auth-method", "client_secret_post"], "exclude each other"),
        (["--auth-method", "private_key_jwt"], "needs --jwks-file"),
        (["--jwks-file", "keys.json"], "goes with --auth-method private_key_jwt"),
        (["--scope", "two words"], "scope names are printable ASCII"),
        (["--redirect-uri", "/relative"], "a redirect URI is absolute"),
        (["--redirect-uri", "https://app.example/cb#frag"], "a redirect URI is absolute"),
    ],
)
def test_add_refuses_bad_options(db: Path, args: list[str], message: str) -> None:
    added = cli(db, "add", "robot", *args)
    assert added.code == 2
    assert message in added.err
    assert "client_secret" not in added.out


@pytest.mark.parametrize("client_id", ["", " robot", "ro\tbot", "r" * 256, "rob\u00f6t"])
def test_add_refuses_bad_client_ids(db: Path, client_id: str) -> None:
    assert cli(db, "add", client_id).code == 2


def test_jwks_file_problems(db: Path, tmp_path: Path) -> None:
    def add_with(content: str | bytes) -> Result:
        path = tmp_path / "keys.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return cli(db, "add", "m", "--auth-method", "private_key_jwt", "--jwks-file", str(path))

    assert "not a JSON document" in add_with("{nope").err
    assert "must be a JWKS" in add_with('{"keys": []}').err
    assert "not an object" in add_with('{"keys": [1]}').err
    assert "private key material (k)" in add_with('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}').err
    assert "cannot verify signatures" in add_with('{"keys": [{"kty": "oct"}]}').err
    bad_point = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}'
    assert "cannot verify signatures" in add_with(bad_point).err
    assert "larger than" in add_with(b" " * (64 * 1024 + 1)).err
    missing = cli(
        db, "add", "m", "--auth-method", "private_key_jwt", "--jwks-file", str(tmp_path / "x")
    )
    assert (missing.code, "cannot read the JWKS file" in missing.err) == (2, True)


def test_add_twice(db: Path) -> None:
    assert cli(db, "add", "robot").code == 0
    again = cli(db, "add", "robot")
    assert again.code == 1
    assert "exists already" in again.err
    assert "client_secret" not in again.out


# --- list, remove, secret ----------------------------------------------------------------------


def test_list_never_shows_a_hash(db: Path, tmp_path: Path) -> None:
    assert cli(db, "list").code == 0
    secret = cli(db, "add", "robot", "--scope", "items:read").secret()
    cli(db, "add", "spa", "--public", "--grant", "password")
    path = _jwks_file(tmp_path)
    cli(db, "add", "machine", "--auth-method", "private_key_jwt", "--jwks-file", str(path))
    listed = cli(db, "list", "--json")
    assert listed.code == 0
    clients: list[dict[str, Any]] = json.loads(listed.out)
    assert [c["client_id"] for c in clients] == ["machine", "robot", "spa"]
    assert clients[1]["scopes"] == ["items:read"]
    assert clients[0]["keys"] == 1
    digest = hash_secret(secret, "client_secret")
    for text in (listed.out, cli(db, "list").out):
        assert digest not in text
        assert digest[:16] not in text
        assert secret not in text
        assert "secret_hash" not in text
    plain = cli(db, "list").out
    assert "robot  client_secret_basic  grants=client_credentials  scopes=items:read" in plain


def test_remove(db: Path) -> None:
    secret = cli(db, "add", "robot").secret()
    removed = cli(db, "remove", "robot")
    assert removed.code == 0
    assert authenticates(db, "robot", secret) == "unknown_client"
    missing = cli(db, "remove", "robot")
    assert missing.code == 1
    assert "no client" in missing.err


def test_secret_rotation(db: Path, tmp_path: Path) -> None:
    old = cli(db, "add", "robot").secret()
    rotated = cli(db, "secret", "robot")
    assert rotated.code == 0
    new = rotated.secret()
    assert new != old
    assert "cannot be shown again" in rotated.err
    assert authenticates(db, "robot", new) == "ok"
    assert authenticates(db, "robot", old) == "wrong_client_secret"
    assert old not in database_text(db)
    assert new not in database_text(db)
    # Nothing else about the client changed.
    record = stored(db, "robot")
    assert record is not None
    assert record.grant_types == frozenset({"client_credentials"})


def test_secret_refused_without_a_secret_method(db: Path, tmp_path: Path) -> None:
    assert cli(db, "secret", "ghost").code == 1
    cli(db, "add", "spa", "--public", "--grant", "password")
    path = _jwks_file(tmp_path)
    cli(db, "add", "machine", "--auth-method", "private_key_jwt", "--jwks-file", str(path))
    for client_id, method in (("spa", "none"), ("machine", "private_key_jwt")):
        result = cli(db, "secret", client_id)
        assert result.code == 1
        assert f"authenticates with {method}" in result.err
        assert "client_secret" not in result.out


def test_store_unavailable() -> None:
    # Nothing listens on port 1; the password never appears.
    url = "postgresql+asyncpg://postgres:hunter2-pw@127.0.0.1:1/authbridge"
    for args in (["list"], ["add", "robot"], ["remove", "robot"], ["secret", "robot"]):
        result = Result([*args, "--store", url])
        assert result.code == 2
        assert "is unavailable" in result.err
        assert "hunter2-pw" not in result.out + result.err
        assert "client_secret" not in result.out


COMMANDS = ["add", "list", "remove", "secret"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_is_plain(command: str | None) -> None:
    result = Result([*([command] if command else []), "--help"])
    assert result.code == 0
    assert not re.search(r"[\u2500-\u257f\x1b]", result.out)
    assert not re.search(r"<[a-z][a-z\[\], ]*>", result.out)
