"""The authbridge app the token-endpoint benchmark serves with uvicorn.

``uvicorn --factory bench.token_app:create_app``, configured by the JSON in
``AUTHBRIDGE_BENCH_TOKEN_APP`` (written by ``bench/token_servers.py``):
``{"issuer": URL, "store": URL, "audience": URL, "algorithm": "ES256", "kek": "..."}``, and
optionally ``"redis": URL`` (one-time values, rate limits and the replay cache in Redis, through
``authbridge.store._composite.open_store``).

Routes: the issuer's own (``auth.install(app)``: ``POST /oauth/token``, JWKS, metadata),
``GET /open`` (readiness) and ``GET /protected`` (``Security(auth.principal)``: a JWT route
validating the app's own tokens, no HTTP).

The password rate limits are raised out of the way: the password storm sends thousands of
logins from one address, and what it measures is the event loop under hashing load.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Security

from authbridge import AuthBridge, Principal
from authbridge.issuer import AppIssuer

ENV = "AUTHBRIDGE_BENCH_TOKEN_APP"
SCOPES = {"items:read": "Read items", "items:write": "Change items"}
BODY = {"status": "ok"}


def create_app() -> FastAPI:
    config: dict[str, Any] = json.loads(os.environ[ENV])
    store: Any = config["store"]
    if config.get("redis"):
        from authbridge.store._composite import open_store  # noqa: PLC0415

        store = open_store(store, redis=config["redis"])
    issuer = AppIssuer(
        config["issuer"],
        store=store,
        audience=config.get("audience"),
        scopes=SCOPES,
        signing_algorithm=config.get("algorithm", "ES256"),
        key_encryption_key=config["kek"],
        password_failures_per_account=1_000_000,
        password_attempts_per_address=1_000_000,
    )
    auth = AuthBridge(providers=[], issuer=issuer)
    app = FastAPI(lifespan=auth.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    auth.install(app)

    @app.get("/open")
    async def open_route() -> dict[str, str]:
        return BODY

    @app.get("/protected")
    async def protected_route(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> dict[str, str]:
        return BODY

    return app
