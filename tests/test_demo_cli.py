"""The command line and the demo API (README command 1)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from authbridge import __version__
from authbridge._demo import DEMO_AUDIENCE, create_demo_app, demo_tokens
from authbridge.cli import app as cli_app
from authbridge.testing import FakeIssuer


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli_app, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    assert "version" in result.output


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
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "authbridge", "demo", "--port", str(port)],
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
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
