"""The app the multi-instance tests run as several uvicorn processes sharing one store.

``python -m multi.app --fd N`` (from ``tests/``; ``harness.Instance`` starts it) serves
`create_app` with uvicorn on the listening socket inherited as file descriptor ``N``
(bound by the test process, so its port is known and nobody else can take it). The
configuration is the JSON in ``$AUTHBRIDGE_MULTI_APP``:

* ``name``: this instance's name (``A``, ``B``...), echoed by ``/instance`` and ``/whoami``;
* ``issuer``: the app's public URL, the same for every instance (the origin a load balancer
  would serve; the tests' client sends each request to one instance);
* ``store``: the PostgreSQL URL; ``redis`` and ``redis_prefix``: with a Redis URL, the
  store is ``CompositeStore(SQLStore(store), RedisEphemeral(redis, prefix=...))``;
* ``kek``: the key-encryption key every instance shares (signing keys and sessions);
* ``provider``: the upstream login provider (the test kit's ``FakeIssuer`` served on
  loopback): ``issuer``, ``audience``, ``client_id``, ``client_secret``;
* ``issuer_options``: more ``AppIssuer`` keyword arguments (short lifetimes and limits);
* ``control``: a directory where the test arms stalls (see `install_stalls`);
* ``explain_refusals``: the reason code in 401 bodies (a development switch).

Routes besides authbridge's (which include ``/healthz`` and ``/readyz``): ``GET /instance``
(the instance's name and pid), ``GET /whoami`` (``auth.principal``) and ``GET /active``
(``auth.active_principal``), both naming the instance that answered, and
``POST /test/rotate-key`` (this instance's ``runtime.keys.rotate()``: a scheduled key, or
one signing at once with ``?now=true``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Security

from authbridge import AppIssuer, AuthBridge, LoginSettings, OIDCProvider, Principal
from authbridge.client import AccountPolicy
from authbridge.store import Store

ENV = "AUTHBRIDGE_MULTI_APP"
SCOPES = {"items:read": "Read items", "items:write": "Change items"}
NEW_ACCOUNT_SCOPES = frozenset({"items:read"})
PROVIDER = "fake"
STALL_SECONDS = 120.0
"""How long a stalled call waits: far longer than any test waits for it to be killed."""


def open_app_store(config: dict[str, Any]) -> Store | str:
    """The store of this configuration: PostgreSQL alone, or PostgreSQL + Redis."""
    redis_url = config.get("redis")
    if not redis_url:
        return str(config["store"])
    from authbridge.store._composite import open_store  # noqa: PLC0415 - with Redis only

    return open_store(config["store"], redis=redis_url, redis_prefix=config["redis_prefix"])


# --- stalls: a call that never returns, at a moment the test chooses ----------------------


def _armed(control: Path, name: str, operation: str) -> str | None:
    """``before`` / ``after`` when the test armed ``operation`` on this instance (once)."""
    path = control / f"{name}.{operation}"
    try:
        when = path.read_text().strip()
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    return when


async def _stall(control: Path, name: str, operation: str, when: str) -> None:
    """Say where this call is (the test waits for the file), then wait to be killed."""
    marker = control / f"{name}.{operation}.{when}.reached"
    marker.write_text(str(os.getpid()))
    await asyncio.sleep(STALL_SECONDS)


def _stalling(
    call: Callable[..., Awaitable[Any]],
    control: Path,
    name: str,
    operation: str,
    applies: Callable[..., bool] = lambda *args, **kwargs: True,
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        when = _armed(control, name, operation) if applies(*args, **kwargs) else None
        if when == "before":
            await _stall(control, name, operation, when)
        result = await call(*args, **kwargs)
        if when == "after":
            await _stall(control, name, operation, when)
        return result

    return wrapper


def install_stalls(store: Store, control: Path, name: str) -> None:
    """Let the test stall this instance in a refresh or a code redemption.

    A file ``<control>/<name>.advance`` (or ``.take``) holding ``before`` or ``after``
    arms the next ``store.refresh.advance`` (or ``store.one_time.take`` of an
    authorization code): before or after the store's own call, the call writes
    ``<control>/<name>.<operation>.<when>.reached`` and waits `STALL_SECONDS`, so the
    test can kill the process exactly there.
    """
    refresh: Any = store.refresh
    refresh.advance = _stalling(refresh.advance, control, name, "advance")
    one_time: Any = store.one_time
    one_time.take = _stalling(
        one_time.take,
        control,
        name,
        "take",
        applies=lambda kind, *args, **kwargs: kind == "code",
    )


# --- the app ------------------------------------------------------------------------------


def create_app(config: dict[str, Any] | None = None) -> FastAPI:
    """The app described by ``config`` (default: ``$AUTHBRIDGE_MULTI_APP``)."""
    config = config if config is not None else json.loads(os.environ[ENV])
    name = str(config["name"])
    upstream = config["provider"]
    provider = OIDCProvider(
        PROVIDER,
        issuer=upstream["issuer"],
        audience=upstream["audience"],
        client_id=upstream["client_id"],
        client_secret=upstream["client_secret"],
        display_name="Fake issuer",
        jwks_cooldown=0.0,
    )
    store = open_app_store(config)
    issuer = AppIssuer(
        config["issuer"],
        store=store,
        scopes=SCOPES,
        key_encryption_key=config["kek"],
        development=False,
        key_rotation_interval=0,
        **config.get("issuer_options", {}),
    )
    auth = AuthBridge(
        [provider],
        issuer=issuer,
        login=LoginSettings(accounts=AccountPolicy(default_scopes=NEW_ACCOUNT_SCOPES)),
        trust_env=False,
        explain_refusals=bool(config.get("explain_refusals")),
    )
    runtime = auth.issuer
    assert runtime is not None
    if config.get("control"):
        install_stalls(runtime.store, Path(config["control"]), name)

    app = FastAPI(
        title="Multi", docs_url=None, redoc_url=None, openapi_url=None, lifespan=auth.lifespan
    )

    @app.get("/instance")
    async def instance() -> dict[str, Any]:
        return {"name": name, "pid": os.getpid()}

    def describe(user: Principal) -> dict[str, Any]:
        return {
            "instance": name,
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
            "token_id": user.token_id,
        }

    @app.get("/whoami")
    async def whoami(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        return describe(user)

    @app.get("/active")
    async def active(user: Principal = Security(auth.active_principal)) -> dict[str, Any]:
        return describe(user)

    @app.post("/test/rotate-key")
    async def rotate_key(now: bool = False) -> dict[str, Any]:
        """This instance's runtime adds a signing key (a test app's shortcut): scheduled, or
        signing at once with ``?now=true``."""
        added = await runtime.keys.rotate(immediately=now)
        return {"kid": added.kid, "active_from": added.active_from}

    auth.install(app)
    return app


def main() -> None:
    """Serve the app on the inherited listening socket ``--fd``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        create_app(),
        lifespan="on",
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
