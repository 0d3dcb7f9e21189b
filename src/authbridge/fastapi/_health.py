"""Health endpoints for load balancers and Kubernetes probes: liveness and readiness.

``install_health(app, auth)`` adds two routes (``GET`` and ``HEAD``, none of them
in the OpenAPI document, each answered with ``Cache-Control: no-store``):

- ``/healthz`` (liveness): ``200 {"status": "ok"}`` whenever the process serves
  requests. It checks nothing else, so a database outage never makes an
  orchestrator restart every instance at once.
- ``/readyz`` (readiness): ``200 {"status": "ok", "checks": {...}}`` when the
  app's issuer can serve: its store answers (``store``; with Redis, the SQL
  database and ``redis`` separately) and it has a signing key loaded
  (``keys``). Otherwise ``503 {"status": "unavailable", "checks": {...}}``,
  each check ``"ok"``, ``"failed"`` or ``"timeout"``: never a URL, a password
  or an exception's text (the reason is logged, on each change, at WARNING).

The checks run concurrently, each within ``timeout`` (2 s), and their result is
kept for ``cache_ttl`` (1 s); probes arriving meanwhile share one run. However
many probes arrive, the store is pinged at most once per ``cache_ttl`` (plus the
run in flight). Providers (Google, GitHub...) are not checked: one provider
down refuses its own tokens with 503, and must not take every instance out of
the load balancer. An app without an issuer is ready whenever it serves.

Before the lifespan has started the issuer, and once it has stopped, readiness
is 503 with ``{"keys": "failed"}`` only, and pings nothing. A readiness probe
also starts an issuer whose store was down when the app
started (at most once per 5 s, as requests do): an instance kept out of the
load balancer would otherwise never see the request that starts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._shared import SharedTasks
from ..errors import AuthBridgeError

if TYPE_CHECKING:
    from ._bridge import AuthBridge

logger = logging.getLogger("authbridge.fastapi")

CheckState = Literal["ok", "failed", "timeout"]
"""What readiness says of one check."""

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class _NotReady(Exception):
    """A check failed for a reason of ours (``args[0]``, safe to log)."""


class _Answer(Response):
    """A JSON answer; to ``HEAD``, the same status and headers without the body."""

    media_type = "application/json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "HEAD":
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await super().__call__(scope, receive, send)


def _answer(status: int, body: dict[str, Any]) -> _Answer:
    content = json.dumps(body, separators=(",", ":")).encode("ascii")
    return _Answer(content, status_code=status, headers=HEADERS)


class Health:
    """The readiness checks of one app (see the module docstring).

    Args:
        bridge: The app's [AuthBridge][authbridge.AuthBridge].
        timeout: Seconds each check may take; beyond, it is ``"timeout"``.
        cache_ttl: Seconds a result answers further probes.
        clock: Monotonic time source, seconds.
    """

    def __init__(
        self,
        bridge: AuthBridge,
        *,
        timeout: float = 2.0,
        cache_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bridge = bridge
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._result: tuple[float, bool, dict[str, CheckState]] | None = None
        self._rounds: SharedTasks[tuple[bool, dict[str, CheckState]]] = SharedTasks()
        self._last: dict[str, CheckState] = {}

    def checks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The checks of this app, by name (empty without an issuer)."""
        runtime = self.bridge.issuer
        if runtime is None:
            return {}
        store: Any = runtime.store
        durable = getattr(store, "durable", None)
        ephemeral = getattr(store, "ephemeral", None)
        found: dict[str, Callable[[], Awaitable[None]]] = {}
        if durable is not None and ephemeral is not None:
            found["store"] = durable.ping
            found["redis"] = ephemeral.ping
        else:
            found["store"] = store.ping
        found["keys"] = self._keys
        return found

    async def ready(self) -> tuple[bool, dict[str, CheckState]]:
        """Whether the app is ready, and each check's state (cached for `cache_ttl`)."""
        cached = self._result
        if cached is not None and 0 <= self._clock() - cached[0] < self.cache_ttl:
            return cached[1], cached[2]
        return await self._rounds.run(self._round)

    async def _round(self) -> tuple[bool, dict[str, CheckState]]:
        checks = self.checks()
        if "keys" in checks and not self._running():
            # Before the lifespan started the issuer, or after it stopped: nothing is
            # pinged (a ping would reopen the store's connections).
            checks = {"keys": checks["keys"]}
        states = await asyncio.gather(*(self._run(n, c) for n, c in checks.items()))
        found = dict(zip(checks, states, strict=True))
        ready = all(state == "ok" for state in found.values())
        self._result = (self._clock(), ready, found)
        return ready, found

    async def _run(self, name: str, check: Callable[[], Awaitable[None]]) -> CheckState:
        state: CheckState
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except TimeoutError:
            state, reason = "timeout", f"no answer within {self.timeout:g} s"
        except _NotReady as exc:
            state, reason = "failed", str(exc.args[0])
        except AuthBridgeError as exc:
            state, reason = "failed", exc.reason
        except Exception as exc:  # noqa: BLE001 - a probe answers 503, never 500
            state, reason = "failed", type(exc).__name__  # its text may hold a URL
        else:
            state, reason = "ok", ""
        before = self._last.get(name)
        self._last[name] = state
        if state != before:
            if state != "ok":
                logger.warning("Readiness check %s: %s (%s)", name, state, reason)
            elif before is not None:
                logger.info("Readiness check %s: ok again", name)
        return state

    def _running(self) -> bool:
        """Whether the issuer started, or tried to (its store was down): the lifespan runs."""
        endpoints = self.bridge._endpoints
        if endpoints is None:
            return False
        starter = endpoints.starter
        return starter.started or getattr(starter, "_failed_at", None) is not None

    async def _keys(self) -> None:
        """The issuer started and holds a signing key; starts it if its store was down."""
        endpoints = self.bridge._endpoints
        if endpoints is None:  # pragma: no cover - `checks` has no "keys" then
            return
        starter = endpoints.starter
        if not self._running():
            raise _NotReady("issuer_not_started")
        if not starter.started:
            await starter.ensure_started()  # one attempt per cooldown, shared
        if endpoints.runtime.keys.signer_kid is None:
            raise _NotReady("no_signing_key")


def install_health(
    app: FastAPI,
    bridge: AuthBridge,
    *,
    live: str | None = "/healthz",
    ready: str | None = "/readyz",
    timeout: float = 2.0,
    cache_ttl: float = 1.0,
) -> Health:
    """Add the liveness and readiness endpoints to ``app``.

    Args:
        app: The FastAPI app.
        bridge: Its [AuthBridge][authbridge.AuthBridge].
        live: The liveness path (``None``: none).
        ready: The readiness path (``None``: none).
        timeout: Seconds each readiness check may take.
        cache_ttl: Seconds a readiness result answers further probes.

    Returns:
        The readiness checks (``await health.ready()`` runs them in code).

    Raises:
        ConfigurationError: a path that does not start with ``/``, or that
            the app already serves.
    """
    from ..errors import ConfigurationError  # noqa: PLC0415 - only on misconfiguration

    health = Health(bridge, timeout=timeout, cache_ttl=cache_ttl)
    taken = {getattr(route, "path", None) for route in app.router.routes}
    for path in (live, ready):
        if path is None:
            continue
        if not path.startswith("/"):
            raise ConfigurationError(
                "invalid_health_path", message=f"health paths start with '/', got {path!r}"
            )
        if path in taken:
            raise ConfigurationError(
                "health_path_taken",
                message=f"the app already serves {path}: pass another path to install_health",
            )

    async def liveness(request: Request) -> Response:
        return _answer(200, {"status": "ok"})

    async def readiness(request: Request) -> Response:
        ok, checks = await health.ready()
        return _answer(
            200 if ok else 503, {"status": "ok" if ok else "unavailable", "checks": checks}
        )

    if live is not None:
        app.router.add_route(live, liveness, methods=["GET", "HEAD"], include_in_schema=False)
    if ready is not None:
        app.router.add_route(ready, readiness, methods=["GET", "HEAD"], include_in_schema=False)
    return health
