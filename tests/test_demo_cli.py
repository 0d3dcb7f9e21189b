"""The development commands: the demo API (README command 1) and mint."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from authbridge import __version__
from authbridge._demo import DEMO_AUDIENCE, create_demo_app, demo_tokens
from authbridge.cli import app as cli_app
from authbridge.cli._dev import load_or_create_key
from authbridge.testing import FakeIssuer
from cli_support import AUD, run, subprocess_run


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli_app, ["--help"])
    assert result.exit_code == 0
    for name in ("check", "decode", "verify", "mint", "demo", "version"):
        assert f"\n  {name} " in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli_app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_demo_app_over_a_served_issuer() -> None:
    with FakeIssuer.serve(audience=DEMO_AUDIENCE) as issuer:
        app, _ = create_demo_app(issuer)
        tokens = demo_tokens(issuer)
        with TestClient(app) as client:
            assert client.get("/public").status_code == 200
            assert client.get("/hello").json() == {"message": "hello stranger"}
            assert client.get("/items").status_code == 401
            reader = {"Authorization": f"Bearer {tokens['reader']}"}
            writer = {"Authorization": f"Bearer {tokens['writer']}"}
            admin = {"Authorization": f"Bearer {tokens['admin']}"}
            assert client.get("/hello", headers=reader).json() == {"message": "hello reader"}
            assert client.get("/items", headers=reader).status_code == 200
            assert client.post("/items?name=drill", headers=reader).status_code == 403
            created = client.post("/items?name=drill", headers=writer)
            assert created.status_code == 201
            assert created.json()["added_by"] == "writer"
            assert client.get("/admin", headers=writer).status_code == 403
            assert client.get("/admin", headers=admin).status_code == 200
            assert client.get("/me", headers=admin).json()["subject"] == "admin"
            with client.websocket_connect("/ws", headers=reader) as ws:
                assert ws.receive_json() == {"hello": "reader"}
                ws.send_text("ping")
                assert ws.receive_text() == "ping"
        # discovery and JWKS were fetched over real HTTP from the served issuer
        assert "/.well-known/openid-configuration" in issuer.requests
        assert "/jwks" in issuer.requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_command_serves_and_prints_working_tokens(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "demo.log"
    key_file = tmp_path / "dev-key.pem"
    command = ["demo", "--port", str(port), "--key-file", str(key_file)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "authbridge", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            text = log.read_text(encoding="utf-8", errors="replace")
            if "Uvicorn running" in text or "Application startup complete" in text:
                break
            assert process.poll() is None, text
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        token = re.search(r"^READER_TOKEN=(\S+)$", text, re.M)
        assert token is not None, text
        assert f"curl -i {base}/items" in text
        with httpx.Client(base_url=base, trust_env=False) as client:
            assert client.get("/items").status_code == 401
            ok = client.get("/items", headers={"Authorization": f"Bearer {token.group(1)}"})
            assert ok.status_code == 200
            assert client.get("/openapi.json").json()["components"]["securitySchemes"]
            docs = client.get("/docs")
            assert docs.status_code == 200
            assert "cdn.jsdelivr.net" not in docs.text  # Swagger UI works offline
            metadata = client.get("/.well-known/oauth-protected-resource").json()
            assert metadata["resource"] == base
            # The printed mint command makes more tokens the demo accepts (same key file).
            mint = re.search(r"^  authbridge (mint --key-file .*)$", text, re.M)
            assert mint is not None, text
            args = mint.group(1).split()
            assert args[args.index("--key-file") + 1] == str(key_file)
            minted = CliRunner().invoke(cli_app, [*args, "--subject", "dora"])
            assert minted.exit_code == 0, minted.output
            writer = {"Authorization": f"Bearer {minted.stdout.strip()}"}
            created = client.post("/items?name=level", headers=writer)
            assert created.status_code == 201, created.text
            assert created.json()["added_by"] == "dora"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbridge", "demo", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_demo_on_a_taken_port_says_so_and_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = _demo("--port", str(port))
        issuer = _demo("--port", str(_free_port()), "--issuer-port", str(port))
    assert api.returncode == 2, api.stderr
    assert f"error: port {port} on 127.0.0.1 is already in use (demo API)" in api.stderr
    assert "--port PORT" in api.stderr
    assert issuer.returncode == 2, issuer.stderr
    assert f"error: port {port} on 127.0.0.1 is already in use (test issuer)" in issuer.stderr
    assert "--issuer-port PORT" in issuer.stderr
    for result in (api, issuer):
        assert "Traceback" not in result.stderr
        assert "_TOKEN=" not in result.stdout  # nothing printed that would not work


def test_mint_needs_a_way_to_verify_the_token(tmp_path: Path) -> None:
    result = run("mint")
    assert result.code == 2
    assert "--key-file" in result.err
    assert run("mint", "--key-file", str(tmp_path / "k.pem")).code == 2
    assert run("mint", "--serve", "--issuer", "http://127.0.0.1:9").code == 2
    bad = run("mint", "--key-file", str(tmp_path / "k.pem"), "--issuer", "localhost:9000")
    assert bad.code == 2
    assert "https:// URL" in bad.err


def test_mint_with_a_key_file_is_accepted_by_an_issuer_serving_that_key(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "dev.pem"
    key = load_or_create_key(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with FakeIssuer.serve(audience="https://my-api", key=load_or_create_key(key_file)) as issuer:
        result = run(
            "mint", "--key-file", str(key_file), "--issuer", issuer.issuer,
            "--audience", "https://my-api", "--subject", "bob", "--scope", "items:read",
            "--scope", "admin", "--claim", 'roles=["auditor"]', "--claim", "jti=null",
            "--claim", "team=blue",
        )  # fmt: skip
        assert result.code == 0, result.text
        token = result.out.strip()
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)
        verified = run("verify", token, "--issuer", issuer.issuer, "--audience", "https://my-api")
    assert verified.code == 0, verified.text
    principal = verified.json()
    assert principal["subject"] == "bob"
    assert principal["scopes"] == ["admin", "items:read"]
    assert principal["claims"]["roles"] == ["auditor"]
    assert principal["claims"]["team"] == "blue"
    assert "jti" not in principal["claims"]
    # The same file gives the same key.
    assert load_or_create_key(key_file).private_numbers() == key.private_numbers()


def test_mint_an_expired_token(tmp_path: Path) -> None:
    key_file = tmp_path / "dev.pem"
    with FakeIssuer.serve(key=load_or_create_key(key_file)) as issuer:
        token = run("mint", "--key-file", str(key_file), "--issuer", issuer.issuer,
                    "--expires-in", "-600").out.strip()  # fmt: skip
        result = run("verify", token, "--issuer", issuer.issuer, "--audience", AUD)
    assert result.code == 1
    assert result.json()["reason"] == "expired"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key", "not an unencrypted PEM private key"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "at least 2048 bits",
        ),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "RSA private key",
        ),
    ],
)
def test_mint_refuses_an_unusable_key_file(tmp_path: Path, content: bytes, message: str) -> None:
    key_file = tmp_path / "dev.pem"
    key_file.write_bytes(content)
    result = run("mint", "--key-file", str(key_file), "--issuer", "http://127.0.0.1:9")
    assert result.code == 2
    assert message in result.err
    assert key_file.read_bytes() == content  # never overwritten


def test_key_files_that_cannot_be_read_or_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run("mint", "--key-file", str(blocker / "dev.pem"), "--issuer", "http://127.0.0.1:9")
    assert result.code == 2, result.text
    assert result.err.startswith("error: cannot read the key file")
    directory = run("mint", "--key-file", str(tmp_path), "--issuer", "http://127.0.0.1:9")
    assert directory.code == 2
    assert "is a directory" in directory.err

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("authbridge.cli._dev.tempfile.mkstemp", refuse)
    result = run("mint", "--key-file", str(tmp_path / "new.pem"), "--issuer", "http://127.0.0.1:9")
    assert result.code == 2, result.text
    assert "error: cannot create the key file" in result.err
    assert "Permission denied" in result.err


def test_concurrent_creation_of_one_key_file_gives_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "dev.pem"
    with ThreadPoolExecutor(max_workers=4) as pool:
        keys = list(pool.map(lambda _: load_or_create_key(key_file), range(4)))
    numbers = {key.private_numbers().d for key in keys}
    assert numbers == {load_or_create_key(key_file).private_numbers().d}
    assert [p.name for p in tmp_path.iterdir()] == ["dev.pem"]  # no temporary file left


def test_mint_claim_needs_a_name() -> None:
    result = run("mint", "--serve", "--claim", "novalue")
    assert result.code == 2
    assert "NAME=VALUE" in result.err


def test_mint_serve_on_a_taken_port_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("mint", "--serve", "--port", str(port))
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.err
    assert "TOKEN=" not in result.out


def test_mint_serve_in_a_subprocess_then_mint_more_with_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "dev.pem"
    log = tmp_path / "mint.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "authbridge",
                "mint",
                "--serve",
                "--key-file",
                str(key_file),
                "--audience",
                "https://my-api",
                "--scope",
                "items:read",
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        while not re.search(r"^TOKEN=\S+\n", text := log.read_text(), re.M):
            assert process.poll() is None, text
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        issuer, token = values["ISSUER"], values["TOKEN"]
        options = ["--issuer", issuer, "--audience", "https://my-api"]
        first = subprocess_run("verify", "-", *options, stdin=token)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["scopes"] == ["items:read"]
        more = run("mint", "--key-file", str(key_file), "--issuer", issuer,
                   "--audience", "https://my-api", "--subject", "dave")  # fmt: skip
        second = run("verify", more.out.strip(), *options)
        assert second.code == 0, second.text
        assert second.json()["subject"] == "dave"
        assert run("check", issuer).code == 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0
    assert b"Traceback" not in err
    assert b"Stopped." in err
