"""The apps the issuer interop tests serve with uvicorn, each in its own process.

``uvicorn --factory interop.issuer_app:create_app``, configured by the JSON in the environment
variable ``AUTHBRIDGE_INTEROP_APP`` (written by ``issuer_support.AppProcess``):

* ``{"role": "issuer", "issuer": URL, "store": URL, ...}``: an app with its own authorization
  server, ``AuthBridge(issuer=AppIssuer(...))`` and ``auth.install(app)``;
* ``{"role": "resource", "issuer": URL, "audience": ..., ...}``: a separate service accepting the
  first app's tokens through ``OIDCProvider(..., token_type="strict")``: discovery + JWKS over
  HTTP, nothing shared with the issuer but its URL.

Both serve ``GET /healthz`` (readiness) and ``GET /whoami`` (``Security(auth.principal)``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Security

from authbridge import AuthBridge, OIDCProvider, Principal
from authbridge.issuer import AppIssuer

ENV = "AUTHBRIDGE_INTEROP_APP"


def _issuer_bridge(config: dict[str, Any]) -> AuthBridge:
    options: dict[str, Any] = {
        "store": config["store"],
        "scopes": config.get("scopes", ["items:read", "items:write"]),
        "signing_algorithm": config.get("signing_algorithm", "ES256"),
    }
    for name in ("audience", "access_token_ttl", "jwks_max_age", "key_encryption_key"):
        if config.get(name) is not None:
            options[name] = config[name]
    # health=False: this app serves its own /healthz (the harness waits for it).
    return AuthBridge(providers=[], issuer=AppIssuer(config["issuer"], **options), health=False)


def _resource_bridge(config: dict[str, Any]) -> AuthBridge:
    provider = OIDCProvider(
        "api",
        issuer=config["issuer"],
        audience=config["audience"],
        token_type="strict",
        jwks_cooldown=config.get("jwks_cooldown", 30.0),
        leeway=config.get("leeway", 30.0),
    )
    return AuthBridge(providers=[provider])


def create_app() -> FastAPI:
    """The app described by ``$AUTHBRIDGE_INTEROP_APP``."""
    config: dict[str, Any] = json.loads(os.environ[ENV])
    role = config["role"]
    if role == "issuer":
        auth = _issuer_bridge(config)
    elif role == "resource":
        auth = _resource_bridge(config)
    else:
        raise ValueError(f"unknown role {role!r}")
    app = FastAPI(lifespan=auth.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if role == "issuer":
        auth.install(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "role": role}

    @app.get("/whoami")
    async def whoami(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        return {
            "provider": user.provider,
            "issuer": user.issuer,
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
            "token_id": user.token_id,
        }

    return app
