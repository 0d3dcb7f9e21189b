"""Loopback TCP helpers for tests: a free port, and a link in front of a real server.

`Link` forwards a port of its own to a real server (PostgreSQL, Redis...), optionally
delaying every chunk (real latency for race tests), and can be cut: ``refuse()`` (nothing
listens, open connections cut), ``hold()`` (accepted, never answered), ``restore()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Link:
    """A TCP link to a real server, on a port of its own, that a test can cut.

    ``refuse()``: nothing listens (connections refused) and every open connection is cut;
    ``hold()``: connections are accepted and never answered, open ones cut; ``restore()``:
    forwarding again, on the same port.
    """

    def __init__(self, target_port: int, *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay  # seconds each chunk waits, each way
        self.port = free_port()
        self.mode = "forward"
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        try:
            if self.mode == "hold":
                await reader.read()  # until the client gives up
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._open.add(up_writer)
            await asyncio.gather(
                _pipe(reader, up_writer, self.delay), _pipe(up_reader, writer, self.delay)
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _cut(self) -> None:
        for writer in list(self._open):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._open.clear()

    async def refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut()

    async def hold(self) -> None:
        self.mode = "hold"
        self._cut()

    async def restore(self) -> None:
        self.mode = "forward"
        if self._server is None:
            await self.start()

    async def aclose(self) -> None:
        await self.refuse()


async def _pipe(
    source: asyncio.StreamReader, target: asyncio.StreamWriter, delay: float = 0.0
) -> None:
    try:
        while data := await source.read(65536):
            if delay:
                await asyncio.sleep(delay)
            target.write(data)
            await target.drain()
    finally:
        with contextlib.suppress(Exception):
            target.close()


@contextlib.asynccontextmanager
async def link_to(port: int, *, delay: float = 0.0) -> AsyncIterator[Link]:
    link = Link(port, delay=delay)
    await link.start()
    try:
        yield link
    finally:
        await link.aclose()
