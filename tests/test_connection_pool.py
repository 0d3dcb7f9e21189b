"""The outbound client keeps as many idle connections as checks may be in flight.

httpx keeps 20 idle connections by default; the resource server lets up to
`MAX_OUTBOUND_CHECKS` provider calls run at once. With fewer kept-alive
connections, every call beyond 20 would open (and, against real providers,
TLS-handshake) a new connection each time.
"""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import pytest

from authbridge import _httpx
from authbridge._http import HttpClientHolder, request
from authbridge.resource._limits import MAX_OUTBOUND_CHECKS


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_pool_keeps_what_the_check_limit_allows(library: object) -> None:
    limits = _httpx.pool_limits(library)  # type: ignore[arg-type]
    assert limits.max_keepalive_connections >= MAX_OUTBOUND_CHECKS
    assert limits.max_connections > MAX_OUTBOUND_CHECKS  # room for key-set fetches


async def test_concurrent_calls_reuse_their_connections() -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.2)  # real time: the calls overlap
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    holder = HttpClientHolder(trust_env=False)
    holder.open()
    try:
        url = f"http://127.0.0.1:{port}/x"
        for _ in range(3):  # three waves of 40 calls in flight at once
            answers = await asyncio.gather(
                *(request(holder.session, "GET", url, timeout=10.0) for _ in range(40))
            )
            assert {a.status for a in answers} == {200}
    finally:
        await holder.aclose()
        server.close()
        await server.wait_closed()
    # 40 connections for the first wave, kept for the next two (20 would have been
    # kept by default, so each later wave would have opened 20 more).
    assert connections == 40
