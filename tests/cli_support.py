"""Helpers of the command-line tests: in-process and subprocess runs, loopback sites."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from authbridge.cli import app

AUD = "https://api.example.test"
SLOW = -1
"""A route status meaning: answer after ``body`` seconds."""


class Run:
    """One in-process run: exit code and the two streams, kept apart."""

    def __init__(self, args: list[str], stdin: str | None = None) -> None:
        result = CliRunner().invoke(app, args, input=stdin)
        # Exit codes come from typer.Exit / SystemExit, never from an escaped exception.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        self.code = result.exit_code
        self.out = result.stdout
        self.err = result.stderr

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)


def run(*args: str, stdin: str | None = None) -> Run:
    return Run(list(args), stdin)


def subprocess_run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    process = subprocess.run(
        [sys.executable, "-m", "authbridge", *args],
        input=stdin,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert "Traceback" not in process.stderr, process.stderr
    return process


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def site(prefix: str = "") -> Iterator[tuple[str, dict[str, tuple[int, Any]]]]:
    """A loopback server answering ``routes[path] = (status, JSON document)``; 404 otherwise.

    ``(SLOW, seconds)`` answers only after that many seconds.
    """
    routes: dict[str, tuple[int, Any]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.path, (404, {"error": "not_found"}))
            if status == SLOW:
                time.sleep(body)  # a server that takes real time to answer
                status, body = 200, {}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def metadata(issuer: str, **extra: Any) -> dict[str, Any]:
    return {"issuer": issuer, "jwks_uri": f"{issuer}/jwks", **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "n": b64(n), "e": "AQAB"}


def ec_jwk(kid: str) -> dict[str, str]:
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }
