"""The app the abandoned-logins benchmark serves with uvicorn: browser login at GitHub.

``uvicorn --factory bench.login_app:create_app``, configured by the JSON in
``AUTHBRIDGE_BENCH_LOGIN_APP`` (written by ``bench/scale_servers.py``):
``{"issuer": URL, "store": URL, "redis": URL or null, "kek": "...", "transaction_ttl": 600}``.

``GET /auth/login/github`` stores a login transaction (state, PKCE verifier, nonce, browser
binding) in the store's one-time values and answers 303 to github.com; nothing here ever
calls GitHub (its endpoints are static). ``GET /open`` is the readiness route.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

from authbridge import AuthBridge, GitHubProvider, LoginSettings
from authbridge.issuer import AppIssuer

ENV = "AUTHBRIDGE_BENCH_LOGIN_APP"
SCOPES = {"items:read": "Read items"}


def create_app() -> FastAPI:
    config: dict[str, Any] = json.loads(os.environ[ENV])
    store: Any = config["store"]
    if config.get("redis"):
        from authbridge.store._composite import open_store  # noqa: PLC0415

        store = open_store(store, redis=config["redis"])
    issuer = AppIssuer(
        config["issuer"], store=store, scopes=SCOPES, key_encryption_key=config["kek"]
    )
    auth = AuthBridge(
        providers=[
            GitHubProvider(client_id="Iv1.bench0123456789ab", client_secret="bench-not-a-secret")
        ],
        issuer=issuer,
        login=LoginSettings(
            local_password=False, transaction_ttl=float(config.get("transaction_ttl", 600.0))
        ),
    )
    app = FastAPI(lifespan=auth.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    auth.install(app)

    @app.get("/open")
    async def open_route() -> dict[str, str]:
        return {"status": "ok"}

    return app
