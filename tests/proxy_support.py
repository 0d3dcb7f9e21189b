"""A forward proxy, an identity provider and a CA, all on 127.0.0.1, for the proxy tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authbridge.testing import FakeIssuer

# -- a forward proxy ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    target: str
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    """An asyncio HTTP forward proxy: absolute-form requests and CONNECT tunnels.

    ``upstreams`` maps ``(host, port)`` as the client names it to a loopback port; any
    other target gets 502. ``silent`` accepts connections and never answers.
    """

    upstreams: dict[tuple[str, int], int]
    credentials: tuple[str, str] | None = None
    silent: bool = False
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with_credentials(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Open tunnels end with the proxy: cancel what is still piping.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is stopping: end quietly (asyncio would log a cancelled handler)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]
        found = {name.lower(): value for name, value in headers}
        self.seen.append(Seen(method, target, found.get("proxy-authorization")))
        if self.silent:
            await reader.read()  # until the client gives up
            return
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            if found.get("proxy-authorization") != f"Basic {token}":
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = self.upstreams.get((host.strip("[]"), int(port)))
        else:
            url = urlsplit(target)
            upstream = self.upstreams.get((url.hostname or "", url.port or 80))
        if upstream is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                body = await reader.readexactly(int(found.get("content-length", "0")))
                forwarded = "".join(
                    f"{name}: {value}\r\n"
                    for name, value in headers
                    if name.lower()
                    not in ("proxy-authorization", "proxy-connection", "connection", "keep-alive")
                )
                path = url.path + (f"?{url.query}" if url.query else "")
                up_writer.write(
                    f"{method} {path} HTTP/1.1\r\n{forwarded}Connection: close\r\n\r\n".encode(
                        "latin-1"
                    )
                    + body
                )
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


# -- an identity provider on a loopback port ------------------------------------------------


@dataclass
class Provider:
    fake: FakeIssuer
    port: int
    requests: list[tuple[str, dict[str, str]]]

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def _handler(fake: FakeIssuer, requests: list[tuple[str, dict[str, str]]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10.0  # a client that goes silent (or fails the handshake) frees its thread

        def do_GET(self) -> None:
            requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            if self.path == "/.well-known/openid-configuration":
                self._send(200, json.dumps(fake.discovery_document()).encode())
            elif self.path == "/jwks":
                self._send(200, json.dumps(fake.jwks()).encode())
            elif self.path == "/redirect":
                self._send(302, b"{}", location=f"{fake.issuer}/jwks")
            elif self.path == "/big":
                self._send(200, b'{"a":"' + b"x" * (1024 * 1024) + b'"}')
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            requests.append((self.path, headers))
            self.rfile.read(int(headers.get("content-length", "0")))
            if self.path != "/introspect":
                self._send(404, b"{}")
                return
            answer = {
                "active": True,
                "sub": "bob",
                "iss": fake.issuer,
                "aud": fake.audience,
                "token_type": "Bearer",
                "exp": int(time.time()) + 300,
            }
            self._send(200, json.dumps(answer).encode())

        def _send(self, status: int, body: bytes, location: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


class _Server(ThreadingHTTPServer):
    """The TLS handshake happens in the connection's thread (with its timeout), never in
    the accepting one, so a client that fails it blocks no other."""

    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10.0)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        with wrapped:  # wrapping detached `request`: this is the socket to close
            super().finish_request(wrapped, client_address)


@contextlib.contextmanager
def serve_provider(
    key: Any, *, host: str = "idp.test", tls: ssl.SSLContext | None = None
) -> Iterator[Provider]:
    requests: list[tuple[str, dict[str, str]]] = []
    fake = FakeIssuer(key=key)
    server = _Server(("127.0.0.1", 0), _handler(fake, requests))
    server.tls = tls
    port = server.server_address[1]
    fake.issuer = f"{'https' if tls else 'http'}://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Provider(fake, port, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class TestCA:
    """A CA file for ``SSL_CERT_FILE`` and a server context with a certificate it issued."""

    __test__ = False

    ca_file: Path
    server: ssl.SSLContext


def make_test_ca(folder: Path) -> TestCA:
    """A CA (its certificate in ``folder/ca.pem``), and a server certificate it issued for
    ``idp.test``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authbridge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("idp.test")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(
        leaf.public_bytes(pem)
        + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "server.pem")
    return TestCA(folder / "ca.pem", server)
